"""Useful reprs (issue 22): a config's repr evaluates back to the config; a Conditioning shows
its constructor; Sampler and Scheduler show their method, seed, the options given and where they
are. (TrainConfig's repr for an unconditional model: test_config.py.)"""

from __future__ import annotations

import numpy as np
import pytest

import swiftddpm as sd

NAMES = {"sd": sd, "TrainConfig": sd.TrainConfig, "MLPConfig": sd.MLPConfig, "UNetConfig": sd.UNetConfig,
         "ScheduleConfig": sd.ScheduleConfig, "Conditioning": sd.Conditioning}


@pytest.mark.parametrize("config", [
    sd.TrainConfig(), sd.TrainConfig(learning_rate=2e-3, label_dropout=0.0, prediction_target="v"),
    sd.MLPConfig(data_dim=2, hidden=64), sd.UNetConfig(channels=1, height=8, width=8, channel_mult=(1, 2, 2),
                                                       attention_levels=(), groups=8),
    sd.UNetConfig.signal(50), sd.ScheduleConfig(kind="cosine", num_timesteps=100),
    sd.Conditioning.none(), sd.Conditioning.classes(10), sd.Conditioning.vector(16), sd.Conditioning.sequence(8, 4),
    sd.Conditioning.tokens(30, 5, dim=16), sd.Conditioning(kind="vector", num_classes=3, dim=2),
], ids=repr)
def test_config_repr_evaluates_back_to_the_config(config):
    assert eval(repr(config), NAMES) == config


def test_conditioning_repr_is_its_constructor():
    assert repr(sd.Conditioning.classes(10)) == "Conditioning.classes(10)"
    assert repr(sd.Conditioning.none()) == "Conditioning.none()"
    assert repr(sd.Conditioning.tokens(30, 5, dim=16)) == "Conditioning.tokens(30, 5, 16)"
    assert repr(sd.Conditioning.tokens(30, 5, dim=16, encoder_layers=2)) == \
        "Conditioning.tokens(30, 5, 16, encoder_layers=2, encoder_heads=4)"
    assert repr(sd.Conditioning(kind="vector", num_classes=3, dim=2)) == \
        "Conditioning(kind='vector', num_classes=3, dim=2, max_length=0, vocab_size=0, encoder_layers=0, encoder_heads=0)"


def test_model_repr_shows_the_conditioning_constructor():
    with sd.NoiseSchedule.linear(100) as schedule, \
            sd.Model(schedule, network=sd.MLPConfig(data_dim=2), cond=sd.Conditioning.classes(3)) as model:
        assert repr(model) == (f"Model(network={model.network!r}, cond=Conditioning.classes(3), "
                               f"num_parameters={model.num_parameters}, step=0)")


def test_sampler_repr_shows_method_seed_options_and_progress(linear100):
    with sd.Sampler(linear100, 4, 2, method="ddim", steps=3, eta=0.5, seed=9) as sampler:
        assert repr(sampler) == "Sampler(method='ddim', eta=0.5, seed=9, n=4, shape=(2,), steps=3: next t=99)"
        x = sampler.init_noise()
        for _ in sampler.timesteps:
            x, _ = sampler.step(np.zeros_like(x), x)
        assert repr(sampler).endswith("steps=3: done)")
    assert repr(sampler).endswith(": closed)")
    with sd.Sampler(linear100, 1, (1, 4), method="dpm_solver++", steps=5, solver_order=3) as sampler:
        assert repr(sampler).startswith("Sampler(method='dpm_solver++', seed=0, solver_order=3, n=1, shape=(1, 4), ")


def test_scheduler_repr_shows_schedule_options_and_timesteps(linear100):
    scheduler = sd.Scheduler(linear100, method="dpm_solver++", seed=3)
    scheduler.set_timesteps(4)
    t = scheduler.timesteps
    assert repr(scheduler) == (f"Scheduler({linear100!r}, method='dpm_solver++', seed=3: "
                               f"4 timesteps {t[0]}..{t[-1]})")
    assert repr(sd.Scheduler(linear100)).startswith(f"Scheduler({linear100!r}, method='ddpm', seed=0: 100 timesteps 99..0")
