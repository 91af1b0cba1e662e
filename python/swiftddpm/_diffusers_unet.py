"""diffusers' UNet2DModel folders as our UNet, both ways (issue 21): the config fields, the
weight names. swiftddpm.diffusers reads and writes the folders with them (load_unet,
export_unet), which Model.from_diffusers / Model.export_diffusers call.

UNet2DModel with DownBlock2D / AttnDownBlock2D / UpBlock2D / AttnUpBlock2D is our UNet:

    diffusers config                      ours (UNetConfig / Conditioning)
    sample_size, in_channels (= out_)     height, width, channels
    block_out_channels                    base_channels = [0], channel_mult = each / [0]
    layers_per_block                      res_blocks
    Attn*Block2D at level l               l in attention_levels (down and up must agree)
    attention_head_dim (None: one head)   attention_head_dim (0 and attention_heads 1)
    flip_sin_to_cos, freq_shift, norm_eps, downsample_padding, dropout: the same names
    norm_num_groups                       groups
    add_attention                         middle_attention
    Timesteps(block_out_channels[0])      time_embed_dim = block_out_channels[0]
    num_class_embeds                      Conditioning.classes: our table has a null row
                                          (label K, for guidance); written as class K, with
                                          "_swiftddpm_null_label": K so it reads back as null

and the weights, by stage (k counts our encoder / decoder stages in order):

    conv_in, conv_norm_out, conv_out      in_conv, out_norm, out_conv
    time_embedding.linear_1 / linear_2    time.fc1 / time.fc2
    class_embedding                       class_embedding (+ the null row)
    *.resnets.j.{norm1, conv1, time_emb_proj, norm2, conv2, conv_shortcut}
                                          *.res.{norm1, conv1, time_proj, norm2, conv2, skip}
    *.attentions.j.{group_norm, to_q + to_k + to_v, to_out.0}
                                          *.attn.{norm, qkv (stacked, as 1×1 convs), proj}
      (early files' query, key, value, proj_attn are read as to_q, to_k, to_v, to_out.0)
    down_blocks.l.downsamplers.0.conv     encoder.k.down.conv
    up_blocks.i.upsamplers.0.conv         decoder.k.up.conv (the level's last stage)
    mid_block.resnets.0, attentions.0, resnets.1     middle.0.res, middle.0.attn, middle.1.res

Anything else is refused with an InvalidArgumentError naming the field or the weight: another
time_embedding_type, resnet_time_scale_shift "scale_shift", center_input_sample, a
class_embed_type, other block types, learned variance (out_channels = 2·in_channels), ...
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from . import _files
from .config import Conditioning, UNetConfig
from .errors import FormatError, InvalidArgumentError

UNET_CONFIG = "config.json"
UNET_WEIGHTS = "diffusion_pytorch_model.safetensors"
UNET_WEIGHTS_BIN = "diffusion_pytorch_model.bin"  # a PyTorch zip checkpoint (the 2022 Hub folders): _torch_zip.py
DIFFUSERS_VERSION = "0.42.1"  # the version whose config format we write (and tested against)
_NULL_LABEL = "_swiftddpm_null_label"
MAX_CONFIG_BYTES = 1 << 20

# UNet2DModel's defaults (diffusers 0.42), for the fields a config leaves out.
_UNET_DEFAULTS: dict[str, Any] = {
    "sample_size": None, "in_channels": 3, "out_channels": 3, "center_input_sample": False,
    "time_embedding_type": "positional", "time_embedding_dim": None, "freq_shift": 0, "flip_sin_to_cos": True,
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"],
    "mid_block_type": "UNetMidBlock2D",
    "up_block_types": ["AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
    "block_out_channels": [224, 448, 672, 896], "layers_per_block": 2, "mid_block_scale_factor": 1,
    "downsample_padding": 1, "downsample_type": "conv", "upsample_type": "conv", "dropout": 0.0, "act_fn": "silu",
    "attention_head_dim": 8, "norm_num_groups": 32, "attn_norm_num_groups": None, "norm_eps": 1e-5,
    "resnet_time_scale_shift": "default", "add_attention": True, "class_embed_type": None, "num_class_embeds": None,
    "num_train_timesteps": None,
}
# Fields with one value we can express (act_fn "swish" is diffusers' other name for SiLU).
_FIXED = {"center_input_sample": (False,), "time_embedding_type": ("positional",), "mid_block_type": ("UNetMidBlock2D",),
          "mid_block_scale_factor": (1,), "downsample_type": ("conv",), "upsample_type": ("conv",),
          "act_fn": ("silu", "swish"), "resnet_time_scale_shift": ("default",), "class_embed_type": (None,)}
_DOWN = {"DownBlock2D": False, "AttnDownBlock2D": True}
_UP = {"UpBlock2D": False, "AttnUpBlock2D": True}


def refuse_unet(name: str, value: Any, why: str) -> InvalidArgumentError:
    return InvalidArgumentError(f"UNet2DModel: {name} = {value!r} is not supported: {why}")


def _int(c: dict[str, Any], name: str, minimum: int = 0) -> int:
    value = c[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or value < minimum:
        raise refuse_unet(name, value, f"an integer >= {minimum} is needed")
    return int(value)


# ---- The config ----------------------------------------------------------------------------


def read_unet_config(raw: dict[str, Any]) -> tuple[UNetConfig, Conditioning, int | None]:
    """Our UNetConfig and conditioning for a UNet2DModel config dict, and the null label
    our export wrote (None otherwise). Raises InvalidArgumentError naming a field we cannot express."""
    if raw.get("_class_name", "UNet2DModel") != "UNet2DModel":
        raise refuse_unet("_class_name", raw.get("_class_name"), "only UNet2DModel is read")
    c = dict(_UNET_DEFAULTS)
    for key, value in raw.items():
        if key.startswith("_"):
            continue
        if key not in c:
            raise refuse_unet(key, value, "a field this reader does not know")
        c[key] = value
    for key, allowed in _FIXED.items():
        if c[key] not in allowed:
            raise refuse_unet(key, c[key], f"only {' or '.join(map(repr, allowed))} has an equivalent here")
    size = c["sample_size"]
    if isinstance(size, (list, tuple)) and len(size) == 2:
        height, width = size
    else:
        height = width = size
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in (height, width)):
        raise refuse_unet("sample_size", size, "an image size (an int or [height, width]) is needed")
    channels = _int(c, "in_channels", 1)
    if c["out_channels"] != channels:
        raise refuse_unet("out_channels", c["out_channels"], f"the output must have in_channels ({channels}) channels "
                      "(a learned variance's extra channels have no equivalent here)")
    boc = c["block_out_channels"]
    if not isinstance(boc, (list, tuple)) or not boc or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1
                                                                   for v in boc):
        raise refuse_unet("block_out_channels", boc, "a list of channel counts is needed")
    base = boc[0]
    if any(v % base for v in boc):
        raise refuse_unet("block_out_channels", boc, f"every entry must be a multiple of the first ({base})")
    downs, ups = list(c["down_block_types"]), list(c["up_block_types"])
    if len(downs) != len(boc):
        raise refuse_unet("down_block_types", downs, f"one per block_out_channels entry ({len(boc)}) is needed")
    if len(ups) != len(boc):
        raise refuse_unet("up_block_types", ups, f"one per block_out_channels entry ({len(boc)}) is needed")
    for name, types, known in (("down_block_types", downs, _DOWN), ("up_block_types", ups, _UP)):
        for t in types:
            if t not in known:
                raise refuse_unet(name, types, f"{t} has no equivalent here (only {', '.join(known)})")
    attention = [_DOWN[t] for t in downs]
    if [_UP[t] for t in reversed(ups)] != attention:
        raise refuse_unet("up_block_types", ups, "the attention of the up blocks must mirror the down blocks' "
                      f"({downs})")
    if c["time_embedding_dim"] is not None and c["time_embedding_dim"] != 4 * base:
        raise refuse_unet("time_embedding_dim", c["time_embedding_dim"], f"only 4 × block_out_channels[0] = {4 * base}")
    if c["attn_norm_num_groups"] is not None and c["attn_norm_num_groups"] != c["norm_num_groups"]:
        raise refuse_unet("attn_norm_num_groups", c["attn_norm_num_groups"], "only None or norm_num_groups")
    if c["norm_num_groups"] is None:
        raise refuse_unet("norm_num_groups", None, "a group count is needed")
    head_dim = c["attention_head_dim"]
    if isinstance(head_dim, (list, tuple)):
        raise refuse_unet("attention_head_dim", head_dim, "one head size for every block is needed")
    if c["downsample_padding"] not in (0, 1):
        raise refuse_unet("downsample_padding", c["downsample_padding"], "only 0 (bottom and right) or 1 (every side)")
    freq_shift = c["freq_shift"]
    if isinstance(freq_shift, bool) or not isinstance(freq_shift, (int, float)):
        raise refuse_unet("freq_shift", freq_shift, "a number is needed")
    for flag in ("flip_sin_to_cos", "add_attention"):
        if not isinstance(c[flag], bool):
            raise refuse_unet(flag, c[flag], "true or false is needed")
    classes = c["num_class_embeds"]
    null_label = raw.get(_NULL_LABEL)
    if classes is None:
        cond = Conditioning.none()
    else:
        k = _int(c, "num_class_embeds", 1)
        if null_label is not None and null_label != k - 1:
            raise refuse_unet(_NULL_LABEL, null_label, f"our export writes num_class_embeds - 1 = {k - 1}")
        cond = Conditioning.classes(k - 1 if null_label is not None and k > 1 else k)
        if null_label is not None and k == 1:
            raise refuse_unet(_NULL_LABEL, null_label, "a null label needs at least one other class")
    config = UNetConfig(
        channels=channels, height=height, width=width, base_channels=base, channel_mult=tuple(v // base for v in boc),
        res_blocks=_int(c, "layers_per_block", 1), attention_levels=tuple(l for l, a in enumerate(attention) if a),
        attention_heads=1, attention_head_dim=0 if head_dim is None else _int(c, "attention_head_dim", 1),
        groups=_int(c, "norm_num_groups", 1), dropout=float(c["dropout"]), time_embed_dim=base,
        flip_sin_to_cos=c["flip_sin_to_cos"], freq_shift=float(freq_shift), norm_eps=float(c["norm_eps"]),
        downsample_padding=c["downsample_padding"], middle_attention=c["add_attention"])
    return config, cond, null_label


def unet_config(config: UNetConfig, cond: Conditioning) -> dict[str, Any]:
    """The UNet2DModel config dict of our UNet (every field, as save_config writes them).
    Raises InvalidArgumentError for what UNet2DModel cannot hold."""
    if config.height == 1:
        raise InvalidArgumentError("export_diffusers: a 1-D signal UNet (height 1, 1×3 kernels) has no UNet2DModel "
                                   "equivalent")
    if config.cross_attention_levels:
        raise InvalidArgumentError("export_diffusers: cross-attention has no UNet2DModel equivalent")
    c0 = config.base_channels * config.channel_mult[0]
    if config.time_embed_dim != c0:
        raise InvalidArgumentError(f"export_diffusers: time_embed_dim = {config.time_embed_dim}: UNet2DModel's "
                                   f"sinusoid has block_out_channels[0] = {c0} entries (build the model with "
                                   f"time_embed_dim = {c0})")
    boc = [config.base_channels * m for m in config.channel_mult]
    levels = range(len(boc))
    if config.attention_head_dim > 0:
        head_dim = config.attention_head_dim
    elif config.attention_heads == 1:
        head_dim = None
    else:  # h heads everywhere: one head size only if every attention has the same channels
        widths = {boc[l] for l in config.attention_levels} | ({boc[-1]} if config.middle_attention else set())
        if len(widths) > 1:
            raise InvalidArgumentError(f"export_diffusers: attention_heads = {config.attention_heads} over "
                                       f"{sorted(widths)} channels: UNet2DModel has one head size "
                                       "(attention_head_dim) for every attention")
        head_dim = widths.pop() // config.attention_heads if widths else None
    attention = [l in config.attention_levels for l in levels]
    out: dict[str, Any] = {
        "_class_name": "UNet2DModel", "_diffusers_version": DIFFUSERS_VERSION,
        "act_fn": "silu", "add_attention": bool(config.middle_attention), "attention_head_dim": head_dim,
        "attn_norm_num_groups": None, "block_out_channels": boc, "center_input_sample": False,
        "class_embed_type": None,
        "down_block_types": ["AttnDownBlock2D" if a else "DownBlock2D" for a in attention],
        "downsample_padding": int(config.downsample_padding), "downsample_type": "conv",
        "dropout": float(config.dropout), "flip_sin_to_cos": bool(config.flip_sin_to_cos),
        "freq_shift": int(config.freq_shift) if float(config.freq_shift).is_integer() else float(config.freq_shift),
        "in_channels": config.channels, "layers_per_block": config.res_blocks, "mid_block_scale_factor": 1,
        "mid_block_type": "UNetMidBlock2D", "norm_eps": float(config.norm_eps), "norm_num_groups": config.groups,
        "num_class_embeds": None, "num_train_timesteps": None, "out_channels": config.channels,
        "resnet_time_scale_shift": "default",
        "sample_size": config.height if config.height == config.width else [config.height, config.width],
        "time_embedding_dim": None if c0 == config.base_channels else 4 * config.base_channels,
        "time_embedding_type": "positional",
        "up_block_types": ["AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention)],
        "upsample_type": "conv",
    }
    if cond.kind == "classes":
        out["num_class_embeds"] = cond.num_classes + 1  # the null row is class K
        out[_NULL_LABEL] = cond.num_classes
    elif cond.kind != "none":
        raise InvalidArgumentError(f"export_diffusers: a {cond.kind} condition has no UNet2DModel equivalent "
                                   "(class labels only)")
    return out


# ---- The weights ---------------------------------------------------------------------------


def weight_names(config: UNetConfig, cond: Conditioning) -> list[tuple[str, tuple[str, ...]]]:
    """(our name, their names) for every weight: one name, or to_q, to_k, to_v stacked into qkv."""
    pairs: list[tuple[str, tuple[str, ...]]] = []

    def same(ours: str, theirs: str) -> None:
        for p in ("weight", "bias"):
            pairs.append((f"{ours}.{p}", (f"{theirs}.{p}",)))

    def res(ours: str, theirs: str, ci: int, co: int) -> None:
        for a, b in (("norm1", "norm1"), ("conv1", "conv1"), ("time_proj", "time_emb_proj"), ("norm2", "norm2"),
                     ("conv2", "conv2")):
            same(f"{ours}.res.{a}", f"{theirs}.{b}")
        if ci != co:
            same(f"{ours}.res.skip", f"{theirs}.conv_shortcut")

    def attn(ours: str, theirs: str) -> None:
        same(f"{ours}.attn.norm", f"{theirs}.group_norm")
        for p in ("weight", "bias"):
            pairs.append((f"{ours}.attn.qkv.{p}", tuple(f"{theirs}.to_{x}.{p}" for x in "qkv")))
        same(f"{ours}.attn.proj", f"{theirs}.to_out.0")

    same("time.fc1", "time_embedding.linear_1")
    same("time.fc2", "time_embedding.linear_2")
    if cond.kind == "classes":
        pairs.append(("class_embedding.weight", ("class_embedding.weight",)))
    same("in_conv", "conv_in")
    L, R = len(config.channel_mult), config.res_blocks
    boc = [config.base_channels * m for m in config.channel_mult]
    k, ch, skips = 0, boc[0], [boc[0]]
    for level in range(L):
        for j in range(R):
            res(f"encoder.{k}", f"down_blocks.{level}.resnets.{j}", ch, boc[level])
            if level in config.attention_levels:
                attn(f"encoder.{k}", f"down_blocks.{level}.attentions.{j}")
            ch = boc[level]
            skips.append(ch)
            k += 1
        if level < L - 1:
            same(f"encoder.{k}.down.conv", f"down_blocks.{level}.downsamplers.0.conv")
            skips.append(ch)
            k += 1
    res("middle.0", "mid_block.resnets.0", ch, ch)
    if config.middle_attention:
        attn("middle.0", "mid_block.attentions.0")
    res("middle.1", "mid_block.resnets.1", ch, ch)
    k = 0
    for i, level in enumerate(reversed(range(L))):
        for j in range(R + 1):
            res(f"decoder.{k}", f"up_blocks.{i}.resnets.{j}", ch + skips.pop(), boc[level])
            if level in config.attention_levels:
                attn(f"decoder.{k}", f"up_blocks.{i}.attentions.{j}")
            if level > 0 and j == R:
                same(f"decoder.{k}.up.conv", f"up_blocks.{i}.upsamplers.0.conv")
            ch = boc[level]
            k += 1
    same("out_norm", "conv_norm_out")
    same("out_conv", "conv_out")
    return pairs


def _as_ours(name: str, parts: list[np.ndarray], ours_shape: tuple[int, ...]) -> np.ndarray:
    """Their tensors for our weight `name`: stacked (qkv) and linear layers as 1×1 convolutions."""
    value = np.concatenate(parts, axis=0) if len(parts) > 1 else parts[0]
    if value.size != int(np.prod(ours_shape)) or value.shape[0] != ours_shape[0]:
        raise InvalidArgumentError(f"UNet2DModel weights: {name} has shape {value.shape}; the config gives {ours_shape}")
    return value.reshape(ours_shape)


_DEPRECATED = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}


def renamed_deprecated(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The attention weights of early diffusers files (google/ddpm-*: query, key, value,
    proj_attn) under today's names, as diffusers renames them on load."""
    out = {}
    for name, value in tensors.items():
        parts = name.split(".")
        if len(parts) >= 4 and parts[-4] == "attentions" and parts[-2] in _DEPRECATED:
            new = ".".join(parts[:-2] + [_DEPRECATED[parts[-2]], parts[-1]])
            if new in tensors:
                raise InvalidArgumentError(f"UNet2DModel weights: both {name} and {new}")
            name = new
        out[name] = value
    return out


def weights_from_diffusers(tensors: dict[str, np.ndarray], config: UNetConfig, cond: Conditioning,
                           null_label: int | None, shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """Our weights by name from a UNet2DModel state dict; refuses any name left unmapped or missing."""
    tensors = renamed_deprecated(tensors)
    out: dict[str, np.ndarray] = {}
    used: set[str] = set()
    for ours, theirs in weight_names(config, cond):
        missing = [t for t in theirs if t not in tensors]
        if missing:
            raise InvalidArgumentError(f"UNet2DModel weights: {missing[0]} is missing (for our {ours})")
        used.update(theirs)
        parts = [np.asarray(tensors[t], dtype=np.float32) for t in theirs]
        if ours == "class_embedding.weight" and null_label is None:  # add our null row (zero: no class term)
            parts = [np.concatenate([parts[0], np.zeros((1, parts[0].shape[1]), np.float32)], axis=0)]
        out[ours] = _as_ours(ours, parts, shapes[ours])
    unmapped = sorted(set(tensors) - used)
    if unmapped:
        raise InvalidArgumentError(f"UNet2DModel weights: {unmapped[0]} has no equivalent here "
                                   f"({len(unmapped)} unmapped weights)")
    return out


def weights_to_diffusers(weights: dict[str, np.ndarray], config: UNetConfig, cond: Conditioning) -> dict[str, np.ndarray]:
    """The UNet2DModel state dict of our weights (inverse of weights_from_diffusers)."""
    out: dict[str, np.ndarray] = {}
    for ours, theirs in weight_names(config, cond):
        value = np.asarray(weights[ours], dtype=np.float32)
        if len(theirs) > 1:  # qkv (3C, C, 1, 1) or (3C,) → to_q, to_k, to_v as Linear (C, C) / (C,)
            for name, part in zip(theirs, np.split(value, len(theirs), axis=0)):
                out[name] = part.reshape(part.shape[:2]) if part.ndim == 4 else part
        elif ours.endswith(".attn.proj.weight"):
            out[theirs[0]] = value.reshape(value.shape[:2])
        else:
            out[theirs[0]] = value
    return out


# ---- Folders -------------------------------------------------------------------------------


def read_json(path: Path, what: str) -> dict[str, Any]:
    text = _files.read_regular(path, MAX_CONFIG_BYTES, what)
    try:
        value = json.loads(text.decode("utf-8"))
    except (ValueError, RecursionError) as e:
        raise FormatError(f"'{path}' is not valid JSON ({e})") from None
    if not isinstance(value, dict):
        raise FormatError(f"'{path}' does not hold a JSON object")
    return value


def unet_folder(folder: str | os.PathLike) -> Path:
    """The folder holding the UNet: folder/unet (a pipeline folder) or folder itself, with its
    config and its weights as safetensors or as a PyTorch zip .bin (unet_weights picks)."""
    root = Path(folder)
    for candidate in (root / "unet", root):
        if (candidate / UNET_CONFIG).is_file() and any((candidate / w).is_file() for w in (UNET_WEIGHTS, UNET_WEIGHTS_BIN)):
            return candidate
    raise FormatError(f"'{root}' holds no diffusers UNet: no {UNET_CONFIG} and {UNET_WEIGHTS} (or {UNET_WEIGHTS_BIN}) "
                      "in it or in its unet/")


def unet_weights(unet: Path) -> Path:
    """The weights file of a UNet folder: safetensors when there, else the .bin."""
    return unet / UNET_WEIGHTS if (unet / UNET_WEIGHTS).is_file() else unet / UNET_WEIGHTS_BIN
