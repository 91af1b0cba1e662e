"""make test-c-diffusers, the Python side: the samples examples/c/from_diffusers wrote (--raw)
must equal Python's Model.sample with the same parameters bit for bit, and its PPM grid must
have the right header, size and pixels ((x + 1)/2·255 rounded half up, clamped; a ⌈√n⌉-wide
grid, empty cells black, grey as equal RGB). A negative control: another seed differs.

    python3 tests/c/from_diffusers_check.py CHECKPOINT GRID.ppm SAMPLES.f32 N STEPS SEED
"""

from __future__ import annotations

import math
import sys

import numpy as np

import swiftddpm as sd


def grid_bytes(samples: np.ndarray) -> tuple[int, int, bytes]:
    n, c, h, w = samples.shape
    cols = math.ceil(math.sqrt(n))
    rows = -(-n // cols)
    pixels = np.clip(np.floor((samples + np.float32(1)) * np.float32(127.5) + np.float32(0.5)), 0, 255).astype(np.uint8)
    if c == 1:
        pixels = np.repeat(pixels, 3, axis=1)
    grid = np.zeros((rows * h, cols * w, 3), np.uint8)
    for k in range(n):
        y, x = (k // cols) * h, (k % cols) * w
        grid[y:y + h, x:x + w] = pixels[k].transpose(1, 2, 0)
    return cols * w, rows * h, grid.tobytes()


def main() -> int:
    checkpoint, ppm, raw, n, steps, seed = sys.argv[1:7]
    n, steps, seed = int(n), int(steps), int(seed)
    with sd.Model.load(checkpoint) as model:
        ours = model.sample(n, method="dpm_solver++", steps=steps, seed=seed, progress=False)
        other = model.sample(n, method="dpm_solver++", steps=steps, seed=seed + 1, progress=False)
    theirs = np.fromfile(raw, dtype=np.float32)
    if theirs.size != ours.size:
        print(f"{raw}: {theirs.size} floats, Python sampled {ours.size}")
        return 1
    theirs = theirs.reshape(ours.shape)
    if not np.array_equal(ours.view(np.uint32), theirs.view(np.uint32)):
        print(f"C and Python samples differ: max |diff| {np.abs(ours - theirs).max():g}")
        return 1
    if np.array_equal(other, theirs):
        print("negative control failed: seed + 1 gives the same samples")
        return 1
    width, height, pixels = grid_bytes(ours)
    header = f"P6\n{width} {height}\n255\n".encode()
    data = open(ppm, "rb").read()
    if not data.startswith(header) or len(data) != len(header) + 3 * width * height:
        print(f"{ppm}: expected header {header!r} and {3 * width * height} pixel bytes, got {data[:20]!r}, "
              f"{len(data)} bytes")
        return 1
    if data[len(header):] != pixels:
        print(f"{ppm}: the pixels differ from Python's rendering of its samples")
        return 1
    print(f"from_diffusers: {n} C samples {ours.shape[1:]} = Python's Model.sample bit for bit; "
          f"{ppm} is a {width}×{height} P6 grid of them")
    return 0


if __name__ == "__main__":
    sys.exit(main())
