#!/usr/bin/env python3
"""Likelihood on the digits: L_simple with a fixed variance against the hybrid objective with a
learned variance Σ_θ (Nichol & Dhariwal), at the same training budget.

Trains the class-conditional digits UNet of digits.py twice — ε with L_simple, then ε with the
learned variance and L_simple + λ·L_vlb — and for each reports the variational bound
L_T + Σ L_{t−1} + L_0 on held-out digits in bits per dimension (the images on the 8-bit grid,
a discretized Gaussian decoder), and the quality of unconditional samples at 1000 DDPM steps
and at 100 respaced steps (Fréchet distance in the judging classifier's features, as digits.py).

    PYTHONPATH=python python3 examples/python/likelihood.py [--steps 2000] [--out DIR]

Writes vlb_terms.png (the terms L_t of the bound against t, log scale, both models: the seed's
decomposition made visible), variance.png (the learned σ_t² between β̃_t and β_t) and
metrics.json into --out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "python"))  # run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import swiftddpm as sd  # noqa: E402
from digits import NUM_CLASSES, Judge, frechet_distance, load_data, train  # noqa: E402


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=2000, help="training steps of each model (digits.py's budget)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--ema-decay", type=float, default=0.995)
    p.add_argument("--vlb-lambda", type=float, default=0.001, help="λ of L_simple + λ·L_vlb")
    p.add_argument("--eval", type=int, default=200, help="held-out images for the bound")
    p.add_argument("--samples", type=int, default=300, help="samples per sampler for the Fréchet distance")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="a tiny run for smoke tests")
    p.add_argument("--out", type=Path, default=ROOT / "examples" / "out" / "likelihood")
    args = p.parse_args()
    if args.quick:
        args.steps, args.eval, args.samples = 30, 8, 16
    return args


def make_model(schedule: sd.NoiseSchedule, args, learned: bool) -> sd.Model:
    network = sd.UNetConfig(channels=1, height=8, width=8, base_channels=16, channel_mult=(1, 2, 2),
                            attention_levels=(), groups=8)
    recipe = sd.TrainConfig(learning_rate=args.lr, ema_decay=args.ema_decay, label_dropout=0.1, seed=args.seed,
                            learned_variance=learned, vlb_lambda=args.vlb_lambda)
    return sd.Model(schedule, network=network, train=recipe, cond=sd.Conditioning.classes(NUM_CLASSES))


def main() -> None:
    args = parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    x_train, x_test, y_train, y_test = load_data(args.seed)
    judge = Judge(x_train, y_train, args.seed)
    held_out = np.round((x_test[:args.eval] + 1) * 127.5) / 127.5 - 1  # on the 8-bit grid
    held_out = held_out.astype(np.float32)
    train_features = judge.features(x_train.reshape(len(x_train), -1))

    results, terms, variances = {}, {}, None
    with sd.NoiseSchedule.cosine(1000) as schedule:
        betas, post = schedule.betas, schedule.table("posterior_variance")
        for name, learned in (("L_simple, fixed variance", False), ("hybrid, learned variance", True)):
            print(f"== {name}: training {args.steps} steps", flush=True)
            with make_model(schedule, args, learned) as model:
                train(model, x_train, y_train, args)
                variance = "learned" if learned else "posterior"
                r = {}
                t0 = time.perf_counter()
                for v in (("beta", "posterior") if not learned else ("learned",)):
                    nll = model.nll(held_out, decoder="discretized", bits=8, variance=v, seed=1)
                    r[f"nll_bits_per_dim[{v}]"] = nll.mean()
                    terms[f"{name} (σ² {v})"] = nll.terms.mean(axis=0)
                print(f"   bound on {args.eval} held-out digits: "
                      + ", ".join(f"{k} {v:.4f}" for k, v in r.items()) + f" ({time.perf_counter() - t0:.0f} s)")
                for steps in (1000, 100):
                    x = model.sample(args.samples, method="ddpm", steps=steps, variance=variance, clip=True, seed=2)
                    fd = frechet_distance(judge.features(x.reshape(len(x), -1)), train_features)
                    r[f"frechet_ddpm{steps}[{variance}]"] = fd
                    print(f"   DDPM {steps} steps (σ² {variance}): Fréchet distance {fd:.3f}", flush=True)
                if learned:
                    # The learned σ_t² at held-out x_t, averaged over images and pixels, at t over
                    # the whole range: 25 geometric points for the small t (where β̃_t is far below
                    # β_t), 40 evenly spaced ones up to T-1, and 11 in the last 50 steps (where the
                    # cosine schedule's β_t climbs to its clip and β̃_t falls behind again), so no
                    # stretch is a bare line.
                    last = len(schedule.betas) - 1
                    ts = np.unique(np.round(np.concatenate([np.geomspace(1, last, 25), np.linspace(0, last, 40),
                                                            np.linspace(last - 50, last, 11)])).astype(int))
                    rng = np.random.default_rng(3)
                    variances = []
                    for t in ts:
                        noise = rng.normal(size=held_out.shape).astype(np.float32)
                        x_t = schedule.add_noise(held_out, noise, np.full(len(held_out), t, np.int32))
                        variances.append(float(model.predict_variance(x_t, int(t)).mean()))
                    variances = (ts, np.array(variances))
                results[name] = r

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, curve in terms.items():
        ax.plot(np.arange(1, len(curve)), curve[1:], label=label, lw=1)
    ax.set(yscale="log", xlabel="t", ylabel="L_{t-1} (bits/dim, held-out mean)",
           title="the terms of the variational bound")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out / "vlb_terms.png", dpi=110)
    plt.close(fig)

    if variances is not None:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        t = np.arange(len(betas))
        ax.plot(t, betas, color="black", lw=1, label="β_t (upper bound)")
        ax.plot(t[1:], post[1:], color="gray", lw=1, ls="--", label="β̃_t (lower bound)")
        ax.plot(variances[0], variances[1], "o-", color="tab:red", label="learned σ_t² (held-out mean)")
        ax.set(yscale="log", xlabel="t", ylabel="variance", title="the learned reverse variance")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(args.out / "variance.png", dpi=110)
        plt.close(fig)

    with open(args.out / "metrics.json", "w") as f:
        json.dump({"steps": args.steps, "eval_images": args.eval, "results": results}, f, indent=2)
    print(json.dumps(results, indent=2))
    print(f"wrote vlb_terms.png, variance.png, metrics.json to {args.out} ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
