"""The command line: train a UNet on a folder of images, sample from a checkpoint.

    python -m swiftddpm train --data DIR --image-size 32 [--total-steps N] [--out DIR] [--resume CKPT] ...
    python -m swiftddpm sample --checkpoint CKPT --num-samples K --out grid.png

`train` is the workflow of a training script: a folder of images (datasets.image_folder) →
a UNet model (class-conditional on the sub-folders with --class-cond) → training with a
progress bar → every --save-every steps an atomic checkpoint (OUT/checkpoint.safetensors)
and every --sample-every steps a sample grid (OUT/samples/step_NNNNNN.png) → resume with
--resume OUT/checkpoint.safetensors, which continues the step count, AdamW state, EMA and
training RNG where the checkpoint left them. --total-steps is the model's total: a resumed
run trains until the model has taken that many steps (--steps, its first name, is still
accepted; in Python, `steps` is always the steps of one call: fit(data, steps=N) takes N more).

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
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import _files, datasets, set_num_threads
from ._interrupt import StopOnInterrupt
from ._progress import TrainProgress
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
    "steps": 2000, "batch_size": 16, "lr": 1e-3, "warmup": 100, "seed": 0, "save_every": 500,
    "sample_every": 500, "num_samples": 16, "sampler": "ddim", "sample_steps": 50, "guidance": 1.5, "sample_seed": 0,
}
_SHAPES_TRAINING = ("batch_size", "lr", "warmup", "seed")  # the settings that decide the steps taken
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m swiftddpm",
        description="SwiftDDPM: train a diffusion model (a UNet) on a folder of images, and sample from it.",
        epilog="Run `python -m swiftddpm train --help` or `python -m swiftddpm sample --help` for each command.")
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
                "taken N (--steps, its first name, is the same)", "--steps", dest="steps", type=_non_negative,
                metavar="N")
    _run_option(g, "--batch-size", "images per step", type=_positive, metavar="B")
    _run_option(g, "--lr", "learning rate after the warm-up", type=float)
    _run_option(g, "--warmup", "steps of linear learning-rate warm-up", type=_non_negative, metavar="N")
    g.add_argument("--ema-decay", type=float, default=0.995, metavar="D",
                   help="EMA decay of the sampling weights (keep decay**steps small: the EMA starts at the initial weights)")
    _run_option(g, "--seed", "seeds the weights, the minibatches and the training noise", type=int, metavar="S")
    g.add_argument("--threads", type=_positive, default=1, metavar="N", help="BLAS threads of libddpm")
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
                                        "A class-conditional model gets the classes in turn (0, 1, ..., K-1, 0, ...), "
                                        "or the one given by --class.")
    s.add_argument("--checkpoint", type=Path, required=True, metavar="CKPT", help="a checkpoint written by train")
    s.add_argument("--out", type=Path, default=Path("samples.png"), metavar="PNG", help="the grid to write")
    s.add_argument("--nrow", type=_positive, default=None, help="images per row (default ⌈√K⌉)")
    s.add_argument("--class", dest="class_", default=None, metavar="NAME|INDEX",
                   help="sample this class only (a name from the training folder, or an index)")
    s.add_argument("--threads", type=_positive, default=1, metavar="N", help="BLAS threads of libddpm")
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
        return CommandError(f"--{name.replace('_', '-')} {getattr(args, name)!r}: {what}")

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


def _sample_labels(model: Model, n: int) -> np.ndarray | None:
    """Classes 0, 1, ..., K-1, 0, ... for a class-conditional model; None for an unconditional one."""
    cond = model.conditioning
    return None if cond.kind != "classes" else (np.arange(n) % cond.num_classes).astype(np.int32)


def draw_samples(model: Model, args: argparse.Namespace, labels: np.ndarray | None) -> np.ndarray:
    """args.num_samples images (K, C, H, W) in [-1, 1] from the model's EMA weights."""
    guidance = args.guidance if labels is not None else 1.0
    return model.sample(args.num_samples, method=SAMPLERS[args.sampler], steps=args.sample_steps, clip=True,
                        seed=args.sample_seed, labels=labels, guidance_scale=guidance)


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
        _check_settings(args)
        if args.out.exists() and not args.out.is_dir():
            raise CommandError(f"--out {str(args.out)!r} is a file, not a folder")
        loaded = datasets.image_folder(args.data, args.image_size, args.channels, labels=args.class_cond)
        images, labels, classes = loaded if args.class_cond else (loaded, None, [])
        if model is None:
            model = _new_model(args, len(classes))
        elif classes and model.conditioning.num_classes != len(classes):
            raise CommandError(f"the checkpoint has {model.conditioning.num_classes} classes, {args.data} has "
                               f"{len(classes)} ({', '.join(classes)})")
        if args.sample_every:
            _check_sampling(model, args)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "samples").mkdir(exist_ok=True)
        _write_json(args.out / RUN_INFO, {
            "data": str(args.data), "image_size": args.image_size, "channels": args.channels, "classes": classes,
            "settings": {name: getattr(args, name) for name in RUN_DEFAULTS}})
        return _train(model, images, labels, args)
    finally:
        if model is not None:
            model.close()


def _train(model: Model, images: np.ndarray, labels: np.ndarray | None, args: argparse.Namespace) -> int:
    """Trains the model up to --total-steps with Model.fit's loop, the checkpoints and grids as
    its hooks; returns the exit status (130 after Ctrl-C)."""
    start, total, n = model.step, args.steps, len(images)  # args.steps: --total-steps
    what = f"{n} images of {args.channels}×{args.image_size}×{args.image_size}" + \
        (f" in {model.conditioning.num_classes} classes" if labels is not None else "")
    print(f"{what} from {args.data}; {model!r}", flush=True)
    batches = Minibatches(model, images, args.batch_size, args.seed, labels=labels)
    sample_labels = _sample_labels(model, args.num_samples)
    progress = TrainProgress(start, total, bar=not args.no_progress, lines=True)
    checkpoint = args.out / CHECKPOINT

    def save_and_sample(loop: TrainLoop) -> None:
        """The checkpoint and/or the sample grid due after this step, with one line about them."""
        step, wrote = loop.step, []
        if step % args.save_every == 0 or step == total:
            model.save(checkpoint)  # atomic: a temporary file renamed over the last checkpoint
            wrote.append(f"saved {checkpoint}")
        if args.sample_every and (step % args.sample_every == 0 or step == total):
            grid = args.out / "samples" / f"step_{step:06d}.png"
            datasets.save_grid(draw_samples(model, args, sample_labels), grid)  # atomic too
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
    if loop.stopped == "interrupt":
        model.save(checkpoint)
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
        labels = _sample_labels(model, args.num_samples)
        if args.class_ is not None:
            if labels is None:
                raise CommandError("--class: the model is unconditional")
            k = classes.index(args.class_) if args.class_ in classes else _class_index(args.class_, model)
            labels[:] = k
        t0 = time.perf_counter()
        images = draw_samples(model, args, labels)
        seconds = time.perf_counter() - t0
        step = model.step
    args.out.parent.mkdir(parents=True, exist_ok=True)
    datasets.save_grid(images, args.out, nrow=args.nrow)
    print(f"{args.num_samples} samples ({args.sampler}, {args.sample_steps} steps) of the model at step {step} "
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
        set_num_threads(args.threads)
        return train(args) if args.command == "train" else sample(args)
    except (CommandError, DDPMError, OSError, ValueError, MemoryError, ImportError) as error:
        print(f"python -m swiftddpm {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # outside the training loop (loading images, sampling): nothing to save
        print(f"python -m swiftddpm {args.command}: interrupted", file=sys.stderr)
        return 130
