"""The training loop that Model.fit, distributed.fit and `python -m swiftddpm train` share, so
that the three draw batches, seed, record, call back and stop on Ctrl-C alike.

One step of a run, k being the model's step count before it (model.step):
  1. minibatch k: rows drawn with replacement from the training set by
     np.random.default_rng([seed, k]), a function of (seed, k) alone — so a run stopped after
     step k and resumed (from a checkpoint, or by a second fit call) draws what an unbroken run
     draws, as every draw of the engine is keyed by (seed, step) too (Minibatches);
  2. the learning rate: lr_schedule(i), i = the step's index in this run, set when it changes;
  3. the train step: Model.train_step, or the front end's (distributed.fit reduces gradients
     over MPI); a failure raises its DDPMError with this run's losses so far as `.losses`;
  4. the loss recorded: the history, the CSV log (header step,loss,lr; a row per step, flushed
     every 100 steps and at the end), the progress bar;
  5. unless Ctrl-C was pressed, the hooks in order (a callback, checkpoints, sample grids); a
     hook returning False stops the run after this step;
  6. Ctrl-C (SIGINT in the main thread, see _interrupt.py) stops the run here, after a whole
     step: the model stays usable and the run returns the losses so far.
`steps` counts the steps of this run, in every front end (the command line's --total-steps is
the model's total, from which it works out this run's steps).
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Callable, Sequence

import numpy as np

from . import _files
from ._conditions import cond_batch
from ._interrupt import StopOnInterrupt
from ._progress import TrainProgress
from ._scalars import as_int
from .errors import DDPMError, NonFiniteError

LOG_FLUSH_EVERY = 100  # steps between flushes of the CSV log


class Minibatches:
    """Minibatch k of a training set (N, *sample_shape) and of its condition, drawn into
    buffers refilled in place: `x` (rows, S), `cond` and `lengths` (None when not given), so
    that Model.train_step takes its fast path and a ddpm_cond_batch pointing into them stays
    valid from step to step.

    Minibatch k is `batch_size` row indices drawn with replacement by
    np.random.default_rng([seed, k]); `shard` = (lo, hi) keeps rows lo:hi of it (one rank's
    part of the global batch; default all). With `rank` (data sharded over the ranks: each
    passes only its own rows) each rank draws its hi - lo rows from its own data by
    np.random.default_rng([seed, k, rank]) instead.

    Every row of the data (and of a float condition) is checked for NaN and infinity here,
    before the first step (NonFiniteError naming the row).
    """

    def __init__(self, model: Any, data: Any, batch_size: int, seed: int, *, cond: Any = None, labels: Any = None,
                 lengths: Any = None, shard: tuple[int, int] | None = None, rank: int | None = None) -> None:
        data = model._batch(data, "data")
        n = data.shape[0]
        self.data = data.reshape(n, model._sample_size)  # (N, S)
        self.all_cond, self.all_lengths = cond_batch(model._conditioning, cond, labels, n, lengths)[1]  # (N, ...), (N,)
        for what, array in (("data", self.data), ("cond", self.all_cond)):  # a bad row fails now, not when drawn
            if array is not None and array.dtype.kind == "f" and not np.isfinite(array).all():
                row = int(np.flatnonzero(~np.isfinite(array.reshape(array.shape[0], -1)).all(axis=1))[0])
                raise NonFiniteError(f"fit: {what} row {row} holds NaN or infinity")
        self.batch_size, self.seed, self.rank = batch_size, as_int(seed, "seed", minimum=0), rank
        self.lo, self.hi = shard if shard is not None else (0, batch_size)
        rows = self.hi - self.lo
        self.x = np.empty((rows, self.data.shape[1]), dtype=np.float32)  # (rows, S)
        self.cond = None if self.all_cond is None else np.empty((rows, *self.all_cond.shape[1:]), self.all_cond.dtype)
        self.lengths = None if self.all_lengths is None else np.empty(rows, dtype=np.int32)

    def indices(self, k: int) -> np.ndarray:
        """The data rows of minibatch k (this shard's)."""
        n = self.data.shape[0]
        if self.rank is not None:
            return np.random.default_rng([self.seed, k, self.rank]).integers(0, n, self.hi - self.lo)
        return np.random.default_rng([self.seed, k]).integers(0, n, self.batch_size)[self.lo:self.hi]

    def draw(self, k: int) -> None:
        """Fills x, cond and lengths with minibatch k."""
        index = self.indices(k)
        np.take(self.data, index, axis=0, out=self.x)
        if self.cond is not None:
            np.take(self.all_cond, index, axis=0, out=self.cond)
        if self.lengths is not None:
            np.take(self.all_lengths, index, out=self.lengths)


Hook = Callable[["TrainLoop"], Any]


class TrainLoop:
    """A training run of `model` on `batches` (see the module doc for one step).

    take_step: () -> loss of one train step on the drawn batch (default Model.train_step).
    lr_schedule: lr_schedule(i) -> the learning rate of step i of this run (0-based).
    log: a CSV file written as the run goes (replaced if it exists; a regular file only:
        a FIFO or a device is refused with DDPMIOError, never waited on).
    progress: a TrainProgress, or None; closed at the end of the run.
    hooks: hook(loop) after each step; returning False (exactly) stops the run.
    interrupt: what signals Ctrl-C, an object whose `.interrupted` the loop polls after each
        step and whose context the caller holds (distributed.fit: the ranks' agreed flag);
        default a StopOnInterrupt held for the run.

    While a hook runs it can read `step` (the model's step count), `done` (steps of this run),
    `loss` (this step's), `lr` (the rate it used; set it after changing the model's) and `losses`.
    After `run`, `stopped` says why the run ended early: "interrupt", "hook" or None.
    """

    def __init__(self, model: Any, batches: Minibatches, *, take_step: Callable[[], float] | None = None,
                 lr_schedule: Callable[[int], float] | None = None, log: str | os.PathLike | None = None,
                 progress: TrainProgress | None = None, hooks: Sequence[Hook] = (), interrupt: Any = None) -> None:
        self.model, self.batches = model, batches
        self.take_step = take_step or (lambda: model.train_step(batches.x, cond=batches.cond, lengths=batches.lengths))
        self.lr_schedule, self.log, self.progress, self.hooks = lr_schedule, log, progress, tuple(hooks)
        self.interrupt = interrupt
        self.step = self.done = 0
        self.loss = self.lr = float("nan")
        self.losses = np.empty(0, dtype=np.float32)
        self.stopped: str | None = None

    def run(self, steps: int) -> np.ndarray:
        """Takes up to `steps` train steps; returns their float32 losses, (steps,) or fewer if
        the run stopped early."""
        model = self.model
        self.losses = losses = np.empty(steps, dtype=np.float32)
        self.lr = model.train_config.learning_rate
        self.done, self.stopped = 0, None
        log_file = None
        try:
            log_file = None if self.log is None else _open_log(self.log)
            if log_file is not None:
                log_file.write("step,loss,lr\n")
            interrupt = self.interrupt or StopOnInterrupt()
            with contextlib.nullcontext() if self.interrupt is not None else interrupt:
                for i in range(steps):
                    k = model.step
                    self.batches.draw(k)
                    if self.lr_schedule is not None:
                        lr = float(self.lr_schedule(i))
                        if lr != self.lr:
                            model.set_learning_rate(lr)
                            self.lr = lr
                    try:
                        self.loss = loss = float(self.take_step())
                    except DDPMError as error:
                        error.losses = losses[:i].copy()  # the history so far is not lost
                        raise
                    losses[i] = loss
                    self.done, self.step = i + 1, k + 1
                    if log_file is not None:
                        log_file.write(f"{k + 1},{loss!r},{self.lr!r}\n")
                        if self.done % LOG_FLUSH_EVERY == 0:
                            log_file.flush()
                    if self.progress is not None:
                        self.progress.update(k + 1, losses[:i + 1])
                    if not interrupt.interrupted:
                        for hook in self.hooks:
                            if hook(self) is False:
                                self.stopped = "hook"
                        if self.stopped:
                            break
                    if interrupt.interrupted:
                        self.stopped = "interrupt"
                        break
        finally:
            if self.progress is not None:
                self.progress.close()
            if log_file is not None:
                log_file.close()
        return losses[:self.done].copy() if self.done < steps else losses


def _open_log(log: str | os.PathLike):
    """The CSV log, truncated: a regular file (created if missing), never a FIFO to wait on."""
    _files.path_bytes(log, "log")  # a str, bytes or PathLike without NUL
    fd = _files.open_regular(log, os.O_WRONLY | os.O_CREAT, "log")
    os.ftruncate(fd, 0)
    return os.fdopen(fd, "w", encoding="utf-8")
