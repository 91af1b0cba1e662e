"""swiftddpm.torch against the engine: a model exported here and run by the torch module
predicts what Model.predict predicts (max |Δ| <= 1e-5), and weights exported from a torch
module predict here what they predict in torch. Needs PyTorch: skipped where it is absent
(`make test-torch` runs this file in make bench's venv, which has it).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import swiftddpm as sd  # noqa: E402
import swiftddpm.torch as sdt  # noqa: E402

TOL = 1e-5
T = 100


def torch_predict(net, x, t, labels=None):
    with torch.no_grad():
        tt = torch.full((x.shape[0],), t, dtype=torch.int64)
        lab = None if labels is None else torch.from_numpy(np.asarray(labels)).long()
        return net(torch.from_numpy(x), tt, lab).numpy()


def max_diff(model, net, x, labels=None, use_ema=True):
    """max |Δ| between Model.predict and the torch module over t = 0, 1, T/2, T-1, and the
    largest |ε̂| (to show the outputs are not trivially zero)."""
    worst = scale = 0.0
    for t in (0, 1, T // 2, T - 1):
        ours = model.predict(x, t, labels=labels, use_ema=use_ema)
        theirs = torch_predict(net, x, t, labels)
        worst = max(worst, float(np.abs(ours - theirs).max()))
        scale = max(scale, float(np.abs(theirs).max()))
    return worst, scale


MLP = dict(network=sd.MLPConfig(data_dim=5, hidden=32, depth=3, time_embed_dim=16))
UNET = dict(network=sd.UNetConfig(channels=2, height=8, width=8, base_channels=16, channel_mult=(1, 2),
                                  res_blocks=1, attention_levels=(1,), attention_heads=2, groups=4))


def trained(kind, classes=0, steps=20):
    """A model of `kind` after a few steps (so that EMA and live weights differ and every
    zero-initialised layer has moved), with its data batch and labels."""
    spec = MLP if kind == "mlp" else UNET
    cond = sd.Conditioning.classes(classes) if classes else None
    schedule = sd.NoiseSchedule.cosine(T)
    model = sd.Model(schedule, train=sd.TrainConfig(learning_rate=1e-2, seed=3), cond=cond, **spec)
    schedule.close()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, *model.sample_shape)).astype(np.float32)
    labels = (np.arange(16) % classes).astype(np.int32) if classes else None
    for _ in range(steps):
        model.train_step(x, labels)
    return model, x, labels


@pytest.mark.parametrize("kind,classes", [("mlp", 0), ("mlp", 3), ("unet", 0), ("unet", 3)])
@pytest.mark.parametrize("use_ema", [True, False])
def test_exported_model_predicts_the_same_in_torch(tmp_path, kind, classes, use_ema):
    model, x, labels = trained(kind, classes)
    with model:
        model.export(tmp_path, use_ema=use_ema)
        net = sdt.from_export(tmp_path)
        assert isinstance(net, sdt.ResidualMLP if kind == "mlp" else sdt.UNet) and not net.training
        worst, scale = max_diff(model, net, x, labels, use_ema=use_ema)
        print(f"\n{kind} K={classes} {'ema' if use_ema else 'live'}: Model.export -> torch, max |Δ| = {worst:.2e} "
              f"(max |ε̂| = {scale:.2f})")
        assert scale > 1e-2 and worst <= TOL
        if classes:  # the null label (no class) too
            worst, _ = max_diff(model, net, x, np.full(16, classes, np.int32), use_ema=use_ema)
            assert worst <= TOL
        # Negative control: the other set of weights (EMA vs live) differs well beyond TOL.
        other, _ = max_diff(model, net, x, labels, use_ema=not use_ema)
        assert other > 100 * TOL


def randomised(net, seed=0):
    """Every parameter of net redrawn (zero-initialised output convolutions included)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.5 / max(1.0, p[0].numel()) ** 0.5) + 0.01)
    return net


@pytest.mark.parametrize("kind,classes", [("mlp", 0), ("mlp", 4), ("unet", 0), ("unet", 4)])
def test_weights_exported_from_torch_predict_the_same_here(tmp_path, kind, classes):
    spec = (MLP if kind == "mlp" else UNET)["network"]
    net = randomised(sdt.network(spec, num_classes=classes, timesteps=T)).eval()
    with sd.NoiseSchedule.sigmoid(T) as schedule:
        sdt.export(net, tmp_path, schedule=schedule)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(8, *spec.sample_shape)).astype(np.float32)
    labels = (np.arange(8) % classes).astype(np.int32) if classes else None
    with sd.Model.from_export(tmp_path) as model:
        assert model.network == spec and model.step == 0
        with model.schedule as s:
            assert s.kind == "sigmoid" and s.num_timesteps == T
        for use_ema in (True, False):  # both sets of weights are the imported ones
            worst, scale = max_diff(model, net, x, labels, use_ema=use_ema)
            print(f"\n{kind} K={classes}: torch export -> Model, max |Δ| = {worst:.2e} (max |ε̂| = {scale:.2f})")
            assert scale > 1e-2 and worst <= TOL
        # Fine-tune here, export again, load in torch: the weights made the round trip.
        model.train_step(x, labels)
        model.export(tmp_path / "again", use_ema=False)
        net2 = sdt.from_export(tmp_path / "again")
        worst, _ = max_diff(model, net2, x, labels, use_ema=False)
        assert worst <= TOL


def test_round_trip_is_bit_exact_and_strict(tmp_path):
    model, x, _ = trained("unet")
    with model:
        model.export(tmp_path / "a")
        net = sdt.from_export(tmp_path / "a")
        sdt.export(net, tmp_path / "b")  # the schedule comes from the folder net was read from
        a = sd._export.read_weights(tmp_path / "a")
        b = sd._export.read_weights(tmp_path / "b")
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
        with sd.Model.from_export(tmp_path / "b") as again, model.schedule as s1, again.schedule as s2:
            assert np.array_equal(s1.betas, s2.betas)
            np.testing.assert_array_equal(again.predict(x, 7), model.predict(x, 7))
        state = net.state_dict()
        del state["out_conv.bias"]
        with pytest.raises(RuntimeError, match="out_conv.bias"):
            sdt.network(model.network).load_state_dict(state, strict=True)
        with pytest.raises(sd.InvalidArgumentError, match="out_conv.bias"):
            model.import_weights({k: v.numpy() for k, v in state.items()})


def test_bench_reference_is_the_package_module():
    # make bench's PyTorch reference uses these very classes (bench/workers.py).
    import importlib.util
    from pathlib import Path

    bench = Path(__file__).resolve().parents[2] / "bench"
    assert not (bench / "mlp_reference.py").exists() and not (bench / "unet_reference.py").exists()
    assert "swiftddpm.torch" in (bench / "workers.py").read_text()
    assert importlib.util.find_spec("swiftddpm.torch") is not None


def test_malformed_exports_raise_the_format_error_in_torch_too(tmp_path):
    """Issue 19: the same malformed folders as test_export.py's, through swiftddpm.torch."""
    from test_export import MALFORMED

    with sd.NoiseSchedule.linear(T) as schedule, sd.Model(schedule, **MLP) as model:
        for case in ("network a string", "num_classes a string", "betas missing", "tensor without dtype",
                     "nine dimensions", "duplicate key"):
            folder = tmp_path / case.replace(" ", "-")
            model.export(folder)
            MALFORMED[case](folder)
            with pytest.raises(sd.FormatError):
                sdt.from_export(folder)
        model.export(tmp_path / "extra")  # a tensor the config does not call for
        from swiftddpm import _safetensors
        tensors, meta = _safetensors.read(tmp_path / "extra" / "model.safetensors")
        _safetensors.write(tmp_path / "extra" / "model.safetensors", {**tensors, "extra": np.zeros(2, np.float32)}, meta)
        with pytest.raises(sd.FormatError, match="do not fit"):
            sdt.from_export(tmp_path / "extra")


# ---- Issue 21 item 5: every kind of model through the twin ------------------------------------
# Before: from_export could not load a learned-variance folder (out_proj/out_conv had C, not
# 2C, outputs), read a v- or x0-model as an ε-model, and the twin had no vector, sequence or
# token conditioning (their models could not even be exported).

def twin_output(net, x, t, cond=None, lengths=None):
    with torch.no_grad():
        tt = torch.full((x.shape[0],), t, dtype=torch.int64)
        c = None if cond is None else torch.from_numpy(np.asarray(cond))
        ln = None if lengths is None else torch.from_numpy(np.asarray(lengths)).long()
        return net(torch.from_numpy(x), tt, c, ln).numpy().astype(np.float64)


def learned_sigma2(v, schedule, t):
    """σ_t² of the learned variance's v: exp(frac log β_t + (1 − frac) log β̃_t), frac = (v + 1)/2,
    β̃_0 taken as β̃_1 in the log (float64)."""
    beta = np.asarray(schedule.betas, np.float64)
    abar = np.cumprod(1 - beta)
    abar_prev = np.concatenate([[1.0], abar[:-1]])
    tilde = (1 - abar_prev) / (1 - abar) * beta
    log_tilde = np.log(tilde[1] if t == 0 else tilde[t])
    frac = (v + 1) / 2
    return np.exp(frac * np.log(beta[t]) + (1 - frac) * log_tilde)


@pytest.mark.parametrize("name", ["v", "x0", "learned_variance", "classes", "vector", "sequence", "tokens",
                                  "unet_tokens_v_learned_variance", "unet_vector_x0", "signal_unet_sequence",
                                  "tokens_text_encoder", "unet_tokens_text_encoder"])
def test_every_kind_predicts_the_same_in_its_twin(tmp_path, name):
    from test_export import KINDS, trained_kind

    if name not in KINDS:
        pytest.skip("this library's token conditioning has no text encoder (Conditioning.encoder_layers, branch prompts)")

    with sd.NoiseSchedule.linear(T, scale_to_steps=True) as schedule:
        model, cond = trained_kind(schedule, name, steps=10)
    with model, model.schedule as s:
        model.export(tmp_path)
        net = sdt.from_export(tmp_path)
        target, learned = model.train_config.prediction_target, model.train_config.learned_variance
        assert net.prediction == {"eps": "epsilon", "x0": "sample", "v": "v_prediction"}[target]
        x = np.random.default_rng(7).normal(size=(8, *model.sample_shape)).astype(np.float32)
        C = model.sample_shape[0]
        lengths = None
        if model.conditioning.kind == "sequence":  # every length, 0 (the null context) included
            lengths = np.arange(8) % (model.conditioning.max_length + 1)
        if model.conditioning.kind == "tokens":  # padded rows: their lengths are derived from the zeros
            cond = cond.copy()
            cond[1, 2:] = 0
            cond[2, :] = 0
        worst = scale = 0.0
        for t in (0, 1, T // 2, T - 1):
            for c, ln in ((cond, lengths), (None, None)):  # the condition and the null condition
                out = twin_output(net, x, t, c, ln)
                assert out.shape == (8, (2 if learned else 1) * C, *model.sample_shape[1:])
                ours = model.predict(x, t, cond=c, lengths=ln, output=target)
                worst = max(worst, float(np.abs(out[:, :C] - ours).max()))
                scale = max(scale, float(np.abs(ours).max()))
                if learned:
                    sigma2 = model.predict(x, t, cond=c, lengths=ln, output="variance")
                    np.testing.assert_allclose(learned_sigma2(out[:, C:], s, t), sigma2, rtol=1e-4)
                if c is None:
                    continue
                # Negative control: the condition reaches the twin.
                assert np.abs(twin_output(net, x, t) - out).max() > 1e-4
        print(f"\n{name}: Model.export -> torch, max |Δ| = {worst:.2e} (max |{target}| = {scale:.2f})")
        assert scale > 1e-2 and worst <= TOL * max(1.0, scale)


@pytest.mark.parametrize("kind", ["mlp", "unet", "unet_text_encoder"])
def test_a_twin_of_every_kind_exports_to_a_model_here(tmp_path, kind):
    from test_export import HAS_TEXT_ENCODER

    if kind == "unet_text_encoder" and not HAS_TEXT_ENCODER:
        pytest.skip("this library's token conditioning has no text encoder (Conditioning.encoder_layers, branch prompts)")
    cond = sd.Conditioning.tokens(7, 3, 8, **({"encoder_layers": 2, "encoder_heads": 2} if kind == "unet_text_encoder"
                                              else {})) if kind != "mlp" else sd.Conditioning.vector(4)
    spec = (MLP if kind == "mlp" else UNET)["network"]
    if kind != "mlp":
        spec = sd.UNetConfig(**{**spec.__dict__, "cross_attention_levels": (0,)})
    net = randomised(sdt.network(spec, timesteps=T, cond=cond, learned_variance=True)).eval()
    with sd.NoiseSchedule.cosine(T) as schedule:
        sdt.export(net, tmp_path, schedule=schedule, prediction_target="v")
    rng = np.random.default_rng(3)
    x = rng.normal(size=(8, *spec.sample_shape)).astype(np.float32)
    if kind == "mlp":
        c = rng.normal(size=(8, 4)).astype(np.float32)
    else:
        c = rng.integers(1, 7, size=(8, 3))
        c[:3, 1:] = 0  # captions of one token: the masks matter
    with sd.Model.from_export(tmp_path) as model, model.schedule as s:
        assert model.conditioning == cond and model.train_config.prediction_target == "v"
        assert model.train_config.learned_variance
        for t in (0, T // 2, T - 1):
            out = twin_output(net, x, t, c)
            ours = model.predict(x, t, cond=c, output="v")
            scale = float(np.abs(ours).max())
            assert scale > 1e-2 and np.abs(out[:, :spec.sample_shape[0]] - ours).max() <= TOL * max(1.0, scale)
            np.testing.assert_allclose(learned_sigma2(out[:, spec.sample_shape[0]:], s, t),
                                       model.predict(x, t, cond=c, output="variance"), rtol=1e-4)
