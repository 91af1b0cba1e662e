"""Model.fit's callback, CSV log and Ctrl-C: each checked against what the training loop
itself reports (the returned history, model.step), and Ctrl-C with a real SIGINT."""

from __future__ import annotations

import csv
import os
import signal
import threading

import numpy as np
import pytest

import swiftddpm as sd
from conftest import sigint_from_another_thread


@pytest.fixture
def data():
    return np.random.default_rng(0).normal(size=(256, 3)).astype(np.float32)


def test_callback_every_k_steps_sees_step_loss_lr_and_model(small_model, data):
    calls = []
    losses = small_model.fit(data, steps=10, batch_size=16, progress=False, callback_every=3,
                             lr_schedule=lambda i: 1e-3 * (i + 1),
                             callback=lambda step, loss, lr, model: calls.append((step, loss, lr, model)))
    assert [c[0] for c in calls] == [3, 6, 9]  # model.step after steps 3, 6, 9
    assert [c[1] for c in calls] == [float(losses[2]), float(losses[5]), float(losses[8])]
    assert [c[2] for c in calls] == pytest.approx([3e-3, 6e-3, 9e-3])
    assert all(c[3] is small_model for c in calls)


def test_callback_returning_false_stops_and_truncates(small_model, data):
    history = small_model.fit(data, steps=50, batch_size=16, progress=False,
                              callback=lambda step, loss, lr, model: step < 7)
    assert history.shape == (7,) and small_model.step == 7
    # None (a callback without a return) does not stop training
    history = small_model.fit(data, steps=5, batch_size=16, progress=False, callback=lambda *a: None)
    assert history.shape == (5,) and small_model.step == 12


def test_callback_global_step_continues_and_can_change_lr(small_model, data):
    small_model.fit(data, steps=4, batch_size=16, progress=False)
    seen = []

    def halve(step, loss, lr, model):
        seen.append((step, lr))
        model.set_learning_rate(lr / 2)

    small_model.fit(data, steps=3, batch_size=16, progress=False, callback=halve)
    lr0 = seen[0][1]
    assert [s for s, _ in seen] == [5, 6, 7]
    assert [lr for _, lr in seen] == pytest.approx([lr0, lr0 / 2, lr0 / 4])


def test_log_csv_matches_history(small_model, data, tmp_path):
    path = tmp_path / "loss.csv"
    history = small_model.fit(data, steps=120, batch_size=16, progress=False, log=path,
                              lr_schedule=lambda i: 1e-3 if i < 60 else 5e-4)
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == list(range(1, 121))
    np.testing.assert_array_equal(np.array([float(r["loss"]) for r in rows], dtype=np.float32), history)
    assert {float(r["lr"]) for r in rows[:60]} == {1e-3} and {float(r["lr"]) for r in rows[60:]} == {5e-4}


def test_log_is_written_as_training_goes(small_model, data, tmp_path):
    path = tmp_path / "loss.csv"
    lines_seen = []

    def peek(step, loss, lr, model):
        with open(path) as f:
            lines_seen.append(len(f.read().splitlines()))

    small_model.fit(data, steps=200, batch_size=8, progress=False, log=path, callback=peek, callback_every=100)
    assert lines_seen[0] >= 101  # header + 100 rows on disk while fit is still running


def test_bad_callback_arguments(small_model, data):
    with pytest.raises(sd.InvalidArgumentError):
        small_model.fit(data, steps=1, progress=False, callback=3)
    with pytest.raises(sd.InvalidArgumentError):
        small_model.fit(data, steps=1, progress=False, callback=print, callback_every=0)


def test_ctrl_c_stops_after_the_step_in_progress(data):
    # Deterministic: the SIGINT arrives while the callback of step 5 runs, so the interrupt is
    # seen after step 5 — fit returns exactly 5 losses, and no callback runs after it.
    assert threading.current_thread() is threading.main_thread()
    with sd.NoiseSchedule.linear(100) as schedule, \
            sd.Model(schedule, data_dim=3, hidden=64, depth=2, seed=1) as model:
        model.fit(data, steps=2, batch_size=64, progress=False)  # some steps before: the count goes on
        seen = []

        def callback(step, loss, lr, model):
            seen.append(step)
            if step == 2 + 5:
                sigint_from_another_thread()

        with pytest.warns(RuntimeWarning, match="interrupted"):
            history = model.fit(data, steps=1_000_000, batch_size=64, progress=False, callback=callback)
        assert history.shape == (5,) and np.isfinite(history).all()
        assert seen == [3, 4, 5, 6, 7]
        assert model.step == 2 + 5  # every step counted, none half-done
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored
        loss = model.train_step(data[:64])
        assert np.isfinite(loss) and model.step == 8
        assert np.isfinite(model.sample(8, method="ddim", steps=5)).all()


def test_ctrl_c_during_a_train_step_stops_after_that_step(data):
    # The SIGINT comes from another thread while fit runs on (it may land inside a library
    # call): the interrupt is seen within the step in progress when it was sent. `before` is
    # the number of steps finished once the signal was sent; fit stops at most one step later
    # (two, should the signal reach the main thread as it finishes a step).
    with sd.NoiseSchedule.linear(100) as schedule, \
            sd.Model(schedule, data_dim=3, hidden=64, depth=2, seed=1) as model:
        done, before, senders = [], [], []

        def send():
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
            before.append(len(done))

        def callback(step, loss, lr, model):
            done.append(step)
            if step == 10:
                senders.append(threading.Thread(target=send))
                senders[0].start()

        with pytest.warns(RuntimeWarning, match="interrupted"):
            history = model.fit(data, steps=1_000_000, batch_size=64, progress=False, callback=callback)
        senders[0].join()
        assert before and before[0] >= 10
        assert before[0] <= history.shape[0] <= before[0] + 2, (before, history.shape)
        assert model.step == history.shape[0] and np.isfinite(history).all()
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_outside_fit_still_raises():
    # Negative control: after fit, SIGINT is a KeyboardInterrupt again.
    with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)  # the handler runs before raise_signal returns


# ---- Issue 19 -------------------------------------------------------------------------------

def test_a_nan_row_is_found_before_the_first_step(small_model, data):
    """Before the fix the NaN row failed the step that drew it, and the history was lost."""
    bad = data.copy()
    bad[37, 1] = np.nan
    with pytest.raises(sd.NonFiniteError, match="data row 37"):
        small_model.fit(bad, steps=50, batch_size=4, progress=False)
    assert small_model.step == 0, "not one step was taken"
    assert small_model.fit(data, steps=2, batch_size=4, progress=False).shape == (2,)  # control


def test_a_failing_step_keeps_the_history_on_the_error(small_model, data):
    def explode(step, loss, lr, model):
        if step == 3:
            model.set_learning_rate(1e6)  # the next update explodes and is refused
    with pytest.raises(sd.NonFiniteError, match="exploding") as caught:
        small_model.fit(data, steps=10, batch_size=16, progress=False, callback=explode)
    assert caught.value.losses.shape == (3,) and np.isfinite(caught.value.losses).all()
    assert small_model.step == 3


def test_the_log_must_be_a_regular_file(small_model, data, tmp_path):
    """A FIFO as the log is refused by its type. With a reader on it (so that the old code's
    open did not block) it used to be written to; without one, open blocked forever."""
    fifo = tmp_path / "loss.csv"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        with pytest.raises(sd.DDPMIOError, match=r"not a regular file \(it is a FIFO\)"):
            small_model.fit(data, steps=2, batch_size=4, progress=False, log=fifo)
    finally:
        os.close(reader)
    with pytest.raises(sd.DDPMIOError, match="FIFO"):
        small_model.fit(data, steps=2, batch_size=4, progress=False, log=fifo)  # no reader at all
    assert small_model.step == 0
    with pytest.raises(sd.DDPMIOError, match="character device"):
        small_model.fit(data, steps=2, batch_size=4, progress=False, log="/dev/null")


# ---- One training loop: minibatch k from (seed, k), so a resumed run is an unbroken one ----------

def twin_models(schedule):
    make = lambda: sd.Model(schedule, data_dim=3, hidden=16, depth=1, time_embed_dim=8, seed=7)  # noqa: E731
    return make(), make()


def weights_probe(model):
    """The live and the EMA model's predictions on a fixed batch: equal iff the weights are."""
    x = np.random.default_rng(9).standard_normal((5, 3)).astype(np.float32)
    return np.concatenate([model.predict(x, 10, use_ema=False), model.predict(x, 10)])


def test_minibatch_k_is_drawn_from_seed_and_k(linear100, data):
    # Oracle: a plain train_step loop on the rows default_rng([seed, k]) picks, written here.
    fitted, plain = twin_models(linear100)
    with fitted, plain:
        losses = fitted.fit(data, steps=6, batch_size=16, seed=3, progress=False)
        expected = [plain.train_step(data[np.random.default_rng([3, k]).integers(0, len(data), 16)]) for k in range(6)]
        assert losses.tolist() == expected
        np.testing.assert_array_equal(weights_probe(fitted), weights_probe(plain))


def test_a_stopped_and_resumed_fit_equals_an_unbroken_one(linear100, data, tmp_path):
    unbroken, twice = twin_models(linear100)
    with unbroken, twice:
        history = unbroken.fit(data, steps=10, batch_size=16, seed=5, progress=False)
        first = twice.fit(data, steps=4, batch_size=16, seed=5, progress=False)
        twice.save(tmp_path / "after4.safetensors")
        second = twice.fit(data, steps=6, batch_size=16, seed=5, progress=False)
        np.testing.assert_array_equal(np.concatenate([first, second]), history)
        np.testing.assert_array_equal(weights_probe(twice), weights_probe(unbroken))
        with sd.Model.load(tmp_path / "after4.safetensors") as resumed:  # stopped, saved, loaded, resumed
            np.testing.assert_array_equal(resumed.fit(data, steps=6, batch_size=16, seed=5, progress=False), second)
            np.testing.assert_array_equal(weights_probe(resumed), weights_probe(unbroken))
        other, control = twin_models(linear100)  # negative control: another seed draws other batches
        with other, control:
            other.fit(data, steps=10, batch_size=16, seed=6, progress=False)
            assert not np.array_equal(weights_probe(other), weights_probe(unbroken))


def test_distributed_fit_on_one_process_is_model_fit(linear100, data, tmp_path):
    # distributed.fit and Model.fit share the loop: on one process (no mpirun) the same seed
    # gives the same batches, losses, log and weights, bit for bit.
    dist = pytest.importorskip("swiftddpm.distributed", reason="needs mpi4py")
    a, b = twin_models(linear100)
    with a, b:
        schedule = lambda i: 1e-3 if i < 5 else 5e-4  # noqa: E731
        losses = a.fit(data, steps=8, batch_size=16, seed=2, progress=False, lr_schedule=schedule,
                       log=tmp_path / "fit.csv")
        dist_losses = dist.fit(b, data, 8, 16, seed=2, lr_schedule=schedule, check_every=0, log=tmp_path / "dist.csv")
        np.testing.assert_array_equal(dist_losses, losses)
        np.testing.assert_array_equal(weights_probe(a), weights_probe(b))
        assert (tmp_path / "fit.csv").read_text() == (tmp_path / "dist.csv").read_text()


def test_distributed_fit_stops_on_ctrl_c_after_the_step_in_progress(linear100, data):
    dist = pytest.importorskip("swiftddpm.distributed", reason="needs mpi4py")
    with sd.Model(linear100, data_dim=3, hidden=16, depth=1, seed=4) as model:
        def on_step(step, loss):
            if step == 3:
                sigint_from_another_thread()

        with pytest.warns(RuntimeWarning, match="interrupted"):
            losses = dist.fit(model, data, 1_000_000, 16, on_step=on_step, check_every=0)
        # on_step runs after the step's reduction: the ranks agree at the next step's, so
        # every rank stops after step 4
        assert losses.shape == (4,) and model.step == 4
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
