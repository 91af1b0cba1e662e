"""Writes the seed corpus of the checkpoint-loader fuzzer: small valid checkpoints.

    PYTHONPATH=python python3 fuzz/make_corpus.py OUT_DIR

One checkpoint per kind of content the loader reads: MLP and UNet networks, no conditioning
and classes, each schedule kind (linear, scaled linear, cosine, sigmoid, custom), a model
after a few train steps (non-zero optimizer moments and counters), plus the two
version-1 fixtures of the Swift tests; and what ABI 0.3 added: vector, sequence and token
conditioning (the UNet with cross-attention), x0 and v targets, min-SNR and VLB
weightings, a learned variance, and importance-sampled timesteps (with their loss
history tensors). The models are tiny so that each fuzz run is fast.
Nothing is committed: `make fuzz` writes the corpus at fuzz time.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np

import swiftddpm as sd

REPO = Path(__file__).resolve().parent.parent


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    schedules = {
        "linear": lambda: sd.NoiseSchedule.linear(8),
        "linear-scaled": lambda: sd.NoiseSchedule.linear(200, scale_to_steps=True),
        "cosine": lambda: sd.NoiseSchedule.cosine(5),
        "sigmoid": lambda: sd.NoiseSchedule.sigmoid(4),
        "custom": lambda: sd.NoiseSchedule.custom([0.1, 0.2, 0.3]),
    }
    mlp = sd.MLPConfig(data_dim=2, hidden=4, depth=1, time_embed_dim=4)
    unet = sd.UNetConfig(channels=1, height=2, width=2, base_channels=2, channel_mult=(1, 1), res_blocks=1,
                         attention_levels=(1,), groups=1, time_embed_dim=2)
    cases = [
        (f"mlp-{name}", make, mlp, sd.Conditioning.none(), 0) for name, make in schedules.items()
    ] + [
        ("mlp-classes-trained", schedules["linear"], mlp, sd.Conditioning.classes(3), 3),
        ("mlp-trained", schedules["cosine"], sd.MLPConfig(data_dim=3, hidden=4, depth=2, time_embed_dim=2),
         sd.Conditioning.none(), 2),
        ("unet", schedules["linear"], unet, sd.Conditioning.none(), 0),
        ("unet-classes-trained", schedules["custom"], unet, sd.Conditioning.classes(2), 1),
    ]
    tokens_unet = sd.UNetConfig(channels=1, height=2, width=2, base_channels=2, channel_mult=(1, 1), res_blocks=1,
                                attention_levels=(), groups=1, time_embed_dim=2, cross_attention_levels=(1,))
    tiny = sd.MLPConfig(data_dim=2, hidden=4, depth=1, time_embed_dim=2)
    T = schedules["linear"]
    train = sd.TrainConfig
    cases += [
        ("mlp-vector-trained", T, tiny, sd.Conditioning.vector(3), 1, train()),
        ("mlp-sequence", T, tiny, sd.Conditioning.sequence(2, 3), 1, train()),
        ("unet-tokens-cross-attention", T, tokens_unet, sd.Conditioning.tokens(5, 3, dim=2), 1, train()),
        ("mlp-x0-min-snr", T, tiny, sd.Conditioning.none(), 1, train(prediction_target="x0", loss_weighting="min_snr")),
        ("mlp-v-vlb-learned-variance", T, tiny, sd.Conditioning.none(), 1,
         train(prediction_target="v", loss_weighting="vlb", learned_variance=True)),
        ("mlp-importance-warm", schedules["custom"], tiny, sd.Conditioning.none(), 25, train(timestep_sampling="importance")),
    ]
    rng = np.random.default_rng(0)
    for name, make, network, cond, steps, *config in [c if len(c) == 6 else (*c, train()) for c in cases]:
        with make() as schedule, sd.Model(schedule, network=network, cond=cond, train=config[0]) as model:
            for _ in range(steps):
                x = rng.standard_normal((2, *model.sample_shape)).astype(np.float32)
                model.train_step(x, cond=_condition(cond, rng))
            model.save(out / f"{name}.safetensors")
    for fixture in sorted((REPO / "Tests" / "DDPMTests" / "Fixtures").glob("*.safetensors")):
        shutil.copyfile(fixture, out / fixture.name)
    sizes = sorted(p.stat().st_size for p in out.iterdir())
    print(f"fuzz corpus: {len(sizes)} checkpoints in {out}, {sizes[0]} to {sizes[-1]} bytes")


def _condition(cond: sd.Conditioning, rng: np.random.Generator):
    """A batch of 2 rows of what `cond` reads (a null row included where there is one)."""
    if cond.kind == "classes":
        return np.array([0, cond.num_classes], dtype=np.int32)
    if cond.kind == "vector":
        return rng.standard_normal((2, cond.dim)).astype(np.float32)
    if cond.kind == "sequence":
        return rng.standard_normal((2, cond.max_length, cond.dim)).astype(np.float32)
    if cond.kind == "tokens":
        return np.array([[1, 2, 0], [0, 0, 0]], dtype=np.int32)[:, :cond.max_length]
    return None


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: make_corpus.py OUT_DIR")
    main(Path(sys.argv[1]))
