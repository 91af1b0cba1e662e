"""Speak diffusers (issue 21): read a diffusers scheduler_config.json as our NoiseSchedule and
sampler options, and write ours as one that diffusers loads to the same schedule.

    from swiftddpm import diffusers as sdd

    cfg = sdd.read_scheduler_config("ddpm-cifar10-32/scheduler")   # a folder, a file or a dict
    print(cfg.schedule, cfg.options)   # NoiseSchedule.linear(T=1000, ...), {"method": "ddpm", ...}
    scheduler = cfg.scheduler(seed=0)  # an sd.Scheduler; set_timesteps(S) visits diffusers' timesteps

    sdd.write_scheduler_config("out/scheduler", schedule, method="dpm_solver++")

    model = sd.Model.from_diffusers("ddpm-cifar10-32")   # UNet2DModel + scheduler (_diffusers_unet.py);
                                                         # weights: .safetensors, else a torch zip .bin (_torch_zip.py)
    model.export_diffusers("out/pipeline")               # a folder DDPMPipeline.from_pretrained loads

Three scheduler classes are read: DDPMScheduler, DDIMScheduler and DPMSolverMultistepScheduler.
A field left out takes that class's diffusers default (a Hub config often lists only a few);
underscored fields (_class_name, _diffusers_version) and fields of the other two classes are
ignored, as diffusers ignores them; anything we cannot express is refused with an
InvalidArgumentError naming the field. No network access: the caller passes a file or folder.

What each field becomes (options are keywords of Sampler, Scheduler, Model.sample and
NoiseSchedule.sample):

    beta_schedule, beta_start, beta_end,   NoiseSchedule.linear / scaled_linear / cosine (squaredcos_cap_v2:
    num_train_timesteps, trained_betas     s = 0.008, max β 0.999) / sigmoid (DDPM only: linspace(−6, 6)) /
                                           custom (trained_betas)
    prediction_type                        epsilon, sample, v_prediction → "eps", "x0", "v"
    variance_type (DDPM)                   fixed_small(_log) → variance "posterior", fixed_large → "beta",
                                           learned_range → "learned"
    clip_sample, clip_sample_range         clip = (−r, r) (DDPM, DDIM; not with thresholding, as diffusers)
    thresholding, dynamic_thresholding_ratio, sample_max_value → thresholding = ratio, threshold_max
    timestep_spacing, steps_offset         spacing "leading" / "trailing" / "linspace"; for
                                           DPMSolverMultistepScheduler "dpm_leading" / "trailing" /
                                           "dpm_linspace" (it lays out S + 1 points and drops the last)
    set_alpha_to_one (DDIM)                set_alpha_to_one
    solver_order, lower_order_final,       solver_order, lower_order_final, method "dpm_solver++" or
    algorithm_type, final_sigmas_type      "sde_dpm_solver++", set_alpha_to_one (final_sigmas_type "zero")

Known differences, where diffusers is not self-consistent (we do the consistent thing):
  * DDIMScheduler steps from t to t − ⌊T/S⌋ whatever the next timestep is; with "linspace", or
    "trailing" when S does not divide T, that is not the next timestep it visits. Ours steps to
    the next timestep (its single steps equal diffusers' given the same target: see the tests).
  * DDPMScheduler adds noise on the last step when its timestep is above 0 ("trailing", or
    "leading" with steps_offset): √β·z with fixed_large. Ours adds none on the step to x_0.
  * numpy's arange can give S + 1 "trailing" points for some (T, S) (T = 1000, S = 61: the last
    is timestep −1 in diffusers); ours keeps the first S. For S = 1, diffusers' "linspace" is
    [0] and ours [T − 1].
Schedules: diffusers holds β and ᾱ in float32 (ᾱ a float32 cumprod); ours are float64, equal to
theirs to float32 rounding (the tests state the tolerance).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import _export, _files, _safetensors, _torch_zip
from ._diffusers_unet import (DIFFUSERS_VERSION, UNET_CONFIG, UNET_WEIGHTS, read_json, read_unet_config, refuse_unet,
                              unet_config, unet_folder, unet_weights, weights_from_diffusers, weights_to_diffusers)
from .config import TrainConfig, UNetConfig
from .errors import InvalidArgumentError
from .sampler import Scheduler
from .schedule import NoiseSchedule

CONFIG_NAME = "scheduler_config.json"

# Each class's diffusers defaults (diffusers 0.42), for the fields a partial config leaves out.
_COMMON = {"num_train_timesteps": 1000, "beta_start": 0.0001, "beta_end": 0.02, "beta_schedule": "linear",
           "trained_betas": None, "prediction_type": "epsilon", "thresholding": False,
           "dynamic_thresholding_ratio": 0.995, "sample_max_value": 1.0, "steps_offset": 0,
           "rescale_betas_zero_snr": False}
DEFAULTS: dict[str, dict[str, Any]] = {
    "DDPMScheduler": {**_COMMON, "variance_type": "fixed_small", "clip_sample": True, "clip_sample_range": 1.0,
                      "timestep_spacing": "leading"},
    "DDIMScheduler": {**_COMMON, "clip_sample": True, "clip_sample_range": 1.0, "set_alpha_to_one": True,
                      "timestep_spacing": "leading"},
    "DPMSolverMultistepScheduler": {
        **_COMMON, "solver_order": 2, "algorithm_type": "dpmsolver++", "solver_type": "midpoint",
        "lower_order_final": True, "euler_at_final": False, "use_karras_sigmas": False,
        "use_exponential_sigmas": False, "use_beta_sigmas": False, "use_lu_lambdas": False,
        "use_flow_sigmas": False, "flow_shift": 1.0, "final_sigmas_type": "zero",
        "lambda_min_clipped": -math.inf, "variance_type": None, "timestep_spacing": "linspace",
        "use_dynamic_shifting": False, "time_shift_type": "exponential"},
}
# Fields of other schedulers that Hub configs carry over (diffusers ignores them, so do we).
_FOREIGN = set().union(*DEFAULTS.values()) | {"skip_prk_steps", "interpolation_type", "timestep_type",
                                              "sigma_min", "sigma_max", "shift", "use_exponential_sigmas"}
# Fields that must keep their default: we have no equivalent.
_FIXED = {
    "rescale_betas_zero_snr": False, "solver_type": "midpoint", "use_karras_sigmas": False,
    "use_exponential_sigmas": False, "use_beta_sigmas": False, "use_lu_lambdas": False, "use_flow_sigmas": False,
    "use_dynamic_shifting": False, "variance_type": None, "lambda_min_clipped": -math.inf,
}

_PREDICTIONS = {"epsilon": "eps", "sample": "x0", "v_prediction": "v"}
_VARIANCES = {"fixed_small": "posterior", "fixed_small_log": "posterior", "fixed_large": "beta",
              "learned_range": "learned"}
_ALGORITHMS = {"dpmsolver++": "dpm_solver++", "sde-dpmsolver++": "sde_dpm_solver++"}
_DPM_SPACINGS = {"leading": "dpm_leading", "linspace": "dpm_linspace", "trailing": "trailing"}


def _refuse(cls: str, name: str, value: Any, why: str) -> InvalidArgumentError:
    return InvalidArgumentError(f"{cls}: {name} = {value!r} is not supported: {why}")


@dataclass
class DiffusersScheduler:
    """A diffusers scheduler config read as ours: `schedule` (a NoiseSchedule, yours to close)
    and `options`, the sampler keywords that reproduce the scheduler."""

    class_name: str
    schedule: NoiseSchedule
    options: dict[str, Any] = field(default_factory=dict)

    def scheduler(self, **overrides: Any) -> Scheduler:
        """An sd.Scheduler over `schedule` with `options` (and your overrides: seed, eta, ...)."""
        return Scheduler(self.schedule, **{**self.options, **overrides})


def load_scheduler_config(source: Any) -> dict[str, Any]:
    """The config dict of `source`: a dict, a scheduler_config.json, or a folder holding one
    (directly or in scheduler/, as a pipeline folder does)."""
    if isinstance(source, dict):
        return dict(source)
    path = Path(os.fspath(source))
    if path.is_dir():
        candidates = [path / CONFIG_NAME, path / "scheduler" / CONFIG_NAME]
        found = [p for p in candidates if p.is_file()]
        if not found:
            raise InvalidArgumentError(f"no {CONFIG_NAME} in '{path}' (looked for {', '.join(map(str, candidates))})")
        path = found[0]
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise InvalidArgumentError(f"cannot read the scheduler config '{path}': {error}") from None
    if not isinstance(config, dict):
        raise InvalidArgumentError(f"'{path}' does not hold a JSON object")
    return config


def read_scheduler_config(source: Any, class_name: str | None = None) -> DiffusersScheduler:
    """Our schedule and sampler options for a diffusers scheduler config (see the module doc).

    source: a dict, a scheduler_config.json or a folder. class_name: the diffusers class when the
    config has no "_class_name" (or to read it as another of the three classes, as
    `Class.from_config` would). Raises InvalidArgumentError naming any field we cannot express.
    """
    raw = load_scheduler_config(source)
    cls = class_name or raw.get("_class_name")
    if cls not in DEFAULTS:
        raise InvalidArgumentError(f"_class_name = {cls!r} is not supported: the scheduler classes read are "
                                   f"{', '.join(DEFAULTS)}")
    config = dict(DEFAULTS[cls])
    for key, value in raw.items():
        if key.startswith("_"):
            continue
        if key in config:
            config[key] = value
        elif key not in _FOREIGN:
            raise _refuse(cls, key, value, "a field this reader does not know")
    for key, default in _FIXED.items():
        if key == "variance_type" and cls == "DDPMScheduler":
            continue  # DDPM's variance_type is read below
        if key in config and not _same(config[key], default):
            raise _refuse(cls, key, config[key], f"only {default!r} has an equivalent here")
    schedule = _schedule(cls, config)
    try:
        return DiffusersScheduler(cls, schedule, _options(cls, config))
    except BaseException:
        schedule.close()
        raise


def _same(a: Any, b: Any) -> bool:
    return a == b


def _schedule(cls: str, c: dict[str, Any]) -> NoiseSchedule:
    T = c["num_train_timesteps"]
    if not isinstance(T, int) or isinstance(T, bool) or T < 1:
        raise _refuse(cls, "num_train_timesteps", T, "it must be a positive integer")
    if c["trained_betas"] is not None:
        betas = list(c["trained_betas"])
        if len(betas) != T:
            raise _refuse(cls, "trained_betas", f"{len(betas)} values", f"num_train_timesteps is {T}")
        return NoiseSchedule.custom(betas)
    kind, start, end = c["beta_schedule"], c["beta_start"], c["beta_end"]
    if kind == "linear":
        return NoiseSchedule.linear(T, beta_start=start, beta_end=end)
    if kind == "scaled_linear":
        return NoiseSchedule.scaled_linear(T, beta_start=start, beta_end=end)
    if kind == "squaredcos_cap_v2":
        return NoiseSchedule.cosine(T, s=0.008, max_beta=0.999)
    if kind == "sigmoid" and cls == "DDPMScheduler":
        return NoiseSchedule.sigmoid(T, beta_min=start, beta_max=end, start=-6.0, end=6.0)
    raise _refuse(cls, "beta_schedule", kind, "the schedules read are linear, scaled_linear, squaredcos_cap_v2"
                  + (" and sigmoid" if cls == "DDPMScheduler" else f" ({cls} has no sigmoid)"))


def _options(cls: str, c: dict[str, Any]) -> dict[str, Any]:
    o: dict[str, Any] = {}
    if c["prediction_type"] not in _PREDICTIONS:
        raise _refuse(cls, "prediction_type", c["prediction_type"], f"the types read are {', '.join(_PREDICTIONS)}")
    o["prediction_type"] = _PREDICTIONS[c["prediction_type"]]
    spacing = c["timestep_spacing"]
    if spacing not in _DPM_SPACINGS:
        raise _refuse(cls, "timestep_spacing", spacing, "the spacings read are leading, trailing and linspace")
    o["spacing"] = _DPM_SPACINGS[spacing] if cls == "DPMSolverMultistepScheduler" else spacing
    o["steps_offset"] = c["steps_offset"]
    if c["thresholding"]:
        o["thresholding"] = float(c["dynamic_thresholding_ratio"])
        o["threshold_max"] = float(c["sample_max_value"])
    elif c.get("clip_sample"):
        r = float(c["clip_sample_range"])
        o["clip"] = (-r, r)
    if cls == "DDPMScheduler":
        o["method"] = "ddpm"
        if c["variance_type"] not in _VARIANCES:
            raise _refuse(cls, "variance_type", c["variance_type"], f"the types read are {', '.join(_VARIANCES)}")
        o["variance"] = _VARIANCES[c["variance_type"]]
    elif cls == "DDIMScheduler":
        o["method"] = "ddim"
        o["set_alpha_to_one"] = bool(c["set_alpha_to_one"])
    else:
        if c["algorithm_type"] not in _ALGORITHMS:
            raise _refuse(cls, "algorithm_type", c["algorithm_type"], "the algorithms read are dpmsolver++ and "
                          "sde-dpmsolver++ (data prediction)")
        o["method"] = _ALGORITHMS[c["algorithm_type"]]
        o["solver_order"] = c["solver_order"]
        o["lower_order_final"] = bool(c["lower_order_final"])
        if c["final_sigmas_type"] not in ("zero", "sigma_min"):
            raise _refuse(cls, "final_sigmas_type", c["final_sigmas_type"], "the types read are zero and sigma_min")
        o["set_alpha_to_one"] = c["final_sigmas_type"] == "zero"
        if c["euler_at_final"] and not o["set_alpha_to_one"]:
            raise _refuse(cls, "euler_at_final", True, "with final_sigmas_type sigma_min our last step is first "
                          "order only with lower_order_final and fewer than 15 steps")
    return o


# ---- ours -> diffusers ---------------------------------------------------------------------

# The sampler keywords a scheduler config can hold; the rest (steps, seed, eta, ...) are the
# arguments of a diffusers pipeline call, not of its scheduler.
_CONFIG_OPTIONS = {"method", "variance", "clip", "prediction_type", "spacing", "steps_offset", "thresholding",
                   "threshold_max", "solver_order", "lower_order_final", "set_alpha_to_one"}


def scheduler_config(schedule: NoiseSchedule, *, method: str = "ddpm", variance: str = "beta", clip: Any = None,
                     prediction_type: str = "eps", spacing: str = "default", steps_offset: int = 0,
                     thresholding: Any = None, threshold_max: float = 1.0, solver_order: int = 2,
                     lower_order_final: bool = True, set_alpha_to_one: bool = True) -> dict[str, Any]:
    """A diffusers scheduler config (a dict for scheduler_config.json) that diffusers loads to
    `schedule` and that samples as our `method` with these options (their defaults are ours).

    method "ddpm" gives a DDPMScheduler, "ddim" a DDIMScheduler, "dpm_solver++" and
    "sde_dpm_solver++" a DPMSolverMultistepScheduler. A schedule diffusers has no name for (a
    cosine other than s = 0.008, max β 0.999; a sigmoid other than linspace(−6, 6) or outside
    DDPM; a custom one) is written as trained_betas. Our "default" spacing is written as
    "trailing" (the same timesteps whenever S divides T, and for DDPM's S = T). Raises
    InvalidArgumentError for what a diffusers scheduler cannot hold.
    """
    cls = {"ddpm": "DDPMScheduler", "ddim": "DDIMScheduler", "dpm_solver++": "DPMSolverMultistepScheduler",
           "sde_dpm_solver++": "DPMSolverMultistepScheduler"}.get(method)
    if cls is None:
        raise InvalidArgumentError(f"method {method!r} has no diffusers scheduler here (ddpm, ddim, dpm_solver++, "
                                   "sde_dpm_solver++)")
    c: dict[str, Any] = {"_class_name": cls, "num_train_timesteps": schedule.num_timesteps}
    c.update(_beta_fields(schedule, cls))
    predictions = {ours: theirs for theirs, ours in _PREDICTIONS.items()}
    if prediction_type not in predictions:
        raise InvalidArgumentError(f"prediction_type {prediction_type!r} is not one of {sorted(predictions)}")
    c["prediction_type"] = predictions[prediction_type]
    c["steps_offset"] = int(steps_offset)
    c["timestep_spacing"] = _their_spacing(cls, spacing)
    c["thresholding"] = thresholding is not None and thresholding is not False
    if c["thresholding"]:
        c["dynamic_thresholding_ratio"] = 0.995 if thresholding is True else float(thresholding)
        c["sample_max_value"] = float(threshold_max)
    if cls == "DPMSolverMultistepScheduler":
        if clip not in (None, False):
            raise InvalidArgumentError("clip: DPMSolverMultistepScheduler has no clip_sample (use thresholding)")
        c["algorithm_type"] = {v: k for k, v in _ALGORITHMS.items()}[method]
        c["solver_order"] = int(solver_order)
        c["lower_order_final"] = bool(lower_order_final)
        c["final_sigmas_type"] = "zero" if set_alpha_to_one else "sigma_min"
        return c
    if not set_alpha_to_one and cls == "DDPMScheduler":
        raise InvalidArgumentError("set_alpha_to_one=False: DDPMScheduler always ends at x_0")
    c.update(_clip_fields(clip))
    if cls == "DDPMScheduler":
        variances = {"posterior": "fixed_small", "beta": "fixed_large", "learned": "learned_range"}
        if variance not in variances:
            raise InvalidArgumentError(f"variance {variance!r} is not one of {sorted(variances)}")
        c["variance_type"] = variances[variance]
    else:
        c["set_alpha_to_one"] = bool(set_alpha_to_one)
    return c


def write_scheduler_config(folder: Any, schedule: NoiseSchedule, **options: Any) -> Path:
    """Writes `scheduler_config(schedule, **options)` to folder/scheduler_config.json; returns the path."""
    unknown = sorted(set(options) - _CONFIG_OPTIONS)
    if unknown:
        raise TypeError(f"{unknown} are not part of a diffusers scheduler config (steps, seed and eta are "
                        "arguments of the pipeline call)")
    path = Path(os.fspath(folder))
    path.mkdir(parents=True, exist_ok=True)
    config = scheduler_config(schedule, **options)
    target = path / CONFIG_NAME
    target.write_text(json.dumps(config, indent=2) + "\n")
    return target


def _beta_fields(schedule: NoiseSchedule, cls: str) -> dict[str, Any]:
    p = schedule.params
    if p.kind in ("linear", "scaled_linear"):
        return {"beta_schedule": p.kind, "beta_start": p.beta_start, "beta_end": p.beta_end, "trained_betas": None}
    if p.kind == "cosine" and p.cosine_s == 0.008 and p.max_beta == 0.999:
        return {"beta_schedule": "squaredcos_cap_v2", "trained_betas": None}
    if (p.kind == "sigmoid" and cls == "DDPMScheduler" and p.sigmoid_start == -6.0 and p.sigmoid_end == 6.0):
        return {"beta_schedule": "sigmoid", "beta_start": p.beta_start, "beta_end": p.beta_end, "trained_betas": None}
    return {"beta_schedule": "linear", "trained_betas": [float(b) for b in schedule.betas]}


def _their_spacing(cls: str, spacing: str) -> str:
    ours_to_theirs = ({"dpm_leading": "leading", "dpm_linspace": "linspace", "trailing": "trailing", "default": "trailing"}
                      if cls == "DPMSolverMultistepScheduler"
                      else {"leading": "leading", "linspace": "linspace", "trailing": "trailing", "default": "trailing"})
    if spacing not in ours_to_theirs:
        raise InvalidArgumentError(f"spacing {spacing!r} has no {cls} equivalent (it knows "
                                   f"{', '.join(sorted(ours_to_theirs))} from us)")
    return ours_to_theirs[spacing]


def _clip_fields(clip: Any) -> dict[str, Any]:
    if clip is None or clip is False:
        return {"clip_sample": False}
    lo, hi = (-1.0, 1.0) if clip is True else (float(clip[0]), float(clip[1]))
    if lo != -hi:
        raise InvalidArgumentError(f"clip {(lo, hi)}: diffusers clips to a symmetric range (-r, r)")
    return {"clip_sample": True, "clip_sample_range": hi}


# ---- UNet2DModel folders (the mapping: _diffusers_unet.py) ------------------------------------


def load_unet(model_class: Any, folder: str | os.PathLike, *,
              train: TrainConfig | None = None) -> tuple[Any, DiffusersScheduler | None]:
    """(model, scheduler): a Model (of `model_class`) with the UNet of a diffusers folder, and
    the DiffusersScheduler of its scheduler/scheduler_config.json (None without one; the model's
    schedule is then DDPMScheduler's default, linear 1e-4..0.02 over 1000 steps)."""
    unet = unet_folder(folder)
    config, cond, null_label = read_unet_config(read_json(unet / UNET_CONFIG, "UNet config"))
    scheduler_file = Path(folder) / "scheduler" / "scheduler_config.json"
    scheduler = read_scheduler_config(scheduler_file) if scheduler_file.is_file() else None
    schedule = scheduler.schedule if scheduler else read_scheduler_config({"_class_name": "DDPMScheduler"}).schedule
    options = scheduler.options if scheduler else {}
    if options.get("variance") == "learned":
        schedule.close()
        raise refuse_unet("variance_type", "learned_range", "a learned variance's extra channels have no equivalent here")
    if train is None:
        train = TrainConfig(prediction_target=options.get("prediction_type", "eps"))
    weights = unet_weights(unet)  # safetensors preferred; else a PyTorch zip .bin, read without torch
    tensors = _safetensors.read(weights, verify=False)[0] if weights.name == UNET_WEIGHTS else _torch_zip.read(weights)
    try:
        model = model_class(schedule, network=config, cond=cond, train=train)
    finally:
        if scheduler is None:
            schedule.close()
    try:
        ours = _export.model_weights(model, use_ema=False)
        shapes = {k: v.shape for k, v in ours.items()}
        model.import_weights(weights_from_diffusers(tensors, config, cond, null_label, shapes))
    except BaseException:
        model.close()
        raise
    return model, scheduler


def export_unet(model: Any, folder: str | os.PathLike, *, use_ema: bool = True, **scheduler_options: Any) -> Path:
    """Writes `model` as a diffusers pipeline folder: model_index.json (DDPMPipeline), unet/
    (config.json, diffusion_pytorch_model.safetensors) and scheduler/scheduler_config.json
    (the model's schedule and prediction target; `scheduler_options` as diffusers.scheduler_config
    takes them, default a DDPMScheduler sampling as Model.sample does). The folder is built
    beside `folder` and renamed over it, so a reader never finds half of it."""
    network, cond, train = model.network, model.conditioning, model.train_config
    if not isinstance(network, UNetConfig):
        raise InvalidArgumentError("export_diffusers: only a UNet has a UNet2DModel equivalent (this model is an MLP)")
    if train.learned_variance:
        raise InvalidArgumentError("export_diffusers: a learned variance (our head, hybrid loss) has no UNet2DModel "
                                   "equivalent diffusers would read correctly")
    config = unet_config(network, cond)
    weights = weights_to_diffusers(_export.model_weights(model, use_ema), network, cond)
    with model.schedule as schedule:
        options = {"method": "ddpm", "variance": "beta", "prediction_type": train.prediction_target, **scheduler_options}
        scheduler = scheduler_config(schedule, **options)
    scheduler["_diffusers_version"] = DIFFUSERS_VERSION
    pipeline = {"_class_name": "DDPMPipeline", "_diffusers_version": DIFFUSERS_VERSION,
                "scheduler": ["diffusers", scheduler["_class_name"]], "unet": ["diffusers", "UNet2DModel"]}
    target = Path(folder)
    if os.path.lexists(target) and not target.is_dir():
        raise InvalidArgumentError(f"export_diffusers: '{target}' exists and is not a folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=_files.temporary_prefix(target.name), dir=target.parent))
    try:
        (staging / "unet").mkdir()
        (staging / "scheduler").mkdir()
        _safetensors.write(staging / "unet" / UNET_WEIGHTS, weights, {"format": "pt"})

        def dump(path: Path, value: dict[str, Any]) -> None:
            _files.write_atomic(path, [(json.dumps(value, indent=2, sort_keys=True) + "\n").encode("utf-8")], "config")

        dump(staging / "unet" / UNET_CONFIG, config)
        dump(staging / "scheduler" / "scheduler_config.json", scheduler)
        dump(staging / "model_index.json", pipeline)
        os.chmod(staging, 0o755)
        if target.is_dir():  # swap: the old folder moves aside, then goes
            old = Path(tempfile.mkdtemp(prefix=_files.temporary_prefix(target.name), dir=target.parent))
            os.rename(target, old / "old")
            os.rename(staging, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target
