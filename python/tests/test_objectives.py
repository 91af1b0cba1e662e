"""Prediction targets and loss weightings from Python: configs round-trip, every target trains,
predict returns eps / x0 / v / score consistently, checkpoints carry the objective."""

from __future__ import annotations

import numpy as np
import pytest

import swiftddpm as sd


def test_train_config_carries_the_objective(linear100, tmp_path):
    cfg = sd.TrainConfig(prediction_target="v", loss_weighting="min_snr", min_snr_gamma=3.0, seed=2)
    with sd.Model(linear100, network=sd.MLPConfig(data_dim=2, hidden=16, depth=1), train=cfg) as model:
        assert model.train_config == cfg
        model.train_step(np.zeros((4, 2), np.float32))
        model.save(tmp_path / "v.safetensors")
    with sd.Model.load(tmp_path / "v.safetensors") as loaded:
        assert loaded.train_config.prediction_target == "v"
        assert loaded.train_config.loss_weighting == "min_snr"
        assert loaded.train_config.min_snr_gamma == 3.0
    with pytest.raises(sd.InvalidArgumentError):
        sd.Model(linear100, network=sd.MLPConfig(data_dim=2), train=sd.TrainConfig(prediction_target="score"))
    with pytest.raises(sd.InvalidArgumentError):
        sd.Model(linear100, network=sd.MLPConfig(data_dim=2), train=sd.TrainConfig(min_snr_gamma=0.0))


@pytest.mark.parametrize("target", ["eps", "x0", "v"])
def test_predictions_are_consistent_whatever_the_target(linear100, target):
    with sd.Model(linear100, network=sd.MLPConfig(data_dim=3, hidden=16, depth=1),
                  train=sd.TrainConfig(prediction_target=target, seed=1)) as model:
        rng = np.random.default_rng(0)
        model.fit(rng.normal(size=(64, 3)).astype(np.float32), steps=20, batch_size=16, progress=False)
        x = rng.normal(size=(5, 3)).astype(np.float32)
        t = 60
        a = linear100.alphas_cumprod[t]
        eps, x0, v, score = (model.predict(x, t, output=o).astype(np.float64) for o in ("eps", "x0", "v", "score"))
        np.testing.assert_allclose(x0, (x - np.sqrt(1 - a) * eps) / np.sqrt(a), atol=1e-4)
        np.testing.assert_allclose(v, np.sqrt(a) * eps - np.sqrt(1 - a) * x0, atol=1e-4)
        np.testing.assert_allclose(score, -eps / np.sqrt(1 - a), atol=1e-4)
        np.testing.assert_allclose(model.score(x, t), score, atol=1e-6)
        samples = model.sample(8, method="dpm_solver++", steps=10, seed=3)
        assert np.isfinite(samples).all()


def test_learned_variance_model_predicts_its_variance_and_samples(linear100):
    cfg = sd.TrainConfig(learned_variance=True, vlb_lambda=0.01, seed=3)
    with sd.Model(linear100, network=sd.MLPConfig(data_dim=2, hidden=16, depth=1), train=cfg) as model:
        rng = np.random.default_rng(1)
        model.fit((0.5 * rng.normal(size=(256, 2))).astype(np.float32), steps=50, batch_size=64, progress=False)
        x = rng.normal(size=(4, 2)).astype(np.float32)
        var = model.predict_variance(x, 50)
        assert var.shape == (4, 2) and np.isfinite(var).all() and (var > 0).all()
        a = model.sample(16, method="ddpm", steps=20, variance="learned", seed=4)
        b = model.sample(16, method="ddpm", steps=20, variance="posterior", seed=4)
        assert np.isfinite(a).all() and not np.array_equal(a, b)
        nll = model.nll(x, variance="learned", seed=1)
        assert np.isfinite(nll.total).all()
    with sd.Model(linear100, network=sd.MLPConfig(data_dim=2, hidden=16, depth=1)) as plain:
        with pytest.raises(sd.InvalidArgumentError, match="learned_variance"):
            plain.predict_variance(np.zeros((1, 2), np.float32), 5)


def test_every_target_trains_the_swiss_roll_like_eps():
    """ε, x0 and v (the latter two with min-SNR-5) at the same budget: the mean distance of
    DDIM-50 samples to the roll is within noise of ε's; importance-sampled t trains too."""
    from conftest import nearest_distance

    data = sd.datasets.swiss_roll(5000, noise=0.05, seed=0)
    reference = sd.datasets.swiss_roll(2000, noise=0.05, seed=1)
    distances = {}
    with sd.NoiseSchedule.linear(1000) as schedule:
        for name, train in [("eps", sd.TrainConfig(seed=0, learning_rate=2e-3)),
                            ("x0", sd.TrainConfig(seed=0, learning_rate=2e-3, prediction_target="x0", loss_weighting="min_snr")),
                            ("v", sd.TrainConfig(seed=0, learning_rate=2e-3, prediction_target="v", loss_weighting="min_snr")),
                            ("eps+importance", sd.TrainConfig(seed=0, learning_rate=2e-3, timestep_sampling="importance"))]:
            with sd.Model(schedule, network=sd.MLPConfig(data_dim=2, hidden=64, depth=2), train=train) as model:
                losses = model.fit(data, steps=1500, batch_size=256, progress=False)
                assert np.isfinite(losses).all(), name
                x = model.sample(1000, method="ddim", steps=50, seed=2)
                distances[name] = nearest_distance(x, reference)
    print(f"[objectives] swiss roll, mean distance to the roll (DDIM-50): {distances}")
    for name, d in distances.items():
        assert d <= 1.5 * distances["eps"] + 0.02, f"{name}: {d} against ε's {distances['eps']}"
