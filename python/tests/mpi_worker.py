"""The MPI side of test_distributed.py: run under `mpirun -np N python mpi_worker.py JOB DIR`.

Jobs (each writes its results under DIR as .npz files from rank 0):
  train     dist.fit of the reference recipe for STEPS steps; saves parameters, hash, losses,
            per-rank hashes; with one process also the one-process oracles (plain train_step
            on the same batches, and the same batch in 2 fixed chunks summed in rank order).
  kill      the same run, checkpointing every 10 steps; rank 1 kills itself after KILL_AT.
  resume    loads DIR/ckpt.safetensors on every rank and trains on to STEPS.
  interrupt the train run, where rank 1 alone gets a SIGINT during step INTERRUPT_AT's hooks:
            every rank stops after the next step; saves each rank's (losses, step, hash).
  sample    sharded DDPM and DDIM sampling against one process's Model.sample.
  cond      vector and token conditioning (an MLP on vectors; a UNet on tokens with a text
            encoder): dist.fit for COND_STEPS steps (hash; with one process also the 2-chunk
            reference), then sharded guided sampling against one process's.
"""

import os
import signal
import sys

import numpy as np
from mpi4py import MPI

import swiftddpm as sd
from swiftddpm._arrays import float_ptr
from swiftddpm._conditions import cond_batch, cond_ref
from swiftddpm import _lib
from swiftddpm import distributed as dist

STEPS, BATCH, SEED, KILL_AT, INTERRUPT_AT = 50, 64, 7, 25, 10
N_SAMPLES = 600  # 3 chunks of DDPM_PREDICT_CHUNK: rank 0 draws 256, rank 1 344
comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()


def make_model() -> sd.Model:
    # Conditional, so that label dropout (stream 2) is exercised; clip on (grad_clip 1).
    return sd.Model(sd.NoiseSchedule.linear(100), network=sd.MLPConfig(data_dim=2, hidden=32, depth=2),
                    train=sd.TrainConfig(learning_rate=2e-3, seed=SEED, label_dropout=0.2),
                    cond=sd.Conditioning.classes(3))


def data():
    x = sd.datasets.swiss_roll(1000, seed=0)
    return x, (np.arange(len(x)) % 3).astype(np.int32)


def batches(step):
    """The global batch of step n that dist.fit draws (data not sharded)."""
    x, y = data()
    index = np.random.default_rng([SEED, step]).integers(0, len(x), BATCH)
    return np.ascontiguousarray(x[index]), np.ascontiguousarray(y[index])


def oracles(path):
    """One process: plain train_step on each global batch, and the chunked reference."""
    plain, chunked = make_model(), make_model()
    h = chunked._h()
    grads = dist._gradient_view(chunked)
    loss = _lib.ctypes.c_float()
    for step in range(STEPS):
        xb, yb = batches(step)
        plain.train_step(xb, yb)
        total = None
        for r in range(2):  # the shards of a 2-rank run, summed in rank order (what MPI_SUM of 2 gives)
            lo, hi = dist.shard_bounds(BATCH, r, 2)
            xs, ys = np.ascontiguousarray(xb[lo:hi]), np.ascontiguousarray(yb[lo:hi])
            status = _lib.lib.ddpm_model_compute_gradients(h, float_ptr(xs), hi - lo, xs.size, cond_ref(cond_batch(plain._conditioning, ys, None, hi - lo)[0]), lo,
                                                           BATCH, _lib.ctypes.byref(loss))
            assert status == 0, _lib.last_error()
            total = grads.copy() if total is None else total + grads
        grads[:] = total
        assert _lib.lib.ddpm_model_apply_gradients(h) == 0, _lib.last_error()
    np.savez(path, plain=dist.parameters(plain), plain_hash=dist.parameter_hash(plain),
             chunked=dist.parameters(chunked), chunked_hash=dist.parameter_hash(chunked))


def train(out_dir, model=None, checkpoint=None, checkpoint_every=0, on_step=None, tag="train"):
    x, y = data()
    model = model or make_model()
    hashes = []

    def record(step, loss):
        if step % 10 == 0:
            hashes.append(dist.parameter_hash(model))
        if on_step:
            on_step(step, loss)

    losses = dist.fit(model, x, STEPS - model.step, BATCH, labels=y, seed=SEED, check_every=5,
                      checkpoint=checkpoint, checkpoint_every=checkpoint_every, on_step=record)
    every = comm.gather(hashes, root=0)
    if rank == 0:
        np.savez(os.path.join(out_dir, f"{tag}-{size}.npz"), params=dist.parameters(model),
                 hash=dist.parameter_hash(model), losses=losses, rank_hashes=np.array(every, dtype=np.uint64),
                 step=model.step)
        if size == 1 and tag == "train":
            oracles(os.path.join(out_dir, "oracles.npz"))


def interrupt(out_dir):
    """Rank 1 alone sees Ctrl-C: the ranks agree on it in the next step's reduction."""
    import warnings

    signal.signal(signal.SIGINT, signal.default_int_handler)  # as in any Python program (mpirun may ignore it)
    x, y = data()
    model = make_model()

    def on_step(step, loss):
        if rank == 1 and step == INTERRUPT_AT:
            signal.raise_signal(signal.SIGINT)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        losses = dist.fit(model, x, STEPS, BATCH, labels=y, seed=SEED, check_every=5, on_step=on_step,
                          checkpoint=os.path.join(out_dir, "interrupted.safetensors"))
    warned = any("interrupted" in str(w.message) for w in caught)
    every = comm.gather((len(losses), model.step, dist.parameter_hash(model), warned), root=0)
    if rank == 0:
        np.save(os.path.join(out_dir, f"interrupt-{size}.npy"), np.array(every, dtype=np.uint64))


def sample(out_dir):
    x, y = data()
    model = make_model()
    dist.fit(model, x, 5, BATCH, labels=y, seed=SEED)
    results = {}
    for name, options in {"ddpm": dict(method="ddpm", steps=30, seed=5),
                          "ddim": dict(method="ddim", steps=10, eta=0.5, seed=6, clip=True),
                          "guided": dict(method="ddim", steps=10, seed=8, labels=np.arange(N_SAMPLES) % 3,
                                         guidance_scale=2.0)}.items():
        shards = dist.sample(model, N_SAMPLES, **options)
        if rank == 0:
            results[name] = shards
            results[name + "_one"] = model.sample(N_SAMPLES, **options)
    if rank == 0:
        np.savez(os.path.join(out_dir, f"sample-{size}.npz"), **results)


COND_STEPS, COND_SAMPLES = 6, 300  # sampling: rank 0 draws 256, rank 1 44


def conditioned(kind):
    """(model, data, its condition, the samples' condition) of a vector- or token-conditioned run."""
    x, y = data()
    schedule = sd.NoiseSchedule.linear(100)
    train = sd.TrainConfig(learning_rate=2e-3, seed=SEED, condition_dropout=0.2)
    if kind == "vector":
        vectors = np.eye(3, dtype=np.float32)[y] + 0.1 * np.float32(np.arange(len(x)) % 5)[:, None]
        model = sd.Model(schedule, network=sd.MLPConfig(data_dim=2, hidden=32, depth=2), train=train,
                         cond=sd.Conditioning.vector(3))
        return model, x, vectors, vectors[:COND_SAMPLES]
    # tokens: 8×8 images of the swiss roll's points, one caption of up to 4 ids (0 = padding) each
    images = np.zeros((len(x), 1, 8, 8), np.float32)
    images[:, 0] = x[:, :1, None] * np.linspace(-1, 1, 8, dtype=np.float32)[None, None, :] + x[:, 1:, None]
    tokens = np.zeros((len(x), 4), np.int32)
    tokens[:, 0], tokens[:, 1] = 1 + y, 4 + np.arange(len(x)) % 3
    tokens[::4, 1] = 0  # every fourth caption is one word long
    network = sd.UNetConfig(channels=1, height=8, width=8, base_channels=8, channel_mult=(1, 2), res_blocks=1,
                            attention_levels=(), cross_attention_levels=(0,), attention_heads=2, groups=4,
                            time_embed_dim=8)
    model = sd.Model(schedule, network=network, train=train,
                     cond=sd.Conditioning.tokens(vocab_size=7, max_length=4, dim=8, encoder_layers=1, encoder_heads=2))
    return model, images, tokens, tokens[:COND_SAMPLES]


def cond_job(out_dir):
    results = {}
    for kind in ("vector", "tokens"):
        model, x, c, prompts = conditioned(kind)
        dist.fit(model, x, COND_STEPS, BATCH, cond=c, seed=SEED, check_every=2)
        results[kind + "_hash"] = dist.parameter_hash(model)
        options = dict(method="ddim", steps=5, seed=9, cond=prompts, guidance_scale=2.0)
        shards = dist.sample(model, COND_SAMPLES, **options)
        if rank == 0:
            results[kind + "_shards"], results[kind + "_one"] = shards, model.sample(COND_SAMPLES, **options)
        if size == 1:  # the shards of a 2-rank run, summed in rank order, in one process
            reference, x, c, _ = conditioned(kind)
            h, grads, loss = reference._h(), dist._gradient_view(reference), _lib.ctypes.c_float()
            for step in range(COND_STEPS):
                index = np.random.default_rng([SEED, step]).integers(0, len(x), BATCH)
                total = None
                for r in range(2):
                    lo, hi = dist.shard_bounds(BATCH, r, 2)
                    xs = np.ascontiguousarray(x[index[lo:hi]]).reshape(hi - lo, -1)
                    cbatch, _keep = cond_batch(reference._conditioning, c[index[lo:hi]], None, hi - lo)
                    status = _lib.lib.ddpm_model_compute_gradients(h, float_ptr(xs), hi - lo, xs.size, cond_ref(cbatch),
                                                                   lo, BATCH, _lib.ctypes.byref(loss))
                    assert status == 0, _lib.last_error()
                    total = grads.copy() if total is None else total + grads
                grads[:] = total
                assert _lib.lib.ddpm_model_apply_gradients(h) == 0, _lib.last_error()
            results[kind + "_chunked_hash"] = dist.parameter_hash(reference)
    if rank == 0:
        np.savez(os.path.join(out_dir, f"cond-{size}.npz"), **results)


def main():
    job, out_dir = sys.argv[1], sys.argv[2]
    ckpt = os.path.join(out_dir, "ckpt.safetensors")
    if job == "train":
        train(out_dir)
    elif job == "kill":
        def die(step, loss):
            if rank == 1 and step == KILL_AT:
                os.kill(os.getpid(), signal.SIGKILL)
        train(out_dir, checkpoint=ckpt, checkpoint_every=10, on_step=die, tag="kill")
    elif job == "resume":
        train(out_dir, model=dist.load(ckpt), checkpoint=ckpt, checkpoint_every=10, tag="resume")
    elif job == "sample":
        sample(out_dir)
    elif job == "interrupt":
        interrupt(out_dir)
    elif job == "cond":
        cond_job(out_dir)
    else:
        raise SystemExit(f"unknown job {job}")


if __name__ == "__main__":
    main()
