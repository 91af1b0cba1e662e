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
  - from a C driver (alloc_count.c, no Python): heap allocations per steady-state train
    step and per sampling step, the engine's own time per train step and sampling step,
    and from that the Python/ctypes overhead of Model.train_step.

Run through bench/run.sh (it installs PyTorch CPU into .bench-venv/); by hand:
    PYTHONPATH=python SWIFTDDPM_LIBRARY=.build/release/libddpm.so .bench-venv/bin/python bench/bench.py [--quick] [--config NAME]
Writes bench/out/bench-<stamp>.{json,md} and bench/out/latest.{json,md}.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

T = 1000  # linear schedule, β 1e-4..0.02, for every configuration

# kind, shape and batch of each configuration; sample_n samples are drawn with 1000 DDPM steps.
CONFIGS = {
    "toy2d": dict(kind="mlp", D=2, H=128, L=4, B=256, sample_n=1000),
    "signal": dict(kind="mlp", D=50, H=256, L=4, B=128, sample_n=1000),
    "large": dict(kind="mlp", D=64, H=512, L=6, B=512, sample_n=256),
    # The digits UNet: 1×8×8 images, 10 classes, sampled with labels (guidance w = 1: one
    # conditional pass per step). A sampling step takes about 0.3 s in either engine, so it
    # is timed over sample_timed steps (see the time budget in main()).
    "digits": dict(kind="unet", C=1, S=8, K=10, B=128, sample_n=256, sample_timed=30,
                   unet=dict(base_channels=32, channel_mult=(1, 2, 2), res_blocks=2, attention_levels=(2,),
                             attention_heads=1, groups=8)),
}
E = 64  # sinusoidal encoding size (ddpm_model_params_default)

# ---- small helpers ----------------------------------------------------------------------


def peak_rss_mb() -> float:
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def time_steps(step, warmup: int, target_s: float, chunks: int = 5) -> dict:
    """Runs `warmup` calls, sizes chunks to about target_s/chunks seconds each, and returns
    the median and minimum seconds per call over the chunks."""
    for _ in range(warmup):
        step()
    t0 = time.perf_counter()
    probe = 0
    while probe < 2 or time.perf_counter() - t0 < 0.1:
        step()
        probe += 1
    per_call = (time.perf_counter() - t0) / probe
    per_chunk = max(1, int(target_s / chunks / per_call))
    times = []
    for _ in range(chunks):
        t0 = time.perf_counter()
        for _ in range(per_chunk):
            step()
        times.append((time.perf_counter() - t0) / per_chunk)
    return {"s_median": statistics.median(times), "s_min": min(times), "calls": per_chunk * chunks}


def mlp_gemms(D: int, H: int, L: int, B: int, train: bool = True) -> list[tuple]:
    """The cblas_sgemm calls of one MLP train step (or forward), as Linear.swift makes them:
    (m, n, k, transA, transB). forward out(B,O) = inp(B,I)·Wᵀ; backward dW(O,I) += doutᵀ·inp,
    dinp(B,I) = dout·W (not for in_proj and time.fc1, whose inputs need no gradient)."""
    layers = [(E, H, False), (H, H, True), (D, H, False)] + [(H, H, True)] * (2 * L) + [(H, D, True)]
    calls = [(B, O, I, False, True) for I, O, _ in layers]
    if train:
        for I, O, needs_dinp in reversed(layers):
            calls.append((O, I, B, True, False))
            if needs_dinp:
                calls.append((B, I, O, False, False))
    return calls


def budget_steps(sample, wanted: int, budget_s: float | None) -> int:
    """Runs `sample(k)` for a few steps (the warm-up) and returns how many of the `wanted`
    steps fit in budget_s seconds (at least that probe; all of them without a budget)."""
    probe = max(1, min(wanted, 3))
    t0 = time.perf_counter()
    sample(probe)
    per_step = (time.perf_counter() - t0) / probe
    if not budget_s:
        return wanted
    return max(probe, min(wanted, int(budget_s / per_step)))


def gemm_flops(calls) -> float:
    return float(sum(2 * m * n * k for m, n, k, _, _ in calls))


# ---- workers (each run in its own subprocess) ---------------------------------------------


def make_data(cfg: dict, n: int, seed: int = 0):
    import numpy as np
    rng = np.random.default_rng(seed)
    shape = (n, cfg["D"]) if cfg["kind"] == "mlp" else (n, cfg["C"], cfg["S"], cfg["S"])
    x = rng.uniform(-1, 1, size=shape).astype(np.float32)
    labels = (np.arange(n) % cfg["K"]).astype(np.int32) if cfg.get("K") else None
    return x, labels


def worker_torch(spec: dict) -> dict:
    import torch
    torch.set_num_threads(spec["threads"])
    sys.path.insert(0, HERE)
    import torch_reference as ref
    cfg = spec["cfg"]
    base_rss = peak_rss_mb()
    torch.manual_seed(0)
    sched = ref.LinearSchedule(T)
    if cfg["kind"] == "mlp":
        net = ref.ResidualMLP(ref.MLPConfig(cfg["D"], cfg["H"], cfg["L"], E), T)
    else:
        net = ref.make_unet(cfg["C"], cfg["S"], cfg["S"], cfg["K"], T, **cfg["unet"])
    trainer = ref.Trainer(net, sched, num_classes=cfg.get("K", 0))
    x0_np, lab_np = make_data(cfg, cfg["B"])
    x0 = torch.from_numpy(x0_np)
    labels = torch.from_numpy(lab_np).long() if lab_np is not None else None
    result = {"torch_version": torch.__version__, "base_rss_mb": base_rss,
              "parameters": sum(p.numel() for p in net.parameters())}
    result["train"] = time_steps(lambda: trainer.train_step(x0, labels), spec["warmup"], spec["target_s"])
    try:  # FLOPs of one train step as PyTorch counts them (mm/addmm/conv, forward + backward)
        from torch.utils.flop_counter import FlopCounterMode
        with FlopCounterMode(display=False) as counter:
            trainer.train_step(x0, labels)
        result["torch_counted_flops_per_step"] = float(counter.get_total_flops())
    except Exception as e:  # pragma: no cover
        result["torch_counted_flops_per_step"] = None
        result["flop_counter_error"] = str(e)
    n, steps = cfg["sample_n"], spec["sample_steps"]
    ema = trainer.ema_net()
    shape = (n,) + tuple(x0.shape[1:])
    slabels = torch.arange(n) % cfg["K"] if cfg.get("K") else None
    steps = budget_steps(lambda k: ref.ddpm_sample(ema, sched, shape, labels=slabels, steps=k), steps,
                         spec.get("sample_budget_s"))
    t0 = time.perf_counter()
    x = ref.ddpm_sample(ema, sched, shape, labels=slabels, steps=steps)
    result["sample_s"] = (time.perf_counter() - t0) * T / steps
    result["sample_steps_run"] = steps
    result["sample_finite"] = bool(torch.isfinite(x).all())
    result["peak_rss_mb"] = peak_rss_mb()
    return result


def model_kwargs(cfg: dict) -> dict:
    if cfg["kind"] == "mlp":
        return dict(network="mlp", data_dim=cfg["D"], hidden=cfg["H"], depth=cfg["L"], time_embed_dim=E, seed=0)
    return dict(network="unet", image_shape=(cfg["C"], cfg["S"], cfg["S"]), num_classes=cfg["K"], seed=0, **cfg["unet"])


def worker_ours(spec: dict) -> dict:
    import numpy as np
    import swiftddpm as sd
    sd.set_num_threads(spec["threads"])
    cfg = spec["cfg"]
    base_rss = peak_rss_mb()
    sched = sd.NoiseSchedule.linear(T)
    model = sd.Model(sched, **model_kwargs(cfg))
    x0, labels = make_data(cfg, cfg["B"])
    result = {"library": sd.library_path(), "library_version": sd.library_version(),
              "threads_in_library": sd.get_num_threads(), "base_rss_mb": base_rss,
              "parameters": model.num_parameters}
    result["train"] = time_steps(lambda: model.train_step(x0, labels), spec["warmup"], spec["target_s"])
    if cfg["kind"] == "mlp":
        result["analytic_gemm_flops_per_step"] = gemm_flops(mlp_gemms(cfg["D"], cfg["H"], cfg["L"], cfg["B"]))
    n, steps = cfg["sample_n"], spec["sample_steps"]
    slabels = (np.arange(n) % cfg["K"]).astype(np.int32) if cfg.get("K") else None
    steps = budget_steps(lambda k: model.sample(n, steps=k, labels=slabels), steps,  # respaced: k steps
                         spec.get("sample_budget_s"))
    t0 = time.perf_counter()
    x = model.sample(n, steps=0 if steps == T else steps, labels=slabels)
    result["sample_s"] = (time.perf_counter() - t0) * T / steps
    result["sample_steps_run"] = steps
    result["sample_finite"] = bool(np.isfinite(x).all())
    result["peak_rss_mb"] = peak_rss_mb()
    model.close()
    sched.close()
    return result


def worker_overhead(spec: dict) -> dict:
    """Python-side cost of Model.train_step on a tiny model (where the engine's own time is
    small), and of a trivial ctypes call; compared by the parent with the C driver's time."""
    import swiftddpm as sd
    from swiftddpm import _lib
    sd.set_num_threads(1)
    cfg = spec["cfg"]
    sched = sd.NoiseSchedule.linear(T)
    model = sd.Model(sched, **model_kwargs(cfg))
    x0, labels = make_data(cfg, cfg["B"])
    result = {"train": time_steps(lambda: model.train_step(x0, labels), 50, spec["target_s"])}
    handle = model._h()
    fn = _lib.lib.ddpm_model_step
    n = 200_000
    t0 = time.perf_counter()
    for _ in range(n):
        fn(handle)
    result["ctypes_noop_s"] = (time.perf_counter() - t0) / n
    t0 = time.perf_counter()
    for _ in range(n):
        model.step
    result["model_step_property_s"] = (time.perf_counter() - t0) / n
    return result


def worker_parity(spec: dict) -> dict:
    """Our ε̂ against the PyTorch reference holding our weights (from our checkpoint)."""
    import tempfile

    import numpy as np
    import torch
    import swiftddpm as sd
    sys.path.insert(0, HERE)
    import torch_reference as ref
    cfg = spec["cfg"]
    sched = sd.NoiseSchedule.linear(T)
    model = sd.Model(sched, **model_kwargs(cfg))
    x0, labels = make_data(cfg, cfg["B"])
    for _ in range(3):  # move the weights off their initial values (and EMA off the weights)
        model.train_step(x0, labels)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "m.safetensors")
        model.save(path)
        tensors = read_safetensors(path)
    if cfg["kind"] == "mlp":
        net = ref.ResidualMLP(ref.MLPConfig(cfg["D"], cfg["H"], cfg["L"], E), T)
    else:
        net = ref.make_unet(cfg["C"], cfg["S"], cfg["S"], cfg["K"], T, **cfg["unet"])
    state = {k[len("model."):]: torch.from_numpy(v) for k, v in tensors.items() if k.startswith("model.")}
    missing, unexpected = net.load_state_dict(state, strict=False)
    result = {"missing": list(missing), "unexpected": list(unexpected)}
    worst = 0.0
    scale = 0.0
    with torch.no_grad():
        for t in (0, 1, 500, T - 1):
            ours = model.predict_eps(x0, t, labels=labels, use_ema=False)
            theirs = net(torch.from_numpy(x0), torch.full((x0.shape[0],), t, dtype=torch.int64),
                         torch.from_numpy(labels).long() if labels is not None else None).numpy()
            worst = max(worst, float(np.abs(ours - theirs).max()))
            scale = max(scale, float(np.abs(theirs).max()))
    result["max_abs_diff"] = worst
    result["max_abs_value"] = scale
    result["ok"] = not missing and not unexpected and worst <= 1e-4 * max(1.0, scale)
    return result


def read_safetensors(path: str) -> dict:
    """A minimal safetensors reader (F32 tensors only): 8-byte little-endian header length,
    a JSON header, then the raw data."""
    import numpy as np
    with open(path, "rb") as f:
        raw = f.read()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    body = memoryview(raw)[8 + n:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__" or info.get("dtype") != "F32":
            continue
        a, b = info["data_offsets"]
        out[name] = np.frombuffer(body[a:b], dtype=np.float32).reshape(info["shape"]).copy()
    return out


WORKERS = {"torch": worker_torch, "ours": worker_ours, "overhead": worker_overhead, "parity": worker_parity}


def run_worker(kind: str, spec: dict, python: str, timeout: float = 600) -> dict:
    env = dict(os.environ)
    threads = str(spec.get("threads", 1))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = threads
    cmd = [python, os.path.abspath(__file__), "--worker", kind, "--spec", json.dumps(spec)]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    wall = time.perf_counter() - t0
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"error": " | ".join(tail) or f"exit {proc.returncode}"}
    result = json.loads(lines[-1])
    result["wall_s"] = wall
    return result


# ---- the C driver -----------------------------------------------------------------------


def build_c_driver(lib: str, out_dir: str) -> tuple[str | None, str | None]:
    cc = os.environ.get("CC", "cc")
    exe = os.path.join(out_dir, "ddpm_cbench")
    libdir = os.path.dirname(os.path.abspath(lib))
    cmd = [cc, "-O2", "-std=c11", "-rdynamic", os.path.join(HERE, "alloc_count.c"), "-I", os.path.join(ROOT, "include"),
           "-L", libdir, "-lddpm", f"-Wl,-rpath,{libdir}", "-o", exe]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return None, proc.stderr.strip()[-500:]
    return exe, None


def run_c_driver(exe: str, cfg: dict, threads: int, quick: bool) -> dict:
    """The C driver on one configuration: allocations, engine step times, sgemm share and replay."""
    args = c_driver_args(exe, cfg, threads, quick)
    if isinstance(args, str):
        return {"error": args}
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads))
    try:
        proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
    except subprocess.TimeoutExpired:
        return {"error": "timed out"}
    if proc.returncode != 0:
        return {"error": (proc.stderr or proc.stdout).strip()[-300:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def c_driver_args(exe: str, cfg: dict, threads: int, quick: bool) -> list[str] | str:
    """The C driver's command line for one configuration (or an error message)."""
    args = [exe, f"B={cfg['B']}", f"threads={threads}", f"warmup={3 if quick else 10}"]
    if cfg["kind"] == "mlp":
        args += ["net=mlp", f"D={cfg['D']}", f"H={cfg['H']}", f"L={cfg['L']}"]
        steps = 200 if cfg["H"] * cfg["B"] <= 128 * 256 else 50
    else:
        u = cfg["unet"]
        if tuple(u["channel_mult"]) != (1, 2, 2, 2)[:len(u["channel_mult"])] or u["attention_heads"] != 1 or u["groups"] != 8:
            return "the C driver only sets base_channels, levels, res_blocks and attention_levels"
        mask = sum(1 << level for level in u["attention_levels"])
        args += ["net=unet", f"C={cfg['C']}", f"S={cfg['S']}", f"K={cfg['K']}", f"base={u['base_channels']}",
                 f"levels={len(u['channel_mult'])}", f"res_blocks={u['res_blocks']}", f"attention_levels={mask}"]
        steps = 10
    args += [f"steps={max(5, steps // (4 if quick else 1))}", f"time_n={cfg['sample_n']}",
             f"time_steps={5 if quick or cfg['kind'] == 'unet' else 20}"]
    return args


def profile_c_driver(exe: str, cfg: dict, name: str, out_dir: str, quick: bool, top: int = 15) -> dict:
    """perf record (cpu-clock) of the C driver at 1 thread: the hottest symbols of train and
    sampling steps together. Needs `perf`; Swift names are demangled when `swift demangle` runs."""
    import shutil
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


# ---- the run ----------------------------------------------------------------------------


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
    return {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "cpu": cpu,
            "cores": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "loadavg_at_start": os.getloadavg(), "python": platform.python_version(), "platform": platform.platform(),
            "git": commit + ("-dirty" if dirty else "")}


def fmt(x, spec=".1f", missing="—"):
    return missing if x is None else format(x, spec)


def ok(r) -> bool:
    return bool(r) and "error" not in r


def summarize(name: str, rows: dict, cdrv: dict, threads: list[int]) -> dict:
    """Ratios against PyTorch's best thread count, GFLOP/s and sgemm shares for one config."""
    s = {"config": name}
    tt = {t: rows.get(("torch", t)) for t in threads if ok(rows.get(("torch", t)))}
    if tt:
        bt = min(tt, key=lambda t: tt[t]["train"]["s_median"])
        bs = min(tt, key=lambda t: tt[t]["sample_s"])
        s["torch_best_train"] = {"threads": bt, "steps_per_s": 1 / tt[bt]["train"]["s_median"]}
        s["torch_best_sample"] = {"threads": bs, "s": tt[bs]["sample_s"]}
    for t in threads:
        r, c = rows.get(("ours", t)), cdrv.get(t)
        entry = {}
        if ok(r):
            entry = {"train_steps_per_s": 1 / r["train"]["s_median"], "sample_s": r["sample_s"]}
            if tt:
                entry["train_speed_ratio"] = entry["train_steps_per_s"] / s["torch_best_train"]["steps_per_s"]
                entry["sample_speed_ratio"] = s["torch_best_sample"]["s"] / r["sample_s"]
        if ok(c):
            flops = c["train_gemm_flops_per_step"]
            entry.update(gemm_flops_per_step=flops, c_train_step_s=c["train_step_s_median"],
                         c_train_gflops=flops / c["train_step_s_median"] / 1e9,
                         gemm_share_train=c["train_gemm_s_per_step"] / c["train_step_s_median"],
                         sgemm_replay_gflops=flops / c["train_gemm_replay_s"] / 1e9,
                         sgemm_in_engine_gflops=flops / c["train_gemm_s_per_step"] / 1e9)
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


def markdown(report: dict) -> str:
    m = report["machine"]
    load = ", ".join(f"{x:.2f}" for x in m.get("loadavg_at_start", ()))
    lines = [f"# SwiftDDPM bench — {m['date']}", "",
             f"CPU: {m['cpu']}, {m['cores']} cores visible; load average at start {load}; git {m['git']}; "
             f"PyTorch {report.get('torch_version', '?')}; libddpm {report.get('library_version', '?')}; "
             f"{'quick' if report['quick'] else 'full'} mode; {report.get('total_s', 0):.0f} s.", ""]
    busy = max(list(m.get("loadavg_at_start", ())) + list(m.get("loadavg_at_end", ())) or [0])
    if m.get("cores") and busy > 0.5 * m["cores"]:
        lines += [f"**Warning: the machine was busy (load average up to {busy:.1f} on {m['cores']} cores): "
                  "absolute numbers are low and the 2-thread ones unreliable.**", ""]
    lines += ["Train: steps/s from Python (Model.train_step / the PyTorch reference's step), median of timed "
              "chunks after warm-up. Sample: seconds for 1000 DDPM ancestral steps (σ² = β_t, EMA weights) "
              "of n samples; timed over fewer steps and scaled to 1000 where marked *. RSS: peak resident MB "
              "of that engine's own subprocess, Python and imports included (in brackets: after imports, "
              "before the model).", "",
              "| config | engine | threads | train steps/s | sample 1000 steps (s) | n | peak RSS MB (base) |",
              "|---|---|---:|---:|---:|---:|---:|"]
    for r in report["runs"]:
        cfg = report["configs"][r["config"]]
        if not ok(r):
            lines.append(f"| {r['config']} | {r['engine']} | {r['threads']} | — | — | {cfg['sample_n']} | "
                         f"error: {r.get('error', '?')[:120]} |")
            continue
        star = "*" if r.get("sample_steps_run", T) < T else ""
        bad = "" if r.get("sample_finite", True) else " (non-finite samples!)"
        lines.append(f"| {r['config']} | {r['engine']} | {r['threads']} | {1 / r['train']['s_median']:.1f} | "
                     f"{r['sample_s']:.2f}{star}{bad} | {cfg['sample_n']} | {r['peak_rss_mb']:.0f} ({r['base_rss_mb']:.0f}) |")
    lines += ["", "Ours against PyTorch's best thread count (speed ratios, > 1: ours is faster). GFLOP/s: "
              "GEMM FLOPs of one train step (every cblas_sgemm the engine makes, intercepted in the C driver; "
              "for the MLP equal to the analytic count) / step time from Python. sgemm: the same calls replayed "
              "back to back on libddpm's own OpenBLAS (same shapes and strides, same thread count). "
              "In sgemm: share of the engine's step (C loop, no Python) spent inside cblas_sgemm.", "",
              "| config | threads | train ratio | sample ratio | train GFLOP/s | sgemm GFLOP/s (replay) | "
              "in sgemm: train | in sgemm: sample |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for s in report["summary"]:
        for t in report["threads"]:
            e = s.get(f"ours_{t}")
            if not e:
                continue
            lines.append(f"| {s['config']} | {t} | {fmt(e.get('train_speed_ratio'), '.2f')} | "
                         f"{fmt(e.get('sample_speed_ratio'), '.2f')} | {fmt(e.get('train_gflops'))} | "
                         f"{fmt(e.get('sgemm_replay_gflops'))} | {fmt(e.get('gemm_share_train'), '.0%')} | "
                         f"{fmt(e.get('gemm_share_sample'), '.0%')} |")
    cd = report.get("c_driver", {})
    if cd:
        lines += ["", "C driver (no Python; 1 thread): heap allocations (malloc family, all threads) in steady "
                  "state, the engine's own time per train step and sampling step (n samples), and the Python "
                  "overhead: Model.train_step from Python − the same step from the C loop (shown where the step "
                  "is short enough for the difference to stand out of the noise).", "",
                  "| config | allocs / train step | allocs / sample step | allocs / sample call | "
                  "C train step ms | Python train step ms | Python overhead µs | C sample step ms |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for name, per_t in cd.items():
            c = per_t.get("1") or per_t.get(1)
            if not c:
                continue
            if not ok(c):
                lines.append(f"| {name} | error: {c.get('error', '?')[:100]} | | | | | | |")
                continue
            py = c.get("python_step_s")
            lines.append(f"| {name} | {c['train_allocs_per_step']:.2f} | {c['sample_allocs_per_step']:.2f} | "
                         f"{c['sample_allocs_per_call']:.0f} | {c['train_step_s_median'] * 1e3:.3f} | "
                         f"{fmt(py * 1e3 if py else None, '.3f')} | "
                         f"{fmt((py - c['train_step_s_median']) * 1e6 if py and c['train_step_s_median'] < 1e-3 else None)} | "
                         f"{fmt(c['sample_step_s'] * 1e3 if c.get('sample_step_s') else None, '.2f')} |")
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


def print_table(report: dict) -> None:
    print()
    print(f"{'config':8} {'engine':6} {'thr':>3} {'train st/s':>11} {'sample s':>9} {'RSS MB':>7}")
    for r in report["runs"]:
        if not ok(r):
            print(f"{r['config']:8} {r['engine']:6} {r['threads']:>3}  error: {r.get('error', '?')[:100]}")
        else:
            star = "*" if r.get("sample_steps_run", T) < T else " "
            print(f"{r['config']:8} {r['engine']:6} {r['threads']:>3} {1 / r['train']['s_median']:>11.1f} "
                  f"{r['sample_s']:>9.2f}{star}{r['peak_rss_mb']:>7.0f}")
    print()
    for s in report["summary"]:
        for t in report["threads"]:
            e = s.get(f"ours_{t}")
            if e:
                print(f"{s['config']:8} ours {t}T: train ×{fmt(e.get('train_speed_ratio'), '.2f')}, "
                      f"sample ×{fmt(e.get('sample_speed_ratio'), '.2f')} vs PyTorch best; train "
                      f"{fmt(e.get('train_gflops'))} GFLOP/s (sgemm replay {fmt(e.get('sgemm_replay_gflops'))}); "
                      f"in sgemm: train {fmt(e.get('gemm_share_train'), '.0%')}, sample {fmt(e.get('gemm_share_sample'), '.0%')}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog="Writes bench/out/latest.{json,md}.")
    ap.add_argument("--quick", action="store_true", help="short timings; sampling timed over 20 steps (digits 5) and scaled to 1000")
    ap.add_argument("--sample-steps", type=int,
                    help="time sampling over exactly this many steps for every config, no time budget (scaled to 1000)")
    ap.add_argument("--config", action="append", help=f"only these ({', '.join(CONFIGS)}); repeat or comma-separate")
    ap.add_argument("--threads", default="1,2", help="thread counts to measure (default 1,2)")
    ap.add_argument("--engines", default="torch,ours", help="engines to measure (default torch,ours)")
    ap.add_argument("--out", default=os.path.join(HERE, "out"), help="output folder (default bench/out)")
    ap.add_argument("--profile", action="store_true", help="also perf-record the C driver (1 thread) per config")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--spec", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:
        print(json.dumps(WORKERS[args.worker](json.loads(args.spec))))
        return 0

    names = [n for c in (args.config or list(CONFIGS)) for n in c.split(",") if n]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        ap.error(f"unknown config {unknown}; known: {list(CONFIGS)}")
    threads = [int(t) for t in args.threads.split(",")]
    engines = [e for e in args.engines.split(",") if e]
    os.makedirs(args.out, exist_ok=True)
    python = sys.executable
    lib = os.environ.get("SWIFTDDPM_LIBRARY", os.path.join(ROOT, ".build", "release", "libddpm.so"))
    quick = args.quick
    # Sampling is timed over at most sample_steps steps and at most sample_budget_s seconds
    # (estimated from a 3-step warm-up), then scaled to 1000 steps: a step costs the same at
    # every t, and a busy machine (PyTorch's 2-thread OpenMP suffers most) cannot stretch the run.
    timing = dict(warmup=2 if quick else 5, target_s=0.6 if quick else 2.5, sample_steps=20 if quick else T,
                  sample_budget_s=8 if quick else 30)
    if args.sample_steps:
        timing.update(sample_steps=max(1, min(T, args.sample_steps)), sample_budget_s=None)

    report = {"machine": machine_info(), "quick": quick, "threads": threads, "engines": engines, "library": lib,
              "configs": {n: CONFIGS[n] for n in names}, "runs": [], "summary": []}
    print(f"SwiftDDPM bench — {report['machine']['cpu']}, {report['machine']['cores']} cores, "
          f"{'quick' if quick else 'full'}; library {lib}", flush=True)
    t_start = time.perf_counter()

    exe, c_err = (None, "not run") if "ours" not in engines else build_c_driver(lib, args.out)
    if "ours" in engines and exe is None:
        print("  C driver did not build:", c_err, flush=True)
    report["c_driver"] = {}
    for name in names:
        cfg = CONFIGS[name]
        rows = {}
        for engine in engines:
            for t in threads:
                print(f"  {name:7} {engine:5} {t} thread(s) ...", end=" ", flush=True)
                spec = dict(cfg=cfg, threads=t, **timing)
                if not args.sample_steps:
                    spec["sample_steps"] = min(timing["sample_steps"], max(1, cfg.get("sample_timed", T) // (10 if quick else 1)))
                r = run_worker(engine, spec, python)
                r.update(config=name, engine=engine, threads=t)
                rows[(engine, t)] = r
                report["runs"].append(r)
                if not ok(r):
                    print("error:", r.get("error", "?")[:300], flush=True)
                    continue
                print(f"train {1 / r['train']['s_median']:.1f} steps/s, sample {r['sample_s']:.2f} s"
                      f"{'' if r.get('sample_steps_run', T) == T else ' (scaled)'}, "
                      f"RSS {r['peak_rss_mb']:.0f} MB ({r['wall_s']:.0f} s)", flush=True)
                if "torch_version" in r:
                    report["torch_version"] = r["torch_version"]
                if "library_version" in r:
                    report["library_version"] = r["library_version"]
        cdrv = {}
        if exe is not None:
            for t in threads:
                c = run_c_driver(exe, cfg, t, quick)
                r = rows.get(("ours", t))
                if ok(c) and ok(r):
                    c["python_step_s"] = r["train"]["s_median"]
                cdrv[t] = c
                print(f"  {name:7} C     {t} thread(s) ... " + (
                    f"train step {c['train_step_s_median'] * 1e3:.2f} ms ({c['train_gemm_s_per_step'] / c['train_step_s_median']:.0%} "
                    f"in sgemm), {c['train_allocs_per_step']:.1f} allocs/step, sample step {c['sample_step_s'] * 1e3:.2f} ms"
                    if ok(c) else f"error: {c.get('error', '?')[:200]}"), flush=True)
        report["c_driver"][name] = {str(t): c for t, c in cdrv.items()}
        if args.profile and exe is not None:
            prof = profile_c_driver(exe, cfg, name, args.out, quick)
            report.setdefault("profile", {})[name] = prof
            print(f"  {name:7} perf  ... " + (", ".join(f"{h['percent']:.0f}% {h['symbol'][:40]}" for h in prof["hot"][:5])
                                              if ok(prof) else f"error: {prof['error']}"), flush=True)
        report["summary"].append(summarize(name, rows, cdrv, threads))

    if "ours" in engines:
        if "torch" in engines:  # forward parity: needs torch and swiftddpm in one process
            report["parity"] = {name: run_worker("parity", dict(cfg=CONFIGS[name], threads=1), python) for name in names}
            print("  parity:", ", ".join(f"{k} {'ok' if v.get('ok') else v.get('error', 'MISMATCH')[:80]}"
                                         f" (max |Δ| {fmt(v.get('max_abs_diff'), '.1e')})"
                                         for k, v in report["parity"].items()), flush=True)
        tiny = dict(kind="mlp", D=2, H=16, L=1, B=8, sample_n=16)
        o = run_worker("overhead", dict(cfg=tiny, threads=1, target_s=1.0), python)
        ct = run_c_driver(exe, tiny, 1, quick) if exe else {"error": c_err}
        if ok(o) and ok(ct):
            o.update(c_step_s=ct["train_step_s_median"], c_noop_s=ct["noop_call_s"],
                     python_overhead_s=o["train"]["s_median"] - ct["train_step_s_median"])
            ct["python_step_s"] = o["train"]["s_median"]
        report["c_driver"]["tiny (D=2, H=16, L=1, B=8)"] = {"1": ct}
        report["overhead"] = o
        if ok(o) and "python_overhead_s" in o:
            print(f"  overhead: ctypes no-op {o['ctypes_noop_s'] * 1e6:.2f} µs, Model.train_step adds "
                  f"{o['python_overhead_s'] * 1e6:.1f} µs over the C loop", flush=True)

    report["total_s"] = time.perf_counter() - t_start
    report["machine"]["loadavg_at_end"] = os.getloadavg()
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    md = markdown(report)
    for base in (f"bench-{stamp}", "latest"):
        with open(os.path.join(args.out, base + ".json"), "w") as f:
            json.dump(report, f, indent=1, default=str)
        with open(os.path.join(args.out, base + ".md"), "w") as f:
            f.write(md)
    print_table(report)
    print(f"\nwrote {os.path.join(args.out, 'bench-' + stamp)}.{{json,md}} (and latest.*) in {report['total_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
