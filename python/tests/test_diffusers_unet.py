"""diffusers' UNet2DModel, matched (issue 21), without torch or diffusers: each folder in
fixtures/diffusers/unets (made once by make_fixtures.py with diffusers 0.42: a small random
UNet2DModel per option combination, saved with save_pretrained) holds io.npz, the output
diffusers computed for fixed inputs, timesteps (and class labels). Loaded here, our forward
must give the same output within 1e-5 relative: a weight mapped to the wrong place, a
transposed qkv, a wrong padding, sinusoid or ε moves it by far more (see the negative controls).
The folders in unets_refused are configs we cannot express: refused, naming the field."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import swiftddpm as sd
from swiftddpm import _export, _safetensors
from swiftddpm import diffusers as sdd
from swiftddpm.config import UNetConfig

ROOT = Path(__file__).parent / "fixtures" / "diffusers"
MANIFEST = json.loads((ROOT / "manifest.json").read_text())
UNETS = [case["name"] for case in MANIFEST["unets"]]
REFUSED = [(case["name"], case["field"]) for case in MANIFEST["unets_refused"]]
TOLERANCE = 1e-5  # max |ours − theirs| / max |theirs|


def forward(model: sd.Model, io: dict) -> np.ndarray:
    """Our network's output for the fixture's rows (one call per row: each has its own t)."""
    rows = []
    for b in range(io["sample"].shape[0]):
        labels = io["class_labels"][b:b + 1] if "class_labels" in io else None
        rows.append(model.predict(io["sample"][b:b + 1], int(io["timesteps"][b]), labels, use_ema=False))
    return np.concatenate(rows)


def relative(ours: np.ndarray, theirs: np.ndarray) -> float:
    return float(np.abs(ours - theirs).max() / np.abs(theirs).max())


@pytest.mark.parametrize("name", UNETS)
def test_forward_equals_diffusers(name):
    io = dict(np.load(ROOT / "unets" / name / "io.npz"))
    with sd.Model.from_diffusers(ROOT / "unets" / name) as model:
        assert relative(forward(model, io), io["output"]) < TOLERANCE


def test_the_options_are_read():
    """The fixtures' configs become the options they name (the parity above checks their maths)."""
    config, cond, _ = sdd.read_unet_config(json.loads((ROOT / "unets" / "ddpm_cifar10_style" / "config.json").read_text()))
    assert (config.flip_sin_to_cos, config.freq_shift, config.norm_eps, config.downsample_padding) == (False, 1.0, 1e-6, 0)
    assert (config.base_channels, config.channel_mult, config.attention_levels, config.res_blocks) == (4, (1, 2, 2), (1,), 2)
    assert (config.attention_head_dim, config.attention_heads, config.time_embed_dim) == (0, 1, 4)
    config, cond, _ = sdd.read_unet_config(json.loads((ROOT / "unets" / "no_mid_attention_8x8" / "config.json").read_text()))
    assert not config.middle_attention and config.attention_head_dim == 2
    _, cond, _ = sdd.read_unet_config(json.loads((ROOT / "unets" / "class_embeddings_8x8" / "config.json").read_text()))
    assert (cond.kind, cond.num_classes) == ("classes", 3)


@pytest.mark.parametrize("option, value", [("flip_sin_to_cos", None), ("freq_shift", 0.0), ("norm_eps", 1e-3),
                                           ("downsample_padding", 1), ("attention_head_dim", 4)])
def test_each_option_changes_the_output(option, value, tmp_path):
    """Negative controls: the fixture of an option, loaded with that option changed, is off by
    far more than the tolerance (so the parity cannot pass with the option ignored)."""
    name = {"attention_head_dim": "attn_first_pad0_8x8", "downsample_padding": "attn_first_pad0_8x8"}.get(option,
                                                                                                         "ddpm_cifar10_style")
    folder = tmp_path / name
    shutil.copytree(ROOT / "unets" / name, folder)
    config = json.loads((folder / "config.json").read_text())
    config[option] = (not config[option]) if value is None else value
    (folder / "config.json").write_text(json.dumps(config))
    io = dict(np.load(folder / "io.npz"))
    with sd.Model.from_diffusers(folder) as model:
        assert relative(forward(model, io), io["output"]) > 10 * TOLERANCE


def test_a_swapped_weight_is_seen(tmp_path):
    """Negative control of the weight mapping: to_q and to_k exchanged moves the output."""
    folder = tmp_path / "u"
    shutil.copytree(ROOT / "unets" / "attn_both_shift1_16x16", folder)
    tensors, meta = _safetensors.read(folder / "diffusion_pytorch_model.safetensors")
    a, b = "mid_block.attentions.0.to_q.weight", "mid_block.attentions.0.to_k.weight"
    tensors[a], tensors[b] = tensors[b], tensors[a]
    _safetensors.write(folder / "diffusion_pytorch_model.safetensors", tensors, meta)
    io = dict(np.load(folder / "io.npz"))
    with sd.Model.from_diffusers(folder) as model:
        assert relative(forward(model, io), io["output"]) > 10 * TOLERANCE


def test_early_attention_names_are_read(tmp_path):
    """google/ddpm-cifar10-32's file names its attention weights query, key, value, proj_attn
    (diffusers renames them on load): the same model, the same output."""
    folder = tmp_path / "u"
    shutil.copytree(ROOT / "unets" / "attn_both_shift1_16x16", folder)
    file = folder / "diffusion_pytorch_model.safetensors"
    tensors, meta = _safetensors.read(file)
    old = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}
    renamed = {}
    for name, value in tensors.items():
        for new, early in old.items():
            if ".attentions." in name and f".{new}." in name:
                name = name.replace(f".{new}.", f".{early}.")
        renamed[name] = value
    assert "mid_block.attentions.0.proj_attn.weight" in renamed
    _safetensors.write(file, renamed, meta)
    io = dict(np.load(folder / "io.npz"))
    with sd.Model.from_diffusers(folder) as model:
        assert relative(forward(model, io), io["output"]) < TOLERANCE


@pytest.mark.parametrize("name, field", REFUSED)
def test_refused_configs_name_the_field(name, field):
    raw = json.loads((ROOT / "unets_refused" / name / "config.json").read_text())
    with pytest.raises(sd.InvalidArgumentError, match=field):
        sdd.read_unet_config(raw)


@pytest.mark.parametrize("field, value", [
    ("center_input_sample", True), ("mid_block_type", None), ("out_channels", 6), ("upsample_type", "resnet"),
    ("attention_head_dim", [2, 2]), ("down_block_types", ["AttnSkipDownBlock2D", "DownBlock2D"]),
    ("up_block_types", ["AttnUpBlock2D", "UpBlock2D"]), ("block_out_channels", [4, 6]), ("act_fn", "gelu"),
    ("attn_norm_num_groups", 1), ("mid_block_scale_factor", 2), ("time_embedding_dim", 12), ("sample_size", None),
    ("a_future_field", 1)])
def test_what_we_cannot_express_is_refused(field, value):
    raw = json.loads((ROOT / "unets" / "plain_8x8" / "config.json").read_text())
    raw[field] = value
    with pytest.raises(sd.InvalidArgumentError, match=field):
        sdd.read_unet_config(raw)


def test_an_unmapped_or_missing_weight_is_refused(tmp_path):
    folder = tmp_path / "u"
    shutil.copytree(ROOT / "unets" / "plain_8x8", folder)
    file = folder / "diffusion_pytorch_model.safetensors"
    tensors, meta = _safetensors.read(file)
    _safetensors.write(file, {**tensors, "mid_block.extra.weight": np.zeros(2, np.float32)}, meta)
    with pytest.raises(sd.InvalidArgumentError, match="mid_block.extra.weight"):
        sd.Model.from_diffusers(folder)
    del tensors["conv_out.bias"]
    _safetensors.write(file, tensors, meta)
    with pytest.raises(sd.InvalidArgumentError, match="conv_out.bias"):
        sd.Model.from_diffusers(folder)


def small_unet(**overrides) -> UNetConfig:
    options = dict(channels=3, height=8, width=8, base_channels=4, channel_mult=(1, 2), res_blocks=1,
                   attention_levels=(1,), groups=2, time_embed_dim=4, flip_sin_to_cos=True, norm_eps=1e-6,
                   downsample_padding=0, attention_head_dim=2)
    return UNetConfig(**{**options, **overrides})


@pytest.mark.parametrize("cond", [sd.Conditioning.none(), sd.Conditioning.classes(3)])
def test_export_then_import_is_bit_for_bit(cond, tmp_path):
    with sd.NoiseSchedule.cosine(200) as schedule, \
            sd.Model(schedule, network=small_unet(), cond=cond, train=sd.TrainConfig(prediction_target="v", seed=3)) as model:
        rng = np.random.default_rng(0)
        model.train_step(rng.standard_normal((4, 3, 8, 8)).astype(np.float32),
                         labels=np.array([0, 1, 2, 1]) if cond.kind == "classes" else None)
        folder = model.export_diffusers(tmp_path / "pipe")
        assert sorted(p.name for p in Path(folder).iterdir()) == ["model_index.json", "scheduler", "unet"]
        with sd.Model.from_diffusers(folder) as back:
            assert back.network == model.network and back.conditioning == model.conditioning
            assert back.train_config.prediction_target == "v"
            with model.schedule as a, back.schedule as b:
                np.testing.assert_allclose(b.betas, a.betas, rtol=1e-6)
            ours = _export.model_weights(model, use_ema=True)
            theirs = _export.model_weights(back, use_ema=True)
            assert ours.keys() == theirs.keys()
            for k in ours:
                assert np.array_equal(ours[k], theirs[k]), k
            x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
            labels = np.array([1, 3]) if cond.kind == "classes" else None  # 3: the null label
            assert np.array_equal(model.predict(x, 50, labels), back.predict(x, 50, labels))
        # written again over the same folder: replaced whole
        assert model.export_diffusers(folder) == folder


@pytest.mark.parametrize("network, cond, train, words", [
    (small_unet(height=1, width=8), sd.Conditioning.none(), sd.TrainConfig(), "1-D"),
    (small_unet(), sd.Conditioning.vector(5), sd.TrainConfig(), "vector"),
    (small_unet(), sd.Conditioning.none(), sd.TrainConfig(learned_variance=True), "learned variance"),
    (small_unet(time_embed_dim=8), sd.Conditioning.none(), sd.TrainConfig(), "time_embed_dim"),
    (small_unet(attention_head_dim=0, attention_heads=2, attention_levels=(0, 1)), sd.Conditioning.none(), sd.TrainConfig(), "attention_heads"),
    ("mlp", sd.Conditioning.none(), sd.TrainConfig(), "MLP"),
])
def test_export_refuses_what_diffusers_cannot_hold(network, cond, train, words, tmp_path):
    if network == "mlp":
        network = sd.MLPConfig(data_dim=4)
    with sd.NoiseSchedule.linear(100) as schedule, sd.Model(schedule, network=network, cond=cond, train=train) as model:
        with pytest.raises(sd.InvalidArgumentError, match=words):
            model.export_diffusers(tmp_path / "pipe")
    assert not (tmp_path / "pipe").exists()


def test_our_torch_export_refuses_the_diffusers_options(tmp_path):
    """swiftddpm.torch does not mirror the options: Model.export says so rather than write a
    folder its UNet would compute differently; a UNet without them still exports."""
    with sd.NoiseSchedule.linear(100) as schedule:
        with sd.Model(schedule, network=small_unet()) as model:
            with pytest.raises(sd.InvalidArgumentError, match="downsample_padding"):
                model.export(tmp_path / "ours")
        plain = small_unet(flip_sin_to_cos=False, norm_eps=1e-5, downsample_padding=1, attention_head_dim=0)
        with sd.Model(schedule, network=plain) as model:
            model.export(tmp_path / "ours")
