"""examples/notebooks/quickstart.ipynb executed headless in a real Jupyter kernel (nbclient),
every cell, failing on any error; and Ctrl-C in a notebook: interrupting the kernel during
`fit` stops training after the current step, with the losses so far and a usable model.

make test installs nbclient, nbformat and ipykernel (setup-python); without them these tests
are skipped, with the reason in pytest's summary."""

from __future__ import annotations

import os
import time

import pytest

from conftest import REPO

nbformat = pytest.importorskip("nbformat", reason="needs nbformat (make setup-python installs it)")
nbclient = pytest.importorskip("nbclient", reason="needs nbclient (make setup-python installs it)")
pytest.importorskip("ipykernel", reason="needs ipykernel, the Python kernel (make setup-python installs it)")
from jupyter_client.manager import start_new_kernel  # noqa: E402 - a dependency of nbclient

NOTEBOOK = REPO / "examples" / "notebooks" / "quickstart.ipynb"


def kernel_env() -> dict[str, str]:
    """The environment of the kernel: this one's, with the package and the library found."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "python"), env.get("PYTHONPATH")) if p)
    env.pop("MPLBACKEND", None)  # the kernel's own inline backend: figures become image/png outputs
    return env


def test_notebook_is_committed_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


def keep_executed(nb, images) -> None:
    """The executed notebook and its figures, left where a reader can look at them after
    `make test`: .build/notebook/quickstart.executed.ipynb and figure1..5.png (ignored by git)."""
    import base64
    folder = REPO / ".build" / "notebook"
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, folder / "quickstart.executed.ipynb")
    for k, output in enumerate(images, 1):
        (folder / f"figure{k}.png").write_bytes(base64.b64decode(output["data"]["image/png"]))


def test_quickstart_notebook_runs(tmp_path, monkeypatch):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    env = kernel_env()
    env["SWIFTDDPM_NOTEBOOK_QUICK"] = "1"  # a few steps per model: every cell, in seconds
    for key, value in env.items():
        monkeypatch.setenv(key, value)  # nbclient starts the kernel with this process's environment
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", allow_errors=False,
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError on the first cell that fails
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 5  # the data, the loss, the three samplers, the bound, the digits grid
    keep_executed(nb, images)
    text = "".join(o.get("text", "") for o in outputs)
    assert "quick=True" in text and "bits/dim" in text


class Kernel:
    """A Python kernel started for one test, with execute(code) -> (status, stdout)."""

    def __init__(self) -> None:
        self.manager, self.client = start_new_kernel(kernel_name="python3", env=kernel_env())

    def send(self, code: str) -> str:
        return self.client.execute(code)

    def wait(self, msg_id: str, timeout: float = 120) -> tuple[str, str]:
        """Waits for the reply to msg_id; returns its status ("ok" or "error") and its stdout."""
        text = []
        deadline = time.monotonic() + timeout
        while True:
            msg = self.client.get_iopub_msg(timeout=max(1.0, deadline - time.monotonic()))
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "stream" and msg["content"]["name"] == "stdout":
                text.append(msg["content"]["text"])
            elif msg["msg_type"] == "error":
                text.append(f"{msg['content']['ename']}: {msg['content']['evalue']}")
            elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
        while True:
            reply = self.client.get_shell_msg(timeout=max(1.0, deadline - time.monotonic()))
            if reply["parent_header"].get("msg_id") == msg_id:
                return reply["content"]["status"], "".join(text)

    def until(self, msg_id: str, text: str, timeout: float) -> None:
        """Reads the output of msg_id until its stdout has printed `text`."""
        deadline = time.monotonic() + timeout
        while True:
            msg = self.client.get_iopub_msg(timeout=max(1.0, deadline - time.monotonic()))
            if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "stream" \
                    and msg["content"]["name"] == "stdout" and text in msg["content"]["text"]:
                return

    def execute(self, code: str, timeout: float = 120) -> tuple[str, str]:
        return self.wait(self.send(code), timeout)

    def close(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)


def test_interrupting_the_kernel_stops_fit_with_the_losses_so_far():
    kernel = Kernel()
    try:
        status, out = kernel.execute(
            "import numpy as np, swiftddpm as sd\n"
            "model = sd.Model(sd.NoiseSchedule.linear(1000), network=sd.MLPConfig(data_dim=2), "
            "train=sd.TrainConfig(seed=0))\n"
            "data = sd.datasets.swiss_roll(1000)\n"
            "steps_seen = []\n"
            "print('ready')")
        assert (status, out) == ("ok", "ready\n")
        # 10^6 steps would take hours: only the interrupt can end this cell in the test's time.
        # The callback prints at step 5, so that the interrupt lands while fit is training.
        fit = kernel.send("losses = model.fit(data, steps=1_000_000, batch_size=64, callback=lambda step, loss, lr, m: "
                          "steps_seen.append(step) or (print('five steps', flush=True) if step == 5 else None), callback_every=1)")
        kernel.until(fit, "five steps", timeout=120)
        kernel.manager.interrupt_kernel()
        status, out = kernel.wait(fit, timeout=60)
        assert status == "ok", out  # no KeyboardInterrupt: fit returned
        status, out = kernel.execute(
            "print(len(losses), model.step, len(steps_seen), bool(np.isfinite(losses).all()), losses.dtype)")
        assert status == "ok", out
        n, step, seen, finite, dtype = out.split()
        assert 5 <= int(n) < 1_000_000 and int(step) == int(n), out
        # The callback runs after each step unless Ctrl-C came during it (then the run just stops).
        assert int(seen) in (int(n) - 1, int(n)), out
        assert finite == "True" and dtype == "float32"
        # The model is still usable after the interrupt: it trains on from where it stopped.
        status, out = kernel.execute("more = model.fit(data, steps=3, batch_size=64); print(len(more), model.step)")
        assert status == "ok" and out.split() == ["3", str(int(n) + 3)], out
    finally:
        kernel.close()
