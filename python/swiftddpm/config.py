"""Typed configurations: a dataclass for each params struct of include/ddpm.h that describes a
model or a schedule (the per-call structs — ddpm_sample_params, ddpm_predict_params,
ddpm_vlb_params — are keyword arguments of the calls, see _sample_params.py):

    ScheduleConfig   ddpm_schedule_params   the β schedule (NoiseSchedule.from_config, .params)
    MLPConfig        ddpm_mlp_params        a residual MLP over vectors (Model(network=...))
    UNetConfig       ddpm_unet_params       a UNet over images, or 1-D signals (UNetConfig.signal)
    TrainConfig      ddpm_train_params      AdamW, gradient clipping, EMA, dropout of the
                                            condition, seed, and the objective (prediction
                                            target, loss weighting, learned variance, timesteps)
    Conditioning     ddpm_cond_params       none, class labels, vectors, sequences of vectors
                                            or token ids

Fields are named as in C and their defaults are read once, at import, from the library's
_default() functions, so they cannot drift from the header. A config is a plain value:
build it, print it, compare it, change it with dataclasses.replace, pass it to a Model.
Range checks are the library's; this module converts between Python and C values, refusing
only what C could not hold (an integer beyond its C type, a float where an int is wanted).

Where a Python field differs in form from its C field:
  - enum fields (ScheduleConfig.kind, Conditioning.kind, TrainConfig.prediction_target,
    loss_weighting and timestep_sampling) are names: "linear", "classes", "eps", ...
  - flags (TrainConfig.learned_variance) are bools (C: int32 0 or 1).
  - UNetConfig.channel_mult is a tuple of num_levels entries (C: num_levels plus a fixed
    array of DDPM_UNET_MAX_LEVELS); num_levels is a read-only property.
  - UNetConfig.attention_levels and cross_attention_levels are tuples of level indices, e.g.
    (2,) (C: the bit mask 0b100).
  - float32 fields read back as the shortest decimal that rounds to the stored value
    (1e-3, not 0.0010000000474974513), so a config round-trips through the library.
"""

from __future__ import annotations

import ctypes
import functools
from dataclasses import dataclass, fields, replace
from typing import Any, Callable

import numpy as np

from . import _lib
from ._enums import OUTPUTS, enum_name, enum_value
from ._scalars import as_float, as_int
from .errors import InvalidArgumentError

SCHEDULE_KINDS = {
    "linear": _lib.DDPM_SCHEDULE_LINEAR,
    "cosine": _lib.DDPM_SCHEDULE_COSINE,
    "sigmoid": _lib.DDPM_SCHEDULE_SIGMOID,
    "custom": _lib.DDPM_SCHEDULE_CUSTOM,
    "scaled_linear": _lib.DDPM_SCHEDULE_SCALED_LINEAR,
}
COND_KINDS = {"none": _lib.DDPM_COND_NONE, "classes": _lib.DDPM_COND_CLASSES, "vector": _lib.DDPM_COND_VECTOR,
              "sequence": _lib.DDPM_COND_SEQUENCE, "tokens": _lib.DDPM_COND_TOKENS}
LOSS_WEIGHTINGS = {"uniform": _lib.DDPM_LOSS_UNIFORM, "min_snr": _lib.DDPM_LOSS_MIN_SNR, "vlb": _lib.DDPM_LOSS_VLB}
TIMESTEP_SAMPLINGS = {"uniform": _lib.DDPM_TIMESTEPS_UNIFORM, "importance": _lib.DDPM_TIMESTEPS_IMPORTANCE}

# The integer range of each C integer type a config field can have.
_INT_RANGES = {
    ctypes.c_int32: (-(2**31), 2**31 - 1),
    ctypes.c_uint32: (0, 2**32 - 1),
    ctypes.c_uint64: (0, 2**64 - 1),
}


def _f32(value: float) -> float:
    """A float32 as the shortest decimal that rounds to it (1e-3, not 0.0010000000474974513)."""
    return float(str(np.float32(value)))


class _Mirror:
    """Conversion of a config dataclass to and from its C struct, field by field by name.

    The C type of a field decides the conversion: integers are checked against its range,
    floats converted, enum fields (in `_enums`) mapped by name. Fields in `_special` are
    converted by the subclass's own to_c/from_c.
    """

    _c_default: Any = None  # the struct's _default() function
    _enums: dict[str, dict[str, int]] = {}
    _special: tuple[str, ...] = ()
    _flags: tuple[str, ...] = ()  # bool fields (int32 0/1 in C)

    def to_c(self) -> Any:
        """The C struct: its _default() with every field of this config written over it."""
        struct = type(self)._c_default()
        c_types = dict(type(struct)._fields_)
        for f in fields(self):
            if f.name not in self._special:
                setattr(struct, f.name, self._c_value(f.name, getattr(self, f.name), c_types[f.name]))
        return struct

    def _c_value(self, name: str, value: Any, c_type: Any) -> Any:
        if name in self._enums:
            return enum_value(self._enums[name], value, name)
        if name in self._flags:
            if not isinstance(value, (bool, np.bool_)):
                raise InvalidArgumentError(f"{name} must be True or False (got {value!r})")
            return 1 if value else 0
        if c_type in _INT_RANGES:
            lo, hi = _INT_RANGES[c_type]
            return as_int(value, name, minimum=lo, maximum=hi)
        return as_float(value, name)

    @classmethod
    def from_c(cls, struct: Any) -> Any:
        """The config a C struct describes."""
        values = {}
        for f in fields(cls):
            if f.name in cls._special:
                continue
            value = getattr(struct, f.name)
            if f.name in cls._enums:
                value = enum_name(cls._enums[f.name], value)
            elif f.name in cls._flags:
                value = bool(value)
            elif isinstance(value, float) and dict(type(struct)._fields_)[f.name] is ctypes.c_float:
                value = _f32(value)
            values[f.name] = value
        return cls(**values, **cls._special_from_c(struct))

    @classmethod
    def _special_from_c(cls, struct: Any) -> dict[str, Any]:
        return {}


# ---- Schedule ---------------------------------------------------------------------------

_SCHEDULE = _lib.lib.ddpm_schedule_params_default()


@dataclass
class ScheduleConfig(_Mirror):
    """ddpm_schedule_params: a β schedule. Which fields matter depends on kind:
    linear (beta_start, beta_end, scale_to_steps), scaled_linear (beta_start, beta_end),
    cosine (cosine_s, max_beta), sigmoid
    (beta_start = β_min, beta_end = β_max, sigmoid_start, sigmoid_end). "custom" is only
    read back (NoiseSchedule.custom makes one)."""

    kind: str = enum_name(SCHEDULE_KINDS, _SCHEDULE.kind)
    num_timesteps: int = _SCHEDULE.num_timesteps
    beta_start: float = _SCHEDULE.beta_start
    beta_end: float = _SCHEDULE.beta_end
    scale_to_steps: int = _SCHEDULE.scale_to_steps
    cosine_s: float = _SCHEDULE.cosine_s
    max_beta: float = _SCHEDULE.max_beta
    sigmoid_start: float = _SCHEDULE.sigmoid_start
    sigmoid_end: float = _SCHEDULE.sigmoid_end

    _c_default = staticmethod(_lib.lib.ddpm_schedule_params_default)
    _enums = {"kind": SCHEDULE_KINDS}


# ---- Networks ---------------------------------------------------------------------------

_MLP = _lib.lib.ddpm_mlp_params_default()


@dataclass
class MLPConfig(_Mirror):
    """ddpm_mlp_params: a residual MLP over vectors of data_dim floats (data_dim is required)."""

    data_dim: int = _MLP.data_dim  # D; 0 = unset
    hidden: int = _MLP.hidden  # width H
    depth: int = _MLP.depth  # residual blocks L
    time_embed_dim: int = _MLP.time_embed_dim  # sinusoidal encoding size E, even

    _c_default = staticmethod(_lib.lib.ddpm_mlp_params_default)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """The shape of one sample: (data_dim,)."""
        return (self.data_dim,)


_UNET = _lib.lib.ddpm_unet_params_default()


def _levels(mask: int) -> tuple[int, ...]:
    """The set bits of an attention_levels mask as level indices (0b101 -> (0, 2))."""
    return tuple(level for level in range(32) if mask >> level & 1)


@dataclass
class UNetConfig(_Mirror):
    """ddpm_unet_params: a UNet over images of channels × height × width (height and width
    are required, divisible by 2^(num_levels-1)).

    channel_mult: one multiplier of base_channels per level; its length is num_levels
        (1 to DDPM_UNET_MAX_LEVELS).
    attention_levels: the levels (indices into channel_mult) with self-attention; the C
        field is the bit mask of these indices.
    cross_attention_levels: the levels with cross-attention to a sequence or token
        condition (the middle always has one when the model has such a condition).
    cross_attention_positions: each cross-attention layer adds a learned position embedding
        of its pixels to its queries, so that words naming a place can find it.
    """

    channels: int = _UNET.channels
    height: int = _UNET.height  # 0 = unset
    width: int = _UNET.width  # 0 = unset
    base_channels: int = _UNET.base_channels
    channel_mult: tuple[int, ...] = tuple(_UNET.channel_mult[: _UNET.num_levels])
    res_blocks: int = _UNET.res_blocks
    attention_levels: tuple[int, ...] = _levels(_UNET.attention_levels)
    attention_heads: int = _UNET.attention_heads
    groups: int = _UNET.groups  # GroupNorm groups; must divide every channel count
    dropout: float = _f32(_UNET.dropout)
    time_embed_dim: int = _UNET.time_embed_dim
    cross_attention_levels: tuple[int, ...] = _levels(_UNET.cross_attention_levels)
    # diffusers' UNet2DModel options (swiftddpm.diffusers maps them); the defaults are our network.
    flip_sin_to_cos: bool = bool(_UNET.flip_sin_to_cos)  # sinusoid halves [cos, sin] instead of [sin, cos]
    freq_shift: float = _f32(_UNET.freq_shift)  # s in ω_i = 10000^(−i/(E/2 − s)); DDPM's code: 1
    norm_eps: float = _f32(_UNET.norm_eps)  # ε of every GroupNorm
    downsample_padding: int = _UNET.downsample_padding  # 1: padded on every side; 0: bottom and right only
    attention_head_dim: int = _UNET.attention_head_dim  # d > 0: channels/d heads everywhere; 0: attention_heads
    middle_attention: bool = bool(_UNET.middle_attention)  # the middle block's self-attention
    cross_attention_positions: bool = bool(_UNET.cross_attention_positions)

    _c_default = staticmethod(_lib.lib.ddpm_unet_params_default)
    _special = ("channel_mult", "attention_levels", "cross_attention_levels")
    _flags = ("flip_sin_to_cos", "middle_attention", "cross_attention_positions")

    def __post_init__(self) -> None:
        # Any sequence is accepted; stored as tuples so that configs compare by value.
        for name in self._special:
            try:
                setattr(self, name, tuple(getattr(self, name)))
            except TypeError:
                raise InvalidArgumentError(f"{name} must be a sequence of ints (got {getattr(self, name)!r})") from None

    @property
    def num_levels(self) -> int:
        """The number of resolutions: len(channel_mult)."""
        return len(self.channel_mult)

    @classmethod
    def signal(cls, length: int, channels: int = 1, **kwargs: Any) -> "UNetConfig":
        """A 1-D UNet over signals of `length` points: height 1, so 1×3 kernels and resampling
        along the width only (only `length` must be divisible by 2^(num_levels-1)). fit takes
        (N, length) data for one channel; samples come back (n, channels, 1, length)."""
        return cls(channels=channels, height=1, width=length, **kwargs)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """The shape of one sample: (channels, height, width)."""
        return (self.channels, self.height, self.width)

    def to_c(self) -> Any:
        struct = super().to_c()
        mult = [self._c_value("channel_mult entries", m, ctypes.c_int32) for m in self.channel_mult]
        if not 1 <= len(mult) <= _lib.DDPM_UNET_MAX_LEVELS:
            raise InvalidArgumentError(
                f"channel_mult must have 1 to {_lib.DDPM_UNET_MAX_LEVELS} entries (got {len(mult)})")
        struct.num_levels = len(mult)
        struct.channel_mult[: len(mult)] = mult
        mask = 0
        for level in self.attention_levels:
            mask |= 1 << as_int(level, "attention_levels entries", minimum=0, maximum=31)
        struct.attention_levels = mask
        mask = 0
        for level in self.cross_attention_levels:
            mask |= 1 << as_int(level, "cross_attention_levels entries", minimum=0, maximum=31)
        struct.cross_attention_levels = mask
        return struct

    @classmethod
    def _special_from_c(cls, struct: Any) -> dict[str, Any]:
        levels = max(0, min(struct.num_levels, _lib.DDPM_UNET_MAX_LEVELS))
        return {"channel_mult": tuple(struct.channel_mult[:levels]), "attention_levels": _levels(struct.attention_levels),
                "cross_attention_levels": _levels(struct.cross_attention_levels)}


NETWORK_KINDS = {"mlp": _lib.DDPM_NETWORK_MLP, "unet": _lib.DDPM_NETWORK_UNET}  # ddpm_network_kind
NETWORK_CONFIGS = {_lib.DDPM_NETWORK_MLP: MLPConfig, _lib.DDPM_NETWORK_UNET: UNetConfig}


# ---- Training and conditioning ----------------------------------------------------------

_TRAIN = _lib.lib.ddpm_train_params_default()


@dataclass
class TrainConfig(_Mirror):
    """ddpm_train_params: the training recipe (AdamW, gradient clipping, EMA, condition
    dropout, the seed of parameter initialisation and every training draw, and the objective:
    prediction_target "eps", "x0" or "v", loss_weighting "uniform" (L_simple), "min_snr"
    (min-SNR-γ with min_snr_gamma) or "vlb" (the bound's weight of each term)).
    label_dropout is condition_dropout by its name before 0.3 (TrainConfig(label_dropout=0.2),
    cfg.label_dropout)."""

    learning_rate: float = _f32(_TRAIN.learning_rate)
    beta1: float = _f32(_TRAIN.beta1)
    beta2: float = _f32(_TRAIN.beta2)
    adam_eps: float = _f32(_TRAIN.adam_eps)
    weight_decay: float = _f32(_TRAIN.weight_decay)  # decoupled
    grad_clip: float = _f32(_TRAIN.grad_clip)  # global gradient norm; 0 = off
    ema_decay: float = _f32(_TRAIN.ema_decay)
    condition_dropout: float = _f32(_TRAIN.condition_dropout)  # probability of training a row on the null condition
    seed: int = _TRAIN.seed
    prediction_target: str = enum_name(OUTPUTS, _TRAIN.prediction_target)
    loss_weighting: str = enum_name(LOSS_WEIGHTINGS, _TRAIN.loss_weighting)
    min_snr_gamma: float = _f32(_TRAIN.min_snr_gamma)
    learned_variance: bool = bool(_TRAIN.learned_variance)  # the network also outputs Σ_θ (hybrid loss)
    vlb_lambda: float = _f32(_TRAIN.vlb_lambda)  # λ of L_simple + λ·L_vlb
    timestep_sampling: str = enum_name(TIMESTEP_SAMPLINGS, _TRAIN.timestep_sampling)  # "uniform" or "importance"

    _c_default = staticmethod(_lib.lib.ddpm_train_params_default)
    _enums = {"prediction_target": OUTPUTS, "loss_weighting": LOSS_WEIGHTINGS, "timestep_sampling": TIMESTEP_SAMPLINGS}
    _flags = ("learned_variance",)
    # Fields that only a conditional model uses. The recipe of a model without conditioning
    # (Model.train_config) leaves them out of its repr, where they would only mislead; they
    # are still fields (equality, to_c) with their values.
    _conditioning_only = ("condition_dropout",)

    def for_unconditional(self) -> "TrainConfig":
        """This recipe as an unconditional model's: the same fields, a repr without the
        conditioning-only ones."""
        config = replace(self)
        config._unconditional = True
        return config

    def __repr__(self) -> str:
        hidden = self._conditioning_only if getattr(self, "_unconditional", False) else ()
        shown = (f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if f.repr and f.name not in hidden)
        return f"{type(self).__name__}({', '.join(shown)})"

    @property
    def label_dropout(self) -> float:
        """condition_dropout by its name before 0.3."""
        return self.condition_dropout

    @label_dropout.setter
    def label_dropout(self, value: float) -> None:
        self.condition_dropout = value


def _accept_label_dropout(init: Callable) -> Callable:
    """TrainConfig(label_dropout=p) is TrainConfig(condition_dropout=p), as before 0.3."""

    @functools.wraps(init)
    def __init__(self, *args: Any, label_dropout: float | None = None, **kwargs: Any) -> None:
        if label_dropout is not None:
            if "condition_dropout" in kwargs:
                raise InvalidArgumentError("give condition_dropout or its old name label_dropout, not both")
            kwargs["condition_dropout"] = label_dropout
        init(self, *args, **kwargs)

    return __init__


TrainConfig.__init__ = _accept_label_dropout(TrainConfig.__init__)


_COND = _lib.lib.ddpm_cond_params_default()


@dataclass
class Conditioning(_Mirror):
    """ddpm_cond_params: what a sample is conditioned on. kind "none"; "classes" with
    num_classes = K (labels 0..K-1; K is the null label, "no class"); or "vector" with
    dim = Dc (a float vector per sample, e.g. an embedding from your own encoder; a learned
    null vector stands for "no condition"); "sequence" with dim and max_length (up to
    max_length vectors per sample, e.g. a text encoder's output, with a length each); or
    "tokens" with vocab_size, max_length and dim (integer ids, 0 = padding, embedded by
    learned token and position tables, then by encoder_layers transformer blocks of
    encoder_heads heads when encoder_layers > 0). A sequence of length 0 is the null
    condition. The MLP reads a sequence through its masked mean only."""

    kind: str = enum_name(COND_KINDS, _COND.kind)
    num_classes: int = _COND.num_classes
    dim: int = _COND.dim
    max_length: int = _COND.max_length
    vocab_size: int = _COND.vocab_size
    encoder_layers: int = _COND.encoder_layers
    encoder_heads: int = _COND.encoder_heads

    _c_default = staticmethod(_lib.lib.ddpm_cond_params_default)
    _enums = {"kind": COND_KINDS}

    def __repr__(self) -> str:
        """The constructor that makes this conditioning: Conditioning.classes(10), ..."""
        encoder = {"encoder_layers": self.encoder_layers, "encoder_heads": self.encoder_heads} \
            if self.kind == "tokens" and self.encoder_layers else {}
        made = {"none": (self.none, ()), "classes": (self.classes, (self.num_classes,)),
                "vector": (self.vector, (self.dim,)), "sequence": (self.sequence, (self.dim, self.max_length)),
                "tokens": (self.tokens, (self.vocab_size, self.max_length, self.dim))}.get(self.kind)
        if made is not None and made[0](*made[1], **encoder) == self:
            args = [repr(a) for a in made[1]] + [f"{k}={v!r}" for k, v in encoder.items()]
            return f"Conditioning.{self.kind}({', '.join(args)})"
        # Fields no constructor sets (e.g. num_classes with kind "vector"): every field.
        return f"Conditioning({', '.join(f'{f.name}={getattr(self, f.name)!r}' for f in fields(self))})"

    @classmethod
    def none(cls) -> "Conditioning":
        """Unconditional."""
        return cls(kind="none", num_classes=0, dim=0, max_length=0, vocab_size=0)

    @classmethod
    def classes(cls, num_classes: int) -> "Conditioning":
        """A class label per sample, 0..num_classes-1."""
        return cls(kind="classes", num_classes=num_classes, dim=0, max_length=0, vocab_size=0)

    @classmethod
    def vector(cls, dim: int) -> "Conditioning":
        """A vector of `dim` floats per sample, projected into the time embedding."""
        return cls(kind="vector", num_classes=0, dim=dim, max_length=0, vocab_size=0)

    @classmethod
    def sequence(cls, dim: int, max_length: int) -> "Conditioning":
        """Up to max_length vectors of dim floats per sample, with a length each."""
        return cls(kind="sequence", num_classes=0, dim=dim, max_length=max_length, vocab_size=0)

    @classmethod
    def tokens(cls, vocab_size: int, max_length: int, dim: int = 32, *, encoder_layers: int = 0,
               encoder_heads: int = 0) -> "Conditioning":
        """Up to max_length token ids per sample (0 = padding), embedded in dim features; with
        encoder_layers > 0, a transformer of that many blocks (encoder_heads heads, which must
        divide dim; 0 picks 4, or 1 when 4 does not divide dim) relates the words to each other."""
        if encoder_layers and not encoder_heads:
            encoder_heads = 4 if dim % 4 == 0 else 1
        return cls(kind="tokens", num_classes=0, dim=dim, max_length=max_length, vocab_size=vocab_size,
                   encoder_layers=encoder_layers, encoder_heads=encoder_heads)
