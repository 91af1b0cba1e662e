"""The samplers of issue 9 from Python: numpy transcriptions of diffusers' update rules
(written from diffusers' documented formulas and the DPM-Solver++ paper, not from its code)
driven by the exact ε* of Gaussian data, the diffusers-style Scheduler, every method through
Model.sample with guidance, and option checking.
"""

from __future__ import annotations

import numpy as np
import pytest

import swiftddpm as sd

MU = np.array([1.0, -2.0, 0.5, 3.0])
SIGMA = np.array([0.5, 1.0, 2.0, 0.1])


@pytest.fixture
def linear1000():
    with sd.NoiseSchedule.linear(1000) as schedule:
        yield schedule


def exact_eps(alphas_cumprod):
    """ε*(x, t) of x_0 ~ N(MU, diag SIGMA²) in float64."""
    def eps(x, t):
        a = alphas_cumprod[t]
        return np.sqrt(1 - a) * (x - np.sqrt(a) * MU) / (a * SIGMA**2 + 1 - a)
    return eps


def model_fn(alphas_cumprod):
    eps = exact_eps(alphas_cumprod)
    return lambda x, t, labels: eps(x.astype(np.float64), t).astype(np.float32)


def x_T(schedule, n, **options):
    with sd.Sampler(schedule, n, 4, **options) as sampler:
        return sampler.init_noise().astype(np.float64)


# ---- diffusers' DPMSolverMultistepScheduler (algorithm_type="dpmsolver++", midpoint) ----

def diffusers_dpmsolver_pp(alphas_cumprod, timesteps, x, order=2):
    """A transcription of DPM-Solver++ multistep as diffusers documents it: σ = √((1−ᾱ)/ᾱ),
    α_t = 1/√(σ²+1), σ_t = σ·α_t, λ = log α_t − log σ_t, a final σ of zero (x_0), and the
    lower-order rules: first order for the first step and for the last one."""
    eps = exact_eps(alphas_cumprod)
    sig = np.sqrt((1 - alphas_cumprod[timesteps]) / alphas_cumprod[timesteps])
    sigmas = np.append(sig, 0.0)

    def alpha_sigma(s):
        a = 1 / np.sqrt(s**2 + 1)
        return a, s * a

    history = []
    n = len(timesteps)
    for i, t in enumerate(timesteps):
        a_s, s_s = alpha_sigma(sigmas[i])
        x0 = (x - s_s * eps(x, t)) / a_s  # convert_model_output for epsilon prediction
        history.append((x0, np.log(a_s) - np.log(s_s)))
        a_t, s_t = alpha_sigma(sigmas[i + 1])
        # (The rule for the step before the last only matters at order 3.)
        use_first = order == 1 or len(history) < 2 or i == n - 1
        if sigmas[i + 1] == 0:
            x = x0
            continue
        lam_t = np.log(a_t) - np.log(s_t)
        m0, lam_s0 = history[-1]
        h = lam_t - lam_s0
        if use_first:
            x = (s_t / s_s) * x - a_t * (np.exp(-h) - 1.0) * m0
        else:
            m1, lam_s1 = history[-2]
            r0 = (lam_s0 - lam_s1) / h
            d0, d1 = m0, (1.0 / r0) * (m0 - m1)
            x = (s_t / s_s) * x - a_t * (np.exp(-h) - 1.0) * d0 - 0.5 * a_t * (np.exp(-h) - 1.0) * d1
    return x


@pytest.mark.parametrize("steps", [10, 20])
def test_dpm_solver_pp_2m_matches_a_diffusers_transcription(linear1000, steps):
    ac = linear1000.alphas_cumprod
    # diffusers' default spacing for this scheduler: linspace(0, T−1, S+1) rounded, reversed, last dropped.
    ts = np.linspace(0, 999, steps + 1).round()[::-1][:-1].astype(np.int64)
    got = linear1000.sample(model_fn(ac), 64, 4, method="dpm_solver++", timesteps=ts, seed=3)
    want = diffusers_dpmsolver_pp(ac, ts, x_T(linear1000, 64, seed=3))
    np.testing.assert_allclose(got, want, atol=2e-4, rtol=1e-4)
    # Negative control: first order (DDIM) differs visibly at these step counts.
    first = linear1000.sample(model_fn(ac), 64, 4, method="dpm_solver++", timesteps=ts, seed=3, solver_order=1)
    assert np.abs(first - want).max() > 1e-3


# ---- diffusers' DDIMScheduler.step with clip_sample -------------------------------------

def diffusers_ddim(alphas_cumprod, timesteps, x, clip_range, use_clipped_model_output, eta=0.0, noises=None):
    """DDIMScheduler.step as documented (set_alpha_to_one: ᾱ after the last step is 1)."""
    eps = exact_eps(alphas_cumprod)
    for i, t in enumerate(timesteps):
        a = alphas_cumprod[t]
        a_prev = alphas_cumprod[timesteps[i + 1]] if i + 1 < len(timesteps) else 1.0
        e = eps(x, t)
        x0 = (x - np.sqrt(1 - a) * e) / np.sqrt(a)
        x0 = np.clip(x0, -clip_range, clip_range)
        variance = (1 - a_prev) / (1 - a) * (1 - a / a_prev)
        std = eta * np.sqrt(variance)
        if use_clipped_model_output:
            e = (x - np.sqrt(a) * x0) / np.sqrt(1 - a)
        x = np.sqrt(a_prev) * x0 + np.sqrt(1 - a_prev - std**2) * e
        if std > 0:
            x = x + std * noises[i]
    return x


@pytest.mark.parametrize("use_clipped", [False, True])
def test_clipped_ddim_matches_a_diffusers_transcription(linear1000, use_clipped):
    ac = linear1000.alphas_cumprod
    got = linear1000.sample(model_fn(ac), 64, 4, method="ddim", steps=10, spacing="leading", clip=(-1.5, 1.5),
                            use_clipped_model_output=use_clipped, seed=4)
    with sd.Sampler(linear1000, 1, 1, method="ddim", steps=10, spacing="leading") as probe:
        ts = probe.timesteps
    assert list(ts) == [900, 800, 700, 600, 500, 400, 300, 200, 100, 0]  # diffusers, 10 of 1000
    want = diffusers_ddim(ac, ts, x_T(linear1000, 64, seed=4), 1.5, use_clipped)
    np.testing.assert_allclose(got, want, atol=2e-4, rtol=1e-4)


def test_default_ddim_keeps_the_model_eps_like_diffusers(linear1000):
    ac = linear1000.alphas_cumprod
    kept = linear1000.sample(model_fn(ac), 16, 4, method="ddim", steps=10, clip=True, seed=1)
    rederived = linear1000.sample(model_fn(ac), 16, 4, method="ddim", steps=10, clip=True, seed=1,
                                  use_clipped_model_output=True)
    assert np.abs(kept - rederived).max() > 1e-3


# ---- Scheduler (diffusers-style) and Sampler ------------------------------------------

@pytest.mark.parametrize("method,options", [
    ("dpm_solver++", {"solver_order": 3}),
    ("sde_dpm_solver++", {}),
    ("langevin", {"corrector_steps": 2, "spacing": "linspace"}),
    ("pc", {"corrector_steps": 1}),
    ("ddim", {"eta": 0.5, "thresholding": 0.9}),
])
def test_scheduler_steps_reproduce_the_built_in_loop(linear1000, method, options):
    ac = linear1000.alphas_cumprod
    fn = model_fn(ac)
    want = linear1000.sample(fn, 8, 4, method=method, steps=12, seed=9, **options)
    scheduler = sd.Scheduler(linear1000, method=method, seed=9, **options)
    scheduler.set_timesteps(12)
    x = scheduler.init_noise((8, 4))
    for t in scheduler.timesteps:
        x, x0 = scheduler.step(fn(x, int(t), None), int(t), x)
    np.testing.assert_array_equal(x, want)
    with pytest.raises(sd.InvalidArgumentError, match="next step"):
        scheduler.step(x, 5, x)


def test_sampler_reports_plan_and_noise(linear1000):
    with sd.Sampler(linear1000, 2, 4, method="pc", steps=3, corrector_steps=2) as s:
        t = list(s.timesteps)
        assert len(t) == s.num_steps == 3 * 3  # per timestep: 2 corrector steps, then the predictor
        assert t[:3] == [t[0]] * 3
        assert s.step_adds_noise
    with sd.Sampler(linear1000, 2, 4, method="ddim", steps=3) as s:
        assert not s.step_adds_noise


@pytest.mark.parametrize("method", ["ddpm", "ddim", "dpm_solver++", "sde_dpm_solver++", "langevin", "pc"])
def test_every_method_samples_a_conditional_model_with_guidance(linear100, method):
    with sd.Model(linear100, network=sd.MLPConfig(data_dim=2, hidden=16, depth=1),
                  cond=sd.Conditioning.classes(3), train=sd.TrainConfig(seed=1)) as model:
        data = np.random.default_rng(0).normal(size=(64, 2)).astype(np.float32)
        model.fit(data, steps=5, batch_size=16, labels=np.arange(64) % 3, progress=False)
        a = model.sample(6, method=method, steps=10, labels=[0, 1, 2, 0, 1, 2], guidance_scale=2.0, seed=2)
        b = model.sample(6, method=method, steps=10, labels=[0, 1, 2, 0, 1, 2], guidance_scale=2.0, seed=2)
        assert a.shape == (6, 2) and np.isfinite(a).all()
        np.testing.assert_array_equal(a, b)  # a seed gives the same samples


def test_bad_solver_options_are_refused(linear100):
    with pytest.raises(sd.InvalidArgumentError, match="solver order"):
        sd.Sampler(linear100, 1, 2, method="dpm_solver++", solver_order=4)
    with pytest.raises(sd.InvalidArgumentError, match="solver order"):
        sd.Sampler(linear100, 1, 2, method="sde_dpm_solver++", solver_order=3)
    with pytest.raises(sd.InvalidArgumentError, match="spacing"):
        sd.Sampler(linear100, 1, 2, spacing="sideways")
    with pytest.raises(sd.InvalidArgumentError, match="threshold quantile"):
        sd.Sampler(linear100, 1, 2, thresholding=1.5)
    with pytest.raises(TypeError, match="unknown sampling option"):
        sd.Sampler(linear100, 1, 2, solver_ordre=2)
