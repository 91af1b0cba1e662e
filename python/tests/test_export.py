"""Model.export / Model.from_export / Model.import_weights without PyTorch: the folder's
contents checked against the model's own checkpoint (an independent reader of the same
tensors), the round trip, and the refusals. The PyTorch side is test_torch.py."""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest

import swiftddpm as sd
from swiftddpm import _safetensors
from swiftddpm._export import LATER_NETWORK_FIELDS


@pytest.fixture
def trained(linear100):
    with sd.Model(linear100, data_dim=3, hidden=16, depth=2, time_embed_dim=8, num_classes=2,
                  learning_rate=1e-2, seed=5) as model:
        x = np.random.default_rng(0).normal(size=(32, 3)).astype(np.float32)
        for _ in range(10):
            model.train_step(x, np.arange(32) % 2)
        yield model, x


@pytest.mark.parametrize("use_ema", [True, False])
def test_export_writes_the_checkpoint_weights_and_a_plain_config(trained, tmp_path, use_ema):
    model, _ = trained
    model.export(tmp_path / "e", use_ema=use_ema)
    model.save(tmp_path / "ckpt.safetensors")
    ckpt, _ = _safetensors.read(tmp_path / "ckpt.safetensors")
    weights, meta = _safetensors.read(tmp_path / "e" / "model.safetensors")
    prefix = "ema." if use_ema else "model."
    assert weights.keys() == {k[len(prefix):] for k in ckpt if k.startswith(prefix)}
    assert all(np.array_equal(weights[k], ckpt[prefix + k]) and weights[k].dtype == np.float32 for k in weights)
    assert "in_proj.weight" in weights and weights["in_proj.weight"].shape == (16, 3)  # (out, in) as torch
    assert sum(w.size for w in weights.values()) == model.num_parameters
    config = json.loads((tmp_path / "e" / "config.json").read_text())
    assert config["format"] == "swiftddpm-export" and config["weights"] == ("ema" if use_ema else "live")
    assert config["network"] == {"kind": "mlp", "data_dim": 3, "hidden": 16, "depth": 2, "time_embed_dim": 8}
    assert {k: config["conditioning"][k] for k in ("kind", "num_classes", "null_label")} == \
        {"kind": "classes", "num_classes": 2, "null_label": 2}
    assert not config["learned_variance"] and config["output_shape"] == [3]
    assert config["prediction"] == "epsilon" and config["step"] == 10 and config["sample_shape"] == [3]
    with model.schedule as s:
        np.testing.assert_array_equal(np.array(config["schedule"]["betas"]), s.betas)
        assert config["schedule"]["kind"] == "linear" and config["schedule"]["num_timesteps"] == 100
    assert meta["format"] == "swiftddpm-export"


def test_from_export_predicts_identically(trained, tmp_path):
    model, x = trained
    model.export(tmp_path)
    with sd.Model.from_export(tmp_path, train=sd.TrainConfig(learning_rate=5e-4)) as again:
        assert again.network == model.network and again.conditioning == model.conditioning
        assert again.train_config.learning_rate == 5e-4 and again.step == 0
        for t in (0, 50, 99):
            for labels in (None, [0, 1] * 16):
                expected = model.predict(x, t, labels=labels)  # EMA
                np.testing.assert_array_equal(again.predict(x, t, labels=labels), expected)
                np.testing.assert_array_equal(again.predict(x, t, labels=labels, use_ema=False), expected)
        again.train_step(x, np.zeros(32, np.int32))  # trainable
        assert again.step == 1


def test_import_weights_replaces_live_or_ema_only(trained, tmp_path):
    model, x = trained
    model.export(tmp_path)  # EMA weights
    with sd.Model(model.schedule, **model.configs) as other:
        step_before = other.step
        other.import_weights(tmp_path, ema=False)
        np.testing.assert_array_equal(other.predict(x, 3, use_ema=False), model.predict(x, 3))
        assert not np.array_equal(other.predict(x, 3), model.predict(x, 3))  # its EMA untouched
        other.import_weights(tmp_path / "model.safetensors", live=False)
        np.testing.assert_array_equal(other.predict(x, 3), model.predict(x, 3))
        assert other.step == step_before


def test_import_weights_refuses_mismatches(trained, tmp_path):
    model, _ = trained
    model.export(tmp_path)
    weights, _ = _safetensors.read(tmp_path / "model.safetensors")
    before = model.predict(np.zeros((1, 3), np.float32), 5)
    bad = dict(weights)
    del bad["out_proj.bias"]
    with pytest.raises(sd.InvalidArgumentError, match="missing \\['out_proj.bias'\\]"):
        model.import_weights(bad)
    with pytest.raises(sd.InvalidArgumentError, match="unexpected \\['extra'\\]"):
        model.import_weights({**weights, "extra": np.zeros(1, np.float32)})
    with pytest.raises(sd.ShapeError, match="in_proj.weight"):
        model.import_weights({**weights, "in_proj.weight": np.zeros((3, 16), np.float32)})
    with pytest.raises(sd.InvalidArgumentError, match="non-finite"):
        model.import_weights({**weights, "in_proj.bias": np.full(16, np.nan, np.float32)})
    np.testing.assert_array_equal(model.predict(np.zeros((1, 3), np.float32), 5), before)  # unchanged


def test_from_export_refuses_bad_folders(trained, tmp_path):
    model, _ = trained
    with pytest.raises(sd.FormatError, match="config.json is missing"):
        sd.Model.from_export(tmp_path)
    model.export(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["schedule"]["betas"][5] *= 1.5
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(sd.FormatError, match="betas"):
        sd.Model.from_export(tmp_path)
    config["format_version"] = 99
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(sd.FormatError, match="version"):
        sd.Model.from_export(tmp_path)


def test_custom_schedule_and_unet_round_trip(tmp_path):
    betas = np.linspace(1e-3, 0.05, 20) ** 1.1
    with sd.NoiseSchedule.custom(betas) as schedule, \
            sd.Model(schedule, network=sd.UNetConfig(channels=1, height=4, width=4, base_channels=8,
                                                    channel_mult=(1, 2), res_blocks=1, groups=4,
                                                    attention_levels=())) as model:
        x = np.random.default_rng(2).normal(size=(4, 1, 4, 4)).astype(np.float32)
        model.train_step(x)
        model.export(tmp_path)
        with sd.Model.from_export(tmp_path) as again, again.schedule as s:
            assert s.kind == "custom"
            np.testing.assert_array_equal(s.betas, schedule.betas)
            np.testing.assert_array_equal(again.predict(x, 19), model.predict(x, 19))
        # Fields newer than the format's first reader are written only when they are not at
        # their default (an older library's from_export refuses keys it does not know).
        network = json.loads((tmp_path / "config.json").read_text())["network"]
        later = sorted(LATER_NETWORK_FIELDS & {f.name for f in dataclasses.fields(sd.UNetConfig)})
        assert later and not set(later) & set(network), network
        assert {"base_channels", "groups", "attention_levels"} <= set(network)


# ---- Issue 19: the checkpoint's file rules for export folders -----------------------------

def test_export_replaces_links_atomically_and_keeps_the_targets_privacy(trained, tmp_path):
    """Before the fix export wrote through both links (the victims were overwritten)."""
    model, x = trained
    folder = tmp_path / "e"
    folder.mkdir()
    victims = {}
    for name in ("model.safetensors", "config.json"):
        victim = tmp_path / f"victim-{name}"
        victim.write_bytes(b"precious " + name.encode())
        victim.chmod(0o600)
        (folder / name).symlink_to(victim)
        victims[name] = victim
    model.export(folder)
    for name, victim in victims.items():
        assert victim.read_bytes() == b"precious " + name.encode(), f"{name}: the link's target is untouched"
        assert not (folder / name).is_symlink() and (folder / name).stat().st_mode & 0o777 == 0o600
    assert sorted(os.listdir(folder)) == ["config.json", "model.safetensors"], "no temporary file is left"
    with sd.Model.from_export(folder) as again:
        np.testing.assert_array_equal(again.predict(x, 7, labels=[0] * 32), model.predict(x, 7, labels=[0] * 32))


def test_export_files_that_are_not_regular_files_are_refused_by_type(trained, tmp_path):
    """config.json as a FIFO made from_export hang, model.safetensors as /dev/zero read until
    MemoryError: both are refused by their type before any byte is read."""
    model, _ = trained
    model.export(tmp_path)
    (tmp_path / "config.json").rename(tmp_path / "config.saved")
    os.mkfifo(tmp_path / "config.json")
    with pytest.raises(sd.DDPMIOError, match=r"not a regular file \(it is a FIFO\)"):
        sd.Model.from_export(tmp_path)
    os.unlink(tmp_path / "config.json")
    (tmp_path / "config.saved").rename(tmp_path / "config.json")
    os.unlink(tmp_path / "model.safetensors")
    os.symlink("/dev/zero", tmp_path / "model.safetensors")
    with pytest.raises(sd.DDPMIOError, match="character device"):
        sd.Model.from_export(tmp_path)
    with pytest.raises(sd.DDPMIOError, match="character device"):
        model.import_weights(tmp_path / "model.safetensors")


def _edit_config(folder, edit):
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(edit(config)))


def _edit_header(folder, edit):
    """Rewrites model.safetensors with its JSON header edited (the data region kept)."""
    raw = (folder / "model.safetensors").read_bytes()
    n = int.from_bytes(raw[:8], "little")
    text = edit(raw[8:8 + n].decode()).encode()
    (folder / "model.safetensors").write_bytes(len(text).to_bytes(8, "little") + text + raw[8 + n:])


def _first_tensor(header, change):
    h = json.loads(header)
    name = next(k for k in h if k != "__metadata__")
    change(h, name)
    return json.dumps(h)


MALFORMED = {  # each made the old code raise TypeError, KeyError, AttributeError or ValueError
    "config a list": lambda f: (f / "config.json").write_text("[1, 2]"),
    "network missing": lambda f: _edit_config(f, lambda c: {k: v for k, v in c.items() if k != "network"}),
    "network a string": lambda f: _edit_config(f, lambda c: {**c, "network": "mlp"}),
    "hidden a string": lambda f: _edit_config(f, lambda c: {**c, "network": {**c["network"], "hidden": "wide"}}),
    "hidden -4": lambda f: _edit_config(f, lambda c: {**c, "network": {**c["network"], "hidden": -4}}),
    "conditioning missing": lambda f: _edit_config(f, lambda c: {k: v for k, v in c.items() if k != "conditioning"}),
    "conditioning kind vector": lambda f: _edit_config(f, lambda c: {**c, "conditioning": {"kind": "vector"}}),
    "num_classes a string": lambda f: _edit_config(f, lambda c: {**c, "conditioning": {"kind": "classes",
                                                                                       "num_classes": "2"}}),
    "schedule null": lambda f: _edit_config(f, lambda c: {**c, "schedule": None}),
    "betas missing": lambda f: _edit_config(f, lambda c: {**c, "schedule": {"kind": "linear"}}),
    "betas of strings": lambda f: _edit_config(f, lambda c: {**c, "schedule": {**c["schedule"], "betas": ["a"]}}),
    "unknown schedule field": lambda f: _edit_config(f, lambda c: {**c, "schedule": {**c["schedule"], "colour": 1}}),
    "weights header a list": lambda f: _edit_header(f, lambda h: "[1]"),
    "tensor without dtype": lambda f: _edit_header(f, lambda h: _first_tensor(h, lambda d, k: d[k].pop("dtype"))),
    "shape a string": lambda f: _edit_header(f, lambda h: _first_tensor(h, lambda d, k: d[k].update(shape="3"))),
    "three offsets": lambda f: _edit_header(f, lambda h: _first_tensor(
        h, lambda d, k: d[k].update(data_offsets=d[k]["data_offsets"] + [0]))),
    "nine dimensions": lambda f: _edit_header(f, lambda h: _first_tensor(
        h, lambda d, k: d[k].update(shape=[1] * 8 + d[k]["shape"][:1]))),
    "duplicate key": lambda f: _edit_header(f, lambda h: h[:-1] + ',"__metadata__":{}}'),
    "metadata of numbers": lambda f: _edit_header(f, lambda h: _first_tensor(
        h, lambda d, k: d.update(__metadata__={"x": 1}))),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_exports_raise_the_format_error(trained, tmp_path, case):
    model, _ = trained
    model.export(tmp_path)
    MALFORMED[case](tmp_path)
    with pytest.raises(sd.FormatError):
        sd.Model.from_export(tmp_path)


def test_a_damaged_weight_fails_the_checksum(trained, tmp_path):
    model, _ = trained
    model.export(tmp_path)
    raw = bytearray((tmp_path / "model.safetensors").read_bytes())
    raw[-3] ^= 0x10  # a bit of the last weight: still a finite float
    (tmp_path / "model.safetensors").write_bytes(bytes(raw))
    with pytest.raises(sd.FormatError, match="CRC-32C"):
        sd.Model.from_export(tmp_path)


def test_crc32c_matches_the_library_and_the_standard_vector(trained, tmp_path):
    """The package's CRC-32C (lanes joined by CRC linearity) against the published check value
    and against the checksum the library wrote into a checkpoint."""
    model, _ = trained
    assert _safetensors.crc32c(b"123456789") == 0xE3069283
    model.save(tmp_path / "ckpt.safetensors")
    raw = (tmp_path / "ckpt.safetensors").read_bytes()
    n = int.from_bytes(raw[:8], "little")
    stored = json.loads(raw[8:8 + n])["__metadata__"]["data_crc32c"]
    assert len(raw) - 8 - n > 4096, "more than one lane"
    assert f"{_safetensors.crc32c(raw[8 + n:]):08x}" == stored
    assert _safetensors.crc32c(raw[8 + n + 5000:], _safetensors.crc32c(raw[8 + n:8 + n + 5000])) == int(stored, 16)


# ---- Issue 21 item 5: every model kind round-trips through the export -------------------------
# Before: a v- or x0-model was exported as "epsilon" (Model.from_export then read its v as ε:
# samples of std ~125), a learned-variance model exported but loaded nowhere (its 2C-channel
# readout did not fit), and vector, sequence and token models were refused at export.

TINY_UNET = sd.UNetConfig(channels=2, height=4, width=4, base_channels=8, channel_mult=(1, 2), res_blocks=1,
                          attention_levels=(1,), attention_heads=2, groups=4, cross_attention_levels=(0,))
MLP_NET = dict(data_dim=3, hidden=16, depth=2, time_embed_dim=8)
KINDS = {  # name: (Model keywords, the condition of a batch of n rows)
    "v": (dict(MLP_NET, prediction_target="v"), None),
    "x0": (dict(MLP_NET, prediction_target="x0"), None),
    "learned_variance": (dict(MLP_NET, learned_variance=True, loss_weighting="uniform"), None),
    "classes": (dict(MLP_NET, cond=sd.Conditioning.classes(3)), lambda n: np.arange(n) % 3),
    "vector": (dict(MLP_NET, cond=sd.Conditioning.vector(4)),
               lambda n: np.random.default_rng(1).normal(size=(n, 4)).astype(np.float32)),
    "sequence": (dict(MLP_NET, cond=sd.Conditioning.sequence(5, 3)),
                 lambda n: np.random.default_rng(2).normal(size=(n, 3, 5)).astype(np.float32)),
    "tokens": (dict(MLP_NET, cond=sd.Conditioning.tokens(9, 4, 6)),
               lambda n: np.random.default_rng(3).integers(0, 9, size=(n, 4))),
    "unet_tokens_v_learned_variance": (dict(network=TINY_UNET, cond=sd.Conditioning.tokens(9, 4, 6),
                                            prediction_target="v", learned_variance=True),
                                       lambda n: np.random.default_rng(4).integers(0, 9, size=(n, 4))),
    "unet_vector_x0": (dict(network=TINY_UNET, cond=sd.Conditioning.vector(4), prediction_target="x0"),
                       lambda n: np.random.default_rng(5).normal(size=(n, 4)).astype(np.float32)),
    "signal_unet_sequence": (dict(network=sd.UNetConfig.signal(8, channels=1, base_channels=8, channel_mult=(1, 2),
                                                               res_blocks=1, attention_levels=(1,), groups=4,
                                                               cross_attention_levels=(1,)),
                                  cond=sd.Conditioning.sequence(5, 3), learned_variance=True),
                             lambda n: np.random.default_rng(6).normal(size=(n, 3, 5)).astype(np.float32)),
}

HAS_TEXT_ENCODER = "encoder_layers" in {f.name for f in dataclasses.fields(sd.Conditioning)}
needs_text_encoder = pytest.mark.skipif(not HAS_TEXT_ENCODER, reason="this library's token conditioning has no "
                                        "text encoder (Conditioning.encoder_layers, branch prompts)")
if HAS_TEXT_ENCODER:
    KINDS["tokens_text_encoder"] = (dict(MLP_NET, cond=sd.Conditioning.tokens(9, 4, 8, encoder_layers=2, encoder_heads=2)),
                                    lambda n: np.random.default_rng(7).integers(0, 9, size=(n, 4)))
    KINDS["unet_tokens_text_encoder"] = (dict(network=TINY_UNET, prediction_target="v",
                                              cond=sd.Conditioning.tokens(9, 4, 8, encoder_layers=1, encoder_heads=2)),
                                         lambda n: np.random.default_rng(8).integers(0, 9, size=(n, 4)))


def trained_kind(schedule, name, steps=6):
    """A model of KINDS[name] after a few training steps (every zero-initialised layer moved,
    EMA and live weights apart), its data batch and conditions."""
    options, make_cond = KINDS[name]
    model = sd.Model(schedule, learning_rate=1e-2, seed=11, label_dropout=0.3, **options)
    x = np.random.default_rng(0).normal(size=(8, *model.sample_shape)).astype(np.float32)
    cond = None if make_cond is None else make_cond(8)
    for _ in range(steps):
        model.train_step(x, cond)
    return model, cond


@pytest.mark.parametrize("name", sorted(KINDS))
def test_every_kind_round_trips_through_the_export(linear100, tmp_path, name):
    model, cond = trained_kind(linear100, name)
    with model:
        model.export(tmp_path)
        config = json.loads((tmp_path / "config.json").read_text())
        train = model.train_config
        assert config["prediction"] == {"eps": "epsilon", "x0": "sample", "v": "v_prediction"}[train.prediction_target]
        assert config["learned_variance"] is train.learned_variance
        shape = list(model.sample_shape)
        assert config["output_shape"] == ([2 * shape[0]] + shape[1:] if train.learned_variance else shape)
        with sd.Model.from_export(tmp_path) as again:
            # config: network, conditioning, objective and schedule, exactly
            assert again.network == model.network and again.conditioning == model.conditioning
            assert (again.train_config.prediction_target, again.train_config.learned_variance) == \
                (train.prediction_target, train.learned_variance)
            with again.schedule as s, model.schedule as s0:
                np.testing.assert_array_equal(s.betas, s0.betas)
            # parameters: bit for bit, live and EMA both the exported EMA weights
            ours = sd._export.model_weights(model, use_ema=True)
            for use_ema in (True, False):
                theirs = sd._export.model_weights(again, use_ema)
                assert theirs.keys() == ours.keys()
                assert all(np.array_equal(theirs[k], ours[k]) for k in ours)
            # samples: the same bits, guided where there is a condition
            n = 4
            c = None if cond is None else cond[:n]
            guidance = 1.0 if c is None else 2.5
            options = dict(seed=3, cond=c, guidance_scale=guidance)
            variance = "learned" if train.learned_variance else "beta"
            a = model.sample(n, variance=variance, **options)
            b = again.sample(n, variance=variance, **options)
            np.testing.assert_array_equal(b, a)
            assert np.isfinite(a).all()
            if c is not None:  # the condition reaches the network: a negative control
                assert not np.array_equal(again.sample(n, seed=3, variance=variance), b)


def test_from_export_refuses_a_recipe_with_another_objective(linear100, tmp_path):
    model, _ = trained_kind(linear100, "v", steps=1)
    with model:
        model.export(tmp_path)
    with pytest.raises(sd.InvalidArgumentError, match="predicts 'v'"):
        sd.Model.from_export(tmp_path, train=sd.TrainConfig(learning_rate=1e-4))  # prediction_target "eps"
    with sd.Model.from_export(tmp_path, train=sd.TrainConfig(learning_rate=1e-4, prediction_target="v")) as again:
        assert again.train_config.learning_rate == 1e-4 and again.train_config.prediction_target == "v"


def test_a_version_1_folder_still_loads_as_an_epsilon_model(trained, tmp_path):
    model, x = trained
    model.export(tmp_path)
    _edit_config(tmp_path, lambda c: {**{k: v for k, v in c.items() if k not in ("learned_variance", "output_shape")},
                                      "format_version": 1,
                                      "conditioning": {"kind": "classes", "num_classes": 2, "null_label": 2}})
    with sd.Model.from_export(tmp_path) as again:
        assert again.conditioning == model.conditioning and again.train_config.prediction_target == "eps"
        np.testing.assert_array_equal(again.predict(x, 9, labels=[1] * 32), model.predict(x, 9, labels=[1] * 32))


@pytest.mark.parametrize("edit, message", [
    (lambda c: {**c, "prediction": "score"}, "prediction must be one of"),
    (lambda c: {**c, "learned_variance": "yes"}, "learned_variance must be true or false"),
    (lambda c: {**c, "conditioning": {**c["conditioning"], "colour": 1}}, "unknown fields \\['colour'\\]"),
    (lambda c: {**c, "conditioning": {**c["conditioning"], "kind": "pictures"}}, "conditioning must be of kind"),
])
def test_a_bad_objective_or_conditioning_is_a_format_error(trained, tmp_path, edit, message):
    model, _ = trained
    model.export(tmp_path)
    _edit_config(tmp_path, edit)
    with pytest.raises(sd.FormatError, match=message):
        sd.Model.from_export(tmp_path)


@needs_text_encoder
def test_the_text_encoder_is_exported(linear100, tmp_path):
    """Its weights (context.encoder.*) and shape (encoder_layers, encoder_heads) are in the folder."""
    model, _ = trained_kind(linear100, "tokens_text_encoder", steps=1)
    with model:
        model.export(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["conditioning"]["encoder_layers"] == 2 and config["conditioning"]["encoder_heads"] == 2
    weights = sd._export.read_weights(tmp_path)
    assert {"context.encoder.0.attn.qkv.weight", "context.encoder.1.mlp.fc2.bias", "context.encoder.norm.weight"} \
        <= weights.keys()
