/*
 * thread_stress.c — the threading rules of ddpm.h ("Threading"), run as they are stated:
 *
 *   - WORKERS threads, each with its own models and sampler, all made from ONE shared
 *     schedule, which they also read and sample from (ddpm_schedule_table, _add_noise,
 *     _posterior, _sample with a callback) at the same time;
 *   - two threads that take turns on ONE shared model, each call inside the caller's mutex
 *     (a handle may move between threads; calls on it must not overlap);
 *   - one thread that calls ddpm_set_num_threads(1, 2, 3, ...) and ddpm_get_num_threads the
 *     whole time (issue 19, finding 1: this used to deadlock within ~1000 iterations);
 *   - every thread provoking its own errors and finding its own message in ddpm_last_error.
 *
 * The oracle is bitwise: results do not depend on the thread count, so every model a
 * worker trains, the shared model's final state, every prediction and every sample must
 * equal what one thread computed alone before the threads started. Iterations are bounded
 * and alarm() is the watchdog: a deadlock ends the run with SIGALRM, never a hang.
 *
 *   thread_stress <scratch folder>
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ddpm.h"

enum { WORKERS = 3, ROUNDS = 6, STEPS = 25, TAKERS = 2, TURNS = 40, BATCH = 256, N = 512, D = 2, WATCHDOG_S = 600 };

static ddpm_schedule *shared_schedule;
static ddpm_model *shared_model;
static pthread_mutex_t shared_lock = PTHREAD_MUTEX_INITIALIZER;
static const char *scratch;
static float data[BATCH * D], x_t[N * D];  /* read-only once main has filled them */
static atomic_int workers_left, failures;
static atomic_long resizes;

/* What one thread computes alone: the oracle. */
static struct {
    uint64_t trained_hash, shared_hash;
    float predicted[N * D], sampled[N * D], callback_sampled[64 * D];
    float noised[N * D], posterior_mean[N * D], posterior_variance[N];
    double alphas_cumprod[100];
} reference;

#define FAIL(...) do { fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); atomic_fetch_add(&failures, 1); } while (0)
#define CHECK(call) do { int s_ = (call); if (s_ != DDPM_OK) { \
        FAIL("%s:%d %s: %s (%s)", __FILE__, __LINE__, #call, ddpm_status_string(s_), ddpm_last_error()); return NULL; } } while (0)

static ddpm_model *new_model(void) {
    ddpm_mlp_params net = ddpm_mlp_params_default();
    net.data_dim = D; net.hidden = 32; net.depth = 2; net.time_embed_dim = 8;
    ddpm_train_params train = ddpm_train_params_default();
    train.seed = 7; train.learning_rate = 2e-3f;
    ddpm_model *m = NULL;
    if (ddpm_model_create(shared_schedule, &net.base, &train, NULL, &m) != DDPM_OK)
        FAIL("model_create: %s", ddpm_last_error());
    return m;
}

static uint64_t hash_of(ddpm_model *m) {
    uint64_t h = 0;
    if (ddpm_model_parameter_hash(m, &h) != DDPM_OK) FAIL("parameter_hash: %s", ddpm_last_error());
    return h;
}

/* A caller's model for ddpm_schedule_sample: ε̂ = 0.1·x (deterministic, thread-free). */
static int linear_eps(void *user, float *out, const float *x, int64_t batch, int64_t dim, int32_t t, const int32_t *labels) {
    (void)user; (void)t; (void)labels;
    for (int64_t i = 0; i < batch * dim; i++) out[i] = 0.1f * x[i];
    return 0;
}

/* The shared schedule's closed forms on N rows: x_t = √ᾱ_t·x0 + √(1-ᾱ_t)·ε and the posterior
 * q(x_{t-1}|x_t, x0), with x0 = ε = x_t[row] and t = i mod 100 per row. */
static int closed_forms(float *noised, float *mean, float *variance) {
    int32_t t[N];
    for (int i = 0; i < N; i++) t[i] = i % 100;
    if (ddpm_schedule_add_noise(shared_schedule, x_t, x_t, t, N, D, noised, N * D) != DDPM_OK) return -5;
    if (ddpm_schedule_posterior(shared_schedule, x_t, noised, t, N, D, mean, variance, N * D) != DDPM_OK) return -6;
    return 0;
}

/* Train STEPS steps, predict N rows, sample N rows, sample 64 rows with the callback. */
static int run_pipeline(ddpm_model *m, float *predicted, float *sampled, float *callback_sampled) {
    for (int s = 0; s < STEPS; s++)
        if (ddpm_model_train_step(m, data, BATCH, BATCH * D, NULL, NULL) != DDPM_OK) return -1;
    if (ddpm_model_predict(m, NULL, DDPM_OUTPUT_EPS, x_t, N, 40, NULL, predicted, N * D) != DDPM_OK) return -2;
    ddpm_sample_params sp = ddpm_sample_params_default();
    sp.method = DDPM_METHOD_DDIM; sp.steps = 5; sp.seed = 11;
    if (ddpm_model_sample(m, &sp, NULL, NULL, N, sampled, N * D) != DDPM_OK) return -3;
    if (ddpm_schedule_sample(shared_schedule, &sp, linear_eps, NULL, NULL, 64, D, callback_sampled, 64 * D) != DDPM_OK) return -4;
    return 0;
}

static void *worker(void *arg) {
    int id = (int)(intptr_t)arg;
    static _Thread_local float predicted[N * D], sampled[N * D], callback_sampled[64 * D];
    char path[4096], expected[64];
    for (int round = 0; round < ROUNDS; round++) {
        /* Its own error: a count no other thread uses, read back after more calls (its own
         * successful ones, and other threads' failures) have happened. */
        int64_t bad = 1000 + 10 * id + round;
        ddpm_model *m = new_model();
        if (!m) return NULL;
        if (ddpm_model_train_step(m, data, BATCH, bad, NULL, NULL) != DDPM_ERR_SHAPE) FAIL("worker %d: bad count accepted", id);
        snprintf(expected, sizeof expected, "count is %lld,", (long long)bad);

        int st = run_pipeline(m, predicted, sampled, callback_sampled);
        if (st != 0) FAIL("worker %d round %d: pipeline step %d: %s", id, round, st, ddpm_last_error());
        if (!strstr(ddpm_last_error(), expected))
            FAIL("worker %d: ddpm_last_error() is \"%s\", not its own (%s)", id, ddpm_last_error(), expected);
        if (hash_of(m) != reference.trained_hash) FAIL("worker %d round %d: trained parameters differ from one thread's", id, round);
        if (memcmp(predicted, reference.predicted, sizeof predicted)) FAIL("worker %d round %d: predictions differ", id, round);
        if (memcmp(sampled, reference.sampled, sizeof sampled)) FAIL("worker %d round %d: samples differ", id, round);
        if (memcmp(callback_sampled, reference.callback_sampled, sizeof callback_sampled))
            FAIL("worker %d round %d: callback samples differ", id, round);

        static _Thread_local float noised[N * D], mean[N * D], variance[N];
        if (closed_forms(noised, mean, variance) != 0) FAIL("worker %d: closed forms: %s", id, ddpm_last_error());
        if (memcmp(noised, reference.noised, sizeof noised) || memcmp(mean, reference.posterior_mean, sizeof mean) ||
            memcmp(variance, reference.posterior_variance, sizeof variance))
            FAIL("worker %d round %d: add_noise or posterior differ", id, round);

        double table[100];
        CHECK(ddpm_schedule_table(shared_schedule, DDPM_TABLE_ALPHAS_CUMPROD, table, 100));
        if (memcmp(table, reference.alphas_cumprod, sizeof table)) FAIL("worker %d: the shared schedule's table changed", id);

        /* Its own file, saved and loaded while the others do the same. */
        snprintf(path, sizeof path, "%s/worker-%d.safetensors", scratch, id);
        CHECK(ddpm_model_save(m, path));
        ddpm_model *loaded = NULL;
        CHECK(ddpm_model_load(path, &loaded));
        if (hash_of(loaded) != reference.trained_hash) FAIL("worker %d: the loaded model differs", id);
        ddpm_model_free(loaded);
        ddpm_model_free(m);

        /* Its own sampler over the shared schedule. */
        ddpm_sample_params sp = ddpm_sample_params_default();
        sp.method = DDPM_METHOD_DDIM; sp.steps = 4;
        ddpm_sampler *s = NULL;
        CHECK(ddpm_sampler_create(shared_schedule, &sp, 8, D, &s));
        float x[8 * D], eps[8 * D] = {0};
        CHECK(ddpm_sampler_init_noise(s, x, 8 * D));
        while (ddpm_sampler_timestep(s) >= 0) CHECK(ddpm_sampler_step(s, eps, x, NULL, NULL, 8 * D));
        ddpm_sampler_free(s);
    }
    atomic_fetch_sub(&workers_left, 1);
    return NULL;
}

/* Takes turns on the shared model: each train step inside the lock. */
static void *taker(void *arg) {
    (void)arg;
    for (int turn = 0; turn < TURNS; turn++) {
        pthread_mutex_lock(&shared_lock);
        int st = ddpm_model_train_step(shared_model, data, BATCH, BATCH * D, NULL, NULL);
        pthread_mutex_unlock(&shared_lock);
        if (st != DDPM_OK) { FAIL("taker: %s", ddpm_last_error()); break; }
        sched_yield();
    }
    atomic_fetch_sub(&workers_left, 1);
    return NULL;
}

/* Changes the thread count until every other thread is done (bounded: at most 1e6 times). */
static void *resizer(void *arg) {
    (void)arg;
    for (long i = 0; i < 1000000 && atomic_load(&workers_left) > 0; i++) {
        if (ddpm_set_num_threads(1 + (int)(i % 3)) != DDPM_OK) FAIL("set_num_threads: %s", ddpm_last_error());
        int n = ddpm_get_num_threads();
        if (n < 1 || n > 3) FAIL("get_num_threads = %d", n);
        atomic_fetch_add(&resizes, 1);
        if (i % 16 == 0) sched_yield();
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: %s <scratch folder>\n", argv[0]); return 2; }
    scratch = argv[1];
    alarm(WATCHDOG_S);  /* a deadlock ends the test (SIGALRM), never hangs it */
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (int i = 0; i < BATCH * D; i++) data[i] = (float)((i * 37) % 17) / 8 - 1;
    for (int i = 0; i < N * D; i++) x_t[i] = (float)((i * 11) % 23) / 8 - 1.5f;

    ddpm_schedule_params p = ddpm_schedule_params_default();
    p.num_timesteps = 100;
    if (ddpm_schedule_create(&p, &shared_schedule) != DDPM_OK) { fprintf(stderr, "%s\n", ddpm_last_error()); return 2; }

    /* The oracle: one thread, alone. */
    ddpm_set_num_threads(1);
    ddpm_model *m = new_model();
    if (!m || run_pipeline(m, reference.predicted, reference.sampled, reference.callback_sampled) != 0) {
        fprintf(stderr, "reference: %s\n", ddpm_last_error());
        return 2;
    }
    reference.trained_hash = hash_of(m);
    ddpm_model_free(m);
    if (closed_forms(reference.noised, reference.posterior_mean, reference.posterior_variance) != 0) {
        fprintf(stderr, "reference closed forms: %s\n", ddpm_last_error());
        return 2;
    }
    ddpm_schedule_table(shared_schedule, DDPM_TABLE_ALPHAS_CUMPROD, reference.alphas_cumprod, 100);
    m = new_model();
    for (int s = 0; s < TAKERS * TURNS; s++) ddpm_model_train_step(m, data, BATCH, BATCH * D, NULL, NULL);
    reference.shared_hash = hash_of(m);
    ddpm_model_free(m);
    shared_model = new_model();
    if (atomic_load(&failures)) return 1;

    pthread_t threads[WORKERS + TAKERS + 1];
    atomic_store(&workers_left, WORKERS + TAKERS);
    for (int w = 0; w < WORKERS; w++) pthread_create(&threads[w], NULL, worker, (void *)(intptr_t)w);
    for (int t = 0; t < TAKERS; t++) pthread_create(&threads[WORKERS + t], NULL, taker, NULL);
    pthread_create(&threads[WORKERS + TAKERS], NULL, resizer, NULL);
    for (int i = 0; i < WORKERS + TAKERS + 1; i++) pthread_join(threads[i], NULL);

    if (ddpm_model_step(shared_model) != TAKERS * TURNS) FAIL("shared model: %lld steps", (long long)ddpm_model_step(shared_model));
    if (hash_of(shared_model) != reference.shared_hash) FAIL("the shared model differs from %d steps on one thread", TAKERS * TURNS);
    ddpm_model_free(shared_model);
    ddpm_schedule_free(shared_schedule);
    printf("thread_stress: %d workers × %d rounds, %d threads × %d turns on a shared model, %ld thread-count changes: %d failures\n",
           WORKERS, ROUNDS, TAKERS, TURNS, (long)atomic_load(&resizes), atomic_load(&failures));
    return atomic_load(&failures) ? 1 : 0;
}
