"""Issue 10, the Python side: values ctypes would mangle are refused before any call
(integers beyond their C type, paths with NUL, bool/complex/string/object arrays), the
train_step fast path never reuses a stale pointer, and Ctrl-C during sampling always
raises KeyboardInterrupt at the step in progress and leaves the handle usable."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest

import swiftddpm as sd
from swiftddpm import _sampling
from conftest import REPO, sigint_from_another_thread

INT32_MAX, INT64_MAX, UINT64_MAX = 2**31 - 1, 2**63 - 1, 2**64 - 1


# ---- Integers beyond their C type ---------------------------------------------------------
# ctypes keeps only the low bits: without a check 2**32 + 10 would arrive as 10.


@pytest.mark.parametrize("call,match", [
    (lambda s, m: sd.NoiseSchedule.linear(2**32 + 10), "num_timesteps must be <= 2147483647"),
    (lambda s, m: sd.NoiseSchedule.cosine(INT32_MAX + 1), "num_timesteps"),
    (lambda s, m: m.sample(2, steps=2**32 + 3), "steps must be <= 2147483647"),
    (lambda s, m: m.sample(2, seed=UINT64_MAX + 1), "seed must be <="),
    (lambda s, m: m.sample(2, seed=-1), "seed must be >= 0"),
    (lambda s, m: m.sample(INT64_MAX + 2), "n must be <="),
    (lambda s, m: m.sample(2**62), "more elements than int64"),
    (lambda s, m: m.sample(2, timesteps=[2**32 + 5, 3]), "int32 range"),
    (lambda s, m: m.predict(np.zeros((2, 3)), 2**32 + 5), "t must be <= 2147483647"),
    (lambda s, m: s.step(np.zeros((2, 3)), 2**32 + 5, np.zeros((2, 3)), prev_t=-1), "t must be <= 2147483647"),
    (lambda s, m: s.step(np.zeros((2, 3)), 5, np.zeros((2, 3)), prev_t=-(2**32) + 4), "prev_t must be >="),
    (lambda s, m: s.add_noise(np.zeros((2, 3)), np.zeros((2, 3)), [2**32 + 1, 0]), "int32 range"),
    (lambda s, m: s.sample(lambda x, t, labels: x, 2**64 + 1, 3), "n must be <="),
    (lambda s, m: s.sample(lambda x, t, labels: x, 2, (2**62, 4)), "more elements than int64"),
    (lambda s, m: sd.Sampler(s, 2**64, 2), "n must be <="),
    (lambda s, m: sd.Sampler(s, 2, (2**40, 2**40)), "more elements than int64"),
    (lambda s, m: sd.Model(s, data_dim=2**32 + 2), "data_dim must be <= 2147483647"),
    (lambda s, m: sd.Model(s, network=sd.UNetConfig(height=8, width=8, channel_mult=(1, 2**32 + 2))),
     "channel_mult entries must be <="),
    (lambda s, m: sd.Model(s, data_dim=2, seed=2**64), "seed must be <="),
    (lambda s, m: sd.set_num_threads(2**32 + 1), "n must be <= 2147483647"),
])
def test_integers_beyond_their_c_type_are_refused(small_model, linear100, call, match):
    with pytest.raises(sd.InvalidArgumentError, match=match):
        call(linear100, small_model)


def test_integers_at_the_edge_of_their_c_type_are_accepted(small_model):
    # Negative control of the test above: the largest seed passes, and it is not wrapped
    # (a different seed gives different samples).
    top = small_model.sample(2, steps=3, seed=UINT64_MAX)
    assert not np.array_equal(top, small_model.sample(2, steps=3, seed=UINT64_MAX - 1))
    assert np.array_equal(top, small_model.sample(2, steps=3, seed=UINT64_MAX))


@pytest.mark.parametrize("value", [2.0, "3", True, np.bool_(True), None])
def test_non_integers_are_a_type_error(small_model, value):
    with pytest.raises(TypeError, match="must be an integer") as info:
        small_model.sample(2, steps=value)
    assert isinstance(info.value, sd.InvalidArgumentError)


@pytest.mark.parametrize("kwargs", [
    {"eta": "0.5"}, {"eta": True}, {"eta": 1j}, {"guidance_scale": "2"}, {"clip": ("a", 1.0)}, {"clip": (0, 1j)},
])
def test_non_numbers_are_a_type_error(small_model, kwargs):
    with pytest.raises(TypeError, match="number"):
        small_model.sample(2, steps=2, **kwargs)


def test_learning_rate_must_be_a_number(small_model):
    with pytest.raises(TypeError, match="learning_rate must be a number"):
        small_model.set_learning_rate("1e-3")
    small_model.set_learning_rate(np.float32(2e-3))
    assert small_model.train_config.learning_rate == pytest.approx(2e-3)


# ---- Paths with NUL ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a\0b", b"a\0b", "a\0"])
def test_paths_with_nul_are_refused(small_model, tmp_path, name):
    path = (os.fsencode(tmp_path) + b"/" + name) if isinstance(name, bytes) else os.path.join(tmp_path, name)
    with pytest.raises(sd.InvalidArgumentError, match="NUL"):
        small_model.save(path)
    assert os.listdir(tmp_path) == []  # C would have cut the path at the NUL and written "a"
    small_model.save(tmp_path / "a")
    with pytest.raises(sd.InvalidArgumentError, match="NUL"):
        sd.Model.load(path)


def test_path_of_a_wrong_type(small_model):
    with pytest.raises(TypeError, match="path must be"):
        small_model.save(42)


# ---- Arrays that are not real numbers -----------------------------------------------------------

NOT_REAL = {
    "bool": np.ones((4, 3), dtype=bool),
    "complex": np.ones((4, 3), dtype=complex),
    "numeric strings": np.full((4, 3), "1.5"),
    "bytes": np.full((4, 3), b"1"),
    "objects": np.array([[1.0, 2.0, None]] * 4, dtype=object),
    "list of bools": [[True, False, True]] * 4,
    "list of strings": [["1", "2", "3"]] * 4,
}


@pytest.mark.parametrize("kind", sorted(NOT_REAL))
def test_arrays_that_are_not_real_numbers_are_a_type_error(small_model, linear100, kind):
    bad = NOT_REAL[kind]
    good = np.zeros((4, 3), np.float32)
    calls = {
        "train_step": lambda: small_model.train_step(bad),
        "predict": lambda: small_model.predict(bad, 3),
        "add_noise x0": lambda: linear100.add_noise(bad, good, 3),
        "add_noise noise": lambda: linear100.add_noise(good, bad, 3),
        "posterior": lambda: linear100.posterior(good, bad, 3),
        "step": lambda: linear100.step(bad, 3, good, prev_t=-1),
        "schedule sample model_fn output": lambda: linear100.sample(lambda x, t, labels: np.asarray(bad), 4, 3),
    }
    for name, call in calls.items():
        with pytest.raises(TypeError, match="real numbers") as info:
            call()
        assert isinstance(info.value, sd.InvalidArgumentError), name
    with pytest.raises(TypeError, match="real numbers"):
        sd.NoiseSchedule.custom(np.asarray(bad)[0])


def test_integer_and_float64_arrays_are_real_numbers(small_model):
    # Negative control: the dtype check refuses only what is not a real number.
    x = np.arange(12).reshape(4, 3)
    for arr in (x, x.astype(np.float64), x.astype(np.uint8), x.astype(np.float16), x.tolist()):
        assert np.array_equal(small_model.predict(arr, 3), small_model.predict(x.astype(np.float32), 3))


def test_labels_must_be_integers(linear100):
    with sd.Model(linear100, data_dim=3, hidden=8, depth=1, num_classes=3) as model:
        x = np.zeros((2, 3), np.float32)
        for labels in (np.array([True, False]), np.array([0.0, 1.0]), np.array(["0", "1"])):
            with pytest.raises(TypeError, match="labels must hold integers"):
                model.train_step(x, labels)


# ---- The train_step fast path -------------------------------------------------------------------


def twins(schedule):
    """Two identical fresh models (same seed: the same draws, step for step)."""
    make = lambda: sd.Model(schedule, data_dim=3, hidden=16, depth=1, time_embed_dim=8, seed=11)  # noqa: E731
    return make(), make()


def test_train_step_sees_an_in_place_dtype_change(linear100):
    a, b = twins(linear100)
    with a, b:
        x = (np.arange(24, dtype=np.float32).reshape(8, 3) * 1e3 + 1e8)
        assert a.train_step(x) == b.train_step(x.copy())  # a caches x
        x.dtype = np.int32  # same bytes, same shape, now integers ~1e9: converted, not reused
        expected = b.train_step(x.astype(np.float32))
        assert a.train_step(x) == expected
        x.dtype = np.float32  # and back: the first bytes again, as floats
        assert a.train_step(x) == b.train_step(x.copy())


def test_train_step_sees_moved_data_and_new_strides(linear100):
    a, b = twins(linear100)
    with a, b:
        x = np.random.default_rng(0).standard_normal((8, 3)).astype(np.float32)
        assert a.train_step(x) == b.train_step(x.copy())
        x.resize((16, 3), refcheck=False)  # reallocates: the cached pointer is freed memory now
        x.resize((8, 3), refcheck=False)
        x[:] = 100.0
        assert a.train_step(x) == b.train_step(np.full((8, 3), 100.0, np.float32))
        y = np.random.default_rng(1).standard_normal((3, 8)).astype(np.float32)
        z = y.T  # (8, 3), Fortran order: a copy every time, never cached
        assert a.train_step(z) == b.train_step(np.ascontiguousarray(z))


def test_train_step_labels_see_an_in_place_dtype_change(linear100):
    with sd.Model(linear100, data_dim=3, hidden=8, depth=1, num_classes=3) as model:
        x = np.zeros((2, 3), np.float32)
        labels = np.array([0, 1], dtype=np.int32)
        model.train_step(x, labels)
        labels.dtype = np.float32
        with pytest.raises(TypeError, match="labels must hold integers"):
            model.train_step(x, labels)


# ---- Ctrl-C -------------------------------------------------------------------------------------
# A SIGINT during a sampling call must raise KeyboardInterrupt at the step in progress (the
# library polls an internal progress callback between steps, even when the caller passed
# none), never CancelledError, never "Exception ignored", and the handle must work afterwards.
# The tests wait on events, not clocks: each step of the call passes a gate, the SIGINT is
# sent while step 3 waits at its gate, and the call must stop before step 4.

SAMPLING = {
    # mode: (the statement that samples, gating the library's own progress relay?)
    "Model.sample": ("model.sample(16, progress=False)", True),
    "Model.sample with a progress callback": ("model.sample(16, progress=lambda step, total, t, x: gate(step))", False),
    "Model.sample with a tqdm bar": ("model.sample(16, progress=True)", True),
    "NoiseSchedule.sample": ("schedule.sample(lambda x, t, labels: gate(next(calls)) or model.predict(x, t), 16, 8)",
                             False),
    "NoiseSchedule.sample with a model_fn that blocks": (
        "schedule.sample(lambda x, t, labels: gate(next(calls)) or x, 4, 8)", False),
}

CHILD = """
import itertools, sys
sys.path.insert(0, {python!r})
import swiftddpm as sd
from swiftddpm import _sampling

def gate(step):
    # Each step of the sampling call: says so, then waits for the parent's go (a line on stdin).
    print(f"step {{step}}", flush=True)
    sys.stdin.readline()

if {gate_relay}:  # none of the caller's code runs during the call: gate the library's progress relay
    relay_call = _sampling.ProgressRelay._call
    def gated(self, user_data, step, total, t, x, count):
        gate(step)
        return relay_call(self, user_data, step, total, t, x, count)
    _sampling.ProgressRelay._call = gated

schedule = sd.NoiseSchedule.linear(1000)
model = sd.Model(schedule, data_dim=8, hidden=256, depth=4)
calls = itertools.count()
print("ready", flush=True)
{statement}
print("finished", flush=True)
"""


@pytest.mark.parametrize("mode", sorted(SAMPLING))
def test_ctrl_c_stops_sampling_in_a_subprocess(mode):
    statement, gate_relay = SAMPLING[mode]
    code = CHILD.format(python=str(REPO / "python"), statement=statement, gate_relay=gate_relay)
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert child.stdout.readline().strip() == "ready"
        seen = []
        for _ in range(4):
            seen.append(child.stdout.readline().strip())
            if len(seen) < 4:
                child.stdin.write("go\n")  # steps 0, 1 and 2 go on
                child.stdin.flush()
        child.send_signal(signal.SIGINT)  # while step 3 waits at its gate
        out, err = child.communicate(timeout=60)  # closes stdin: a gate still waiting is let go
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert seen == ["step 0", "step 1", "step 2", "step 3"], (seen, err)
    assert "step" not in out, f"the interrupt was not seen before step 4:\n{out}"
    assert "finished" not in out, f"the interrupt was lost: sampling ran to the end\n{err}"
    assert err.rstrip().endswith("KeyboardInterrupt"), err
    assert "Exception ignored" not in err and "CancelledError" not in err, err
    assert child.returncode == -signal.SIGINT  # how Python exits on an uncaught KeyboardInterrupt


@pytest.fixture
def no_lost_exceptions():
    """Checks afterwards that no exception was lost in a callback and that SIGINT is Python's again."""
    lost: list = []
    previous_hook = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: lost.append(unraisable)
    try:
        yield
    finally:
        sys.unraisablehook = previous_hook
    assert not lost, f"exceptions lost in callbacks: {[u.exc_value for u in lost]}"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.fixture
def slow_model():
    with sd.NoiseSchedule.linear(1000) as schedule, \
            sd.Model(schedule, data_dim=8, hidden=256, depth=4, seed=3) as model:
        yield schedule, model


@pytest.mark.parametrize("progress", [None, "callback"])
def test_ctrl_c_during_model_sample_leaves_the_model_usable(slow_model, no_lost_exceptions, monkeypatch, progress):
    schedule, model = slow_model
    before = model.sample(3, steps=4, seed=5)
    steps = []

    def at_each_step(step):
        steps.append(step)
        if step == 3:
            sigint_from_another_thread()

    if progress is None:  # the library's own relay, wrapped to see the steps
        relay_call = _sampling.ProgressRelay._call

        def seen(self, user_data, step, total, t, x, count):
            at_each_step(step)
            return relay_call(self, user_data, step, total, t, x, count)

        monkeypatch.setattr(_sampling.ProgressRelay, "_call", seen)
        callback = None
    else:
        callback = lambda step, total, t, x: at_each_step(step)  # noqa: E731
    with pytest.raises(KeyboardInterrupt):
        model.sample(64, progress=callback)
    assert steps == [0, 1, 2, 3], "the interrupt was seen before step 4"
    monkeypatch.undo()
    assert np.array_equal(model.sample(3, steps=4, seed=5), before)  # same handle, same results
    assert model.step == 0


def test_ctrl_c_during_schedule_sample_leaves_everything_usable(slow_model, no_lost_exceptions):
    schedule, model = slow_model
    calls = []

    def model_fn(x, t, labels):
        calls.append(t)
        if len(calls) == 3:
            sigint_from_another_thread()
        return model.predict(x, t)

    before = schedule.sample(lambda x, t, labels: model.predict(x, t), 3, 8, steps=4, seed=5)
    with pytest.raises(KeyboardInterrupt):
        schedule.sample(model_fn, 64, 8)
    assert len(calls) == 3, "the interrupt was seen in the model call it reached"
    assert np.array_equal(schedule.sample(lambda x, t, labels: model.predict(x, t), 3, 8, steps=4, seed=5), before)


def test_ctrl_c_interrupts_slow_python_code_inside_a_callback(linear100, no_lost_exceptions):
    # The SIGINT lands while the caller's model_fn waits on an event nobody sets: the wait is
    # interrupted there (it never returns), and a KeyboardInterrupt (not CancelledError) comes
    # out of sample. The wait's limit only turns a hang into a failure.
    waiting, returned = threading.Event(), []

    def send():
        waiting.wait()
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

    def model_fn(x, t, labels):
        waiting.set()
        returned.append(threading.Event().wait(timeout=120))
        return x

    sender = threading.Thread(target=send)
    sender.start()
    with pytest.raises(KeyboardInterrupt):
        linear100.sample(model_fn, 2, 3)
    sender.join()
    assert returned == [], "the blocked callback was not interrupted"


def test_ctrl_c_raised_inside_a_progress_callback(small_model, no_lost_exceptions):
    # Deterministic: the progress callback itself raises SIGINT at step 3.
    steps = []

    def progress(step, total, t, x):
        steps.append(step)
        if step == 3:
            signal.raise_signal(signal.SIGINT)
        return False

    with pytest.raises(KeyboardInterrupt):
        small_model.sample(2, progress=progress)
    assert steps == [0, 1, 2, 3]


def test_a_callers_own_sigint_handler_is_kept(small_model):
    # A handler that does not raise: sampling goes on to the end; SIG_IGN is left alone.
    seen = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: seen.append(signum))
    try:
        def progress(step, total, t, x):
            if step == 3:
                signal.raise_signal(signal.SIGINT)
            return False

        expected = small_model.sample(2, seed=4)
        assert np.array_equal(small_model.sample(2, seed=4, progress=progress), expected)
        assert seen == [signal.SIGINT]
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        assert np.array_equal(small_model.sample(2, seed=4, progress=progress), expected)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_sampling_from_a_thread_leaves_signals_alone(small_model):
    # signal.signal works only in the main thread: elsewhere sampling runs without the guard.
    result = {}
    thread = threading.Thread(target=lambda: result.update(x=small_model.sample(2, steps=3, seed=1)))
    thread.start()
    thread.join()
    assert np.array_equal(result["x"], small_model.sample(2, steps=3, seed=1))


def test_a_progress_callback_returning_true_still_cancels(small_model):
    with pytest.raises(sd.CancelledError):
        small_model.sample(2, progress=lambda step, total, t, x: step == 2)
