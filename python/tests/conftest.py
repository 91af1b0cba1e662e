"""Shared fixtures. Run with: PYTHONPATH=python python3 -m pytest python/tests -q
(SWIFTDDPM_LIBRARY=/path/to/libddpm.so to test a particular build)."""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "python"))  # so the tests also run without PYTHONPATH

import swiftddpm as sd  # noqa: E402

# The Ctrl-C tests send real SIGINTs to this process and to the CLI processes it starts. A test
# run started as a background job (`make test &`, `nohup ... &` from a script) inherits SIGINT
# *ignored* (POSIX: a non-interactive shell's asynchronous lists ignore SIGINT and SIGQUIT), and
# so do its children: Python then installs no KeyboardInterrupt handler, the library's
# StopOnInterrupt rightly leaves an ignored SIGINT alone, and a fit of 1 000 000 steps waiting for
# the interrupt runs on for minutes. The suite restores Python's own handler (exec'd children then
# start with SIGINT at its default) so that it behaves the same however it was launched.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

HEADER = REPO / "include" / "ddpm.h"
VERSION_HEADER = REPO / "include" / "ddpm_version.h"


def nearest_distance(samples: np.ndarray, data: np.ndarray) -> float:
    """Mean Euclidean distance from each sample to its nearest data point."""
    d2 = ((samples[:, None, :].astype(np.float64) - data[None, :, :]) ** 2).sum(-1)
    return float(np.sqrt(d2.min(axis=1)).mean())


def sigint_from_another_thread() -> None:
    """Sends the main thread a real SIGINT from another thread and returns once it is sent.
    Called from the caller's own code inside a library callback (a model function, a progress
    function), the KeyboardInterrupt comes out of the wait; from the library's own relay, or
    in fit's loop, the handler keeps it as a flag seen after the step."""
    sent = threading.Event()

    def send():
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
        sent.set()

    threading.Thread(target=send).start()
    sent.wait()


@pytest.fixture
def linear100():
    with sd.NoiseSchedule.linear(100, scale_to_steps=True) as schedule:
        yield schedule


@pytest.fixture
def small_model(linear100):
    with sd.Model(linear100, data_dim=3, hidden=16, depth=1, time_embed_dim=8, seed=7) as model:
        yield model


@pytest.fixture(autouse=True)
def _single_thread_determinism():
    # Keep the library's thread count as it was after each test (some tests change it).
    n = sd.get_num_threads()
    yield
    sd.set_num_threads(n)


@pytest.fixture
def tmp_checkpoint(tmp_path):
    return os.fspath(tmp_path / "model.safetensors")
