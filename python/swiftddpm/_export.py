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
EXPORT_FORMAT_VERSION = 1
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


# ---- config.json -------------------------------------------------------------------------


def network_json(network: MLPConfig | UNetConfig) -> dict[str, Any]:
    kind = "mlp" if isinstance(network, MLPConfig) else "unet"
    fields = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(network).items()}
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


def make_config(network: MLPConfig | UNetConfig, cond: Conditioning, schedule: ScheduleConfig,
                betas: np.ndarray, *, weights: str, step: int | None = None) -> dict[str, Any]:
    """The config.json of an export (plain JSON types, names as in the C structs)."""
    net = network_json(network)
    num_classes = cond.num_classes if cond.kind == "classes" else 0
    config = {
        "format": EXPORT_FORMAT,
        "format_version": EXPORT_FORMAT_VERSION,
        "library_version": ".".join(map(str, _lib.EXPECTED_VERSION)),
        "weights_file": WEIGHTS_FILE,
        "weights": weights,  # "ema", "live" or "torch" (exported from a torch module)
        "network": net,
        "architecture": _ARCHITECTURE[net["kind"]],
        "sample_shape": list(network.sample_shape),
        "conditioning": {"kind": cond.kind, "num_classes": num_classes,
                         **({"null_label": num_classes} if num_classes else {})},
        "prediction": "epsilon",  # the network's output: the noise ε added to x_0 to give x_t
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
    if config.get("format_version") != EXPORT_FORMAT_VERSION:
        raise FormatError(f"'{file}' has export format version {config.get('format_version')!r}; "
                          f"this package reads {EXPORT_FORMAT_VERSION}")
    for key in ("network", "conditioning", "schedule"):
        _object(config.get(key), key)
    return config


def conditioning_from_json(d: Mapping[str, Any]) -> Conditioning:
    kind = _object(d, "conditioning").get("kind")
    if kind == "none":
        return Conditioning.none()
    k = d.get("num_classes")
    if kind != "classes" or not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise FormatError(f"config.json: conditioning must be kind 'none', or 'classes' with num_classes >= 1 (got {d!r})"[:300])
    return Conditioning.classes(k)


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
