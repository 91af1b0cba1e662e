/*
 * fma_peak.c — the core's single-precision FMA peak, the roof of `make bench`'s roofline lines.
 *
 * Each thread runs CHAINS independent chains acc_c ← acc_c · a + b on __m256 registers
 * (8 floats, one FMA = 2 FLOPs a lane, so 16 FLOPs an instruction). With more chains than
 * FMA latency × FMA ports (4–5 cycles × 2 ports on current x86 cores) the ports never wait
 * for a result, so the rate is the core's peak: 2 ports × 16 FLOPs × clock.
 *
 * isa=avx512 runs the same chains on __m512 registers (32 FLOPs an instruction), where the
 * CPU has AVX-512F: the roof of code using AVX-512 (on cores with full-width AVX-512 units,
 * e.g. Zen 5, twice the AVX2 figure; on Zen 4, which splits a 512-bit FMA in two, the same).
 *
 * Build: cc -O3 -mavx2 -mfma -pthread bench/fma_peak.c -o fma_peak
 * Usage: fma_peak [threads=1] [ms=50] [repeats=20] [isa=avx2|avx512]   (short repeats: on a
 *        shared machine the best of many catches one where the cores were free)
 * Prints one JSON object: threads, the best GFLOP/s of all threads together over the repeats
 * (the peak; a busy machine only lowers a repeat), per thread, and the median.
 */
#define _GNU_SOURCE
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { CHAINS = 12, MAX_THREADS = 64 };

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* iters × CHAINS FMAs on independent accumulators; returns a sum so nothing is optimised away. */
static float fma_chains(long iters) {
    __m256 acc[CHAINS];
    for (int c = 0; c < CHAINS; c++) acc[c] = _mm256_set1_ps(0.001f * (float)c);
    const __m256 a = _mm256_set1_ps(0.9999999f), b = _mm256_set1_ps(1e-7f);
    for (long i = 0; i < iters; i++) {
#pragma GCC unroll 12
        for (int c = 0; c < CHAINS; c++) acc[c] = _mm256_fmadd_ps(acc[c], a, b);
    }
    __m256 s = acc[0];
    for (int c = 1; c < CHAINS; c++) s = _mm256_add_ps(s, acc[c]);
    float out[8];
    _mm256_storeu_ps(out, s);
    return out[0] + out[7];
}

/* The same on __m512 (compiled for AVX-512F whatever the build flags; run only where present). */
__attribute__((target("avx512f"))) static float fma_chains_512(long iters) {
    __m512 acc[CHAINS];
    for (int c = 0; c < CHAINS; c++) acc[c] = _mm512_set1_ps(0.001f * (float)c);
    const __m512 a = _mm512_set1_ps(0.9999999f), b = _mm512_set1_ps(1e-7f);
    for (long i = 0; i < iters; i++) {
#pragma GCC unroll 12
        for (int c = 0; c < CHAINS; c++) acc[c] = _mm512_fmadd_ps(acc[c], a, b);
    }
    __m512 s = acc[0];
    for (int c = 1; c < CHAINS; c++) s = _mm512_add_ps(s, acc[c]);
    return _mm512_reduce_add_ps(s);
}

static int use_512;  /* isa=avx512 */

typedef struct { long iters; float sink; } job;

static void *run_job(void *p) {
    job *j = p;
    j->sink = use_512 ? fma_chains_512(j->iters) : fma_chains(j->iters);
    return NULL;
}

/* Seconds for `threads` threads each running `iters` iterations at once. */
static double timed(int threads, long iters) {
    pthread_t tid[MAX_THREADS];
    job jobs[MAX_THREADS];
    double t0 = now();
    for (int i = 0; i < threads; i++) {
        jobs[i].iters = iters;
        pthread_create(&tid[i], NULL, run_job, &jobs[i]);
    }
    for (int i = 0; i < threads; i++) pthread_join(tid[i], NULL);
    return now() - t0;
}

static long arg(int argc, char **argv, const char *key, long fallback) {
    size_t n = strlen(key);
    for (int i = 1; i < argc; i++)
        if (strncmp(argv[i], key, n) == 0 && argv[i][n] == '=') return atol(argv[i] + n + 1);
    return fallback;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    int threads = (int)arg(argc, argv, "threads", 1);
    long repeats = arg(argc, argv, "repeats", 20);
    double seconds = arg(argc, argv, "ms", 50) * 1e-3;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "isa=avx512") == 0) use_512 = 1;
    if (use_512 && !__builtin_cpu_supports("avx512f")) {
        fprintf(stderr, "this CPU has no AVX-512F\n");
        return 2;
    }
    if (threads < 1 || threads > MAX_THREADS || repeats < 1 || repeats > 100) {
        fprintf(stderr, "threads must be in 1...%d, repeats in 1...100\n", MAX_THREADS);
        return 2;
    }
    /* Size the iterations to about `seconds` a repeat from a short probe. */
    long iters = 1 << 16;
    double t = timed(1, iters);
    while (t < 0.02) { iters *= 4; t = timed(1, iters); }
    iters = (long)(iters * seconds / t) + 1;
    double flops = (double)threads * iters * CHAINS * (use_512 ? 32.0 : 16.0);
    double gf[100];
    for (long r = 0; r < repeats; r++) gf[r] = flops / timed(threads, iters) / 1e9;
    qsort(gf, (size_t)repeats, sizeof(double), cmp_double);
    printf("{\"isa\": \"%s\", \"threads\": %d, \"chains\": %d, \"gflops_best\": %.2f, \"gflops_per_thread_best\": %.2f, "
           "\"gflops_median\": %.2f}\n", use_512 ? "avx512" : "avx2", threads, CHAINS, gf[repeats - 1], gf[repeats - 1] / threads,
           gf[repeats / 2]);
    return 0;
}
