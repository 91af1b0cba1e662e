"""The keyword options of sampling and prediction as the C params structs they fill:

    ddpm_sample_params    sample_params(method=, steps=, eta=, variance=, clip=, seed=,
                          timesteps=, prediction_type=, **solver_options)
    ddpm_predict_params   predict_params(guidance_scale, use_ema): classifier-free guidance
                          scale w (ε̂_uncond + w·(ε̂_cond − ε̂_uncond); 1 = plain conditional)
                          and the weights (EMA, or the live ones)

Each struct starts from the library's _default(), so a field not named here keeps the C default.
The keyword defaults of the methods that take these options are written out in their
signatures (method="ddpm", guidance_scale=1.0, use_ema=True, ...); test_config checks that they
are the C defaults.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _lib
from ._arrays import int32_ptr, int32_vector
from ._enums import METHODS, OUTPUTS, SPACINGS, VARIANCES, enum_value
from ._scalars import INT32_MAX, as_float, as_int, as_seed
from .errors import ArgumentTypeError, InvalidArgumentError, ShapeError

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


def fresh_seed() -> int:
    """A new seed from the operating system's entropy (numpy's SeedSequence()), in 0..2**64-1:
    what a sampling call with seed=None uses."""
    return int(np.random.SeedSequence().generate_state(1, np.uint64)[0])


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
    p.steps = as_int(steps, "steps", minimum=0, maximum=INT32_MAX)
    p.eta = as_float(eta, "eta")
    p.variance = enum_value(VARIANCES, variance, "variance")
    p.clip_x0, p.clip_min, p.clip_max = _clip_range(clip)
    p.seed = as_seed(seed)
    p.prediction_type = enum_value(OUTPUTS, prediction_type, "prediction_type")
    p.spacing = enum_value(SPACINGS, o["spacing"], "spacing")
    p.steps_offset = as_int(o["steps_offset"], "steps_offset", minimum=0, maximum=INT32_MAX)
    p.use_clipped_model_output = 1 if o["use_clipped_model_output"] else 0
    threshold = o["thresholding"]
    if threshold is not None and threshold is not False:
        p.thresholding = 1
        p.threshold_quantile = _SAMPLE_DEFAULTS.threshold_quantile if threshold is True else float(threshold)
    p.threshold_max = float(o["threshold_max"])
    p.solver_order = as_int(o["solver_order"], "solver_order", minimum=1, maximum=INT32_MAX)
    p.lower_order_final = 1 if o["lower_order_final"] else 0
    p.corrector_steps = as_int(o["corrector_steps"], "corrector_steps", minimum=1, maximum=INT32_MAX)
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


def _clip_range(clip: Any) -> tuple[int, float, float]:
    """(clip_x0, clip_min, clip_max) of the clip option: None/False (off), True for (-1, 1) or (lo, hi)."""
    if clip is None or clip is False:
        return 0, _SAMPLE_DEFAULTS.clip_min, _SAMPLE_DEFAULTS.clip_max
    if clip is True:
        lo, hi = -1.0, 1.0
    else:
        try:
            lo, hi = (as_float(v, "clip bounds") for v in clip)
        except (TypeError, ValueError):
            raise ArgumentTypeError(f"clip must be None, True or a pair (lo, hi) of numbers (got {clip!r})") from None
    if not lo < hi:
        raise InvalidArgumentError(f"clip range must have lo < hi (got {(lo, hi)})")
    return 1, lo, hi


PREDICT_DEFAULTS = _lib.lib.ddpm_predict_params_default()  # the library's: guidance_scale 1, use_ema 1


def predict_params(guidance_scale: float, use_ema: bool) -> _lib.ddpm_predict_params:
    """A ddpm_predict_params: classifier-free guidance scale w and EMA or live weights."""
    p = _lib.lib.ddpm_predict_params_default()
    p.guidance_scale = as_float(guidance_scale, "guidance_scale")
    p.use_ema = 1 if use_ema else 0
    return p
