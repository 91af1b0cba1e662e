#!/usr/bin/env python3
"""Samplers compared on the swiss roll: quality against the number of steps, and time.

Trains the swiss-roll model of swiss_roll.py (or loads one with --load), then draws the same
number of points with every sampler at several step counts and measures, against held-out
data, the mean distance from each sample to the nearest data point (precision: are the
samples on the roll?) and from each data point to the nearest sample (coverage: is all of the
roll covered?). Their sum is the quality; DDPM with all 1000 steps is the reference.

    PYTHONPATH=python python3 examples/python/samplers.py [--train-steps 3000] [--out DIR]

Writes samplers.png (quality and time against steps, one line per sampler) and
samplers_20_steps.png (the samples of each sampler at 20 steps) into --out, and prints the table.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "python"))  # run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _plotting import plt  # noqa: E402 - matplotlib.pyplot, imported at first use (not by --help)

import swiftddpm as sd  # noqa: E402
from swiftddpm import datasets  # noqa: E402
from swiss_roll import nearest_distance  # noqa: E402

# name -> Model.sample options (steps added per run)
SAMPLERS = {
    "DDPM (respaced)": {"method": "ddpm"},
    "DDIM": {"method": "ddim"},
    "DPM-Solver++ 2M": {"method": "dpm_solver++"},
    "DPM-Solver++ 3M": {"method": "dpm_solver++", "solver_order": 3},
    "SDE-DPM-Solver++ 2M": {"method": "sde_dpm_solver++"},
    "PC (DDPM + 1 Langevin)": {"method": "pc", "corrector_steps": 1},
}
STEP_COUNTS = [5, 10, 20, 50, 100]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--train-steps", type=int, default=3000, help="training steps")
    p.add_argument("--load", type=Path, help="a saved swiss-roll model to compare instead of training one")
    p.add_argument("--samples", type=int, default=2000, help="points per sampler and step count")
    p.add_argument("--seed", type=int, default=0, help="seeds the data, the model and the samples")
    p.add_argument("--out", type=Path, default=ROOT / "examples" / "out" / "samplers", help="output folder")
    return p.parse_args()


def quality(samples: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """(precision, coverage) distances; lower is better."""
    return nearest_distance(samples, reference), nearest_distance(reference, samples)


def main() -> None:
    args = parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    reference = datasets.swiss_roll(args.samples, noise=0.05, seed=args.seed + 3)  # held out

    if args.load:
        model = sd.Model.load(args.load)
    else:
        with sd.NoiseSchedule.linear(1000) as schedule:
            model = sd.Model(schedule, network=sd.MLPConfig(data_dim=2, hidden=128, depth=3),
                             train=sd.TrainConfig(seed=args.seed))
        t0 = time.perf_counter()
        model.fit(datasets.swiss_roll(10_000, noise=0.05, seed=args.seed), args.train_steps, 256, seed=args.seed)
        print(f"trained {args.train_steps} steps in {time.perf_counter() - t0:.0f} s")
        model.save(args.out / "swiss_roll.safetensors")

    def run(**options):
        t0 = time.perf_counter()
        x = model.sample(args.samples, seed=args.seed + 2, **options)
        return x, time.perf_counter() - t0

    with model:
        full, full_time = run(method="ddpm")
        full_quality = sum(quality(full, reference))
        held_out = sum(quality(datasets.swiss_roll(args.samples, noise=0.05, seed=args.seed + 4), reference))
        results: dict[str, list[tuple[int, float, float, float]]] = {}
        at20: dict[str, np.ndarray] = {}
        for name, options in SAMPLERS.items():
            results[name] = []
            for steps in STEP_COUNTS:
                x, seconds = run(steps=steps, **options)
                precision, coverage = quality(x, reference)
                results[name].append((steps, precision + coverage, precision, seconds))
                if steps == 20:
                    at20[name] = x

    print(f"quality = precision + coverage distance to held-out data (lower is better); "
          f"DDPM-1000 {full_quality:.4f} in {full_time:.1f} s, held-out data {held_out:.4f}")
    print(f"{'sampler':<24}" + "".join(f"{s:>16}" for s in STEP_COUNTS))
    for name, rows in results.items():
        print(f"{name:<24}" + "".join(f"{q:>9.4f} {t:>5.2f}s" for _, q, _, t in rows))

    fig, ax = plt.subplots(1, 2, figsize=(12, 4.6))
    for name, rows in results.items():
        steps = [r[0] for r in rows]
        ax[0].plot(steps, [r[1] for r in rows], marker="o", label=name)
        ax[1].plot(steps, [r[3] for r in rows], marker="o", label=name)
    ax[0].axhline(full_quality, color="black", ls="--", lw=1, label="DDPM, 1000 steps")
    ax[0].axhline(held_out, color="gray", ls=":", lw=1, label="held-out data")
    ax[0].set(xscale="log", yscale="log", xlabel="steps", ylabel="precision + coverage distance",
              title="sample quality against steps (lower is better)")
    ax[1].axhline(full_time, color="black", ls="--", lw=1, label="DDPM, 1000 steps")
    ax[1].set(xscale="log", yscale="log", xlabel="steps", ylabel="seconds",
              title=f"time to draw {args.samples} samples")
    for a in ax:
        a.legend(fontsize=7)
        a.set_xticks(STEP_COUNTS, [str(s) for s in STEP_COUNTS])
    fig.tight_layout()
    fig.savefig(args.out / "samplers.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(1, len(at20) + 1, figsize=(2.8 * (len(at20) + 1), 3.1), sharex=True, sharey=True)
    panels = [("DDPM, 1000 steps", full)] + [(f"{name}, 20", x) for name, x in at20.items()]
    for a, (title, x) in zip(ax, panels):
        a.scatter(reference[:, 0], reference[:, 1], s=1, color="tab:blue", alpha=0.25)
        a.scatter(x[:, 0], x[:, 1], s=1, color="tab:orange", alpha=0.6)
        a.set_title(title, fontsize=8)
        a.set_aspect("equal")
        a.set_xticks([])
        a.set_yticks([])
    ax[0].set_xlim(-2.2, 2.6)
    ax[0].set_ylim(-2.4, 2.4)
    fig.tight_layout()
    fig.savefig(args.out / "samplers_20_steps.png", dpi=110)
    plt.close(fig)
    print(f"wrote samplers.png, samplers_20_steps.png to {args.out}")


if __name__ == "__main__":
    main()
