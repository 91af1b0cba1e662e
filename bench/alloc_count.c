/*
 * alloc_count.c — the C side of `make bench`: one model driven straight through the C ABI,
 * with no Python in the loop, measuring
 *   - heap allocations (malloc/calloc/realloc/memalign family) per steady-state train step,
 *   - allocations per ddpm_model_sample call and per reverse step inside it,
 *   - the engine's own time per train step (to compare with the same step called from Python),
 *   - the cost of a trivial library call (ddpm_model_step),
 *   - every GEMM the engine makes (its ddpm_sgemm_* entries, interposed like malloc): calls,
 *     FLOPs and time inside a train step and a sampling step, and the same shapes replayed
 *     back to back outside the engine on OpenBLAS's cblas_sgemm (the sgemm speed on exactly
 *     our shapes, OpenBLAS on as many threads as the engine).
 *
 * The allocator is interposed by defining malloc & co. in this executable (linked with
 * -rdynamic, so libddpm, the Swift runtime and OpenBLAS all resolve to these; the GEMM entries
 * likewise, which libddpm calls through its PLT); each counts
 * and forwards to glibc's __libc_* functions. Counting is on only inside measured windows.
 *
 * Build: cc -O2 -rdynamic bench/alloc_count.c -Iinclude -ISources/DDPMKernels/include -L<dir> -lddpm -Wl,-rpath,<dir> -o ddpm_cbench
 * Usage: ddpm_cbench key=value ...   (net=mlp D= H= L= | net=unet C= S= K= base= levels= mult=1,2,2
 *        res_blocks= attention_levels= heads= groups= dropout= ; V= ctx= ctx_dim= enc= enc_heads=
 *        xattn= (token captions instead of K classes); B= threads= warmup= steps= sample_n=
 *        alloc_steps_lo= alloc_steps_hi= time_n= time_steps= chunks= replays=)
 * Prints one JSON object on stdout. The model's parameters are filled in create_model() only.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <execinfo.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <time.h>

#include "ddpm.h"
#include "ddpm_gemm.h" /* the engine's GEMM entries (Sources/DDPMKernels/include), interposed below */

/* ---- counting allocator -------------------------------------------------------------- */

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

static volatile int counting;
static uint64_t n_alloc, n_free, n_bytes;

static int trace_left;           /* ALLOC_TRACE=n: print the stacks of the first n counted allocations */
static __thread int in_trace;

static inline void count_alloc(size_t size) {
    if (counting) {
        __atomic_fetch_add(&n_alloc, 1, __ATOMIC_RELAXED);
        __atomic_fetch_add(&n_bytes, size, __ATOMIC_RELAXED);
        if (trace_left > 0 && !in_trace) {
            in_trace = 1;
            trace_left--;
            void *frames[24];
            int n = backtrace(frames, 24);
            fprintf(stderr, "--- allocation of %zu bytes\n", size);
            backtrace_symbols_fd(frames, n, 2);
            in_trace = 0;
        }
    }
}

void *malloc(size_t size) { count_alloc(size); return __libc_malloc(size); }
void *calloc(size_t n, size_t size) { count_alloc(n * size); return __libc_calloc(n, size); }
void *realloc(void *p, size_t size) { count_alloc(size); return __libc_realloc(p, size); }
void *memalign(size_t align, size_t size) { count_alloc(size); return __libc_memalign(align, size); }
void *aligned_alloc(size_t align, size_t size) { count_alloc(size); return __libc_memalign(align, size); }
void *valloc(size_t size) { count_alloc(size); return __libc_memalign(4096, size); }
int posix_memalign(void **out, size_t align, size_t size) {
    count_alloc(size);
    void *p = __libc_memalign(align, size);
    if (!p) return ENOMEM;
    *out = p;
    return 0;
}
void free(void *p) {
    if (p && counting) __atomic_fetch_add(&n_free, 1, __ATOMIC_RELAXED);
    __libc_free(p);
}

static void window_start(void) { n_alloc = n_free = n_bytes = 0; counting = 1; }
static void window_stop(void) { counting = 0; }


/* ---- GEMM interposition -------------------------------------------------------------- */

/* The engine's GEMMs (Sources/DDPMKernels/include/ddpm_gemm.h) are interposed like malloc:
   ddpm_sgemm_split, which the engine calls once per GEMM, counts the call and its FLOPs and
   records its shape; ddpm_sgemm (a GEMM run whole) and ddpm_sgemm_tile (a tile of one split
   over the pool) are timed. The replay runs the recorded shapes on OpenBLAS's cblas_sgemm,
   the library libddpm links (a GEMM whose B came from a packing callback is replayed with a
   plain B of the same shape). */
typedef void (*split_fn)(ddpm_sgemm_call *, size_t);
typedef void (*run_fn)(const ddpm_sgemm_call *);
typedef void (*tile_fn)(const ddpm_sgemm_call *, size_t);
typedef void (*sgemm_fn)(int, int, int, int, int, int, float, const float *, int, const float *, int,
                         float, float *, int);
static sgemm_fn real_sgemm;
static volatile int gemm_timing, gemm_recording;
static double gemm_seconds, gemm_flops;
static pthread_mutex_t gemm_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t gemm_calls;

typedef struct { int order, ta, tb, m, n, k, lda, ldb, ldc; float alpha, beta; } gemm_call;
static gemm_call *recorded;
static size_t n_recorded, cap_recorded;

static double now(void);
static int cmp_double(const void *a, const void *b);

void ddpm_sgemm_split(ddpm_sgemm_call *call, size_t threads) {
    static split_fn real;
    if (!real) real = (split_fn)dlsym(RTLD_NEXT, "ddpm_sgemm_split");
    /* The engine runs GEMMs from each of its worker threads at once: the shared counters and
       the recording are updated under a lock (only inside measured windows). */
    if (gemm_recording || gemm_timing) {
        pthread_mutex_lock(&gemm_lock);
        if (gemm_recording && n_recorded < cap_recorded) {
            const int m = (int)call->m, n = (int)call->n, k = (int)call->k;
            const int ta = call->trans_a ? 112 : 111, tb = !call->pack_b && call->trans_b ? 112 : 111;
            const int ldb = call->pack_b ? n : (int)call->ldb;
            recorded[n_recorded++] = (gemm_call){101, ta, tb, m, n, k, (int)call->lda, ldb, (int)call->ldc, call->alpha,
                                                 call->beta};
        }
        if (gemm_timing) gemm_flops += 2.0 * call->m * call->n * call->k, gemm_calls++;
        pthread_mutex_unlock(&gemm_lock);
    }
    real(call, threads);
}

/* Time inside the engine's GEMM, summed over threads (thread-seconds). */
static void add_gemm_time(double dt) {
    pthread_mutex_lock(&gemm_lock);
    gemm_seconds += dt;
    pthread_mutex_unlock(&gemm_lock);
}

void ddpm_sgemm(const ddpm_sgemm_call *call) {
    static run_fn real;
    if (!real) real = (run_fn)dlsym(RTLD_NEXT, "ddpm_sgemm");
    if (!gemm_timing) { real(call); return; }
    double t0 = now();
    real(call);
    add_gemm_time(now() - t0);
}

void ddpm_sgemm_tile(const ddpm_sgemm_call *call, size_t tile) {
    static tile_fn real;
    if (!real) real = (tile_fn)dlsym(RTLD_NEXT, "ddpm_sgemm_tile");
    if (!gemm_timing) { real(call, tile); return; }
    double t0 = now();
    real(call, tile);
    add_gemm_time(now() - t0);
}

static void gemm_window_start(void) { gemm_seconds = gemm_flops = 0; gemm_calls = 0; gemm_timing = 1; }
static void gemm_window_stop(void) { gemm_timing = 0; }

/* Rows x leading dimension of each operand of a row-major call (111 = no transpose). */
static size_t size_a(const gemm_call *g) { return (size_t)(g->ta == 111 ? g->m : g->k) * g->lda; }
static size_t size_b(const gemm_call *g) { return (size_t)(g->tb == 111 ? g->k : g->n) * g->ldb; }
static size_t size_c(const gemm_call *g) { return (size_t)g->m * g->ldc; }

/* Replays the recorded calls on scratch operands: seconds per replay of the whole list
   (median of 5), outside the engine, with OpenBLAS itself on `threads` threads (the engine
   keeps OpenBLAS on one thread and splits the batch over its own pool instead: this is the
   sgemm speed that splitting is measured against). */
static int replays = 5;  /* replays= : timed replays of a recorded list (1...5), after warm-ups */

static double replay_recorded(int threads) {
    typedef void (*set_threads_fn)(int);
    set_threads_fn set_threads = (set_threads_fn)dlsym(RTLD_DEFAULT, "openblas_set_num_threads");
    if (set_threads) set_threads(threads);
    size_t ma = 1, mb = 1, mc = 1;
    for (size_t i = 0; i < n_recorded; i++) {
        if (size_a(&recorded[i]) > ma) ma = size_a(&recorded[i]);
        if (size_b(&recorded[i]) > mb) mb = size_b(&recorded[i]);
        if (size_c(&recorded[i]) > mc) mc = size_c(&recorded[i]);
    }
    if (!real_sgemm) real_sgemm = (sgemm_fn)dlsym(RTLD_DEFAULT, "cblas_sgemm");
    float *a = calloc(ma, sizeof(float)), *b = calloc(mb, sizeof(float)), *c = calloc(mc, sizeof(float));
    for (size_t i = 0; i < ma; i++) a[i] = 0.001f * (float)(i % 97);
    for (size_t i = 0; i < mb; i++) b[i] = 0.001f * (float)(i % 89);
    double times[5];
    for (int rep = replays >= 5 ? -2 : -1; rep < replays; rep++) {
        double t0 = now();
        for (size_t i = 0; i < n_recorded; i++) {
            const gemm_call *g = &recorded[i];
            real_sgemm(g->order, g->ta, g->tb, g->m, g->n, g->k, g->alpha, a, g->lda, b, g->ldb, g->beta, c, g->ldc);
        }
        if (rep >= 0) times[rep] = now() - t0;
    }
    free(a); free(b); free(c);
    if (set_threads) set_threads(1);  /* back to the engine's setting */
    qsort(times, (size_t)replays, sizeof(double), cmp_double);
    return times[replays / 2];  /* the median */
}

/* ---- helpers ------------------------------------------------------------------------- */

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

#define CHECK(x) do { int s_ = (x); if (s_ != DDPM_OK) { \
    fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, ddpm_status_string(s_), ddpm_last_error()); \
    exit(1); } } while (0)

static long arg(int argc, char **argv, const char *key, long fallback) {
    size_t n = strlen(key);
    for (int i = 1; i < argc; i++)
        if (strncmp(argv[i], key, n) == 0 && argv[i][n] == '=') return strtol(argv[i] + n + 1, NULL, 10);
    return fallback;
}

static const char *sarg(int argc, char **argv, const char *key, const char *fallback) {
    size_t n = strlen(key);
    for (int i = 1; i < argc; i++)
        if (strncmp(argv[i], key, n) == 0 && argv[i][n] == '=') return argv[i] + n + 1;
    return fallback;
}

/* A fixed batch of data in [-1, 1] from a small LCG (the values do not matter for timing). */
static void fill(float *x, size_t n) {
    uint32_t s = 12345;
    for (size_t i = 0; i < n; i++) { s = s * 1664525u + 1013904223u; x[i] = (s >> 8) * (2.0f / 16777216.0f) - 1.0f; }
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The one place that describes the model to the library: the network from the command line
   (net=mlp D= H= L=, or net=unet C= S= base= levels= res_blocks= attention_levels=; K=
   classes for either), everything else the library's defaults. */
/* The condition of a run: K classes (K=), or token captions of up to ctx ids in 1..V-1 (V=). */
static long K, V, ctx;

/* The condition of `rows` rows, allocated: labels b % K, or captions of length 1 + b % ctx
   (tokens, then the rows' lengths); NULL when unconditional. */
static int32_t *make_condition(long rows) {
    if (K <= 0 && V <= 0) return NULL;
    int32_t *ids = calloc((size_t)(rows * (V > 0 ? ctx + 1 : 1)), sizeof(int32_t));
    for (long b = 0; b < rows; b++) {
        if (V <= 0) { ids[b] = (int32_t)(b % K); continue; }
        ids[rows * ctx + b] = (int32_t)(1 + b % ctx);
        for (long i = 0; i <= b % ctx; i++) ids[b * ctx + i] = (int32_t)(1 + (b * 7 + i) % (V - 1));
    }
    return ids;
}

/* The condition of `rows` rows (from make_condition) as a ddpm_cond_batch in *c, or NULL. */
static const ddpm_cond_batch *with_labels(ddpm_cond_batch *c, const int32_t *ids, long rows) {
    if (!ids) return NULL;
    *c = ddpm_cond_batch_default();
    if (V <= 0) {
        c->labels = ids;
    } else {
        c->tokens = ids, c->tokens_count = rows * ctx;
        c->lengths = ids + rows * ctx;
    }
    return c;
}

static ddpm_model *create_model(const ddpm_schedule *sched, int argc, char **argv) {
    const char *net = sarg(argc, argv, "net", "mlp");
    ddpm_cond_params cond = ddpm_cond_params_default();
    if (K > 0) cond.kind = DDPM_COND_CLASSES, cond.num_classes = (int32_t)K;
    if (V > 0) {
        cond.kind = DDPM_COND_TOKENS, cond.vocab_size = (int32_t)V, cond.max_length = (int32_t)ctx;
        cond.dim = (int32_t)arg(argc, argv, "ctx_dim", 32);
        cond.encoder_layers = (int32_t)arg(argc, argv, "enc", 0);
        cond.encoder_heads = cond.encoder_layers > 0 ? (int32_t)arg(argc, argv, "enc_heads", 4) : 0;
    }
    ddpm_mlp_params mlp = ddpm_mlp_params_default();
    ddpm_unet_params unet = ddpm_unet_params_default();
    const ddpm_network_params *network = &mlp.base;
    if (strcmp(net, "unet") == 0) {
        unet.channels = (int32_t)arg(argc, argv, "C", 1);
        unet.height = unet.width = (int32_t)arg(argc, argv, "S", 8);
        long base = arg(argc, argv, "base", 0);
        if (base > 0) unet.base_channels = (int32_t)base;
        long levels = arg(argc, argv, "levels", 0);
        if (levels > 0) unet.num_levels = (int32_t)levels;
        long res = arg(argc, argv, "res_blocks", -1);
        if (res >= 0) unet.res_blocks = (int32_t)res;
        long att = arg(argc, argv, "attention_levels", -1);
        if (att >= 0) unet.attention_levels = (uint32_t)att;
        const char *mult = sarg(argc, argv, "mult", NULL);  /* e.g. mult=1,2,2,2 (sets levels too) */
        for (int l = 0; mult && *mult && l < DDPM_UNET_MAX_LEVELS; l++) {
            char *end;
            unet.channel_mult[l] = (int32_t)strtol(mult, &end, 10);
            unet.num_levels = l + 1;
            mult = *end == ',' ? end + 1 : NULL;
        }
        long heads = arg(argc, argv, "heads", 0), groups = arg(argc, argv, "groups", 0);
        if (heads > 0) unet.attention_heads = (int32_t)heads;
        if (groups > 0) unet.groups = (int32_t)groups;
        const char *dropout = sarg(argc, argv, "dropout", NULL);
        if (dropout) unet.dropout = strtof(dropout, NULL);
        long xattn = arg(argc, argv, "xattn", -1);
        if (xattn >= 0) unet.cross_attention_levels = (uint32_t)xattn;
        network = &unet.base;
    } else {
        mlp.data_dim = (int32_t)arg(argc, argv, "D", 2);
        mlp.hidden = (int32_t)arg(argc, argv, "H", 128);
        mlp.depth = (int32_t)arg(argc, argv, "L", 4);
    }
    ddpm_model *model = NULL;
    CHECK(ddpm_model_create(sched, network, NULL, &cond, &model)); /* NULL: the default training recipe */
    return model;
}

int main(int argc, char **argv) {
    const char *net = sarg(argc, argv, "net", "mlp");
    long B = arg(argc, argv, "B", 256), threads = arg(argc, argv, "threads", 1);
    long warmup = arg(argc, argv, "warmup", 20), steps = arg(argc, argv, "steps", 100);
    long sample_n = arg(argc, argv, "sample_n", 16);
    long replays_arg = arg(argc, argv, "replays", 5);
    replays = replays_arg < 1 ? 1 : replays_arg > 5 ? 5 : (int)replays_arg;
    CHECK(ddpm_set_num_threads((int)threads));
    { void *f[2]; backtrace(f, 2); }  /* loads libgcc's unwinder now, outside any window */
    int trace = getenv("ALLOC_TRACE") ? atoi(getenv("ALLOC_TRACE")) : 0;

    ddpm_schedule_params sp = ddpm_schedule_params_default();
    ddpm_schedule *sched = NULL;
    CHECK(ddpm_schedule_create(&sp, &sched));
    K = arg(argc, argv, "K", 0), V = arg(argc, argv, "V", 0), ctx = arg(argc, argv, "ctx", 5);
    ddpm_model *model = create_model(sched, argc, argv);
    int64_t S = ddpm_model_sample_size(model);

    float *x0 = malloc(sizeof(float) * B * S);
    int32_t *labels = make_condition(B);
    fill(x0, (size_t)(B * S));
    float loss = 0;
    ddpm_cond_batch lcb;

    for (long i = 0; i < warmup; i++) CHECK(ddpm_model_train_step(model, x0, B, B * S, with_labels(&lcb, labels, B), &loss));

    /* Allocations per steady-state train step. */
    trace_left = trace;
    window_start();
    for (long i = 0; i < steps; i++) CHECK(ddpm_model_train_step(model, x0, B, B * S, with_labels(&lcb, labels, B), &loss));
    window_stop();
    uint64_t train_alloc = n_alloc, train_free = n_free, train_bytes = n_bytes;
    trace_left = 0;

    /* Engine time per train step: median of chunks of the same loop. */
    enum { MAX_CHUNKS = 5 };
    long chunks_arg = arg(argc, argv, "chunks", MAX_CHUNKS);  /* chunks= : timed chunks, 1...5 */
    const int CHUNKS = chunks_arg < 1 ? 1 : chunks_arg > MAX_CHUNKS ? MAX_CHUNKS : (int)chunks_arg;
    double chunk[MAX_CHUNKS];
    long per = steps / CHUNKS > 0 ? steps / CHUNKS : 1;
    double chunk_gemm[MAX_CHUNKS];
    uint64_t calls_per_step = 0;
    double flops_per_step = 0;
    for (int c = 0; c < CHUNKS; c++) {
        gemm_window_start();
        double t0 = now();
        for (long i = 0; i < per; i++) CHECK(ddpm_model_train_step(model, x0, B, B * S, with_labels(&lcb, labels, B), &loss));
        chunk[c] = (now() - t0) / per;
        gemm_window_stop();
        chunk_gemm[c] = gemm_seconds / per;
        calls_per_step = gemm_calls / per;
        flops_per_step = gemm_flops / per;
    }
    qsort(chunk, CHUNKS, sizeof(double), cmp_double);
    qsort(chunk_gemm, CHUNKS, sizeof(double), cmp_double);

    /* The GEMM calls of one train step, replayed outside the engine. */
    cap_recorded = 1u << 20;
    recorded = malloc(cap_recorded * sizeof(gemm_call));
    n_recorded = 0;
    gemm_recording = 1;
    CHECK(ddpm_model_train_step(model, x0, B, B * S, with_labels(&lcb, labels, B), &loss));
    gemm_recording = 0;
    size_t train_recorded = n_recorded;
    double train_replay_s = replay_recorded((int)threads);

    /* A trivial call, for the fixed cost of crossing into the library. */
    long noop_n = 1000000;
    double t0 = now();
    int64_t acc = 0;
    for (long i = 0; i < noop_n; i++) acc += ddpm_model_step(model);
    double noop_s = (now() - t0) / noop_n;

    /* Allocations per ddpm_model_sample call and per reverse step: respaced DDPM with
       few and with more steps; the difference is per step. */
    float *out = malloc(sizeof(float) * sample_n * S);
    int32_t *slabels = make_condition(sample_n);
    ddpm_sample_params smp = ddpm_sample_params_default();
    long lo = arg(argc, argv, "alloc_steps_lo", 10), hi = arg(argc, argv, "alloc_steps_hi", 110);
    if (lo < 1 || hi <= lo) { fprintf(stderr, "need 1 <= alloc_steps_lo < alloc_steps_hi\n"); return 2; }
    smp.steps = (int32_t)lo;
    CHECK(ddpm_model_sample(model, &smp, NULL, with_labels(&lcb, slabels, sample_n), sample_n, out, sample_n * S)); /* warm-up */
    window_start();
    CHECK(ddpm_model_sample(model, &smp, NULL, with_labels(&lcb, slabels, sample_n), sample_n, out, sample_n * S));
    window_stop();
    uint64_t a10 = n_alloc, b10 = n_bytes;
    smp.steps = (int32_t)hi;
    window_start();
    CHECK(ddpm_model_sample(model, &smp, NULL, with_labels(&lcb, slabels, sample_n), sample_n, out, sample_n * S));
    window_stop();
    uint64_t a110 = n_alloc, b110 = n_bytes;
    double per_step = (double)(a110 - a10) / (double)(hi - lo);

    /* Sampling: time per reverse step for time_n samples (respaced DDPM, time_steps steps),
       time inside sgemm, and the step's GEMMs replayed. */
    long time_n = arg(argc, argv, "time_n", 0), time_steps = arg(argc, argv, "time_steps", 20);
    double sample_step_s = 0, sample_gemm_s = 0, sample_flops = 0, sample_replay_s = 0;
    if (time_n > 0) {
        float *tout = malloc(sizeof(float) * time_n * S);
        int32_t *tlabels = make_condition(time_n);
        smp.steps = 2;
        CHECK(ddpm_model_sample(model, &smp, NULL, with_labels(&lcb, tlabels, time_n), time_n, tout, time_n * S)); /* warm-up */
        smp.steps = (int32_t)time_steps;
        gemm_window_start();
        double s0 = now();
        CHECK(ddpm_model_sample(model, &smp, NULL, with_labels(&lcb, tlabels, time_n), time_n, tout, time_n * S));
        sample_step_s = (now() - s0) / time_steps;
        gemm_window_stop();
        sample_gemm_s = gemm_seconds / time_steps;
        sample_flops = gemm_flops / time_steps;
        n_recorded = 0;
        smp.steps = 1;
        gemm_recording = 1;
        CHECK(ddpm_model_sample(model, &smp, NULL, with_labels(&lcb, tlabels, time_n), time_n, tout, time_n * S));
        gemm_recording = 0;
        sample_replay_s = replay_recorded((int)threads);
        free(tout); free(tlabels);
    }

    printf("{\"net\": \"%s\", \"B\": %ld, \"threads\": %d, \"sample_size\": %lld, \"parameters\": %lld, "
           "\"train_steps_counted\": %ld, \"train_allocs_per_step\": %.3f, \"train_frees_per_step\": %.3f, "
           "\"train_bytes_per_step\": %.1f, \"train_step_s_median\": %.9f, \"train_step_s_min\": %.9f, "
           "\"noop_call_s\": %.12f, \"sample_n\": %ld, \"sample_allocs_10_steps\": %llu, "
           "\"sample_allocs_110_steps\": %llu, \"sample_allocs_per_step\": %.3f, "
           "\"sample_allocs_per_call\": %.1f, \"sample_bytes_per_call\": %.1f, \"loss\": %g, \"acc\": %lld, "
           "\"train_gemm_calls_per_step\": %llu, \"train_gemm_flops_per_step\": %.0f, \"train_gemm_s_per_step\": %.9f, "
           "\"train_gemm_recorded\": %zu, \"train_gemm_replay_s\": %.9f, \"time_n\": %ld, \"sample_step_s\": %.9f, "
           "\"sample_gemm_s_per_step\": %.9f, \"sample_gemm_flops_per_step\": %.0f, \"sample_gemm_replay_s\": %.9f}\n",
           net, B, ddpm_get_num_threads(), (long long)S, (long long)ddpm_model_num_parameters(model), steps,
           (double)train_alloc / steps, (double)train_free / steps, (double)train_bytes / steps,
           chunk[CHUNKS / 2], chunk[0], noop_s, sample_n, (unsigned long long)a10, (unsigned long long)a110,
           per_step, (double)a10 - (double)lo * per_step, (double)b10 - (double)lo * (double)(b110 - b10) / (double)(hi - lo),
           loss, (long long)acc, (unsigned long long)calls_per_step, flops_per_step, chunk_gemm[CHUNKS / 2],
           train_recorded, train_replay_s, time_n, sample_step_s, sample_gemm_s, sample_flops, sample_replay_s);
    free(out); free(slabels); free(x0); free(labels);
    ddpm_model_free(model);
    ddpm_schedule_free(sched);
    return 0;
}
