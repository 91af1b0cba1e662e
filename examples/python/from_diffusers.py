#!/usr/bin/env python3
"""A diffusers model run here: load a DDPMPipeline folder (or a UNet2DModel folder), sample 16
images with DPM-Solver++ in 20 steps, save them as a 4×4 grid.

    PYTHONPATH=python python3 examples/python/from_diffusers.py --folder ddpm-cifar10-32 [--out DIR]

The folder is what diffusers' save_pretrained writes (or a Hub download of it): unet/config.json,
unet/diffusion_pytorch_model.safetensors and scheduler/scheduler_config.json. No network access:
get google/ddpm-cifar10-32 on a machine with internet (README, "Diffusers") and copy it here.
Without --folder, a small random UNet (google/ddpm-cifar10-32's options, fewer channels) is
exported as a diffusers folder first and loaded back, so the example runs offline; its samples
are noise, as its weights are.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "python"))  # run from a checkout without installing

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import swiftddpm as sd  # noqa: E402
from swiftddpm import diffusers as sdd  # noqa: E402


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--folder", type=Path, help="a diffusers pipeline or UNet folder (default: export a random one)")
    p.add_argument("--steps", type=int, default=20, help="DPM-Solver++ steps (default 20)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=ROOT / "examples" / "out" / "from_diffusers")
    return p.parse_args()


def random_pipeline(folder: Path) -> Path:
    """A small random UNet with ddpm-cifar10-32's options (flip_sin_to_cos false, freq_shift 1,
    norm_eps 1e-6, downsample_padding 0, one head at the second level), exported as diffusers would save it."""
    net = sd.UNetConfig(channels=3, height=32, width=32, base_channels=32, channel_mult=(1, 2, 2, 2), res_blocks=1,
                        attention_levels=(1,), groups=8, time_embed_dim=32, freq_shift=1, norm_eps=1e-6,
                        downsample_padding=0)
    with sd.NoiseSchedule.linear(1000) as schedule, sd.Model(schedule, network=net) as model:
        return Path(model.export_diffusers(folder))


def main() -> None:
    args = parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    folder = args.folder or random_pipeline(args.out / "random-ddpm-pipeline")
    with sd.Model.from_diffusers(folder) as model:
        scheduler = Path(folder) / "scheduler"
        source = sdd.read_scheduler_config(scheduler).class_name if scheduler.is_dir() else "DDPMScheduler's default"
        print(f"{folder}: {model.network}\n  {model.num_parameters:,} parameters; schedule from {source}")
        start = time.perf_counter()
        images = model.sample(16, method="dpm_solver++", steps=args.steps, seed=args.seed)  # (16, C, H, W) in about [-1, 1]
        seconds = time.perf_counter() - start
    print(f"16 images in {args.steps} DPM-Solver++ steps: {seconds:.1f} s")
    grid = np.clip(images / 2 + 0.5, 0, 1).transpose(0, 2, 3, 1)  # (16, H, W, C) in [0, 1]
    n, h, w, c = grid.shape
    grid = grid.reshape(4, 4, h, w, c).transpose(0, 2, 1, 3, 4).reshape(4 * h, 4 * w, c)
    path = args.out / "samples.png"
    plt.imsave(path, grid if c == 3 else grid[..., 0], cmap=None if c == 3 else "gray")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
