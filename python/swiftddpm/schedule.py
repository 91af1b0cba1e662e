"""NoiseSchedule: the forward process β_0..β_{T-1}, its derived tables, closed-form
noising, the posterior, single reverse steps and sampling with your own model.

Timesteps are 0-based, t in 0..T-1, t = 0 the first noising step (as in diffusers), so
the tables compare one to one with a diffusers DDPMScheduler.
"""

from __future__ import annotations

import ctypes
from typing import Any, Callable, Iterable

import numpy as np

from . import _lib
from ._arrays import (batch_array, elements, float32_array, float_ptr, from_pointer, int32_ptr, int32_vector, real_array,
                      same_shape, shape_tuple)
from ._callbacks import CallbackState
from ._conditions import cond_ref
from ._handles import HandleOwner
from ._likelihood import Likelihood, run_vlb, vlb_params
from ._sample_params import fresh_seed, sample_params
from ._sampling import run_sampling
from ._scalars import as_int32, as_int64_count
from .config import ScheduleConfig
from .errors import InvalidArgumentError, ShapeError, check
from .sampler import Sampler

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


def _table_property(name: str, doc: str) -> property:
    """A read-only property returning the schedule's table `name`, float64 (T,)."""

    def get(self: "NoiseSchedule") -> np.ndarray:
        return self.table(name)

    get.__name__ = name
    return property(get, doc=doc)


def _paired_rows(x0: Any, other: Any, t: Any, other_name: str):
    """x0 and a second array of the same (B, ...) shape, and t as (B,) int32 (one int is
    broadcast): the arguments of add_noise and posterior. Returns (x0, other, t, B, dim)."""
    x0 = batch_array(x0, "x0")
    other = float32_array(other, other_name)
    same_shape(other, x0, other_name, "x0")
    B = x0.shape[0]
    return x0, other, int32_vector(t, B, "t", broadcast=True), B, x0.size // B


class NoiseSchedule(HandleOwner):
    """A forward-process noise schedule (owns a ddpm_schedule handle).

    Build one with `linear`, `scaled_linear`, `cosine`, `sigmoid`, `custom` or `from_config`
    (or `swiftddpm.diffusers.read_scheduler_config` from a diffusers scheduler_config.json); `Model.schedule`
    returns a copy of a model's. `params` reads back how it was made. Use it as a context
    manager or call `close()` (idempotent).
    """

    def __init__(self, _handle: Any) -> None:
        # Private: use the classmethods. Takes ownership of a ddpm_schedule* handle.
        if not isinstance(_handle, _lib.ddpm_schedule_p) or not _handle:
            raise InvalidArgumentError("use NoiseSchedule.linear/scaled_linear/cosine/sigmoid/custom/from_config "
                                       "to build a schedule")
        self._handle = _handle
        self._tables: dict[str, np.ndarray] = {}
        self.last_sample_seed: int | None = None  # the seed of the last sample() call
        self._description = _describe(self.params)  # kept for repr after close()

    # ---- Construction --------------------------------------------------------------

    @classmethod
    def from_config(cls, config: ScheduleConfig) -> "NoiseSchedule":
        """A schedule from a ScheduleConfig (ddpm_schedule_params); kind "custom" is refused
        (use `custom`)."""
        if not isinstance(config, ScheduleConfig):
            raise InvalidArgumentError(f"config must be a ScheduleConfig (got {type(config).__name__})")
        params = config.to_c()
        handle = _lib.ddpm_schedule_p()
        check(_lib.lib.ddpm_schedule_create(ctypes.byref(params), ctypes.byref(handle)))
        return cls(handle)

    @classmethod
    def linear(cls, num_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02,
               scale_to_steps: bool = False) -> "NoiseSchedule":
        """β linear from beta_start to beta_end over T steps (Ho et al. 2020).

        scale_to_steps multiplies both ends by 1000/T (improved-DDPM's rescaling), so a
        short schedule reaches the same total noise as T = 1000.
        """
        return cls.from_config(ScheduleConfig(kind="linear", num_timesteps=num_timesteps, beta_start=beta_start,
                                              beta_end=beta_end, scale_to_steps=1 if scale_to_steps else 0))

    @classmethod
    def scaled_linear(cls, num_timesteps: int = 1000, beta_start: float = 0.00085,
                      beta_end: float = 0.012) -> "NoiseSchedule":
        """√β linear from √beta_start to √beta_end (diffusers' "scaled_linear", the latent
        diffusion schedule): β_t = (√β_start + (√β_end − √β_start)·t/(T−1))²."""
        return cls.from_config(ScheduleConfig(kind="scaled_linear", num_timesteps=num_timesteps,
                                              beta_start=beta_start, beta_end=beta_end))

    @classmethod
    def cosine(cls, num_timesteps: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> "NoiseSchedule":
        """Nichol & Dhariwal's cosine schedule: ᾱ(t) = f(t)/f(0), f(t) = cos²(((t/T + s)/(1 + s))·π/2),
        β clipped at max_beta."""
        return cls.from_config(ScheduleConfig(kind="cosine", num_timesteps=num_timesteps, cosine_s=s,
                                              max_beta=max_beta))

    @classmethod
    def sigmoid(cls, num_timesteps: int = 100, beta_min: float = 0.0, beta_max: float = 0.1,
                start: float = -6.0, end: float = 6.0) -> "NoiseSchedule":
        """β_t = β_min + (β_max − β_min)·sigmoid(linspace(start, end, T))."""
        return cls.from_config(ScheduleConfig(kind="sigmoid", num_timesteps=num_timesteps, beta_start=beta_min,
                                              beta_end=beta_max, sigmoid_start=start, sigmoid_end=end))

    @classmethod
    def custom(cls, betas: Iterable[float]) -> "NoiseSchedule":
        """A schedule from T given β values, each finite and in (0, 1)."""
        arr = real_array(betas, "betas", np.float64)
        if arr.ndim != 1:
            raise ShapeError(f"betas must be a 1-D sequence; got shape {arr.shape}")
        handle = _lib.ddpm_schedule_p()
        check(_lib.lib.ddpm_schedule_create_custom(arr.ctypes.data_as(_lib.DOUBLE_P), arr.size, ctypes.byref(handle)))
        return cls(handle)

    # ---- Lifetime ------------------------------------------------------------------

    _free = "ddpm_schedule_free"
    _handle_type = _lib.ddpm_schedule_p

    def __repr__(self) -> str:
        if self.closed:
            return f"NoiseSchedule.{self._description} [closed]"
        return f"NoiseSchedule.{self._description}"

    # ---- How it was made -----------------------------------------------------------

    @property
    def params(self) -> ScheduleConfig:
        """How the schedule was made (ddpm_schedule_get_params): its kind, T and that kind's
        parameters. A linear schedule made with scale_to_steps reports the scaled ends and
        scale_to_steps = 0 (the same β); a custom one reports kind "custom" (its β are in
        `betas`)."""
        p = _lib.lib.ddpm_schedule_params_default()
        check(_lib.lib.ddpm_schedule_get_params(self._h(), ctypes.byref(p)))
        return ScheduleConfig.from_c(p)

    @property
    def kind(self) -> str:
        """"linear", "scaled_linear", "cosine", "sigmoid" or "custom"."""
        return self.params.kind

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

    betas = _table_property("betas", doc="β_t, (T,)")
    alphas = _table_property("alphas", doc="α_t = 1 − β_t, (T,)")
    alphas_cumprod = _table_property("alphas_cumprod", doc="ᾱ_t = Π_{s≤t} α_s, (T,)")
    alphas_cumprod_prev = _table_property("alphas_cumprod_prev", doc="ᾱ_{t−1} with ᾱ_{−1} = 1, (T,)")
    sqrt_alphas_cumprod = _table_property("sqrt_alphas_cumprod", doc="√ᾱ_t, (T,)")
    sqrt_one_minus_alphas_cumprod = _table_property("sqrt_one_minus_alphas_cumprod", doc="√(1 − ᾱ_t), (T,)")
    sqrt_recip_alphas = _table_property("sqrt_recip_alphas", doc="1/√α_t, (T,)")
    posterior_variance = _table_property("posterior_variance",
                                         doc="β̃_t = (1 − ᾱ_{t−1})/(1 − ᾱ_t)·β_t, (T,); 0 at t = 0")
    posterior_log_variance_clipped = _table_property("posterior_log_variance_clipped",
                                                     doc="log β̃_t with β̃_0 replaced by β̃_1, (T,)")
    posterior_mean_coef1 = _table_property("posterior_mean_coef1",
                                           doc="coefficient of x_0 in the posterior mean: √ᾱ_{t−1}·β_t/(1 − ᾱ_t), (T,)")
    posterior_mean_coef2 = _table_property("posterior_mean_coef2",
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
        check(_lib.lib.ddpm_schedule_add_noise(handle, float_ptr(x0), float_ptr(noise), int32_ptr(tt),
                                               B, dim, float_ptr(out), out.size))
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
        check(_lib.lib.ddpm_schedule_posterior(handle, float_ptr(x0), float_ptr(x_t), int32_ptr(tt), B, dim,
                                               float_ptr(mean), float_ptr(variance), mean.size))
        return mean, variance

    # ---- Reverse process -----------------------------------------------------------

    def step(self, eps: Any, t: int, x_t: Any, noise: Any = None, *, method: str = "ddpm",
             prev_t: int | None = None, variance: str = "beta", eta: float = 0.0, clip: Any = None,
             **solver_options: Any) -> np.ndarray:
        """One reverse step x_t -> x_{prev_t} given the predicted noise eps: a Sampler over the
        timesteps [t, prev_t] (or [t] when prev_t = -1), stepped once.

        Args:
            eps, x_t: arrays of the same shape (any shape, e.g. (B, D)).
            t: the current timestep (0..T-1), shared by every element.
            noise: z ~ N(0, I) with x_t's shape; required exactly when the step adds noise
                (DDPM with prev_t >= 0, DDIM with eta > 0 and prev_t >= 0).
            method: "ddpm" (ancestral, `variance` "beta" for σ² = β_t or "posterior" for
                σ² = β̃_t) or "ddim" (`eta` in [0, 1]).
            prev_t: the target timestep, -1 for x_0; default t - 1.
            clip: None, True for (-1, 1), or (lo, hi): clip the predicted x_0.
            solver_options: as in `Model.sample` (e.g. use_clipped_model_output, thresholding).
        Returns x_prev as float32 with x_t's shape.
        """
        self._h()
        t = as_int32(t, "t")
        prev_t = t - 1 if prev_t is None else as_int32(prev_t, "prev_t")
        if not -1 <= prev_t < t:
            raise InvalidArgumentError(f"prev_t must be in -1..t-1 (got prev_t = {prev_t} with t = {t})")
        x_t = float32_array(x_t, "x_t")
        eps = float32_array(eps, "eps")
        same_shape(eps, x_t, "eps", "x_t")
        if noise is not None:
            noise = float32_array(noise, "noise")
            same_shape(noise, x_t, "noise", "x_t")
        flat = (1, x_t.size)  # one row: the step is elementwise
        with Sampler(self, 1, flat[1:], method=method, variance=variance, eta=eta, clip=clip,
                     timesteps=[t] if prev_t == -1 else [t, prev_t], **solver_options) as sampler:
            if noise is None and sampler.step_adds_noise:
                # A Sampler would draw its own z here; a single step asks for it instead.
                raise InvalidArgumentError(f"this step adds noise (method {method!r}, eta {eta}, prev_t {prev_t}): "
                                           "pass noise, z ~ N(0, I) with x_t's shape")
            x_prev, _ = sampler.step(eps.reshape(flat), x_t.reshape(flat),
                                     None if noise is None else noise.reshape(flat))
        return x_prev.reshape(x_t.shape)

    def sample(self, model_fn: Callable[[np.ndarray, int, Any], Any], n: int, shape: Any, *,
               method: str = "ddpm", steps: int = 0, eta: float = 0.0, variance: str = "beta", clip: Any = None,
               seed: int | None = None, timesteps: Any = None, prediction_type: str = "eps", labels: Any = None,
               cond: Any = None, lengths: Any = None,
               progress: Any = None, return_trajectory: Any = False,
               **solver_options: Any) -> np.ndarray | tuple[np.ndarray, dict[int, np.ndarray]]:
        """Draws n samples with your own model: x_T ~ N(0, I), then reverse steps to x_0.

        Args:
            model_fn: model_fn(x_t, t, cond) -> the model output with x_t's shape: ε̂, or
                x̂_0 with prediction_type="x0". x_t is a float32 (n, *shape) array (a copy,
                yours to keep), t an int, cond the condition of the rows as given (see cond),
                or None. An exception inside model_fn stops sampling and is re-raised here.
            n: number of samples.  shape: the shape of one sample (int or tuple).
            method, steps, eta, variance, clip, seed, timesteps: as in `Model.sample` (seed=None
                draws a fresh seed, kept as `schedule.last_sample_seed`; an int reproduces).
            prediction_type: what model_fn returns, "eps" or "x0".
            cond: the rows' condition, passed through to model_fn (read back from the library's
                ddpm_cond_batch for the rows of each call): (n,) ints (labels), (n, ...) floats
                (vectors or sequences) or (n, L) ints (token ids); with lengths (n,), model_fn
                gets the pair (cond, lengths). labels: an alias of cond for (n,) ints.
            progress: None, True (tqdm bar) or progress(step, total, t, x) returning
                truthy to cancel (raises CancelledError).
            return_trajectory: False, True or a list of t; see `Model.sample`.
            solver_options: spacing ("default", "leading", "trailing", "linspace", "karras",
                "dpm_leading", "dpm_linspace"), steps_offset, use_clipped_model_output,
                thresholding (None, True or the quantile p), threshold_max, solver_order,
                lower_order_final, set_alpha_to_one, corrector_steps, snr, langevin_step_size
                (see swiftddpm._sample_params.SOLVER_OPTIONS and ddpm.h).
        Returns (n, *shape) float32, or (samples, {t: x_t}) with return_trajectory.
        """
        handle = self._h()
        n = as_int64_count(n, "n")
        sample_shape = shape_tuple(shape)
        dim = elements(n, sample_shape)
        full_shape = (n, *sample_shape)
        cbatch, condition = _caller_condition(cond, labels, lengths, n)
        seed = fresh_seed() if seed is None else seed
        params = sample_params(method=method, steps=steps, eta=eta, variance=variance, clip=clip, seed=seed,
                               timesteps=timesteps, prediction_type=prediction_type, **solver_options)
        self.last_sample_seed = int(params.seed)
        state = CallbackState()
        c_model = _model_callback(model_fn, full_shape, condition, state)
        return run_sampling(state, params, full_shape, progress, return_trajectory,
                            lambda out: _lib.lib.ddpm_schedule_sample_cond(handle, ctypes.byref(params), c_model, None,
                                                                           cond_ref(cbatch), n, dim,
                                                                           float_ptr(out), out.size))

    def vlb(self, model_fn: Callable[[np.ndarray, int, Any], Any], x0: Any, *,
            variance: str = "beta", decoder: str = "continuous", bits: int = 8, seed: int = 0,
            prediction_type: str = "eps", labels: Any = None, cond: Any = None, lengths: Any = None) -> Likelihood:
        """The variational bound L_T + Σ L_{t-1} + L_0 of each row of x0 under your own model
        (model_fn as in `sample`, called once per timestep at a fresh x_t ~ q(x_t|x_0)).

        variance: σ² of p(x_{t-1}|x_t), "beta" or "posterior". decoder: "continuous" (a
        Gaussian density; nats/dim) or "discretized" (x0 on 2**bits levels in [-1, 1]; bits/dim).
        Returns a Likelihood (total, prior, terms, unit).
        """
        handle = self._h()
        x0 = batch_array(x0, "x0")
        n, full_shape = x0.shape[0], x0.shape
        cbatch, condition = _caller_condition(cond, labels, lengths, n)
        params = vlb_params(variance, decoder, bits, seed, prediction_type)
        state = CallbackState()
        c_model = _model_callback(model_fn, full_shape, condition, state)
        return run_vlb(state, params, x0, self.num_timesteps, decoder,
                       lambda total, prior, terms: _lib.lib.ddpm_schedule_vlb_cond(
                             handle, ctypes.byref(params), c_model, None, cond_ref(cbatch), float_ptr(x0),
                             n, x0.size // n, total, prior, terms, x0.size))


def _caller_condition(cond: Any, labels: Any, lengths: Any, n: int) -> tuple:
    """(ddpm_cond_batch or None, (field, row shape, with lengths, arrays kept alive)) for a
    caller's model: (n,) ints are labels, (n, L) ints token ids, floats vectors of any row shape."""
    if cond is not None and labels is not None:
        raise InvalidArgumentError("give the condition as cond= or as labels=, not both")
    value = cond if cond is not None else labels
    if value is None:
        if lengths is not None:
            raise InvalidArgumentError("lengths= was given without a condition")
        return None, None
    arr = np.asarray(value)
    batch = _lib.lib.ddpm_cond_batch_default()
    if arr.dtype.kind in "iu" and arr.ndim == 1:
        field, arr = "labels", int32_vector(arr, n, "labels")
        batch.labels = arr.ctypes.data_as(_lib.INT32_P)
    elif arr.dtype.kind in "iu" and arr.ndim == 2 and arr.shape[0] == n:
        field, arr = "tokens", np.ascontiguousarray(arr, dtype=np.int32)
        batch.tokens, batch.tokens_count = arr.ctypes.data_as(_lib.INT32_P), arr.size
    elif arr.dtype.kind == "f" and arr.ndim >= 2 and arr.shape[0] == n and arr.size > 0:
        field, arr = "vectors", np.ascontiguousarray(arr, dtype=np.float32)
        batch.vectors, batch.vectors_count = float_ptr(arr), arr.size
    else:
        raise ShapeError(f"cond must be (n,) labels, (n, L) token ids or (n, ...) floats with n = {n}; "
                         f"got {arr.dtype} {arr.shape}")
    length_arr = None
    if lengths is not None:
        length_arr = int32_vector(lengths, n, "lengths")
        batch.lengths = length_arr.ctypes.data_as(_lib.INT32_P)
    return batch, (field, arr.shape[1:], length_arr is not None, (arr, length_arr))


def _read_condition(c_cond, condition, batch: int) -> Any:
    """The rows' condition from the ddpm_cond_batch the library passes to the callback: an array
    of `batch` rows shaped as given (copies), or (array, lengths)."""
    if condition is None or not c_cond:
        return None
    field, row_shape, has_lengths, _ = condition
    c = c_cond.contents
    values = np.ctypeslib.as_array(getattr(c, field), shape=(batch * int(np.prod(row_shape, dtype=np.int64)),))
    values = values.reshape((batch, *row_shape)).copy()
    if not has_lengths:
        return values
    return values, np.ctypeslib.as_array(c.lengths, shape=(batch,)).copy()


def _model_callback(model_fn: Callable, full_shape: tuple[int, ...], condition: Any, state: CallbackState):
    """model_fn(x_t, t, cond) as a ddpm_cond_model_fn; an exception (or a Ctrl-C) is kept in `state`
    and stops the C call, to be raised after it."""

    def call_model(_user_data, out_ptr, x_ptr, batch, d, t, c_cond):
        try:
            if state.interrupted:  # Ctrl-C: stop at once (raised after the call)
                return 1
            x = from_pointer(x_ptr, batch * d).reshape(full_shape).copy()
            cond = _read_condition(c_cond, condition, batch)
            out = float32_array(state.call_user(model_fn, x, int(t), cond), "model_fn's output")
            if out.shape != full_shape and out.shape != (batch, d):
                raise ShapeError(f"model_fn returned shape {out.shape}, expected {full_shape}")
            from_pointer(out_ptr, batch * d)[:] = out.reshape(-1)
            return 1 if state.interrupted else 0
        except BaseException as error:  # noqa: BLE001 - re-raised after the C call
            state.keep(error)
            return 1

    return _lib.ddpm_cond_model_fn(call_model)


# The fields of each kind that NoiseSchedule's repr shows.
_SHOWN = {
    "linear": ("beta_start", "beta_end"),
    "scaled_linear": ("beta_start", "beta_end"),
    "cosine": ("cosine_s", "max_beta"),
    "sigmoid": ("beta_start", "beta_end", "sigmoid_start", "sigmoid_end"),
    "custom": (),
}


def _describe(params: ScheduleConfig) -> str:
    """"linear(T=1000, beta_start=0.0001, beta_end=0.02)" for a schedule's params."""
    shown = "".join(f", {name}={getattr(params, name):g}" for name in _SHOWN.get(params.kind, ()))
    return f"{params.kind}(T={params.num_timesteps}{shown})"
