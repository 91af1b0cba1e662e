"""`python -m swiftddpm convert` (issue 21, the C user's way in): a diffusers folder saved as our
checkpoint. Loaded back with Model.load (ddpm_model_load), each committed UNet fixture predicts
bit for bit what Model.from_diffusers predicts, with the live and the EMA weights; a config we
cannot express is a one-line error naming the field, and nothing is written. The C side
(examples/c/from_diffusers.c sampling the converted checkpoint, equal to Model.sample) is
make test-c-diffusers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import swiftddpm as sd
from swiftddpm import diffusers as sdd

from conftest import REPO  # noqa: E402

ROOT = Path(__file__).parent / "fixtures" / "diffusers"
MANIFEST = json.loads((ROOT / "manifest.json").read_text())
UNETS = [case["name"] for case in MANIFEST["unets"]]
REFUSED = [(case["name"], case["field"]) for case in MANIFEST["unets_refused"]]


def convert(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(REPO / "python")}
    return subprocess.run([sys.executable, "-m", "swiftddpm", "convert", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=120, cwd=cwd)


def predictions(model: sd.Model, io: dict, use_ema: bool) -> np.ndarray:
    rows = []
    for b in range(io["sample"].shape[0]):
        labels = io["class_labels"][b:b + 1] if "class_labels" in io else None
        rows.append(model.predict(io["sample"][b:b + 1], int(io["timesteps"][b]), labels, use_ema=use_ema))
    return np.concatenate(rows)


@pytest.mark.parametrize("name", UNETS)
def test_converted_checkpoint_predicts_as_from_diffusers(name, tmp_path):
    folder, out = ROOT / "unets" / name, tmp_path / "model.safetensors"
    run = convert(folder, "--out", out, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    io = dict(np.load(folder / "io.npz"))
    with sd.Model.from_diffusers(folder) as direct, sd.Model.load(out) as loaded:
        assert f"{direct.num_parameters:,} parameters" in run.stdout and f"wrote {out}" in run.stdout
        assert loaded.network == direct.network and loaded.conditioning == direct.conditioning
        for use_ema in (False, True):
            ours, theirs = predictions(loaded, io, use_ema), predictions(direct, io, use_ema)
            assert np.array_equal(ours.view(np.uint32), theirs.view(np.uint32))
        # a negative control: the converted model's output is the diffusers output (to 1e-5), not a constant
        assert np.abs(predictions(loaded, io, True) - io["output"]).max() <= 1e-5 * np.abs(io["output"]).max()


def test_a_pipeline_folder_brings_its_scheduler(tmp_path):
    net = sd.UNetConfig(channels=1, height=8, width=8, base_channels=8, channel_mult=(1, 2), res_blocks=1,
                        attention_levels=(), groups=4, time_embed_dim=8)
    with sd.NoiseSchedule.cosine(100) as schedule, sd.Model(schedule, network=net) as model:
        folder = Path(model.export_diffusers(tmp_path / "pipeline", method="ddim", spacing="trailing"))
        betas = schedule.betas
    run = convert(folder, "--out", tmp_path / "m.safetensors", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    scheduler = sdd.read_scheduler_config(folder / "scheduler")
    scheduler.schedule.close()
    assert scheduler.class_name in run.stdout and "spacing='trailing'" in run.stdout
    with sd.Model.load(tmp_path / "m.safetensors") as loaded, loaded.schedule as s:
        assert np.array_equal(s.betas, betas)


@pytest.mark.parametrize("name, field", REFUSED)
def test_a_refused_config_is_a_one_line_error_naming_the_field(name, field, tmp_path):
    """The refused fixtures hold config.json only: given a weights file (any), as a real folder has."""
    folder, out = tmp_path / name, tmp_path / "out"
    folder.mkdir()
    shutil.copy(ROOT / "unets_refused" / name / "config.json", folder)
    shutil.copy(ROOT / "unets" / "plain_8x8" / "diffusion_pytorch_model.safetensors", folder)
    out.mkdir()
    run = convert(folder, "--out", out / "m.safetensors", cwd=tmp_path)
    assert run.returncode == 2 and run.stdout == ""
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m swiftddpm convert: error:") and field in lines[0]
    assert list(out.iterdir()) == []


def test_mistakes_are_one_line_errors(tmp_path):
    for args, words in [((tmp_path / "nowhere", "--out", tmp_path / "m.safetensors"), "no folder"),
                        ((ROOT / "unets" / "plain_8x8", "--out", tmp_path), "is a folder")]:
        run = convert(*args, cwd=tmp_path)
        assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1 and words in run.stderr
