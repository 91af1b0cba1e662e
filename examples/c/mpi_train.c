/*
 * mpi_train.c — data-parallel training with MPI through libddpm's gradient seam: every rank
 * builds the same model (same seed; hashes compared), takes its shard of each global batch,
 * computes its gradients (ddpm_model_compute_gradients with its global sample offset),
 * MPI_Allreduce sums gradients and loss in place, and every rank applies the same update
 * (ddpm_model_apply_gradients). Parameter hashes are compared every CHECK_EVERY steps. Then
 * the ranks sample sharded (ddpm_model_sample_shard, MPI_Gatherv to rank 0), and rank 0
 * checks the samples are bitwise its own one-process samples and lie on the swiss roll.
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
    int counts[BATCH], offsets[BATCH];
    int chunks = (N_SAMPLES + DDPM_PREDICT_CHUNK - 1) / DDPM_PREDICT_CHUNK;
    for (int r = 0; r < size; r++) {
        int a = chunks * r / size * DDPM_PREDICT_CHUNK, b = chunks * (r + 1) / size * DDPM_PREDICT_CHUNK;
        a = a < N_SAMPLES ? a : N_SAMPLES;
        b = b < N_SAMPLES ? b : N_SAMPLES;
        offsets[r] = 2 * a;
        counts[r] = 2 * (b - a);
    }
    ddpm_sample_params smp = ddpm_sample_params_default();
    smp.method = DDPM_METHOD_DDIM;
    smp.steps = 50;
    smp.eta = 1;
    smp.seed = 7;
    int n_mine = counts[rank] / 2;
    if (n_mine > 0)
        CHECK(ddpm_model_sample_shard(model, &smp, NULL, NULL, n_mine, offsets[rank] / 2, N_SAMPLES, mine,
                                      n_mine * 2));
    MPI_Gatherv(mine, counts[rank], MPI_FLOAT, samples, counts, offsets, MPI_FLOAT, 0, MPI_COMM_WORLD);

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
        if (!ok) fprintf(stderr, "mpi_train: FAILED\n");
    }
    MPI_Bcast(&ok, 1, MPI_INT, 0, MPI_COMM_WORLD);
    ddpm_model_free(model);
    ddpm_schedule_free(sched);
    MPI_Finalize();
    return ok ? 0 : 1;
}
