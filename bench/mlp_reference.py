"""PyTorch reference of SwiftDDPM's vector network, Sources/DDPM/Networks/ResidualMLP.swift,
with the same parameter names as our checkpoints, for `make bench`. The schedule, the
timestep embedding, the training recipe and the sampler are in reference_common.py.

Shapes: B = batch, D = data dims, H = hidden width, E = timestep-encoding size,
L = residual blocks, K = classes (label K = "no class").
"""
from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn
import torch.nn.functional as F

from reference_common import TimestepConditioned, init_uniform_


class Block(nn.Module):
    """h + fc2(SiLU(fc1(LN(h) + temb)))."""

    def __init__(self, H: int):
        super().__init__()
        self.norm = nn.LayerNorm(H, eps=1e-5)
        self.fc1 = nn.Linear(H, H)
        self.fc2 = nn.Linear(H, H)

    def forward(self, h, temb):
        return h + self.fc2(F.silu(self.fc1(self.norm(h) + temb)))


@dataclass
class MLPConfig:
    data_dim: int
    hidden: int = 128
    depth: int = 4
    time_embed_dim: int = 64
    num_classes: int = 0


class ResidualMLP(TimestepConditioned):
    """e = sinusoid(t); temb = W_t2 SiLU(W_t1 e) [+ class_embedding[label]]; h_0 = W_in x;
    h_{l+1} = h_l + W2_l SiLU(W1_l (LN_l(h_l) + temb)); eps = W_out h_L (a linear readout).
    Init as ours: Linear U(+-1/sqrt(in)) for W and b (PyTorch's default), LN ones/zeros,
    class embedding N(0, 0.02^2)."""

    def __init__(self, c: MLPConfig, timesteps: int = 1000):
        super().__init__()
        D, H, E, L, K = c.data_dim, c.hidden, c.time_embed_dim, c.depth, c.num_classes
        self.config = c
        self.add_conditioning(E, H, timesteps, K)
        self.in_proj = nn.Linear(D, H)
        self.blocks = nn.ModuleList(Block(H) for _ in range(L))
        self.out_proj = nn.Linear(H, D)
        for m in self.modules():  # every Linear drawn again, in module order, as Linear.swift
            if isinstance(m, nn.Linear):
                init_uniform_(m)

    def forward(self, x, t, labels=None):  # x (B, D), t (B,), labels (B,) or None
        temb = self.embed(t, labels)
        h = self.in_proj(x)
        for block in self.blocks:
            h = block(h, temb)
        return self.out_proj(h)
