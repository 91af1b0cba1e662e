"""Every error path raises a DDPMError subclass with a useful message (never a crash)."""

from __future__ import annotations

import numpy as np
import pytest

import swiftddpm as sd


def raises(cls, match, fn, *args, **kwargs):
    """Asserts fn raises cls (a DDPMError) whose message matches; returns the error."""
    with pytest.raises(cls, match=match) as info:
        fn(*args, **kwargs)
    assert isinstance(info.value, sd.DDPMError)
    assert info.value.message and info.value.status_name
    return info.value


# ---- Schedules ---------------------------------------------------------------------------


@pytest.mark.parametrize("build,match", [
    (lambda: sd.NoiseSchedule.linear(0), "T >= 1"),
    (lambda: sd.NoiseSchedule.linear(10, beta_start=0.5, beta_end=1.5), r"not in \(0, 1\)"),
    (lambda: sd.NoiseSchedule.cosine(10, max_beta=1.0), "maxBeta|max_beta"),
    (lambda: sd.NoiseSchedule.sigmoid(10, beta_min=-1.0), r"not in \(0, 1\)"),
    (lambda: sd.NoiseSchedule.custom([0.1, float("nan")]), r"beta\[1\]"),
    (lambda: sd.NoiseSchedule.custom([]), "num_timesteps|T >= 1"),
])
def test_bad_schedule_params(build, match):
    error = raises(sd.InvalidArgumentError, match, build)
    assert error.status == sd._lib.DDPM_ERR_INVALID_ARGUMENT
    assert isinstance(error, ValueError)


def test_bad_schedule_inputs(linear100):
    x = np.zeros((4, 3), np.float32)
    raises(sd.ShapeError, r"noise has shape \(4, 2\)", linear100.add_noise, x, np.zeros((4, 2)), 0)
    raises(sd.ShapeError, r"t must have shape \(4,\)", linear100.add_noise, x, x, [1, 2])
    raises(sd.InvalidArgumentError, "timestep 100 is outside", linear100.add_noise, x, x, [0, 1, 2, 100])
    raises(sd.InvalidArgumentError, "timestep -1 is outside", linear100.posterior, x, x, -1)
    raises(sd.InvalidArgumentError, "integers", linear100.add_noise, x, x, 0.5)
    raises(sd.NonFiniteError, "x0", linear100.add_noise, np.full((4, 3), np.nan), x, 0)
    raises(sd.NonFiniteError, "x_t", linear100.posterior, x, np.full((4, 3), np.inf), 3)
    raises(sd.ShapeError, "non-empty batch", linear100.add_noise, np.zeros((0, 3)), np.zeros((0, 3)), 0)
    raises(sd.InvalidArgumentError, "table must be one of", linear100.table, "gammas")


def test_bad_step_and_sample_options(linear100):
    x = np.zeros((2, 2), np.float32)
    raises(sd.InvalidArgumentError, "method must be one of", linear100.step, x, 5, x, x, method="euler")
    raises(sd.InvalidArgumentError, "variance must be one of", linear100.step, x, 5, x, x, variance="large")
    raises(sd.InvalidArgumentError, "prevT|prev_t", linear100.step, x, 5, x, x, prev_t=7)
    raises(sd.InvalidArgumentError, "eta", linear100.step, x, 5, x, x, method="ddim", eta=1.5)
    raises(sd.InvalidArgumentError, "clip", linear100.step, x, 5, x, x, clip=(1, -1))
    raises(sd.InvalidArgumentError, "clip must be", linear100.step, x, 5, x, x, clip="yes")
    raises(sd.NonFiniteError, "eps|model output", linear100.step, np.full((2, 2), np.nan), 5, x, x)
    zero = lambda x, t, labels: np.zeros_like(x)  # noqa: E731
    raises(sd.InvalidArgumentError, "steps", linear100.sample, zero, 2, 2, method="ddim", steps=101)
    raises(sd.InvalidArgumentError, "n must be >= 1", linear100.sample, zero, 0, 2)
    raises(sd.InvalidArgumentError, "seed", linear100.sample, zero, 2, 2, seed=-1)
    raises(sd.ShapeError, r"labels must have shape \(2,\)", linear100.sample, zero, 2, 2, labels=[1, 2, 3])
    raises(sd.NonFiniteError, "predicted noise|model output", linear100.sample, lambda x, t, l: np.full_like(x, np.nan), 2, 2)


# ---- Models ------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs,match", [
    ({}, "data_dim must be >= 1"),
    ({"data_dim": 2, "network": "transformer"}, "network must be one of"),
    ({"data_dim": 2, "hidden": 0}, "hidden"),
    ({"data_dim": 2, "time_embed_dim": 7}, "time_embed_dim|even"),
    ({"data_dim": 2, "learning_rate": -1.0}, "learning rate|learning_rate"),
    ({"data_dim": 2, "ema_decay": 2.0}, "ema_decay"),
    ({"data_dim": 2, "label_dropout": -0.5}, "label_dropout"),
    ({"data_dim": 2, "seed": -3}, "seed"),
    ({"data_dim": 2.5}, "data_dim must be an integer"),
    ({"data_dim": 2, "channel_mult": (1, 2, 2, 2, 2)}, "channel_mult"),
])
def test_bad_model_params(linear100, kwargs, match):
    raises(sd.InvalidArgumentError, match, sd.Model, linear100, **kwargs)


def test_model_requires_a_schedule():
    raises(sd.InvalidArgumentError, "NoiseSchedule", sd.Model, "linear", data_dim=2)


def test_bad_model_inputs(small_model):
    m = small_model
    raises(sd.ShapeError, r"x0 must have shape \(B, 3\)", m.train_step, np.zeros((4, 2)))
    raises(sd.ShapeError, "non-empty batch", m.train_step, np.zeros((0, 3)))
    raises(sd.NonFiniteError, "x0", m.train_step, np.full((4, 3), np.nan))
    raises(sd.InvalidArgumentError, "unconditional", m.train_step, np.zeros((2, 3)), labels=[0, 1])
    raises(sd.InvalidArgumentError, "timestep 100 is outside", m.predict, np.zeros((2, 3)), 100)
    raises(sd.InvalidArgumentError, "timestep -1 is outside", m.predict, np.zeros((2, 3)), -1)
    raises(sd.ShapeError, "x_t must have shape", m.predict, np.zeros((2, 5)), 3)
    raises(sd.InvalidArgumentError, "unconditional", m.sample, 2, labels=[0, 0])
    raises(sd.InvalidArgumentError, "method must be one of", m.sample, 2, method="plms")
    raises(sd.InvalidArgumentError, "variance must be one of", m.sample, 2, variance="fixed")
    raises(sd.InvalidArgumentError, "learns its variance", m.sample, 2, variance="learned")
    raises(sd.InvalidArgumentError, "eta", m.sample, 2, method="ddim", eta=-0.1)
    raises(sd.InvalidArgumentError, "learning rate|learning_rate", m.set_learning_rate, 0.0)
    raises(sd.InvalidArgumentError, "return_trajectory", m.sample, 2, return_trajectory=3.5)
    raises(sd.InvalidArgumentError, "progress must be", m.sample, 2, progress="yes")
    assert m.step == 0  # nothing above trained the model


def test_labels_out_of_range_for_a_conditional_model(linear100):
    with sd.Model(linear100, data_dim=2, hidden=8, depth=1, num_classes=3) as m:
        x = np.zeros((2, 2), np.float32)
        raises(sd.InvalidArgumentError, "outside", m.train_step, x, labels=[0, 4])
        raises(sd.InvalidArgumentError, "outside", m.train_step, x, labels=[-1, 0])
        raises(sd.InvalidArgumentError, "integers", m.train_step, x, labels=[0.5, 1.0])
        m.train_step(x, labels=[0, 3])  # 3 = K is the null label


def test_load_missing_and_garbage_files(tmp_path):
    raises(sd.DDPMIOError, "cannot open|No such file", sd.Model.load, tmp_path / "missing.safetensors")
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}" + bytes(64))
    raises(sd.FormatError, "garbage.safetensors", sd.Model.load, garbage)
    short = tmp_path / "short.safetensors"
    short.write_bytes(b"\x01\x02")
    raises(sd.FormatError, "too short", sd.Model.load, short)
    random = tmp_path / "random.safetensors"
    random.write_bytes(np.random.default_rng(0).bytes(4096))
    raises(sd.FormatError, "random.safetensors", sd.Model.load, random)
    raises(sd.DDPMIOError, str(tmp_path), sd.Model.load, tmp_path)  # a directory


def test_load_a_valid_safetensors_file_that_is_not_a_checkpoint(tmp_path):
    header = b'{"weight":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}'
    path = tmp_path / "foreign.safetensors"
    path.write_bytes(len(header).to_bytes(8, "little") + header + np.ones(2, np.float32).tobytes())
    raises(sd.FormatError, "foreign.safetensors", sd.Model.load, path)


def test_save_to_an_unwritable_place(small_model, tmp_path):
    raises(sd.DDPMIOError, "cannot create", small_model.save, tmp_path / "no" / "such" / "dir" / "m.safetensors")
    raises(sd.InvalidArgumentError, "path is empty", small_model.save, "")


def test_truncated_checkpoint_is_a_format_error(small_model, tmp_checkpoint):
    small_model.save(tmp_checkpoint)
    data = open(tmp_checkpoint, "rb").read()
    with open(tmp_checkpoint, "wb") as f:
        f.write(data[: len(data) // 2])
    raises(sd.FormatError, "model.safetensors", sd.Model.load, tmp_checkpoint)


def test_closed_model_raises_instead_of_crashing(linear100):
    m = sd.Model(linear100, data_dim=2, hidden=8, depth=1)
    m.close()
    for use in (lambda: m.train_step(np.zeros((2, 2), np.float32)), lambda: m.sample(2), lambda: m.step,
                lambda: m.num_parameters, lambda: m.network, lambda: m.train_config,
                lambda: m.conditioning, lambda: m.configs, lambda: m.save("x.safetensors"),
                lambda: m.predict(np.zeros((1, 2)), 0), lambda: m.schedule, lambda: m.set_learning_rate(1e-3),
                lambda: m.fit(np.zeros((4, 2)), 1), lambda: m.sample_shape):
        raises(sd.ClosedError, "closed", use)


def test_a_failure_message_is_the_library_last_error(small_model):
    with pytest.raises(sd.DDPMError) as info:
        small_model.predict(np.zeros((1, 3)), 1000)
    assert info.value.message == sd._lib.last_error()
    assert info.value.message.startswith("ddpm_model_predict:")
    assert "[invalid argument]" in str(info.value)


def test_c_level_contradictions_are_refused(small_model, linear100):
    """Fields that contradict each other get an error rather than being ignored."""
    import ctypes

    from swiftddpm import _lib

    cond = _lib.lib.ddpm_cond_params_default()
    cond.num_classes = 5  # with kind NONE
    net = _lib.lib.ddpm_mlp_params_default()
    net.data_dim = 2
    handle = _lib.ddpm_model_p()
    status = _lib.lib.ddpm_model_create(linear100._h(), ctypes.byref(net.base), None, ctypes.byref(cond),
                                        ctypes.byref(handle))
    assert status == _lib.DDPM_ERR_INVALID_ARGUMENT and not handle
    assert "kind is NONE" in _lib.lib.ddpm_last_error().decode()

    params = _lib.lib.ddpm_sample_params_default()
    params.prediction_type = _lib.DDPM_OUTPUT_X0  # a model knows its own target
    out = np.empty((2, *small_model.sample_shape), dtype=np.float32)
    status = _lib.lib.ddpm_model_sample(small_model._h(), ctypes.byref(params), None, None, 2,
                                        out.ctypes.data_as(_lib.FLOAT_P), out.size)
    assert status == _lib.DDPM_ERR_INVALID_ARGUMENT
    assert "prediction_type" in _lib.lib.ddpm_last_error().decode()


def test_unknown_enum_values_are_listed_by_their_header_names(linear100):
    """A C caller's unknown method gets the valid values named as the header and Python name
    them (2 dpm_solver_pp, 5 pc), never the engine's Swift case names (dpmSolverPP)."""
    import ctypes

    from swiftddpm import _lib

    params = _lib.lib.ddpm_sample_params_default()
    params.method = 9
    sampler = _lib.ddpm_sampler_p()
    status = _lib.lib.ddpm_sampler_create(linear100._handle, ctypes.byref(params), 2, 2, ctypes.byref(sampler))
    message = _lib.lib.ddpm_last_error().decode()
    assert status == _lib.DDPM_ERR_INVALID_ARGUMENT and not sampler
    assert "unknown method 9" in message
    for name in ("0 ddpm", "1 ddim", "2 dpm_solver_pp", "3 sde_dpm_solver_pp", "4 langevin", "5 pc"):
        assert name in message, message
    assert "dpmSolverPP" not in message and "predictorCorrector" not in message
    params = _lib.lib.ddpm_sample_params_default()
    params.spacing, params.prediction_type = 99, 0
    _lib.lib.ddpm_sampler_create(linear100._handle, ctypes.byref(params), 2, 2, ctypes.byref(sampler))
    assert "5 dpm_leading, 6 dpm_linspace" in _lib.lib.ddpm_last_error().decode()
    params = _lib.lib.ddpm_sample_params_default()
    params.prediction_type = 7
    _lib.lib.ddpm_sampler_create(linear100._handle, ctypes.byref(params), 2, 2, ctypes.byref(sampler))
    assert "0 eps, 1 x0, 2 v" in _lib.lib.ddpm_last_error().decode()
