"""FLOPs of a network's train step and forward pass, counted from its configuration: what
`make bench` divides by a step's time for the effective GFLOP/s of each engine.

Direct-convolution FLOPs: every multiply-add of a convolution, linear layer or attention
product is 2 FLOPs, counted as a direct convolution does them (a 3×3 kernel is 9 taps at
every output pixel, zero padding included), whatever algorithm the engine runs (im2col,
Winograd, oneDNN): the same work for both engines, so the figures compare. Elementwise work
(GroupNorm, SiLU, softmax, bias adds, the optimizer) is not counted.

  conv kh×kw, Ci → Co, output Ho×Wo   2·Co·Ci·kh·kw·Ho·Wo an image
  linear I → O                        2·I·O a row
  attention over N pixels, C channels  QKᵀ and P·V: 2·N·N·C each an image (over the heads,
                                      h·d = C), plus its 1×1 qkv (C → 3C) and proj (C → C) convs

A train step is the forward, then for every layer the gradient of its weights (as many FLOPs
as its forward) and of its input (as many again), except where nothing needs the input's
gradient: the first convolution (its input is x_t) and the first linear of the time MLP (its
input is the sinusoidal encoding). Attention's backward is dV, dP, dQ, dK: twice its two
forward products. So train ≈ 3 × forward.

The UNet is enumerated as Sources/DDPM/Networks/UNet (UNet+Stages.swift) builds it and as
swiftddpm.torch.UNet does; the MLP as Networks/ResidualMLP.swift (workers.mlp_gemms).
"""
from __future__ import annotations

E_DEFAULT = 64  # sinusoidal encoding size (ddpm_*_params_default)


class Count:
    """Forward FLOPs and the FLOPs of the backward pass, per image (or per row)."""

    def __init__(self) -> None:
        self.forward = 0
        self.backward = 0

    def layer(self, flops: int, input_grad: bool = True) -> None:
        """A GEMM-like layer of `flops` forward FLOPs: its backward is the weight gradient
        (the same FLOPs) and, when `input_grad`, the input gradient (the same again)."""
        self.forward += flops
        self.backward += flops * (2 if input_grad else 1)

    def conv(self, ci: int, co: int, k: int, ho: int, wo: int, kh: int | None = None, input_grad: bool = True) -> None:
        self.layer(2 * co * ci * (k if kh is None else kh) * k * ho * wo, input_grad)

    def linear(self, i: int, o: int, input_grad: bool = True) -> None:
        self.layer(2 * i * o, input_grad)

    def attention(self, c: int, n: int) -> None:
        """Self-attention over n pixels of c channels (any number of heads)."""
        self.conv(c, 3 * c, 1, n, 1)           # qkv
        products = 2 * (2 * n * n * c)          # S = QᵀK, a = V·Pᵀ
        self.forward += products
        self.backward += 2 * products           # dV, dP, dQ, dK
        self.conv(c, c, 1, n, 1)                # proj


def unet_count(u: dict, channels: int, height: int, width: int) -> Count:
    """Per-image FLOPs of the UNet of config u (UNetConfig fields: base_channels, channel_mult,
    res_blocks, attention_levels, time_embed_dim; an unconditional or class-conditional net)."""
    base, mult, R = u["base_channels"], tuple(u["channel_mult"]), u["res_blocks"]
    attn_levels, E = set(u.get("attention_levels", (len(mult) - 1,))), u.get("time_embed_dim", E_DEFAULT)
    T = 4 * base
    signal = height == 1
    kh = 1 if signal else 3
    f = Count()
    f.linear(E, T, input_grad=False)  # time MLP: E → T, SiLU, T → T
    f.linear(T, T)

    def res(ci: int, co: int, h: int, w: int) -> None:
        f.conv(ci, co, 3, h, w, kh)      # conv1
        f.linear(T, co)                  # time projection of SiLU(temb)
        f.conv(co, co, 3, h, w, kh)      # conv2
        if ci != co:
            f.conv(ci, co, 1, h, w)      # 1×1 skip

    h, w = height, width
    ch = base * mult[0]
    f.conv(channels, ch, 3, h, w, kh, input_grad=False)  # in_conv
    skips = [ch]
    for level, m in enumerate(mult):
        co = base * m
        for _ in range(R):
            res(ch, co, h, w)
            if level in attn_levels:
                f.attention(co, h * w)
            ch = co
            skips.append(ch)
        if level < len(mult) - 1:
            h2, w2 = (1 if signal else (h + 1) // 2), (w + 1) // 2
            f.conv(ch, ch, 3, h2, w2, kh)  # Downsample: stride-2 conv
            h, w = h2, w2
            skips.append(ch)
    res(ch, ch, h, w)                    # middle: ResBlock + attention, ResBlock
    f.attention(ch, h * w)
    res(ch, ch, h, w)
    for level in reversed(range(len(mult))):
        co = base * mult[level]
        for i in range(R + 1):
            res(ch + skips.pop(), co, h, w)
            if level in attn_levels:
                f.attention(co, h * w)
            ch = co
            if level > 0 and i == R:     # Upsample: nearest ×2, then a 3×3 conv at the new size
                h, w = (1 if signal else 2 * h), 2 * w
                f.conv(co, co, 3, h, w, kh)
    f.conv(ch, channels, 3, h, w, kh)    # out_conv (after GroupNorm, SiLU)
    return f


def mlp_count(D: int, H: int, L: int, E: int = E_DEFAULT) -> Count:
    """Per-row FLOPs of the residual MLP (workers.mlp_gemms gives its GEMM calls)."""
    f = Count()
    f.linear(E, H, input_grad=False)     # time MLP
    f.linear(H, H)
    f.linear(D, H, input_grad=False)     # in_proj of x_t
    for _ in range(2 * L):
        f.linear(H, H)
    f.linear(H, D)
    return f


def config_count(cfg: dict) -> Count:
    """Per-row FLOPs of a bench configuration (configs.py)."""
    if cfg["kind"] == "mlp":
        return mlp_count(cfg["D"], cfg["H"], cfg["L"])
    return unet_count(cfg["unet"], cfg["C"], cfg["S"], cfg["S"])


def train_flops(cfg: dict, batch: int | None = None) -> float:
    """FLOPs of one train step of `batch` rows (the configuration's B by default)."""
    f = config_count(cfg)
    return float((f.forward + f.backward) * (batch or cfg["B"]))


def forward_flops(cfg: dict, batch: int) -> float:
    """FLOPs of one forward pass (one sampling step without guidance) of `batch` rows."""
    return float(config_count(cfg).forward * batch)
