"""The loss history of a command-line run, kept in its folder across resumes:

    OUT/loss.csv   step,loss,lr — one row per model step taken, the rows of earlier runs first
    OUT/loss.png   the loss against the step, raw and as a moving mean (only where matplotlib
                   is installed: `pip install matplotlib`, or the [examples] extra)

Both are rewritten atomically (a temporary file renamed over them, mode 0644 less the umask)
whenever the run writes its checkpoint, so they always end at the checkpoint's step; a resumed
run keeps the rows up to its checkpoint's step and drops any after it.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Callable

import numpy as np

from . import _files

CSV = "loss.csv"
PNG = "loss.png"
SMOOTH = 50  # steps in the plot's moving mean


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


class LossLog:
    """The loss history of the run in `folder` that starts at model step `start`."""

    def __init__(self, folder: Path, start: int, lr_of_step: Callable[[int], float]) -> None:
        self.folder, self.start, self.lr_of_step = folder, start, lr_of_step
        self.before = _read_rows(folder / CSV, start)  # (steps, 3): the earlier runs' rows up to `start`

    def write(self, losses: np.ndarray) -> list[Path]:
        """Writes loss.csv (and loss.png) with this run's losses (its steps start + 1, ...)
        after the earlier rows; returns the files written."""
        steps = np.arange(self.start + 1, self.start + 1 + len(losses))
        rates = np.array([self.lr_of_step(int(k) - 1) for k in steps])
        rows = np.concatenate([self.before, np.column_stack([steps, losses, rates])]) if len(losses) else self.before
        text = "step,loss,lr\n" + "".join(f"{int(k)},{float(loss)!r},{float(lr)!r}\n" for k, loss, lr in rows)
        written = [_files.write_atomic(self.folder / CSV, [text.encode("ascii")], "loss log")]
        if len(rows) and have_matplotlib():
            written.append(_files.write_atomic(self.folder / PNG, [_plot(rows)], "loss plot"))
        return written


def _read_rows(path: Path, up_to: int) -> np.ndarray:
    """The (k, 3) rows (step, loss, lr) of an earlier loss.csv with step <= up_to; none if there
    is no file or it cannot be read (the history then starts again at this run)."""
    empty = np.empty((0, 3))
    if up_to == 0 or not path.is_file():
        return empty
    try:
        text = _files.read_regular(path, 1 << 30, "loss log").decode("ascii")
        rows = [tuple(float(v) for v in line.split(",")) for line in text.splitlines()[1:] if line.strip()]
    except (OSError, ValueError):
        return empty
    table = np.array([r for r in rows if len(r) == 3 and r[0] <= up_to]).reshape(-1, 3)
    return table


def _plot(rows: np.ndarray) -> bytes:
    """PNG bytes of the loss against the step (matplotlib's Figure: no pyplot, no display)."""
    from matplotlib.figure import Figure

    steps, losses = rows[:, 0], rows[:, 1]
    fig = Figure(figsize=(6, 3.5), layout="constrained")
    ax = fig.subplots()
    ax.plot(steps, losses, lw=0.5, alpha=0.35, color="C0", label="loss of each step")
    k = min(SMOOTH, len(losses))
    if k > 1:
        mean = np.convolve(losses, np.ones(k) / k, mode="valid")  # mean of steps i-k+1..i
        ax.plot(steps[k - 1:], mean, lw=1.5, color="C0", label=f"mean of {k} steps")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.legend(loc="upper right")
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100)
    return png.getvalue()
