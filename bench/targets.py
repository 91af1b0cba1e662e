"""The performance targets of issue 18 (and issue 11's sgemm share), and the verdict of one run
against them.

Each target is a figure of the run (from report.summarize()'s per-configuration summary) and
a bound: speed ratios against PyTorch eager at its best thread count (ours at its best thread
count too), in train steps and in sampling (at every sampling batch the configuration times);
our 2-thread figure over our 1-thread one; our 2-thread train step's GFLOP/s over 2-thread
sgemm's on its own GEMM calls; and heap allocations per steady-state step.
evaluate() gives one row per target: the figure, the bound, met or not, and by how much.
"""
from __future__ import annotations

# config: speed ratio against PyTorch eager ≥ (train steps and sampling)
SPEED = {"toy2d": 3.0, "signal": 3.0, "large": 1.3, "digits": 2.0, "cifar": 1.5, "cifar-ddpm": 1.5}
# our 2-thread / 1-thread ≥ this, in training and sampling ...
SCALING = 1.7
# ... but ≥ this for (config, phase, sampling batch or None for every batch)
SCALING_EXCEPTIONS = {("cifar", "sampling", None): 1.8}
SGEMM_SHARE = {"large": 0.70}  # our 2-thread train GFLOP/s ≥ this × 2-thread sgemm's on our shapes (issue 11)
MAX_ALLOCS = 0.0               # per steady-state train or sampling step, at every thread count


def scaling_bound(config: str, phase: str, batch: int | None = None) -> float:
    return SCALING_EXCEPTIONS.get((config, phase, batch), SCALING_EXCEPTIONS.get((config, phase, None), SCALING))


def _row(config: str, what: str, value, bound: float, at_least: bool = True, unit: str = "×", **extra) -> dict:
    if value is None:
        return dict(config=config, target=what, value=None, bound=bound, unit=unit, met=None, by=None, **extra)
    met = value >= bound if at_least else value <= bound
    by = (value / bound - 1) if at_least and bound else (value - bound)  # relative for ratios, absolute for counts
    return dict(config=config, target=what, value=value, bound=bound, unit=unit, met=met, by=by, at_least=at_least, **extra)


def speed_rows(name: str, s: dict) -> list[dict]:
    """Speed against PyTorch and 2-thread scaling: train, then sampling at each batch."""
    rows = []
    speed = SPEED.get(name)
    at = s.get("sample_at", {})
    batches = list(at) or [None]
    label = (lambda n: f", B={n}") if len(batches) > 1 else (lambda n: "")
    if speed is not None:
        rows.append(_row(name, "train speed vs PyTorch eager (best threads)", s.get("best_train_ratio"), speed))
        for n in batches:
            value = s.get("best_sample_ratio") if n is None or n == batches[0] else at[n].get("ratio")
            rows.append(_row(name, "sampling speed vs PyTorch eager (best threads)" + label(n),
                             value, speed, batch=int(n) if n else None))
    rows.append(_row(name, "train 2-thread / 1-thread", s.get("train_scaling"), scaling_bound(name, "train")))
    for n in batches:
        value = s.get("sample_scaling") if n is None or n == batches[0] else at[n].get("scaling")
        rows.append(_row(name, "sampling 2-thread / 1-thread" + label(n), value,
                         scaling_bound(name, "sampling", int(n) if n else None), batch=int(n) if n else None))
    return rows


def evaluate(summary: list[dict]) -> list[dict]:
    rows = []
    for s in summary:
        name = s["config"]
        rows += speed_rows(name, s)
        if name in SGEMM_SHARE:
            e = s.get("ours_2", {})
            share = e["c_train_gflops"] / e["sgemm_replay_gflops"] if e.get("sgemm_replay_gflops") else None
            rows.append(_row(name, "2-thread train GFLOP/s / 2-thread sgemm on its shapes", share,
                             SGEMM_SHARE[name], unit="%"))
        counted = sorted((k, v) for k, v in s.items() if k.startswith("ours_") and "train_allocs_per_step" in v)
        for key, e in counted:
            t = key.split("_")[1]
            for phase in ("train", "sample"):
                rows.append(_row(name, f"allocations / {phase} step, {t} thread(s)", e[f"{phase}_allocs_per_step"],
                                 MAX_ALLOCS, at_least=False, unit=""))
        if not counted:  # the C driver did not run: say so rather than drop the target
            rows.append(_row(name, "allocations / step (C driver)", None, MAX_ALLOCS, at_least=False, unit=""))
    return rows


def verdict(row: dict) -> str:
    """'met (+12%)', 'NOT met (−40%)', 'NOT met (+39 allocations)', or 'no figure'."""
    if row["met"] is None:
        return "no figure"
    word = "met" if row["met"] else "NOT met"
    if row.get("at_least", True):
        return f"{word} ({row['by']:+.0%})"
    return word if row["met"] else f"{word} (+{row['by']:.4g})"


def figure(row: dict) -> str:
    if row["value"] is None:
        return "—"
    if row["unit"] == "%":
        return f"{row['value']:.0%} (≥ {row['bound']:.0%})"
    if row["unit"] == "×":
        return f"{row['value']:.2f}× (≥ {row['bound']:.1f}×)"
    return f"{row['value']:.2f} (≤ {row['bound']:.0f})"
