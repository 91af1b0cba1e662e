"""Conditioning on vectors from Python: Conditioning.vector(dim), cond= on fit, train_step,
predict, sample and nll (labels= stays an alias for class labels), guidance against the
learned null vector, checkpoints, and bad shapes refused with clear errors."""

from __future__ import annotations

import numpy as np
import pytest

import swiftddpm as sd

CENTERS = np.array([[-2.0, 0.0], [2.0, 0.0], [0.0, 2.0]], dtype=np.float32)


def vectors_for(which: np.ndarray) -> np.ndarray:
    """A 4-float condition per row: the one-hot of its cluster, then a constant."""
    v = np.zeros((len(which), 4), dtype=np.float32)
    v[np.arange(len(which)), which] = 1
    v[:, 3] = 0.5
    return v


@pytest.fixture(scope="module")
def trained():
    """An MLP trained to place points at the centre its condition vector names."""
    rng = np.random.default_rng(0)
    which = rng.integers(0, 3, 3000)
    data = CENTERS[which] + 0.15 * rng.standard_normal((3000, 2)).astype(np.float32)
    with sd.NoiseSchedule.linear(100, scale_to_steps=True) as schedule:
        model = sd.Model(schedule, data_dim=2, hidden=64, depth=2, cond=sd.Conditioning.vector(4), seed=3)
    losses = model.fit(data, steps=1500, batch_size=128, cond=vectors_for(which), seed=0, progress=False)
    yield model, losses
    model.close()


def test_the_model_knows_its_conditioning(trained):
    model, losses = trained
    assert model.conditioning == sd.Conditioning.vector(4)
    assert model.conditioning.kind == "vector" and model.conditioning.dim == 4
    assert np.isfinite(losses).all() and losses[-100:].mean() < losses[:100].mean()


def test_samples_follow_their_vectors(trained):
    model, _ = trained
    which = np.arange(60) % 3
    x = model.sample(60, cond=vectors_for(which), method="ddim", steps=25, seed=1, guidance_scale=2.0)
    nearest = np.argmin(((x[:, None, :] - CENTERS[None]) ** 2).sum(-1), axis=1)
    agreement = (nearest == which).mean()
    assert agreement >= 0.9, agreement
    # One (dim,) vector is repeated for every row.
    one = model.sample(10, cond=vectors_for(np.array([2]))[0], method="ddim", steps=25, seed=2)
    assert (np.argmin(((one[:, None, :] - CENTERS[None]) ** 2).sum(-1), axis=1) == 2).mean() >= 0.9


def test_guidance_mixes_with_the_null_vector(trained):
    model, _ = trained
    rng = np.random.default_rng(5)
    x = rng.standard_normal((6, 2)).astype(np.float32)
    v = vectors_for(np.arange(6) % 3)
    cond = model.predict(x, 40, cond=v)
    uncond = model.predict(x, 40)  # no condition: the learned null vector
    assert np.abs(cond - uncond).max() > 1e-3
    np.testing.assert_allclose(model.predict(x, 40, cond=v, guidance_scale=0.0), uncond, atol=1e-6)
    for w in (3.0, -0.5):
        np.testing.assert_allclose(model.predict(x, 40, cond=v, guidance_scale=w), uncond + w * (cond - uncond),
                                   atol=2e-5)


def test_nll_takes_vectors(trained):
    model, _ = trained
    x0 = CENTERS[[0, 1, 2]]
    right = model.nll(x0, cond=vectors_for(np.array([0, 1, 2])), seed=1).total
    wrong = model.nll(x0, cond=vectors_for(np.array([1, 2, 0])), seed=1).total
    assert np.isfinite(right).all() and right.mean() < wrong.mean()


def test_checkpoint_keeps_the_conditioning(trained, tmp_path):
    model, _ = trained
    path = tmp_path / "vector.safetensors"
    model.save(path)
    with sd.Model.load(path) as loaded:
        assert loaded.conditioning == sd.Conditioning.vector(4)
        x = np.ones((3, 2), dtype=np.float32)
        v = vectors_for(np.arange(3))
        np.testing.assert_array_equal(loaded.predict(x, 10, cond=v, guidance_scale=2),
                                      model.predict(x, 10, cond=v, guidance_scale=2))


def test_export_keeps_vector_conditioning(trained, tmp_path):
    """Issue 21 item 5: export refused vector models; now they round-trip (test_export.py has every kind)."""
    model, _ = trained
    model.export(tmp_path / "export")
    with sd.Model.from_export(tmp_path / "export") as again:
        assert again.conditioning == sd.Conditioning.vector(4)
        x = np.ones((3, 2), dtype=np.float32)
        v = vectors_for(np.arange(3))
        np.testing.assert_array_equal(again.predict(x, 10, cond=v, guidance_scale=2),
                                      model.predict(x, 10, cond=v, guidance_scale=2))


def test_bad_conditions_are_refused(trained):
    model, _ = trained
    x = np.zeros((3, 2), dtype=np.float32)
    with pytest.raises(sd.ShapeError, match=r"cond must have shape \(3, 4\)"):
        model.train_step(x, cond=np.zeros((3, 5), dtype=np.float32))
    with pytest.raises(sd.ShapeError, match=r"cond must have shape \(3, 4\)"):
        model.predict(x, 5, cond=np.zeros((2, 4)))
    with pytest.raises(sd.ShapeError, match=r"cond must have shape \(7, 4\)"):
        model.sample(7, cond=np.zeros((3, 4)))
    with pytest.raises(sd.NonFiniteError, match="conditioning vectors"):
        model.predict(x, 5, cond=np.full((3, 4), np.nan))
    with pytest.raises(TypeError, match="numbers"):
        model.predict(x, 5, cond=np.array([["a"] * 4] * 3))
    with pytest.raises(sd.InvalidArgumentError, match="not both"):
        model.predict(x, 5, cond=np.zeros((3, 4)), labels=[0, 1, 2])
    with pytest.raises(sd.ShapeError, match=r"cond must have shape \(3000, 4\)"):
        model.fit(np.zeros((3000, 2), dtype=np.float32), steps=1, cond=np.zeros((3000, 3)), progress=False)
    with pytest.raises(sd.InvalidArgumentError, match="dim must be >= 1"):
        with sd.NoiseSchedule.linear(10) as s:
            sd.Model(s, data_dim=2, cond=sd.Conditioning.vector(0))


def test_labels_stay_an_alias_and_vectors_do_not_fit_a_class_model():
    with sd.NoiseSchedule.linear(20) as s:
        model = sd.Model(s, data_dim=2, hidden=16, depth=1, cond=sd.Conditioning.classes(3), seed=0)
    x = np.zeros((3, 2), dtype=np.float32)
    a = model.predict(x, 5, labels=[0, 1, 2], use_ema=False)
    np.testing.assert_array_equal(model.predict(x, 5, cond=[0, 1, 2], use_ema=False), a)
    np.testing.assert_array_equal(model.predict(x, 5, [0, 1, 2], use_ema=False), a)
    model.train_step(x, cond=np.array([0, 1, 2]))
    model.train_step(x, labels=np.array([0, 1, 2]))
    with pytest.raises(sd.InvalidArgumentError, match="not vectors"):
        model.predict(x, 5, cond=np.zeros((3, 4), dtype=np.float32))
    model.close()
    with sd.NoiseSchedule.linear(20) as s:
        plain = sd.Model(s, data_dim=2, hidden=16, depth=1, seed=0)
    with pytest.raises(sd.InvalidArgumentError, match="unconditional"):
        plain.train_step(x, cond=[0, 1, 2])
    plain.close()


def test_vector_conditioned_unet_trains_and_samples():
    net = sd.UNetConfig(channels=1, height=8, width=8, base_channels=8, channel_mult=(1, 2), res_blocks=1,
                        attention_levels=(), attention_heads=1, groups=4, time_embed_dim=8)
    with sd.NoiseSchedule.linear(20) as s:
        model = sd.Model(s, network=net, cond=sd.Conditioning.vector(3), seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 1, 8, 8)).astype(np.float32)
    v = rng.standard_normal((4, 3)).astype(np.float32)
    assert np.isfinite(model.train_step(x, cond=v))
    out = model.sample(4, cond=v, method="ddim", steps=5, guidance_scale=2.0)
    assert out.shape == (4, 1, 8, 8) and np.isfinite(out).all()
    model.close()


def test_tokens_condition_the_mlp():
    """Token ids (0 = padding) name the centre: the MLP reads their pooled embedding."""
    rng = np.random.default_rng(1)
    which = rng.integers(0, 3, 3000)
    data = CENTERS[which] + 0.15 * rng.standard_normal((3000, 2)).astype(np.float32)
    # "word" ids 1..3 name the centre, 4 is a filler; padding 0 at the end
    tokens = np.zeros((3000, 4), dtype=np.int32)
    tokens[:, 0] = 4
    tokens[:, 1] = which + 1
    with sd.NoiseSchedule.linear(100, scale_to_steps=True) as schedule:
        model = sd.Model(schedule, data_dim=2, hidden=64, depth=2, seed=4,
                         cond=sd.Conditioning.tokens(vocab_size=5, max_length=4, dim=8))
    assert model.conditioning == sd.Conditioning.tokens(5, 4, dim=8)
    model.fit(data, steps=1500, batch_size=128, cond=tokens, seed=0, progress=False)
    want = np.arange(60) % 3
    prompts = np.zeros((60, 4), dtype=np.int32)
    prompts[:, 0], prompts[:, 1] = 4, want + 1
    x = model.sample(60, cond=prompts, method="ddim", steps=25, seed=1, guidance_scale=2.0)
    nearest = np.argmin(((x[:, None, :] - CENTERS[None]) ** 2).sum(-1), axis=1)
    assert (nearest == want).mean() >= 0.9, (nearest == want).mean()
    # All-padding rows are the null condition: equal to no condition at all.
    xt = rng.standard_normal((3, 2)).astype(np.float32)
    np.testing.assert_allclose(model.predict(xt, 30, cond=np.zeros((3, 4), dtype=np.int32)), model.predict(xt, 30), atol=1e-6)
    with pytest.raises(sd.InvalidArgumentError, match="vocab_size"):
        model.predict(xt, 30, cond=np.full((3, 4), 5))
    with pytest.raises(sd.ShapeError, match=r"cond must have shape \(3, 4\)"):
        model.predict(xt, 30, cond=np.zeros((3, 5), dtype=np.int32))
    with pytest.raises(TypeError, match="integer token ids"):
        model.predict(xt, 30, cond=np.zeros((3, 4), dtype=np.float32))
    with pytest.raises(sd.InvalidArgumentError, match="length"):
        model.predict(xt, 30, cond=prompts[:3], lengths=[1, 5, 2])
    model.close()


def test_sequences_with_lengths():
    with sd.NoiseSchedule.linear(20) as s:
        model = sd.Model(s, data_dim=2, hidden=16, depth=1, seed=0, cond=sd.Conditioning.sequence(dim=3, max_length=4))
    rng = np.random.default_rng(2)
    x = rng.standard_normal((5, 2)).astype(np.float32)
    ctx = rng.standard_normal((5, 4, 3)).astype(np.float32)
    assert np.isfinite(model.train_step(x, cond=ctx, lengths=[4, 1, 2, 3, 0]))
    model.fit(x, steps=3, batch_size=4, cond=ctx, lengths=[4, 1, 2, 3, 0], progress=False)
    # Positions past a row's length are not read; length 0 is the null condition.
    moved = ctx.copy()
    moved[1, 1:] += 10
    lengths = [4, 1, 2, 3, 0]
    np.testing.assert_array_equal(model.predict(x, 5, cond=ctx, lengths=lengths, use_ema=False),
                                  model.predict(x, 5, cond=moved, lengths=lengths, use_ema=False))
    np.testing.assert_array_equal(model.predict(x, 5, cond=ctx, lengths=[0] * 5, use_ema=False),
                                  model.predict(x, 5, use_ema=False))
    out = model.sample(5, cond=ctx, lengths=lengths, method="ddim", steps=5, guidance_scale=3.0)
    assert out.shape == (5, 2) and np.isfinite(out).all()
    with pytest.raises(sd.ShapeError, match=r"\(5, 4, 3\)"):
        model.predict(x, 5, cond=ctx[:, :3])
    with pytest.raises(sd.NonFiniteError, match="context"):
        model.predict(x, 5, cond=np.full((5, 4, 3), np.inf, dtype=np.float32))
    with pytest.raises(sd.InvalidArgumentError, match="lengths= is for"):
        with sd.NoiseSchedule.linear(20) as s2:
            with sd.Model(s2, data_dim=2, cond=sd.Conditioning.vector(3)) as v:
                v.predict(x, 5, cond=np.zeros((5, 3)), lengths=[1] * 5)
    with pytest.raises(sd.InvalidArgumentError, match="cross-attention level 3"):
        with sd.NoiseSchedule.linear(20) as s3:
            sd.Model(s3, network=sd.UNetConfig(channels=1, height=8, width=8, base_channels=8, channel_mult=(1,),
                                               groups=4, attention_levels=(), cross_attention_levels=(3,)),
                     cond=sd.Conditioning.sequence(3, 4))
    model.close()


@pytest.mark.parametrize("encoder_layers", [0, 2])
def test_token_conditioned_unet_with_cross_attention(tmp_path, encoder_layers):
    net = sd.UNetConfig(channels=1, height=8, width=8, base_channels=8, channel_mult=(1, 2), res_blocks=1,
                        attention_levels=(), cross_attention_levels=(0, 1), attention_heads=2, groups=4, time_embed_dim=8)
    cond = sd.Conditioning.tokens(vocab_size=7, max_length=5, dim=8, encoder_layers=encoder_layers)
    assert (cond.encoder_layers, cond.encoder_heads) == ((2, 4) if encoder_layers else (0, 0))
    with sd.NoiseSchedule.linear(20) as s:
        model = sd.Model(s, network=net, cond=cond, seed=0)
    assert model.network.cross_attention_levels == (0, 1) and model.conditioning == cond
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 1, 8, 8)).astype(np.float32)
    ids = np.array([[1, 2, 0, 0, 0], [3, 0, 0, 0, 0], [0, 0, 0, 0, 0], [6, 5, 4, 3, 2]], dtype=np.int32)
    losses = [model.train_step(x, cond=ids) for _ in range(3)]
    assert np.isfinite(losses).all()
    out = model.sample(4, cond=ids, method="ddim", steps=4, guidance_scale=3.0)
    assert out.shape == (4, 1, 8, 8) and np.isfinite(out).all()
    model.save(tmp_path / "tokens-unet.safetensors")
    with sd.Model.load(tmp_path / "tokens-unet.safetensors") as loaded:
        assert loaded.network == model.network and loaded.conditioning == model.conditioning
        np.testing.assert_array_equal(loaded.predict(x, 3, cond=ids, guidance_scale=2),
                                      model.predict(x, 3, cond=ids, guidance_scale=2))
    # A full-length caption (row 3) gets length max_length: its last word is read.
    full = model.predict(x, 3, cond=ids, use_ema=False)
    np.testing.assert_array_equal(full, model.predict(x, 3, cond=ids, lengths=[2, 1, 0, 5], use_ema=False))
    cut = model.predict(x, 3, cond=ids, lengths=[2, 1, 0, 4], use_ema=False)
    np.testing.assert_array_equal(cut[:3], full[:3])
    assert np.abs(cut[3] - full[3]).max() > 1e-6
    # The cross-attention maps: encoder level 0 (8×8), level 1 (4×4), middle, decoder 1, 1, 0, 0.
    assert model.cross_attention_layers == [(8, 8), (4, 4), (4, 4), (4, 4), (4, 4), (8, 8), (8, 8)]
    for layer, (h, w) in enumerate(model.cross_attention_layers):
        maps = model.cross_attention(x, 3, layer, cond=ids, use_ema=False)
        assert maps.shape == (4, h, w, 5)
        lengths = np.array([2, 1, 1, 5])  # the all-padding row is the null context, one vector long
        inside = np.arange(5)[None, :] < lengths[:, None]
        np.testing.assert_allclose(maps.sum(-1), 1, atol=1e-5)
        assert (maps.transpose(0, 3, 1, 2)[~inside] == 0).all() and (maps[:, :, :, 0][lengths == 1] == 1).all()
    assert maps[3].std(axis=(0, 1)).max() > 0, "pixels differ in what they attend to"
    with pytest.raises(sd.InvalidArgumentError, match="layer"):
        model.cross_attention(x, 3, 7, cond=ids)
    model.close()


def _network_metadata(path) -> dict:
    """The "network" JSON a checkpoint stores in its safetensors header."""
    import json
    raw = open(path, "rb").read()
    header = json.loads(raw[8:8 + int.from_bytes(raw[:8], "little")])
    return json.loads(header["__metadata__"]["network"])


def test_cross_attention_positions(tmp_path):
    def make(positions):
        net = sd.UNetConfig(channels=1, height=8, width=8, base_channels=8, channel_mult=(1, 2), res_blocks=1,
                            attention_levels=(), cross_attention_levels=(0, 1), attention_heads=2, groups=4,
                            time_embed_dim=8, cross_attention_positions=positions)
        with sd.NoiseSchedule.linear(20) as s:
            return sd.Model(s, network=net, cond=sd.Conditioning.tokens(vocab_size=7, max_length=5, dim=8), seed=0)

    assert sd.UNetConfig().cross_attention_positions is False
    assert sd.UNetConfig(cross_attention_positions=True).to_c().cross_attention_positions == 1
    with pytest.raises(sd.InvalidArgumentError, match="cross_attention_positions"):
        sd.UNetConfig(height=8, width=8, cross_attention_positions=1).to_c()
    plain, placed = make(False), make(True)
    assert placed.network.cross_attention_positions and not plain.network.cross_attention_positions
    # One (C, H·W) table per cross-attention layer: C = 8 at 8×8, 16 at 4×4.
    sizes = placed.cross_attention_layers
    assert placed.num_parameters - plain.num_parameters == sum((8 if h == 8 else 16) * h * w for h, w in sizes)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 1, 8, 8)).astype(np.float32)
    ids = np.array([[1, 2, 0, 0, 0], [3, 0, 0, 0, 0], [0, 0, 0, 0, 0], [6, 5, 4, 3, 2]], dtype=np.int32)
    for model in (plain, placed):
        assert np.isfinite([model.train_step(x, cond=ids) for _ in range(3)]).all()
    placed.save(tmp_path / "placed.safetensors")
    plain.save(tmp_path / "plain.safetensors")
    assert _network_metadata(tmp_path / "placed.safetensors")["cross_attention_positions"] is True
    assert "cross_attention_positions" not in _network_metadata(tmp_path / "plain.safetensors"), "written only when on"
    with sd.Model.load(tmp_path / "placed.safetensors") as loaded:
        assert loaded.network == placed.network and loaded.num_parameters == placed.num_parameters
        np.testing.assert_array_equal(loaded.predict(x, 3, cond=ids, guidance_scale=2),
                                      placed.predict(x, 3, cond=ids, guidance_scale=2))
    # The 8×8 encoder layer of a fresh model: positions make alike pixels of a flat image
    # attend differently away from the borders, where nothing else tells them apart.
    flat = np.zeros((1, 1, 8, 8), np.float32)
    centre = placed.cross_attention(flat, 3, 0, cond=ids[3:], use_ema=False)[0, 2:6, 2:6]
    assert centre.std(axis=(0, 1)).max() > 1e-6
    plain_centre = plain.cross_attention(flat, 3, 0, cond=ids[3:], use_ema=False)[0, 2:6, 2:6]
    assert plain_centre.std(axis=(0, 1)).max() < 1e-6, "without positions the centre pixels are alike"
    plain.close()
    placed.close()


def test_text_encoder_shape_is_checked():
    with sd.NoiseSchedule.linear(20) as s:
        for layers, heads, match in [(1, 3, "encoder_heads"), (0, 2, "encoder_heads"), (-1, 0, "encoder_layers")]:
            cond = sd.Conditioning(kind="tokens", vocab_size=7, max_length=5, dim=8, encoder_layers=layers,
                                   encoder_heads=heads)
            with pytest.raises(sd.InvalidArgumentError, match=match):
                sd.Model(s, data_dim=2, cond=cond)
        with pytest.raises(sd.InvalidArgumentError, match="encoder_layers is 2 but kind is SEQUENCE"):
            sd.Model(s, data_dim=2, cond=sd.Conditioning(kind="sequence", dim=8, max_length=5, encoder_layers=2))
