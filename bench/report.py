"""The report of `make bench`: the summary of each configuration (speed ratios, GFLOP/s,
sgemm shares), the markdown and JSON files (bench/out/latest.{md,json} and a timestamped
copy), the table printed at the end, and the one-line progress messages printed on the way.

The report is a dict, written as JSON as it is:
  machine, quick, threads, engines, library, configs   what was run, where
  runs       one worker result per config × engine × thread count (workers.py)
  c_driver   {config: {threads: the C driver's result}} (c_driver.py)
  summary    one summarize() per config
  parity, overhead, profile, torch_version, library_version, total_s
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess

import targets
from configs import CONFIGS, T, sample_batches
from flops import forward_flops, train_flops
from quiet import busy_reasons, describe, loadavg, machine_busy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def machine_info() -> dict:
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "cpu": cpu,
            "cores": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "quiet_at_start": loadavg(), "python": platform.python_version(), "platform": platform.platform(),
            "git": commit + ("-dirty" if dirty else "")}


def fmt(x, spec=".1f", missing="—"):
    return missing if x is None else format(x, spec)


def ok(r) -> bool:
    return bool(r) and "error" not in r


def best_of(runs: dict) -> dict:
    """{train: (threads, steps/s), sample: (threads, s)} of the fastest thread count of one engine's runs."""
    if not runs:
        return {}
    bt = min(runs, key=lambda t: runs[t]["train"]["s_median"])
    bs = min(runs, key=lambda t: runs[t]["sample_s"])
    return {"train": {"threads": bt, "steps_per_s": 1 / runs[bt]["train"]["s_median"]},
            "sample": {"threads": bs, "s": runs[bs]["sample_s"]}}


def summarize(name: str, rows: dict, cdrv: dict, threads: list[int]) -> dict:
    """Ratios against PyTorch's best thread count (eager, and torch.compile beside it), our
    2-thread/1-thread scaling, GFLOP/s against sgemm on the same calls, sgemm shares and
    allocations per step for one config."""
    s = {"config": name}
    tt = {t: rows.get(("torch", t)) for t in threads if ok(rows.get(("torch", t)))}
    tc = {t: rows.get(("compiled", t)) for t in threads if ok(rows.get(("compiled", t)))}
    mine = {t: rows.get(("ours", t)) for t in threads if ok(rows.get(("ours", t)))}
    if tt:
        b = best_of(tt)
        s["torch_best_train"], s["torch_best_sample"] = b["train"], b["sample"]
    if tc:
        b = best_of(tc)
        s["compiled_best_train"], s["compiled_best_sample"] = b["train"], b["sample"]
    if mine:
        b = best_of(mine)
        s["ours_best_train"], s["ours_best_sample"] = b["train"], b["sample"]
        if tt:
            s["best_train_ratio"] = b["train"]["steps_per_s"] / s["torch_best_train"]["steps_per_s"]
            s["best_sample_ratio"] = s["torch_best_sample"]["s"] / b["sample"]["s"]
        if tc:
            s["best_train_ratio_compiled"] = b["train"]["steps_per_s"] / s["compiled_best_train"]["steps_per_s"]
            s["best_sample_ratio_compiled"] = s["compiled_best_sample"]["s"] / b["sample"]["s"]
        if 1 in mine and 2 in mine:
            s["train_scaling"] = mine[1]["train"]["s_median"] / mine[2]["train"]["s_median"]
            s["sample_scaling"] = mine[1]["sample_s"] / mine[2]["sample_s"]
    engines = {"torch": tt, "compiled": tc, "ours": mine}
    s["effective"] = effective_gflops(name, engines)
    s["cpu_ratio_1t"] = cpu_ratios(tt.get(1), mine.get(1))
    s["sample_at"] = sampling_at_batches(name, engines)
    for t in threads:
        r, c = rows.get(("ours", t)), cdrv.get(t)
        entry = {}
        if ok(r):
            entry = {"train_steps_per_s": 1 / r["train"]["s_median"], "sample_s": r["sample_s"]}
            if tt:
                entry["train_speed_ratio"] = entry["train_steps_per_s"] / s["torch_best_train"]["steps_per_s"]
                entry["sample_speed_ratio"] = s["torch_best_sample"]["s"] / r["sample_s"]
            if tc:
                entry["train_speed_ratio_compiled"] = entry["train_steps_per_s"] / s["compiled_best_train"]["steps_per_s"]
                entry["sample_speed_ratio_compiled"] = s["compiled_best_sample"]["s"] / r["sample_s"]
        if ok(c):
            flops = c["train_gemm_flops_per_step"]
            entry.update(gemm_flops_per_step=flops, c_train_step_s=c["train_step_s_median"],
                         c_train_gflops=flops / c["train_step_s_median"] / 1e9,
                         gemm_share_train=c["train_gemm_s_per_step"] / c["train_step_s_median"],
                         sgemm_replay_gflops=flops / c["train_gemm_replay_s"] / 1e9,
                         sgemm_in_engine_gflops=flops / c["train_gemm_s_per_step"] / 1e9,
                         train_allocs_per_step=c["train_allocs_per_step"],
                         sample_allocs_per_step=c["sample_allocs_per_step"])
            if ok(r):
                entry["train_gflops"] = flops / r["train"]["s_median"] / 1e9
                entry["python_overhead_s"] = r["train"]["s_median"] - c["train_step_s_median"]
                if r.get("analytic_gemm_flops_per_step") is not None:
                    entry["flops_analytic_matches_counted"] = r["analytic_gemm_flops_per_step"] == flops
            if c.get("sample_step_s"):
                entry.update(c_sample_step_s=c["sample_step_s"],
                             gemm_share_sample=c["sample_gemm_s_per_step"] / c["sample_step_s"],
                             sample_gflops=c["sample_gemm_flops_per_step"] / c["sample_step_s"] / 1e9,
                             sample_sgemm_replay_gflops=c["sample_gemm_flops_per_step"] / c["sample_gemm_replay_s"] / 1e9)
        if entry:
            s[f"ours_{t}"] = entry
    return s


def effective_gflops(name: str, engines: dict) -> dict:
    """{engine: {threads: {train, sample: {batch: GFLOP/s}}}}: the configuration's counted
    FLOPs (flops.py: direct convolution, forward + backward) over each run's median train step
    and over its sampling time (one forward a step; a guided configuration makes one pass too,
    as it samples with w = 1)."""
    cfg = CONFIGS.get(name)
    if cfg is None:
        return {}
    out = {}
    for engine, runs in engines.items():
        for t, r in runs.items():
            e = {"train": train_flops(cfg) / r["train"]["s_median"] / 1e9, "sample": {}}
            for n, m in r.get("sample_by_batch", {}).items():
                e["sample"][n] = forward_flops(cfg, int(n)) * T / m["s"] / 1e9
            out.setdefault(engine, {})[str(t)] = e
    return out


def cpu_ratios(theirs: dict | None, ours: dict | None) -> dict:
    """PyTorch eager's CPU seconds over ours at 1 thread, per train step and per sampling call at
    each batch: the speed ratio a busy machine disturbs least (a thread waiting for a core
    uses no CPU), shown beside the wall-time ratios."""
    if not theirs or not ours:
        return {}
    out = {}
    if theirs["train"].get("cpu_s_median") and ours["train"].get("cpu_s_median"):
        out["train"] = theirs["train"]["cpu_s_median"] / ours["train"]["cpu_s_median"]
    for n, m in ours.get("sample_by_batch", {}).items():
        t = theirs.get("sample_by_batch", {}).get(n, {})
        if t.get("cpu_s") and m.get("cpu_s"):
            out[f"sample_{n}"] = t["cpu_s"] / m["cpu_s"]
    return out


def cpu_ratio_lines(report: dict) -> list[str]:
    lines = []
    for s in report["summary"]:
        r = s.get("cpu_ratio_1t")
        if r:
            lines.append(f"{s['config']}: train ×{fmt(r.get('train'), '.2f')}, " + ", ".join(
                f"sampling B={k[len('sample_'):]} ×{v:.2f}" for k, v in r.items() if k.startswith("sample_")))
    return lines


def sampling_at_batches(name: str, engines: dict) -> dict:
    """{batch: {ratio, ratio_compiled, scaling}} for every sampling batch of the configuration:
    ours at its best thread count against PyTorch eager (and compiled) at theirs, and our
    1-thread time over our 2-thread time."""
    cfg = CONFIGS.get(name)
    if cfg is None:
        return {}

    def best(runs: dict, n: str):
        times = [r["sample_by_batch"][n]["s"] for r in runs.values() if n in r.get("sample_by_batch", {})]
        return min(times) if times else None
    out = {}
    for n in map(str, sample_batches(cfg)):
        ours, eager, compiled = best(engines["ours"], n), best(engines["torch"], n), best(engines["compiled"], n)
        e = {}
        if ours and eager:
            e["ratio"] = eager / ours
        if ours and compiled:
            e["ratio_compiled"] = compiled / ours
        mine = engines["ours"]
        if 1 in mine and 2 in mine and n in mine[1].get("sample_by_batch", {}) and n in mine[2].get("sample_by_batch", {}):
            e["scaling"] = mine[1]["sample_by_batch"][n]["s"] / mine[2]["sample_by_batch"][n]["s"]
        out[n] = e
    return out


def effective_lines(report: dict) -> list[str]:
    """One line per configuration and engine: effective GFLOP/s of train steps and sampling at
    each thread count, against the FMA peak at that thread count."""
    peak = report.get("fma_peak", {})
    lines = []
    for s in report["summary"]:
        for engine, per_t in s.get("effective", {}).items():
            cells = []
            for t, e in sorted(per_t.items()):
                pt = peak.get(t, {}).get("gflops_best") if ok(peak) else None
                share = f" ({e['train'] / pt:.0%} of peak)" if pt else ""
                samp = ", ".join(f"B={n} {fmt(g, '.0f')}" for n, g in e["sample"].items())
                cells.append(f"{t}T train {e['train']:.0f}{share}, sampling {samp}")
            lines.append(f"{s['config']} {engine}: " + " | ".join(cells))
    return lines


def peak_line(report: dict) -> str:
    peak = report.get("fma_peak", {})
    if not ok(peak):
        return f"FMA peak: {peak.get('error', 'not measured')}"
    return "FMA peak (GFLOP/s): " + "; ".join(
        f"{t} thread(s) {p['gflops_best']:.0f} (AVX2 {fmt(p.get('gflops_avx2'), '.0f')}, AVX-512 {fmt(p.get('gflops_avx512'), '.0f')})"
        for t, p in peak.items() if ok(p))


def run_busy(r: dict) -> list[str]:
    """Why one measurement (worker or C driver result) may be off, [] when quiet."""
    timed = r.get("train", {}).get("cpu_per_wall") if isinstance(r.get("train"), dict) else None
    return busy_reasons(r.get("quiet"), r.get("threads", 0), timed)


def flag(r: dict) -> str:
    reasons = run_busy(r)
    return f" ⚠ BUSY ({', '.join(reasons)})" if reasons else ""


def roofline_lines(report: dict) -> list[str]:
    """One line per configuration and thread count: our engine's GFLOP/s (C driver, train step
    and sampling step), sgemm's on the same calls, the FMA peak; and for 2 threads, our train
    step's share of 2-thread sgemm."""
    peak = report.get("fma_peak", {})
    p1 = peak.get("1", {}).get("gflops_best") if ok(peak) else None
    lines = []
    for s in report["summary"]:
        for t in report["threads"]:
            e = s.get(f"ours_{t}")
            if not e or "c_train_gflops" not in e:
                continue
            pt = peak.get(str(t), {}).get("gflops_best") if ok(peak) else None
            line = (f"{s['config']} {t}T: ours {fmt(e['c_train_gflops'], '.0f')} GFLOP/s train, "
                    f"{fmt(e.get('sample_gflops'), '.0f')} sampling | sgemm same shapes "
                    f"{fmt(e['sgemm_replay_gflops'], '.0f')} train, {fmt(e.get('sample_sgemm_replay_gflops'), '.0f')} "
                    f"sampling | FMA peak {fmt(p1, '.0f')}/core, {fmt(pt, '.0f')} on {t}")
            if t == 2:
                line += f" | ours/sgemm train {fmt(e['c_train_gflops'] / e['sgemm_replay_gflops'], '.0%')}"
            lines.append(line)
    return lines


def busy_banner(report: dict) -> list[str]:
    """The run-wide warning (empty on a quiet machine): load before the run, other processes'
    CPU use over it, and how many measurements were flagged."""
    m = report["machine"]
    reasons = machine_busy(m.get("quiet_at_start"), report.get("others_cores"))
    flagged = [r for r in report["runs"] if run_busy(r)]
    if flagged:
        reasons.append(f"{len(flagged)} of {len(report['runs'])} measurements flagged")
    if not reasons:
        return []
    return [f"**BUSY: {'; '.join(reasons)}. The machine was not quiet: absolute numbers are low, ratios "
            "and 2-thread figures unreliable (rows marked ⚠). Re-run on a quiet machine (load < 0.3) "
            "before quoting them.**", ""]


def markdown(report: dict) -> str:
    m = report["machine"]
    start, end = m.get("quiet_at_start"), m.get("quiet_at_end")
    lines = [f"# SwiftDDPM bench — {m['date']}", "",
             f"CPU: {m['cpu']}, {m['cores']} cores visible; OpenBLAS: {report.get('openblas') or '?'}; "
             f"PyTorch {report.get('torch_version', '?')}; libddpm {report.get('library_version', '?')}; git {m['git']}; "
             f"{'quick' if report['quick'] else 'full'} mode; {report.get('total_s', 0):.0f} s.", "",
             f"Quiet: before the run {describe(start) if start else '?'}; after it {describe(end) if end else '?'}; "
             f"other processes used {fmt(report.get('others_cores'), '.2f')} cores on average during it.", ""]
    lines += busy_banner(report)
    lines += targets_markdown(report)
    lines += ["", "## Roofline", "",
              "GFLOP/s of the engine's own steps (C driver, no Python; GEMM FLOPs counted by intercepting every "
              "cblas_sgemm), of cblas_sgemm replaying exactly those calls (same library, threads), and the FMA "
              "peak (fma_peak.c: independent AVX2 FMA chains, best of 20 × 50 ms, at the start and the end of the run). "
              "ours/sgemm: our train step's GFLOP/s over sgemm's on its own calls (large's target at 2 threads: ≥ 70%).",
              "", "```"]
    lines += roofline_lines(report) or ["(no C driver results)"]
    lines += ["```", "", "## Effective GFLOP/s", "",
              "Every engine's train step and sampling against the configuration's direct-convolution FLOPs (bench/flops.py: "
              "multiply-adds of the convolutions, linear layers and attention products as a direct convolution does them, "
              "forward + backward for a train step, one forward per sampling step; elementwise work not counted), "
              "against the FMA peak at that thread count. " + peak_line(report), "", "```"]
    lines += effective_lines(report) or ["(no runs)"]
    lines += ["```", "", "Ours against PyTorch eager at 1 thread by CPU time (their CPU seconds per train step and "
              "per sampling call over ours): on a busy machine, where a thread waits for a core without using CPU, "
              "the ratio least disturbed.", "", "```"]
    lines += cpu_ratio_lines(report) or ["(no 1-thread runs of both)"]
    lines += ["```", "", "## Runs", "",
              "Train: steps/s from Python (Model.train_step / the PyTorch reference's step), median of timed "
              "chunks after warm-up. Sample: seconds for 1000 DDPM ancestral steps (σ² = β_t, EMA weights) "
              "of n samples; timed over fewer steps and scaled to 1000 where marked *. RSS: peak resident MB "
              "of that engine's own subprocess, Python and imports included (in brackets: after imports, "
              "before the model). compiled: PyTorch under torch.compile (compile seconds: train, sampling). "
              "CPU/wall: the process's CPU time over the timed train chunks per wall second (≈ 1 at 1 thread "
              "on a quiet core). Load: 1-minute load average and processes running just before the child; "
              "others: cores used by other processes while it ran.", "",
              "| config | engine | threads | train steps/s | sample 1000 steps (s) | n | peak RSS MB (base) | "
              "compile s | CPU/wall | load, running | others | quiet? |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in report["runs"]:
        cfg = report["configs"][r["config"]]
        q = r.get("quiet") or {}
        qcells = (f"{fmt(q.get('before', {}).get('load', [None])[0], '.2f')}, {q.get('before', {}).get('running', '—')} | "
                  f"{fmt(q.get('others_cores'), '.2f')} | {'⚠ ' + ', '.join(run_busy(r)) if run_busy(r) else 'ok'} |")
        if not ok(r):
            lines.append(f"| {r['config']} | {r['engine']} | {r['threads']} | — | — | {cfg['sample_n']} | "
                         f"error: {r.get('error', '?')[:160]} | | | " + qcells)
            continue
        star = "*" if r.get("sample_steps_run", T) < T else ""
        bad = "" if r.get("sample_finite", True) else " (non-finite samples!)"
        comp = (f"{fmt(r.get('compile_train_s'), '.0f')}, {fmt(r.get('compile_sample_s'), '.0f')}"
                if "compile_train_s" in r else "")
        lines.append(f"| {r['config']} | {r['engine']} | {r['threads']} | {1 / r['train']['s_median']:.1f} | "
                     f"{r['sample_s']:.2f}{star}{bad} | {cfg['sample_n']} | {r['peak_rss_mb']:.0f} ({r['base_rss_mb']:.0f}) | "
                     f"{comp} | {fmt(r['train'].get('cpu_per_wall'), '.2f')} | " + qcells)
    lines += ["", "Ours against PyTorch's best thread count (speed ratios, > 1: ours is faster): eager, and in "
              "brackets torch.compile where it ran. GFLOP/s: "
              "GEMM FLOPs of one train step (every cblas_sgemm the engine makes, intercepted in the C driver; "
              "for the MLP equal to the analytic count) / step time from Python. sgemm: the same calls replayed "
              "back to back on libddpm's own OpenBLAS (same shapes and strides, same thread count). "
              "In sgemm: share of the engine's step (C loop, no Python) spent inside cblas_sgemm.", "",
              "| config | threads | train ratio (compiled) | sample ratio (compiled) | train GFLOP/s | sgemm GFLOP/s (replay) | "
              "in sgemm: train | in sgemm: sample |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for s in report["summary"]:
        for t in report["threads"]:
            e = s.get(f"ours_{t}")
            if not e:
                continue
            lines.append(f"| {s['config']} | {t} | {fmt(e.get('train_speed_ratio'), '.2f')} "
                         f"({fmt(e.get('train_speed_ratio_compiled'), '.2f')}) | "
                         f"{fmt(e.get('sample_speed_ratio'), '.2f')} ({fmt(e.get('sample_speed_ratio_compiled'), '.2f')}) | "
                         f"{fmt(e.get('train_gflops'))} | "
                         f"{fmt(e.get('sgemm_replay_gflops'))} | {fmt(e.get('gemm_share_train'), '.0%')} | "
                         f"{fmt(e.get('gemm_share_sample'), '.0%')} |")
    cd = report.get("c_driver", {})
    if cd:
        lines += ["", "C driver (no Python; each thread count): heap allocations (malloc family, all threads) in steady "
                  "state, the engine's own time per train step and sampling step (n samples), and the Python "
                  "overhead: Model.train_step from Python − the same step from the C loop (shown where the step "
                  "is short enough for the difference to stand out of the noise).", "",
                  "| config | threads | allocs / train step | allocs / sample step | allocs / sample call | "
                  "C train step ms | Python train step ms | Python overhead µs | C sample step ms |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for name, per_t in cd.items():
            for t, c in per_t.items():
                if not c:
                    continue
                if not ok(c):
                    lines.append(f"| {name} | {t} | error: {c.get('error', '?')[:100]} | | | | | | |")
                    continue
                py = c.get("python_step_s")
                lines.append(f"| {name} | {t}{flag(c)} | {c['train_allocs_per_step']:.2f} | {c['sample_allocs_per_step']:.2f} | "
                             f"{c['sample_allocs_per_call']:.0f} | {c['train_step_s_median'] * 1e3:.3f} | "
                             f"{fmt(py * 1e3 if py else None, '.3f')} | "
                             f"{fmt((py - c['train_step_s_median']) * 1e6 if py and c['train_step_s_median'] < 1e-3 else None)} | "
                             f"{fmt(c['sample_step_s'] * 1e3 if c.get('sample_step_s') else None, '.2f')} |")
    lines += mpi_markdown(report)
    o = report.get("overhead")
    if ok(o) and "c_step_s" in o:
        lines += ["", f"ctypes: a trivial call (ddpm_model_step) costs {o['ctypes_noop_s'] * 1e6:.2f} µs from Python "
                  f"({o['model_step_property_s'] * 1e6:.2f} µs through the Model.step property), "
                  f"{o['c_noop_s'] * 1e9:.0f} ns from C. A tiny model's train step (D=2, H=16, L=1, B=8): "
                  f"{o['train']['s_median'] * 1e6:.1f} µs from Python, {o['c_step_s'] * 1e6:.1f} µs from C, "
                  f"so Model.train_step adds ≈ {o['python_overhead_s'] * 1e6:.1f} µs per call."]
    if report.get("parity"):
        lines += ["", "Forward parity (our ε̂ vs the PyTorch reference loaded with our weights, 4 timesteps): " +
                  "; ".join(f"{k}: {'ok' if v.get('ok') else 'MISMATCH'} (max |Δ| {fmt(v.get('max_abs_diff'), '.2e')}"
                            f" of max |ε̂| {fmt(v.get('max_abs_value'), '.2f')})"
                            if ok(v) else f"{k}: error {v.get('error', '?')[:100]}" for k, v in report["parity"].items())]
    for name, prof in report.get("profile", {}).items():
        if not ok(prof):
            lines += ["", f"Profile of {name}: {prof.get('error', '?')}"]
            continue
        lines += ["", f"Profile of {name} (perf, cpu-clock, C driver at 1 thread: train then sampling steps; "
                  f"self time by symbol; data in {os.path.basename(prof['data'])}):", "",
                  "| % | symbol |", "|---:|---|"]
        lines += [f"| {h['percent']:.1f} | `{h['symbol']}` |" for h in prof["hot"]]
    return "\n".join(lines) + "\n"


def targets_markdown(report: dict) -> list[str]:
    """The issue's targets, one row each: the figure, met or not and by how much."""
    rows = report.get("targets") or []
    if not rows:
        return []
    busy = " (machine BUSY: see above)" if busy_banner(report) else ""
    lines = ["## Targets (issue 18)" + busy, "",
             "Ours and PyTorch eager each at their best thread count; torch.compile beside it where it ran.", "",
             "| config | target | figure (bound) | verdict | vs torch.compile |", "|---|---|---:|---|---:|"]
    by_config = {s["config"]: s for s in report["summary"]}
    for row in rows:
        s = by_config.get(row["config"], {})
        beside = ""
        if row["target"].startswith("train speed"):
            beside = fmt(s.get("best_train_ratio_compiled"), ".2f") + ("×" if "best_train_ratio_compiled" in s else "")
        elif row["target"].startswith("sampling speed"):
            at = row.get("batch")
            c = s.get("sample_at", {}).get(str(at), {}).get("ratio_compiled") if at else s.get("best_sample_ratio_compiled")
            beside = fmt(c, ".2f") + ("×" if c is not None else "")
        lines.append(f"| {row['config']} | {row['target']} | {targets.figure(row)} | {targets.verdict(row)} | {beside} |")
    return lines


def mpi_markdown(report: dict) -> list[str]:
    """The data-parallel rows: train steps/s of one process at 1 and 2 BLAS threads against
    mpirun -np R at 1 BLAS thread a rank, same global batch."""
    runs = report.get("mpi")
    if not runs:
        return []
    ours = {(r["config"], r["threads"]): 1 / r["train"]["s_median"] for r in report["runs"]
            if ok(r) and r.get("engine") == "ours"}
    ranks = sorted({r["ranks"] for r in runs})
    lines = ["", "Data-parallel training (swiftddpm.distributed's step: compute gradients, MPI_Allreduce, apply), "
             "train steps/s of the same global batch: one process with 1 and 2 BLAS threads against mpirun -np R "
             "with 1 BLAS thread a rank (speed-up: the most ranks against 1 thread).", "",
             "| config | 1 process, 1 thread | 1 process, 2 threads | " + " | ".join(f"mpirun -np {n}" for n in ranks)
             + " | speed-up |", "|---|---:|---:|" + "---:|" * len(ranks) + "---:|"]
    for name in dict.fromkeys(r["config"] for r in runs):
        by = {r["ranks"]: r for r in runs if r["config"] == name}
        rate = {n: 1 / r["train"]["s_median"] for n, r in by.items() if ok(r)}
        cells = [fmt(rate.get(n)) + ("" if not ok(by.get(n)) or by[n].get("in_step", True) else " (OUT OF STEP)")
                 if ok(by.get(n)) else "error" for n in ranks]
        base = ours.get((name, 1))
        best = rate.get(max(ranks))
        lines.append(f"| {name} | {fmt(base)} | {fmt(ours.get((name, 2)))} | " + " | ".join(cells) +
                     f" | {fmt(best / base if best and base else None, '.2f')}× |")
    return lines


def progress_mpi(r: dict) -> str:
    if not ok(r):
        return "error: " + r.get("error", "?")[:300]
    return (f"train {1 / r['train']['s_median']:.1f} steps/s, ranks {'in step' if r.get('in_step') else 'OUT OF STEP'} "
            f"({r['wall_s']:.0f} s)")


def print_table(report: dict) -> None:
    print()
    print(f"{'config':8} {'engine':8} {'thr':>3} {'train st/s':>11} {'sample s':>9} {'RSS MB':>7}")
    for r in report["runs"]:
        if not ok(r):
            print(f"{r['config']:8} {r['engine']:8} {r['threads']:>3}  error: {r.get('error', '?')[:100]}")
        else:
            star = "*" if r.get("sample_steps_run", T) < T else " "
            print(f"{r['config']:8} {r['engine']:8} {r['threads']:>3} {1 / r['train']['s_median']:>11.1f} "
                  f"{r['sample_s']:>9.2f}{star}{r['peak_rss_mb']:>7.0f}{flag(r)}")
    print()
    for line in roofline_lines(report):
        print(line)
    print(peak_line(report))
    for line in effective_lines(report):
        print(line)
    for line in cpu_ratio_lines(report):
        print("1-thread CPU-time ratio, " + line)
    print()
    for row in report.get("targets") or []:
        print(f"{row['config']:8} {row['target']:55} {targets.figure(row):>22}  {targets.verdict(row)}")
    for line in busy_banner(report):
        print(line.replace("**", ""))
    print()
    for s in report["summary"]:
        for t in report["threads"]:
            e = s.get(f"ours_{t}")
            if e:
                print(f"{s['config']:8} ours {t}T: train ×{fmt(e.get('train_speed_ratio'), '.2f')}, "
                      f"sample ×{fmt(e.get('sample_speed_ratio'), '.2f')} vs PyTorch best; train "
                      f"{fmt(e.get('train_gflops'))} GFLOP/s (sgemm replay {fmt(e.get('sgemm_replay_gflops'))}); "
                      f"in sgemm: train {fmt(e.get('gemm_share_train'), '.0%')}, sample {fmt(e.get('gemm_share_sample'), '.0%')}")



def write_files(report: dict, out_dir: str) -> str:
    """Writes bench-<stamp>.{json,md} and latest.{json,md} into out_dir; returns the stamped
    path without its extension."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    md = markdown(report)
    for base in (f"bench-{stamp}", "latest"):
        with open(os.path.join(out_dir, base + ".json"), "w") as f:
            json.dump(report, f, indent=1, default=str)
        with open(os.path.join(out_dir, base + ".md"), "w") as f:
            f.write(md)
    return os.path.join(out_dir, "bench-" + stamp)


# ---- progress, one line per measurement ---------------------------------------------------


def progress_run(r: dict) -> str:
    if not ok(r):
        return "error: " + r.get("error", "?")[:300]
    comp = (f", compiled in {r['compile_train_s']:.0f} + {r['compile_sample_s']:.0f} s"
            if "compile_sample_s" in r else "")
    more = "".join(f", B={n} {m['s']:.2f} s" for n, m in list(r.get("sample_by_batch", {}).items())[1:])
    return (f"train {1 / r['train']['s_median']:.1f} steps/s, sample {r['sample_s']:.2f} s"
            f"{'' if r.get('sample_steps_run', T) == T else ' (scaled)'}{more}, "
            f"RSS {r['peak_rss_mb']:.0f} MB ({r['wall_s']:.0f} s, CPU {r['quiet']['cpu_s']:.0f} s{comp})"
            f"{flag(r)}")


def progress_c_driver(c: dict) -> str:
    if not ok(c):
        return f"error: {c.get('error', '?')[:200]}"
    return (f"train step {c['train_step_s_median'] * 1e3:.2f} ms ({c['train_gemm_s_per_step'] / c['train_step_s_median']:.0%} "
            f"in sgemm), {c['train_allocs_per_step']:.1f} allocs/step, sample step {c['sample_step_s'] * 1e3:.2f} ms"
            f"{flag(c)}")


def progress_peak(peak: dict) -> str:
    if not ok(peak):
        return f"error: {peak.get('error', '?')}"
    return ", ".join(f"{t} thread(s) {p['gflops_best']:.0f} GFLOP/s ({p.get('isa', '?')})" if ok(p) else f"{t}: {p.get('error')}"
                     for t, p in peak.items())


def progress_profile(prof: dict) -> str:
    if not ok(prof):
        return f"error: {prof['error']}"
    return ", ".join(f"{h['percent']:.0f}% {h['symbol'][:40]}" for h in prof["hot"][:5])


def progress_parity(parity: dict) -> str:
    return ", ".join(f"{k} {'ok' if v.get('ok') else v.get('error', 'MISMATCH')[:80]}"
                     f" (max |Δ| {fmt(v.get('max_abs_diff'), '.1e')})" for k, v in parity.items())


def progress_overhead(o: dict) -> str:
    return (f"ctypes no-op {o['ctypes_noop_s'] * 1e6:.2f} µs, Model.train_step adds "
            f"{o['python_overhead_s'] * 1e6:.1f} µs over the C loop")
