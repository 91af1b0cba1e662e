"""How quiet the machine was while `make bench` measured: every timed child runs through
run_measured(), which records around it

  before    load average (1/5/15 min) and the processes running (from /proc/loadavg, the
            reader itself not counted), sampled just before the child starts;
  cpu_s     the child's own CPU time, user + sys (the difference of getrusage(RUSAGE_CHILDREN)
            around it: the child and every process it waited for, mpirun's ranks included);
  wall_s    its wall time;
  others_cores  the CPU time the whole machine spent outside the child, per second of wall
            time (the busy jiffies of /proc/stat minus cpu_s, over wall_s): ≈ 0 on a quiet
            machine, ≈ 1 when another process kept one core busy the whole time.

busy_reasons() turns a measurement into the reasons to distrust it (empty when quiet): load
average ≥ BUSY_LOAD before it, other processes using ≥ BUSY_OTHERS cores during it, or a
1-thread child getting less than MIN_CPU_PER_WALL of a core while it was timed (it waited for
a core). The load average counts the bench's own previous child for a minute after it ends
(1-minute decay), so the per-measurement verdict rests on others_cores; the load before the
whole run is the one that says whether the machine was quiet when the bench began.
"""
from __future__ import annotations

import os
import resource
import subprocess
import time

BUSY_LOAD = 0.3         # load average (1 min) at or above which the machine was not quiet
BUSY_OTHERS = 0.3       # cores used by other processes during a measurement
MIN_CPU_PER_WALL = 0.9  # a 1-thread child below this share of a core was kept waiting


def loadavg() -> dict:
    """Load averages and the processes running now (this reader excluded)."""
    with open("/proc/loadavg") as f:
        l1, l5, l15, procs, _ = f.read().split()
    running, total = procs.split("/")
    return {"load": [float(l1), float(l5), float(l15)], "running": max(0, int(running) - 1), "processes": int(total)}


def busy_cpu_s() -> float:
    """Seconds of CPU time the whole machine has spent busy (all cores), from /proc/stat:
    user + nice + system + irq + softirq + steal (not idle, not iowait)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def children_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_measured(cmd: list[str], env: dict, timeout: float) -> tuple[subprocess.CompletedProcess | None, dict]:
    """Runs cmd to completion (None on timeout) and returns it with its quiet record:
    {before, cpu_s, wall_s, others_cores}."""
    before = loadavg()
    c0, m0, t0 = children_cpu_s(), busy_cpu_s(), time.perf_counter()
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        proc = None
    wall = time.perf_counter() - t0
    cpu = children_cpu_s() - c0
    others = max(0.0, busy_cpu_s() - m0 - cpu) / wall if wall > 0 else 0.0
    return proc, {"before": before, "cpu_s": cpu, "wall_s": wall, "others_cores": others}


def busy_reasons(quiet: dict | None, threads: int = 0, timed_cpu_per_wall: float | None = None) -> list[str]:
    """Why one measurement may be off ([] when the machine looked quiet): its quiet record,
    its thread count, and the CPU/wall ratio of its timed section (1-thread children only)."""
    if not quiet:
        return []
    reasons = []
    if quiet["others_cores"] >= BUSY_OTHERS:
        reasons.append(f"others {quiet['others_cores']:.1f} cores")
    if threads == 1 and timed_cpu_per_wall is not None and timed_cpu_per_wall < MIN_CPU_PER_WALL:
        reasons.append(f"cpu/wall {timed_cpu_per_wall:.2f}")
    return reasons


def machine_busy(start: dict, others_cores: float | None = None) -> list[str]:
    """Why the whole run may be off: the load average before it at or above BUSY_LOAD, or other
    processes using BUSY_OTHERS cores or more on average over the run (the load after the run
    is the bench's own and says nothing about others)."""
    reasons = []
    if start and start["load"][0] >= BUSY_LOAD:
        reasons.append(f"load {start['load'][0]:.2f} before the run")
    if others_cores is not None and others_cores >= BUSY_OTHERS:
        reasons.append(f"other processes used {others_cores:.1f} cores on average during it")
    return reasons


class RunMeter:
    """Other processes' CPU use over the whole run: the machine's busy CPU time minus this
    process's and its children's, per second of wall time."""

    def __init__(self):
        self.m0, self.t0, self.own0 = busy_cpu_s(), time.perf_counter(), self._own()

    @staticmethod
    def _own() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime + children_cpu_s()

    def others_cores(self) -> float:
        wall = time.perf_counter() - self.t0
        return max(0.0, busy_cpu_s() - self.m0 - (self._own() - self.own0)) / wall if wall > 0 else 0.0


def describe(snap: dict) -> str:
    return f"load {'/'.join(f'{x:.2f}' for x in snap['load'])}, {snap['running']} running"
