"""diffusers' schedulers, matched (issue 21), without torch or diffusers: the fixtures in
fixtures/diffusers (made once by its make_fixtures.py with diffusers 0.42) hold, for each
DDPMScheduler / DDIMScheduler / DPMSolverMultistepScheduler config, diffusers' β and ᾱ, its
timesteps for a few step counts, and one trajectory driven by the exact ε* of Gaussian data with
every noise diffusers drew. We read each config with swiftddpm.diffusers and check:

  * our β and ᾱ (float64) equal diffusers' (float32) to float32 rounding: β to 4 ulp; ᾱ, a
    float32 cumprod of up to 1000 factors in diffusers, to 2e-6 relative plus the rounding of
    each α = 1 − β in float32 (2^-24·Σ β/(1 − β), which matters only where β nears 1);
  * our timesteps equal diffusers' for every recorded step count;
  * step by step (each of our steps from diffusers' x with diffusers' model output and noise),
    our x equals diffusers' to 1e-5·(1 + |x|) (float32 rounding of a few operations, ᾱ's
    rounding included);
  * run freely (our Scheduler from the config, the same ε* on our x, diffusers' noise replayed),
    the final x equals diffusers' to 3e-5·(1 + |x|).

The negative controls: a wrong spacing, order or clip range gives other timesteps or a step
difference far above the tolerance. `python -m pytest -s` prints the table of the differences.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import swiftddpm as sd
from swiftddpm import diffusers as sdd

ROOT = Path(__file__).parent / "fixtures" / "diffusers"
MANIFEST = json.loads((ROOT / "manifest.json").read_text())
TABLES = np.load(ROOT / "schedulers" / "tables.npz")
CASES = {c["name"]: c for c in MANIFEST["schedulers"]}
MU = np.array(MANIFEST["mu"]).reshape(MANIFEST["shape"][1:])
SIGMA = np.array(MANIFEST["sigma"]).reshape(MANIFEST["shape"][1:])

STEP_TOL = 1e-5  # per step, × (1 + |x|)
RUN_TOL = 3e-5  # whole trajectory, × (1 + |x|)


def load(name: str):
    case = CASES[name]
    data = dict(np.load(ROOT / "schedulers" / name / "trajectory.npz"))
    return case, data, sdd.read_scheduler_config(ROOT / "schedulers" / name)


def exact_output(x: np.ndarray, alpha_bar: float, prediction_type: str) -> np.ndarray:
    """The exact denoiser of N(μ, σ²) data (as make_fixtures.py), in float64, then float32."""
    a = alpha_bar
    eps = np.sqrt(1 - a) * (x.astype(np.float64) - np.sqrt(a) * MU) / (a * SIGMA**2 + 1 - a)
    x0 = (x - np.sqrt(1 - a) * eps) / np.sqrt(a)
    return {"eps": eps, "x0": x0, "v": np.sqrt(a) * eps - np.sqrt(1 - a) * x0}[prediction_type].astype(np.float32)


def ddim_target_is_next(case: dict, t: np.ndarray) -> bool:
    """Whether diffusers' DDIM step target t − ⌊T/S⌋ is the next timestep it visits, at every step."""
    T = sd_T(case)
    jump = T // len(t)
    targets = np.maximum(t - jump, -1)
    return bool(np.all(targets == np.append(t[1:], -1)))


def sd_T(case: dict) -> int:
    return len(TABLES[f"{case['schedule']}/betas"])


def scale(x: np.ndarray) -> np.ndarray:
    return 1 + np.abs(x)


# ---- schedules and timesteps ----------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(CASES))
def test_schedule_equals_diffusers(name):
    case, _, read = load(name)
    with read.schedule as schedule:
        betas, ac = TABLES[f"{case['schedule']}/betas"], TABLES[f"{case['schedule']}/alphas_cumprod"]
        # float32 β from a few float32 operations in diffusers (linspace, sigmoid, scale): ≤ 4 ulp
        np.testing.assert_allclose(schedule.betas, betas, rtol=4 * 2**-23, atol=0)
        # ᾱ: diffusers' float32 cumprod (2e-6 over 1000 factors) of α = 1 − β rounded to float32,
        # whose relative error ε·β/(1 − β) grows where β nears 1 (cosine's β = 0.999 at the end)
        bound = 2e-6 + 2**-24 * np.cumsum(betas / (1 - betas.astype(np.float64)))
        assert np.all(np.abs(schedule.alphas_cumprod - ac) <= bound * ac), name


@pytest.mark.parametrize("name", sorted(CASES))
def test_timesteps_equal_diffusers(name):
    case, data, read = load(name)
    with read.schedule:
        for count in case["timestep_counts"]:
            scheduler = read.scheduler()
            scheduler.set_timesteps(count)
            np.testing.assert_array_equal(scheduler.timesteps, data[f"timesteps_{count}"], err_msg=f"S = {count}")
        scheduler.set_timesteps(case["steps"])
        np.testing.assert_array_equal(scheduler.timesteps, data["t"])


def test_dpm_spacings_differ_from_ddims():
    """The negative control of the timesteps: DPMSolverMultistepScheduler's leading and linspace
    are not DDIM's (S + 1 points, the last dropped); read as DDIM's they would not match."""
    with sd.NoiseSchedule.linear(1000) as s:
        def ts(spacing):
            return list(sd.Sampler(s, 1, 1, method="dpm_solver++", steps=10, spacing=spacing).timesteps)
        assert ts("dpm_leading") == [900, 810, 720, 630, 540, 450, 360, 270, 180, 90]
        assert ts("dpm_linspace") == [999, 899, 799, 699, 599, 500, 400, 300, 200, 100]
        assert ts("leading") == [900, 800, 700, 600, 500, 400, 300, 200, 100, 0]
        assert ts("linspace") == [999, 888, 777, 666, 555, 444, 333, 222, 111, 0]


# ---- trajectories -------------------------------------------------------------------------

def step_by_step(name: str) -> float:
    """Our steps from diffusers' x, output and noise; returns the largest |ours − theirs|/(1 + |x|)."""
    case, data, read = load(name)
    t, outputs, noise, xs = data["t"], data["model_output"], data["noise"], data["x"]
    befores = np.concatenate([data["x_T"][None], xs[:-1]])
    worst = 0.0
    with read.schedule as schedule:
        options = {**read.options, "eta": case["eta"], "use_clipped_model_output": case["use_clipped_model_output"]}
        if read.class_name == "DDIMScheduler" and not ddim_target_is_next(case, t):
            # diffusers' DDIM steps to t − ⌊T/S⌋: one single step each, to that target
            jump = sd_T(case) // len(t)
            for i in range(len(t)):
                target = max(int(t[i]) - jump, -1)
                single = {k: v for k, v in options.items() if k not in ("method", "spacing", "steps_offset")}
                got = schedule.step(outputs[i], int(t[i]), befores[i], noise[i] if data["noise_drawn"][i] else None,
                                    method="ddim", prev_t=target, **single)
                worst = max(worst, float(np.max(np.abs(got - xs[i]) / scale(xs[i]))))
            return worst
        n, shape = befores.shape[1], befores.shape[2:]
        with sd.Sampler(schedule, n, shape, steps=len(t), seed=0, **options) as sampler:
            np.testing.assert_array_equal(sampler.timesteps, t)
            for i in range(len(t)):
                z = noise[i] if sampler.step_adds_noise else None
                got, x0 = sampler.step(outputs[i], befores[i], z)
                expected = xs[i]
                if final_noise_quirk(read, i, len(t), t):
                    expected = expected - np.sqrt(1 - TABLES[f"{case['schedule']}/alphas_cumprod"][t[i]]) * noise[i]
                worst = max(worst, float(np.max(np.abs(got - expected) / scale(expected))))
                if "pred_x0" in data:
                    np.testing.assert_allclose(x0, data["pred_x0"][i], rtol=STEP_TOL, atol=STEP_TOL, err_msg=f"x̂0 at {i}")
    return worst


def final_noise_quirk(read, i: int, steps: int, t: np.ndarray) -> bool:
    """DDPMScheduler adds √β'·z on its last step when that step's t > 0; with fixed_large β' =
    1 − ᾱ_t (with fixed_small it is 1e-10·z, below float32 here). We add none on the step to x_0."""
    return (read.class_name == "DDPMScheduler" and i == steps - 1 and t[i] > 0 and read.options["variance"] == "beta")


def free_run(name: str) -> float | None:
    """Our Scheduler from the config over the whole trajectory, ε* on our own x, diffusers' noise
    replayed; the largest |ours − theirs|/(1 + |x|) of the final x (None where diffusers' DDIM
    steps elsewhere than its next timestep)."""
    case, data, read = load(name)
    t, noise, xs = data["t"], data["noise"], data["x"]
    if read.class_name == "DDIMScheduler" and not ddim_target_is_next(case, t):
        return None
    ac = TABLES[f"{case['schedule']}/alphas_cumprod"].astype(np.float64)
    with read.schedule:
        scheduler = read.scheduler(eta=case["eta"], use_clipped_model_output=case["use_clipped_model_output"])
        scheduler.set_timesteps(len(t))
        x = data["x_T"]
        for i, ti in enumerate(scheduler.timesteps):
            output = exact_output(x, ac[ti], read.options["prediction_type"])
            x, _ = scheduler.step(output, int(ti), x, noise[i] if data["noise_drawn"][i] else None)
        expected = xs[-1]
        if final_noise_quirk(read, len(t) - 1, len(t), t):
            expected = expected - np.sqrt(1 - ac[t[-1]]) * noise[-1]
        return float(np.max(np.abs(x - expected) / scale(expected)))


@pytest.mark.parametrize("name", sorted(CASES))
def test_steps_equal_diffusers(name):
    worst = step_by_step(name)
    print(f"[diffusers] {name}: step max |Δ|/(1+|x|) = {worst:.2e}")
    assert worst <= STEP_TOL


@pytest.mark.parametrize("name", sorted(CASES))
def test_trajectory_equals_diffusers(name):
    worst = free_run(name)
    if worst is None:  # covered step by step, to diffusers' own targets
        assert CASES[name]["class"] == "DDIMScheduler"
        return
    print(f"[diffusers] {name}: final max |Δ|/(1+|x|) = {worst:.2e}")
    assert worst <= RUN_TOL


def test_a_wrong_option_is_seen():
    """Negative controls: reading the DPM 3M config as 2M, the clip range as 1, or DDIM's
    set_alpha_to_one=False as True, moves the steps far past the tolerance."""
    case, data, read = load("dpm_leading_offset_3m")
    with read.schedule as schedule, sd.Sampler(schedule, 2, data["x_T"].shape[1:], steps=len(data["t"]),
                                                **{**read.options, "solver_order": 2}) as sampler:
        x, worst = data["x_T"], 0.0
        for i in range(len(data["t"])):
            got, _ = sampler.step(data["model_output"][i], x)
            worst = max(worst, float(np.max(np.abs(got - data["x"][i]))))
            x = data["x"][i]
        assert worst > 100 * STEP_TOL
    case, data, read = load("ddim_clip_range")
    with read.schedule as schedule, sd.Sampler(schedule, 2, data["x_T"].shape[1:], steps=len(data["t"]),
                                                **{**read.options, "clip": (-1, 1),
                                                   "use_clipped_model_output": True}) as sampler:
        got, _ = sampler.step(data["model_output"][0], data["x_T"])
        assert np.max(np.abs(got - data["x"][0])) > 100 * STEP_TOL
    case, data, read = load("ddim_sd_style")
    with read.schedule as schedule, sd.Sampler(schedule, 2, data["x_T"].shape[1:], steps=len(data["t"]),
                                                **{**read.options, "set_alpha_to_one": True}) as sampler:
        for i in range(len(data["t"])):
            got, _ = sampler.step(data["model_output"][i], data["x"][i - 1] if i else data["x_T"])
        assert np.max(np.abs(got - data["x"][-1])) > 100 * STEP_TOL


def test_fixed_large_final_noise_is_diffusers_own():
    """The documented DDPM difference is real and is exactly √(1 − ᾱ_t)·z on the last step."""
    case, data, read = load("ddpm_fixed_large_trailing")
    assert data["t"][-1] > 0 and data["noise_drawn"][-1]
    read.schedule.close()
    assert final_noise_quirk(read, len(data["t"]) - 1, len(data["t"]), data["t"])


# ---- what we refuse, and the way back ------------------------------------------------------

@pytest.mark.parametrize("case", MANIFEST["refused"], ids=lambda c: c["name"])
def test_refused_configs_name_the_field(case):
    with pytest.raises(sd.InvalidArgumentError, match=case["field"]):
        sdd.read_scheduler_config(ROOT / "refused" / case["name"])


def test_unknown_field_and_class_are_refused():
    with pytest.raises(sd.InvalidArgumentError, match="made_up_field"):
        sdd.read_scheduler_config({"_class_name": "DDPMScheduler", "made_up_field": 1})
    with pytest.raises(sd.InvalidArgumentError, match="PNDMScheduler"):
        sdd.read_scheduler_config({"_class_name": "PNDMScheduler"})
    with pytest.raises(sd.InvalidArgumentError, match="sigmoid"):
        sdd.read_scheduler_config({"_class_name": "DDIMScheduler", "beta_schedule": "sigmoid"})
    with pytest.raises(sd.InvalidArgumentError, match="trained_betas"):
        sdd.read_scheduler_config({"_class_name": "DDPMScheduler", "trained_betas": [0.1, 0.2]})
    # Fields of the other classes are ignored, as diffusers ignores them.
    read = sdd.read_scheduler_config({"_class_name": "DDPMScheduler", "set_alpha_to_one": False, "skip_prk_steps": True})
    read.schedule.close()
    assert "set_alpha_to_one" not in read.options


SCHEDULES = {
    "linear": lambda: sd.NoiseSchedule.linear(1000),
    "linear_scaled_T200": lambda: sd.NoiseSchedule.linear(200, scale_to_steps=True),
    "scaled_linear": lambda: sd.NoiseSchedule.scaled_linear(1000),
    "cosine": lambda: sd.NoiseSchedule.cosine(1000),
    "cosine_other_s": lambda: sd.NoiseSchedule.cosine(500, s=0.01),
    "sigmoid_recipe": lambda: sd.NoiseSchedule.sigmoid(100),
    "custom": lambda: sd.NoiseSchedule.custom(np.linspace(1e-3, 0.05, 64) ** 1.1),
}
OPTION_SETS = [
    {"method": "ddpm", "variance": "posterior", "clip": True},
    {"method": "ddpm", "variance": "beta", "spacing": "leading", "steps_offset": 1, "prediction_type": "v"},
    {"method": "ddim", "set_alpha_to_one": False, "thresholding": 0.9, "threshold_max": 1.5, "spacing": "linspace"},
    {"method": "dpm_solver++", "solver_order": 3, "spacing": "dpm_leading", "lower_order_final": False},
    {"method": "sde_dpm_solver++", "set_alpha_to_one": False, "spacing": "dpm_linspace", "prediction_type": "x0"},
]


@pytest.mark.parametrize("kind", sorted(SCHEDULES))
@pytest.mark.parametrize("options", OPTION_SETS, ids=lambda o: o["method"])
def test_ours_round_trip_through_a_diffusers_config(kind, options, tmp_path):
    """Our schedule and options written as a diffusers config and read back: the same β (exactly;
    a schedule diffusers has no name for goes as trained_betas), the same options, the same
    timesteps."""
    with SCHEDULES[kind]() as schedule:
        path = sdd.write_scheduler_config(tmp_path, schedule, **options)
        read = sdd.read_scheduler_config(path)
        with read.schedule as back:
            np.testing.assert_array_equal(back.betas, schedule.betas)
            wanted = dict(options)
            if wanted.get("clip") is True:
                wanted["clip"] = (-1.0, 1.0)
            for key, value in wanted.items():
                assert read.options[key] == value, key
            steps = 10 if schedule.num_timesteps % 10 == 0 else 8  # our "default" is written as "trailing": equal when S divides T
            ours = sd.Sampler(schedule, 1, 1, steps=steps, **options)
            theirs = sd.Sampler(back, 1, 1, steps=steps, **read.options)
            np.testing.assert_array_equal(ours.timesteps, theirs.timesteps)
            ours.close(), theirs.close()


def test_what_a_diffusers_config_cannot_hold_is_refused():
    with sd.NoiseSchedule.linear(100) as s:
        with pytest.raises(sd.InvalidArgumentError, match="langevin"):
            sdd.scheduler_config(s, method="langevin")
        with pytest.raises(sd.InvalidArgumentError, match="symmetric"):
            sdd.scheduler_config(s, method="ddim", clip=(-1, 2))
        with pytest.raises(sd.InvalidArgumentError, match="karras"):
            sdd.scheduler_config(s, method="ddpm", spacing="karras")
        with pytest.raises(sd.InvalidArgumentError, match="clip"):
            sdd.scheduler_config(s, method="dpm_solver++", clip=True)
        with pytest.raises(sd.InvalidArgumentError, match="leading"):
            sdd.scheduler_config(s, method="dpm_solver++", spacing="leading")
        with pytest.raises(TypeError, match="seed"):
            sdd.write_scheduler_config("unused", s, seed=3)


def test_scheduler_from_diffusers_folder():
    scheduler = sd.Scheduler.from_diffusers(ROOT / "schedulers" / "dpm_minimal", seed=1)
    try:
        scheduler.set_timesteps(10)
        assert list(scheduler.timesteps) == [999, 899, 799, 699, 599, 500, 400, 300, 200, 100]
    finally:
        scheduler.close()
        scheduler.schedule.close()


# ---- timesteps for every (T, S), against diffusers' own numpy lines -------------------------

def diffusers_timesteps(scheduler: str, spacing: str, T: int, S: int, offset: int) -> np.ndarray:
    """set_timesteps of diffusers 0.42, line for line (scheduling_ddim.py / _ddpm.py and
    scheduling_dpmsolver_multistep.py with lambda_min_clipped = -inf, so last_timestep = T)."""
    if scheduler == "dpm":
        if spacing == "linspace":
            return np.linspace(0, T - 1, S + 1).round()[::-1][:-1].copy().astype(np.int64)
        if spacing == "leading":
            step_ratio = T // (S + 1)
            return (np.arange(0, S + 1) * step_ratio).round()[::-1][:-1].copy().astype(np.int64) + offset
        return np.arange(T, 0, -T / S).round().copy().astype(np.int64) - 1
    if spacing == "linspace":
        return np.linspace(0, T - 1, S).round()[::-1].copy().astype(np.int64)
    if spacing == "leading":
        step_ratio = T // S
        return (np.arange(0, S) * step_ratio).round()[::-1].copy().astype(np.int64) + offset
    return np.round(np.arange(T, 0, -T / S)).astype(np.int64) - 1


OURS = {("ddim", "leading"): "leading", ("ddim", "trailing"): "trailing", ("ddim", "linspace"): "linspace",
        ("dpm", "leading"): "dpm_leading", ("dpm", "trailing"): "trailing", ("dpm", "linspace"): "dpm_linspace"}


@pytest.mark.parametrize("T", [10, 64, 100, 999, 1000])
@pytest.mark.parametrize("scheduler, spacing", sorted(OURS))
def test_timesteps_equal_diffusers_for_every_step_count(T, scheduler, spacing):
    """Ours equal diffusers' for every S (up to 200), or both are unusable: diffusers' repeat a
    timestep or leave 0..T-1 where ours refuse. The documented exceptions: S = 1 with DDIM's
    linspace (diffusers [0], ours [T-1]) and the (T, S) where numpy's arange gives S + 1 trailing
    points (diffusers' last is -1; ours are the first S)."""
    checked = 0
    with sd.NoiseSchedule.linear(T) as schedule:
        for offset in ([0, 1] if spacing == "leading" else [0]):
            for S in range(1, min(T, 200) + 1):
                theirs = diffusers_timesteps(scheduler, spacing, T, S, offset)
                if spacing == "linspace" and scheduler == "ddim" and S == 1:
                    theirs = np.array([T - 1])
                if spacing == "trailing" and len(theirs) == S + 1 and theirs[-1] == -1:
                    theirs = theirs[:S]
                usable = len(theirs) == S and np.all(np.diff(theirs) < 0) and theirs.min() >= 0 and theirs.max() < T
                try:
                    ours = sd.Sampler(schedule, 1, 1, method="ddim", steps=S, spacing=OURS[scheduler, spacing],
                                      steps_offset=offset)
                except sd.InvalidArgumentError:
                    assert not usable, (T, S, offset, theirs)
                    continue
                with ours:
                    assert usable, (T, S, offset, theirs, ours.timesteps)
                    np.testing.assert_array_equal(ours.timesteps, theirs, err_msg=f"T={T} S={S} offset={offset}")
                    checked += 1
    assert checked > 0


def test_ddpm_leading_with_steps_offset_constructs():
    """sd.Scheduler probed T steps at construction, which with leading and steps_offset 1 reach
    timestep T (as diffusers' would for S = T): it now waits for set_timesteps."""
    with sd.NoiseSchedule.linear(1000) as schedule:
        scheduler = sd.Scheduler(schedule, method="ddpm", spacing="leading", steps_offset=1)
        with pytest.raises(sd.InvalidArgumentError, match="set_timesteps"):
            scheduler.timesteps
        with pytest.raises(sd.InvalidArgumentError, match="set_timesteps"):
            scheduler.init_noise((1, 2))
        scheduler.set_timesteps(10)
        assert list(scheduler.timesteps) == [901, 801, 701, 601, 501, 401, 301, 201, 101, 1]
        x = scheduler.init_noise((1, 2))
        for t in scheduler.timesteps:
            x, _ = scheduler.step(np.zeros_like(x), int(t), x)
        assert np.isfinite(x).all()
        # a wrong option is still refused at construction
        with pytest.raises(sd.InvalidArgumentError, match="steps_offset"):
            sd.Scheduler(schedule, method="ddpm", spacing="leading", steps_offset=1000)
