#!/usr/bin/env python3
"""`make bench`: SwiftDDPM against a PyTorch reference of the same networks and recipe.

Both are measured in the same run on the same machine.

For each configuration (D = data dims, H = width, L = residual blocks, B = batch):
  - train steps/s (warm-up, then the median of timed chunks) and the time of 1000-step DDPM
    ancestral sampling, for PyTorch and for SwiftDDPM (through the Python package), each
    with 1 and 2 threads, each engine and thread count in its own subprocess, whose peak
    resident memory (ru_maxrss) is reported;
  - the speed ratio ours/PyTorch against PyTorch's best thread count (> 1: ours is faster);
  - the achieved GFLOP/s of our train step (GEMM FLOPs of one step: counted analytically
    for the MLP, and by intercepting every cblas_sgemm call in the C driver, which must
    agree) against cblas_sgemm of the very OpenBLAS that libddpm links, replayed on exactly
    the engine's GEMM calls (same shapes, strides, library and thread count) in this run;
    and the share of our step spent inside sgemm;
  - a forward-parity check: our ε̂ against the PyTorch reference loaded with our weights;
  - data-parallel training (--mpi, on by default where mpirun and mpi4py exist): train
    steps/s of the MLP configurations under `mpirun -np 1` and `-np 2` (1 BLAS thread a
    rank), against one process with 1 and 2 BLAS threads;
  - from a C driver (alloc_count.c, no Python): heap allocations per steady-state train
    step and per sampling step, the engine's own time per train step and sampling step,
    and from that the Python/ctypes overhead of Model.train_step.

Around them: the core's FMA peak (peak.py, fma_peak.c) for a roofline line per configuration;
PyTorch under torch.compile as a second anchor (engine "compiled"); how quiet the machine was
(quiet.py: load, CPU time beside wall time for every child, other processes' CPU use), with a
BUSY banner and per-row flags; and issue 11's targets, met or not (targets.py).

This file is the entry point: the command line and the order of the measurements. The rest:
configs.py (what is measured, for how long), workers.py (the timed child processes),
c_driver.py (alloc_count.c), peak.py (fma_peak.c), quiet.py, targets.py, report.py (summary,
tables, files).

Run through bench/run.sh (it installs PyTorch CPU into .bench-venv/); by hand:
    PYTHONPATH=python SWIFTDDPM_LIBRARY=.build/release/libddpm.so .bench-venv/bin/python bench/bench.py [--quick] [--config NAME]
Writes bench/out/bench-<stamp>.{json,md} and bench/out/latest.{json,md}.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import report
import targets
from c_driver import build_c_driver, profile_c_driver, run_c_driver
from peak import best_peak, measure_fma_peak, openblas_version
from quiet import RunMeter, describe, loadavg, machine_busy
from flops import train_flops
from configs import CONFIGS, TINY, TINY_NAME, config_timing, default_names, sample_steps, timing
from report import ok
from workers import mpirun_prefix, run_worker

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog="Writes bench/out/latest.{json,md}.")
    ap.add_argument("--quick", action="store_true", help="short timings; sampling timed over 20 steps (digits 5) and scaled to 1000")
    ap.add_argument("--sample-steps", type=int,
                    help="time sampling over exactly this many steps for every config, no time budget (scaled to 1000)")
    ap.add_argument("--config", action="append", help=f"only these ({', '.join(CONFIGS)}; default: all, "
                    "without the full-bench-only ones under --quick); repeat or comma-separate")
    ap.add_argument("--threads", default="1,2", help="thread counts to measure (default 1,2)")
    ap.add_argument("--engines", default="torch,compiled,ours",
                    help="engines to measure (default torch,compiled,ours; compiled = PyTorch under torch.compile)")
    ap.add_argument("--compile-cap", type=float, default=150,
                    help="seconds torch.compile may take per compile (train step, sampling) before the compiled "
                         "engine is given up with that reason (default 150)")
    ap.add_argument("--out", default=os.path.join(HERE, "out"), help="output folder (default bench/out)")
    ap.add_argument("--profile", action="store_true", help="also perf-record the C driver (1 thread) per config")
    ap.add_argument("--mpi", default="1,2", help="MPI rank counts for the data-parallel rows (default 1,2; '' = none)")
    args = ap.parse_args()
    args.names = [n for c in (args.config or default_names(args.quick)) for n in c.split(",") if n]
    unknown = [n for n in args.names if n not in CONFIGS]
    if unknown:
        ap.error(f"unknown config {unknown}; known: {list(CONFIGS)}")
    args.threads = [int(t) for t in args.threads.split(",")]
    args.engines = [e for e in args.engines.split(",") if e]
    args.mpi = [int(r) for r in args.mpi.split(",") if r]
    return args


def measure_config(name: str, args, times: dict, exe: str | None, rep: dict, python: str) -> None:
    """Both engines at every thread count, then the C driver (and perf) on one configuration;
    appends to rep's runs, c_driver, profile and summary."""
    cfg = CONFIGS[name]
    rows = {}
    for engine in args.engines:
        for t in args.threads:
            print(f"  {name:7} {engine:8} {t} thread(s) ...", end=" ", flush=True)
            spec = dict(cfg=cfg, threads=t, compile_cap_s=args.compile_cap, **config_timing(cfg, times, args.quick))
            if not args.sample_steps:
                spec["sample_steps"] = sample_steps(cfg, times, args.quick)
            capped = [r for (e, _), r in rows.items() if e == engine and "(capped" in r.get("error", "")]
            if capped:  # a compile that ran out of time at one thread count will at the next too
                r = {"error": f"skipped: {capped[0]['error']} at another thread count"}
            else:
                r = run_worker(engine, spec, python, timeout=1800 if train_flops(cfg) > 20e9 else 600)
            r.update(config=name, engine=engine, threads=t)
            rows[(engine, t)] = r
            rep["runs"].append(r)
            print(report.progress_run(r), flush=True)
            if ok(r) and "torch_version" in r:
                rep["torch_version"] = r["torch_version"]
            if ok(r) and "library_version" in r:
                rep["library_version"] = r["library_version"]
    cdrv = {}
    if exe is not None:
        for t in args.threads:
            c = run_c_driver(exe, cfg, t, args.quick)
            r = rows.get(("ours", t))
            if ok(c) and ok(r):
                c["python_step_s"] = r["train"]["s_median"]
            cdrv[t] = c
            print(f"  {name:7} C        {t} thread(s) ... " + report.progress_c_driver(c), flush=True)
    rep["c_driver"][name] = {str(t): c for t, c in cdrv.items()}
    if args.profile and exe is not None:
        prof = profile_c_driver(exe, cfg, name, args.out, args.quick)
        rep.setdefault("profile", {})[name] = prof
        print(f"  {name:7} perf  ... " + report.progress_profile(prof), flush=True)
    rep["summary"].append(report.summarize(name, rows, cdrv, args.threads))


def measure_parity_and_overhead(args, exe: str | None, c_err: str | None, rep: dict, python: str) -> None:
    """Forward parity per configuration (when both engines run), then the Python/ctypes
    overhead: the tiny model's train step from Python against the same from the C driver."""
    if "torch" in args.engines:  # forward parity: needs torch and swiftddpm in one process
        rep["parity"] = {name: run_worker("parity", dict(cfg=CONFIGS[name], threads=1), python) for name in args.names}
        print("  parity:", report.progress_parity(rep["parity"]), flush=True)
    o = run_worker("overhead", dict(cfg=TINY, threads=1, target_s=1.0), python)
    ct = run_c_driver(exe, TINY, 1, args.quick) if exe else {"error": c_err}
    if ok(o) and ok(ct):
        o.update(c_step_s=ct["train_step_s_median"], c_noop_s=ct["noop_call_s"],
                 python_overhead_s=o["train"]["s_median"] - ct["train_step_s_median"])
        ct["python_step_s"] = o["train"]["s_median"]
    rep["c_driver"][TINY_NAME] = {"1": ct}
    rep["overhead"] = o
    if ok(o) and "python_overhead_s" in o:
        print("  overhead:", report.progress_overhead(o), flush=True)


def measure_mpi(args, times: dict, rep: dict, python: str) -> None:
    """Train steps/s of the MLP configurations under mpirun -np R (R in args.mpi)."""
    import importlib.util
    import shutil
    if not args.mpi or "ours" not in args.engines:
        return
    if shutil.which("mpirun") is None or importlib.util.find_spec("mpi4py") is None:
        print("  mpi: skipped (needs mpirun and mpi4py: make setup-mpi)", flush=True)
        return
    rep["mpi"] = []
    for name in args.names:
        if CONFIGS[name]["kind"] != "mlp":
            continue
        for ranks in args.mpi:
            print(f"  {name:7} mpirun -np {ranks} ...", end=" ", flush=True)
            spec = dict(cfg=CONFIGS[name], threads=1, warmup=times["warmup"], target_s=times["target_s"])
            r = run_worker("mpi", spec, python, launcher=mpirun_prefix(ranks))
            r.update(config=name, ranks=ranks)
            rep["mpi"].append(r)
            print(report.progress_mpi(r), flush=True)


def main() -> int:
    args = parse_args()
    os.makedirs(args.out, exist_ok=True)
    python = sys.executable
    lib = os.environ.get("SWIFTDDPM_LIBRARY", os.path.join(ROOT, ".build", "release", "libddpm.so"))
    times = timing(args.quick, args.sample_steps)

    meter = RunMeter()
    rep = {"machine": report.machine_info(), "quick": args.quick, "threads": args.threads, "engines": args.engines,
           "library": lib, "openblas": openblas_version(lib), "configs": {n: CONFIGS[n] for n in args.names},
           "runs": [], "summary": []}
    print(f"SwiftDDPM bench — {rep['machine']['date']}, {rep['machine']['cpu']}, {rep['machine']['cores']} cores, "
          f"{'quick' if args.quick else 'full'}; library {lib}; {rep['openblas'] or 'BLAS: not OpenBLAS?'}", flush=True)
    print(f"  before: {describe(rep['machine']['quiet_at_start'])}", flush=True)
    for reason in machine_busy(rep["machine"]["quiet_at_start"]):
        print(f"  WARNING: the machine is BUSY ({reason}): the numbers will be noisy and low; the report says so.",
              flush=True)
    t_start = time.perf_counter()
    rep["fma_peak"] = measure_fma_peak(args.out, args.threads)
    print("  FMA peak:", report.progress_peak(rep["fma_peak"]), flush=True)

    exe, c_err = (None, "not run") if "ours" not in args.engines else build_c_driver(lib, args.out)
    if "ours" in args.engines and exe is None:
        print("  C driver did not build:", c_err, flush=True)
    rep["c_driver"] = {}
    for name in args.names:
        measure_config(name, args, times, exe, rep, python)
    measure_mpi(args, times, rep, python)
    if "ours" in args.engines:
        measure_parity_and_overhead(args, exe, c_err, rep, python)

    rep["fma_peak"] = best_peak(rep["fma_peak"], measure_fma_peak(args.out, args.threads))  # again: the best of both
    print("  FMA peak, best of start and end:", report.progress_peak(rep["fma_peak"]), flush=True)
    rep["total_s"] = time.perf_counter() - t_start
    rep["machine"]["quiet_at_end"] = loadavg()
    rep["others_cores"] = meter.others_cores()
    rep["targets"] = targets.evaluate(rep["summary"])
    written = report.write_files(rep, args.out)
    report.print_table(rep)
    print(f"\nwrote {written}.{{json,md}} (and latest.*) in {rep['total_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
