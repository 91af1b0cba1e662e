"""swiftddpm.distributed under `mpirun -np 2` (issue 12): data-parallel training equals one
process, the ranks stay bitwise in step, sharded sampling is bitwise the one-process
samples, and killing a rank fails the run promptly while its last checkpoint resumes to the
very parameters of the uninterrupted run. The MPI side is mpi_worker.py.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
TIMEOUT = 300  # seconds any one mpirun may take before the test calls it a hang (a guard, not a bound)

pytestmark = pytest.mark.skipif(shutil.which("mpirun") is None or importlib.util.find_spec("mpi4py") is None,
                                reason="needs mpirun and mpi4py (make test installs them)")


def mpirun_command(np_: int) -> list[str]:
    """mpirun on localhost: --oversubscribe (more ranks than cores), ranks yielding the core while
    they wait (a shared machine), --allow-run-as-root as root."""
    command = ["mpirun", "-np", str(np_), "--oversubscribe", "--mca", "mpi_yield_when_idle", "1"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-run-as-root")
    return command


def run(job: str, out: Path, ranks: int, *, expect_ok: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO / "python"), OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    worker = [sys.executable, str(HERE / "mpi_worker.py"), job, str(out)]
    command = mpirun_command(ranks) + worker if ranks > 1 else worker
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    if expect_ok:
        assert result.returncode == 0, f"{job} on {ranks} ranks failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("mpi")
    run("train", out, 1)
    run("train", out, 2)
    return out


def test_two_ranks_equal_one_process(runs):
    one, two, oracle = (np.load(runs / name) for name in ("train-1.npz", "train-2.npz", "oracles.npz"))
    # dist.fit on one rank is exactly the plain train_step loop on the same batches.
    assert int(one["hash"]) == int(oracle["plain_hash"])
    # 2 ranks = one process computing the same batch in the same 2 fixed chunks, bit for bit
    # (MPI_SUM of two terms is one float addition, which commutes).
    assert int(two["hash"]) == int(oracle["chunked_hash"]), "2 ranks vs the chunked one-process reference"
    # ... and one process with the whole batch up to the order of the float sums inside the
    # GEMMs over the batch (rounding of ~1e-7 relative, carried through 50 AdamW steps).
    delta = float(np.abs(two["params"] - one["params"]).max())
    print(f"\n[distributed] 50 steps, B = 64: max |Δθ| 2 ranks vs 1 process = {delta:.3g}; "
          f"final loss {one['losses'][-1]:.6f} vs {two['losses'][-1]:.6f}")
    assert delta < 1e-4
    np.testing.assert_allclose(two["losses"], one["losses"], rtol=1e-4, atol=1e-6)
    assert int(one["step"]) == int(two["step"]) == 50


def test_ranks_stay_bitwise_in_step(runs):
    rank_hashes = np.load(runs / "train-2.npz")["rank_hashes"]  # (ranks, checks), every 10 steps
    assert rank_hashes.shape == (2, 5)
    assert (rank_hashes[0] == rank_hashes[1]).all()
    assert len(set(rank_hashes[0].tolist())) == 5, "the parameters must change between checks"


def test_sharded_sampling_is_bitwise_one_process(tmp_path):
    run("sample", tmp_path, 2)
    result = np.load(tmp_path / "sample-2.npz")
    for name in ("ddpm", "ddim", "guided"):
        assert result[name].shape == (600, 2)
        assert result[name].tobytes() == result[name + "_one"].tobytes(), f"{name}: shards != one process"


def test_vector_and_token_conditioning_over_two_ranks(tmp_path):
    """Vectors (MLP) and tokens through a text encoder (UNet): 2 ranks train bitwise what one
    process computes in the same 2 chunks, and sharded guided sampling is the one-process samples."""
    run("cond", tmp_path, 1)
    run("cond", tmp_path, 2)
    one, two = np.load(tmp_path / "cond-1.npz"), np.load(tmp_path / "cond-2.npz")
    for kind in ("vector", "tokens"):
        assert int(two[kind + "_hash"]) == int(one[kind + "_chunked_hash"]), f"{kind}: 2 ranks vs the chunked reference"
        for result in (one, two):
            assert result[kind + "_shards"].tobytes() == result[kind + "_one"].tobytes(), f"{kind}: shards != one process"


def test_killed_rank_fails_the_run_and_the_checkpoint_resumes(runs, tmp_path):
    killed = run("kill", tmp_path, 2, expect_ok=False)  # run's timeout turns a hang into a failure
    report = killed.stdout + killed.stderr
    assert killed.returncode != 0, "a run that lost a rank must fail"
    assert "signal 9" in report or "Killed" in report or "exited on signal" in report, report
    assert not (tmp_path / "kill-2.npz").exists(), "the surviving rank must not finish"
    import swiftddpm as sd
    with sd.Model.load(tmp_path / "ckpt.safetensors") as model:
        assert model.step == 20, "the last checkpoint before the kill at step 25"
    run("resume", tmp_path, 2)
    resumed, uninterrupted = np.load(tmp_path / "resume-2.npz"), np.load(runs / "train-2.npz")
    assert int(resumed["step"]) == 50
    assert int(resumed["hash"]) == int(uninterrupted["hash"]), "resumed run != uninterrupted run"


def test_ctrl_c_on_one_rank_stops_every_rank_after_the_same_step(tmp_path):
    run("interrupt", tmp_path, 2)
    ranks = np.load(tmp_path / "interrupt-2.npy")  # (rank, (losses, step, hash, warned))
    # rank 1 saw SIGINT in its hooks after step 10; the ranks agreed in step 11's reduction
    assert ranks[:, 0].tolist() == [11, 11] and ranks[:, 1].tolist() == [11, 11]
    assert ranks[0, 2] == ranks[1, 2], "the ranks stopped in step"
    assert ranks[:, 3].tolist() == [1, 1], "every rank warns"
    import swiftddpm as sd
    with sd.Model.load(tmp_path / "interrupted.safetensors") as model:
        assert model.step == 11, "the end-of-fit checkpoint"
