"""python -m swiftddpm train / sample, end to end in subprocesses, on a folder of 12×10 PNG and
JPEG images in two classes that the test writes: checkpoints and sample grids on schedule, a
resumed run that continues the step count and takes exactly the steps of an unbroken run,
Ctrl-C, and the one-line errors. A tiny UNet (8×8, 2 levels) keeps the whole file to seconds."""

from __future__ import annotations

import json
import re
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("PIL", reason="the image-folder command needs Pillow (make setup-python installs it)")
from PIL import Image  # noqa: E402

import swiftddpm as sd  # noqa: E402

from conftest import REPO  # noqa: E402

TINY = ["--image-size", "8", "--base-channels", "8", "--channel-mult", "1,2", "--res-blocks", "1",
        "--attention-levels", "none", "--timesteps", "50", "--batch-size", "4", "--num-samples", "4",
        "--sample-steps", "4", "--no-progress"]
GRID_SIDE = 2 * (8 + 2) + 2  # 4 samples of 8×8: 2 per row, 2-pixel padding
WORK = None  # the commands' working folder (_work_folder)


@pytest.fixture(autouse=True, scope="module")
def _work_folder(tmp_path_factory):
    """The commands run in a scratch folder, so that a default --out never lands in the checkout."""
    global WORK
    WORK = tmp_path_factory.mktemp("cwd")


def run_cli(*args, check=True, timeout=120):
    env = {**os.environ, "PYTHONPATH": str(REPO / "python")}
    out = subprocess.run([sys.executable, "-m", "swiftddpm", *map(str, args)], capture_output=True, text=True,
                         env=env, timeout=timeout, cwd=WORK)
    if check and out.returncode != 0:
        raise AssertionError(f"exit {out.returncode}\nstdout:\n{out.stdout}\nstderr:\n{out.stderr}")
    return out


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """data/circles/*.png and data/squares/*.jpg: 6 images each, 12×10, a bright shape on a dark ground."""
    root = tmp_path_factory.mktemp("shapes")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:10, :12]
    for name, ext in (("circles", "png"), ("squares", "jpg")):
        (root / name).mkdir()
        for i in range(6):
            cy, cx, r = rng.integers(3, 7), rng.integers(3, 9), rng.integers(2, 4)
            inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r if name == "circles" else \
                (abs(yy - cy) <= r) & (abs(xx - cx) <= r)
            pixels = np.where(inside[..., None], rng.integers(150, 256, 3), rng.integers(0, 60, 3)).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.{ext}")
    return root


def grid_size(path):
    with Image.open(path) as grid:
        return grid.size, grid.mode


def weights(checkpoint):
    """The step count and the EMA model's prediction on a fixed batch: equal iff the weights are."""
    with sd.Model.load(checkpoint) as model:
        x = np.random.default_rng(1).standard_normal((3, *model.sample_shape)).astype(np.float32)
        labels = [0, 1, 2] if model.conditioning.kind == "classes" else None  # 2 = the null class
        return model.step, model.predict(x, 10, labels=labels)


def test_help_reads_well():
    top = run_cli("--help").stdout
    assert "train" in top and "sample" in top
    text = run_cli("train", "--help").stdout
    for flag in ("--data", "--image-size", "--channels", "--total-steps", "--steps", "--batch-size", "--lr", "--base-channels",
                 "--channel-mult", "--class-cond", "--out", "--save-every", "--sample-every", "--num-samples",
                 "--sampler", "--sample-steps", "--resume", "--seed"):
        assert flag in text, flag
    assert "(default: None)" not in text
    assert "--checkpoint" in run_cli("sample", "--help").stdout


def test_train_resume_and_sample(shapes, tmp_path):
    out = tmp_path / "run"
    first = run_cli("train", "--data", shapes, *TINY, "--class-cond", "--steps", 4, "--save-every", 2,
                    "--sample-every", 3, "--out", out)
    assert "12 images of 3×8×8 in 2 classes" in first.stdout
    assert "training steps 1..4" in first.stdout
    checkpoint = out / "checkpoint.safetensors"
    assert weights(checkpoint)[0] == 4
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["step_000003.png", "step_000004.png"]
    (width, height), mode = grid_size(out / "samples" / "step_000004.png")
    assert height == GRID_SIDE and width > GRID_SIDE and mode == "RGB"  # a row per class, names on the left
    run = json.loads((out / "run.json").read_text())
    assert run["classes"] == ["circles", "squares"] and run["settings"]["batch_size"] == 4

    # Resume: the size, channels, batch, seed and sampling come from the checkpoint and its run.json.
    resumed = run_cli("train", "--data", shapes, "--class-cond", "--total-steps", 6, "--resume", checkpoint,
                      "--no-progress")  # --out: the checkpoint's folder
    assert "training steps 5..6, batch 4" in resumed.stdout and "note:" not in resumed.stdout
    step, resumed_prediction = weights(checkpoint)
    assert step == 6
    assert (out / "samples" / "step_000006.png").is_file()

    # An unbroken run of 6 steps takes the very same steps.
    straight = tmp_path / "straight"
    run_cli("train", "--data", shapes, *TINY, "--class-cond", "--steps", 6, "--save-every", 2, "--sample-every", 3,
            "--out", straight)
    straight_step, straight_prediction = weights(straight / "checkpoint.safetensors")
    assert straight_step == 6
    np.testing.assert_array_equal(resumed_prediction, straight_prediction)
    assert (out / "samples" / "step_000006.png").read_bytes() == (straight / "samples" / "step_000006.png").read_bytes()
    # Negative control: another seed gives other weights.
    other = tmp_path / "other"
    run_cli("train", "--data", shapes, *TINY, "--class-cond", "--steps", 6, "--seed", 1, "--out", other)
    assert not np.array_equal(weights(other / "checkpoint.safetensors")[1], straight_prediction)

    # sample: a grid of the classes in turn, or of one class by name.
    grid = tmp_path / "grid.png"
    sampled = run_cli("sample", "--checkpoint", checkpoint, "--num-samples", 6, "--nrow", 3, "--out", grid)
    assert "of the model at step 6" in sampled.stdout
    assert grid_size(grid) == ((3 * 10 + 2, 2 * 10 + 2), "RGB")
    run_cli("sample", "--checkpoint", checkpoint, "--class", "squares", "--out", tmp_path / "squares.png")
    assert (tmp_path / "squares.png").is_file()
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]  # no temporary files left


def test_train_is_model_fit(shapes, tmp_path):
    """The command trains with Model.fit's loop: the same model, fitted in this process on the
    same images with the same seed and warm-up, has bitwise the weights of the checkpoint."""
    from swiftddpm import cli

    out = tmp_path / "run"
    run_cli("train", "--data", shapes, *TINY, "--class-cond", "--total-steps", 6, "--warmup", 3, "--sample-every", 0,
            "--out", out)
    args = cli.build_parser().parse_args(["train", "--data", str(shapes), *TINY, "--class-cond", "--warmup", "3"])
    cli._settle(args, {})
    args.channels = 3
    images, labels, classes = sd.datasets.image_folder(shapes, 8, 3, labels=True)
    with cli._new_model(args, len(classes)) as model:
        model.fit(images, 6, args.batch_size, labels=labels, seed=args.seed, progress=False,
                  lr_schedule=lambda i: cli.learning_rate(i, args.lr, args.warmup))
        x = np.random.default_rng(1).standard_normal((3, *model.sample_shape)).astype(np.float32)
        fitted = model.predict(x, 10, labels=[0, 1, 2])
    step, trained = weights(out / "checkpoint.safetensors")
    assert step == 6
    np.testing.assert_array_equal(trained, fitted)


def test_grey_unconditional_and_nothing_left_to_train(shapes, tmp_path):
    out = tmp_path / "grey"
    run_cli("train", "--data", shapes, *TINY, "--channels", "1", "--steps", 2, "--sampler", "dpm_solver_pp",
            "--out", out)
    assert grid_size(out / "samples" / "step_000002.png") == ((GRID_SIDE, GRID_SIDE), "L")
    again = run_cli("train", "--data", shapes, "--total-steps", 2, "--out", out, "--resume",
                    out / "checkpoint.safetensors")
    assert "nothing to train" in again.stdout
    assert weights(out / "checkpoint.safetensors")[0] == 2


def test_errors_are_one_line(shapes, tmp_path):
    cases = [
        (["train", "--data", tmp_path / "missing"], "does not exist"),
        (["train", "--data", shapes, *TINY, "--steps", "1", "--image-size", "6", "--channel-mult", "1,2,2"],
         "not divisible by 2^(levels-1) = 4"),  # the library's message
        (["sample", "--checkpoint", tmp_path / "none.safetensors"], "no file"),
    ]
    out = tmp_path / "run"
    run_cli("train", "--data", shapes, *TINY, "--steps", 1, "--out", out)
    checkpoint = out / "checkpoint.safetensors"
    cases += [
        (["train", "--data", shapes, "--resume", checkpoint, "--out", out, "--image-size", "16"], "does not match"),
        (["train", "--data", shapes, "--resume", checkpoint, "--out", out, "--class-cond"], "unconditional"),
        (["sample", "--checkpoint", checkpoint, "--class", "circles"], "unconditional"),
    ]
    for args, message in cases:
        result = run_cli(*args, check=False)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
    bad = run_cli("train", "--data", shapes, "--channel-mult", "1,x", check=False)
    assert bad.returncode == 2 and "comma-separated" in bad.stderr


def test_ctrl_c_saves_a_checkpoint_and_leaves_no_partial_files(shapes, tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO / "python")}
    args = [sys.executable, "-m", "swiftddpm", "train", "--data", str(shapes), *TINY, "--steps", "100000",
            "--save-every", "7", "--sample-every", "5", "--out", str(out)]
    with subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=WORK) as proc:
        try:
            for line in proc.stdout:
                if line.startswith("step 5:"):  # training, checkpoints and grids under way
                    break
            proc.send_signal(signal.SIGINT)
            stdout, stderr = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 130, stderr
    assert "interrupted (Ctrl-C)" in stdout and "Traceback" not in stderr
    step = weights(out / "checkpoint.safetensors")[0]
    assert 5 <= step < 100000
    assert not [p for p in out.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]
    resumed = run_cli("train", "--data", shapes, "--steps", 1, "--out", out, "--resume",
                      out / "checkpoint.safetensors")  # one more step
    assert f"training steps {step + 1}..{step + 1}" in resumed.stdout


# ---- Issue 19: settings checked up front, training saved on an error, one-line errors ----------

def test_every_setting_is_checked_before_the_first_step(shapes, tmp_path):
    """--sample-steps 5000 (T = 50) used to fail at the first sample grid, after training, with
    no checkpoint written: now nothing trains."""
    for bad, message in ((["--sample-steps", "5000"], "--sample-steps 5000"), (["--guidance", "nan"], "--guidance"),
                         (["--lr", "inf"], "--lr"), (["--sampler", "ddpm", "--sample-steps", "51"], "51")):
        out = tmp_path / f"run{len(bad)}{bad[-1]}"
        result = run_cli("train", "--data", shapes, *TINY, "--steps", 4, "--sample-every", 2, *bad, "--out", out,
                         check=False)
        assert result.returncode == 2, (bad, result.stdout, result.stderr)
        assert message in result.stderr and "Traceback" not in result.stderr, (bad, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "training steps" not in result.stdout and not (out / "checkpoint.safetensors").exists(), bad


def test_an_error_after_training_began_saves_the_checkpoint_first(shapes, tmp_path):
    """The grid of step 2 cannot be written (a folder has its name): the run stops with one
    line, after saving the 2 steps it trained (before the fix: a traceback, no checkpoint)."""
    out = tmp_path / "run"
    (out / "samples" / "step_000002.png").mkdir(parents=True)
    result = run_cli("train", "--data", shapes, *TINY, "--steps", 6, "--save-every", 100, "--sample-every", 2,
                     "--out", out, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and "saved" in lines[0] and "error:" in lines[1], lines
    assert weights(out / "checkpoint.safetensors")[0] == 2
    resumed = run_cli("train", "--data", shapes, "--resume", out / "checkpoint.safetensors", "--sample-every", 0)
    assert "training steps 3..6" in resumed.stdout


def test_file_and_run_description_mistakes_are_one_line_errors(shapes, tmp_path):
    run = tmp_path / "run"
    run_cli("train", "--data", shapes, *TINY, "--steps", 1, "--out", run)
    checkpoint, info = run / "checkpoint.safetensors", json.loads((run / "run.json").read_text())
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")

    def with_run_json(name, edit):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "checkpoint.safetensors").write_bytes(checkpoint.read_bytes())
        (folder / "run.json").write_text(json.dumps(edit(json.loads(json.dumps(info)))))
        return folder / "checkpoint.safetensors"

    cases = [
        (["train", "--data", shapes, *TINY, "--steps", 1, "--out", a_file], "is a file"),
        (["sample", "--checkpoint", checkpoint, "--out", tmp_path], "is a folder"),
        (["sample", "--checkpoint", with_run_json("null", lambda r: {**r, "settings": None})], "settings"),
        (["sample", "--checkpoint", with_run_json("euler", lambda r: {**r, "settings": {**r["settings"],
                                                                                        "sampler": "euler"}})],
         "--sampler 'euler'"),
        (["train", "--data", shapes, "--resume", with_run_json("many", lambda r: {**r, "settings": {**r["settings"],
                                                                                                  "steps": "many"}})],
         "--total-steps 'many': must be an integer"),
        (["sample", "--checkpoint", with_run_json("classes", lambda r: {**r, "classes": 3})], "classes"),
    ]
    for args, message in cases:
        result = run_cli(*args, check=False)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert message in result.stderr and "Traceback" not in result.stderr, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, (args, result.stderr)


# ---- Issue 22: what a newcomer's run folder holds, and the command's own switches ---------------

def _mode(path):
    return os.stat(path).st_mode & 0o777


def test_run_folder_files_loss_log_and_modes(shapes, tmp_path):
    """run.json, the grids, loss.csv and loss.png get the checkpoint's mode (0644 less the
    umask), never 0600; loss.csv has a row per step, kept across a resume, and equals the
    log of an unbroken run; loss.png exists exactly when matplotlib does."""
    out = tmp_path / "run"
    run_cli("train", "--data", shapes, *TINY, "--total-steps", 4, "--save-every", 2, "--sample-every", 2,
            "--out", out)
    umask = os.umask(0)
    os.umask(umask)
    expected = 0o644 & ~umask
    files = [out / "run.json", out / "samples" / "step_000004.png", out / "loss.csv"]
    assert _mode(out / "checkpoint.safetensors") == expected
    for path in files:
        assert _mode(path) == expected, (path, oct(_mode(path)))
    try:
        import matplotlib  # noqa: F401
        has_matplotlib = True
    except ImportError:
        has_matplotlib = False
    assert (out / "loss.png").is_file() == has_matplotlib
    if has_matplotlib:
        assert _mode(out / "loss.png") == expected
        assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    rows = (out / "loss.csv").read_text().splitlines()
    assert rows[0] == "step,loss,lr" and [int(r.split(",")[0]) for r in rows[1:]] == [1, 2, 3, 4]
    resumed = run_cli("train", "--data", shapes, "--steps", 2, "--resume", out / "checkpoint.safetensors")
    assert "training steps 5..6" in resumed.stdout  # --steps: steps of this run, as Model.fit counts
    straight = tmp_path / "straight"
    run_cli("train", "--data", shapes, *TINY, "--total-steps", 6, "--save-every", 2, "--sample-every", 0,
            "--out", straight)
    log = (out / "loss.csv").read_text()
    assert [int(r.split(",")[0]) for r in log.splitlines()[1:]] == [1, 2, 3, 4, 5, 6]
    assert log == (straight / "loss.csv").read_text()  # same steps, same losses, same rates
    losses = np.array([float(r.split(",")[1]) for r in log.splitlines()[1:]])
    assert np.isfinite(losses).all() and (losses > 0).all()
    both = run_cli("train", "--data", shapes, "--steps", 1, "--total-steps", 9, "--out", tmp_path / "both",
                   check=False)
    assert both.returncode == 2 and "not both" in both.stderr


def test_version_and_threads(shapes):
    version = run_cli("--version").stdout
    assert f"swiftddpm {sd.__version__}" in version and f"libddpm {sd.library_version()}" in version
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    env["PYTHONPATH"] = str(REPO / "python")
    help_text = subprocess.run([sys.executable, "-m", "swiftddpm", "train", "--help"], capture_output=True,
                               text=True, env=env, check=True, cwd=WORK).stdout
    flat = " ".join(help_text.split())
    assert "BLAS threads" not in flat
    assert "threads the engine splits each step over" in flat
    default = int(re.search(r"default: the library's, (\d+) here", flat).group(1))
    # the library's default without OPENBLAS_NUM_THREADS is every core the process may use
    cores = {os.cpu_count(), len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()}
    assert default in cores, (default, cores)
    from swiftddpm import cli
    assert cli.build_parser().parse_args(["sample", "--checkpoint", "c"]).threads is None  # left as the library's


def test_class_grid_has_a_labelled_row_per_class(shapes, tmp_path):
    from swiftddpm import cli

    out = tmp_path / "run"
    trained = run_cli("train", "--data", shapes, *TINY, "--class-cond", "--total-steps", 1, "--sample-every", 0,
                      "--out", out)
    # 1 step of 4 images over 2 classes is far below what conditioning needs: the run says what would do
    needed = cli.IMAGES_PER_CLASS * 2 // 4
    assert f"warning: --total-steps 1 at --batch-size 4" in trained.stdout and f"--total-steps {needed}" in trained.stdout
    plain = run_cli("train", "--data", shapes, *TINY, "--total-steps", 1, "--sample-every", 0, "--out", tmp_path / "u")
    assert "warning" not in plain.stdout  # unconditional: no such rule
    with sd.Model.load(out / "checkpoint.safetensors") as model:
        plan = cli.GridPlan(model, 5, ["circles", "squares"])
        assert plan.labels.tolist() == [0, 0, 0, 1, 1, 1] and plan.nrow == 3
        assert plan.row_labels == ["circles", "squares"]
        one = cli.GridPlan(model, 4, ["circles", "squares"], only=1)
        assert one.labels.tolist() == [1] * 4 and one.row_labels == ["squares"] * 2
    plain = tmp_path / "plain.png"
    sd.datasets.save_grid(np.zeros((6, 3, 8, 8)), plain, nrow=3)
    grid = tmp_path / "grid.png"
    sampled = run_cli("sample", "--checkpoint", out / "checkpoint.safetensors", "--num-samples", 6, "--out", grid)
    assert "6 samples (one row per class" in sampled.stdout
    assert "sampling" in sampled.stdout + sampled.stderr  # progress: a tqdm bar or lines
    with Image.open(grid) as image, Image.open(plain) as reference:
        labelled = np.asarray(image.convert("L"))
        assert labelled.shape[0] == reference.size[1] == 2 * 10 + 2  # two rows: circles, squares
        margin = labelled.shape[1] - reference.size[0]
        assert margin > 0
        for row in range(2):  # each row's name is written in the margin (dark ink on white)
            band = labelled[2 + row * 10: 2 + row * 10 + 8, :margin]
            assert (band < 128).any(), row
        padding = np.asarray(reference.convert("L")) == 255  # the reference's white lines between images
        assert (labelled[:, margin:][padding] == 255).all()  # the images sit right of the margin, as laid out
    quiet = run_cli("sample", "--checkpoint", out / "checkpoint.safetensors", "--num-samples", 2, "--no-progress",
                    "--out", tmp_path / "quiet.png")
    assert "sampling" not in quiet.stdout + quiet.stderr
