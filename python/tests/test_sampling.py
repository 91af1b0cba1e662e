"""NoiseSchedule.sample with Python ε-models: exactness on Gaussian data, callbacks,
exceptions, cancellation, trajectories."""

from __future__ import annotations

import numpy as np
import pytest

import swiftddpm as sd


def gaussian_eps(schedule: sd.NoiseSchedule, mu: np.ndarray, sigma: float):
    """The exact ε* for data x0 ~ N(mu, sigma² I): q(x_t) = N(√ᾱ mu, (ᾱσ² + 1 − ᾱ) I) and
    ε*(x_t) = −√(1−ᾱ)·∇log q(x_t) = √(1−ᾱ)(x_t − √ᾱ mu)/(ᾱσ² + 1 − ᾱ)."""
    bar = schedule.alphas_cumprod

    def eps(x, t, labels):
        a = bar[t]
        return np.sqrt(1 - a) * (x - np.sqrt(a) * mu) / (a * sigma**2 + 1 - a)

    return eps


@pytest.mark.parametrize("method,steps,variance", [("ddpm", 0, "beta"), ("ddpm", 0, "posterior"), ("ddim", 100, "beta")])
def test_exact_eps_reproduces_gaussian_data(method, steps, variance):
    mu, sigma = np.array([1.5, -0.5, 0.25], np.float32), 0.5
    with sd.NoiseSchedule.linear(1000) as schedule:
        x = schedule.sample(gaussian_eps(schedule, mu, sigma), 4000, 3, method=method, steps=steps,
                            variance=variance, seed=3)
    assert x.shape == (4000, 3) and x.dtype == np.float32
    # 4000 samples: the standard error of the mean is 0.5/√4000 ≈ 0.008
    np.testing.assert_allclose(x.mean(axis=0), mu, atol=0.04)
    np.testing.assert_allclose(x.std(axis=0), sigma, rtol=0.06)


def test_model_fn_sees_shapes_timesteps_and_labels(linear100):
    seen = []
    labels = np.array([3, 1, 4, 1], np.int32)

    def eps(x, t, lab):
        seen.append((x.shape, x.dtype, t, lab))
        return np.zeros_like(x)

    linear100.sample(eps, 4, (2, 3), method="ddim", steps=5, labels=labels)
    assert [s[2] for s in seen] == [99, 79, 59, 39, 19]  # trailing DDIM timesteps, T-1 first
    assert all(s[0] == (4, 2, 3) and s[1] == np.float32 for s in seen)
    assert all(np.array_equal(s[3], labels) for s in seen)


@pytest.mark.parametrize("kind", ["vectors", "sequences", "tokens", "tokens with lengths"])
def test_model_fn_sees_the_whole_condition(linear100, kind):
    """cond= goes to the library's ddpm_cond_batch and back to model_fn, rows as given."""
    rng = np.random.default_rng(0)
    cond = {"vectors": rng.standard_normal((4, 5)).astype(np.float32),
            "sequences": rng.standard_normal((4, 3, 2)).astype(np.float32),
            "tokens": rng.integers(0, 9, (4, 6)).astype(np.int32),
            "tokens with lengths": rng.integers(0, 9, (4, 6)).astype(np.int32)}[kind]
    lengths = np.array([6, 0, 2, 5], np.int32) if kind.endswith("lengths") else None
    seen = []

    def eps(x, t, c):
        seen.append(c)
        return np.zeros_like(x)

    linear100.sample(eps, 4, 2, method="ddim", steps=3, cond=cond, lengths=lengths)
    x0 = rng.standard_normal((4, 2)).astype(np.float32)
    linear100.vlb(eps, x0, cond=cond, lengths=lengths)
    assert len(seen) == 3 + 100
    for c in seen:
        if lengths is None:
            np.testing.assert_array_equal(c, cond)
            assert c.dtype == cond.dtype
        else:
            np.testing.assert_array_equal(c[0], cond)
            np.testing.assert_array_equal(c[1], lengths)
    with pytest.raises(sd.InvalidArgumentError, match="lengths"):
        linear100.sample(eps, 4, 2, steps=2, method="ddim", cond=np.zeros((4, 3), np.int32), lengths=[1, 4, 0, 2])
    with pytest.raises(sd.ShapeError, match="cond must be"):
        linear100.sample(eps, 4, 2, steps=2, method="ddim", cond=np.zeros((3, 3), np.float32))


def test_exception_inside_model_fn_propagates(linear100):
    class Boom(RuntimeError):
        pass

    calls = []

    def eps(x, t, labels):
        calls.append(t)
        if len(calls) == 3:
            raise Boom("model exploded at t=%d" % t)
        return np.zeros_like(x)

    with pytest.raises(Boom, match="exploded at t=97"):
        linear100.sample(eps, 2, 2)
    assert len(calls) == 3  # sampling stopped at once


def test_wrong_eps_shape_is_reported(linear100):
    with pytest.raises(sd.ShapeError, match=r"model_fn returned shape \(2, 3\)"):
        linear100.sample(lambda x, t, labels: np.zeros((2, 3)), 2, 2)


def test_progress_callback_cancels(linear100):
    steps = []

    def progress(step, total, t, x):
        steps.append((step, total, t, x.shape))
        return step == 4  # truthy: stop

    with pytest.raises(sd.CancelledError, match="cancel"):
        linear100.sample(lambda x, t, labels: np.zeros_like(x), 3, 2, progress=progress)
    assert [s[0] for s in steps] == [0, 1, 2, 3, 4]
    assert steps[0][1:] == (100, 99, (3, 2))  # step 0 reports x_T, at t = T-1
    assert steps[1][1:] == (100, 98, (3, 2))  # after the first reverse step x is at t = 98


def test_exception_inside_progress_propagates(linear100):
    def progress(step, total, t, x):
        raise KeyError("from progress")

    with pytest.raises(KeyError, match="from progress"):
        linear100.sample(lambda x, t, labels: np.zeros_like(x), 2, 2, progress=progress)


def test_trajectory_snapshots(linear100):
    eps = gaussian_eps(linear100, np.zeros(2, np.float32), 1.0)
    x, traj = linear100.sample(eps, 5, 2, method="ddim", steps=4, return_trajectory=True, seed=9)
    assert list(traj) == [99, 74, 49, 24, -1]
    np.testing.assert_array_equal(traj[-1], x)
    x2, some = linear100.sample(eps, 5, 2, method="ddim", steps=4, return_trajectory=[99, 49, 7], seed=9)
    assert list(some) == [99, 49]  # 7 is not visited
    np.testing.assert_array_equal(some[49], traj[49])
    np.testing.assert_array_equal(x2, x)


def test_same_seed_same_samples_and_thread_independence(linear100):
    eps = gaussian_eps(linear100, np.ones(4, np.float32), 0.3)
    sd.set_num_threads(1)
    a = linear100.sample(eps, 64, 4, seed=5)
    sd.set_num_threads(2)
    b = linear100.sample(eps, 64, 4, seed=5)
    c = linear100.sample(eps, 64, 4, seed=6)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_clip_bounds_the_final_samples(linear100):
    # ε = 0 everywhere makes x̂_0 = x_t/√ᾱ_t large at first; clipping must hold it in range.
    x = linear100.sample(lambda x, t, labels: np.zeros_like(x), 200, 2, method="ddim", steps=10, clip=(-0.3, 0.3))
    assert x.min() >= -0.3 - 1e-6 and x.max() <= 0.3 + 1e-6


@pytest.mark.parametrize("method", ["ddpm", "ddim"])
def test_a_clip_range_that_never_binds_changes_nothing(method):
    # Clipping x̂_0 to a range it never reaches must leave the samples as they are: the
    # clipped mean c0·x̂_0 + ct·x_t equals the ε-form mean. This catches a sampler whose
    # step overwrites x_t with x̂_0 before using x_t (its output buffer aliases x_t).
    mu, sigma = np.array([0.5, -0.2, 0.1], np.float32), 0.4
    with sd.NoiseSchedule.linear(1000) as schedule:
        eps = gaussian_eps(schedule, mu, sigma)
        plain = schedule.sample(eps, 200, 3, method=method, seed=1)
        clipped = schedule.sample(eps, 200, 3, method=method, seed=1, clip=(-1e4, 1e4))
    np.testing.assert_allclose(clipped, plain, atol=1e-3)
