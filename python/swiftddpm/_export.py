"""Exported weights: a folder a PyTorch user (or anyone with a safetensors reader) can use.

    <dir>/model.safetensors   the network's weights alone (EMA or live), F32, named as in our
                              checkpoints (in_proj.weight, blocks.0.fc1.weight, ...); these are
                              the state_dict keys of swiftddpm.torch's modules
    <dir>/config.json         architecture, conditioning, schedule (its parameters and every β)
                              and prediction target, in plain names (see `make_config`)

Model.export writes it, Model.from_export / Model.import_weights read it, and
swiftddpm.torch.from_export / export are the PyTorch side. Both files follow the rules of
checkpoints (_files.py): written atomically (a link there is replaced, never written
through), read only as regular files of bounded size; anything malformed in them is a
FormatError (`format_errors`). The weights come out of, and go
into, a model through its own checkpoint (Model.save / Model.load) and the tensors named
model.<name> and ema.<name> in it, so nothing here knows the layout of the flat parameter
vector and the library API needs no extra call.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from . import _files, _lib, _safetensors
from .config import Conditioning, MLPConfig, ScheduleConfig, UNetConfig
from .errors import DDPMError, DDPMIOError, FormatError, InvalidArgumentError, ShapeError
from .schedule import NoiseSchedule

EXPORT_FORMAT = "swiftddpm-export"
EXPORT_FORMAT_VERSION = 2  # 2: the prediction target, learned variance and every conditioning kind
READABLE_FORMAT_VERSIONS = (1, 2)  # version 1 folders are ε-predicting, fixed-variance, unconditional or class-conditional
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
MAX_CONFIG_BYTES = 1 << 28  # 256 MiB: the β of the longest schedule (2^20) take about 25 MB

_ARCHITECTURE = {
    "mlp": "e = sinusoid(t) (time_embed_dim); temb = time.fc2(SiLU(time.fc1(e))) [+ class_embedding[label]]; "
           "h = in_proj(x); depth times: h = h + fc2(SiLU(fc1(LayerNorm(h) + temb))); output = out_proj(h)",
    "unet": "DDPM UNet (Ho et al. 2020 / improved DDPM): in_conv 3x3; per level res_blocks ResBlocks "
            "(GroupNorm, SiLU, conv 3x3, + time_proj(SiLU(temb)), GroupNorm, SiLU, dropout, conv 3x3, 1x1 skip) "
            "with self-attention at attention_levels, stride-2 conv downsampling; middle ResBlock + attention + "
            "ResBlock; decoder with skip concatenation and nearest x2 + conv 3x3 upsampling; "
            "out_conv(SiLU(out_norm(h))). swiftddpm.torch.UNet is the exact definition",
}

# TrainConfig.prediction_target -> config.json "prediction" (diffusers' prediction_type names)
PREDICTION_NAMES = {"eps": "epsilon", "x0": "sample", "v": "v_prediction"}
_PREDICTION_MEANINGS = {
    "epsilon": "the noise eps added to x_0 to give x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps",
    "sample": "x_0 itself",
    "v_prediction": "v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0 (Salimans & Ho)",
}
_LEARNED_VARIANCE = ("the output has twice the sample's channels (features for the MLP): [prediction; v]; "
                     "log sigma_t^2 = frac log beta_t + (1 - frac) log beta~_t, frac = (v + 1)/2, "
                     "beta~_t = (1 - abar_{t-1})/(1 - abar_t) beta_t (beta~_0 taken as beta~_1 in the log) "
                     "(Nichol & Dhariwal 2021)")
_CONDITIONING_INPUTS = {
    "none": "no condition",
    "classes": "labels (B,) int in 0..num_classes-1; null_label = num_classes means no class: "
               "temb += class_embedding[label]",
    "vector": "vectors (B, dim) float; a null row takes cond_vector.null: temb += cond_vector.proj(c)",
    "sequence": "context (B, max_length, dim) float with lengths (B,) in 0..max_length; a null row or length 0 "
                "takes the context [context.null] of length 1; temb += context_pool(masked mean of the context); "
                "the UNet's xattn stages cross-attend to it",
    "tokens": "token ids (B, max_length) int in 0..vocab_size-1 (0 = padding; a row's length ends at its last "
              "nonzero id unless lengths are given); context = context.tokens[id] + context.positions[i], "
              "then with encoder_layers > 0 the text encoder context.encoder (pre-LN transformer blocks masked by "
              "length, final LayerNorm; null rows skip it), then as 'sequence'",
}


# ---- config.json -------------------------------------------------------------------------


# Network fields added after the export format was first read by a released library: written
# only when they differ from their default, so that a folder of a model that does not use them
# still loads in that library.
LATER_NETWORK_FIELDS = frozenset({"flip_sin_to_cos", "freq_shift", "norm_eps", "downsample_padding",
                                  "attention_head_dim", "middle_attention", "cross_attention_positions"})


def network_json(network: MLPConfig | UNetConfig) -> dict[str, Any]:
    kind = "mlp" if isinstance(network, MLPConfig) else "unet"
    defaults = {f.name: f.default for f in dataclasses.fields(network)}
    fields = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(network).items()
              if not (k in LATER_NETWORK_FIELDS and v == defaults[k])}
    return {"kind": kind, **fields}


@contextlib.contextmanager
def format_errors(path: str | os.PathLike) -> Iterator[None]:
    """Turns what a malformed export makes the code below raise (a missing key, a value of the
    wrong type, a configuration the library refuses) into the package's FormatError naming
    the folder; I/O errors and FormatErrors pass through."""
    try:
        yield
    except (FormatError, DDPMIOError, OSError, MemoryError):
        raise
    except (TypeError, ValueError, KeyError, AttributeError, IndexError, OverflowError, RecursionError, DDPMError) as e:
        raise FormatError(f"'{os.fspath(path)}' is not a valid export: {type(e).__name__}: {e}") from None


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise FormatError(f"config.json: {what} must be an object (got {type(value).__name__})")
    return value


def network_from_json(d: Mapping[str, Any]) -> MLPConfig | UNetConfig:
    d = dict(_object(d, "network"))
    kind = d.pop("kind", None)
    cls = {"mlp": MLPConfig, "unet": UNetConfig}.get(kind)
    if cls is None:
        raise FormatError(f"config.json: network kind must be 'mlp' or 'unet' (got {kind!r})")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise FormatError(f"config.json: unknown {kind} network field(s) {unknown}")
    return cls(**d)


def conditioning_json(cond: Conditioning) -> dict[str, Any]:
    """The conditioning of config.json: every field of the Conditioning, what the network
    reads, and the null label of a class-conditional model."""
    d: dict[str, Any] = dataclasses.asdict(cond)
    if cond.kind == "classes":
        d["null_label"] = cond.num_classes
    d["input"] = _CONDITIONING_INPUTS.get(cond.kind, "")
    return d


def make_config(network: MLPConfig | UNetConfig, cond: Conditioning, schedule: ScheduleConfig,
                betas: np.ndarray, *, weights: str, step: int | None = None, prediction_target: str = "eps",
                learned_variance: bool = False) -> dict[str, Any]:
    """The config.json of an export (plain JSON types, names as in the C structs)."""
    net = network_json(network)
    prediction = PREDICTION_NAMES[prediction_target]
    shape = list(network.sample_shape)
    output_shape = [2 * shape[0], *shape[1:]] if learned_variance else shape
    config = {
        "format": EXPORT_FORMAT,
        "format_version": EXPORT_FORMAT_VERSION,
        "library_version": ".".join(map(str, _lib.EXPECTED_VERSION)),
        "weights_file": WEIGHTS_FILE,
        "weights": weights,  # "ema", "live" or "torch" (exported from a torch module)
        "network": net,
        "architecture": _ARCHITECTURE[net["kind"]],
        "sample_shape": list(network.sample_shape),
        "output_shape": output_shape,
        "conditioning": conditioning_json(cond),
        "prediction": prediction,  # what the network's (first) output is
        "prediction_meaning": _PREDICTION_MEANINGS[prediction],
        "learned_variance": bool(learned_variance),
        **({"variance": _LEARNED_VARIANCE} if learned_variance else {}),
        "timesteps": "0-based: t in 0..num_timesteps-1, t = 0 the first noising step (as diffusers)",
        "schedule": {**dataclasses.asdict(schedule), "betas": [float(b) for b in betas]},
    }
    if step is not None:
        config["step"] = int(step)
    return config


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """config.json of an export folder, checked for format and version (a regular file of at
    most MAX_CONFIG_BYTES)."""
    file = Path(path) / CONFIG_FILE
    if not os.path.lexists(file):
        raise FormatError(f"'{path}' is not an export folder: {CONFIG_FILE} is missing")
    text = _files.read_regular(file, MAX_CONFIG_BYTES, "export config")
    try:
        config = json.loads(text.decode("utf-8"))
    except (ValueError, RecursionError) as e:
        raise FormatError(f"'{file}' is not valid JSON ({e})") from None
    if not isinstance(config, dict) or config.get("format") != EXPORT_FORMAT:
        raise FormatError(f"'{file}' is not a SwiftDDPM export (format = {config.get('format') if isinstance(config, dict) else None!r})")
    if config.get("format_version") not in READABLE_FORMAT_VERSIONS:
        raise FormatError(f"'{file}' has export format version {config.get('format_version')!r}; "
                          f"this package reads {' and '.join(map(str, READABLE_FORMAT_VERSIONS))}")
    for key in ("network", "conditioning", "schedule"):
        _object(config.get(key), key)
    return config


def conditioning_from_json(d: Mapping[str, Any]) -> Conditioning:
    """The Conditioning of config.json: its kind and every size field it lists (a field of the
    dataclass not listed, as in version-1 folders, is 0); the library checks the combination
    when the model is built."""
    d = _object(d, "conditioning")
    kind = d.get("kind")
    if kind == "none":
        return Conditioning.none()
    if kind == "classes":  # version 1 listed num_classes and null_label only
        k = d.get("num_classes")
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise FormatError(f"config.json: class conditioning needs num_classes >= 1 (got {d!r})"[:300])
    names = [f.name for f in dataclasses.fields(Conditioning) if f.name != "kind"]
    values = {name: d.get(name, 0) for name in names}
    unknown = sorted(set(d) - set(names) - {"kind", "null_label", "input"})
    bad = [name for name, v in values.items() if not isinstance(v, int) or isinstance(v, bool) or v < 0]
    if kind not in ("classes", "vector", "sequence", "tokens") or unknown or bad:
        raise FormatError(f"config.json: conditioning must be of kind none, classes, vector, sequence or tokens with "
                          f"non-negative integer sizes; unknown fields {unknown}, bad fields {bad} (got {d!r})"[:400])
    return Conditioning(kind=kind, **values)


def objective_from_json(config: Mapping[str, Any]) -> tuple[str, bool]:
    """(TrainConfig.prediction_target, learned_variance) of config.json; version-1 folders
    have no learned_variance (false)."""
    names = {v: k for k, v in PREDICTION_NAMES.items()}
    prediction = config.get("prediction")
    if prediction not in names:
        raise FormatError(f"config.json: prediction must be one of {sorted(names)} (got {prediction!r})"[:300])
    learned = config.get("learned_variance", False)
    if not isinstance(learned, bool):
        raise FormatError(f"config.json: learned_variance must be true or false (got {learned!r})"[:300])
    return names[prediction], learned


def schedule_from_json(d: Mapping[str, Any]):
    """The NoiseSchedule of config.json: from its parameters, checked against its β, or from
    the β alone for kind "custom"."""
    d = dict(_object(d, "schedule"))
    listed = d.pop("betas", None)
    if not isinstance(listed, list) or not listed or not all(isinstance(b, (int, float)) and not isinstance(b, bool)
                                                             for b in listed):
        raise FormatError("config.json: schedule.betas must be a non-empty list of numbers")
    betas = np.asarray(listed, dtype=np.float64)
    if d.get("kind") == "custom":
        return NoiseSchedule.custom(betas)
    schedule = NoiseSchedule.from_config(ScheduleConfig(**d))
    if schedule.num_timesteps != betas.size or not np.allclose(schedule.betas, betas, rtol=1e-12, atol=0):
        schedule.close()
        raise FormatError("config.json: the schedule's parameters do not give its listed betas")
    return schedule


# ---- Weights -----------------------------------------------------------------------------


def write_export(path: str | os.PathLike, weights: Mapping[str, np.ndarray], config: Mapping[str, Any]) -> Path:
    """Writes the folder's two files, each atomically (weights first: a reader that finds the
    new config.json finds the weights it describes)."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"format": EXPORT_FORMAT, "weights": str(config["weights"]),
            "library_version": str(config["library_version"])}
    _safetensors.write(folder / WEIGHTS_FILE, {k: np.asarray(v, dtype=np.float32) for k, v in weights.items()}, meta)
    _files.write_atomic(folder / CONFIG_FILE, [(json.dumps(config, indent=1) + "\n").encode("utf-8")], "export config")
    return folder


def read_weights(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The tensors of an export folder's weights file (or of a .safetensors file given directly)."""
    path = Path(path)
    file = path / WEIGHTS_FILE if path.is_dir() else path
    tensors, _ = _safetensors.read(file)
    return tensors


def model_weights(model, use_ema: bool) -> dict[str, np.ndarray]:
    """The model's EMA or live weights by name, in layout order (through its checkpoint)."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "model.safetensors")
        model.save(path)
        tensors, _ = _safetensors.read(path, verify=False)  # the library's own file, just written
    prefix = "ema." if use_ema else "model."
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def checkpoint_with_weights(model, weights: Mapping[str, np.ndarray], directory: str, *, live: bool, ema: bool) -> str:
    """Writes model's checkpoint with its live and/or EMA weights replaced by `weights` (every
    name, exactly the model's shapes) into directory; returns the file's path."""
    path = os.path.join(directory, "model.safetensors")
    model.save(path)
    tensors, meta = _safetensors.read(path, verify=False)  # written again with the new data's checksum
    names = [k[len("model."):] for k in tensors if k.startswith("model.")]
    missing = [n for n in names if n not in weights]
    unexpected = sorted(set(weights) - set(names))
    if missing or unexpected:
        raise InvalidArgumentError(f"weights do not match the model's parameters: missing {missing}, "
                                   f"unexpected {unexpected}")
    for name in names:
        value = np.asarray(weights[name])
        if value.shape != tensors["model." + name].shape:
            raise ShapeError(f"weight '{name}' has shape {value.shape}, the model's is {tensors['model.' + name].shape}")
        if not np.isfinite(value).all():
            raise InvalidArgumentError(f"weight '{name}' has non-finite values")
        for prefix, wanted in (("model.", live), ("ema.", ema)):
            if wanted:
                tensors[prefix + name] = value.astype(np.float32)
    _safetensors.write(path, tensors, meta)
    return path
