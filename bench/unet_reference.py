"""PyTorch reference of SwiftDDPM's image network, Sources/DDPM/Networks/UNet/ (with
Layers/ResBlock.swift, Attention.swift, Resample.swift, Conv2d.swift, GroupNorm.swift),
with the same parameter names as our checkpoints, for `make bench`. The timestep embedding,
the schedule, the training recipe and the sampler are in reference_common.py.

Shapes: B = batch, C = image channels, c = base channels, c_l = c·mult[l], R = ResBlocks
per level, E = timestep-encoding size, T = 4c time-embedding width, K = classes (K = null).

  e    = sinusoid(t)                                   (B, E)
  temb = W_t2·SiLU(W_t1·e) [+ class_embedding[label]]  (B, T); every ResBlock reads SiLU(temb)
  h    = Conv3×3(x)                                    (B, c_0, H, W)
  encoder: level l: R × [ResBlock(→ c_l) (+ Attention if l is flagged)], then Downsample
           (stride-2 conv) unless l is the last level; every output (and h) is a skip
  middle:  ResBlock + Attention, ResBlock
  decoder: level l = L−1..0: R+1 × [ResBlock(concat(h, skip) → c_l) (+ Attention)], the last
           of each level but level 0 followed by Upsample (nearest ×2, conv)
  eps  = Conv3×3(SiLU(GroupNorm(h)))   (zero-initialised)
ResBlock: out = skip(x) + conv2(dropout(SiLU(GN2(conv1(SiLU(GN1(x))) + W_t·SiLU(temb)))))
          (conv2 zero-initialised; skip is a 1×1 conv when channels change)
Attention: out = x + proj(softmax(qᵀk/√d)·v) over the pixels, q, k, v = 1×1 conv of GN(x)
          (proj zero-initialised)
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from reference_common import TimestepConditioned, init_uniform_


@dataclass
class UNetConfig:
    channels: int
    height: int
    width: int
    base_channels: int = 32
    channel_mult: tuple = (1, 2, 2)
    res_blocks: int = 2
    attention_levels: tuple = (2,)
    attention_heads: int = 1
    groups: int = 8
    dropout: float = 0.0
    time_embed_dim: int = 64
    num_classes: int = 0


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
    def __init__(self, c: UNetConfig, timesteps: int = 1000):
        super().__init__()
        self.config = c
        base, L, R, G = c.base_channels, len(c.channel_mult), c.res_blocks, c.groups
        T = 4 * base
        self.add_conditioning(c.time_embed_dim, T, timesteps, c.num_classes, reinit_time=True)
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

    def forward(self, x, t, labels=None):  # x (B, C, H, W), t (B,), labels (B,) or None
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
