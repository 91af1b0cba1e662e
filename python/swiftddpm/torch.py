"""PyTorch twins of SwiftDDPM's networks, and exported weights in and out of them.

    import swiftddpm.torch as sdt
    model.export("roll")                 # a swiftddpm Model: weights + config.json
    net = sdt.from_export("roll")        # torch.nn.Module, weights loaded, eval mode
    eps = net(x_t, t)                    # x_t (B, D) or (B, C, H, W), t (B,) int64 [, labels (B,)]
    sdt.export(net, "tuned")             # after fine-tuning: back to a folder ...
    sd.Model.from_export("tuned")        # ... and into a swiftddpm Model

`import swiftddpm` never imports torch; importing this module does (pip install torch).

The modules compute exactly what Sources/DDPM/Networks compute (ResidualMLP.swift,
UNet/, Layers/), with the same parameter names as our checkpoints, so state_dict keys are
our tensor names; `make bench` uses them as its PyTorch reference. Their initialisation
follows ours in distribution (not in the random numbers drawn).

Shapes: B = batch, D = data dims, H = hidden width, E = timestep-encoding size, L = residual
blocks, C = image channels, c = base channels, c_l = c·mult[l], R = ResBlocks per level,
W = time-embedding width (H for the MLP, 4c for the UNet), K = classes (label K = "no class").
"""
from __future__ import annotations

import math
import os
from typing import Any

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError("swiftddpm.torch needs PyTorch (pip install torch); the rest of swiftddpm does not") from e

import numpy as np

from . import _export
from .config import Conditioning, MLPConfig, ScheduleConfig, UNetConfig
from .schedule import NoiseSchedule

__all__ = ["ResidualMLP", "UNet", "network", "from_export", "export", "state_dict_numpy",
           "SinusoidalEmbedding", "TimeMLP", "TimestepConditioned", "init_uniform_"]


# ---- Initialisation ---------------------------------------------------------------------

def init_uniform_(m: nn.Linear | nn.Conv2d) -> None:
    """weight and bias ~ U(+-1/sqrt(fan_in)), fan_in = in (Linear) or in·k·k (Conv2d): PyTorch's
    default distribution, as Linear.swift and Conv2d.swift; drawn weight first, then bias."""
    bound = 1 / math.sqrt(m.weight[0].numel())
    nn.init.uniform_(m.weight, -bound, bound)
    nn.init.uniform_(m.bias, -bound, bound)


# ---- Timestep and class conditioning (Layers/TimeEmbedding.swift) -----------------------

class SinusoidalEmbedding(nn.Module):
    """emb[i] = sin(t w_i), emb[E/2 + i] = cos(t w_i), w_i = 10000^(-i/(E/2)); a (T, E) table."""

    def __init__(self, dim: int, timesteps: int):
        super().__init__()
        half = dim // 2
        omega = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float64) / half)
        angles = torch.arange(timesteps, dtype=torch.float64)[:, None] * omega[None, :]
        self.register_buffer("table", torch.cat([angles.sin(), angles.cos()], 1).float(), persistent=False)

    def forward(self, t):  # t: (B,) int64 -> (B, E)
        return self.table[t]


class TimeMLP(nn.Module):
    """temb = fc2(SiLU(fc1(e)))  (our names time.fc1, time.fc2)."""

    def __init__(self, E: int, W: int):
        super().__init__()
        self.fc1 = nn.Linear(E, W)
        self.fc2 = nn.Linear(W, W)

    def forward(self, e):
        return self.fc2(F.silu(self.fc1(e)))


class TimestepConditioned(nn.Module):
    """Base of both networks: temb = W_t2 SiLU(W_t1 sinusoid(t)) [+ class_embedding[label]].

    A subclass calls add_conditioning() in its __init__ where its modules are created (the
    order of creation is the order of random draws), then embed(t, labels) in its forward."""

    def add_conditioning(self, E: int, W: int, timesteps: int, num_classes: int, reinit_time: bool = False):
        """Creates sinusoid, time (E -> W -> W) and, for K = num_classes > 0, class_embedding
        ((K + 1, W), N(0, 0.02^2), row K = "no class"). reinit_time draws time.fc1 and
        time.fc2 again with init_uniform_ before the class embedding (the UNet's order)."""
        self.num_classes = num_classes
        self.timesteps = timesteps
        self.sinusoid = SinusoidalEmbedding(E, timesteps)
        self.time = TimeMLP(E, W)
        if reinit_time:
            for m in (self.time.fc1, self.time.fc2):
                init_uniform_(m)
        self.class_embedding = nn.Embedding(num_classes + 1, W) if num_classes > 0 else None
        if self.class_embedding is not None:
            nn.init.normal_(self.class_embedding.weight, std=0.02)

    def embed(self, t, labels=None):  # t (B,), labels (B,) or None (= no class) -> temb (B, W)
        temb = self.time(self.sinusoid(t))
        if self.class_embedding is not None:
            if labels is None:
                labels = torch.full_like(t, self.num_classes)
            temb = temb + self.class_embedding(labels)
        return temb


# ---- Residual MLP (Networks/ResidualMLP.swift) -------------------------------------------

class Block(nn.Module):
    """h + fc2(SiLU(fc1(LN(h) + temb)))."""

    def __init__(self, H: int):
        super().__init__()
        self.norm = nn.LayerNorm(H, eps=1e-5)
        self.fc1 = nn.Linear(H, H)
        self.fc2 = nn.Linear(H, H)

    def forward(self, h, temb):
        return h + self.fc2(F.silu(self.fc1(self.norm(h) + temb)))


class ResidualMLP(TimestepConditioned):
    """e = sinusoid(t); temb = W_t2 SiLU(W_t1 e) [+ class_embedding[label]]; h_0 = W_in x;
    h_{l+1} = h_l + W2_l SiLU(W1_l (LN_l(h_l) + temb)); eps = W_out h_L (a linear readout).
    Init as ours: Linear U(+-1/sqrt(in)) for W and b (PyTorch's default), LN ones/zeros,
    class embedding N(0, 0.02^2).

    config: a swiftddpm.MLPConfig (data_dim, hidden, depth, time_embed_dim); num_classes: K
    (0 = unconditional); timesteps: T (the sinusoid table covers t in 0..T-1)."""

    def __init__(self, config: MLPConfig, num_classes: int = 0, timesteps: int = 1000):
        super().__init__()
        c = config
        D, H, E, L = c.data_dim, c.hidden, c.time_embed_dim, c.depth
        self.config = c
        self.add_conditioning(E, H, timesteps, num_classes)
        self.in_proj = nn.Linear(D, H)
        self.blocks = nn.ModuleList(Block(H) for _ in range(L))
        self.out_proj = nn.Linear(H, D)
        for m in self.modules():  # every Linear drawn again, in module order, as Linear.swift
            if isinstance(m, nn.Linear):
                init_uniform_(m)

    def forward(self, x, t, labels=None):  # x (B, D), t (B,), labels (B,) or None -> eps (B, D)
        temb = self.embed(t, labels)
        h = self.in_proj(x)
        for block in self.blocks:
            h = block(h, temb)
        return self.out_proj(h)


# ---- UNet (Networks/UNet/, Layers/ResBlock.swift, Attention.swift, Resample.swift) --------
#
#   e    = sinusoid(t)                                   (B, E)
#   temb = W_t2·SiLU(W_t1·e) [+ class_embedding[label]]  (B, W); every ResBlock reads SiLU(temb)
#   h    = Conv3×3(x)                                    (B, c_0, H, W)
#   encoder: level l: R × [ResBlock(→ c_l) (+ Attention if l is flagged)], then Downsample
#            (stride-2 conv) unless l is the last level; every output (and h) is a skip
#   middle:  ResBlock + Attention, ResBlock
#   decoder: level l = L−1..0: R+1 × [ResBlock(concat(h, skip) → c_l) (+ Attention)], the last
#            of each level but level 0 followed by Upsample (nearest ×2, conv)
#   eps  = Conv3×3(SiLU(GroupNorm(h)))   (zero-initialised)
# ResBlock: out = skip(x) + conv2(dropout(SiLU(GN2(conv1(SiLU(GN1(x))) + W_t·SiLU(temb)))))
#           (conv2 zero-initialised; skip is a 1×1 conv when channels change)
# Attention: out = x + proj(softmax(qᵀk/√d)·v) over the pixels, q, k, v = 1×1 conv of GN(x)
#           (proj zero-initialised)

def conv(ci: int, co: int, k: int, stride: int = 1, zero: bool = False) -> nn.Conv2d:
    """Conv2d with padding k/2; U(±1/√(ci·k·k)) for weight and bias (PyTorch's default, as
    Conv2d.swift), or zeros."""
    m = nn.Conv2d(ci, co, k, stride=stride, padding=k // 2)
    if zero:
        nn.init.zeros_(m.weight)
        nn.init.zeros_(m.bias)
    else:
        init_uniform_(m)
    return m


class ResBlock(nn.Module):
    def __init__(self, ci: int, co: int, T: int, G: int, dropout: float):
        super().__init__()
        self.norm1 = nn.GroupNorm(G, ci, eps=1e-5)
        self.conv1 = conv(ci, co, 3)
        self.time_proj = nn.Linear(T, co)
        init_uniform_(self.time_proj)
        self.norm2 = nn.GroupNorm(G, co, eps=1e-5)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = conv(co, co, 3, zero=True)
        self.skip = conv(ci, co, 1) if ci != co else None

    def forward(self, x, temb_act):  # x (B, Ci, H, W), temb_act (B, T) = SiLU(temb)
        h = self.conv1(F.silu(self.norm1(x))) + self.time_proj(temb_act)[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return (self.skip(x) if self.skip is not None else x) + h


class Attention(nn.Module):
    def __init__(self, C: int, heads: int, G: int):
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(G, C, eps=1e-5)
        self.qkv = conv(C, 3 * C, 1)
        self.proj = conv(C, C, 1, zero=True)

    def forward(self, x):  # x (B, C, H, W)
        B, C, H, W = x.shape
        N, h, d = H * W, self.heads, C // self.heads
        qkv = self.qkv(self.norm(x)).reshape(B, 3, h, d, N)  # channels [q; k; v], head-major inside each
        q, k, v = (qkv[:, i].transpose(-1, -2) for i in range(3))  # (B, h, N, d)
        if hasattr(F, "scaled_dot_product_attention"):  # PyTorch >= 2.0
            a = F.scaled_dot_product_attention(q, k, v)  # softmax(q kᵀ/√d) v
        else:
            a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d), -1) @ v
        return x + self.proj(a.transpose(-1, -2).reshape(B, C, H, W))


class Downsample(nn.Module):
    def __init__(self, C: int):
        super().__init__()
        self.conv = conv(C, C, 3, stride=2)

    def forward(self, x):
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, C: int):
        super().__init__()
        self.conv = conv(C, C, 3)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class Stage(nn.Module):
    """A ResBlock with optional attention and upsampling, or a lone Downsample."""

    def __init__(self, res=None, attn=None, down=None, up=None):
        super().__init__()
        self.res, self.attn, self.down, self.up = res, attn, down, up

    def forward(self, x, temb_act):
        if self.res is not None:
            x = self.res(x, temb_act)
        if self.attn is not None:
            x = self.attn(x)
        if self.down is not None:
            x = self.down(x)
        if self.up is not None:
            x = self.up(x)
        return x


class UNet(TimestepConditioned):
    """config: a swiftddpm.UNetConfig; num_classes: K (0 = unconditional); timesteps: T."""

    def __init__(self, config: UNetConfig, num_classes: int = 0, timesteps: int = 1000):
        super().__init__()
        c = config
        self.config = c
        base, L, R, G = c.base_channels, len(c.channel_mult), c.res_blocks, c.groups
        T = 4 * base
        self.add_conditioning(c.time_embed_dim, T, timesteps, num_classes, reinit_time=True)
        ch = base * c.channel_mult[0]
        self.in_conv = conv(c.channels, ch, 3)

        def res(ci, co):
            return ResBlock(ci, co, T, G, c.dropout)

        def attn(C):
            return Attention(C, c.attention_heads, G)

        skips = [ch]
        encoder = []
        for level in range(L):
            co = base * c.channel_mult[level]
            for _ in range(R):
                encoder.append(Stage(res=res(ch, co), attn=attn(co) if level in c.attention_levels else None))
                ch = co
                skips.append(ch)
            if level < L - 1:
                encoder.append(Stage(down=Downsample(ch)))
                skips.append(ch)
        self.encoder = nn.ModuleList(encoder)
        self.middle = nn.ModuleList([Stage(res=res(ch, ch), attn=attn(ch)), Stage(res=res(ch, ch))])
        decoder = []
        for level in reversed(range(L)):
            co = base * c.channel_mult[level]
            for i in range(R + 1):
                skip = skips.pop()
                decoder.append(Stage(res=res(ch + skip, co), attn=attn(co) if level in c.attention_levels else None,
                                     up=Upsample(co) if level > 0 and i == R else None))
                ch = co
        self.decoder = nn.ModuleList(decoder)
        self.out_norm = nn.GroupNorm(G, ch, eps=1e-5)
        self.out_conv = conv(ch, c.channels, 3, zero=True)

    def forward(self, x, t, labels=None):  # x (B, C, H, W), t (B,), labels (B,) or None -> eps
        temb_act = F.silu(self.embed(t, labels))
        h = self.in_conv(x)
        hs = [h]
        for stage in self.encoder:
            h = stage(h, temb_act)
            hs.append(h)
        for stage in self.middle:
            h = stage(h, temb_act)
        for stage in self.decoder:
            h = stage(torch.cat([h, hs.pop()], 1), temb_act)
        return self.out_conv(F.silu(self.out_norm(h)))


# ---- Exported folders --------------------------------------------------------------------

def network(config: MLPConfig | UNetConfig, num_classes: int = 0, timesteps: int = 1000) -> nn.Module:
    """The module of a network config: ResidualMLP for an MLPConfig, UNet for a UNetConfig."""
    if isinstance(config, MLPConfig):
        return ResidualMLP(config, num_classes, timesteps)
    if isinstance(config, UNetConfig):
        return UNet(config, num_classes, timesteps)
    raise TypeError(f"config must be a swiftddpm MLPConfig or UNetConfig (got {type(config).__name__})")


def from_export(path: str | os.PathLike) -> nn.Module:
    """The torch module of an export folder (Model.export), its weights loaded (strictly: every
    parameter, no extra), in eval mode, on the CPU. The folder's config.json is kept as the
    module's `export_config` attribute (export() reuses its schedule)."""
    config = _export.read_config(path)
    with _export.format_errors(path):  # a malformed config.json or weights file: FormatError
        cond = _export.conditioning_from_json(config["conditioning"])
        with _export.schedule_from_json(config["schedule"]) as schedule:
            timesteps = schedule.num_timesteps
        net = network(_export.network_from_json(config["network"]), cond.num_classes if cond.kind == "classes" else 0,
                      timesteps)
        state = {k: torch.from_numpy(v) for k, v in _export.read_weights(path).items()}
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as e:  # missing, unexpected or misshapen tensors
            raise _export.FormatError(f"'{os.fspath(path)}': the weights do not fit the config: {e}") from None
    net.export_config = config
    return net.eval()


def state_dict_numpy(module: nn.Module) -> dict[str, np.ndarray]:
    """The module's parameters as float32 numpy arrays by name (a copy, on the CPU)."""
    return {k: v.detach().to("cpu", torch.float32).numpy().copy() for k, v in module.state_dict().items()}


def export(module: nn.Module, path: str | os.PathLike, schedule: Any = None) -> str:
    """Writes a ResidualMLP or UNet of this module as an export folder that Model.from_export
    (and from_export here) read. schedule: a swiftddpm NoiseSchedule or ScheduleConfig; default
    the schedule of the folder the module came from (from_export), else linear with
    T = module.timesteps and the library's default β range. Returns path."""
    if not isinstance(module, (ResidualMLP, UNet)):
        raise TypeError(f"module must be a swiftddpm.torch ResidualMLP or UNet (got {type(module).__name__})")
    if schedule is None and getattr(module, "export_config", None) is not None:
        sched = _export.schedule_from_json(module.export_config["schedule"])
    elif isinstance(schedule, NoiseSchedule):
        sched = NoiseSchedule.custom(schedule.betas) if schedule.kind == "custom" else \
            NoiseSchedule.from_config(schedule.params)
    else:
        sched = NoiseSchedule.from_config(schedule or ScheduleConfig(num_timesteps=module.timesteps))
    with sched:
        if sched.num_timesteps != module.timesteps:
            raise ValueError(f"the schedule has {sched.num_timesteps} timesteps, the module {module.timesteps}")
        cond = Conditioning.classes(module.num_classes) if module.num_classes else Conditioning.none()
        config = _export.make_config(module.config, cond, sched.params, sched.betas, weights="torch")
    return str(_export.write_export(path, state_dict_numpy(module), config))
