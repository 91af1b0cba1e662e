"""Shared plumbing of the public classes: array conversion and shape checks, enum names,
sampling options and callbacks. numpy only shapes data here; the maths is in the library.
"""

from __future__ import annotations

import ctypes
import dataclasses
import math
import numbers
import operator
import os
import signal
import threading
from typing import Any, Callable

import numpy as np

from . import _lib
from .errors import ArgumentTypeError, ClosedError, InvalidArgumentError, ShapeError, check

METHODS = {"ddpm": _lib.DDPM_METHOD_DDPM, "ddim": _lib.DDPM_METHOD_DDIM, "dpm_solver++": _lib.DDPM_METHOD_DPM_SOLVER_PP,
           "sde_dpm_solver++": _lib.DDPM_METHOD_SDE_DPM_SOLVER_PP, "langevin": _lib.DDPM_METHOD_LANGEVIN,
           "pc": _lib.DDPM_METHOD_PC}
SPACINGS = {"default": _lib.DDPM_SPACING_DEFAULT, "leading": _lib.DDPM_SPACING_LEADING,
            "trailing": _lib.DDPM_SPACING_TRAILING, "linspace": _lib.DDPM_SPACING_LINSPACE,
            "karras": _lib.DDPM_SPACING_KARRAS, "dpm_leading": _lib.DDPM_SPACING_DPM_LEADING,
            "dpm_linspace": _lib.DDPM_SPACING_DPM_LINSPACE}
VARIANCES = {"beta": _lib.DDPM_VARIANCE_BETA, "posterior": _lib.DDPM_VARIANCE_POSTERIOR,
             "learned": _lib.DDPM_VARIANCE_LEARNED}
OUTPUTS = {"eps": _lib.DDPM_OUTPUT_EPS, "x0": _lib.DDPM_OUTPUT_X0, "v": _lib.DDPM_OUTPUT_V}  # ddpm_output of a model
PREDICTIONS = {**OUTPUTS, "score": _lib.DDPM_OUTPUT_SCORE, "variance": _lib.DDPM_OUTPUT_VARIANCE}  # Model.predict

_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
_INT64_MAX = 2**63 - 1
_NULL_INT32 = _lib.INT32_P()


def enum_value(table: dict[str, int], value: str, what: str) -> int:
    """Maps an option name ("ddim") to its enum value; raises InvalidArgumentError."""
    if isinstance(value, str) and value.lower() in table:
        return table[value.lower()]
    raise InvalidArgumentError(f"{what} must be one of {sorted(table)} (got {value!r})")


def enum_name(table: dict[str, int], value: int) -> str:
    for name, v in table.items():
        if v == value:
            return name
    return str(value)


class HandleOwner:
    """An object that owns one library handle in self._handle: an idempotent close() that
    frees it with the subclass's `_free` function (name of a ddpm_*_free), `closed`, `_h()`
    (the handle, or ClosedError), `with` support and a last-resort close on deletion."""

    _free = ""
    _handle: Any = None

    def close(self) -> None:
        """Frees the library handle; later calls raise ClosedError. Idempotent."""
        handle, self._handle = self._handle, None
        if handle and _lib is not None and _lib.lib is not None:
            getattr(_lib.lib, self._free)(handle)

    @property
    def closed(self) -> bool:
        return not self._handle

    def _h(self):
        handle = self._handle
        if not handle:
            raise ClosedError(f"this {type(self).__name__} has been closed")
        return handle

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


def as_int(value: Any, what: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """An exact Python int (numpy integers accepted, floats, strings and bools refused with
    ArgumentTypeError), optionally within [minimum, maximum] (InvalidArgumentError)."""
    if isinstance(value, (bool, np.bool_)):
        raise ArgumentTypeError(f"{what} must be an integer (got {value!r})")
    try:
        result = operator.index(value)
    except TypeError:
        raise ArgumentTypeError(f"{what} must be an integer (got {value!r})") from None
    if minimum is not None and result < minimum:
        raise InvalidArgumentError(f"{what} must be >= {minimum} (got {result})")
    if maximum is not None and result > maximum:
        raise InvalidArgumentError(f"{what} must be <= {maximum} (got {result})")
    return result


def as_int32(value: Any, what: str) -> int:
    """as_int within the int32 range (ctypes would silently wrap a larger value)."""
    return as_int(value, what, minimum=-(2**31), maximum=2**31 - 1)


def as_float(value: Any, what: str) -> float:
    """A real number as a Python float: ints, floats and numpy reals (a 0-d array too);
    bools, strings ("1.5" too), complex numbers and other objects raise ArgumentTypeError.
    Range and finiteness are the library's to check."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)):
        return float(value)
    raise ArgumentTypeError(f"{what} must be a number: an int or a float (got {value!r})")


# dtype kinds that hold real numbers: signed and unsigned integers, floats. Refused: b (bool),
# c (complex), U/S (strings, "1.5" too), O (objects), M/m (dates), V (records).
_REAL_KINDS = "iuf"


def real_array(x: Any, what: str, dtype: Any = np.float32) -> np.ndarray:
    """x as a C-contiguous, aligned array of `dtype` (a copy only when needed).

    Only arrays (or nested sequences) of real numbers are converted: bool, complex, string
    and object arrays raise ArgumentTypeError rather than being silently cast.
    """
    if not isinstance(x, np.ndarray):
        try:
            x = np.asarray(x)
        except (TypeError, ValueError) as error:  # ragged nested lists
            raise InvalidArgumentError(f"{what} cannot be converted to a {np.dtype(dtype)} array: {error}") from None
    if x.dtype.kind not in _REAL_KINDS:
        raise ArgumentTypeError(f"{what} must hold real numbers (integers or floats); got dtype {x.dtype}"
                                + (" (convert strings with float() first)" if x.dtype.kind in "US" else ""))
    arr = np.ascontiguousarray(x, dtype=dtype)
    return arr if arr.flags.aligned else arr.copy()


def float32_array(x: Any, what: str) -> np.ndarray:
    """x as a C-contiguous float32 array (a copy only when needed); see real_array."""
    return real_array(x, what, np.float32)


def as_int64_count(value: Any, what: str) -> int:
    """A count >= 1 that the library takes as int64_t."""
    return as_int(value, what, minimum=1, maximum=_INT64_MAX)


def elements(n: int, shape: tuple[int, ...]) -> int:
    """prod(shape), checked with n·prod(shape) against int64 (ctypes would wrap a larger value)."""
    dim = math.prod(shape)
    if dim > _INT64_MAX or n * dim > _INT64_MAX:
        raise InvalidArgumentError(f"{n} samples of shape {shape} have more elements than int64 can count")
    return dim


def path_bytes(path: Any, what: str = "path") -> bytes:
    """A file path as bytes for the library; a NUL byte (which C would silently cut the path at)
    raises InvalidArgumentError."""
    try:
        raw = os.fsencode(os.fspath(path))
    except TypeError:
        raise ArgumentTypeError(f"{what} must be a str, bytes or os.PathLike (got {type(path).__name__})") from None
    if b"\0" in raw:
        raise InvalidArgumentError(f"{what} contains a NUL byte: {path!r}")
    if not raw:
        raise InvalidArgumentError(f"{what} is empty")
    return raw


def batch_array(x: Any, what: str, sample_shape: tuple[int, ...] | None = None) -> np.ndarray:
    """x as a float32 (B, ...) array with B >= 1.

    With sample_shape, the trailing dimensions must equal it or be its flattened size.
    """
    arr = float32_array(x, what)
    if arr.ndim < 1 or arr.shape[0] < 1:
        raise ShapeError(f"{what} must be a non-empty batch (B, ...); got shape {arr.shape}")
    if sample_shape is not None:
        trailing = arr.shape[1:]
        if trailing != sample_shape and trailing != (math.prod(sample_shape),):
            raise ShapeError(
                f"{what} must have shape (B, {', '.join(map(str, sample_shape))})"
                f"{'' if len(sample_shape) == 1 else f' or (B, {math.prod(sample_shape)})'}; got {arr.shape}"
            )
    return arr


def shape_tuple(shape: Any) -> tuple[int, ...]:
    """One sample's shape as a tuple of ints >= 1 (an int is a 1-D shape)."""
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (int(shape),)
    try:
        result = tuple(as_int(s, "shape entries", minimum=1) for s in shape)
    except TypeError:
        raise InvalidArgumentError(f"shape must be an int or a tuple of ints (got {shape!r})") from None
    if not result:
        raise InvalidArgumentError("shape must have at least one dimension")
    return result


def same_shape(arr: np.ndarray, like: np.ndarray, what: str, like_what: str) -> None:
    if arr.shape != like.shape:
        raise ShapeError(f"{what} has shape {arr.shape} but {like_what} has shape {like.shape}; they must match")


def int32_vector(values: Any, length: int, what: str, *, broadcast: bool = False) -> np.ndarray:
    """values as a C-contiguous int32 array of shape (length,).

    A scalar is repeated when broadcast is True. Non-integer dtypes and values outside
    int32 raise InvalidArgumentError; a wrong length raises ShapeError.
    """
    arr = np.asarray(values)
    if arr.dtype.kind not in "iu":
        raise ArgumentTypeError(f"{what} must hold integers (got dtype {arr.dtype})")
    if arr.ndim == 0 and broadcast:
        arr = np.full(length, arr, dtype=arr.dtype)
    if arr.shape != (length,):
        raise ShapeError(f"{what} must have shape ({length},){' or be a scalar' if broadcast else ''}; got {arr.shape}")
    if arr.size and (arr.min() < _INT32_MIN or arr.max() > _INT32_MAX):
        raise InvalidArgumentError(f"{what} has values outside the int32 range")
    return np.ascontiguousarray(arr, dtype=np.int32)


def cond_batch(conditioning: Any, cond: Any, labels: Any, rows: int, lengths: Any = None) -> tuple:
    """(ddpm_cond_batch or None, (values, lengths) arrays it points into) for `rows` rows of
    a model with the given Conditioning. cond and labels are aliases (give one):
      classes:  labels (rows,) or one int
      vector:   floats (rows, dim) or one (dim,) vector
      sequence: floats (rows, max_length, dim), lengths (rows,) in 0..max_length (None: full)
      tokens:   ints (rows, max_length); lengths derived (0 = padding: a row's length ends at
                its last nonzero id) unless given
    or None (the null condition). Shapes are checked here; values (labels in 0..K, ids in
    0..V-1, lengths, finite floats) by the library.
    """
    if cond is not None and labels is not None:
        raise InvalidArgumentError("give the condition as cond= or as labels=, not both")
    value = cond if cond is not None else labels
    kind = conditioning.kind
    if lengths is not None and kind not in ("sequence", "tokens"):
        raise InvalidArgumentError(f"lengths= is for sequence and token conditioning (this model's is {kind!r})")
    if value is None:
        if lengths is not None:
            raise InvalidArgumentError("lengths= was given without a condition")
        return None, (None, None)
    batch = _lib.lib.ddpm_cond_batch_default()
    arr = np.asarray(value)
    if kind in ("vector", "sequence"):
        shape = (rows, conditioning.dim) if kind == "vector" else (rows, conditioning.max_length, conditioning.dim)
        if arr.dtype.kind not in "fiu":
            raise ArgumentTypeError(f"cond must hold numbers (got dtype {arr.dtype})")
        if arr.shape == shape[1:]:
            arr = np.broadcast_to(arr, shape)
        if arr.shape != shape:
            what = "one vector of" if kind == "vector" else f"up to {conditioning.max_length} vectors of"
            raise ShapeError(f"cond must have shape {shape} ({what} {conditioning.dim} floats per row) or {shape[1:]}; "
                             f"got {arr.shape}")
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        batch.vectors, batch.vectors_count = float_ptr(arr), arr.size
    elif kind == "tokens":
        L = conditioning.max_length
        if arr.dtype.kind not in "iu":
            raise ArgumentTypeError(f"cond must hold integer token ids for a token-conditioned model (got dtype {arr.dtype})")
        if arr.shape == (L,):
            arr = np.broadcast_to(arr, (rows, L))
        if arr.shape != (rows, L):
            raise ShapeError(f"cond must have shape ({rows}, {L}) (token ids, 0 = padding) or ({L},); got {arr.shape}")
        if arr.size and (arr.min() < _INT32_MIN or arr.max() > _INT32_MAX):
            raise InvalidArgumentError("cond has token ids outside the int32 range")
        arr = np.ascontiguousarray(arr, dtype=np.int32)
        if lengths is None:  # 0 = padding: a row's length ends at its last nonzero id
            nonzero = arr != 0
            lengths = np.where(nonzero.any(axis=1), L - np.argmax(nonzero[:, ::-1], axis=1), 0)
        batch.tokens, batch.tokens_count = arr.ctypes.data_as(_lib.INT32_P), arr.size
    else:
        if arr.dtype.kind == "f" and arr.ndim >= 1:
            raise InvalidArgumentError(f"cond holds float vectors but the model is conditioned on {kind!r}, "
                                       "not vectors (Conditioning.vector(dim))")
        arr = int32_vector(value, rows, "labels", broadcast=True)
        batch.labels = arr.ctypes.data_as(_lib.INT32_P)
        return batch, (arr, None)
    if lengths is not None:
        lengths = int32_vector(lengths, rows, "lengths", broadcast=True)
        batch.lengths = lengths.ctypes.data_as(_lib.INT32_P)
    return batch, (arr, lengths)


def cond_ref(batch: Any):
    """ctypes.byref of a ddpm_cond_batch, or None (NULL)."""
    return None if batch is None else ctypes.byref(batch)


def float_ptr(arr: np.ndarray):
    return arr.ctypes.data_as(_lib.FLOAT_P)


def int32_ptr(arr: np.ndarray | None):
    return _NULL_INT32 if arr is None else arr.ctypes.data_as(_lib.INT32_P)


_SAMPLE_DEFAULTS = _lib.lib.ddpm_sample_params_default()

# The solver options beyond method/steps/eta/variance/clip/seed/timesteps, with the C defaults;
# Model.sample, NoiseSchedule.sample and Sampler take them as **solver_options.
SOLVER_OPTIONS = {
    "spacing": "default",  # how the timesteps are spread: SPACINGS
    "steps_offset": _SAMPLE_DEFAULTS.steps_offset,  # added to "leading" timesteps
    "use_clipped_model_output": bool(_SAMPLE_DEFAULTS.use_clipped_model_output),  # DDIM: eps from the clipped x0
    "thresholding": None,  # None, or the quantile p of dynamic thresholding (True = 0.995)
    "threshold_max": float(_SAMPLE_DEFAULTS.threshold_max),  # cap of the threshold s (>= 1)
    "solver_order": _SAMPLE_DEFAULTS.solver_order,  # DPM-Solver++ order
    "lower_order_final": bool(_SAMPLE_DEFAULTS.lower_order_final),
    "corrector_steps": _SAMPLE_DEFAULTS.corrector_steps,  # Langevin steps per timestep ("langevin", "pc")
    "snr": float(_SAMPLE_DEFAULTS.snr),  # "pc" corrector signal-to-noise ratio
    "langevin_step_size": float(_SAMPLE_DEFAULTS.langevin_step_size),  # "langevin" epsilon
    "set_alpha_to_one": bool(_SAMPLE_DEFAULTS.set_alpha_to_one),  # DDIM, DPM-Solver++: False ends at alpha_bar_0
}


def sample_params(
    *,
    method: str = "ddpm",
    steps: int = 0,
    eta: float = 0.0,
    variance: str = "beta",
    clip: Any = None,
    seed: int = 0,
    timesteps: Any = None,
    prediction_type: str = "eps",
    **solver_options: Any,
) -> _lib.ddpm_sample_params:
    """A ddpm_sample_params from keyword options (the fields not named here keep the library defaults).

    timesteps: None, or the caller's own timesteps (strictly decreasing, checked by the
    library); the int32 array is kept alive by the returned struct.
    solver_options: any of SOLVER_OPTIONS (names as the C fields).
    """
    unknown = sorted(set(solver_options) - set(SOLVER_OPTIONS))
    if unknown:
        raise TypeError(f"unknown sampling option(s) {unknown}; the options are {sorted(SOLVER_OPTIONS)}")
    o = {**SOLVER_OPTIONS, **solver_options}
    p = _lib.lib.ddpm_sample_params_default()
    p.method = enum_value(METHODS, method, "method")
    p.steps = as_int(steps, "steps", minimum=0, maximum=2**31 - 1)
    p.eta = as_float(eta, "eta")
    p.variance = enum_value(VARIANCES, variance, "variance")
    if clip is None or clip is False:
        p.clip_x0 = 0
    else:
        if clip is True:
            lo, hi = -1.0, 1.0
        else:
            try:
                lo, hi = (as_float(v, "clip bounds") for v in clip)
            except (TypeError, ValueError):
                raise ArgumentTypeError(f"clip must be None, True or a pair (lo, hi) of numbers (got {clip!r})") from None
        if not lo < hi:
            raise InvalidArgumentError(f"clip range must have lo < hi (got {(lo, hi)})")
        p.clip_x0, p.clip_min, p.clip_max = 1, lo, hi
    p.seed = as_int(seed, "seed", minimum=0, maximum=2**64 - 1)
    p.prediction_type = enum_value(OUTPUTS, prediction_type, "prediction_type")
    p.spacing = enum_value(SPACINGS, o["spacing"], "spacing")
    p.steps_offset = as_int(o["steps_offset"], "steps_offset", minimum=0, maximum=2**31 - 1)
    p.use_clipped_model_output = 1 if o["use_clipped_model_output"] else 0
    threshold = o["thresholding"]
    if threshold is not None and threshold is not False:
        p.thresholding = 1
        p.threshold_quantile = _SAMPLE_DEFAULTS.threshold_quantile if threshold is True else float(threshold)
    p.threshold_max = float(o["threshold_max"])
    p.solver_order = as_int(o["solver_order"], "solver_order", minimum=1, maximum=2**31 - 1)
    p.lower_order_final = 1 if o["lower_order_final"] else 0
    p.corrector_steps = as_int(o["corrector_steps"], "corrector_steps", minimum=1, maximum=2**31 - 1)
    p.snr = float(o["snr"])
    p.langevin_step_size = float(o["langevin_step_size"])
    p.set_alpha_to_one = 1 if o["set_alpha_to_one"] else 0
    if timesteps is not None:
        ts = np.asarray(timesteps)
        if ts.ndim != 1:
            raise ShapeError(f"timesteps must be a 1-D sequence; got shape {ts.shape}")
        ts = int32_vector(ts, ts.size, "timesteps")
        p.timesteps, p.num_timesteps = int32_ptr(ts), ts.size
        p.keep_timesteps_alive = ts
    return p


PREDICT_DEFAULTS = _lib.lib.ddpm_predict_params_default()  # the defaults of Model.predict and Model.sample


def predict_params(guidance_scale: float, use_ema: bool) -> _lib.ddpm_predict_params:
    """A ddpm_predict_params: classifier-free guidance scale w and EMA or live weights."""
    p = _lib.lib.ddpm_predict_params_default()
    p.guidance_scale = as_float(guidance_scale, "guidance_scale")
    p.use_ema = 1 if use_ema else 0
    return p


class CallbackState:
    """One C call that calls back into Python (sampling): keeps what the ctypes callbacks need
    alive, carries a Python exception they raised back out, and defers Ctrl-C.

    Ctrl-C: while the call runs (`with state:`, main thread only), SIGINT goes to a handler
    that runs the previous Python handler (default_int_handler raises KeyboardInterrupt) and
    keeps what it raised in `interrupt` instead of letting it escape from wherever the
    interpreter happens to be — an exception escaping a ctypes callback is printed as
    "Exception ignored" and lost. Every callback polls `interrupted` and returns nonzero, so
    the library stops cleanly at the next step (the handle stays usable), and `raise_pending`
    raises the KeyboardInterrupt after the call. While the caller's own Python code runs
    inside a callback (`call_user`: a model function, a progress function), the handler
    raises at once so that slow user code is interrupted too; the callback catches it.
    A SIGINT handler that is not a Python callable (SIG_IGN, SIG_DFL) is left alone.
    """

    def __init__(self) -> None:
        self.error: BaseException | None = None  # what a callback raised, re-raised after the call
        self.interrupt: BaseException | None = None  # what the SIGINT handler raised during the call
        self._in_user = False
        self._previous: Any = None
        self._installed = False

    # ---- Ctrl-C ---------------------------------------------------------------------

    def __enter__(self) -> "CallbackState":
        if threading.current_thread() is threading.main_thread():
            previous = signal.getsignal(signal.SIGINT)
            if callable(previous):
                self._previous = previous
                signal.signal(signal.SIGINT, self._on_sigint)
                self._installed = True
        return self

    def __exit__(self, *exc_info) -> None:
        if self._installed:
            self._installed = False
            signal.signal(signal.SIGINT, self._previous)

    def _on_sigint(self, signum, frame) -> None:
        try:
            self._previous(signum, frame)
        except BaseException as error:  # noqa: BLE001 - kept, raised after the C call
            if self.interrupt is None:
                self.interrupt = error
            if self._in_user:
                raise

    @property
    def interrupted(self) -> bool:
        """True once Ctrl-C was pressed during the call: callbacks then return nonzero."""
        return self.interrupt is not None

    def call_user(self, fn: Callable, *args: Any) -> Any:
        """fn(*args), the caller's own code, which Ctrl-C may interrupt directly."""
        self._in_user = True
        try:
            return fn(*args)
        finally:
            self._in_user = False

    def keep(self, error: BaseException) -> None:
        """Records an exception raised in a callback (the first one wins)."""
        self._in_user = False
        if self.error is None:
            self.error = error

    # ---- After the call -------------------------------------------------------------

    def raise_pending(self) -> None:
        """Raises the deferred KeyboardInterrupt (first), else a callback's exception."""
        interrupt, self.interrupt = self.interrupt, None
        error, self.error = self.error, None
        if interrupt is not None:
            raise interrupt
        if error is not None:
            raise error

    reraise = raise_pending


class ProgressRelay:
    """The ddpm_progress_fn of a sampling call: always passed, so that the library polls for
    Ctrl-C between steps (see CallbackState), and relays to a Python progress callable if any.

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


def tqdm_progress(desc: str) -> tuple[Callable | None, Callable[[], None]]:
    """A progress callable that drives a tqdm bar (or None if tqdm is missing) and a closer."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None, lambda: None
    bar = None

    def progress(step, total, t, x):
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc=desc, leave=False)
        if step > 0:  # step 0 reports x_T, before any reverse step
            bar.update(1)
        return False

    def close():
        if bar is not None:
            bar.close()

    return progress, close


def attach_progress(params: _lib.ddpm_sample_params, relay: ProgressRelay | None) -> None:
    if relay is None:
        params.progress = _lib.ddpm_progress_fn()
        params.progress_user_data = None
    else:
        params.progress = relay.c_callback
        params.progress_user_data = None


def null_float_ptr():
    return _lib.FLOAT_P()


def from_pointer(ptr, count: int) -> np.ndarray:
    return np.ctypeslib.as_array(ptr, shape=(count,))



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
    """The ProgressRelay for a sampling call (always one, to poll for Ctrl-C) and a closer.

    progress: None, a callable progress(step, total, t, x) -> truthy to cancel, or True
    for a tqdm bar (silently nothing when tqdm is not installed).
    """
    close = lambda: None  # noqa: E731
    user = None
    if progress is True:
        user, close = tqdm_progress(desc)
    elif callable(progress):
        user = progress
    elif progress not in (None, False):
        raise InvalidArgumentError(f"progress must be None, True or a callable (got {progress!r})")
    return ProgressRelay(state, shape, user, snapshot_ts, snapshot_all), close


def run_sampling(state: CallbackState, params: _lib.ddpm_sample_params, full_shape: tuple[int, ...],
                 progress: Any, return_trajectory: Any, call: Callable[[np.ndarray], int]):
    """Runs one sampling call, call(out) -> status, writing into a new (n, *shape) array,
    with the progress callback (always one: it polls for Ctrl-C) and trajectory snapshots
    attached to params.

    Raises KeyboardInterrupt if Ctrl-C was pressed during the call, else re-raises an
    exception from a Python callback, then any library failure. Returns out, or
    (out, {t: x_t} from noisiest to x_0) when return_trajectory asks for snapshots.
    """
    want_all, wanted = trajectory_request(return_trajectory)
    relay, close_bar = progress_relay(state, full_shape, progress, want_all, wanted, "sampling")
    attach_progress(params, relay)
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


# ---- The variational bound ----------------------------------------------------------------

DECODERS = {"continuous": _lib.DDPM_DECODER_CONTINUOUS, "discretized": _lib.DDPM_DECODER_DISCRETIZED}


@dataclasses.dataclass
class Likelihood:
    """The variational bound of each sample, term by term (see ddpm.h, ddpm_schedule_vlb).

    total: (n,) L_T + Σ L_{t-1} + L_0.  prior: (n,) L_T.  terms: (n, T), L_0 at t = 0 and
    L_{t-1} at t >= 1.  unit: "bits/dim" (discretized decoder) or "nats/dim" (continuous).
    """

    total: np.ndarray
    prior: np.ndarray
    terms: np.ndarray
    unit: str

    def mean(self) -> float:
        """The bound averaged over the samples."""
        return float(self.total.mean())


def vlb_params(variance: str, decoder: str, bits: int, seed: int, prediction_type: str) -> _lib.ddpm_vlb_params:
    p = _lib.lib.ddpm_vlb_params_default()
    p.variance = enum_value(VARIANCES, variance, "variance")
    p.decoder = enum_value(DECODERS, decoder, "decoder")
    p.bits = as_int(bits, "bits", minimum=1, maximum=2**31 - 1)
    p.seed = as_int(seed, "seed", minimum=0, maximum=2**64 - 1)
    p.prediction_type = enum_value(OUTPUTS, prediction_type, "prediction_type")
    return p


def run_vlb(state: CallbackState, params: _lib.ddpm_vlb_params, x0: np.ndarray, num_timesteps: int, decoder: str,
            call: Callable) -> Likelihood:
    """Runs call(total_ptr, prior_ptr, terms_ptr) into new arrays; re-raises a callback's exception."""
    n = x0.shape[0]
    total, prior = np.empty(n, np.float32), np.empty(n, np.float32)
    terms = np.empty((n, num_timesteps), np.float32)
    with state:  # Ctrl-C during the call is kept and raised after it
        status = call(float_ptr(total), float_ptr(prior), float_ptr(terms))
    state.raise_pending()
    check(status)
    return Likelihood(total, prior, terms, "bits/dim" if decoder == "discretized" else "nats/dim")
