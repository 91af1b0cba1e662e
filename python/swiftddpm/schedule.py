"""NoiseSchedule: the forward process β_0..β_{T-1}, its derived tables, closed-form
noising, the posterior, single reverse steps and sampling with your own ε-model.

Timesteps are 0-based, t in 0..T-1, t = 0 the first noising step (as in diffusers), so
the tables compare one to one with a diffusers DDPMScheduler.
"""

from __future__ import annotations

import ctypes
import math
from typing import Any, Callable, Iterable

import numpy as np

from . import _common as C
from . import _lib
from .errors import InvalidArgumentError, ShapeError, check

# Table properties: name -> ddpm_table value. Names follow diffusers' DDPMScheduler.
_TABLES = {
    "betas": _lib.DDPM_TABLE_BETAS,
    "alphas": _lib.DDPM_TABLE_ALPHAS,
    "alphas_cumprod": _lib.DDPM_TABLE_ALPHAS_CUMPROD,
    "alphas_cumprod_prev": _lib.DDPM_TABLE_ALPHAS_CUMPROD_PREV,
    "sqrt_alphas_cumprod": _lib.DDPM_TABLE_SQRT_ALPHAS_CUMPROD,
    "sqrt_one_minus_alphas_cumprod": _lib.DDPM_TABLE_SQRT_ONE_MINUS_ALPHAS_CUMPROD,
    "sqrt_recip_alphas": _lib.DDPM_TABLE_SQRT_RECIP_ALPHAS,
    "posterior_variance": _lib.DDPM_TABLE_POSTERIOR_VARIANCE,
    "posterior_log_variance_clipped": _lib.DDPM_TABLE_POSTERIOR_LOG_VARIANCE_CLIPPED,
    "posterior_mean_coef1": _lib.DDPM_TABLE_POSTERIOR_MEAN_COEF_X0,
    "posterior_mean_coef2": _lib.DDPM_TABLE_POSTERIOR_MEAN_COEF_XT,
}


def _paired_rows(x0: Any, other: Any, t: Any, other_name: str):
    """x0 and a second array of the same (B, ...) shape, and t as (B,) int32 (one int is
    broadcast): the arguments of add_noise and posterior. Returns (x0, other, t, B, dim)."""
    x0 = C.batch_array(x0, "x0")
    other = C.float32_array(other, other_name)
    C.same_shape(other, x0, other_name, "x0")
    B = x0.shape[0]
    return x0, other, C.int32_vector(t, B, "t", broadcast=True), B, x0.size // B


class NoiseSchedule(C.ClosesOnExit):
    """A forward-process noise schedule (owns a ddpm_schedule handle).

    Build one with `linear`, `cosine`, `sigmoid` or `custom`; `Model.schedule` returns a
    copy of a model's. Use it as a context manager or call `close()` (idempotent).
    """

    def __init__(self, _handle: Any, _description: str = "custom") -> None:
        # Private: use the classmethods. Takes ownership of a ddpm_schedule* handle.
        if not isinstance(_handle, _lib.ddpm_schedule_p) or not _handle:
            raise InvalidArgumentError("use NoiseSchedule.linear/cosine/sigmoid/custom to build a schedule")
        self._handle = _handle
        self._description = _description
        self._tables: dict[str, np.ndarray] = {}

    # ---- Construction --------------------------------------------------------------

    @classmethod
    def _create(cls, params: _lib.ddpm_schedule_params, description: str) -> "NoiseSchedule":
        handle = _lib.ddpm_schedule_p()
        check(_lib.lib.ddpm_schedule_create(ctypes.byref(params), ctypes.byref(handle)))
        return cls(handle, description)

    @classmethod
    def linear(cls, num_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02,
               scale_to_steps: bool = False) -> "NoiseSchedule":
        """β linear from beta_start to beta_end over T steps (Ho et al. 2020).

        scale_to_steps multiplies both ends by 1000/T (improved-DDPM's rescaling), so a
        short schedule reaches the same total noise as T = 1000.
        """
        p = _lib.schedule_params_default()
        p.kind = _lib.DDPM_SCHEDULE_LINEAR
        p.num_timesteps = C.as_int(num_timesteps, "num_timesteps")
        p.beta_start, p.beta_end = float(beta_start), float(beta_end)
        p.scale_to_steps = 1 if scale_to_steps else 0
        return cls._create(p, f"linear(T={num_timesteps}, beta_start={beta_start:g}, beta_end={beta_end:g}"
                              f"{', scale_to_steps=True' if scale_to_steps else ''})")

    @classmethod
    def cosine(cls, num_timesteps: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> "NoiseSchedule":
        """Nichol & Dhariwal's cosine schedule: ᾱ(t) = f(t)/f(0), f(t) = cos²(((t/T + s)/(1 + s))·π/2),
        β clipped at max_beta."""
        p = _lib.schedule_params_default()
        p.kind = _lib.DDPM_SCHEDULE_COSINE
        p.num_timesteps = C.as_int(num_timesteps, "num_timesteps")
        p.cosine_s, p.max_beta = float(s), float(max_beta)
        return cls._create(p, f"cosine(T={num_timesteps}, s={s:g}, max_beta={max_beta:g})")

    @classmethod
    def sigmoid(cls, num_timesteps: int = 100, beta_min: float = 0.0, beta_max: float = 0.1,
                start: float = -6.0, end: float = 6.0) -> "NoiseSchedule":
        """β_t = β_min + (β_max − β_min)·sigmoid(linspace(start, end, T))."""
        p = _lib.schedule_params_default()
        p.kind = _lib.DDPM_SCHEDULE_SIGMOID
        p.num_timesteps = C.as_int(num_timesteps, "num_timesteps")
        p.beta_start, p.beta_end = float(beta_min), float(beta_max)
        p.sigmoid_start, p.sigmoid_end = float(start), float(end)
        return cls._create(p, f"sigmoid(T={num_timesteps}, beta_min={beta_min:g}, beta_max={beta_max:g}, "
                              f"start={start:g}, end={end:g})")

    @classmethod
    def custom(cls, betas: Iterable[float]) -> "NoiseSchedule":
        """A schedule from T given β values, each finite and in (0, 1)."""
        arr = np.ascontiguousarray(np.asarray(betas, dtype=np.float64))
        if arr.ndim != 1:
            raise ShapeError(f"betas must be a 1-D sequence; got shape {arr.shape}")
        handle = _lib.ddpm_schedule_p()
        check(_lib.lib.ddpm_schedule_create_custom(arr.ctypes.data_as(_lib.DOUBLE_P), arr.size, ctypes.byref(handle)))
        return cls(handle, f"custom(T={arr.size})")

    # ---- Lifetime ------------------------------------------------------------------

    def close(self) -> None:
        """Frees the library handle; later calls raise ClosedError. Idempotent."""
        handle, self._handle = getattr(self, "_handle", None), None
        if handle and _lib is not None and _lib.lib is not None:
            _lib.lib.ddpm_schedule_free(handle)

    @property
    def closed(self) -> bool:
        return not self._handle

    def _h(self):
        return C.require_open(self._handle, "NoiseSchedule")

    def __repr__(self) -> str:
        if self.closed:
            return f"NoiseSchedule.{self._description} [closed]"
        return f"NoiseSchedule.{self._description}"

    # ---- Tables --------------------------------------------------------------------

    @property
    def num_timesteps(self) -> int:
        """T, the number of diffusion steps."""
        return int(_lib.lib.ddpm_schedule_num_timesteps(self._h()))

    def __len__(self) -> int:
        return self.num_timesteps

    def table(self, name: str) -> np.ndarray:
        """One derived table by name (see the properties), as a read-only float64 (T,) array."""
        if name not in _TABLES:
            raise InvalidArgumentError(f"table must be one of {sorted(_TABLES)} (got {name!r})")
        handle = self._h()
        if name not in self._tables:
            T = self.num_timesteps
            out = np.empty(T, dtype=np.float64)
            check(_lib.lib.ddpm_schedule_table(handle, _TABLES[name], out.ctypes.data_as(_lib.DOUBLE_P), T))
            out.flags.writeable = False
            self._tables[name] = out
        return self._tables[name]

    betas = property(lambda self: self.table("betas"), doc="β_t, (T,)")
    alphas = property(lambda self: self.table("alphas"), doc="α_t = 1 − β_t, (T,)")
    alphas_cumprod = property(lambda self: self.table("alphas_cumprod"), doc="ᾱ_t = Π_{s≤t} α_s, (T,)")
    alphas_cumprod_prev = property(lambda self: self.table("alphas_cumprod_prev"), doc="ᾱ_{t−1} with ᾱ_{−1} = 1, (T,)")
    sqrt_alphas_cumprod = property(lambda self: self.table("sqrt_alphas_cumprod"), doc="√ᾱ_t, (T,)")
    sqrt_one_minus_alphas_cumprod = property(lambda self: self.table("sqrt_one_minus_alphas_cumprod"),
                                             doc="√(1 − ᾱ_t), (T,)")
    sqrt_recip_alphas = property(lambda self: self.table("sqrt_recip_alphas"), doc="1/√α_t, (T,)")
    posterior_variance = property(lambda self: self.table("posterior_variance"),
                                  doc="β̃_t = (1 − ᾱ_{t−1})/(1 − ᾱ_t)·β_t, (T,); 0 at t = 0")
    posterior_log_variance_clipped = property(lambda self: self.table("posterior_log_variance_clipped"),
                                              doc="log β̃_t with β̃_0 replaced by β̃_1, (T,)")
    posterior_mean_coef1 = property(lambda self: self.table("posterior_mean_coef1"),
                                    doc="coefficient of x_0 in the posterior mean: √ᾱ_{t−1}·β_t/(1 − ᾱ_t), (T,)")
    posterior_mean_coef2 = property(lambda self: self.table("posterior_mean_coef2"),
                                    doc="coefficient of x_t in the posterior mean: √α_t·(1 − ᾱ_{t−1})/(1 − ᾱ_t), (T,)")

    # ---- Forward process and posterior ---------------------------------------------

    def add_noise(self, x0: Any, noise: Any, t: Any) -> np.ndarray:
        """x_t = √ᾱ_t·x0 + √(1 − ᾱ_t)·noise (q(x_t|x_0) sampled with the given noise).

        x0, noise: (B, ...) with the same shape; t: (B,) ints in 0..T-1 or one int for
        every row. Returns float32 with x0's shape.
        """
        handle = self._h()
        x0, noise, tt, B, dim = _paired_rows(x0, noise, t, "noise")
        out = np.empty_like(x0)
        check(_lib.lib.ddpm_schedule_add_noise(handle, C.float_ptr(x0), C.float_ptr(noise), C.int32_ptr(tt),
                                               B, dim, C.float_ptr(out), out.size))
        return out

    def posterior(self, x0: Any, x_t: Any, t: Any) -> tuple[np.ndarray, np.ndarray]:
        """The posterior q(x_{t−1}|x_t, x_0) = N(mean, variance·I) for each row.

        x0, x_t: (B, ...) with the same shape; t: (B,) or one int.
        Returns (mean with x0's shape, variance (B,)), float32.
        """
        handle = self._h()
        x0, x_t, tt, B, dim = _paired_rows(x0, x_t, t, "x_t")
        mean = np.empty_like(x0)
        variance = np.empty(B, dtype=np.float32)
        check(_lib.lib.ddpm_schedule_posterior(handle, C.float_ptr(x0), C.float_ptr(x_t), C.int32_ptr(tt), B, dim,
                                               C.float_ptr(mean), C.float_ptr(variance), mean.size))
        return mean, variance

    # ---- Reverse process -----------------------------------------------------------

    def step(self, eps: Any, t: int, x_t: Any, noise: Any = None, *, method: str = "ddpm",
             prev_t: int | None = None, variance: str = "beta", eta: float = 0.0, clip: Any = None) -> np.ndarray:
        """One reverse step x_t -> x_{prev_t} given the predicted noise eps (a scheduler's `step`).

        Args:
            eps, x_t: arrays of the same shape (any shape, e.g. (B, D)).
            t: the current timestep (0..T-1), shared by every element.
            noise: z ~ N(0, I) with x_t's shape; only needed when the step adds noise
                (DDPM with prev_t >= 0, DDIM with eta > 0).
            method: "ddpm" (ancestral, `variance` "beta" for σ² = β_t or "posterior" for
                σ² = β̃_t) or "ddim" (`eta` in [0, 1]).
            prev_t: the target timestep, -1 for x_0; default t - 1.
            clip: None, True for (-1, 1), or (lo, hi): clip the predicted x_0.
        Returns x_prev as float32 with x_t's shape.
        """
        handle = self._h()
        t = C.as_int(t, "t")
        prev_t = t - 1 if prev_t is None else C.as_int(prev_t, "prev_t")
        x_t = C.float32_array(x_t, "x_t")
        eps = C.float32_array(eps, "eps")
        C.same_shape(eps, x_t, "eps", "x_t")
        noise_ptr = C.null_float_ptr()
        if noise is not None:
            noise = C.float32_array(noise, "noise")
            C.same_shape(noise, x_t, "noise", "x_t")
            noise_ptr = C.float_ptr(noise)
        params = C.sample_params(method=method, eta=eta, variance=variance, clip=clip)
        out = np.empty_like(x_t)
        check(_lib.lib.ddpm_schedule_step(handle, ctypes.byref(params), t, prev_t, C.float_ptr(eps),
                                          C.float_ptr(x_t), noise_ptr, C.float_ptr(out), out.size))
        return out

    def sample(self, eps_fn: Callable[[np.ndarray, int, np.ndarray | None], Any], n: int, shape: Any, *,
               method: str = "ddpm", steps: int = 0, eta: float = 0.0, variance: str = "beta", clip: Any = None,
               seed: int = 0, labels: Any = None, progress: Any = None, return_trajectory: Any = False):
        """Draws n samples with your own ε-model: x_T ~ N(0, I), then reverse steps to x_0.

        Args:
            eps_fn: eps_fn(x_t, t, labels) -> ε̂ with x_t's shape. x_t is a float32
                (n, *shape) array (a copy, yours to keep), t an int, labels the int32
                (n,) array or None. An exception inside eps_fn stops sampling and is
                re-raised here.
            n: number of samples.  shape: the shape of one sample (int or tuple).
            method, steps, eta, variance, clip, seed: as in `Model.sample`.
            labels: (n,) ints passed through to eps_fn, or None.
            progress: None, True (tqdm bar) or progress(step, total, t, x) returning
                truthy to cancel (raises CancelledError).
            return_trajectory: False, True or a list of t; see `Model.sample`.
        Returns (n, *shape) float32, or (samples, {t: x_t}) with return_trajectory.
        """
        handle = self._h()
        n = C.as_int(n, "n", minimum=1)
        sample_shape = _shape_tuple(shape)
        dim = math.prod(sample_shape)
        full_shape = (n, *sample_shape)
        label_arr = None if labels is None else C.int32_vector(labels, n, "labels")
        params = C.sample_params(method=method, steps=steps, eta=eta, variance=variance, clip=clip, seed=seed)
        want_all, wanted = C.trajectory_request(return_trajectory)
        state = C.CallbackState()
        relay, close_bar = C.progress_relay(state, full_shape, progress, want_all, wanted, "sampling")
        C.attach_progress(params, relay)

        def call_eps(_user_data, eps_out, x_ptr, batch, d, t, _labels_ptr):
            try:
                x = C.from_pointer(x_ptr, batch * d).reshape(full_shape).copy()
                eps = np.asarray(eps_fn(x, int(t), label_arr), dtype=np.float32)
                if eps.shape != full_shape and eps.shape != (batch, d):
                    raise ShapeError(f"eps_fn returned shape {eps.shape}, expected {full_shape}")
                C.from_pointer(eps_out, batch * d)[:] = eps.reshape(-1)
                return 0
            except BaseException as error:  # noqa: BLE001 - re-raised after the C call
                state.error = error
                return 1

        c_eps = _lib.ddpm_eps_fn(call_eps)
        out = np.empty(full_shape, dtype=np.float32)
        try:
            status = _lib.lib.ddpm_schedule_sample(handle, ctypes.byref(params), c_eps, None, C.int32_ptr(label_arr),
                                                   n, dim, C.float_ptr(out), out.size)
        finally:
            close_bar()
        state.reraise()
        check(status)
        if want_all or wanted is not None:
            return out, dict(sorted((relay.snapshots if relay else {}).items(), reverse=True))
        return out


def _shape_tuple(shape: Any) -> tuple[int, ...]:
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (int(shape),)
    try:
        result = tuple(C.as_int(s, "shape entries", minimum=1) for s in shape)
    except TypeError:
        raise InvalidArgumentError(f"shape must be an int or a tuple of ints (got {shape!r})") from None
    if not result:
        raise InvalidArgumentError("shape must have at least one dimension")
    return result
