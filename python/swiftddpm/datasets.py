"""Small synthetic data sets for examples and tests (pure numpy, float32, seeded)."""

from __future__ import annotations

import numpy as np

__all__ = ["sinusoids", "swiss_roll"]

# Standard deviation of the raw swiss roll below (per axis, pooled); dividing by it gives
# roughly unit variance whatever n is.
_SWISS_ROLL_SCALE = 6.79


def sinusoids(n: int, dim: int = 50, num_components: int = 3, seed: int = 0,
              freq_range: tuple[float, float] = (1.0, 5.0)) -> np.ndarray:
    """n random signals, each a weighted sum of sinusoids sampled on `dim` points of [0, 1).

    signal(x) = Σ_k w_k·sin(2π·f_k·x + φ_k), with f_k ~ U(freq_range), φ_k ~ U(0, 2π) and
    w_k ~ U(0.2, 1) normalised to Σ_k w_k = 1, so every value lies in [-1, 1].

    Returns float32 (n, dim).
    """
    if n < 1 or dim < 1 or num_components < 1:
        raise ValueError(f"n, dim and num_components must be >= 1 (got {n}, {dim}, {num_components})")
    rng = np.random.default_rng(seed)
    x = np.arange(dim) / dim  # (dim,) grid on [0, 1)
    freq = rng.uniform(*freq_range, size=(n, num_components, 1))  # (n, K, 1)
    phase = rng.uniform(0.0, 2 * np.pi, size=(n, num_components, 1))  # (n, K, 1)
    weight = rng.uniform(0.2, 1.0, size=(n, num_components, 1))  # (n, K, 1)
    weight /= weight.sum(axis=1, keepdims=True)  # Σ_k w_k = 1 keeps |signal| <= 1
    signals = (weight * np.sin(2 * np.pi * freq * x + phase)).sum(axis=1)  # (n, dim)
    return signals.astype(np.float32)


def swiss_roll(n: int, noise: float = 0.05, seed: int = 0) -> np.ndarray:
    """The 2-D swiss roll: t = 1.5π(1 + 2u), u ~ U(0, 1); (x, y) = (t·cos t, t·sin t).

    Scaled to roughly unit standard deviation, then Gaussian noise of std `noise` is
    added. Returns float32 (n, 2).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1 (got {n})")
    rng = np.random.default_rng(seed)
    t = 1.5 * np.pi * (1 + 2 * rng.random(n))  # (n,) angle along the roll
    points = np.stack([t * np.cos(t), t * np.sin(t)], axis=1) / _SWISS_ROLL_SCALE  # (n, 2)
    points += noise * rng.standard_normal((n, 2))
    return points.astype(np.float32)
