"""Model end to end: training works, samples land on the data, checkpoints resume exactly,
seeds determine everything, guidance combines as documented, lifetimes are safe."""

from __future__ import annotations

import numpy as np
import pytest

import swiftddpm as sd
from swiftddpm import datasets

from conftest import nearest_distance

# A sample set is "on the swiss roll" when its mean nearest-neighbour distance to the data
# is below this. Reference points: fresh data ≈ 0.015, a trained model ≈ 0.05–0.10, a
# Gaussian with the data's mean and covariance ≈ 0.27, an untrained model ≫ 1.
ON_THE_ROLL = 0.15


@pytest.fixture(scope="module")
def roll():
    return datasets.swiss_roll(4000, seed=0)


@pytest.fixture(scope="module")
def trained(roll):
    """A small MLP trained on the swiss roll, with its loss history."""
    with sd.NoiseSchedule.linear(200, scale_to_steps=True) as schedule:
        model = sd.Model(schedule, data_dim=2, hidden=64, depth=3, seed=1)
    losses = model.fit(roll, steps=2000, batch_size=128, seed=0, progress=False)
    yield model, losses
    model.close()


def test_training_lowers_the_loss(trained):
    model, losses = trained
    assert losses.shape == (2000,) and losses.dtype == np.float32 and np.isfinite(losses).all()
    first, last = losses[:50].mean(), losses[-50:].mean()
    assert last < 0.8 * first, (first, last)
    assert model.step == 2000


def test_samples_land_on_the_swiss_roll(trained, roll):
    model, _ = trained
    samples = model.sample(500, seed=1)
    assert samples.shape == (500, 2) and samples.dtype == np.float32
    distance = nearest_distance(samples, roll)
    assert distance < ON_THE_ROLL, distance


def test_negative_controls_fail_the_same_threshold(roll):
    # A Gaussian with the data's moments, and an untrained model, must not pass.
    rng = np.random.default_rng(1)
    gaussian = rng.multivariate_normal(roll.mean(0), np.cov(roll.T), 500)
    assert nearest_distance(gaussian, roll) > ON_THE_ROLL
    with sd.NoiseSchedule.linear(200, scale_to_steps=True) as schedule, \
            sd.Model(schedule, data_dim=2, hidden=64, depth=3, seed=1) as untrained:
        assert nearest_distance(untrained.sample(500, seed=1), roll) > ON_THE_ROLL


def test_ddim_and_respaced_samplers_also_work(trained, roll):
    model, _ = trained
    ddim = model.sample(500, method="ddim", steps=100, seed=2)
    respaced = model.sample(500, method="ddpm", steps=100, seed=2)
    assert nearest_distance(ddim, roll) < 2 * ON_THE_ROLL
    assert nearest_distance(respaced, roll) < 2 * ON_THE_ROLL


def test_same_seed_same_samples(trained):
    model, _ = trained
    a = model.sample(64, seed=11)
    b = model.sample(64, seed=11)
    c = model.sample(64, seed=12)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not np.array_equal(a, model.sample(64, seed=11, use_ema=False))


def test_save_load_gives_identical_samples(trained, tmp_checkpoint):
    model, _ = trained
    model.save(tmp_checkpoint)
    with sd.Model.load(tmp_checkpoint) as loaded:
        assert loaded.configs == model.configs
        assert loaded.step == model.step and loaded.num_parameters == model.num_parameters
        np.testing.assert_array_equal(loaded.sample(128, seed=4), model.sample(128, seed=4))
        np.testing.assert_array_equal(loaded.sample(16, seed=4, use_ema=False), model.sample(16, seed=4, use_ema=False))
        with loaded.schedule as a, model.schedule as b:
            np.testing.assert_array_equal(a.betas, b.betas)


def test_exact_resume_after_save_and_load(linear100, tmp_checkpoint):
    data = datasets.swiss_roll(512, seed=3)
    batches = [data[i * 32:(i + 1) * 32] for i in range(16)]
    options = dict(data_dim=2, hidden=32, depth=2, seed=5)

    with sd.Model(linear100, **options) as straight:
        expected = [straight.train_step(b) for b in batches]
        expected_samples = straight.sample(32, seed=1)

    with sd.Model(linear100, **options) as first_half:
        got = [first_half.train_step(b) for b in batches[:7]]
        first_half.save(tmp_checkpoint)
    with sd.Model.load(tmp_checkpoint) as resumed:
        assert resumed.step == 7
        got += [resumed.train_step(b) for b in batches[7:]]
        np.testing.assert_array_equal(resumed.sample(32, seed=1), expected_samples)
    assert got == expected


def test_same_model_seed_same_training(linear100):
    data = datasets.swiss_roll(256, seed=1)
    runs = []
    for seed in (3, 3, 4):
        with sd.Model(linear100, data_dim=2, hidden=16, depth=1, seed=seed) as m:
            runs.append(m.fit(data, steps=20, batch_size=32, seed=0, progress=False))
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])


def test_refilled_buffer_fast_path_sees_new_data(linear100):
    # train_step caches the pointer of an array passed twice: refilling it in place must
    # train on the new values, exactly like passing fresh arrays.
    data = np.random.default_rng(0).standard_normal((10, 8, 3)).astype(np.float32)
    with sd.Model(linear100, data_dim=3, hidden=16, depth=1, seed=2) as a, \
            sd.Model(linear100, data_dim=3, hidden=16, depth=1, seed=2) as b:
        buffer = np.empty((8, 3), np.float32)
        losses_a, losses_b = [], []
        for batch in data:
            buffer[...] = batch
            losses_a.append(a.train_step(buffer))
            losses_b.append(b.train_step(batch.astype(np.float64)))  # converted copy each time
        assert losses_a == losses_b
        buffer.shape = (4, 6)  # same object, new shape: must be re-checked, not reused
        with pytest.raises(sd.ShapeError):
            a.train_step(buffer)


def test_guidance_combines_conditional_and_unconditional(linear100):
    rng = np.random.default_rng(0)
    data = rng.standard_normal((256, 4)).astype(np.float32)
    labels = rng.integers(0, 3, 256)
    with sd.Model(linear100, data_dim=4, hidden=32, depth=2, num_classes=3, label_dropout=0.2) as m:
        losses = m.fit(data, steps=30, batch_size=64, labels=labels, progress=False)
        assert np.isfinite(losses).all()
        x = rng.standard_normal((5, 4)).astype(np.float32)
        y = np.array([0, 1, 2, 1, 0])
        uncond = m.predict(x, 50, labels=np.full(5, 3))  # K = 3 is the null label
        cond = m.predict(x, 50, labels=y)
        assert not np.allclose(uncond, cond)
        np.testing.assert_allclose(m.predict(x, 50, labels=y, guidance_scale=0.0), uncond, atol=1e-5)
        guided = m.predict(x, 50, labels=y, guidance_scale=3.0)
        np.testing.assert_allclose(guided, uncond + 3.0 * (cond - uncond), atol=1e-4)
        samples = m.sample(6, labels=1, guidance_scale=2.0, method="ddim", steps=10)
        assert samples.shape == (6, 4) and np.isfinite(samples).all()


def test_trajectory_starts_at_x_T_and_ends_at_the_samples(small_model):
    x, traj = small_model.sample(4, method="ddim", steps=5, seed=8, return_trajectory=True)
    assert list(traj) == [99, 79, 59, 39, 19, -1]
    np.testing.assert_array_equal(traj[-1], x)
    # x_T is really the start of this run: one deterministic DDIM step from it gives x_79.
    with small_model.schedule as schedule:
        step = schedule.step(small_model.predict(traj[99], 99), 99, traj[99], method="ddim", prev_t=79)
    np.testing.assert_allclose(step, traj[79], rtol=1e-6, atol=1e-6)
    x2, some = small_model.sample(4, method="ddim", steps=5, seed=8, return_trajectory=[99, 39, 40])
    assert list(some) == [99, 39]
    np.testing.assert_array_equal(some[39], traj[39])
    np.testing.assert_array_equal(x2, x)


def test_progress_callback_sees_every_step_and_cancels(small_model):
    seen = []

    def progress(step, total, t, x):
        seen.append((step, total, t))
        assert x.shape == (3, 3) and not x.flags.writeable

    small_model.sample(3, method="ddim", steps=4, progress=progress)
    # step 0 is x_T (at the first timestep), then one call after each of the 4 steps
    assert seen == [(0, 4, 99), (1, 4, 74), (2, 4, 49), (3, 4, 24), (4, 4, -1)]
    with pytest.raises(sd.CancelledError):
        small_model.sample(3, progress=lambda step, total, t, x: step >= 2)


def test_lr_schedule_and_set_learning_rate(small_model):
    calls = []

    def schedule(i):
        calls.append(i)
        return 1e-3 * (i + 1)

    small_model.fit(np.zeros((16, 3)), steps=5, batch_size=4, lr_schedule=schedule, progress=False)
    assert calls == [0, 1, 2, 3, 4]
    assert small_model.train_config.learning_rate == pytest.approx(5e-3)
    small_model.set_learning_rate(2e-4)
    assert small_model.train_config.learning_rate == pytest.approx(2e-4)


def test_fit_validates_and_converts_data(small_model):
    losses = small_model.fit(np.ones((10, 3), np.float64).tolist(), steps=3, batch_size=4, progress=False)
    assert losses.shape == (3,)
    with pytest.raises(sd.ShapeError, match=r"data must have shape \(B, 3\)"):
        small_model.fit(np.ones((10, 4)), steps=3, progress=False)
    with pytest.raises(sd.ShapeError, match=r"labels must have shape \(10,\)"):
        small_model.fit(np.ones((10, 3)), steps=3, labels=np.zeros(9, int), progress=False)


def test_progress_bars_do_not_break(small_model):
    losses = small_model.fit(np.zeros((8, 3)), steps=30, batch_size=4, progress=True)
    assert losses.shape == (30,)
    np.testing.assert_array_equal(small_model.sample(3, progress=True, seed=0), small_model.sample(3, seed=0, progress=False))


def test_properties_and_params_round_trip(linear100, small_model):
    m = small_model
    assert m.sample_shape == (3,)
    assert m.num_parameters > 0 and m.step == 0
    params = m.configs
    assert params["network"].data_dim == 3 and params["network"].hidden == 16 and params["train"].seed == 7
    with sd.Model(linear100, **params) as twin:
        assert twin.configs == params and twin.num_parameters == m.num_parameters
        np.testing.assert_array_equal(twin.sample(8, seed=0), m.sample(8, seed=0))
    assert "data_dim=3" in repr(m) and f"num_parameters={m.num_parameters}" in repr(m)
    m.train_step(np.zeros((2, 3), np.float32))
    assert m.step == 1 and "step=1" in repr(m)


def test_defaults_come_from_the_library():
    mlp, unet = sd._lib.lib.ddpm_mlp_params_default(), sd._lib.lib.ddpm_unet_params_default()
    assert sd.MLPConfig().hidden == mlp.hidden and sd.MLPConfig().depth == mlp.depth
    assert sd.UNetConfig().attention_levels == tuple(l for l in range(8) if unet.attention_levels >> l & 1)
    assert sd.UNetConfig().channel_mult == tuple(unet.channel_mult[: unet.num_levels])


def test_schedule_copy_outlives_the_model(linear100):
    m = sd.Model(linear100, data_dim=2, hidden=8, depth=1)
    schedule = m.schedule
    m.close()
    np.testing.assert_array_equal(schedule.alphas_cumprod, linear100.alphas_cumprod)
    schedule.close()


def test_with_and_idempotent_close(linear100):
    with sd.Model(linear100, data_dim=2, hidden=8, depth=1) as m:
        assert not m.closed
    assert m.closed
    m.close()
    m.close()
    assert repr(m) == "Model(closed)"
    # the schedule a model was built from can go first: the model holds its own copy
    schedule = sd.NoiseSchedule.linear(10)
    m = sd.Model(schedule, data_dim=2, hidden=8, depth=1)
    schedule.close()
    assert m.sample(2).shape == (2, 2)
    m.close()


def test_unet_model_on_images(tmp_checkpoint):
    options = dict(network="unet", image_shape=(1, 8, 8), base_channels=8, channel_mult=(1, 2), res_blocks=1,
                   attention_levels=(1,), groups=4, seed=3)
    with sd.NoiseSchedule.linear(50, scale_to_steps=True) as schedule:
        try:
            model = sd.Model(schedule, **options)
        except sd.InvalidArgumentError as error:
            if "not built" in str(error):
                pytest.skip(f"this library has no UNet yet: {error}")
            raise
    with model:
        assert model.sample_shape == (1, 8, 8)
        params = model.configs
        assert isinstance(params["network"], sd.UNetConfig) and params["network"].sample_shape == (1, 8, 8)
        assert params["network"].channel_mult == (1, 2) and params["network"].attention_levels == (1,)
        images = np.random.default_rng(0).uniform(-1, 1, (16, 1, 8, 8)).astype(np.float32)
        losses = [model.train_step(images[:8]), model.train_step(images[8:].reshape(8, 64))]  # both layouts
        assert np.isfinite(losses).all() and model.step == 2
        with pytest.raises(sd.ShapeError, match=r"\(B, 1, 8, 8\) or \(B, 64\)"):
            model.train_step(np.zeros((2, 8, 8)))
        eps = model.predict(images[:2], 10)
        assert eps.shape == (2, 1, 8, 8)
        samples = model.sample(2, method="ddim", steps=5, clip=True)
        assert samples.shape == (2, 1, 8, 8) and np.abs(samples).max() <= 1 + 1e-6
        model.save(tmp_checkpoint)
        with sd.Model.load(tmp_checkpoint) as loaded:
            assert loaded.configs == params and loaded.sample_shape == (1, 8, 8)
            np.testing.assert_array_equal(loaded.sample(2, method="ddim", steps=5, seed=1),
                                          model.sample(2, method="ddim", steps=5, seed=1))


def test_sample_seed_follows_numpy(small_model):
    """seed=None (the default) draws a fresh seed each call and records it; an int reproduces."""
    def draw(**kw):
        return small_model.sample(4, method="ddim", steps=3, eta=1.0, progress=False, **kw)

    a = draw()
    seed_a = small_model.last_sample_seed
    b = draw()
    seed_b = small_model.last_sample_seed
    assert isinstance(seed_a, int) and 0 <= seed_a < 2**64 and seed_a != seed_b
    assert not np.array_equal(a, b)  # fresh entropy: different samples
    np.testing.assert_array_equal(draw(seed=seed_a), a)  # the recorded seed gives them back
    assert small_model.last_sample_seed == seed_a
    np.testing.assert_array_equal(draw(seed=5), draw(seed=5))
    assert not np.array_equal(draw(seed=5), draw(seed=6))


def test_schedule_sample_seed_follows_numpy(linear100):
    def fn(x, t, labels):
        return np.zeros_like(x)

    a = linear100.sample(fn, 3, 2, method="ddim", steps=4, eta=1.0)
    used = linear100.last_sample_seed
    assert not np.array_equal(a, linear100.sample(fn, 3, 2, method="ddim", steps=4, eta=1.0))
    np.testing.assert_array_equal(linear100.sample(fn, 3, 2, method="ddim", steps=4, eta=1.0, seed=used), a)


def test_sample_shows_progress_by_default(small_model, capsys):
    pytest.importorskip("tqdm", reason="the default bar is tqdm's (a dependency of the package)")
    small_model.sample(3, method="ddim", steps=4, seed=0)
    assert "sampling" in capsys.readouterr().err
    small_model.sample(3, method="ddim", steps=4, seed=0, progress=False)
    assert "sampling" not in capsys.readouterr().err


def test_solver_names_of_the_header_are_accepted(small_model):
    """"dpm_solver_pp" (the header's DDPM_METHOD_DPM_SOLVER_PP, the command line's name) is "dpm_solver++"."""
    for plus, pp in (("dpm_solver++", "dpm_solver_pp"), ("sde_dpm_solver++", "sde_dpm_solver_pp")):
        np.testing.assert_array_equal(small_model.sample(3, method=plus, steps=4, seed=1, progress=False),
                                      small_model.sample(3, method=pp, steps=4, seed=1, progress=False))
    with pytest.raises(sd.InvalidArgumentError, match=r"dpm_solver\+\+.*dpm_solver_pp"):
        small_model.sample(3, method="dpm", progress=False)
