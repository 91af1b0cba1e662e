"""PyTorch twins of SwiftDDPM's networks, and exported weights in and out of them.

    import swiftddpm.torch as sdt
    model.export("roll")                 # a swiftddpm Model: weights + config.json
    net = sdt.from_export("roll")        # torch.nn.Module, weights loaded, eval mode
    out = net(x_t, t)                    # x_t (B, D) or (B, C, H, W), t (B,) int64 [, cond [, lengths]]
    sdt.export(net, "tuned")             # after fine-tuning: back to a folder ...
    sd.Model.from_export("tuned")        # ... and into a swiftddpm Model

`import swiftddpm` never imports torch; importing this module does (pip install torch).

The modules compute exactly what Sources/DDPM/Networks compute (ResidualMLP.swift,
UNet/, Layers/), with the same parameter names as our checkpoints, so state_dict keys are
our tensor names; `make bench` uses them as its PyTorch reference. Their initialisation
follows ours in distribution (not in the random numbers drawn).

Shapes: B = batch, D = data dims, H = hidden width, E = timestep-encoding size, L = residual
blocks, C = image channels, c = base channels, c_l = c·mult[l], R = ResBlocks per level,
W = time-embedding width (H for the MLP, 4c for the UNet), K = classes (label K = "no class"),
Dc = condition features, Lmax = the longest context, V = vocabulary size.

The output is the network's prediction of its export's "prediction" (ε, x_0 or v); with a
learned variance it has twice the channels (features), [prediction; v_Σ] (config.json says
how v_Σ gives σ_t²). The condition (forward's `cond`), by the model's Conditioning kind:
  classes   labels (B,) int64 in 0..K (K = no class); None = no class
  vector    (B, Dc) float; None = every row null (the learned null vector)
  sequence  (B, Lmax, Dc) float with lengths (B,) in 0..Lmax (None: Lmax); length 0 = null
  tokens    (B, Lmax) int64 ids in 0..V-1 (0 = padding: the length ends at the last nonzero id
            unless lengths are given)
`null` (B,) bool marks rows that take the null condition whatever they hold (guidance's
unconditional half).
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
           "SinusoidalEmbedding", "TimeMLP", "TimestepConditioned", "VectorEmbedding", "ContextEmbedding",
           "CrossAttention", "TextEncoder", "init_uniform_"]


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


class VectorEmbedding(nn.Module):
    """temb += proj(c̃), c̃ = c or the learned null vector (Layers/VectorEmbedding.swift)."""

    def __init__(self, Dc: int, W: int):
        super().__init__()
        self.null = nn.Parameter(torch.zeros(Dc))
        self.proj = nn.Linear(Dc, W)
        init_uniform_(self.proj)

    def forward(self, cond, null, B: int):  # cond (B, Dc) or None, null (B,) bool or None -> (B, W)
        if cond is None:
            c = self.null.expand(B, -1)
        else:
            c = cond.to(self.null.dtype)
            if null is not None:
                c = torch.where(null[:, None], self.null.expand(B, -1), c)
        return self.proj(c)


class SequenceAttention(nn.Module):
    """proj(MHA(x)) over row-major sequences (B, Lmax, D), keys j < ℓ_b only
    (Layers/SequenceAttention.swift): [q k v] = qkv(x), head-major inside each; proj zero-initialised."""

    def __init__(self, D: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(D, 3 * D)
        init_uniform_(self.qkv)
        self.proj = nn.Linear(D, D)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x, lengths):  # x (B, Lmax, D), lengths (B,) in 1..Lmax
        B, L, D = x.shape
        h, d = self.heads, D // self.heads
        q, k, v = (t.reshape(B, L, h, d).transpose(1, 2) for t in self.qkv(x).split(D, -1))  # (B, h, Lmax, d)
        mask = (torch.arange(L, device=x.device)[None, :] < lengths[:, None])[:, None, None, :]
        if hasattr(F, "scaled_dot_product_attention"):
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        else:
            a = torch.softmax((q @ k.transpose(-1, -2) / math.sqrt(d)).masked_fill(~mask, float("-inf")), -1) @ v
        return self.proj(a.transpose(1, 2).reshape(B, L, D))


class FeedForward(nn.Module):
    """fc2(SiLU(fc1(x))), D -> 4D -> D, fc2 zero-initialised."""

    def __init__(self, D: int):
        super().__init__()
        self.fc1 = nn.Linear(D, 4 * D)
        init_uniform_(self.fc1)
        self.fc2 = nn.Linear(4 * D, D)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, x):
        return self.fc2(F.silu(self.fc1(x)))


class TransformerBlock(nn.Module):
    """x1 = x + attn(LN1(x)); out = x1 + mlp(LN2(x1)) (Layers/TransformerBlock.swift, pre-LN, SiLU)."""

    def __init__(self, D: int, heads: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(D, eps=1e-5)
        self.attn = SequenceAttention(D, heads)
        self.norm2 = nn.LayerNorm(D, eps=1e-5)
        self.mlp = FeedForward(D)

    def forward(self, x, lengths):
        x = x + self.attn(self.norm1(x), lengths)
        return x + self.mlp(self.norm2(x))


class TextEncoder(nn.Module):
    """c̃ = LN(block_n(... block_1(x_0))) (Layers/TextEncoder.swift); modules "0".."n-1" and "norm".
    The caller keeps the null rows' x_0 and zeroes positions i ≥ ℓ_b."""

    def __init__(self, D: int, layers: int, heads: int):
        super().__init__()
        for k in range(layers):
            self.add_module(str(k), TransformerBlock(D, heads))
        self.layers = layers
        self.norm = nn.LayerNorm(D, eps=1e-5)

    def forward(self, x, lengths):
        for k in range(self.layers):
            x = getattr(self, str(k))(x, lengths)
        return self.norm(x)


class ContextEmbedding(nn.Module):
    """The context c̃ (B, Lmax, Dc) and lengths ℓ (B,) of a sequence or token condition
    (Layers/ContextEmbedding.swift): the given vectors, or tokens[id_i] + positions[i] (then
    the text encoder, when the conditioning has one), for i < ℓ_b (zero beyond); a null row
    (or ℓ_b = 0) takes [null] with ℓ_b = 1."""

    def __init__(self, Dc: int, Lmax: int, V: int = 0, encoder_layers: int = 0, encoder_heads: int = 0):
        super().__init__()
        self.dim, self.max_length, self.vocab_size = Dc, Lmax, V
        self.null = nn.Parameter(torch.randn(Dc) * 0.02)
        if V > 0:
            self.tokens = nn.Parameter(torch.randn(V, Dc) * 0.02)
            self.positions = nn.Parameter(torch.randn(Lmax, Dc) * 0.02)
        self.encoder = TextEncoder(Dc, encoder_layers, encoder_heads) if encoder_layers > 0 else None

    def forward(self, cond, lengths, null, B: int):
        L, D = self.max_length, self.dim
        device = self.null.device
        if cond is None:
            lengths = torch.zeros(B, dtype=torch.int64, device=device)
            values = torch.zeros(B, L, D, dtype=self.null.dtype, device=device)
        else:
            if self.vocab_size > 0:
                ids = cond.long()
                if lengths is None:  # 0 = padding: a row's length ends at its last nonzero id
                    last = torch.arange(1, L + 1, device=device).expand(B, L) * (ids != 0)
                    lengths = last.max(1).values
                values = self.tokens[ids] + self.positions[None]
            else:
                values = cond.to(self.null.dtype)
                if lengths is None:
                    lengths = torch.full((B,), L, dtype=torch.int64, device=device)
            lengths = torch.as_tensor(lengths, device=device).long()
        is_null = lengths == 0
        if null is not None:
            is_null = is_null | null
        lengths = torch.where(is_null, torch.ones_like(lengths), lengths)
        mask = torch.arange(L, device=device)[None, :] < lengths[:, None]  # (B, Lmax)
        null_context = torch.zeros(L, D, dtype=self.null.dtype, device=device)
        null_context[0] = self.null
        values = torch.where(is_null[:, None, None], null_context, values * mask[..., None])
        if self.encoder is not None:  # null rows keep [null, 0, ...] as it stands
            encoded = self.encoder(values, lengths) * mask[..., None]
            values = torch.where(is_null[:, None, None], values, encoded)
        return values, lengths

    @staticmethod
    def pool(context, lengths):  # the masked mean (B, Dc) of c̃ (zero beyond ℓ_b)
        return context.sum(1) / lengths[:, None].to(context.dtype)


class TimestepConditioned(nn.Module):
    """Base of both networks: temb = W_t2 SiLU(W_t1 sinusoid(t)) + the condition's embedding
    (Networks/ConditionEncoder.swift).

    A subclass calls add_conditioning() in its __init__ where its modules are created (the
    order of creation is the order of random draws), then embed(t, cond, lengths, null) in
    its forward."""

    def add_conditioning(self, E: int, W: int, timesteps: int, cond: Conditioning, reinit_time: bool = False):
        """Creates sinusoid, time (E -> W -> W) and the condition's embeddings: class_embedding
        ((K + 1, W), N(0, 0.02^2), row K = "no class"); cond_vector (null (Dc,), proj Dc -> W);
        context (null, and tokens (V, Dc), positions (Lmax, Dc) for tokens) and context_pool
        (Dc -> W), with context.encoder (a TextEncoder) for tokens with encoder_layers > 0
        (where Conditioning has that field). reinit_time draws time.fc1 and time.fc2 again with init_uniform_ before
        the condition's embeddings (the UNet's order)."""
        self.conditioning = cond
        self.num_classes = cond.num_classes if cond.kind == "classes" else 0
        self.timesteps = timesteps
        self.sinusoid = SinusoidalEmbedding(E, timesteps)
        self.time = TimeMLP(E, W)
        if reinit_time:
            for m in (self.time.fc1, self.time.fc2):
                init_uniform_(m)
        self.class_embedding = nn.Embedding(self.num_classes + 1, W) if self.num_classes > 0 else None
        if self.class_embedding is not None:
            nn.init.normal_(self.class_embedding.weight, std=0.02)
        self.cond_vector = VectorEmbedding(cond.dim, W) if cond.kind == "vector" else None
        has_context = cond.kind in ("sequence", "tokens")
        tokens = cond.kind == "tokens"
        self.context = ContextEmbedding(cond.dim, cond.max_length, cond.vocab_size if tokens else 0,
                                        getattr(cond, "encoder_layers", 0) if tokens else 0,
                                        getattr(cond, "encoder_heads", 0) if tokens else 0) if has_context else None
        self.context_pool = nn.Linear(cond.dim, W) if has_context else None
        if self.context_pool is not None:
            init_uniform_(self.context_pool)

    def embed(self, t, cond=None, lengths=None, null=None):
        """temb (B, W), and the context (c̃ (B, Lmax, Dc), ℓ (B,)) or None, of t (B,) and the
        condition (see the module's docstring)."""
        temb = self.time(self.sinusoid(t))
        B = t.shape[0]
        if self.class_embedding is not None:
            labels = torch.full_like(t, self.num_classes) if cond is None else cond.long()
            if null is not None:
                labels = torch.where(null, torch.full_like(labels, self.num_classes), labels)
            temb = temb + self.class_embedding(labels)
        if self.cond_vector is not None:
            temb = temb + self.cond_vector(cond, null, B)
        if self.context is None:
            return temb, None
        context, lengths = self.context(cond, lengths, null, B)
        temb = temb + self.context_pool(ContextEmbedding.pool(context, lengths))
        return temb, (context, lengths)


def _conditioning(num_classes: int, cond: Conditioning | None) -> Conditioning:
    """The networks' Conditioning: cond if given (then num_classes must be 0), else K > 0
    classes or none."""
    if cond is not None:
        if num_classes:
            raise ValueError("give num_classes or cond, not both")
        if not isinstance(cond, Conditioning):
            raise TypeError(f"cond must be a swiftddpm.Conditioning (got {type(cond).__name__})")
        return cond
    return Conditioning.classes(int(num_classes)) if num_classes else Conditioning.none()


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
    (0 = unconditional), or cond: a swiftddpm.Conditioning of any kind; timesteps: T (the
    sinusoid table covers t in 0..T-1); learned_variance: the readout has 2D outputs
    ([prediction; v])."""

    def __init__(self, config: MLPConfig, num_classes: int = 0, timesteps: int = 1000, *,
                 cond: Conditioning | None = None, learned_variance: bool = False):
        super().__init__()
        c = config
        D, H, E, L = c.data_dim, c.hidden, c.time_embed_dim, c.depth
        self.config = c
        self.learned_variance = learned_variance
        self.add_conditioning(E, H, timesteps, _conditioning(num_classes, cond))
        self.in_proj = nn.Linear(D, H)
        self.blocks = nn.ModuleList(Block(H) for _ in range(L))
        self.out_proj = nn.Linear(H, 2 * D if learned_variance else D)
        for m in self.modules():  # every Linear drawn again, in module order, as Linear.swift
            if isinstance(m, nn.Linear):
                init_uniform_(m)

    def forward(self, x, t, cond=None, lengths=None, null=None):  # x (B, D), t (B,) -> (B, D) or (B, 2D)
        temb, _ = self.embed(t, cond, lengths, null)  # the MLP reads a context through its masked mean only
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
# CrossAttention (with a sequence or token condition, after the stage's attention, at
#           cross_attention_levels and in middle.0): out = x + proj(softmax_{j<ℓ}(q_iᵀk_j/√d)·v_j),
#           q = 1×1 conv of GN(x), [k v] = kv(c̃) (a Linear over Dc), proj zero-initialised
# A signal UNet (height 1) has 1×3 kernels and resamples along the width only.

def conv(ci: int, co: int, k: int, stride: int = 1, zero: bool = False, signal: bool = False) -> nn.Conv2d:
    """Conv2d k×k (1×k for a signal) with padding k/2; U(±1/√(fan_in)) for weight and bias
    (PyTorch's default, as Conv2d.swift), or zeros."""
    m = nn.Conv2d(ci, co, (1, k) if signal else k, stride=stride, padding=(0, k // 2) if signal else k // 2)
    if zero:
        nn.init.zeros_(m.weight)
        nn.init.zeros_(m.bias)
    else:
        init_uniform_(m)
    return m


class ResBlock(nn.Module):
    def __init__(self, ci: int, co: int, T: int, G: int, dropout: float, signal: bool = False):
        super().__init__()
        self.norm1 = nn.GroupNorm(G, ci, eps=1e-5)
        self.conv1 = conv(ci, co, 3, signal=signal)
        self.time_proj = nn.Linear(T, co)
        init_uniform_(self.time_proj)
        self.norm2 = nn.GroupNorm(G, co, eps=1e-5)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = conv(co, co, 3, zero=True, signal=signal)
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


class CrossAttention(nn.Module):
    def __init__(self, C: int, heads: int, G: int, Dc: int):
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(G, C, eps=1e-5)
        self.q = conv(C, C, 1)
        self.kv = nn.Linear(Dc, 2 * C)
        init_uniform_(self.kv)
        self.proj = conv(C, C, 1, zero=True)

    def forward(self, x, context):  # x (B, C, H, W), context (c̃ (B, Lmax, Dc), ℓ (B,))
        values, lengths = context
        B, C, H, W = x.shape
        L, h, d = values.shape[1], self.heads, C // self.heads
        q = self.q(self.norm(x)).reshape(B, h, d, H * W).transpose(-1, -2)  # (B, h, N, d)
        kv = self.kv(values)  # (B, Lmax, 2C): [k | v], head-major inside each
        k, v = (kv[..., i * C:(i + 1) * C].reshape(B, L, h, d).transpose(1, 2) for i in range(2))  # (B, h, Lmax, d)
        mask = (torch.arange(L, device=x.device)[None, :] < lengths[:, None])[:, None, None, :]  # keys j < ℓ_b
        if hasattr(F, "scaled_dot_product_attention"):
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        else:
            s = (q @ k.transpose(-1, -2) / math.sqrt(d)).masked_fill(~mask, float("-inf"))
            a = torch.softmax(s, -1) @ v
        return x + self.proj(a.transpose(-1, -2).reshape(B, C, H, W))


class Downsample(nn.Module):
    def __init__(self, C: int, signal: bool = False):
        super().__init__()
        self.conv = conv(C, C, 3, stride=2, signal=signal)

    def forward(self, x):
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, C: int, signal: bool = False):
        super().__init__()
        self.scale = (1, 2) if signal else (2, 2)
        self.conv = conv(C, C, 3, signal=signal)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=self.scale, mode="nearest"))


class Stage(nn.Module):
    """A ResBlock with optional attention, cross-attention and upsampling, or a lone Downsample."""

    def __init__(self, res=None, attn=None, down=None, up=None, xattn=None):
        super().__init__()
        self.res, self.attn, self.down, self.up = res, attn, down, up
        self.xattn = xattn

    def forward(self, x, temb_act, context=None):
        if self.res is not None:
            x = self.res(x, temb_act)
        if self.attn is not None:
            x = self.attn(x)
        if self.xattn is not None:
            x = self.xattn(x, context)
        if self.down is not None:
            x = self.down(x)
        if self.up is not None:
            x = self.up(x)
        return x


class UNet(TimestepConditioned):
    """config: a swiftddpm.UNetConfig (height 1: a signal UNet); num_classes: K (0 =
    unconditional), or cond: a swiftddpm.Conditioning of any kind; timesteps: T;
    learned_variance: out_conv has 2C channels ([prediction; v])."""

    def __init__(self, config: UNetConfig, num_classes: int = 0, timesteps: int = 1000, *,
                 cond: Conditioning | None = None, learned_variance: bool = False):
        super().__init__()
        c = config
        self.config = c
        self.learned_variance = learned_variance
        base, L, R, G = c.base_channels, len(c.channel_mult), c.res_blocks, c.groups
        T = 4 * base
        signal = c.height == 1
        cond = _conditioning(num_classes, cond)
        self.add_conditioning(c.time_embed_dim, T, timesteps, cond, reinit_time=True)
        ch = base * c.channel_mult[0]
        self.in_conv = conv(c.channels, ch, 3, signal=signal)

        def res(ci, co):
            return ResBlock(ci, co, T, G, c.dropout, signal)

        def attn(C):
            return Attention(C, c.attention_heads, G)

        def xattn(C, level):  # cross-attention at the flagged levels and in the middle (level None)
            if self.context is None or (level is not None and level not in c.cross_attention_levels):
                return None
            return CrossAttention(C, c.attention_heads, G, cond.dim)

        skips = [ch]
        encoder = []
        for level in range(L):
            co = base * c.channel_mult[level]
            for _ in range(R):
                encoder.append(Stage(res=res(ch, co), attn=attn(co) if level in c.attention_levels else None,
                                     xattn=xattn(co, level)))
                ch = co
                skips.append(ch)
            if level < L - 1:
                encoder.append(Stage(down=Downsample(ch, signal)))
                skips.append(ch)
        self.encoder = nn.ModuleList(encoder)
        self.middle = nn.ModuleList([Stage(res=res(ch, ch), attn=attn(ch), xattn=xattn(ch, None)),
                                     Stage(res=res(ch, ch))])
        decoder = []
        for level in reversed(range(L)):
            co = base * c.channel_mult[level]
            for i in range(R + 1):
                skip = skips.pop()
                decoder.append(Stage(res=res(ch + skip, co), attn=attn(co) if level in c.attention_levels else None,
                                     xattn=xattn(co, level), up=Upsample(co, signal) if level > 0 and i == R else None))
                ch = co
        self.decoder = nn.ModuleList(decoder)
        self.out_norm = nn.GroupNorm(G, ch, eps=1e-5)
        self.out_conv = conv(ch, (2 if learned_variance else 1) * c.channels, 3, zero=True, signal=signal)

    def forward(self, x, t, cond=None, lengths=None, null=None):  # x (B, C, H, W), t (B,) -> (B, C or 2C, H, W)
        temb, context = self.embed(t, cond, lengths, null)
        temb_act = F.silu(temb)
        h = self.in_conv(x)
        hs = [h]
        for stage in self.encoder:
            h = stage(h, temb_act, context)
            hs.append(h)
        for stage in self.middle:
            h = stage(h, temb_act, context)
        for stage in self.decoder:
            h = stage(torch.cat([h, hs.pop()], 1), temb_act, context)
        return self.out_conv(F.silu(self.out_norm(h)))


# ---- Exported folders --------------------------------------------------------------------

def network(config: MLPConfig | UNetConfig, num_classes: int = 0, timesteps: int = 1000, *,
            cond: Conditioning | None = None, learned_variance: bool = False) -> nn.Module:
    """The module of a network config: ResidualMLP for an MLPConfig, UNet for a UNetConfig;
    K = num_classes classes, or cond, a swiftddpm.Conditioning of any kind."""
    if isinstance(config, MLPConfig):
        return ResidualMLP(config, num_classes, timesteps, cond=cond, learned_variance=learned_variance)
    if isinstance(config, UNetConfig):
        return UNet(config, num_classes, timesteps, cond=cond, learned_variance=learned_variance)
    raise TypeError(f"config must be a swiftddpm MLPConfig or UNetConfig (got {type(config).__name__})")


def from_export(path: str | os.PathLike) -> nn.Module:
    """The torch module of an export folder (Model.export), its weights loaded (strictly: every
    parameter, no extra), in eval mode, on the CPU. The folder's config.json is kept as the
    module's `export_config` attribute (export() reuses its schedule and prediction target);
    `prediction` is what the output is ("epsilon", "sample" or "v_prediction")."""
    config = _export.read_config(path)
    with _export.format_errors(path):  # a malformed config.json or weights file: FormatError
        cond = _export.conditioning_from_json(config["conditioning"])
        target, learned = _export.objective_from_json(config)
        with _export.schedule_from_json(config["schedule"]) as schedule:
            timesteps = schedule.num_timesteps
        net = network(_export.network_from_json(config["network"]), timesteps=timesteps, cond=cond,
                      learned_variance=learned)
        state = {k: torch.from_numpy(v) for k, v in _export.read_weights(path).items()}
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as e:  # missing, unexpected or misshapen tensors
            raise _export.FormatError(f"'{os.fspath(path)}': the weights do not fit the config: {e}") from None
    net.export_config = config
    net.prediction = _export.PREDICTION_NAMES[target]
    return net.eval()


def state_dict_numpy(module: nn.Module) -> dict[str, np.ndarray]:
    """The module's parameters as float32 numpy arrays by name (a copy, on the CPU)."""
    return {k: v.detach().to("cpu", torch.float32).numpy().copy() for k, v in module.state_dict().items()}


def export(module: nn.Module, path: str | os.PathLike, schedule: Any = None, prediction_target: str | None = None) -> str:
    """Writes a ResidualMLP or UNet of this module as an export folder that Model.from_export
    (and from_export here) read. schedule: a swiftddpm NoiseSchedule or ScheduleConfig; default
    the schedule of the folder the module came from (from_export), else linear with
    T = module.timesteps and the library's default β range. prediction_target: what the
    module's output is, "eps", "x0" or "v"; default that of the folder it came from, else
    "eps". Returns path."""
    if not isinstance(module, (ResidualMLP, UNet)):
        raise TypeError(f"module must be a swiftddpm.torch ResidualMLP or UNet (got {type(module).__name__})")
    source = getattr(module, "export_config", None)
    if prediction_target is None:
        prediction_target = _export.objective_from_json(source)[0] if source is not None else "eps"
    if prediction_target not in _export.PREDICTION_NAMES:
        raise ValueError(f"prediction_target must be one of {sorted(_export.PREDICTION_NAMES)} (got {prediction_target!r})")
    if schedule is None and source is not None:
        sched = _export.schedule_from_json(source["schedule"])
    elif isinstance(schedule, NoiseSchedule):
        sched = NoiseSchedule.custom(schedule.betas) if schedule.kind == "custom" else \
            NoiseSchedule.from_config(schedule.params)
    else:
        sched = NoiseSchedule.from_config(schedule or ScheduleConfig(num_timesteps=module.timesteps))
    with sched:
        if sched.num_timesteps != module.timesteps:
            raise ValueError(f"the schedule has {sched.num_timesteps} timesteps, the module {module.timesteps}")
        config = _export.make_config(module.config, module.conditioning, sched.params, sched.betas, weights="torch",
                                     prediction_target=prediction_target, learned_variance=module.learned_variance)
    return str(_export.write_export(path, state_dict_numpy(module), config))
