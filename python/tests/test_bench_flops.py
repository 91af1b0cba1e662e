"""make bench's FLOP counter (bench/flops.py) against counts made by hand, and, where PyTorch is
installed (make bench's venv), against PyTorch's own FlopCounterMode on the twin networks."""
import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _bench_module(name):
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCH))


flops = _bench_module("flops")

# A tiny UNet: 1×4×4 images, base 2, mult (1, 2), 1 ResBlock a level, attention at level 1
# (2×2 pixels), E = 4; the time embedding is T = 4·base = 8 wide.
TINY = dict(kind="unet", C=1, S=4, K=0, B=3,
            unet=dict(base_channels=2, channel_mult=(1, 2), res_blocks=1, attention_levels=(1,), time_embed_dim=4, groups=2))


def test_tiny_unet_forward_by_hand():
    # conv Ci→Co k×k at Ho×Wo: 2·Co·Ci·k·k·Ho·Wo; linear I→O: 2·I·O; attention over N pixels of
    # C channels: qkv 2·3C·C·N + QᵀK 2·N·N·C + V·Pᵀ 2·N·N·C + proj 2·C·C·N.
    time = 2 * 4 * 8 + 2 * 8 * 8                       # E→T, T→T                    = 192
    in_conv = 2 * 2 * 1 * 9 * 16                        # 1→2 at 4×4                  = 576
    enc0 = 2 * 2 * 2 * 9 * 16 + 2 * 8 * 2 + 2 * 2 * 2 * 9 * 16  # ResBlock 2→2 at 4×4 = 2336
    down = 2 * 2 * 2 * 9 * 4                            # stride-2 3×3, 2→2, out 2×2  = 288
    enc1 = 2 * 4 * 2 * 9 * 4 + 2 * 8 * 4 + 2 * 4 * 4 * 9 * 4 + 2 * 4 * 2 * 4  # 2→4 at 2×2, 1×1 skip = 1856
    attn4 = 2 * 12 * 4 * 4 + 2 * 4 * 4 * 4 + 2 * 4 * 4 * 4 + 2 * 4 * 4 * 4   # C=4, N=4  = 768
    res44 = 2 * 4 * 4 * 9 * 4 + 2 * 8 * 4 + 2 * 4 * 4 * 9 * 4                 # 4→4 at 2×2 = 2368
    middle = res44 + attn4 + res44
    # decoder level 1: skips popped are 4 (enc1) then 2 (down); concat 8→4 and 6→4 at 2×2
    dec10 = 2 * 4 * 8 * 9 * 4 + 2 * 8 * 4 + 2 * 4 * 4 * 9 * 4 + 2 * 4 * 8 * 4  # = 3776
    dec11 = 2 * 4 * 6 * 9 * 4 + 2 * 8 * 4 + 2 * 4 * 4 * 9 * 4 + 2 * 4 * 6 * 4  # = 3136
    up = 2 * 4 * 4 * 9 * 16                             # Upsample conv 4→4 at 4×4   = 4608
    # decoder level 0: skips 2 (enc0) then 2 (in_conv); concat 6→2 and 4→2 at 4×4
    dec00 = 2 * 2 * 6 * 9 * 16 + 2 * 8 * 2 + 2 * 2 * 2 * 9 * 16 + 2 * 2 * 6 * 16  # = 5024
    dec01 = 2 * 2 * 4 * 9 * 16 + 2 * 8 * 2 + 2 * 2 * 2 * 9 * 16 + 2 * 2 * 4 * 16  # = 3744
    out_conv = 2 * 1 * 2 * 9 * 16                       # 2→1 at 4×4                  = 576
    forward = (time + in_conv + enc0 + down + enc1 + attn4 + middle + dec10 + attn4 + dec11 + attn4 + up
               + dec00 + dec01 + out_conv)
    assert forward == 33920
    count = flops.config_count(TINY)
    assert count.forward == forward
    assert flops.forward_flops(TINY, 5) == 5 * forward


def test_tiny_unet_train_step_by_hand():
    # Backward: twice the forward (weight and input gradients; attention's dV, dP, dQ, dK),
    # but no input gradient for in_conv (x_t) and the time MLP's first linear (the encoding).
    backward = 2 * 33920 - 576 - 2 * 4 * 8
    assert flops.config_count(TINY).backward == backward
    assert flops.train_flops(TINY) == 3 * (33920 + backward)  # B = 3
    assert flops.train_flops(TINY, batch=1) == 33920 + backward


def test_negative_control_attention_counts():
    # Without the attention level the count drops by exactly its three layers (the decoder's
    # two and the encoder's one at level 1; the middle's stays): the counter reads the config.
    without = dict(TINY, unet=dict(TINY["unet"], attention_levels=()))
    assert flops.config_count(TINY).forward - flops.config_count(without).forward == 3 * 768


def test_mlp_matches_the_gemm_calls():
    workers = _bench_module("workers")
    cfg = dict(kind="mlp", D=50, H=256, L=4, B=128)
    calls = workers.mlp_gemms(cfg["D"], cfg["H"], cfg["L"], cfg["B"])
    assert flops.train_flops(cfg) == workers.gemm_flops(calls)
    assert flops.forward_flops(cfg, cfg["B"]) == workers.gemm_flops(
        workers.mlp_gemms(cfg["D"], cfg["H"], cfg["L"], cfg["B"], train=False))


def test_cifar_configs():
    configs = _bench_module("configs")
    cifar = configs.CONFIGS["cifar"]
    # The forward of one 32×32 image is a few GFLOP; train is just under 3 × forward.
    f = flops.config_count(cifar)
    assert 1e9 < f.forward < 1e10
    assert 2.9 < (f.forward + f.backward) / f.forward < 3.0


def test_against_pytorch_flop_counter():
    torch = pytest.importorskip("torch")
    from torch.utils.flop_counter import FlopCounterMode
    import swiftddpm as sd
    import swiftddpm.torch as sdt
    for cfg in (TINY, _bench_module("configs").CONFIGS["digits"]):
        net = sdt.UNet(sd.UNetConfig(channels=cfg["C"], height=cfg["S"], width=cfg["S"], **cfg["unet"]),
                       num_classes=cfg["K"], timesteps=1000)
        x = torch.randn(2, cfg["C"], cfg["S"], cfg["S"])
        t = torch.tensor([3, 7])
        labels = torch.tensor([1, 2]) if cfg["K"] else None
        with FlopCounterMode(display=False) as counter:
            net(x, t, labels).square().mean().backward()
        assert counter.get_total_flops() == flops.train_flops(cfg, batch=2)
