"""The performance targets of issue 11, and the verdict of one run against them.

Each target is a figure of the run (from report.summarize()'s per-configuration summary) and
a bound: speed ratios against PyTorch eager at its best thread count (ours at its best thread
count too), our 2-thread figure over our 1-thread one, our 2-thread train step's GFLOP/s over
2-thread sgemm's on its own GEMM calls, and heap allocations per steady-state step.
evaluate() gives one row per target: the figure, the bound, met or not, and by how much.
"""
from __future__ import annotations

# config: (speed ratio ≥, 2-thread / 1-thread ≥)
SPEED = {"toy2d": (3.0, 1.4), "signal": (3.0, 1.4), "large": (1.5, 1.7), "digits": (2.0, 1.7)}
SGEMM_SHARE = {"large": 0.70}  # our 2-thread train GFLOP/s ≥ this × 2-thread sgemm's on our shapes
MAX_ALLOCS = 0.0               # per steady-state train or sampling step, at every thread count


def _row(config: str, what: str, value, bound: float, at_least: bool = True, unit: str = "×") -> dict:
    if value is None:
        return dict(config=config, target=what, value=None, bound=bound, unit=unit, met=None, by=None)
    met = value >= bound if at_least else value <= bound
    by = (value / bound - 1) if at_least and bound else (value - bound)  # relative for ratios, absolute for counts
    return dict(config=config, target=what, value=value, bound=bound, unit=unit, met=met, by=by, at_least=at_least)


def evaluate(summary: list[dict]) -> list[dict]:
    rows = []
    for s in summary:
        name = s["config"]
        speed, scaling = SPEED.get(name, (None, None))
        if speed is not None:
            rows.append(_row(name, "train speed vs PyTorch eager (best threads)", s.get("best_train_ratio"), speed))
            rows.append(_row(name, "sampling speed vs PyTorch eager (best threads)", s.get("best_sample_ratio"), speed))
            rows.append(_row(name, "train 2-thread / 1-thread", s.get("train_scaling"), scaling))
            rows.append(_row(name, "sampling 2-thread / 1-thread", s.get("sample_scaling"), scaling))
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
