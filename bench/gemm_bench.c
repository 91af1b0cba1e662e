/*
 * gemm_bench.c — the engine's SGEMM (Sources/DDPMKernels, ddpm_gemm.h) against OpenBLAS's
 * cblas_sgemm on the engine's shapes, single thread, GFLOP/s from the thread's CPU time.
 *
 * Build and run with bench/gemm_bench.sh (it also runs OpenBLAS with OPENBLAS_CORETYPE=Cooperlake,
 * its AVX-512 kernels). Not part of `make test`.
 *
 * Usage: gemm_bench [--isa baseline|avx2|avx512] [--quick] [--only SUBSTRING]
 * Prints one line per shape: name, m n k, transposes, ours and OpenBLAS in GFLOP/s (the best
 * of several timed runs of at least 0.05 s CPU each, ours and theirs alternated), and the largest difference between the two
 * results relative to Σ|a||b| (a sanity check: float rounding only).
 */
#define _GNU_SOURCE
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ddpm_gemm.h"
#include "ddpm_kernels.h"

typedef struct {
    const char *name;
    int m, n, k, ta, tb;
} shape;

static const shape shapes[] = {
    /* the residual MLP's Linear: forward out (rows, H) = in (rows, H) · Wᵀ; backward dW = doutᵀ · in, din = dout · W */
    {"mlp fwd   rows 256 H 128", 256, 128, 128, 0, 1},
    {"mlp dW    rows 256 H 128", 128, 128, 256, 1, 0},
    {"mlp din   rows 256 H 128", 256, 128, 128, 0, 0},
    /* toy2d's first and last layers (data dim 2), and a one-sample sampling step */
    {"mlp in    rows 256 D 2 H 128", 256, 128, 2, 0, 1},
    {"mlp out   rows 256 H 128 D 2", 256, 2, 128, 0, 1},
    {"mlp dWout rows 256 H 128 D 2", 2, 128, 256, 1, 0},
    {"mlp fwd   rows 1 H 128", 1, 128, 128, 0, 1},
    {"mlp fwd   rows 16 H 128", 16, 128, 128, 0, 1},
    {"mlp fwd   rows 64 H 256", 64, 256, 256, 0, 1},
    {"mlp fwd   rows 512 H 256", 512, 256, 256, 0, 1},
    {"mlp dW    rows 512 H 256", 256, 256, 512, 1, 0},
    {"mlp fwd   rows 128 H 512", 128, 512, 512, 0, 1},
    {"mlp fwd   rows 512 H 512", 512, 512, 512, 0, 1},
    {"mlp dW    rows 512 H 512", 512, 512, 512, 1, 0},
    {"mlp din   rows 512 H 512", 512, 512, 512, 0, 0},
    /* UNet 3×3 convolutions as whole GEMMs: out (Co, B·H·W) = W (Co, Ci·9) · columns (Ci·9, B·H·W)
       (the CIFAR UNets: base 64 mult (1, 2, 2), base 128 mult (1, 2, 2, 2); the output conv to 3 channels),
       then as the engine runs them today, one image's im2col at a time */
    {"conv fwd  64->64 32x32 b8", 64, 8192, 576, 0, 0},
    {"conv fwd  128->128 16x16 b8", 128, 2048, 1152, 0, 0},
    {"conv fwd  128->128 16x16 b32", 128, 8192, 1152, 0, 0},
    {"conv fwd  256->256 8x8 b32", 256, 2048, 2304, 0, 0},
    {"conv fwd  64->64 32x32 b32", 64, 32768, 576, 0, 0},
    {"conv fwd  128->128 32x32 b8", 128, 8192, 1152, 0, 0},
    {"conv fwd  256->256 16x16 b32", 256, 8192, 2304, 0, 0},
    {"conv fwd  128->3 32x32 b8", 3, 8192, 1152, 0, 0},
    {"conv fwd  64->64 32x32 1img", 64, 1024, 576, 0, 0},
    {"conv fwd  256->256 8x8 1img", 256, 64, 2304, 0, 0},
    /* backward: dW (Co, Ci·9) += dout (Co, M) · columnsᵀ; dcolumns (Ci·9, M) = Wᵀ · dout */
    {"conv dW   128->128 16x16 b8", 128, 1152, 2048, 0, 1},
    {"conv dcol 128->128 16x16 b8", 1152, 2048, 128, 1, 0},
    {"conv dW   64->64 32x32 1img", 64, 576, 1024, 0, 1},
    {"conv dcol 64->64 32x32 1img", 576, 1024, 64, 1, 0},
    /* attention at 16×16 (N = 256 tokens), head dim 64 and 128 */
    {"attn QK   N 256 d 64", 256, 256, 64, 1, 0},
    {"attn PV   N 256 d 64", 64, 256, 256, 0, 1},
    {"attn QK   N 256 d 128", 256, 256, 128, 1, 0},
    {"attn PV   N 256 d 128", 128, 256, 256, 0, 1},
    /* square */
    {"square 512", 512, 512, 512, 0, 0},
    {"square 1024", 1024, 1024, 1024, 0, 0},
};

static double cpuSeconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

typedef struct {
    const shape *s;
    const float *a, *b;
    float *c;
} problem;

static void runOurs(const problem *p) {
    const shape *s = p->s;
    ddpm_sgemm_call call = {0};
    call.m = s->m, call.n = s->n, call.k = s->k, call.alpha = 1, call.beta = 0;
    call.a = p->a, call.lda = s->ta ? s->m : s->k, call.trans_a = s->ta;
    call.b = p->b, call.ldb = s->tb ? s->k : s->n, call.trans_b = s->tb;
    call.c = p->c, call.ldc = s->n;
    ddpm_sgemm(&call);
}

static void runOpenBLAS(const problem *p) {
    const shape *s = p->s;
    cblas_sgemm(CblasRowMajor, s->ta ? CblasTrans : CblasNoTrans, s->tb ? CblasTrans : CblasNoTrans, s->m, s->n, s->k,
                1, p->a, s->ta ? s->m : s->k, p->b, s->tb ? s->k : s->n, 0, p->c, s->n);
}

/* GFLOP/s of one timed run: the GEMM repeated for at least 0.05 s of CPU time. */
static double timedRun(void (*run)(const problem *), const problem *p) {
    long calls = 0;
    double t0 = cpuSeconds(), t;
    do {
        run(p);
        calls++;
        t = cpuSeconds() - t0;
    } while (t < 0.05);
    return 2.0 * p->s->m * p->s->n * p->s->k * calls / t / 1e9;
}

/* The best GFLOP/s of ours and of OpenBLAS over `repeats` runs each, alternated so that both
   see the same machine (other processes only ever lower a run). */
static void bestOfBoth(const problem *ours, const problem *theirs, int repeats, double *g1, double *g2) {
    runOurs(ours), runOpenBLAS(theirs);  /* warm up: buffers, caches */
    *g1 = *g2 = 0;
    for (int r = 0; r < repeats; r++) {
        const double a = timedRun(runOurs, ours), b = timedRun(runOpenBLAS, theirs);
        if (a > *g1) *g1 = a;
        if (b > *g2) *g2 = b;
    }
}

int main(int argc, char **argv) {
    int repeats = 8;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) repeats = 3;
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
        else if (!strcmp(argv[i], "--isa") && i + 1 < argc) {
            const char *want = argv[++i];
            int ok = -1;
            for (int isa = DDPM_ISA_BASELINE; isa <= DDPM_ISA_AVX512; isa++)
                if (!strcmp(want, ddpm_isa_name((ddpm_isa)isa))) ok = ddpm_kernels_set_isa((ddpm_isa)isa);
            if (ok != 0) { fprintf(stderr, "this CPU cannot run ISA path %s\n", want); return 2; }
        } else { fprintf(stderr, "usage: %s [--isa baseline|avx2|avx512] [--quick] [--only SUBSTRING]\n", argv[0]); return 2; }
    }
    openblas_set_num_threads(1);
    const char *core = getenv("OPENBLAS_CORETYPE");
    printf("# ours: ISA path %s (MR %zu, NR %zu); OpenBLAS %s, core %s%s%s; 1 thread, GFLOP/s from thread CPU time\n",
           ddpm_isa_name(ddpm_kernels_isa()), ddpm_sgemm_mr(), ddpm_sgemm_nr(), openblas_get_config(),
           openblas_get_corename(), core ? ", OPENBLAS_CORETYPE=" : "", core ? core : "");
    printf("%-30s %5s %5s %5s %2s %8s %9s %8s %9s\n", "shape", "m", "n", "k", "tr", "ours", "openblas", "ratio", "max diff");
    srand(1);
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const shape *s = &shapes[i];
        if (only && !strstr(s->name, only)) continue;
        const size_t na = (size_t)s->m * s->k, nb = (size_t)s->k * s->n, nc = (size_t)s->m * s->n;
        float *a = malloc(na * sizeof(float)), *b = malloc(nb * sizeof(float));
        float *c1 = malloc(nc * sizeof(float)), *c2 = malloc(nc * sizeof(float));
        for (size_t j = 0; j < na; j++) a[j] = (float)((double)rand() / RAND_MAX - 0.5);
        for (size_t j = 0; j < nb; j++) b[j] = (float)((double)rand() / RAND_MAX - 0.5);
        problem ours = {s, a, b, c1}, theirs = {s, a, b, c2};
        double g1, g2;
        bestOfBoth(&ours, &theirs, repeats, &g1, &g2);
        /* |ours − OpenBLAS| relative to the scale of a sum of k products of U(−½, ½) values */
        double diff = 0;
        for (size_t j = 0; j < nc; j++) diff = fmax(diff, fabs((double)c1[j] - c2[j]));
        printf("%-30s %5d %5d %5d %c%c %8.1f %9.1f %8.2f %9.1e\n", s->name, s->m, s->n, s->k, s->ta ? 'T' : 'N',
               s->tb ? 'T' : 'N', g1, g2, g1 / g2, diff / (0.25 * s->k));
        fflush(stdout);
        free(a), free(b), free(c1), free(c2);
    }
    return 0;
}
