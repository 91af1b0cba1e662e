"""The roof of `make bench`'s roofline lines: the core's FMA peak, measured by fma_peak.c
(independent AVX2 FMA chains, and AVX-512 ones where the CPU has AVX-512F; 1 and 2 threads),
and the versions the report header names (OpenBLAS, as libddpm loads it).

measure_fma_peak() builds the micro-kernel with -O3 -mavx2 -mfma (its AVX-512 function has its
own target attribute) and runs it at each thread count and ISA; on a CPU without AVX2/FMA, or
without a C compiler, it returns {"error": ...}.
"""
from __future__ import annotations

import ctypes
import json
import os
import subprocess

from quiet import run_measured

HERE = os.path.dirname(os.path.abspath(__file__))


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def measure_fma_peak(out_dir: str, threads: list[int]) -> dict:
    """{str(threads): fma_peak's JSON with its quiet record} for each thread count, or {"error": ...}:
    the AVX2 chains, and where the CPU has AVX-512F the __m512 chains too; gflops_best is the
    higher of the two (the roof), with each ISA's figure beside it (gflops_avx2, gflops_avx512)."""
    flags = cpu_flags()
    if not {"avx2", "fma"} <= flags:
        return {"error": "the CPU has no AVX2/FMA (or /proc/cpuinfo does not say)"}
    exe = os.path.join(out_dir, "fma_peak")
    cc = os.environ.get("CC", "cc")
    build = subprocess.run([cc, "-O3", "-mavx2", "-mfma", "-pthread", os.path.join(HERE, "fma_peak.c"), "-o", exe],
                           capture_output=True, text=True)
    if build.returncode != 0:
        return {"error": "fma_peak.c did not build: " + build.stderr.strip()[-300:]}
    isas = ["avx2"] + (["avx512"] if "avx512f" in flags else [])
    result = {}
    for t in threads:
        best = None
        for isa in isas:
            proc, quiet = run_measured([exe, f"threads={t}", f"isa={isa}"], dict(os.environ), timeout=60)
            if proc is None or proc.returncode != 0:
                if best is None:
                    best = {"error": "timed out" if proc is None else proc.stderr.strip()[-200:]}
                continue
            r = dict(json.loads(proc.stdout.strip().splitlines()[-1]), quiet=quiet)
            if best is None or "error" in best or r["gflops_best"] > best["gflops_best"]:
                best = dict(r, **{k: v for k, v in (best or {}).items() if k.startswith("gflops_avx")})
            best[f"gflops_{isa}"] = r["gflops_best"]
        result[str(t)] = best
    return result


def openblas_version(lib: str) -> str | None:
    """openblas_get_config() of the OpenBLAS that `lib` loads (e.g. "OpenBLAS 0.3.21 DYNAMIC_ARCH
    ... Haswell MAX_THREADS=64"), or None where it is not OpenBLAS or does not load."""
    try:
        handle = ctypes.CDLL(lib)
        fn = handle.openblas_get_config
    except (OSError, AttributeError):
        return None
    fn.restype = ctypes.c_char_p
    return fn().decode(errors="replace").strip()


def best_peak(*measurements: dict) -> dict:
    """The best of several measure_fma_peak() results, per thread count (a peak: other
    processes only ever lower a measurement)."""
    best = {}
    for m in measurements:
        if "error" in m:
            continue
        for t, r in m.items():
            if "error" not in r and r["gflops_best"] > best.get(t, {}).get("gflops_best", -1):
                best[t] = r
    return best or next(iter(measurements), {"error": "not measured"})
