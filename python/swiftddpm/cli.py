"""The command line: train a UNet on a folder of images, sample from a checkpoint.

    python -m swiftddpm train --data DIR --image-size 32 [--total-steps N] [--out DIR] [--resume CKPT] ...
    python -m swiftddpm sample --checkpoint CKPT --num-samples K --out grid.png

`train` is the workflow of a training script: a folder of images (datasets.image_folder) →
a UNet model (class-conditional on the sub-folders with --class-cond) → training with a
progress bar → every --save-every steps an atomic checkpoint (OUT/checkpoint.safetensors)
and every --sample-every steps a sample grid (OUT/samples/step_NNNNNN.png) → resume with
--resume OUT/checkpoint.safetensors, which continues the step count, AdamW state, EMA and
training RNG where the checkpoint left them. Two ways to say how long: --total-steps N is the
model's total (a resumed run trains until the model has taken N steps); --steps N is the steps
of this run, the one meaning `steps` has in Python (Model.fit(data, steps=N) and
distributed.fit(model, data, steps=N) take N more). Each run folder gets loss.csv (step, loss,
learning rate of every step, across resumes) and, with matplotlib installed, loss.png.

Training is the loop of Model.fit (swiftddpm._train_loop): minibatch k is drawn by an RNG
seeded with (--seed, k), and the learning rate of step k is a function of k alone, so a run
stopped and resumed takes the very steps of a run that never stopped. Ctrl-C stops after the
step in progress, writes a checkpoint and exits with status 130.

Every setting (given, or read from run.json) is checked before the first step, the sampling
ones by making the sampler the grids will use; an error after training began (a grid that
cannot be written, a refused step) writes the checkpoint first. Every error is one line on
stderr, exit status 2.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import __version__, _files, datasets, get_num_threads, library_path, library_version, set_num_threads
from ._interrupt import StopOnInterrupt
from ._loss_log import LossLog, have_matplotlib
from ._progress import TrainProgress, sampling_progress
from ._train_loop import Minibatches, TrainLoop
from .config import Conditioning, TrainConfig, UNetConfig
from .errors import DDPMError
from .model import Model
from .sampler import Sampler
from .schedule import NoiseSchedule

CHECKPOINT = "checkpoint.safetensors"
RUN_INFO = "run.json"  # written beside the checkpoint: the data's size and classes, the run's settings

# Settings of a run that the checkpoint does not hold: a resumed run (and `sample`) takes those
# not given on its command line from the run.json beside the checkpoint, else these defaults.
# "steps" is the model's total (--total-steps), named so in run.json since the first version.
RUN_DEFAULTS: dict[str, Any] = {
    "steps": 2000, "batch_size": 32, "lr": 2e-3, "warmup": 100, "seed": 0, "save_every": 500,
    "sample_every": 500, "num_samples": 16, "sampler": "ddim", "sample_steps": 50, "guidance": 1.5, "sample_seed": 0,
}
_SHAPES_TRAINING = ("batch_size", "lr", "warmup", "seed")  # the settings that decide the steps taken
# Training images a class-conditional model sees per class (total steps × batch / classes)
# before its samples follow their labels. Measured on 400 digit images (sklearn's 8×8 digits
# at 16×16 grey, 40 per class, the default UNet, DDIM 50 steps, guidance 1.5): a classifier of
# real digits (99% right on the images themselves) agreed with the asked class for
#   batch 16, lr 1e-3 (the old defaults): 6% after 1000 steps, 23% after 2000 (3,200 per class);
#   batch 32, lr 2e-3 (the defaults now): 27% after 1000 steps, 65% after 2000 (6,400 per class);
# chance is 10%. examples/python/digits.py (batch 64, 8×8) reaches 93% at 12,800 per class.
IMAGES_PER_CLASS = 10_000
SAMPLERS = {"ddpm": "ddpm", "ddim": "ddim", "dpm_solver_pp": "dpm_solver++", "dpm_solver++": "dpm_solver++"}


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows "(default: ...)" only for options whose default says something."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, False) or action.default is argparse.SUPPRESS:
            return action.help or ""
        return super()._get_help_string(action)


class CommandError(Exception):
    """A mistake in the command line or its inputs: printed as one line, exit status 2."""


# ---- Arguments --------------------------------------------------------------------------

def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1 (got {value})")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 (got {value})")
    return value


def _multipliers(text: str) -> tuple[int, ...]:
    try:
        mult = tuple(int(m) for m in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 1,2,2 (got {text!r})") from None
    if not mult or min(mult) < 1:
        raise argparse.ArgumentTypeError(f"multipliers must be >= 1 (got {text!r})")
    return mult


def _levels(text: str) -> tuple[int, ...]:
    if text.strip().lower() in ("", "none"):
        return ()
    try:
        levels = tuple(int(m) for m in text.split(","))
    except ValueError:
        levels = (-1,)
    if min(levels) < 0:
        raise argparse.ArgumentTypeError(f"expected comma-separated level indices such as 2, or none (got {text!r})")
    return levels


def _run_option(group: Any, flag: str, help: str, *other_flags: str, dest: str | None = None, **kw: Any) -> None:
    """An option whose default is RUN_DEFAULTS' or, with a checkpoint, its run's (see _settle);
    other_flags: other spellings of it; dest: its setting's name (default the flag's)."""
    name = dest or flag.lstrip("-").replace("-", "_")
    group.add_argument(flag, *other_flags, dest=name, default=None,
                       help=f"{help} (default: {RUN_DEFAULTS[name]}; with a checkpoint, its run's)", **kw)


def _sampling_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("sampling")
    _run_option(g, "--num-samples", "images in a sample grid", type=_positive, metavar="K")
    _run_option(g, "--sampler", "reverse process (x̂0 clipped to [-1, 1]); dpm_solver_pp is DPM-Solver++ 2M",
                choices=sorted(SAMPLERS), metavar="{ddpm,ddim,dpm_solver_pp}")
    _run_option(g, "--sample-steps", "sampler steps (0 = all T, for ddpm)", type=_non_negative, metavar="S")
    _run_option(g, "--guidance", "classifier-free guidance scale of class-conditional models (1 = plain conditional)",
                type=float, metavar="W")
    _run_option(g, "--sample-seed", "seed of the sample grids (one seed at every step shows the same noises improving)",
                type=int, metavar="S")


def _threads_argument(group: Any) -> None:
    group.add_argument("--threads", type=_positive, default=None, metavar="N",
                       help="threads the engine splits each step over (results are bitwise the same for any N); "
                            f"default: the library's, {get_num_threads()} here (OPENBLAS_NUM_THREADS if set, "
                            f"else all {os.cpu_count()} cores)")


def version_text() -> str:
    """What --version prints: the package's and the loaded library's versions and its path."""
    return f"swiftddpm {__version__} (libddpm {library_version()}, {library_path()})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m swiftddpm",
        description="SwiftDDPM: train a diffusion model (a UNet) on a folder of images, and sample from it.",
        epilog="Run `python -m swiftddpm train --help` or `python -m swiftddpm sample --help` for each command.")
    parser.add_argument("--version", action="version", version=version_text())
    commands = parser.add_subparsers(dest="command", required=True, metavar="{train,sample}")
    fmt = _HelpFormatter

    t = commands.add_parser(
        "train", formatter_class=fmt, help="train on a folder of images (checkpoints, sample grids, resume)",
        description="Train a UNet diffusion model on the images under --data (PNG, JPEG, ... found recursively; "
                    "each resized on its short side and centre-cropped to --image-size). Writes "
                    f"OUT/{CHECKPOINT} every --save-every steps (atomically: a crash leaves the previous one) and "
                    "OUT/samples/step_NNNNNN.png every --sample-every steps. --resume continues a run: same step "
                    "count, optimizer, EMA and random draws.",
        epilog="example: python -m swiftddpm train --data photos/ --image-size 32 --total-steps 5000 --out runs/photos; "
               f"later: python -m swiftddpm train --data photos/ --total-steps 10000 --out runs/photos "
               f"--resume runs/photos/{CHECKPOINT}")
    g = t.add_argument_group("data")
    g.add_argument("--data", type=Path, required=True, metavar="DIR", help="folder of images (searched recursively)")
    g.add_argument("--image-size", type=_positive, default=None, metavar="PX",
                   help="side of the square training images; default 32, or the checkpoint's with --resume")
    g.add_argument("--channels", type=int, choices=(1, 3), default=None,
                   help="1 = grey, 3 = RGB; default 3, or the checkpoint's with --resume")
    g.add_argument("--class-cond", action="store_true",
                   help="condition on the class given by each image's first-level sub-folder (DIR/cat/..., DIR/dog/...), "
                        "with classifier-free guidance (labels dropped 10%% of the time)")
    g = t.add_argument_group("model (ignored with --resume: the checkpoint has its own)")
    g.add_argument("--base-channels", type=_positive, default=32, metavar="C", help="UNet channels at full resolution")
    g.add_argument("--channel-mult", type=_multipliers, default="1,2,2", metavar="M,M,...",
                   help="channel multiplier of each resolution; --image-size must divide by 2^(levels-1)")
    g.add_argument("--res-blocks", type=_positive, default=UNetConfig().res_blocks, metavar="N",
                   help="residual blocks per resolution")
    g.add_argument("--attention-levels", type=_levels, metavar="L,...",
                   default=",".join(map(str, UNetConfig().attention_levels)) or "none",
                   help="levels (indices into --channel-mult) with self-attention, or none")
    g.add_argument("--schedule", choices=("linear", "cosine"), default="cosine", help="noise schedule")
    g.add_argument("--timesteps", type=_positive, default=1000, metavar="T", help="diffusion steps T")
    g = t.add_argument_group("training")
    _run_option(g, "--total-steps", "the model's total training steps: a resumed run trains until the model has "
                "taken N", dest="steps", type=_non_negative, metavar="N")
    g.add_argument("--steps", dest="more_steps", type=_non_negative, default=None, metavar="N",
                   help="train N steps in this run (the model's total becomes its step count + N), as "
                        "Model.fit(steps=N) and distributed.fit(steps=N) count; instead of --total-steps")
    _run_option(g, "--batch-size", "images per step", type=_positive, metavar="B")
    _run_option(g, "--lr", "learning rate after the warm-up", type=float)
    _run_option(g, "--warmup", "steps of linear learning-rate warm-up", type=_non_negative, metavar="N")
    g.add_argument("--ema-decay", type=float, default=0.995, metavar="D",
                   help="EMA decay of the sampling weights (keep decay**steps small: the EMA starts at the initial weights)")
    _run_option(g, "--seed", "seeds the weights, the minibatches and the training noise", type=int, metavar="S")
    _threads_argument(g)
    g = t.add_argument_group("output")
    g.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="output folder (default: runs/train, or the checkpoint's folder with --resume)")
    _run_option(g, "--save-every", "checkpoint every N steps and at the end", type=_positive, metavar="N")
    _run_option(g, "--sample-every", "sample grid every N steps and at the end (0 = never)", type=_non_negative,
                metavar="N")
    g.add_argument("--resume", type=Path, default=None, metavar="CKPT", help="checkpoint to continue from")
    g.add_argument("--no-progress", action="store_true", help="print a line every 10%% instead of a progress bar")
    _sampling_arguments(t)

    s = commands.add_parser("sample", formatter_class=fmt, help="write a grid of samples from a checkpoint",
                            description="Sample from a checkpoint written by `train` and write one PNG grid. "
                                        "A class-conditional model's grid has one row per class, its name on the "
                                        "left, or K images of the one class given by --class.")
    s.add_argument("--checkpoint", type=Path, required=True, metavar="CKPT", help="a checkpoint written by train")
    s.add_argument("--out", type=Path, default=Path("samples.png"), metavar="PNG", help="the grid to write")
    s.add_argument("--nrow", type=_positive, default=None,
                   help="images per row (default: a class-conditional model's grid has one row per class, "
                        "⌈K/classes⌉ images each; else ⌈√K⌉)")
    s.add_argument("--no-progress", action="store_true",
                   help="no progress bar (tqdm) or progress lines while sampling")
    s.add_argument("--class", dest="class_", default=None, metavar="NAME|INDEX",
                   help="sample this class only (a name from the training folder, or an index)")
    _threads_argument(s)
    _sampling_arguments(s)
    return parser


# ---- Small helpers ----------------------------------------------------------------------

def _write_json(path: Path, value: Any) -> None:
    """Writes JSON atomically (a temporary file in the same folder, renamed over path)."""
    _files.write_atomic(path, [(json.dumps(value, indent=2) + "\n").encode("utf-8")], "run description")


def _read_run_info(checkpoint: Path) -> dict[str, Any]:
    """The run.json beside a checkpoint ({} if there is none)."""
    path = checkpoint.parent / RUN_INFO
    if not path.exists() and not path.is_symlink():
        return {}
    try:
        info = json.loads(_files.read_regular(path, 1 << 24, "run description").decode("utf-8"))
    except (OSError, ValueError, RecursionError) as error:
        raise CommandError(f"cannot read {path}: {error}") from None
    if not isinstance(info, dict):
        raise CommandError(f"{path} is not a run description (a JSON object)")
    if not isinstance(info.get("settings", {}), dict):
        raise CommandError(f"{path}: 'settings' is {info['settings']!r}, not an object of settings")
    if not isinstance(info.get("classes", []), list) or not all(isinstance(c, str) for c in info.get("classes", [])):
        raise CommandError(f"{path}: 'classes' is not a list of class names")
    return info


def _settle(args: argparse.Namespace, run: dict[str, Any]) -> list[str]:
    """Fills the options left unset (None) from the run's settings, else RUN_DEFAULTS; returns
    the options given that differ from the run's (for a resumed run these make its steps differ
    from those of a run that never stopped)."""
    saved = run.get("settings", {})
    changed = []
    for name, default in RUN_DEFAULTS.items():
        if not hasattr(args, name):
            continue
        if getattr(args, name) is None:
            setattr(args, name, saved.get(name, default))
        elif name in _SHAPES_TRAINING and name in saved and getattr(args, name) != saved[name]:
            changed.append(f"--{name.replace('_', '-')} {getattr(args, name)} (the run had {saved[name]})")
    return changed


def _check_settings(args: argparse.Namespace) -> None:
    """Every run setting the command uses, whether from its command line or from run.json:
    the right type and range (CommandError naming it)."""
    def bad(name: str, what: str) -> CommandError:
        flag = "total-steps" if name == "steps" else name.replace('_', '-')  # run.json's "steps" is the total
        return CommandError(f"--{flag} {getattr(args, name)!r}: {what}")

    for name, default in RUN_DEFAULTS.items():
        if not hasattr(args, name):
            continue
        value = getattr(args, name)
        if isinstance(default, int) and (isinstance(value, bool) or not isinstance(value, int)):
            raise bad(name, "must be an integer")
        if isinstance(default, float) and (isinstance(value, bool) or not isinstance(value, (int, float))
                                           or not math.isfinite(value)):
            raise bad(name, "must be a finite number")
    minimum = {"steps": 0, "batch_size": 1, "warmup": 0, "save_every": 1, "sample_every": 0, "num_samples": 1,
               "sample_steps": 0}
    for name, low in minimum.items():
        if hasattr(args, name) and getattr(args, name) < low:
            raise bad(name, f"must be >= {low}")
    if hasattr(args, "lr") and not args.lr > 0:
        raise bad("lr", "must be > 0")
    if args.sampler not in SAMPLERS:
        raise bad("sampler", f"is not one of {', '.join(sorted(SAMPLERS))}")


def _check_sampling(model: Model, args: argparse.Namespace) -> None:
    """Makes the sampler the sample grids will use (steps, method against the model's T), so
    that a setting it refuses stops the command before it trains or samples."""
    try:
        with model.schedule as schedule, Sampler(schedule, args.num_samples, model.sample_shape,
                                                 method=SAMPLERS[args.sampler], steps=args.sample_steps, clip=True,
                                                 seed=args.sample_seed):
            pass
    except DDPMError as error:
        raise CommandError(f"--sampler {args.sampler} --sample-steps {args.sample_steps}: {error}") from None


def learning_rate(step: int, peak: float, warmup: int) -> float:
    """The learning rate of step `step` (0-based, counted over the whole run): linear warm-up to peak."""
    return peak * min(1.0, (step + 1) / warmup) if warmup > 0 else peak


def _groups(base: int, mult: Sequence[int]) -> int:
    """The largest GroupNorm group count <= 8 that divides every channel count base·m."""
    return max(g for g in (8, 4, 2, 1) if all(base * m % g == 0 for m in mult))


class GridPlan:
    """What a sample grid shows: `labels` (n,) the class of each image (None: unconditional),
    `nrow` images per row (None: ⌈√n⌉) and `row_labels` the text beside each row (or None).

    A class-conditional model's grid has one row per class, ⌈K/C⌉ images each (K =
    --num-samples, C classes), the class's name beside it; with one class asked for, K images
    of it, its name beside every row."""

    def __init__(self, model: Model, num_samples: int, class_names: Sequence[str] = (),
                 only: int | None = None, nrow: int | None = None) -> None:
        cond = model.conditioning
        self.labels, self.nrow, self.row_labels = None, nrow, None
        if cond.kind != "classes":
            return
        count = cond.num_classes
        names = list(class_names) if len(class_names) == count else [str(k) for k in range(count)]
        if only is not None:
            self.labels = np.full(num_samples, only, dtype=np.int32)
            per_row = nrow or int(np.ceil(np.sqrt(num_samples)))
            self.row_labels = [names[only]] * -(-num_samples // per_row)
        elif nrow is None:  # one row per class
            self.nrow = -(-num_samples // count)
            self.labels = np.repeat(np.arange(count, dtype=np.int32), self.nrow)
            self.row_labels = names
        else:  # the caller's row length: the classes in turn, no row labels
            self.labels = (np.arange(num_samples) % count).astype(np.int32)

    def count(self, num_samples: int) -> int:
        return num_samples if self.labels is None else len(self.labels)


def draw_samples(model: Model, args: argparse.Namespace, plan: GridPlan, progress: Any = False) -> np.ndarray:
    """The grid's images (n, C, H, W) in [-1, 1] from the model's EMA weights."""
    guidance = args.guidance if plan.labels is not None else 1.0
    return model.sample(plan.count(args.num_samples), method=SAMPLERS[args.sampler], steps=args.sample_steps,
                        clip=True, seed=args.sample_seed, labels=plan.labels, guidance_scale=guidance,
                        progress=progress)


def save_grid(images: np.ndarray, path: Path, plan: GridPlan) -> Path:
    return datasets.save_grid(images, path, nrow=plan.nrow, row_labels=plan.row_labels)


# ---- train ------------------------------------------------------------------------------

def _new_model(args: argparse.Namespace, num_classes: int) -> Model:
    network = UNetConfig(channels=args.channels, height=args.image_size, width=args.image_size,
                         base_channels=args.base_channels, channel_mult=args.channel_mult, res_blocks=args.res_blocks,
                         attention_levels=args.attention_levels, groups=_groups(args.base_channels, args.channel_mult))
    recipe = TrainConfig(learning_rate=args.lr, ema_decay=args.ema_decay, seed=args.seed,
                         label_dropout=0.1 if num_classes else 0.0)
    cond = Conditioning.classes(num_classes) if num_classes else Conditioning.none()
    make = NoiseSchedule.cosine if args.schedule == "cosine" else NoiseSchedule.linear
    with make(args.timesteps) as schedule:
        return Model(schedule, network=network, train=recipe, cond=cond)


def _resumed_model(args: argparse.Namespace) -> Model:
    """The checkpoint's model; --image-size and --channels default to (and must match) its network."""
    if not args.resume.is_file():
        raise CommandError(f"--resume: no checkpoint {str(args.resume)!r}")
    model = Model.load(args.resume)
    c, h, w = model.sample_shape if len(model.sample_shape) == 3 else (None, None, None)
    if h is None or h != w:
        model.close()
        raise CommandError(f"--resume: {args.resume} is not a model of square images (sample shape {model.sample_shape})")
    for flag, given, has in (("--image-size", args.image_size, h), ("--channels", args.channels, c)):
        if given is not None and given != has:
            model.close()
            raise CommandError(f"{flag} {given} does not match the checkpoint's {has}")
    args.image_size, args.channels = h, c
    kind = model.conditioning.kind
    if kind not in ("none", "classes"):
        model.close()
        raise CommandError(f"--resume: the model is conditioned on {kind}; this command trains unconditional and "
                           "class-conditional models only")
    conditional = kind == "classes"
    if conditional != args.class_cond:
        model.close()
        raise CommandError(f"the checkpoint is {'class-conditional' if conditional else 'unconditional'}: "
                           f"{'add' if conditional else 'drop'} --class-cond")
    return model


def train(args: argparse.Namespace) -> int:
    if args.more_steps is not None and args.steps is not None:
        raise CommandError("give --steps (steps of this run) or --total-steps (the model's total), not both")
    if args.resume is not None:
        model = _resumed_model(args)
        args.out = args.out or args.resume.parent
        changed = _settle(args, _read_run_info(args.resume))
        if changed:
            print("note: changed since the checkpoint's run, so the resumed steps differ from an unbroken run's: "
                  + "; ".join(changed), flush=True)
    else:
        _settle(args, {})
        args.out = args.out or Path("runs/train")
        args.image_size = args.image_size or 32
        args.channels = args.channels or 3
        model = None
    try:
        if args.more_steps is not None:  # --steps N: N more than the model has taken
            args.steps = (model.step if model is not None else 0) + args.more_steps
        _check_settings(args)
        if args.out.exists() and not args.out.is_dir():
            raise CommandError(f"--out {str(args.out)!r} is a file, not a folder")
        loaded = datasets.image_folder(args.data, args.image_size, args.channels, labels=args.class_cond)
        images, labels, classes = loaded if args.class_cond else (loaded, None, [])
        args.classes = classes
        if model is None:
            model = _new_model(args, len(classes))
        elif classes and model.conditioning.num_classes != len(classes):
            raise CommandError(f"the checkpoint has {model.conditioning.num_classes} classes, {args.data} has "
                               f"{len(classes)} ({', '.join(classes)})")
        if args.sample_every:
            _check_sampling(model, args)
        _warn_if_budget_too_small(args, len(classes), model.step)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "samples").mkdir(exist_ok=True)
        _write_json(args.out / RUN_INFO, {
            "data": str(args.data), "image_size": args.image_size, "channels": args.channels, "classes": classes,
            "settings": {name: getattr(args, name) for name in RUN_DEFAULTS}})
        return _train(model, images, labels, args)
    finally:
        if model is not None:
            model.close()


def _warn_if_budget_too_small(args: argparse.Namespace, num_classes: int, start: int) -> None:
    """A line when a class-conditional run's total is far (over 2×) below IMAGES_PER_CLASS,
    with the --total-steps that would reach it at this batch size."""
    if not num_classes or args.steps <= start:
        return
    per_class = args.steps * args.batch_size / num_classes
    if per_class * 2 >= IMAGES_PER_CLASS:
        return
    needed = math.ceil(IMAGES_PER_CLASS * num_classes / args.batch_size)
    print(f"warning: --total-steps {args.steps} at --batch-size {args.batch_size} shows the model "
          f"{per_class:,.0f} images per class; class-conditional samples follow their labels after about "
          f"{IMAGES_PER_CLASS:,} (measured on digits): use --total-steps {needed} (or --steps "
          f"{needed - start} more), or a larger --batch-size, for classes you can recognise", flush=True)


def _train(model: Model, images: np.ndarray, labels: np.ndarray | None, args: argparse.Namespace) -> int:
    """Trains the model up to --total-steps with Model.fit's loop, the checkpoints and grids as
    its hooks; returns the exit status (130 after Ctrl-C)."""
    start, total, n = model.step, args.steps, len(images)  # args.steps: --total-steps
    what = f"{n} images of {args.channels}×{args.image_size}×{args.image_size}" + \
        (f" in {model.conditioning.num_classes} classes" if labels is not None else "")
    print(f"{what} from {args.data}; {model!r}", flush=True)
    batches = Minibatches(model, images, args.batch_size, args.seed, labels=labels)
    plan = GridPlan(model, args.num_samples, args.classes)
    progress = TrainProgress(start, total, bar=not args.no_progress, lines=True)
    checkpoint = args.out / CHECKPOINT
    loss_log = LossLog(args.out, start, lambda k: learning_rate(k, args.lr, args.warmup))

    def save_and_sample(loop: TrainLoop) -> None:
        """The checkpoint and/or the sample grid due after this step, with one line about them."""
        step, wrote = loop.step, []
        if step % args.save_every == 0 or step == total:
            model.save(checkpoint)  # atomic: a temporary file renamed over the last checkpoint
            loss_log.write(loop.losses[:loop.done])  # loss.csv (and loss.png) up to the checkpoint's step
            wrote.append(f"saved {checkpoint}")
        if args.sample_every and (step % args.sample_every == 0 or step == total):
            grid = args.out / "samples" / f"step_{step:06d}.png"
            save_grid(draw_samples(model, args, plan), grid, plan)  # atomic too
            wrote.append(f"samples {grid}")
        if wrote:
            progress.write(f"step {step}: loss {loop.losses[max(0, loop.done - 25):loop.done].mean():.4f}, "
                           + ", ".join(wrote))

    loop = TrainLoop(model, batches, lr_schedule=lambda i: learning_rate(start + i, args.lr, args.warmup),
                     progress=progress, hooks=[save_and_sample], interrupt=StopOnInterrupt())
    t0 = time.perf_counter()
    try:
        with loop.interrupt, _saved_on_error(model, checkpoint, start, progress):
            if start >= total:
                print(f"the model has taken {start} steps already (--total-steps {total}): nothing to train",
                      flush=True)
            else:  # printed once Ctrl-C is caught: from here on it stops cleanly
                print(f"training steps {start + 1}..{total}, batch {args.batch_size}, lr {args.lr:g} "
                      f"({args.warmup} warm-up steps); writing {args.out}", flush=True)
            losses = loop.run(max(0, total - start))
    finally:
        progress.close()
    if len(losses):
        seconds = time.perf_counter() - t0
        k = min(25, len(losses) // 2) or 1
        print(f"trained {len(losses)} steps in {seconds:.1f} s ({1e3 * seconds / len(losses):.0f} ms/step); loss "
              f"{losses[:k].mean():.4f} (first {k}) -> {losses[-k:].mean():.4f} (last {k})", flush=True)
    if len(losses) and not have_matplotlib():
        print(f"loss log: {args.out / 'loss.csv'} (no loss.png: matplotlib is not installed; "
              "pip install matplotlib)", flush=True)
    if loop.stopped == "interrupt":
        model.save(checkpoint)
        loss_log.write(losses)
        print(f"interrupted (Ctrl-C) at step {model.step}: saved {checkpoint}; continue with --resume {checkpoint}",
              flush=True)
        return 130
    return 0


class _saved_on_error:
    """Around the training loop: an error once steps were taken saves the checkpoint first (one
    line says so), then goes on up to main's one-line report."""

    def __init__(self, model: Model, checkpoint: Path, start: int, progress: TrainProgress) -> None:
        self.model, self.checkpoint, self.start, self.progress = model, checkpoint, start, progress

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, error: Any, traceback: Any) -> bool:
        if kind is None or not issubclass(kind, Exception) or self.model.step == self.start:
            return False
        try:
            self.model.save(self.checkpoint)
            note = f"stopped by an error at step {self.model.step}: saved {self.checkpoint}"
        except Exception as failed:  # noqa: BLE001 - the first error is the one to report
            note = f"stopped by an error at step {self.model.step}; saving {self.checkpoint} failed too: {failed}"
        self.progress.close()
        print(note, file=sys.stderr, flush=True)
        return False


# ---- sample -----------------------------------------------------------------------------

def sample(args: argparse.Namespace) -> int:
    if not args.checkpoint.is_file():
        raise CommandError(f"--checkpoint: no file {str(args.checkpoint)!r}")
    run = _read_run_info(args.checkpoint)
    _settle(args, run)
    _check_settings(args)
    if args.out.is_dir():
        raise CommandError(f"--out {str(args.out)!r} is a folder; name the PNG file to write")
    classes = run.get("classes", [])
    with Model.load(args.checkpoint) as model:
        if len(model.sample_shape) != 3:
            raise CommandError(f"{args.checkpoint} is not an image model (sample shape {model.sample_shape})")
        _check_sampling(model, args)
        only = None
        if args.class_ is not None:
            if model.conditioning.kind != "classes":
                raise CommandError("--class: the model is unconditional")
            only = classes.index(args.class_) if args.class_ in classes else _class_index(args.class_, model)
        plan = GridPlan(model, args.num_samples, classes, only=only, nrow=args.nrow)
        # a tqdm bar, else a line every tenth of the steps (--no-progress: neither)
        progress, close = sampling_progress("sampling", lines=True) if not args.no_progress else (False, None)
        t0 = time.perf_counter()
        try:
            images = draw_samples(model, args, plan, progress=progress)
        finally:
            if close is not None:
                close()
        seconds = time.perf_counter() - t0
        step = model.step
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_grid(images, args.out, plan)
    rows = "one row per class, " if plan.row_labels and only is None else ""
    print(f"{len(images)} samples ({rows}{args.sampler}, {args.sample_steps} steps) of the model at step {step} "
          f"in {seconds:.1f} s: wrote {args.out}", flush=True)
    return 0


def _class_index(text: str, model: Model) -> int:
    k = model.conditioning.num_classes
    if not text.isdigit() or not 0 <= int(text) < k:
        raise CommandError(f"--class must be a class name from the training folder or an index in 0..{k - 1} "
                           f"(got {text!r})")
    return int(text)


# ---- main -------------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.threads is not None:
            set_num_threads(args.threads)
        return train(args) if args.command == "train" else sample(args)
    except (CommandError, DDPMError, OSError, ValueError, MemoryError, ImportError) as error:
        print(f"python -m swiftddpm {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # outside the training loop (loading images, sampling): nothing to save
        print(f"python -m swiftddpm {args.command}: interrupted", file=sys.stderr)
        return 130
