"""The variational bound from Python, driven by the exact ε* of Gaussian data (everything is
closed form there): the engine's per-term bound equals a float64 numpy computation of the same
terms at the same x_t, it is >= the true NLL of N(μ, σ²), and it approaches it as T grows."""

from __future__ import annotations

import numpy as np
import pytest

import swiftddpm as sd

MU = np.array([0.3, -0.5, 0.0, 1.0])
SIGMA = np.array([0.5, 1.0, 0.2, 0.8])


def exact_model(alphas_cumprod, calls=None):
    def model_fn(x, t, labels):
        a = alphas_cumprod[t]
        eps = np.sqrt(1 - a) * (x.astype(np.float64) - np.sqrt(a) * MU) / (a * SIGMA**2 + 1 - a)
        if calls is not None:
            calls.append((t, x.astype(np.float64).copy()))
        return eps.astype(np.float32)
    return model_fn


def numpy_terms(schedule, x0, calls, variance):
    """The same terms in float64 from the x_t the engine used (recorded by the callback)."""
    betas, ac = schedule.betas, schedule.alphas_cumprod
    ac_prev = np.append(1.0, ac[:-1])
    post_var = (1 - ac_prev) / (1 - ac) * betas
    c0 = np.sqrt(ac_prev) * betas / (1 - ac)
    T = len(betas)
    terms = np.zeros((x0.shape[0], T))
    for t, xt in calls:
        a = ac[t]
        eps = np.sqrt(1 - a) * (xt - np.sqrt(a) * MU) / (a * SIGMA**2 + 1 - a)
        x0_hat = (xt - np.sqrt(1 - a) * eps) / np.sqrt(a)
        if t == 0:
            var = post_var[1]  # both fixed variances: β̃_1 at t = 0, as Ho et al.'s and Nichol & Dhariwal's code
            nll = 0.5 * np.log(2 * np.pi * var) + 0.5 * (x0 - x0_hat) ** 2 / var
            terms[:, 0] = nll.mean(axis=1)
        else:
            p_var = betas[t] if variance == "beta" else post_var[t]
            kl = 0.5 * (np.log(p_var) - np.log(post_var[t]) + post_var[t] / p_var - 1) \
                + 0.5 * c0[t] ** 2 * (x0 - x0_hat) ** 2 / p_var
            terms[:, t] = kl.mean(axis=1)
    aT = ac[-1]
    prior = (0.5 * (-np.log(1 - aT) + (1 - aT) + aT * x0**2 - 1)).mean(axis=1)
    return prior, terms


def true_nll(x0):
    """-log N(x0; MU, SIGMA²) per dimension, in nats."""
    return (0.5 * np.log(2 * np.pi * SIGMA**2) + 0.5 * ((x0 - MU) / SIGMA) ** 2).mean(axis=1)


@pytest.mark.parametrize("variance", ["beta", "posterior"])
def test_per_term_bound_matches_numpy(variance):
    rng = np.random.default_rng(1)
    x0 = (MU + SIGMA * rng.normal(size=(16, 4))).astype(np.float32)
    with sd.NoiseSchedule.linear(200, scale_to_steps=True) as schedule:
        calls = []
        got = schedule.vlb(exact_model(schedule.alphas_cumprod, calls), x0, variance=variance, seed=3)
        assert got.unit == "nats/dim" and got.terms.shape == (16, 200) and len(calls) == 200
        prior, terms = numpy_terms(schedule, x0.astype(np.float64), calls, variance)
        np.testing.assert_allclose(got.prior, prior, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(got.terms, terms, rtol=2e-3, atol=2e-5)
        np.testing.assert_allclose(got.total, prior + terms.sum(axis=1), rtol=1e-4, atol=1e-5)  # totals near 0 too


def test_bound_is_above_the_true_nll_and_tightens_with_T():
    rng = np.random.default_rng(2)
    x0 = (MU + SIGMA * rng.normal(size=(512, 4))).astype(np.float32)
    truth = true_nll(x0.astype(np.float64)).mean()
    bounds = {}
    for T in (100, 1000, 4000):
        with sd.NoiseSchedule.linear(T, scale_to_steps=True) as schedule:
            bounds[T] = schedule.vlb(exact_model(schedule.alphas_cumprod), x0, variance="posterior", seed=4).mean()
    print(f"[likelihood] true NLL {truth:.4f} nats/dim; bound T=100 {bounds[100]:.4f}, "
          f"T=1000 {bounds[1000]:.4f}, T=4000 {bounds[4000]:.4f}")
    se = true_nll(x0.astype(np.float64)).std() / np.sqrt(len(x0))
    for T, b in bounds.items():
        assert b >= truth - 3 * se, f"T = {T}: the bound {b} is below the true NLL {truth}"
    assert bounds[100] > bounds[1000] > bounds[4000] - 1e-3


def test_model_nll_in_bits_per_dim_for_images(linear100):
    with sd.Model(linear100, network=sd.MLPConfig(data_dim=4, hidden=16, depth=1)) as model:
        x0 = np.round(np.random.default_rng(0).uniform(-1, 1, size=(8, 4)) * 127.5) / 127.5
        r = model.nll(x0.astype(np.float32), decoder="discretized", bits=8, seed=1)
        assert r.unit == "bits/dim" and r.total.shape == (8,) and np.isfinite(r.total).all()
        np.testing.assert_allclose(r.total, r.prior + r.terms.sum(axis=1), rtol=1e-4)
        again = model.nll(x0.astype(np.float32), decoder="discretized", bits=8, seed=1)
        np.testing.assert_array_equal(r.total, again.total)
        with pytest.raises(sd.InvalidArgumentError, match="outside"):
            model.nll(np.full((1, 4), 1.5, np.float32), decoder="discretized")
