"""The configurations `make bench` measures, and how long it times each.

A configuration is a plain dict (it travels to the worker processes as JSON):
  kind      "mlp" (vectors: D = data dims, H = width, L = residual blocks)
            or "unet" (images: C channels, S × S pixels, K classes, the UNet's options)
  B         the training batch
  sample_n  samples drawn per sampling call (1000 DDPM steps, or fewer, scaled to 1000)
  sample_timed  (optional) at most this many sampling steps are timed
  sample_also   (optional) more sampling batches, each timed like sample_n (their speed ratios
                and 2-thread scaling are reported apart: "sampling at B=4")
  full_only     (optional) measured by the full bench only, not with --quick
  quick         (optional) overrides of timing() under --quick (warmup, chunks, sample_budget_s)
"""
from __future__ import annotations

T = 1000  # linear schedule, β 1e-4..0.02, for every configuration
E = 64    # sinusoidal encoding size (ddpm_mlp_params_default)

CONFIGS = {
    "toy2d": dict(kind="mlp", D=2, H=128, L=4, B=256, sample_n=1000),
    "signal": dict(kind="mlp", D=50, H=256, L=4, B=128, sample_n=1000),
    "large": dict(kind="mlp", D=64, H=512, L=6, B=512, sample_n=256),
    # The digits UNet: 1×8×8 images, 10 classes, sampled with labels (guidance w = 1: one
    # conditional pass per step). A sampling step takes about 0.3 s in either engine, so it
    # is timed over sample_timed steps (see timing()).
    "digits": dict(kind="unet", C=1, S=8, K=10, B=128, sample_n=256, sample_timed=30,
                   unet=dict(base_channels=32, channel_mult=(1, 2, 2), res_blocks=2, attention_levels=(2,),
                             attention_heads=1, groups=8)),
    # A CIFAR-size UNet as a new user writes it (issue 18): 3×32×32, base 64, mult (1, 2, 2),
    # attention at 16×16, 6.47 M parameters, unconditional. A train step takes seconds and a
    # sampling step about a second at batch 32: few timed calls, sampling timed per step and
    # scaled to 1000; sampling also at batch 4 (where a row split leaves a core idle).
    "cifar": dict(kind="unet", C=3, S=32, K=0, B=32, sample_n=32, sample_also=(4,), sample_timed=20,
                  unet=dict(base_channels=64, channel_mult=(1, 2, 2), res_blocks=2, attention_levels=(1,),
                            attention_heads=1, groups=8),
                  quick=dict(warmup=1, chunks=3, sample_budget_s=6)),
    # Ho et al.'s CIFAR-10 network (DDPM, 2020): base 128, mult (1, 2, 2, 2), 2 ResBlocks,
    # attention at 16×16, GroupNorm 32, dropout 0.1: 35.7 M parameters; batch 8. Full bench only.
    "cifar-ddpm": dict(kind="unet", C=3, S=32, K=0, B=8, sample_n=8, sample_timed=10, full_only=True,
                       unet=dict(base_channels=128, channel_mult=(1, 2, 2, 2), res_blocks=2, attention_levels=(1,),
                                 attention_heads=1, groups=32, dropout=0.1)),
}

# A model so small that the engine's own step time is tiny: what Model.train_step costs
# on top of it is the Python/ctypes overhead.
TINY = dict(kind="mlp", D=2, H=16, L=1, B=8, sample_n=16)
TINY_NAME = "tiny (D=2, H=16, L=1, B=8)"


def timing(quick: bool, sample_steps: int | None = None) -> dict:
    """How long the workers time each configuration: warm-up calls, seconds of timed train
    steps, and sampling over at most sample_steps steps and at most sample_budget_s seconds
    (estimated from a 3-step warm-up), then scaled to 1000 steps: a step costs the same at
    every t, and a busy machine (PyTorch's 2-thread OpenMP suffers most) cannot stretch the
    run. An explicit sample_steps (--sample-steps) is timed exactly, with no budget."""
    t = dict(warmup=2 if quick else 5, target_s=0.6 if quick else 2.5, sample_steps=20 if quick else T,
             sample_budget_s=8 if quick else 30, chunks=5)
    if sample_steps:
        t.update(sample_steps=max(1, min(T, sample_steps)), sample_budget_s=None)
    return t


def config_timing(cfg: dict, timing: dict, quick: bool) -> dict:
    """The timing of one configuration: `timing` with the configuration's --quick overrides."""
    return dict(timing, **cfg.get("quick", {})) if quick else dict(timing)


def default_names(quick: bool) -> list[str]:
    """The configurations measured without --config: all, but the full-bench-only ones under --quick."""
    return [n for n, c in CONFIGS.items() if not (quick and c.get("full_only"))]


def sample_batches(cfg: dict) -> list[int]:
    """The sampling batches timed for one configuration: sample_n first."""
    return [cfg["sample_n"], *cfg.get("sample_also", ())]


def sample_steps(cfg: dict, timing: dict, quick: bool) -> int:
    """The sampling steps to time for one configuration without --sample-steps: the timing's,
    but at most sample_timed (a tenth of it when quick)."""
    return min(timing["sample_steps"], max(1, cfg.get("sample_timed", T) // (10 if quick else 1)))
