"""Data-parallel training and sharded sampling over MPI (mpi4py).

Run the same script on N processes (`mpirun -np 4 python train.py`); every rank builds the
same Model with the same seed (so the same initial parameters, checked by hash), then:

    from swiftddpm import distributed as dist

    losses = dist.fit(model, data, steps=3000, batch_size=256,          # global batch
                      checkpoint="run.safetensors", checkpoint_every=500)
    x = dist.sample(model, 1000, method="ddim", steps=50, seed=1)       # rank 0: (1000, D); others: None

fit is Model.fit's training loop (swiftddpm._train_loop) with its own train step. One train
step on rank r of N: the global batch of B rows (the same indices on every rank, drawn from
(seed, step) as Model.fit draws them) is cut into N contiguous shards; rank r computes the
gradients of its rows (ddpm_model_compute_gradients with its global sample offset), the ranks
sum loss and gradients with MPI_Allreduce in place, and each applies the same update (clip, AdamW,
EMA: ddpm_model_apply_gradients). Every random draw of the engine is keyed by (seed, step,
global sample index), so the N ranks draw exactly what one process draws for the whole
batch; the result equals one process with batch B up to the order of the float sums over
the batch (see README "Training on several processes").

Rank 0 logs and writes checkpoints (Model.save is atomic: a temporary file renamed over
the path); `load` resumes every rank from one checkpoint. Every `check_every` steps the
ranks compare a hash of their parameters and raise OutOfStepError if they differ.

Nothing here does maths: the reduction is MPI's, the rest is libddpm's.
"""

from __future__ import annotations

import ctypes
import os
import sys
import time
import warnings
from typing import Any, Callable

import numpy as np

try:
    from mpi4py import MPI
except ImportError as error:  # pragma: no cover - depends on the machine
    raise ImportError("swiftddpm.distributed needs mpi4py (pip install mpi4py, with an MPI such as "
                      "Debian's openmpi-bin libopenmpi-dev installed)") from error

from . import _lib
from ._arrays import float_ptr
from ._conditions import cond_batch, cond_ref
from ._interrupt import StopOnInterrupt
from ._progress import TrainProgress
from ._sample_params import fresh_seed, predict_params, sample_params
from ._scalars import as_int
from ._train_loop import Minibatches, TrainLoop
from .errors import DDPMError, check, error_for_status
from .model import Model

__all__ = ["OutOfStepError", "shard_bounds", "parameter_hash", "parameters", "check_in_step", "fit", "load",
           "sample"]


class OutOfStepError(DDPMError, RuntimeError):
    """The ranks' parameters differ (or a rank failed while the others went on)."""


def shard_bounds(n: int, rank: int, size: int) -> tuple[int, int]:
    """Rows lo:hi of n that rank `rank` of `size` owns: contiguous, sizes differ by at most one."""
    return n * rank // size, n * (rank + 1) // size


def _sample_shard(n: int, rank: int, size: int) -> tuple[int, int]:
    """Rank `rank`'s samples lo:hi of n for sampling: whole chunks of DDPM_PREDICT_CHUNK samples
    (the model predicts chunk by chunk), so that each rank computes bitwise what one process does."""
    chunk = _lib.DDPM_PREDICT_CHUNK
    first, last = shard_bounds(-(-n // chunk), rank, size)
    return min(first * chunk, n), min(last * chunk, n)


def parameter_hash(model: Model) -> int:
    """FNV-1a (64 bit) over the bits of the parameters then the EMA (ddpm_model_parameter_hash)."""
    h = ctypes.c_uint64()
    check(_lib.lib.ddpm_model_parameter_hash(model._h(), ctypes.byref(h)))
    return h.value


def parameters(model: Model, *, ema: bool = False) -> np.ndarray:
    """A copy of the flat parameters (P,), or of their EMA."""
    out = np.empty(model.num_parameters, dtype=np.float32)
    check(_lib.lib.ddpm_model_get_parameters(model._h(), int(ema), float_ptr(out), out.size))
    return out


def _comm(comm: Any) -> Any:
    return MPI.COMM_WORLD if comm is None else comm


def check_in_step(model: Model, comm: Any = None, where: str = "") -> int:
    """Raises OutOfStepError unless every rank's parameter hash (and step) is the same; returns the hash."""
    comm = _comm(comm)
    mine = (parameter_hash(model), model.step)
    every = comm.allgather(mine)
    if any(other != mine for other in every):
        raise OutOfStepError(f"ranks out of step{' ' + where if where else ''}: (hash, step) per rank = "
                             + ", ".join(f"{r}: ({h:#018x}, {s})" for r, (h, s) in enumerate(every)))
    return mine[0]


def _on_every_rank(comm: Any, what: str, fn: Callable[[], Any]) -> Any:
    """fn() on every rank, then the ranks compare: a rank whose fn raised a DDPMError raises
    it, and the others raise OutOfStepError naming it — never some ranks waiting in a
    collective call for one that gave up. Returns fn()'s result."""
    result, error = None, None
    try:
        result = fn()
    except DDPMError as e:
        error = e
    failed = comm.allgather(None if error is None else str(error))
    if error is not None:
        raise error
    if any(failed):
        raise OutOfStepError(f"{what} failed on rank(s) " + ", ".join(f"{r}: {m}" for r, m in enumerate(failed) if m))
    return result


def _gradient_view(model: Model) -> np.ndarray:
    """The model's own gradient buffer (P,) as a numpy array (no copy): reduced in place."""
    ptr = _lib.FLOAT_P()
    count = ctypes.c_int64()
    check(_lib.lib.ddpm_model_gradients(model._h(), ctypes.byref(ptr), ctypes.byref(count)))
    return np.ctypeslib.as_array(ptr, shape=(count.value,))


def fit(model: Model, data: Any, steps: int, batch_size: int = 256, *, comm: Any = None, cond: Any = None, labels: Any = None,
        seed: int = 0, data_sharded: bool = False, checkpoint: str | os.PathLike | None = None,
        checkpoint_every: int = 0, check_every: int = 10, log_every: int = 0,
        lr_schedule: Callable[[int], float] | None = None,
        on_step: Callable[[int, float], Any] | None = None, log: str | os.PathLike | None = None,
        progress: bool = False) -> np.ndarray:
    """Trains `model` data-parallel over `comm` (default MPI.COMM_WORLD) for `steps` more
    steps: the training loop of Model.fit (swiftddpm._train_loop), whose train step here
    reduces the gradients of the ranks' shards.

    Args:
        data: (N, *sample_shape). By default every rank passes the whole training set and
            the global batch of step k is drawn from (seed, k), the same on every rank and the
            one Model.fit draws; each rank trains on its contiguous shard of that batch. With
            data_sharded=True each rank passes only its own part of the data and draws its
            shard's rows from it by (seed, k, rank) (then the run no longer equals a one-process run).
        cond (or its alias labels): (N,) class labels or (N, dim) conditioning vectors of data, or None.
        steps: train steps (global batches) in this call.  batch_size: the global batch B >= size.
        seed: keys the batch choice with the model's step, so a run resumed from a
            checkpoint picks the very batches the uninterrupted run picks.
        checkpoint, checkpoint_every: rank 0 saves the model to `checkpoint` (atomically)
            every that many steps of the model, and at the end.
        check_every: compare the ranks' parameter hashes every that many steps (0 = only at
            the start and the end); raise OutOfStepError on a difference.
        log_every: rank 0 prints step, loss and steps/s every that many steps (0 = never).
        lr_schedule: lr_schedule(i) -> learning rate for step i of this call (0-based).
        on_step: on_step(step, loss) called on every rank after each step.
        log: rank 0 writes the CSV log of Model.fit (step,loss,lr) to this file.
        progress: rank 0 shows a tqdm bar.
    Ctrl-C (SIGINT) on any rank stops every rank after the same step (the ranks agree on it
    in the step's loss reduction); the end-of-fit hash check and checkpoint follow, and fit
    returns the losses so far (a RuntimeWarning says so).
    Returns the float32 (steps,) global losses (the same on every rank).
    Raises OutOfStepError if the ranks drift apart; a DDPMError of the library (on every rank
    when one rank's loss or the reduced gradients are not finite).
    """
    comm = _comm(comm)
    rank, size = comm.Get_rank(), comm.Get_size()
    handle = model._h()
    steps = as_int(steps, "steps", minimum=0)
    batch_size = as_int(batch_size, "batch_size", minimum=size)
    checkpoint_every = as_int(checkpoint_every, "checkpoint_every", minimum=0)
    check_every = as_int(check_every, "check_every", minimum=0)
    lo, hi = shard_bounds(batch_size, rank, size)
    batches = _on_every_rank(comm, "fit", lambda: Minibatches(model, data, batch_size, seed, cond=cond, labels=labels,
                                                              shard=(lo, hi), rank=rank if data_sharded else None))
    rows = hi - lo
    x_ptr = float_ptr(batches.x)  # the buffers are refilled in place: the pointers stay valid
    cbatch = None if batches.cond is None else cond_batch(model._conditioning, batches.cond, None, rows,
                                                          batches.lengths)[0]
    grads = _gradient_view(model)
    loss_c = ctypes.c_float()
    reduced = np.zeros(2, dtype=np.float32)  # [sum of the ranks' losses, ranks that saw Ctrl-C]
    interrupt = _AgreedInterrupt()
    compute = _lib.lib.ddpm_model_compute_gradients

    def take_step() -> float:
        status = compute(handle, x_ptr, rows, batches.x.size, cond_ref(cbatch), lo, batch_size, ctypes.byref(loss_c))
        # A failed rank still joins the loss reduction, with NaN, so that every rank stops here.
        reduced[0] = loss_c.value if status == _lib.DDPM_OK else np.nan
        reduced[1] = 1.0 if interrupt.local.interrupted else 0.0
        comm.Allreduce(MPI.IN_PLACE, reduced, op=MPI.SUM)
        interrupt.interrupted = bool(reduced[1] > 0)
        if status != _lib.DDPM_OK:
            raise error_for_status(status)
        if not np.isfinite(reduced[0]):
            raise OutOfStepError(f"step {model.step}: another rank failed to compute its gradients (global loss "
                                 f"{reduced[0]}); see its error")
        comm.Allreduce(MPI.IN_PLACE, grads, op=MPI.SUM)
        check(_lib.lib.ddpm_model_apply_gradients(handle))
        return float(reduced[0])

    started = time.perf_counter()

    def after_step(loop: TrainLoop) -> None:
        done = loop.step
        if on_step is not None:
            on_step(done, loop.loss)
        if check_every and done % check_every == 0:
            check_in_step(model, comm, f"after step {done}")
        if rank == 0 and checkpoint is not None and checkpoint_every and done % checkpoint_every == 0:
            model.save(checkpoint)
        if rank == 0 and log_every and loop.done % log_every == 0:
            rate = loop.done / (time.perf_counter() - started)
            print(f"[swiftddpm.distributed] step {done} loss {loop.losses[loop.done - log_every:loop.done].mean():.4f} "
                  f"({rate:.1f} steps/s on {size} ranks)", file=sys.stderr, flush=True)

    check_in_step(model, comm, "at the start of fit (build every rank's model with the same seed)")
    start = model.step
    bar = TrainProgress(start, start + steps) if progress and rank == 0 else None
    loop = TrainLoop(model, batches, take_step=take_step, lr_schedule=lr_schedule, log=log if rank == 0 else None,
                     progress=bar, hooks=[after_step], interrupt=interrupt)
    with interrupt.local:
        losses = loop.run(steps)
    check_in_step(model, comm, "at the end of fit")
    if rank == 0 and checkpoint is not None and len(losses) and not (checkpoint_every and model.step % checkpoint_every == 0):
        model.save(checkpoint)
    comm.Barrier()  # the final checkpoint exists for every rank once fit returns
    if loop.stopped == "interrupt":
        warnings.warn(f"dist.fit: interrupted (Ctrl-C) after {loop.done} of {steps} steps; returning the losses "
                      "so far", RuntimeWarning, stacklevel=2)
    return losses


class _AgreedInterrupt:
    """Ctrl-C as the ranks agree on it: `local` is this rank's flag (a StopOnInterrupt), and
    `interrupted` is set after each step's reduction, true on every rank once any rank saw
    Ctrl-C, so that they all stop after the same step."""

    def __init__(self) -> None:
        self.local = StopOnInterrupt()
        self.interrupted = False


def load(path: str | os.PathLike, comm: Any = None) -> Model:
    """Every rank loads the checkpoint `path` (one file, on a filesystem they share) and
    checks that they hold the same model; training then resumes where it stopped."""
    model = Model.load(path)
    check_in_step(model, comm, f"after loading {os.fspath(path)}")
    return model


def sample(model: Model, n: int, *, comm: Any = None, root: int = 0, cond: Any = None, labels: Any = None,
           method: str = "ddpm",
           steps: int = 0, eta: float = 0.0, variance: str = "beta", clip: Any = None, seed: int | None = None,
           timesteps: Any = None, guidance_scale: float = 1.0,
           use_ema: bool = True) -> np.ndarray | None:
    """Model.sample(n, ...) split over the ranks: rank r draws samples lo:hi of the n
    (ddpm_model_sample_shard), and rank `root` gathers them. For a seed the result is
    bitwise what one process's Model.sample returns (DDPM and DDIM: each sample's x_T and
    noise are its slice of the one-process draw). Shards are whole chunks of
    DDPM_PREDICT_CHUNK (256) samples, the unit of the model's predictions, so fewer than
    256·N samples leave some ranks idle. Options as for Model.sample; seed=None (the default)
    draws a fresh seed on `root` and sends it to every rank (model.last_sample_seed on each).
    Returns (n, *sample_shape) float32 (a signal model's as Model.sample's) on root, None on
    the other ranks.
    """
    comm = _comm(comm)
    rank, size = comm.Get_rank(), comm.Get_size()
    if seed is None:
        seed = comm.bcast(fresh_seed() if rank == root else None, root=root)
    model.last_sample_seed = seed
    handle = model._h()
    n = as_int(n, "n", minimum=1)
    shape, S = model._sample_shape, model._sample_size
    lo, hi = _sample_shard(n, rank, size)
    local = np.empty((hi - lo, *shape), dtype=np.float32)

    def sample_shard() -> None:
        if hi == lo:
            return
        whole, whole_len = cond_batch(model._conditioning, cond, labels, n)[1]
        cbatch, _keep = cond_batch(model._conditioning, None if whole is None else whole[lo:hi], None, hi - lo,
                                   None if whole_len is None else whole_len[lo:hi])
        params = sample_params(method=method, steps=steps, eta=eta, variance=variance, clip=clip, seed=seed,
                               timesteps=timesteps)
        predict = predict_params(guidance_scale, use_ema)
        check(_lib.lib.ddpm_model_sample_shard(handle, ctypes.byref(params), ctypes.byref(predict),
                                               cond_ref(cbatch), hi - lo, lo, n, float_ptr(local), local.size))

    _on_every_rank(comm, "sharded sampling", sample_shard)
    counts = [(b - a) * S for a, b in (_sample_shard(n, r, size) for r in range(size))]
    out = np.empty((n, *shape), dtype=np.float32) if rank == root else None
    comm.Gatherv(local, [out, counts] if rank == root else None, root=root)
    signal = model._signal_shape()
    return out if out is None or signal is None else out.reshape(n, *signal)

