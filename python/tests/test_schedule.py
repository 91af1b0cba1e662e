"""NoiseSchedule against an independent numpy re-derivation of every formula."""

from __future__ import annotations

import numpy as np
import pytest

import swiftddpm as sd


def reference_betas(kind: str, T: int, **kw) -> np.ndarray:
    if kind == "linear":
        scale = 1000 / T if kw.get("scale_to_steps") else 1.0
        return np.linspace(kw.get("beta_start", 1e-4) * scale, kw.get("beta_end", 0.02) * scale, T)
    if kind == "cosine":
        s, max_beta = kw.get("s", 0.008), kw.get("max_beta", 0.999)
        f = lambda t: np.cos((t / T + s) / (1 + s) * np.pi / 2) ** 2  # noqa: E731
        t = np.arange(T, dtype=np.float64)
        return np.minimum(1 - f(t + 1) / f(t), max_beta)
    if kind == "sigmoid":
        lo, hi = kw.get("beta_min", 0.0), kw.get("beta_max", 0.1)
        x = np.linspace(kw.get("start", -6.0), kw.get("end", 6.0), T)
        return lo + (hi - lo) / (1 + np.exp(-x))
    raise ValueError(kind)


def reference_tables(betas: np.ndarray) -> dict[str, np.ndarray]:
    """The derived tables, written the way diffusers' DDPMScheduler and the DDPM paper do."""
    alphas = 1 - betas
    bar = np.cumprod(alphas)
    bar_prev = np.concatenate([[1.0], bar[:-1]])
    post_var = (1 - bar_prev) / (1 - bar) * betas
    first = post_var[1] if len(betas) > 1 else betas[0]
    return {
        "betas": betas,
        "alphas": alphas,
        "alphas_cumprod": bar,
        "alphas_cumprod_prev": bar_prev,
        "sqrt_alphas_cumprod": np.sqrt(bar),
        "sqrt_one_minus_alphas_cumprod": np.sqrt(1 - bar),
        "sqrt_recip_alphas": 1 / np.sqrt(alphas),
        "posterior_variance": post_var,
        "posterior_log_variance_clipped": np.log(np.concatenate([[first], post_var[1:]])),
        "posterior_mean_coef1": np.sqrt(bar_prev) * betas / (1 - bar),
        "posterior_mean_coef2": np.sqrt(alphas) * (1 - bar_prev) / (1 - bar),
    }


CASES = [
    ("linear", 1000, {}),
    ("linear", 50, {"scale_to_steps": True}),
    ("linear", 1, {}),  # edge case T = 1
    ("cosine", 1000, {}),
    ("cosine", 20, {"s": 0.02, "max_beta": 0.5}),
    ("sigmoid", 100, {}),
    ("sigmoid", 100, {"beta_min": 1e-4, "beta_max": 0.05, "start": -3.0, "end": 3.0}),
]


def make(kind: str, T: int, **kw) -> sd.NoiseSchedule:
    return getattr(sd.NoiseSchedule, kind)(T, **kw)


@pytest.mark.parametrize("kind,T,kw", CASES)
def test_tables_match_numpy(kind, T, kw):
    with make(kind, T, **kw) as schedule:
        assert schedule.num_timesteps == len(schedule) == T
        expected = reference_tables(reference_betas(kind, T, **kw))
        worst = {}
        for name, ref in expected.items():
            got = getattr(schedule, name)
            assert got.dtype == np.float64 and got.shape == (T,), name
            worst[name] = float(np.max(np.abs(got - ref) / np.maximum(np.abs(ref), 1e-300)))
        assert max(worst.values()) < 1e-9, worst


def test_custom_schedule_round_trips_betas():
    betas = np.linspace(0.01, 0.3, 17)
    with sd.NoiseSchedule.custom(betas) as schedule:
        np.testing.assert_array_equal(schedule.betas, betas)
        ref = reference_tables(betas)
        np.testing.assert_allclose(schedule.posterior_mean_coef2, ref["posterior_mean_coef2"], rtol=1e-12)


def test_tables_are_read_only_and_t0_posterior_is_zero(linear100):
    assert linear100.posterior_variance[0] == 0.0
    assert np.isfinite(linear100.posterior_log_variance_clipped).all()
    with pytest.raises(ValueError):
        linear100.betas[0] = 0.5


@pytest.mark.parametrize("shape", [(5, 3), (4, 2, 3, 3), (1, 7), (6,)])
def test_add_noise_matches_numpy(linear100, shape):
    rng = np.random.default_rng(0)
    x0 = rng.standard_normal(shape).astype(np.float32)
    noise = rng.standard_normal(shape).astype(np.float32)
    T = linear100.num_timesteps
    t = rng.integers(0, T, shape[0])
    t[0], t[-1] = 0, T - 1  # edge timesteps
    out = linear100.add_noise(x0, noise, t)
    a = linear100.sqrt_alphas_cumprod[t].reshape((-1,) + (1,) * (len(shape) - 1))
    s = linear100.sqrt_one_minus_alphas_cumprod[t].reshape(a.shape)
    ref = a * x0 + s * noise
    assert out.dtype == np.float32 and out.shape == x0.shape
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)


def test_add_noise_broadcasts_a_scalar_t_and_converts_inputs(linear100):
    x0 = np.arange(12, dtype=np.float64).reshape(4, 3)  # float64, converted
    noise = np.ones((4, 3)).tolist()  # nested lists work too
    out = linear100.add_noise(x0, noise, 17)
    ref = linear100.sqrt_alphas_cumprod[17] * x0 + linear100.sqrt_one_minus_alphas_cumprod[17]
    np.testing.assert_allclose(out, ref, rtol=1e-5)
    np.testing.assert_array_equal(out, linear100.add_noise(x0, noise, np.full(4, 17)))


def test_posterior_matches_numpy(linear100):
    rng = np.random.default_rng(1)
    x0 = rng.standard_normal((6, 4, 2)).astype(np.float32)
    xt = rng.standard_normal((6, 4, 2)).astype(np.float32)
    t = np.array([0, 1, 10, 50, 98, 99])
    mean, var = linear100.posterior(x0, xt, t)
    c1 = linear100.posterior_mean_coef1[t][:, None, None]
    c2 = linear100.posterior_mean_coef2[t][:, None, None]
    np.testing.assert_allclose(mean, c1 * x0 + c2 * xt, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(var, linear100.posterior_variance[t], rtol=1e-6)
    assert var.shape == (6,) and var[0] == 0.0


def test_posterior_is_the_bayes_posterior(linear100):
    # Independent check of the coefficients: x_{t-1} ~ q(x_{t-1}|x0), x_t = √α_t x_{t-1} + √β_t z
    # ⇒ the Gaussian conditional of x_{t-1} given (x_t, x0) has the closed form below.
    t = 40
    bar_prev = linear100.alphas_cumprod[t - 1]
    alpha, beta = linear100.alphas[t], linear100.betas[t]
    prior_var = 1 - bar_prev  # var of x_{t-1} given x0
    precision = 1 / prior_var + alpha / beta
    x0, xt = np.array([[0.7]], np.float32), np.array([[-0.3]], np.float32)
    mean_ref = (np.sqrt(bar_prev) * x0 / prior_var + np.sqrt(alpha) * xt / beta) / precision
    mean, var = linear100.posterior(x0, xt, t)
    np.testing.assert_allclose(var, 1 / precision, rtol=1e-6)
    np.testing.assert_allclose(mean, mean_ref, rtol=1e-5)


def test_ddpm_step_matches_numpy(linear100):
    rng = np.random.default_rng(2)
    xt, eps, z = (rng.standard_normal((3, 5)).astype(np.float32) for _ in range(3))
    s = linear100
    for t in (99, 50, 1):
        for variance in ("beta", "posterior"):
            out = s.step(eps, t, xt, z, variance=variance)
            sigma2 = s.betas[t] if variance == "beta" else s.posterior_variance[t]
            ref = s.sqrt_recip_alphas[t] * (xt - s.betas[t] / s.sqrt_one_minus_alphas_cumprod[t] * eps) + np.sqrt(sigma2) * z
            np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)
    # t = 0: the last step adds no noise and needs none
    out = s.step(eps, 0, xt)
    ref = s.sqrt_recip_alphas[0] * (xt - s.betas[0] / s.sqrt_one_minus_alphas_cumprod[0] * eps)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)


def test_ddim_step_matches_numpy(linear100):
    rng = np.random.default_rng(3)
    xt, eps, z = (rng.standard_normal((2, 4)).astype(np.float32) for _ in range(3))
    s, t, prev = linear100, 80, 60
    a, ap = s.alphas_cumprod[t], s.alphas_cumprod[prev]
    x0 = (xt - np.sqrt(1 - a) * eps) / np.sqrt(a)
    out = s.step(eps, t, xt, method="ddim", prev_t=prev)
    np.testing.assert_allclose(out, np.sqrt(ap) * x0 + np.sqrt(1 - ap) * eps, rtol=1e-4, atol=1e-5)
    eta = 0.5
    sigma2 = eta**2 * (1 - ap) / (1 - a) * (1 - a / ap)
    out = s.step(eps, t, xt, z, method="ddim", prev_t=prev, eta=eta)
    ref = np.sqrt(ap) * x0 + np.sqrt(1 - ap - sigma2) * eps + np.sqrt(sigma2) * z
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)
    # to x_0 with clipping: the clipped x̂_0 itself
    out = s.step(eps, t, xt, method="ddim", prev_t=-1, clip=(-0.5, 0.5))
    np.testing.assert_allclose(out, np.clip(x0, -0.5, 0.5), rtol=1e-4, atol=1e-5)


def test_step_needs_noise_when_it_adds_some(linear100):
    x = np.zeros((2, 2), np.float32)
    with pytest.raises(sd.InvalidArgumentError, match="noise"):
        linear100.step(x, 10, x)


def test_closed_schedule_raises_and_close_is_idempotent():
    schedule = sd.NoiseSchedule.cosine(10)
    schedule.close()
    schedule.close()
    assert schedule.closed and "closed" in repr(schedule)
    for use in (lambda: schedule.betas, lambda: len(schedule), lambda: schedule.add_noise([[1.0]], [[1.0]], 0)):
        with pytest.raises(sd.ClosedError, match="closed"):
            use()


def test_repr_names_the_kind():
    with sd.NoiseSchedule.sigmoid(100, beta_max=0.1) as schedule:
        assert repr(schedule).startswith("NoiseSchedule.sigmoid(T=100")
