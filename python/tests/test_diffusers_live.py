"""swiftddpm.diffusers against diffusers itself, live (issue 21): scheduler configs built in
diffusers (a grid wider than the committed fixtures) read here visit the same timesteps and
take the same steps; and our schedules written as configs load in diffusers to the same β and
timesteps. Needs torch and diffusers: skipped where they are absent (`make test-torch` runs it
in make bench's venv; `.bench-venv/bin/pip install diffusers` once there).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

import diffusers.schedulers.scheduling_ddpm as m  # noqa: E402

import swiftddpm as sd  # noqa: E402
from swiftddpm import diffusers as sdd  # noqa: E402

SHAPE = (2, 3, 2, 2)
STEP_TOL = 1e-5  # × (1 + |x|), as test_diffusers_schedulers.py, plus diffusers' rounding (`rounding`)


def rounding(schedule, timesteps) -> float:
    """The largest relative float32 error of diffusers' ᾱ and 1 − ᾱ at these timesteps: its
    cumprod of α = 1 − β rounded (2e-6 + 2^-24·Σ β/(1 − β)), and 1 − ᾱ formed in float32, whose
    cancellation costs 2^-24·ᾱ/(1 − ᾱ) (6e-4 at ᾱ_0 = 1 − 1e-4). Random model outputs (unlike the
    fixtures' smooth ε*) carry it into the steps: to ᾱ_0 (final_sigmas_type sigma_min,
    set_alpha_to_one false) and at cosine's ᾱ_999 = 2e-9 it passes 1e-5."""
    betas, ac = schedule.betas, schedule.alphas_cumprod
    e = 2e-6 + 2**-24 * np.cumsum(betas / (1 - betas))
    e_complement = e * ac / (1 - ac) + 2**-24
    ts = [t for t in timesteps if t >= 0]
    return float(max(max(e[t], e_complement[t]) for t in ts))


def configs():
    """(class, config) over the options that combine freely."""
    for spacing, prediction, schedule in itertools.product(
            ["leading", "trailing", "linspace"], ["epsilon", "sample", "v_prediction"],
            ["linear", "scaled_linear", "squaredcos_cap_v2"]):
        common = {"timestep_spacing": spacing, "prediction_type": prediction, "beta_schedule": schedule,
                  "steps_offset": 1 if spacing == "leading" else 0}
        if schedule == "scaled_linear":
            common.update(beta_start=0.00085, beta_end=0.012)
        yield "DDPMScheduler", {**common, "variance_type": "fixed_large" if spacing == "linspace" else "fixed_small",
                                "clip_sample": prediction != "sample"}
        yield "DDIMScheduler", {**common, "set_alpha_to_one": spacing != "trailing", "clip_sample": False}
        for algorithm, order in (("dpmsolver++", 3), ("sde-dpmsolver++", 2)):
            yield "DPMSolverMultistepScheduler", {**common, "algorithm_type": algorithm, "solver_order": order,
                                                  "final_sigmas_type": "sigma_min" if spacing == "trailing" else "zero"}


CASES = list(configs())


@pytest.mark.parametrize("cls_name, config", CASES, ids=[f"{c}-{i}" for i, (c, _) in enumerate(CASES)])
def test_live_config_steps_like_diffusers(cls_name, config, tmp_path):
    cls = getattr(diffusers, cls_name)
    theirs = cls.from_config(config)
    theirs.save_config(tmp_path)
    read = sdd.read_scheduler_config(tmp_path)
    steps = 20
    theirs.set_timesteps(steps)
    t = theirs.timesteps.numpy()
    T = theirs.config.num_train_timesteps
    with read.schedule as schedule:
        np.testing.assert_allclose(schedule.alphas_cumprod, theirs.alphas_cumprod.numpy(), rtol=1e-4)
        if cls_name == "DDIMScheduler" and config["timestep_spacing"] == "linspace":
            return  # diffusers' DDIM steps to t − T//S there, not to its next timestep (swiftddpm.diffusers)
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(SHAPE, generator=generator)
        eta = {"eta": 0.3} if cls_name == "DDIMScheduler" else {}
        with sd.Sampler(schedule, SHAPE[0], SHAPE[1:], steps=steps, **read.options, **eta) as ours:
            np.testing.assert_array_equal(ours.timesteps, t)
            for i, ti in enumerate(t):
                output = torch.randn(SHAPE, generator=generator) * 0.5
                noise = torch.randn(SHAPE, generator=generator)
                if cls_name == "DDPMScheduler":
                    theirs_noise = [noise]
                    original, m.randn_tensor = m.randn_tensor, lambda *a, **k: theirs_noise[0]
                    try:
                        result = theirs.step(output, int(ti), x).prev_sample
                    finally:
                        m.randn_tensor = original
                elif cls_name == "DDIMScheduler":
                    result = theirs.step(output, int(ti), x, eta=0.3, variance_noise=noise).prev_sample
                else:
                    kwargs = {"variance_noise": noise} if config["algorithm_type"].startswith("sde") else {}
                    result = theirs.step(output, int(ti), x, **kwargs).prev_sample
                ours_x, _ = ours.step(output.numpy(), x.numpy(), noise.numpy() if ours.step_adds_noise else None)
                expected = result.numpy()
                last = i == len(t) - 1
                if cls_name == "DDPMScheduler" and last and ti > 0 and read.options["variance"] == "beta":
                    expected = expected - np.sqrt(1 - float(theirs.alphas_cumprod[ti])) * noise.numpy()
                worst = np.max(np.abs(ours_x - expected) / (1 + np.abs(expected)))
                involved = list(t[max(0, i - 2):i + 2]) + ([0] if last else [])
                assert worst <= STEP_TOL + 4 * rounding(schedule, involved), (i, int(ti), worst)
                x = result


SCHEDULES = {
    "linear": lambda: sd.NoiseSchedule.linear(1000),
    "scaled_linear": lambda: sd.NoiseSchedule.scaled_linear(1000),
    "cosine": lambda: sd.NoiseSchedule.cosine(1000),
    "sigmoid_recipe": lambda: sd.NoiseSchedule.sigmoid(100),
    "custom": lambda: sd.NoiseSchedule.custom(np.linspace(1e-3, 0.05, 60) ** 1.1),
}


@pytest.mark.parametrize("kind", sorted(SCHEDULES))
@pytest.mark.parametrize("method", ["ddpm", "ddim", "dpm_solver++"])
def test_our_config_loads_in_diffusers(kind, method, tmp_path):
    """write_scheduler_config → diffusers' from_pretrained: the same β (to float32) and, with our
    default spacing written as trailing, the same timesteps when S divides T."""
    spacing = "dpm_linspace" if method == "dpm_solver++" else "default"
    with SCHEDULES[kind]() as schedule:
        sdd.write_scheduler_config(tmp_path, schedule, method=method, spacing=spacing)
        cls = {"ddpm": diffusers.DDPMScheduler, "ddim": diffusers.DDIMScheduler,
               "dpm_solver++": diffusers.DPMSolverMultistepScheduler}[method]
        theirs = cls.from_pretrained(tmp_path)
        # float32 β: a few float32 operations in diffusers (sigmoid: linspace, sigmoid, scale), ≤ 4 ulp
        np.testing.assert_allclose(theirs.betas.numpy(), schedule.betas, rtol=4 * 2**-23)
        S = 10
        theirs.set_timesteps(S)
        with sd.Sampler(schedule, 1, 1, method=method, steps=S, spacing=spacing) as ours:
            np.testing.assert_array_equal(ours.timesteps, theirs.timesteps.numpy())


# ---- UNet2DModel, both ways --------------------------------------------------------------------

# google/ddpm-cifar10-32's unet/config.json (the fields that differ from UNet2DModel's defaults),
# and the model diffusers' examples/unconditional_image_generation/train_unconditional.py builds
# (at --resolution 32). Built in diffusers with random weights: nothing is downloaded.
DDPM_CIFAR10 = {"sample_size": 32, "in_channels": 3, "out_channels": 3, "layers_per_block": 2,
                "block_out_channels": (128, 256, 256, 256), "attention_head_dim": None, "norm_eps": 1e-6,
                "down_block_types": ("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
                "up_block_types": ("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
                "downsample_padding": 0, "flip_sin_to_cos": False, "freq_shift": 1, "norm_num_groups": 32}
TRAIN_UNCONDITIONAL = {"sample_size": 32, "in_channels": 3, "out_channels": 3, "layers_per_block": 2,
                       "block_out_channels": (128, 128, 256, 256, 512, 512),
                       "down_block_types": ("DownBlock2D", "DownBlock2D", "DownBlock2D", "DownBlock2D", "AttnDownBlock2D",
                                            "DownBlock2D"),
                       "up_block_types": ("UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D",
                                          "UpBlock2D")}
UNET_TOL = 1e-5  # max |ours − theirs| / max |theirs|


def randomize(model, seed: int) -> None:
    """Every parameter N(0, 1/fan_in) (norms around 1), so no branch starts at zero."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            fan_in = p[0].numel() if p.ndim > 1 else 1
            p.copy_(torch.randn(p.shape, generator=generator) / fan_in**0.5 + (1.0 if name.endswith("norm.weight")
                                                                               or ".norm1.weight" in name
                                                                               or ".norm2.weight" in name else 0.0))


def predict_rows(model, x: np.ndarray, timesteps) -> np.ndarray:
    return np.concatenate([model.predict(x[b:b + 1], int(t)) for b, t in enumerate(timesteps)])  # EMA: what export writes


@pytest.mark.parametrize("config", [DDPM_CIFAR10, TRAIN_UNCONDITIONAL], ids=["ddpm-cifar10-32", "train_unconditional"])
def test_real_unet_configs_load_here(config, tmp_path):
    unet = diffusers.UNet2DModel(**config)
    randomize(unet, 0)
    unet.eval()
    unet.save_pretrained(tmp_path / "unet")
    x = torch.randn((2, 3, 32, 32), generator=torch.Generator().manual_seed(1))
    timesteps = [17, 901]
    with torch.no_grad():
        theirs = unet(x, torch.tensor(timesteps)).sample.numpy()
    with sd.Model.from_diffusers(tmp_path) as model:
        assert model.num_parameters == sum(p.numel() for p in unet.parameters())
        ours = predict_rows(model, x.numpy(), timesteps)
    difference = float(np.abs(ours - theirs).max() / np.abs(theirs).max())
    print(f"{config['block_out_channels']}: max relative difference {difference:.2e}")
    assert difference < UNET_TOL


def trained_small_model(schedule):
    net = sd.UNetConfig(channels=3, height=8, width=8, base_channels=16, channel_mult=(1, 2), res_blocks=1,
                        attention_levels=(1,), groups=4, time_embed_dim=16, flip_sin_to_cos=True,
                        downsample_padding=0, attention_head_dim=8)
    model = sd.Model(schedule, network=net, train=sd.TrainConfig(learning_rate=2e-3, seed=5))
    rng = np.random.default_rng(0)
    data = np.tanh(rng.standard_normal((64, 3, 8, 8))).astype(np.float32)
    model.fit(data, steps=30, batch_size=16)
    return model


def test_exported_model_loads_in_diffusers_and_samples_as_ours(tmp_path, monkeypatch):
    """Our trained model exported; UNet2DModel.from_pretrained gives our outputs, and
    DDPMPipeline.from_pretrained, fed our x_T and per-step noise, gives our samples."""
    import diffusers.pipelines.ddpm.pipeline_ddpm as pipeline_module

    T, n = 40, 3
    with sd.NoiseSchedule.linear(T, beta_start=1e-3, beta_end=0.05) as schedule, trained_small_model(schedule) as model:
        folder = model.export_diffusers(tmp_path / "pipe")
        unet = diffusers.UNet2DModel.from_pretrained(folder, subfolder="unet").eval()
        x = np.random.default_rng(1).standard_normal((2, 3, 8, 8)).astype(np.float32)
        with torch.no_grad():
            theirs = unet(torch.from_numpy(x), torch.tensor([3, 37])).sample.numpy()
        ours = predict_rows(model, x, [3, 37])
        assert float(np.abs(ours - theirs).max() / np.abs(theirs).max()) < UNET_TOL

        # Our reverse process over every timestep with fixed noise, through the exported scheduler config.
        rng = np.random.default_rng(2)
        x_T = rng.standard_normal((n, 3, 8, 8)).astype(np.float32)
        noises = [rng.standard_normal((n, 3, 8, 8)).astype(np.float32) for _ in range(T)]
        config = sdd.read_scheduler_config(tmp_path / "pipe")
        try:
            scheduler = config.scheduler()
            scheduler.set_timesteps(T)
            x_ours = x_T
            for k, t in enumerate(scheduler.timesteps):
                x_ours, _ = scheduler.step(model.predict(x_ours, int(t)), int(t), x_ours, noise=noises[k])
            scheduler.close()
        finally:
            config.schedule.close()

    # diffusers' DDPMPipeline with the same draws: x_T first, then one noise per step with t > 0.
    draws = [x_T] + noises

    def our_noise(shape, **kwargs):
        value = draws.pop(0)
        assert tuple(shape) == value.shape
        return torch.from_numpy(value)

    monkeypatch.setattr(pipeline_module, "randn_tensor", our_noise)
    monkeypatch.setattr(m, "randn_tensor", our_noise)
    pipeline = diffusers.DDPMPipeline.from_pretrained(folder)
    assert type(pipeline.scheduler).__name__ == "DDPMScheduler"
    images = pipeline(batch_size=n, num_inference_steps=T, output_type="np").images  # (n, H, W, C) in [0, 1]
    assert len(draws) == 1  # every step but the last (t = 0) drew its noise
    expected = np.clip(x_ours / 2 + 0.5, 0, 1).transpose(0, 2, 3, 1)
    difference = float(np.abs(images - expected).max())
    print(f"DDPMPipeline against ours over {T} steps: max difference {difference:.2e}")
    assert difference < 1e-4
