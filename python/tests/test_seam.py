"""The gradient-reduction seam through the C ABI, in one process (no MPI): compute / the
gradient buffer / apply is the single train step, shards sum to the whole batch, and the
seam's functions refuse bad arguments with the library's message.
"""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

import swiftddpm as sd
from swiftddpm._arrays import float_ptr
from swiftddpm._sample_params import sample_params
from swiftddpm import _lib
from swiftddpm import errors

distributed = pytest.importorskip("swiftddpm.distributed")  # needs mpi4py for the helpers


def model(seed: int = 3) -> sd.Model:
    return sd.Model(sd.NoiseSchedule.linear(100), network=sd.MLPConfig(data_dim=3, hidden=16, depth=2),
                    train=sd.TrainConfig(learning_rate=2e-3, seed=seed))


def compute(m: sd.Model, x: np.ndarray, offset: int = 0, global_batch: int = 0) -> float:
    loss = ctypes.c_float()
    errors.check(_lib.lib.ddpm_model_compute_gradients(m._h(), float_ptr(x), x.shape[0], x.size, None, offset,
                                                       global_batch, ctypes.byref(loss)))
    return loss.value


def test_compute_then_apply_is_the_train_step():
    x = np.random.default_rng(0).uniform(-1, 1, (32, 3)).astype(np.float32)
    with model() as a, model() as b:
        for _ in range(5):
            loss_a = a.train_step(x)
            loss_b = compute(b, x)
            errors.check(_lib.lib.ddpm_model_apply_gradients(b._h()))
            assert loss_a == loss_b
        assert distributed.parameter_hash(a) == distributed.parameter_hash(b)
        assert a.step == b.step == 5


def test_shard_losses_and_gradients_sum_to_the_batch():
    x = np.random.default_rng(1).uniform(-1, 1, (24, 3)).astype(np.float32)
    with model() as m:
        whole_loss = compute(m, x)
        whole = distributed._gradient_view(m).copy()
        parts, grads = [], np.zeros_like(whole)
        for lo, hi in ((0, 10), (10, 24)):
            parts.append(compute(m, np.ascontiguousarray(x[lo:hi]), lo, 24))
            grads += distributed._gradient_view(m)
        assert sum(parts) == pytest.approx(whole_loss, rel=1e-6)
        np.testing.assert_allclose(grads, whole, rtol=0, atol=1e-6 * np.abs(whole).max())
        # Negative control: the second shard posing as the first draws other noise.
        wrong = compute(m, np.ascontiguousarray(x[10:24]), 0, 24)
        assert wrong != pytest.approx(parts[1], rel=1e-3)


def test_seam_refuses_bad_calls():
    x = np.zeros((4, 3), np.float32)
    with model() as m:
        with pytest.raises(sd.InvalidArgumentError, match="computeGradients first"):
            errors.check(_lib.lib.ddpm_model_apply_gradients(m._h()))
        with pytest.raises(sd.InvalidArgumentError, match="not inside the global batch"):
            compute(m, x, offset=8, global_batch=10)
        with pytest.raises(sd.InvalidArgumentError):
            compute(m, x, offset=-1, global_batch=10)
        compute(m, x)
        distributed._gradient_view(m)[0] = np.nan
        before = distributed.parameters(m)
        with pytest.raises(sd.NonFiniteError, match="gradient norm"):
            errors.check(_lib.lib.ddpm_model_apply_gradients(m._h()))
        np.testing.assert_array_equal(distributed.parameters(m), before)
        assert m.step == 0
        with pytest.raises(sd.ShapeError):
            errors.check(_lib.lib.ddpm_model_get_parameters(m._h(), 0, float_ptr(before), before.size - 1))
        ptr = _lib.FLOAT_P()
        with pytest.raises(sd.InvalidArgumentError, match="NULL"):
            errors.check(_lib.lib.ddpm_model_gradients(None, ctypes.byref(ptr), None))
        h = ctypes.c_uint64()
        with pytest.raises(sd.InvalidArgumentError, match="NULL"):
            errors.check(_lib.lib.ddpm_model_parameter_hash(None, ctypes.byref(h)))
        out = np.zeros((4, 3), np.float32)
        params = sample_params(steps=5)
        with pytest.raises(sd.InvalidArgumentError, match="not inside"):
            errors.check(_lib.lib.ddpm_model_sample_shard(m._h(), ctypes.byref(params), None, None, 4, 8, 10,
                                                          float_ptr(out), out.size))
