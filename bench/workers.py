"""The timed child processes of `make bench`: one per engine × thread count × configuration,
so that each engine's peak resident memory (ru_maxrss) is its own and thread settings made
at start-up hold.

  torch     the PyTorch reference (swiftddpm.torch's networks, reference_common.py): train steps/s,
            sampling time, peak RSS, PyTorch's own FLOP count of a train step
  compiled  the same under torch.compile (inductor, CPU): compile times apart, each capped; an
            error with the reason when it fails or the cap expires
  ours      SwiftDDPM through its Python package: train steps/s, sampling time, peak RSS
  overhead  Model.train_step on a tiny model and a trivial ctypes call, for the Python cost
  parity    our ε̂ against the PyTorch reference holding our weights (needs both engines)
  mpi       data-parallel train steps/s under `mpirun -np R` (1 BLAS thread a rank): the
            compute / MPI_Allreduce / apply step of swiftddpm.distributed on the same batch

The parent calls run_worker(kind, spec, python); the child is this file,
`python bench/workers.py KIND SPEC_JSON`, and prints one JSON object.

The engine is built in one place, our_model() (the Python package's typed configs); the
PyTorch networks in reference_network().
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import time

from configs import E, T, sample_batches
from quiet import run_measured

# ---- the engines' models ----------------------------------------------------------------


def our_model(cfg: dict):
    """A fresh SwiftDDPM (schedule, model) for one configuration, seed 0; close both."""
    import swiftddpm as sd
    sched = sd.NoiseSchedule.linear(T)
    if cfg["kind"] == "mlp":
        network = sd.MLPConfig(data_dim=cfg["D"], hidden=cfg["H"], depth=cfg["L"], time_embed_dim=E)
    else:
        network = sd.UNetConfig(channels=cfg["C"], height=cfg["S"], width=cfg["S"], **cfg["unet"])
    cond = sd.Conditioning.classes(cfg["K"]) if cfg.get("K") else sd.Conditioning.none()
    return sched, sd.Model(sched, network=network, train=sd.TrainConfig(seed=0), cond=cond)


def reference_network(cfg: dict):
    """The PyTorch reference network of one configuration (current torch RNG state)."""
    import swiftddpm as sd
    import swiftddpm.torch as sdt
    if cfg["kind"] == "mlp":
        return sdt.ResidualMLP(sd.MLPConfig(data_dim=cfg["D"], hidden=cfg["H"], depth=cfg["L"], time_embed_dim=E),
                               timesteps=T)
    return sdt.UNet(sd.UNetConfig(channels=cfg["C"], height=cfg["S"], width=cfg["S"], **cfg["unet"]),
                    num_classes=cfg["K"], timesteps=T)


def make_data(cfg: dict, n: int, seed: int = 0):
    """n training rows in U(-1, 1) (float32, (n, D) or (n, C, S, S)) and labels 0..K-1 cycling
    (int32), or None for an unconditional configuration."""
    import numpy as np
    rng = np.random.default_rng(seed)
    shape = (n, cfg["D"]) if cfg["kind"] == "mlp" else (n, cfg["C"], cfg["S"], cfg["S"])
    x = rng.uniform(-1, 1, size=shape).astype(np.float32)
    labels = (np.arange(n) % cfg["K"]).astype(np.int32) if cfg.get("K") else None
    return x, labels


# ---- timing -----------------------------------------------------------------------------


def peak_rss_mb() -> float:
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def time_steps(step, warmup: int, target_s: float, chunks: int = 5) -> dict:
    """Runs `warmup` calls, sizes chunks to about target_s/chunks seconds each, and returns
    the median and minimum seconds per call over the chunks, the median CPU seconds per call
    (all threads; at 1 thread the figure a busy machine disturbs least), and the process's CPU
    time over the timed chunks per second of wall time (≈ the threads kept busy; < 1 at 1
    thread: the process waited for a core)."""
    for _ in range(warmup):
        step()
    t0 = time.perf_counter()
    probe = 0
    while probe < 2 or time.perf_counter() - t0 < 0.1:
        step()
        probe += 1
    per_call = (time.perf_counter() - t0) / probe
    per_chunk = max(1, int(target_s / chunks / per_call))
    times, cpu = [], []
    c0, w0 = time.process_time(), time.perf_counter()
    for _ in range(chunks):
        t0, p0 = time.perf_counter(), time.process_time()
        for _ in range(per_chunk):
            step()
        times.append((time.perf_counter() - t0) / per_chunk)
        cpu.append((time.process_time() - p0) / per_chunk)
    cpu_per_wall = (time.process_time() - c0) / (time.perf_counter() - w0)
    return {"s_median": statistics.median(times), "s_min": min(times), "calls": per_chunk * chunks,
            "cpu_per_wall": cpu_per_wall, "cpu_s_median": statistics.median(cpu)}


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


def time_sampling(result: dict, sample, cfg: dict, spec: dict) -> None:
    """Times sample(n, steps) (→ whether the samples are finite) at each sampling batch n of the
    configuration, over spec["sample_steps"] steps or what fits in the budget, scaled to T steps:
    result["sample_by_batch"][str(n)] = {s, steps_run, finite}; sample_s, sample_steps_run and
    sample_finite are those of sample_n."""
    result["sample_by_batch"] = {}
    for n in sample_batches(cfg):
        steps = budget_steps(lambda k: sample(n, k), spec["sample_steps"], spec.get("sample_budget_s"))
        t0, p0 = time.perf_counter(), time.process_time()
        finite = sample(n, steps)
        result["sample_by_batch"][str(n)] = {"s": (time.perf_counter() - t0) * T / steps, "steps_run": steps,
                                             "finite": finite, "cpu_s": (time.process_time() - p0) * T / steps}
    first = result["sample_by_batch"][str(cfg["sample_n"])]
    result.update(sample_s=first["s"], sample_steps_run=first["steps_run"], sample_finite=first["finite"])


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


def gemm_flops(calls) -> float:
    return float(sum(2 * m * n * k for m, n, k, _, _ in calls))


# ---- the workers ------------------------------------------------------------------------


class CompileTimeout(Exception):
    pass


def compile_capped(call, cap_s: float, what: str):
    """Runs call() (the first call of a torch.compile'd network: it compiles) under a SIGALRM
    cap of cap_s seconds; returns the seconds it took, or raises CompileTimeout."""
    import signal

    def expire(signum, frame):
        raise CompileTimeout(f"torch.compile of the {what} took over {cap_s:.0f} s (capped)")
    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(max(1, int(cap_s)))
    t0 = time.perf_counter()
    try:
        call()
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    return time.perf_counter() - t0


def compile_error(e: Exception, what: str, cap_s: float) -> str:
    """The reason torch.compile gave up, for the report (dynamo wraps our CompileTimeout)."""
    if isinstance(e, CompileTimeout) or "CompileTimeout" in str(e):
        return f"torch.compile of the {what} took over {cap_s:.0f} s (capped: --compile-cap)"
    return f"torch.compile of the {what} failed: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"


def worker_torch(spec: dict) -> dict:
    """The PyTorch reference, eager, or with spec["compile"] under torch.compile (inductor's
    CPU backend, static shapes): the network of the train step and the EMA network of sampling
    are compiled, each compile capped at spec["compile_cap_s"] and timed apart."""
    import torch
    torch.set_num_threads(spec["threads"])
    import reference_common as ref
    cfg = spec["cfg"]
    compile_ = spec.get("compile", False)
    base_rss = peak_rss_mb()
    torch.manual_seed(0)
    sched = ref.LinearSchedule(T)
    net = reference_network(cfg)
    trainer = ref.Trainer(net, sched, num_classes=cfg.get("K", 0))
    x0_np, lab_np = make_data(cfg, cfg["B"])
    x0 = torch.from_numpy(x0_np)
    labels = torch.from_numpy(lab_np).long() if lab_np is not None else None
    result = {"torch_version": torch.__version__, "base_rss_mb": base_rss,
              "parameters": sum(p.numel() for p in net.parameters())}
    cap = spec.get("compile_cap_s", 120)
    if compile_:
        import torch._inductor.config as inductor_config
        inductor_config.compile_threads = 1  # no pool of compile workers on a 2-core machine
        trainer.net = torch.compile(net, dynamic=False)
        try:
            result["compile_train_s"] = compile_capped(lambda: trainer.train_step(x0, labels), cap, "train step")
        except Exception as e:  # the cap, or inductor's failures: no compiler, unsupported op, ...
            return {"error": compile_error(e, "train step", cap), "torch_version": torch.__version__}
    result["train"] = time_steps(lambda: trainer.train_step(x0, labels), spec["warmup"], spec["target_s"],
                                 spec.get("chunks", 5))
    if not compile_:
        try:  # FLOPs of one train step as PyTorch counts them (mm/addmm/conv, forward + backward)
            from torch.utils.flop_counter import FlopCounterMode
            with FlopCounterMode(display=False) as counter:
                trainer.train_step(x0, labels)
            result["torch_counted_flops_per_step"] = float(counter.get_total_flops())
        except Exception as e:  # pragma: no cover
            result["torch_counted_flops_per_step"] = None
            result["flop_counter_error"] = str(e)
    trainer.net = net  # ema_net() copies the eager network
    ema = trainer.ema_net()
    if compile_:
        ema = torch.compile(ema, dynamic=False)

    def sample(n: int, steps: int):
        shape = (n,) + tuple(x0.shape[1:])
        slabels = torch.arange(n) % cfg["K"] if cfg.get("K") else None
        return bool(torch.isfinite(ref.ddpm_sample(ema, sched, shape, labels=slabels, steps=steps)).all())
    for n in sample_batches(cfg):
        if compile_:  # static shapes: each batch compiles apart
            try:
                result[f"compile_sample_s_{n}"] = compile_capped(lambda: sample(n, 1), cap, f"sampling forward (batch {n})")
            except Exception as e:
                return {"error": compile_error(e, f"sampling forward (batch {n})", cap), "torch_version": torch.__version__}
            if n == cfg["sample_n"]:
                result["compile_sample_s"] = result[f"compile_sample_s_{n}"]
    time_sampling(result, sample, cfg, spec)
    result["peak_rss_mb"] = peak_rss_mb()
    return result


def worker_compiled(spec: dict) -> dict:
    """The PyTorch reference under torch.compile (see worker_torch)."""
    return worker_torch(dict(spec, compile=True))


def worker_ours(spec: dict) -> dict:
    import numpy as np
    import swiftddpm as sd
    sd.set_num_threads(spec["threads"])
    cfg = spec["cfg"]
    base_rss = peak_rss_mb()
    sched, model = our_model(cfg)
    x0, labels = make_data(cfg, cfg["B"])
    result = {"library": sd.library_path(), "library_version": sd.library_version(),
              "threads_in_library": sd.get_num_threads(), "base_rss_mb": base_rss,
              "parameters": model.num_parameters}
    result["train"] = time_steps(lambda: model.train_step(x0, labels), spec["warmup"], spec["target_s"],
                                 spec.get("chunks", 5))
    if cfg["kind"] == "mlp":
        result["analytic_gemm_flops_per_step"] = gemm_flops(mlp_gemms(cfg["D"], cfg["H"], cfg["L"], cfg["B"]))

    def sample(n: int, steps: int):  # respaced DDPM: `steps` steps (0: all T)
        slabels = (np.arange(n) % cfg["K"]).astype(np.int32) if cfg.get("K") else None
        return bool(np.isfinite(model.sample(n, steps=0 if steps == T else steps, labels=slabels)).all())
    time_sampling(result, sample, cfg, spec)
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
    sched, model = our_model(cfg)
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
    cfg = spec["cfg"]
    sched, model = our_model(cfg)
    x0, labels = make_data(cfg, cfg["B"])
    for _ in range(3):  # move the weights off their initial values (and EMA off the weights)
        model.train_step(x0, labels)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "m.safetensors")
        model.save(path)
        tensors = read_safetensors(path)
    net = reference_network(cfg)
    state = {k[len("model."):]: torch.from_numpy(v) for k, v in tensors.items() if k.startswith("model.")}
    missing, unexpected = net.load_state_dict(state, strict=False)
    net.eval()  # dropout off, as in our predict (cifar-ddpm has dropout 0.1)
    result = {"missing": list(missing), "unexpected": list(unexpected)}
    worst = 0.0
    scale = 0.0
    with torch.no_grad():
        for t in (0, 1, 500, T - 1):
            ours = model.predict(x0, t, labels=labels, use_ema=False)
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


def worker_mpi(spec: dict) -> dict | None:
    """One rank of a data-parallel run (the step of swiftddpm.distributed.fit, without the
    batch gathering): rank 0 returns the timing, the others None. Every rank runs the same
    number of steps (rank 0 sizes the chunks and broadcasts them)."""
    import ctypes

    import numpy as np
    from mpi4py import MPI
    import swiftddpm as sd
    from swiftddpm._arrays import float_ptr
    from swiftddpm._conditions import cond_batch, cond_ref
    from swiftddpm import _lib
    from swiftddpm import distributed as dist
    sd.set_num_threads(1)
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    cfg = spec["cfg"]
    sched, model = our_model(cfg)
    B = cfg["B"]
    lo, hi = dist.shard_bounds(B, rank, size)
    x0, labels = make_data(cfg, B)
    xs = np.ascontiguousarray(x0[lo:hi])
    ls = None if labels is None else np.ascontiguousarray(labels[lo:hi])
    handle, grads, loss, total = model._h(), dist._gradient_view(model), ctypes.c_float(), np.zeros(1, np.float32)
    compute, apply = _lib.lib.ddpm_model_compute_gradients, _lib.lib.ddpm_model_apply_gradients
    x_ptr, l_ptr = float_ptr(xs), cond_ref(cond_batch(model._conditioning, ls, None, hi - lo)[0])

    def step():
        assert compute(handle, x_ptr, hi - lo, xs.size, l_ptr, lo, B, ctypes.byref(loss)) == 0, _lib.last_error()
        total[0] = loss.value
        comm.Allreduce(MPI.IN_PLACE, total, op=MPI.SUM)
        comm.Allreduce(MPI.IN_PLACE, grads, op=MPI.SUM)
        assert apply(handle) == 0, _lib.last_error()

    for _ in range(spec["warmup"]):
        step()
    comm.Barrier()
    t0 = time.perf_counter()
    for _ in range(5):
        step()
    per_chunk = comm.bcast(max(1, int(spec["target_s"] / 5 / ((time.perf_counter() - t0) / 5))), root=0)
    times = []
    for _ in range(5):
        comm.Barrier()
        t0 = time.perf_counter()
        for _ in range(per_chunk):
            step()
        times.append((time.perf_counter() - t0) / per_chunk)
    in_step = len(set(comm.allgather(dist.parameter_hash(model)))) == 1
    model.close()
    sched.close()
    if rank != 0:
        return None
    return {"ranks": size, "in_step": in_step, "peak_rss_mb_rank0": peak_rss_mb(),
            "train": {"s_median": statistics.median(times), "s_min": min(times), "calls": per_chunk * 5}}


def mpirun_prefix(ranks: int) -> list[str]:
    """mpirun on localhost for `ranks` ranks, one BLAS thread each (see the Makefile's MPIRUN_FLAGS).
    Ranks yield the core while they wait in MPI (mpi_yield_when_idle): on a shared machine a
    busy-polling rank takes the core its partner needs (2.3x slower on toy2d at load 6)."""
    command = ["mpirun", "-np", str(ranks), "--oversubscribe", "--mca", "mpi_yield_when_idle", "1",
               "-x", "OPENBLAS_NUM_THREADS=1", "-x", "OMP_NUM_THREADS=1"]
    return command + (["--allow-run-as-root"] if os.geteuid() == 0 else [])


WORKERS = {"torch": worker_torch, "compiled": worker_compiled, "ours": worker_ours, "overhead": worker_overhead, "parity": worker_parity,
           "mpi": worker_mpi}


# ---- the parent's side ------------------------------------------------------------------


def run_worker(kind: str, spec: dict, python: str, timeout: float = 600, launcher: list[str] = ()) -> dict:
    """Runs one worker in a fresh process (BLAS/OpenMP threads set to spec["threads"]), under
    `launcher` (e.g. mpirun_prefix(2)) if given, and returns its JSON result with wall_s and
    quiet (quiet.run_measured: load before, the child's CPU time, other processes' use) added,
    or {"error": ..., "quiet": ...}."""
    env = dict(os.environ)
    threads = str(spec.get("threads", 1))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = threads
    cmd = [*launcher, python, os.path.abspath(__file__), kind, json.dumps(spec)]
    proc, q = run_measured(cmd, env, timeout)
    if proc is None:
        return {"error": f"timed out after {timeout:.0f} s", "quiet": q}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"error": " | ".join(tail) or f"exit {proc.returncode}", "quiet": q}
    result = json.loads(lines[-1])
    result["wall_s"] = q["wall_s"]
    result["quiet"] = q
    return result


if __name__ == "__main__":  # the child: KIND SPEC_JSON
    result = WORKERS[sys.argv[1]](json.loads(sys.argv[2]))
    if result is not None:  # an MPI rank other than 0 prints nothing
        print(json.dumps(result))
