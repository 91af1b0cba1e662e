"""Progress shown while the library works: a tqdm bar when tqdm is installed (tqdm.auto: a
widget in a notebook), else printed lines where asked, else nothing.

    TrainProgress       a training run, counted in the model's steps (the training loop)
    sampling_progress   the progress callable of a sampling call (see _sampling.py)
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

RECENT = 25  # the loss shown is the mean of the last RECENT steps


def tqdm_bar(**options: Any):
    """A tqdm.auto bar, or None when tqdm is not installed."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(**options)


class TrainProgress:
    """The progress of training from model step `start` to `total`: a tqdm bar (bar=True and
    tqdm installed) refreshed every `bar_every` steps, else with lines=True a printed line
    every tenth of the run and at its end, else nothing. Both show the mean loss of the last
    RECENT steps."""

    def __init__(self, start: int, total: int, *, bar: bool = True, lines: bool = False, bar_every: int = 1,
                 leave: bool = True) -> None:
        self.start, self.total, self.bar_every = start, total, bar_every
        self.bar = tqdm_bar(total=total, initial=start, desc="training", unit="step", dynamic_ncols=True,
                            leave=leave) if bar else None
        self.lines = lines and self.bar is None
        self.line_every = max(1, (total - start) // 10)
        self.started = time.perf_counter()

    def update(self, step: int, history: np.ndarray) -> None:
        """After model step `step`; history: this run's losses so far."""
        if self.bar is not None:
            if (step - self.start) % self.bar_every == 0 or step == self.total:
                self.bar.update(step - self.bar.n)
                self.bar.set_postfix(loss=f"{history[-RECENT:].mean():.4f}", refresh=False)
        elif self.lines and ((step - self.start) % self.line_every == 0 or step == self.total):
            seconds = time.perf_counter() - self.started
            print(f"step {step}/{self.total}  loss {history[-RECENT:].mean():.4f}  {seconds:.1f} s "
                  f"({1e3 * seconds / (step - self.start):.0f} ms/step)", flush=True)

    def write(self, line: str) -> None:
        """Prints a line (above the bar, if there is one)."""
        if self.bar is not None:
            self.bar.write(line)
        else:
            print(line, flush=True)

    def close(self) -> None:
        """Closes the bar (idempotent)."""
        if self.bar is not None:
            self.bar.close()


def sampling_progress(desc: str, *, lines: bool = False) -> tuple[Callable | None, Callable[[], None]]:
    """A progress(step, total, t, x) callable that drives a tqdm bar and the function that
    closes the bar; without tqdm, with lines=True one that prints a line every tenth of the
    steps, else (None, a no-op)."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return (_progress_lines(desc) if lines else None), lambda: None
    bar = None

    def progress(step, total, t, x):
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc=desc, leave=False)
        if step > 0:  # step 0 reports x_T, before any reverse step
            bar.update(1)
        return False

    def close():
        if bar is not None:
            bar.close()

    return progress, close


def _progress_lines(desc: str) -> Callable:
    """progress(step, total, t, x) printing "desc: step/total, seconds" every tenth of the steps."""
    started = time.perf_counter()

    def progress(step, total, t, x):
        every = max(1, total // 10)
        if step > 0 and (step % every == 0 or step == total):
            print(f"{desc}: step {step}/{total}  {time.perf_counter() - started:.1f} s", flush=True)
        return False

    return progress
