"""The typed configs (config.py): defaults are the library's, every field survives a trip
through the library (model create -> read back, save -> load), schedules report their kind."""

from __future__ import annotations

import ctypes
import dataclasses

import numpy as np
import pytest

import swiftddpm as sd
from swiftddpm import _lib


def c_fields(struct) -> dict:
    """A C struct's fields as plain values (arrays as lists, nested structs as dicts)."""
    values = {}
    for name, c_type in type(struct)._fields_:
        value = getattr(struct, name)
        if isinstance(value, ctypes.Structure):
            value = c_fields(value)
        elif isinstance(value, ctypes.Array):
            value = list(value)
        values[name] = value
    return values


CONFIGS = [
    (sd.ScheduleConfig, _lib.lib.ddpm_schedule_params_default),
    (sd.MLPConfig, _lib.lib.ddpm_mlp_params_default),
    (sd.UNetConfig, _lib.lib.ddpm_unet_params_default),
    (sd.TrainConfig, _lib.lib.ddpm_train_params_default),
    (sd.Conditioning, _lib.lib.ddpm_cond_params_default),
]


@pytest.mark.parametrize("cls,c_default", CONFIGS, ids=[c[0].__name__ for c in CONFIGS])
def test_defaults_are_the_c_defaults(cls, c_default):
    assert c_fields(cls().to_c()) == c_fields(c_default())  # every field, bit for bit
    assert cls.from_c(c_default()) == cls()
    # one field per struct that the mirror must not lose (a negative control of the above)
    changed = {sd.ScheduleConfig: {"num_timesteps": 7}, sd.MLPConfig: {"hidden": 7}, sd.UNetConfig: {"groups": 7},
               sd.TrainConfig: {"seed": 7}, sd.Conditioning: {"num_classes": 7}}[cls]
    assert c_fields(cls(**changed).to_c()) != c_fields(c_default())


def test_field_names_are_the_c_names():
    def names(struct_type):
        return [name for name, _ in struct_type._fields_ if name not in ("struct_size", "base")]

    assert [f.name for f in dataclasses.fields(sd.ScheduleConfig)] == names(_lib.ddpm_schedule_params)
    assert [f.name for f in dataclasses.fields(sd.MLPConfig)] == names(_lib.ddpm_mlp_params)
    assert [f.name for f in dataclasses.fields(sd.TrainConfig)] == names(_lib.ddpm_train_params)
    assert [f.name for f in dataclasses.fields(sd.Conditioning)] == names(_lib.ddpm_cond_params)
    # the UNet's num_levels is len(channel_mult), a property
    unet = [f.name for f in dataclasses.fields(sd.UNetConfig)]
    assert unet == [n for n in names(_lib.ddpm_unet_params) if n != "num_levels"]
    assert sd.UNetConfig(channel_mult=[1, 2, 4, 4]).num_levels == 4


def test_unet_levels_and_attention_mask():
    p = sd.UNetConfig(channel_mult=[1, 2, 3], attention_levels=[0, 2]).to_c()
    assert p.num_levels == 3 and list(p.channel_mult[:3]) == [1, 2, 3] and p.attention_levels == 0b101
    assert sd.UNetConfig.from_c(p) == sd.UNetConfig(channel_mult=(1, 2, 3), attention_levels=(0, 2))
    with pytest.raises(sd.InvalidArgumentError, match="1 to 8 entries"):
        sd.UNetConfig(channel_mult=()).to_c()
    with pytest.raises(sd.InvalidArgumentError, match="attention_levels entries"):
        sd.UNetConfig(attention_levels=(40,)).to_c()


@pytest.mark.parametrize("config,match", [
    (sd.MLPConfig(data_dim=2, hidden=2**40), "hidden must be <="),
    (sd.MLPConfig(data_dim=2.5), "data_dim must be an integer"),
    (sd.TrainConfig(seed=-1), "seed must be >= 0"),
    (sd.TrainConfig(learning_rate="fast"), "learning_rate must be a number"),
    (sd.Conditioning(kind="vectors"), "kind must be one of"),
    (sd.ScheduleConfig(kind="quadratic"), "kind must be one of"),
])
def test_values_ctypes_would_mangle_are_refused(config, match):
    with pytest.raises(sd.InvalidArgumentError, match=match):
        config.to_c()


MLP = sd.MLPConfig(data_dim=3, hidden=24, depth=2, time_embed_dim=10)
UNET = sd.UNetConfig(channels=2, height=8, width=8, base_channels=8, channel_mult=(1, 2), res_blocks=1,
                     attention_levels=(1,), attention_heads=2, groups=4, dropout=0.1, time_embed_dim=16,
                     cross_attention_levels=(0,), flip_sin_to_cos=True, freq_shift=1.0, norm_eps=1e-6,
                     downsample_padding=0, attention_head_dim=4, middle_attention=False,
                     cross_attention_positions=True)
TRAIN = sd.TrainConfig(learning_rate=2e-3, beta1=0.8, beta2=0.99, adam_eps=1e-6, weight_decay=0.01, grad_clip=0.5,
                       ema_decay=0.9, label_dropout=0.2, seed=42, prediction_target="v", loss_weighting="min_snr",
                       min_snr_gamma=3.0, learned_variance=True, vlb_lambda=0.01, timestep_sampling="importance")


@pytest.mark.parametrize("network", [MLP, UNET], ids=["mlp", "unet"])
def test_configs_round_trip_through_a_model_and_a_checkpoint(linear100, network, tmp_checkpoint):
    # every field differs from its default, so a field the library drops shows
    for field in dataclasses.fields(network):
        assert getattr(network, field.name) != getattr(type(network)(), field.name), field.name
    for field in dataclasses.fields(TRAIN):
        assert getattr(TRAIN, field.name) != getattr(sd.TrainConfig(), field.name), field.name
    cond = sd.Conditioning.classes(5)
    with sd.Model(linear100, network=network, train=TRAIN, cond=cond) as model:
        assert model.network == network and model.train_config == TRAIN and model.conditioning == cond
        assert model.configs == {"network": network, "train": TRAIN, "cond": cond}
        assert model.sample_shape == network.sample_shape
        model.save(tmp_checkpoint)
    with sd.Model.load(tmp_checkpoint) as loaded:
        assert loaded.configs == {"network": network, "train": TRAIN, "cond": cond}
        with loaded.schedule as schedule:
            assert schedule.params == linear100.params


def test_keywords_are_routed_to_the_configs(linear100):
    with sd.Model(linear100, data_dim=2, hidden=16, depth=1, num_classes=3, learning_rate=2e-3, seed=9) as sugar, \
            sd.Model(linear100, network=sd.MLPConfig(data_dim=2, hidden=16, depth=1),
                     train=sd.TrainConfig(learning_rate=2e-3, seed=9), cond=sd.Conditioning.classes(3)) as typed:
        assert sugar.configs == typed.configs
    # a keyword overrides the config it belongs to
    with sd.Model(linear100, network=sd.MLPConfig(data_dim=2, hidden=16), hidden=8, depth=1) as m:
        assert m.network == sd.MLPConfig(data_dim=2, hidden=8, depth=1)
    with sd.Model(linear100, network="unet", image_shape=(1, 4, 4), channel_mult=(1,), attention_levels=(),
                  groups=4) as m:
        assert m.network == sd.UNetConfig(channels=1, height=4, width=4, channel_mult=(1,), attention_levels=(),
                                          groups=4)
    with pytest.raises(sd.InvalidArgumentError, match=r"unknown option\(s\) \['widht'\]"):
        sd.Model(linear100, data_dim=2, widht=3)
    with pytest.raises(sd.InvalidArgumentError, match="train must be"):
        sd.Model(linear100, network=MLP, train=sd.MLPConfig())


SCHEDULES = [
    ("linear", lambda: sd.NoiseSchedule.linear(40, beta_start=2e-4, beta_end=0.03),
     dict(num_timesteps=40, beta_start=2e-4, beta_end=0.03)),
    ("cosine", lambda: sd.NoiseSchedule.cosine(30, s=0.01, max_beta=0.9), dict(num_timesteps=30, cosine_s=0.01, max_beta=0.9)),
    ("sigmoid", lambda: sd.NoiseSchedule.sigmoid(20, beta_min=1e-3, beta_max=0.05, start=-3, end=4),
     dict(num_timesteps=20, beta_start=1e-3, beta_end=0.05, sigmoid_start=-3.0, sigmoid_end=4.0)),
]


@pytest.mark.parametrize("kind,make,fields", SCHEDULES, ids=[s[0] for s in SCHEDULES])
def test_schedule_reports_its_kind_and_parameters(kind, make, fields):
    expected = sd.ScheduleConfig(kind=kind, **fields)
    with make() as schedule:
        assert schedule.kind == kind and schedule.params == expected
        assert repr(schedule).startswith(f"NoiseSchedule.{kind}(T={fields['num_timesteps']}")
        with sd.NoiseSchedule.from_config(schedule.params) as again:  # the params rebuild the same β
            np.testing.assert_array_equal(again.betas, schedule.betas)
        with sd.Model(schedule, data_dim=2, hidden=4, depth=1) as model, model.schedule as copy:
            assert copy.kind == kind and copy.params == expected  # no longer "custom"


def test_scaled_linear_and_custom_schedules_read_back():
    with sd.NoiseSchedule.linear(100, beta_start=1e-4, beta_end=0.02, scale_to_steps=True) as scaled:
        params = scaled.params
        assert params.kind == "linear" and params.scale_to_steps == 0  # the scaled ends, the same β
        assert params.beta_start == pytest.approx(1e-3) and params.beta_end == pytest.approx(0.2)
    with sd.NoiseSchedule.custom([0.1, 0.2, 0.3]) as custom:
        assert custom.kind == "custom" and custom.params.num_timesteps == 3
        assert repr(custom) == "NoiseSchedule.custom(T=3)"
        with pytest.raises(sd.InvalidArgumentError):
            sd.NoiseSchedule.from_config(custom.params)  # a custom schedule is made from its β only


def test_sampling_keyword_defaults_are_the_c_defaults():
    import inspect

    from swiftddpm._enums import METHODS, OUTPUTS, VARIANCES, enum_name

    sample, predict = _lib.lib.ddpm_sample_params_default(), _lib.lib.ddpm_predict_params_default()
    expected = {
        "method": enum_name(METHODS, sample.method), "steps": sample.steps, "eta": sample.eta,
        "variance": enum_name(VARIANCES, sample.variance), "clip": None if not sample.clip_x0 else True,
        "seed": sample.seed, "timesteps": None if not sample.timesteps else ...,
        "prediction_type": enum_name(OUTPUTS, sample.prediction_type),
        "guidance_scale": predict.guidance_scale, "use_ema": bool(predict.use_ema),
    }
    methods = [sd.Model.sample, sd.Model.predict, sd.Model.nll, sd.NoiseSchedule.sample, sd.Sampler.__init__]
    try:
        from swiftddpm import distributed
        methods.append(distributed.sample)
    except ImportError:  # no mpi4py
        pass
    # the sampling calls draw a fresh seed by default (seed=None, as numpy's generators; issue 22)
    fresh = {"Model.sample", "NoiseSchedule.sample", "sample"}
    for fn in methods:
        shown = {name: p.default for name, p in inspect.signature(fn).parameters.items() if name in expected}
        want = {name: None if name == "seed" and fn.__qualname__ in fresh else expected[name] for name in shown}
        assert shown and shown == want, fn.__qualname__


def test_condition_dropout_keeps_its_old_name(linear100):
    """label_dropout (before 0.3) is condition_dropout: in TrainConfig, Model's options and the C struct."""
    assert sd.TrainConfig(label_dropout=0.3) == sd.TrainConfig(condition_dropout=0.3)
    config = sd.TrainConfig(condition_dropout=0.4)
    assert config.label_dropout == config.condition_dropout == pytest.approx(0.4)
    config.label_dropout = 0.25
    assert config.condition_dropout == 0.25 and "label_dropout" not in repr(config)
    assert config.to_c().label_dropout == config.to_c().condition_dropout == 0.25
    with pytest.raises(sd.InvalidArgumentError, match="not both"):
        sd.TrainConfig(condition_dropout=0.1, label_dropout=0.2)
    with sd.Model(linear100, data_dim=2, num_classes=2, label_dropout=0.35) as model:
        assert model.train_config.condition_dropout == pytest.approx(0.35)


def test_an_unconditional_models_recipe_shows_no_conditioning_fields(linear100):
    """Issue 22: model.train_config of an unconditional model printed label_dropout=0.1."""
    conditioning_only = sd.TrainConfig._conditioning_only
    assert conditioning_only and all(name in repr(sd.TrainConfig()) for name in conditioning_only)
    with sd.Model(linear100, network=sd.MLPConfig(data_dim=2, hidden=8, depth=1)) as plain, \
            sd.Model(linear100, network=sd.MLPConfig(data_dim=2, hidden=8, depth=1),
                     cond=sd.Conditioning.classes(3)) as conditional:
        shown = repr(plain.train_config)
        assert not any(f"{name}=" in shown for name in conditioning_only), shown
        assert "learning_rate=" in shown and "seed=" in shown
        assert all(f"{name}=" in repr(conditional.train_config) for name in conditioning_only)
        assert plain.train_config == conditional.train_config  # the same fields and values

