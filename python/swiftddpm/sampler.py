"""Sampler: one reverse process stepped from outside, like a diffusers scheduler (owns a
ddpm_sampler handle). You run the model; the library does the step.

    with sd.Sampler(schedule, n=16, shape=2, method="ddim", steps=50, seed=0) as sampler:
        x = sampler.init_noise()                      # x_T from the seed
        for t in sampler.timesteps:                   # noisiest first
            x, x0 = sampler.step(model.predict(x, t), x)

init_noise and the steps draw from the seed exactly as NoiseSchedule.sample and
Model.sample do, so the same seed and options give the same samples, bit for bit.
"""

from __future__ import annotations

import ctypes
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _lib
from ._arrays import batch_array, elements, float32_array, float_ptr, int32_ptr, null_float_ptr, same_shape, shape_tuple
from ._handles import HandleOwner, handle_of
from ._sample_params import sample_params
from ._scalars import as_int, as_int64_count
from .errors import InvalidArgumentError, ShapeError, check

if TYPE_CHECKING:  # for the annotations only: schedule.py imports this module (NoiseSchedule.step)
    from .schedule import NoiseSchedule


def _schedule_handle(schedule: Any):
    """The live ddpm_schedule* of a NoiseSchedule (InvalidArgumentError for anything else)."""
    return handle_of(schedule, _lib.ddpm_schedule_p, "schedule", "NoiseSchedule")


class Sampler(HandleOwner):
    """A reverse process for n samples of `shape`, over a copy of `schedule`.

    Args:
        schedule: the NoiseSchedule (the sampler keeps its own copy).
        n: number of samples in the batch.  shape: the shape of one sample (int or tuple).
        method, steps, eta, variance, clip, seed: as in `Model.sample`.
        timesteps: your own timesteps, strictly decreasing in 0..T-1 (overrides steps);
            the step from the last one goes to x_0.
        prediction_type: what the model outputs passed to `step` are, "eps" or "x0".
        solver_options: as in `Model.sample` (spacing, solver_order, corrector_steps, ...).

    `timesteps` holds the timestep of every step's model evaluation: one per timestep, except
    "langevin" (corrector_steps per timestep) and "pc" (corrector_steps + 1 per timestep).
    """

    def __init__(self, schedule: NoiseSchedule, n: int, shape: Any, *, method: str = "ddpm", steps: int = 0,
                 eta: float = 0.0, variance: str = "beta", clip: Any = None, seed: int = 0, timesteps: Any = None,
                 prediction_type: str = "eps", **solver_options: Any) -> None:
        schedule_handle = _schedule_handle(schedule)
        self._n = as_int64_count(n, "n")
        self._shape = shape_tuple(shape)
        dim = elements(self._n, self._shape)
        params = sample_params(method=method, steps=steps, eta=eta, variance=variance, clip=clip, seed=seed,
                               timesteps=timesteps, prediction_type=prediction_type, **solver_options)
        handle = _lib.ddpm_sampler_p()
        check(_lib.lib.ddpm_sampler_create(schedule_handle, ctypes.byref(params), self._n, dim,
                                           ctypes.byref(handle)))
        self._handle = handle
        steps_total = int(_lib.lib.ddpm_sampler_num_steps(handle))
        self._timesteps = np.empty(steps_total, dtype=np.int32)
        check(_lib.lib.ddpm_sampler_timesteps(handle, int32_ptr(self._timesteps), steps_total))
        self._timesteps.flags.writeable = False

    # ---- Lifetime ------------------------------------------------------------------

    _free = "ddpm_sampler_free"
    _handle_type = _lib.ddpm_sampler_p

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"next t={self.timestep}"
        return f"Sampler(n={self._n}, shape={self._shape}, steps={len(self._timesteps)}, {state})"

    # ---- Stepping ------------------------------------------------------------------

    @property
    def timesteps(self) -> np.ndarray:
        """The timesteps the steps start from, noisiest first: read-only int32 (S,)."""
        return self._timesteps

    @property
    def num_steps(self) -> int:
        """S, the number of reverse steps."""
        return len(self._timesteps)

    @property
    def timestep(self) -> int:
        """The timestep of the x the next step expects; -1 once every step is taken."""
        return int(_lib.lib.ddpm_sampler_timestep(self._h()))

    @property
    def batch_shape(self) -> tuple[int, ...]:
        """(n, *shape), the shape of x and of every model output."""
        return (self._n, *self._shape)

    @property
    def step_adds_noise(self) -> bool:
        """Whether the next step adds noise (and so would use a `noise` argument)."""
        adds = int(_lib.lib.ddpm_sampler_step_adds_noise(self._h()))
        if adds < 0:
            raise InvalidArgumentError("the sampler has taken all its steps")
        return bool(adds)

    def init_noise(self) -> np.ndarray:
        """x_T ~ N(0, I) from the seed, (n, *shape) float32: where Model.sample starts."""
        x = np.empty(self.batch_shape, dtype=np.float32)
        check(_lib.lib.ddpm_sampler_init_noise(self._h(), float_ptr(x), x.size))
        return x

    def step(self, model_output: Any, x: Any, noise: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """One reverse step from t = `timestep` to the next timestep (x_0 after the last).

        Args:
            model_output: the model's output at (x, t), of this sampler's prediction_type.
            x: x_t, (n, *shape) or (n, prod(shape)).
            noise: z ~ N(0, I) with x's shape to use instead of the sampler's own draw.
        Returns (x_prev, x0): new float32 arrays with x's shape; x0 is the predicted x̂_0
        the step used (after clipping). x itself is not changed.
        """
        handle = self._h()
        x_prev = np.array(batch_array(x, "x", self._shape), dtype=np.float32, order="C", copy=True)
        if x_prev.shape[0] != self._n:
            raise ShapeError(f"x has {x_prev.shape[0]} rows; this sampler steps batches of n = {self._n}")
        output = float32_array(model_output, "model_output")
        same_shape(output, x_prev, "model_output", "x")
        noise_ptr = null_float_ptr()
        if noise is not None:
            noise = float32_array(noise, "noise")
            same_shape(noise, x_prev, "noise", "x")
            noise_ptr = float_ptr(noise)
        x0 = np.empty_like(x_prev)
        check(_lib.lib.ddpm_sampler_step(handle, float_ptr(output), float_ptr(x_prev), noise_ptr,
                                         float_ptr(x0), x0.size))
        return x_prev, x0


class Scheduler:
    """A diffusers-style scheduler over a NoiseSchedule: `set_timesteps`, `timesteps`, and
    `step(model_output, t, x) -> (x_prev, x0)`; the batch shape is taken from the first step.

        scheduler = sd.Scheduler(schedule, method="dpm_solver++", seed=0)
        scheduler.set_timesteps(20)
        x = scheduler.init_noise((16, 2))
        for t in scheduler.timesteps:
            x, x0 = scheduler.step(my_model(x, t), t, x)

    Each `set_timesteps` starts a new trajectory. Options are those of `Sampler`.
    """

    def __init__(self, schedule: NoiseSchedule, **options: Any) -> None:
        _schedule_handle(schedule)
        if "steps" in options or "timesteps" in options:
            raise TypeError("pass the steps or timesteps to set_timesteps")
        self._schedule = schedule
        self._options = options
        self._steps: dict[str, Any] = {"steps": 0}
        self._sampler: Sampler | None = None
        self._timesteps: np.ndarray | None = None
        self._unset_reason = ""
        try:
            self._timesteps = self._probe().timesteps
        except InvalidArgumentError as error:
            # The default count (T for "ddpm" and "pc") may not fit the spacing: "leading" with
            # steps_offset 1 reaches timestep T, as in diffusers. Check every other option with one
            # step (raising what is wrong there), and wait for set_timesteps.
            with Sampler(self._schedule, 1, 1, steps=1, **self._options):
                pass
            self._unset_reason = str(error)

    @classmethod
    def from_diffusers(cls, source: Any, **overrides: Any) -> "Scheduler":
        """A Scheduler from a diffusers scheduler_config.json (a file, a folder or a dict):
        DDPMScheduler, DDIMScheduler or DPMSolverMultistepScheduler, with `overrides` (seed,
        eta, ...) on top; see swiftddpm.diffusers. `schedule` is the NoiseSchedule it made."""
        from .diffusers import read_scheduler_config  # diffusers.py builds on this module

        return read_scheduler_config(source).scheduler(**overrides)

    @property
    def schedule(self) -> NoiseSchedule:
        """The NoiseSchedule this scheduler samples over."""
        return self._schedule

    def _probe(self) -> Sampler:
        with Sampler(self._schedule, 1, 1, **self._steps, **self._options) as probe:
            return probe

    def set_timesteps(self, num_inference_steps: int | None = None, *, timesteps: Any = None) -> None:
        """Chooses the timesteps: `num_inference_steps` spread by the `spacing` option, or your own."""
        self._steps = {"steps": 0 if num_inference_steps is None else num_inference_steps, "timesteps": timesteps}
        self._timesteps = self._probe().timesteps
        self.close()

    @property
    def timesteps(self) -> np.ndarray:
        """The timestep of every step's model evaluation, in order (read-only int32)."""
        if self._timesteps is None:
            raise InvalidArgumentError("call set_timesteps first: the default number of steps does not fit these "
                                       f"options ({self._unset_reason})")
        return self._timesteps

    def _sampler_for(self, shape: tuple[int, ...]) -> Sampler:
        if len(shape) < 2:
            raise ShapeError(f"x must be a batch (n, *sample_shape); got shape {shape}")
        if self._sampler is None or self._sampler.closed or self._sampler.batch_shape != shape:
            self.close()
            self._sampler = Sampler(self._schedule, shape[0], shape[1:] or 1, **self._steps, **self._options)
        return self._sampler

    def init_noise(self, batch_shape: Any) -> np.ndarray:
        """x_T ~ N(0, I) from the seed for a batch of this shape (n, *sample_shape)."""
        self.timesteps  # noqa: B018 - raises until set_timesteps when the default steps do not fit
        return self._sampler_for(shape_tuple(batch_shape)).init_noise()

    def step(self, model_output: Any, t: int, x: Any, noise: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """The step at timestep t (which must be the next one): returns (x_prev, x0)."""
        x = float32_array(x, "x")
        self.timesteps  # noqa: B018 - raises until set_timesteps when the default steps do not fit
        sampler = self._sampler_for(x.shape)
        expected = sampler.timestep
        if as_int(t, "t") != expected:
            raise InvalidArgumentError(f"t = {t}, but the next step of this trajectory is at t = {expected}"
                                       " (call set_timesteps to start again)")
        x_prev, x0 = sampler.step(model_output, x, noise)
        if sampler.timestep < 0:
            self.close()
        return x_prev, x0

    def close(self) -> None:
        if self._sampler is not None:
            self._sampler.close()
            self._sampler = None
