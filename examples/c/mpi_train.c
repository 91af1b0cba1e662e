/*
 * mpi_train.c — data-parallel training with MPI through libddpm's gradient seam: every rank
 * builds the same model (same seed; hashes compared), takes its shard of each global batch,
 * computes its gradients (ddpm_model_compute_gradients with its global sample offset),
 * MPI_Allreduce sums gradients and loss in place, and every rank applies the same update
 * (ddpm_model_apply_gradients). Parameter hashes are compared every CHECK_EVERY steps. Then
 * the ranks sample sharded (ddpm_model_sample_shard, MPI_Gatherv to rank 0), and rank 0
 * checks the samples are bitwise its own one-process samples and lie on the swiss roll.
 * Then the same for conditioned models (conditioned_run): a condition vector, and token ids
 * read by a text encoder, each rank passing its rows' conditions, guided sharded sampling.
 * Exits nonzero (MPI_Abort: no rank is left waiting) if anything is off.
 *
 *   make examples/c/mpi_train && mpirun -np 2 ./examples/c/mpi_train [train_steps]
 */
#include <math.h>
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ddpm.h"

/* A failed call ends every rank (CHECK is in swiss_roll_data.h). */
#define EXAMPLE_FAIL() MPI_Abort(MPI_COMM_WORLD, 1)
#include "swiss_roll_data.h"

#define FAIL(...)                                                                              \
    do {                                                                                       \
        fprintf(stderr, __VA_ARGS__);                                                          \
        MPI_Abort(MPI_COMM_WORLD, 1);                                                          \
    } while (0)

#define N_DATA 4096
#define BATCH 256 /* the global batch; rank r trains on rows [B·r/N, B·(r+1)/N) of it */
#define N_SAMPLES 1000
#define CHECK_EVERY 50

/* Aborts every rank unless all ranks hold the same parameters. */
static void check_in_step(ddpm_model *model, int rank, const char *when) {
    uint64_t mine, lo, hi;
    CHECK(ddpm_model_parameter_hash(model, &mine));
    MPI_Allreduce(&mine, &lo, 1, MPI_UINT64_T, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(&mine, &hi, 1, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
    if (lo != hi) FAIL("rank %d: parameters differ between ranks %s (hash %016llx)\n", rank, when,
                       (unsigned long long)mine);
}

/* Rank r's samples [*a, *b) of n: whole chunks of DDPM_PREDICT_CHUNK, the unit of the
 * model's predictions, so that shards compute bitwise what one process computes. */
static void sample_shard(int n, int r, int size, int *a, int *b) {
    int chunks = (n + DDPM_PREDICT_CHUNK - 1) / DDPM_PREDICT_CHUNK;
    *a = chunks * r / size * DDPM_PREDICT_CHUNK;
    *b = chunks * (r + 1) / size * DDPM_PREDICT_CHUNK;
    *a = *a < n ? *a : n;
    *b = *b < n ? *b : n;
}

/* Gathers every rank's samples (its sample_shard of n points of 2 floats) into all on rank 0. */
static void gather_shards(const float *mine, float *all, int n, int rank, int size) {
    int counts[BATCH], offsets[BATCH];
    for (int r = 0; r < size; r++) {
        int a, b;
        sample_shard(n, r, size, &a, &b);
        offsets[r] = 2 * a;
        counts[r] = 2 * (b - a);
    }
    MPI_Gatherv(mine, counts[rank], MPI_FLOAT, all, counts, offsets, MPI_FLOAT, 0, MPI_COMM_WORLD);
}

/* The condition of data point i for a conditioned run: which half of the plane it lies in,
 * as a one-hot vector (VECTOR), or as the caption [1 + half, 3] of length 2 for even i and
 * [1 + half] of length 1 for odd i (TOKENS, max_length 3, 0 = padding). */
#define COND_STEPS 40
#define COND_SAMPLES 300 /* one prediction chunk on rank 0, the rest on rank 1 */
static void condition_of(int kind, const float *xy, int i, float *vector, int32_t *tokens, int32_t *length) {
    int half = xy[0] >= 0;
    if (kind == DDPM_COND_VECTOR) {
        vector[0] = (float)(1 - half);
        vector[1] = (float)half;
        return;
    }
    tokens[0] = 1 + half;
    tokens[1] = i % 2 == 0 ? 3 : 0;
    tokens[2] = 0;
    *length = i % 2 == 0 ? 2 : 1;
}

/* Vector or token conditioning over the ranks: COND_STEPS data-parallel steps of a
 * conditioned MLP (each rank passes the conditions of its rows of the global batch), the
 * ranks compared, then guided DDIM sampling sharded over the ranks against rank 0's
 * one-process samples. Returns 1 if they are bitwise the same (on rank 0; 1 elsewhere). */
static int conditioned_run(int kind, const ddpm_schedule *sched, const float *data, int rank, int size) {
    ddpm_mlp_params net = ddpm_mlp_params_default();
    net.data_dim = 2;
    net.hidden = 32;
    ddpm_train_params train = ddpm_train_params_default();
    train.learning_rate = 2e-3f;
    train.seed = 3;
    train.condition_dropout = 0.2f; /* label_dropout before 0.3: the same field */
    ddpm_cond_params cp = ddpm_cond_params_default();
    cp.kind = kind;
    cp.dim = kind == DDPM_COND_VECTOR ? 2 : 8;
    if (kind == DDPM_COND_TOKENS) {
        cp.vocab_size = 4;
        cp.max_length = 3;
        cp.encoder_layers = 1;
        cp.encoder_heads = 2;
    }
    ddpm_model *model = NULL;
    CHECK(ddpm_model_create(sched, &net.base, &train, &cp, &model));
    float *grads = NULL;
    int64_t num_params = 0;
    CHECK(ddpm_model_gradients(model, &grads, &num_params));
    const int lo = BATCH * rank / size, hi = BATCH * (rank + 1) / size, rows = hi - lo;
    static float batch[BATCH * 2], vectors[COND_SAMPLES * 2];
    static int32_t tokens[COND_SAMPLES * 3], lengths[COND_SAMPLES];
    ddpm_cond_batch cond = ddpm_cond_batch_default();
    if (kind == DDPM_COND_VECTOR) {
        cond.vectors = vectors;
    } else {
        cond.tokens = tokens;
        cond.lengths = lengths;
    }
    for (int step = 0; step < COND_STEPS; step++) {
        for (int i = lo; i < hi; i++) {
            unsigned pick = 2654435761u * (unsigned)(step * BATCH + i + 1);  /* the same on every rank */
            int j = (pick >> 8) % N_DATA;
            memcpy(&batch[2 * (i - lo)], &data[2 * j], 2 * sizeof(float));
            condition_of(kind, &data[2 * j], j, &vectors[2 * (i - lo)], &tokens[3 * (i - lo)], &lengths[i - lo]);
        }
        cond.vectors_count = kind == DDPM_COND_VECTOR ? 2 * rows : 0;
        cond.tokens_count = kind == DDPM_COND_TOKENS ? 3 * rows : 0;
        float loss;
        CHECK(ddpm_model_compute_gradients(model, batch, rows, rows * 2, &cond, lo, BATCH, &loss));
        MPI_Allreduce(MPI_IN_PLACE, grads, (int)num_params, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        CHECK(ddpm_model_apply_gradients(model));
    }
    check_in_step(model, rank, kind == DDPM_COND_VECTOR ? "after training on vectors" : "after training on tokens");

    /* The samples' conditions: those of the first COND_SAMPLES data points; rank r passes its rows. */
    for (int i = 0; i < COND_SAMPLES; i++)
        condition_of(kind, &data[2 * i], i, &vectors[2 * i], &tokens[3 * i], &lengths[i]);
    int a, b;
    sample_shard(COND_SAMPLES, rank, size, &a, &b);
    ddpm_sample_params smp = ddpm_sample_params_default();
    smp.method = DDPM_METHOD_DDIM;
    smp.steps = 20;
    smp.seed = 11;
    ddpm_predict_params guided = ddpm_predict_params_default();
    guided.guidance_scale = 2.5f;
    static float mine[COND_SAMPLES * 2], samples[COND_SAMPLES * 2], alone[COND_SAMPLES * 2];
    ddpm_cond_batch shard = cond;
    shard.vectors = kind == DDPM_COND_VECTOR ? vectors + 2 * a : NULL;
    shard.vectors_count = kind == DDPM_COND_VECTOR ? 2 * (b - a) : 0;
    shard.tokens = kind == DDPM_COND_TOKENS ? tokens + 3 * a : NULL;
    shard.tokens_count = kind == DDPM_COND_TOKENS ? 3 * (b - a) : 0;
    shard.lengths = kind == DDPM_COND_TOKENS ? lengths + a : NULL;
    if (b > a) CHECK(ddpm_model_sample_shard(model, &smp, &guided, &shard, b - a, a, COND_SAMPLES, mine, 2 * (b - a)));
    gather_shards(mine, samples, COND_SAMPLES, rank, size);
    int same = 1;
    if (rank == 0) {
        cond.vectors_count = kind == DDPM_COND_VECTOR ? 2 * COND_SAMPLES : 0;
        cond.tokens_count = kind == DDPM_COND_TOKENS ? 3 * COND_SAMPLES : 0;
        CHECK(ddpm_model_sample(model, &smp, &guided, &cond, COND_SAMPLES, alone, COND_SAMPLES * 2));
        same = memcmp(samples, alone, sizeof samples) == 0;
        int right = 0; /* samples on the side of the plane their condition names */
        for (int i = 0; i < COND_SAMPLES; i++) right += (alone[2 * i] >= 0) == (data[2 * i] >= 0);
        printf("mpi_train: %s conditioning: %d ranks in step after %d steps; sharded guided samples %s the "
               "one-process samples; %d%% on the named side\n", kind == DDPM_COND_VECTOR ? "vector" : "token",
               size, COND_STEPS, same ? "are bitwise" : "DIFFER FROM", 100 * right / COND_SAMPLES);
    }
    ddpm_model_free(model);
    return same;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    int steps = argc > 1 ? atoi(argv[1]) : 400;
    if (steps < 1 || size > BATCH) FAIL("usage: mpirun -np N mpi_train [steps >= 1], N <= %d\n", BATCH);

    ddpm_schedule_params sp = ddpm_schedule_params_default();
    ddpm_schedule *sched = NULL;
    CHECK(ddpm_schedule_create(&sp, &sched));
    ddpm_mlp_params net = ddpm_mlp_params_default();
    net.data_dim = 2;
    ddpm_train_params train = ddpm_train_params_default();
    train.learning_rate = 2e-3f;
    train.seed = 1; /* the same on every rank: the same initial parameters */
    ddpm_model *model = NULL;
    CHECK(ddpm_model_create(sched, &net.base, &train, NULL, &model));
    check_in_step(model, rank, "after creation");

    static float data[N_DATA * 2], batch[BATCH * 2];
    unsigned data_rng = 12345;
    swiss_roll(data, N_DATA, &data_rng); /* every rank holds the whole data set */
    const int lo = BATCH * rank / size, hi = BATCH * (rank + 1) / size, rows = hi - lo;
    float *grads = NULL;
    int64_t num_params = 0;
    CHECK(ddpm_model_gradients(model, &grads, &num_params));

    double first = 0, last = 0, start = MPI_Wtime();
    for (int step = 0; step < steps; step++) {
        /* The global batch of this step: the same indices on every rank; keep rows lo..hi. */
        unsigned pick = 2654435761u * (unsigned)(step + 1);
        for (int i = 0; i < BATCH; i++) {
            pick = pick * 1664525u + 1013904223u;
            int j = (pick >> 8) % N_DATA;
            if (i >= lo && i < hi) memcpy(&batch[2 * (i - lo)], &data[2 * j], 2 * sizeof(float));
        }
        float loss;
        CHECK(ddpm_model_compute_gradients(model, batch, rows, rows * 2, NULL, lo, BATCH, &loss));
        MPI_Allreduce(MPI_IN_PLACE, grads, (int)num_params, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        MPI_Allreduce(MPI_IN_PLACE, &loss, 1, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        CHECK(ddpm_model_apply_gradients(model));
        if (step < 100) first += loss / 100;
        if (step >= steps - 100) last += loss / 100;
        if ((step + 1) % CHECK_EVERY == 0) check_in_step(model, rank, "during training");
    }
    double seconds = MPI_Wtime() - start;
    check_in_step(model, rank, "after training");

    /* Sharded DDIM sampling: whole chunks of DDPM_PREDICT_CHUNK samples per rank. */
    static float samples[N_SAMPLES * 2], mine[N_SAMPLES * 2], alone[N_SAMPLES * 2];
    ddpm_sample_params smp = ddpm_sample_params_default();
    smp.method = DDPM_METHOD_DDIM;
    smp.steps = 50;
    smp.eta = 1;
    smp.seed = 7;
    int a, b;
    sample_shard(N_SAMPLES, rank, size, &a, &b);
    if (b > a) CHECK(ddpm_model_sample_shard(model, &smp, NULL, NULL, b - a, a, N_SAMPLES, mine, 2 * (b - a)));
    gather_shards(mine, samples, N_SAMPLES, rank, size);

    int ok = 1;
    if (rank == 0) {
        CHECK(ddpm_model_sample(model, &smp, NULL, NULL, N_SAMPLES, alone, N_SAMPLES * 2));
        int same = memcmp(samples, alone, sizeof samples) == 0;
        double dist = mean_nn_distance(samples, N_SAMPLES, data, N_DATA);
        uint64_t hash;
        CHECK(ddpm_model_parameter_hash(model, &hash));
        printf("mpi_train: %d ranks, %d steps of global batch %d in %.2f s (%.1f steps/s); "
               "loss %.4f (first 100) -> %.4f (last 100); parameter hash %016llx on every rank\n",
               size, steps, BATCH, seconds, steps / seconds, first, last, (unsigned long long)hash);
        printf("mpi_train: sharded DDIM samples %s the one-process samples; mean distance to the data %.3f\n",
               same ? "are bitwise" : "DIFFER FROM", dist);
        ok = same && dist < 0.3 && last < first; /* random N(0, I) points lie ~0.5 away */
    }
    ok = conditioned_run(DDPM_COND_VECTOR, sched, data, rank, size) && ok;
    ok = conditioned_run(DDPM_COND_TOKENS, sched, data, rank, size) && ok;
    if (rank == 0 && !ok) fprintf(stderr, "mpi_train: FAILED\n");
    MPI_Bcast(&ok, 1, MPI_INT, 0, MPI_COMM_WORLD);
    ddpm_model_free(model);
    ddpm_schedule_free(sched);
    MPI_Finalize();
    return ok ? 0 : 1;
}
