"""One sampling call into the library (Model.sample, NoiseSchedule.sample): the output array,
the progress callback the library calls after every step — always one, so that it polls for
Ctrl-C even when the caller asked for no progress —, the snapshots of a trajectory, and what
is raised after the call.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from . import _lib
from ._callbacks import CallbackState
from ._progress import sampling_progress
from ._scalars import as_int
from .errors import InvalidArgumentError, check


class ProgressRelay:
    """The ddpm_progress_fn of a sampling call: relays to a Python progress callable if any,
    keeps snapshots of x at chosen t, and returns nonzero (stop) once Ctrl-C was pressed.

    The user callable is progress(step, total, t, x) with x a read-only (n, *shape)
    float32 view, valid only during the call (copy it to keep it); returning a truthy
    value cancels (CancelledError). `snapshots` collects copies of x at chosen t.
    """

    def __init__(self, state: CallbackState, shape: tuple[int, ...], user: Callable | None,
                 snapshot_ts: set[int] | None, snapshot_all: bool) -> None:
        self.state = state
        self.shape = shape
        self.user = user
        self.snapshot_ts = snapshot_ts or set()
        self.snapshot_all = snapshot_all
        self.snapshots: dict[int, np.ndarray] = {}
        self.c_callback = _lib.ddpm_progress_fn(self._call)

    def _call(self, _user_data, step, total, t, x, count):
        state = self.state
        try:
            if state.interrupt is not None:
                return 1
            view = None
            if self.snapshot_all or t in self.snapshot_ts:
                view = np.ctypeslib.as_array(x, shape=(count,)).reshape(self.shape)
                self.snapshots[int(t)] = view.copy()
            if self.user is not None:
                if view is None:
                    view = np.ctypeslib.as_array(x, shape=(count,)).reshape(self.shape)
                view.flags.writeable = False
                if state.call_user(self.user, int(step), int(total), int(t), view):
                    return 1
            return 1 if state.interrupt is not None else 0
        except BaseException as error:  # noqa: BLE001 - carried out and re-raised after the call
            state.keep(error)
            return 1


def trajectory_request(return_trajectory: Any) -> tuple[bool, set[int] | None]:
    """(want all, wanted t values) from return_trajectory: False, True or an iterable of t."""
    if return_trajectory is None or return_trajectory is False:
        return False, None
    if return_trajectory is True:
        return True, None
    try:
        wanted = {as_int(t, "return_trajectory entries") for t in return_trajectory}
    except TypeError:
        raise InvalidArgumentError(
            f"return_trajectory must be False, True or a list of timesteps (got {return_trajectory!r})"
        ) from None
    return False, wanted


def progress_relay(state: CallbackState, shape: tuple[int, ...], progress: Any,
                   snapshot_all: bool, snapshot_ts: set[int] | None, desc: str):
    """The ProgressRelay for a sampling call and the function that closes its bar.

    progress: None, a callable progress(step, total, t, x) -> truthy to cancel, or True
    for a tqdm bar (silently nothing when tqdm is not installed).
    """
    close = lambda: None  # noqa: E731
    user = None
    if progress is True:
        user, close = sampling_progress(desc)
    elif callable(progress):
        user = progress
    elif progress not in (None, False):
        raise InvalidArgumentError(f"progress must be None, True or a callable (got {progress!r})")
    return ProgressRelay(state, shape, user, snapshot_ts, snapshot_all), close


def run_sampling(state: CallbackState, params: _lib.ddpm_sample_params, full_shape: tuple[int, ...],
                 progress: Any, return_trajectory: Any, call: Callable[[np.ndarray], int]):
    """Runs one sampling call, call(out) -> status, writing into a new (n, *shape) array,
    with the progress callback and trajectory snapshots attached to params.

    Raises KeyboardInterrupt if Ctrl-C was pressed during the call, else re-raises an
    exception from a Python callback, then any library failure. Returns out, or
    (out, {t: x_t} from noisiest to x_0) when return_trajectory asks for snapshots.
    """
    want_all, wanted = trajectory_request(return_trajectory)
    relay, close_bar = progress_relay(state, full_shape, progress, want_all, wanted, "sampling")
    params.progress, params.progress_user_data = relay.c_callback, None
    out = np.empty(full_shape, dtype=np.float32)
    try:
        with state:
            status = call(out)
    finally:
        close_bar()
    state.raise_pending()
    check(status)
    if want_all or wanted is not None:
        return out, dict(sorted(relay.snapshots.items(), reverse=True))
    return out
