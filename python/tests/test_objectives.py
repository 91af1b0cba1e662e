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
