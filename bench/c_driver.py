"""The C side of `make bench`: builds alloc_count.c against libddpm and runs it on one
configuration (no Python in the loop), or under `perf record`.

The driver prints one JSON object: heap allocations per steady-state train step and per
sampling step, the engine's own time per train and sampling step, the cost of a trivial
library call, and every cblas_sgemm it intercepted (calls, FLOPs, time inside BLAS, and the
same calls replayed back to back). c_driver_args() turns a configuration (configs.py) into
the driver's key=value command line; the driver fills the library's model parameters from it.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

from flops import train_flops
from quiet import run_measured

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def build_c_driver(lib: str, out_dir: str) -> tuple[str | None, str | None]:
    """Compiles alloc_count.c into out_dir/ddpm_cbench, linked (with an rpath) to the folder of
    `lib`: (the executable, None), or (None, the compiler's error)."""
    cc = os.environ.get("CC", "cc")
    exe = os.path.join(out_dir, "ddpm_cbench")
    libdir = os.path.dirname(os.path.abspath(lib))
    cmd = [cc, "-O2", "-std=c11", "-rdynamic", os.path.join(HERE, "alloc_count.c"), "-I", os.path.join(ROOT, "include"),
           "-I", os.path.join(ROOT, "Sources", "DDPMKernels", "include"), "-L", libdir, "-lddpm", f"-Wl,-rpath,{libdir}", "-o", exe]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return None, proc.stderr.strip()[-500:]
    return exe, None


def c_driver_args(exe: str, cfg: dict, threads: int, quick: bool) -> list[str] | str:
    """The C driver's command line for one configuration (or an error message). Networks whose
    train step is over 20 GFLOP (the CIFAR UNets: seconds a step) are timed over fewer steps,
    chunks and replays, and count sampling allocations on 2 samples over 1 and 3 steps."""
    big = train_flops(cfg) > 20e9
    args = [exe, f"B={cfg['B']}", f"threads={threads}", f"warmup={1 if big else 3 if quick else 10}"]
    if cfg["kind"] == "mlp":
        args += ["net=mlp", f"D={cfg['D']}", f"H={cfg['H']}", f"L={cfg['L']}"]
        steps = 200 if cfg["H"] * cfg["B"] <= 128 * 256 else 50
    else:
        u = cfg["unet"]
        if u.get("cross_attention_levels"):
            return "the C driver sets no cross-attention (nor its condition)"
        mask = sum(1 << level for level in u["attention_levels"])
        args += ["net=unet", f"C={cfg['C']}", f"S={cfg['S']}", f"K={cfg['K']}", f"base={u['base_channels']}",
                 "mult=" + ",".join(str(m) for m in u["channel_mult"]), f"res_blocks={u['res_blocks']}",
                 f"attention_levels={mask}", f"heads={u.get('attention_heads', 1)}", f"groups={u.get('groups', 8)}",
                 f"dropout={u.get('dropout', 0.0)}"]
        steps = 10
    if big:
        args += [f"steps={2 if quick else 5}", f"chunks={2 if quick else 5}", f"replays={1 if quick else 3}",
                 "sample_n=2", "alloc_steps_lo=1", "alloc_steps_hi=3"]
    else:
        args += [f"steps={max(5, steps // (4 if quick else 1))}"]
    args += [f"time_n={cfg['sample_n']}", f"time_steps={2 if big and quick else 5 if quick or cfg['kind'] == 'unet' else 20}"]
    return args


def run_c_driver(exe: str, cfg: dict, threads: int, quick: bool) -> dict:
    """The C driver on one configuration: allocations, engine step times, sgemm share and replay,
    with its quiet record (quiet.run_measured)."""
    args = c_driver_args(exe, cfg, threads, quick)
    if isinstance(args, str):
        return {"error": args}
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads))
    proc, quiet = run_measured(args, env, timeout=1800 if train_flops(cfg) > 20e9 else 600)
    if proc is None:
        return {"error": "timed out", "quiet": quiet}
    if proc.returncode != 0:
        return {"error": (proc.stderr or proc.stdout).strip()[-300:], "quiet": quiet}
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]), quiet=quiet)


def profile_c_driver(exe: str, cfg: dict, name: str, out_dir: str, quick: bool, top: int = 15) -> dict:
    """perf record (cpu-clock) of the C driver at 1 thread: the hottest symbols of train and
    sampling steps together. Needs `perf`; Swift names are demangled when `swift demangle` runs."""
    if shutil.which("perf") is None:
        return {"error": "perf not found (Debian: linux-perf)"}
    args = c_driver_args(exe, cfg, 1, quick)
    if isinstance(args, str):
        return {"error": args}
    data = os.path.join(out_dir, f"{name}.perf")
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    rec = subprocess.run(["perf", "record", "-q", "-e", "cpu-clock", "-F", "1000", "-o", data, *args],
                         capture_output=True, text=True, env=env)
    if rec.returncode != 0:
        return {"error": rec.stderr.strip()[-200:]}
    rep = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", "symbol", "--stdio"],
                         capture_output=True, text=True)
    lines = [line for line in rep.stdout.splitlines() if line.strip() and not line.startswith("#") and "%" in line]
    if shutil.which("swift"):
        dem = subprocess.run(["swift", "demangle", "--simplified"], input="\n".join(lines), capture_output=True, text=True)
        if dem.returncode == 0:
            lines = dem.stdout.splitlines()
    hot = []
    for line in lines[:top]:
        pct, _, rest = line.strip().partition("%")
        symbol = re.sub(r"(\s+-)+\s*$", "", rest.split("]", 1)[-1]).strip()
        hot.append({"percent": float(pct), "symbol": symbol[:160]})
    return {"data": data, "hot": hot}
