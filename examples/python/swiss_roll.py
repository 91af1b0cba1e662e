#!/usr/bin/env python3
"""Diffusion on the 2-D swiss roll: the classic toy problem, end to end.

A linear β schedule with T = 1000 steps (Ho et al. 2020), a residual MLP ε-network,
training with DDPM Algorithm 1 and ancestral sampling with Algorithm 2.

    PYTHONPATH=python python3 examples/python/swiss_roll.py [--steps 3000] [--out DIR]

Writes samples_over_data.png (generated points over the data) and reverse_process.png
(the sampler's x_t at a few t, taken with return_trajectory) into --out, and prints the
mean distance from each sample to its nearest data point (lower is better).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "python"))  # run from a checkout without installing

from _plotting import plt  # noqa: E402 - matplotlib.pyplot, imported at first use (not by --help)

import swiftddpm as sd  # noqa: E402
from swiftddpm import datasets  # noqa: E402


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--steps", type=int, default=3000, help="training steps")
    p.add_argument("--batch-size", type=int, default=256, help="points per training step")
    p.add_argument("--hidden", type=int, default=128, help="MLP width")
    p.add_argument("--depth", type=int, default=3, help="MLP residual blocks")
    p.add_argument("--samples", type=int, default=2000, help="points to generate")
    p.add_argument("--seed", type=int, default=0, help="seeds the data, the model and the samples")
    p.add_argument("--out", type=Path, default=ROOT / "examples" / "out" / "swiss_roll", help="output folder")
    return p.parse_args()


def nearest_distance(points: np.ndarray, data: np.ndarray, chunk: int = 1000) -> float:
    """Mean Euclidean distance from each point to its nearest data point."""
    best = []
    for i in range(0, len(points), chunk):
        d2 = ((points[i:i + chunk, None, :] - data[None, :, :]) ** 2).sum(-1)
        best.append(np.sqrt(d2.min(axis=1)))
    return float(np.concatenate(best).mean())


def main() -> None:
    args = parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    data = datasets.swiss_roll(10_000, noise=0.05, seed=args.seed)
    reference = datasets.swiss_roll(3000, noise=0.05, seed=args.seed + 1)  # for the distance figure

    with sd.NoiseSchedule.linear(1000, beta_start=1e-4, beta_end=0.02) as schedule, \
            sd.Model(schedule, network=sd.MLPConfig(data_dim=2, hidden=args.hidden, depth=args.depth),
                     train=sd.TrainConfig(seed=args.seed)) as model:
        print(f"{model!r}\nschedule: {schedule!r}, library {sd.library_version()}, {sd.get_num_threads()} BLAS threads")
        untrained = model.sample(1000, seed=args.seed + 2, method="ddim", steps=50)

        t0 = time.perf_counter()
        losses = model.fit(data, args.steps, args.batch_size, seed=args.seed)
        train_time = time.perf_counter() - t0

        T = schedule.num_timesteps
        shown = [T - 1, 400, 200, 100, 50, 20, -1]  # -1 is the final x_0
        t0 = time.perf_counter()
        samples, trajectory = model.sample(args.samples, seed=args.seed + 2, return_trajectory=shown)
        sample_time = time.perf_counter() - t0
        ddim = model.sample(args.samples, seed=args.seed + 2, method="ddim", steps=50)

    # samples_over_data.png
    fig, ax = plt.subplots(1, 2, figsize=(10, 4.8), sharex=True, sharey=True)
    ax[0].scatter(data[:3000, 0], data[:3000, 1], s=2, color="tab:blue", alpha=0.4, label="data")
    ax[0].scatter(samples[:, 0], samples[:, 1], s=2, color="tab:orange", alpha=0.6, label="DDPM samples (1000 steps)")
    ax[0].set_title("ancestral sampling, T = 1000")
    ax[1].scatter(data[:3000, 0], data[:3000, 1], s=2, color="tab:blue", alpha=0.4, label="data")
    ax[1].scatter(ddim[:, 0], ddim[:, 1], s=2, color="tab:green", alpha=0.6, label="DDIM samples (50 steps)")
    ax[1].set_title("DDIM, 50 steps, η = 0")
    for a in ax:
        a.set_aspect("equal")
        a.legend(loc="lower left", markerscale=4, fontsize=8)
    ax[0].set_xlim(-2.2, 2.6)
    ax[0].set_ylim(-2.4, 2.4)
    fig.tight_layout()
    fig.savefig(args.out / "samples_over_data.png", dpi=110)
    plt.close(fig)

    # reverse_process.png
    fig, ax = plt.subplots(1, len(shown), figsize=(2.6 * len(shown), 2.9), sharex=True, sharey=True)
    for a, t in zip(ax, shown):
        x = trajectory[t]
        a.scatter(x[:, 0], x[:, 1], s=1, color="tab:orange", alpha=0.5)
        a.set_title("final samples" if t == -1 else (f"$x_{{{t}}}$ = $x_T$ (noise)" if t == T - 1 else f"$x_{{{t}}}$"))
        a.set_aspect("equal")
        a.set_xticks([])
        a.set_yticks([])
    ax[0].set_xlim(-3, 3)
    ax[0].set_ylim(-3, 3)
    fig.suptitle("reverse process: from $x_T \\sim \\mathcal{N}(0, I)$ to $x_0$")
    fig.tight_layout()
    fig.savefig(args.out / "reverse_process.png", dpi=110)
    plt.close(fig)

    held_out = datasets.swiss_roll(args.samples, noise=0.05, seed=args.seed + 3)
    gaussian = np.random.default_rng(args.seed).multivariate_normal(data.mean(0), np.cov(data.T), args.samples)
    print(f"trained {args.steps} steps (batch {args.batch_size}) in {train_time:.1f} s "
          f"({1e3 * train_time / max(1, args.steps):.1f} ms/step); sampled {args.samples} points "
          f"with 1000 DDPM steps in {sample_time:.1f} s")
    print(f"loss: first 100 steps {losses[:100].mean():.4f} -> last 100 steps {losses[-100:].mean():.4f}")
    print("mean distance from a point to the nearest data point (lower is better):")
    print(f"  DDPM samples {nearest_distance(samples, reference):.4f}, DDIM-50 samples {nearest_distance(ddim, reference):.4f}")
    print(f"  held-out data {nearest_distance(held_out, reference):.4f}, Gaussian with the data's moments "
          f"{nearest_distance(gaussian, reference):.4f}, untrained model {nearest_distance(untrained, reference):.4f}")
    print(f"wrote samples_over_data.png, reverse_process.png to {args.out} ({time.perf_counter() - start:.0f} s in all)")


if __name__ == "__main__":
    main()
