// The GEMM's entry points (ddpm_gemm.h): the degenerate cases, each thread's packing buffers,
// the split of the output into tiles, and the dispatch to the ISA path's driver.
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#include "gemm_blocking.h"
#include "isa.h"

// MARK: - each thread's packing buffers

// One allocation per thread, made at its first GEMM and freed when the thread ends (the
// pthread key's destructor): A's block then B's block, both 64-byte aligned.
static pthread_key_t bufferKey;
static pthread_once_t bufferKeyOnce = PTHREAD_ONCE_INIT;
static _Thread_local float *threadBuffer;

static void freeBuffer(void *buffer) {
    free(buffer);
    threadBuffer = NULL;  // a GEMM in a later thread-exit destructor would allocate again
}
static void makeBufferKey(void) { (void)pthread_key_create(&bufferKey, freeBuffer); }

static float *packingBuffer(void) {
    if (threadBuffer) return threadBuffer;
    (void)pthread_once(&bufferKeyOnce, makeBufferKey);
    void *buffer = NULL;
    if (posix_memalign(&buffer, 64, sizeof(float) * (GEMM_A_FLOATS + GEMM_B_FLOATS)) != 0) return NULL;
    threadBuffer = buffer;
    (void)pthread_setspecific(bufferKey, buffer);
    return threadBuffer;
}

// When a thread's allocation failed: a process-wide buffer in zero-initialised storage, one
// GEMM at a time. Same bits, only serialised.
static float fallbackBuffer[GEMM_A_FLOATS + GEMM_B_FLOATS] __attribute__((aligned(64)));
static pthread_mutex_t fallbackLock = PTHREAD_MUTEX_INITIALIZER;

// MARK: - dispatch

typedef void (*range_fn)(const ddpm_sgemm_call *, size_t, size_t, size_t, size_t, float *, float *);

static range_fn pathRange(ddpm_isa isa) {
#if DDPM_X86
    if (isa == DDPM_ISA_AVX512) return ddpm_sgemm_range_avx512;
    if (isa == DDPM_ISA_AVX2) return ddpm_sgemm_range_avx2;
#endif
    (void)isa;
    return ddpm_sgemm_range_baseline;
}

size_t ddpm_sgemm_mr(void) {
    switch (ddpm_kernels_isa()) {
    case DDPM_ISA_AVX512: return GEMM_AVX512_MR;
    case DDPM_ISA_AVX2: return GEMM_AVX2_MR;
    default: return GEMM_BASELINE_MR;
    }
}

size_t ddpm_sgemm_nr(void) {
    switch (ddpm_kernels_isa()) {
    case DDPM_ISA_AVX512: return GEMM_AVX512_NR;
    case DDPM_ISA_AVX2: return GEMM_AVX2_NR;
    default: return GEMM_BASELINE_NR;
    }
}

size_t ddpm_sgemm_kc(void) {
    switch (ddpm_kernels_isa()) {
    case DDPM_ISA_AVX512: return GEMM_AVX512_KC;
    case DDPM_ISA_AVX2: return GEMM_AVX2_KC;
    default: return GEMM_BASELINE_KC;
    }
}

size_t ddpm_sgemm_packed_a_floats(size_t m, size_t k) {
    const size_t mr = ddpm_sgemm_mr();
    return (m + mr - 1) / mr * mr * k;
}

size_t ddpm_sgemm_packed_b_floats(size_t k, size_t n) {
    const size_t nr = ddpm_sgemm_nr();
    return k * ((n + nr - 1) / nr * nr);
}

void ddpm_sgemm_pack_a(const ddpm_sgemm_call *call, float *dst) {
    if (call->m == 0 || call->k == 0) return;
    switch (ddpm_kernels_isa()) {
#if DDPM_X86
    case DDPM_ISA_AVX512: ddpm_sgemm_pack_a_whole_avx512(call, dst); return;
    case DDPM_ISA_AVX2: ddpm_sgemm_pack_a_whole_avx2(call, dst); return;
#endif
    default: ddpm_sgemm_pack_a_whole_baseline(call, dst); return;
    }
}

void ddpm_sgemm_pack_b(const ddpm_sgemm_call *call, float *dst) {
    if (call->n == 0 || call->k == 0) return;
    switch (ddpm_kernels_isa()) {
#if DDPM_X86
    case DDPM_ISA_AVX512: ddpm_sgemm_pack_b_whole_avx512(call, dst); return;
    case DDPM_ISA_AVX2: ddpm_sgemm_pack_b_whole_avx2(call, dst); return;
#endif
    default: ddpm_sgemm_pack_b_whole_baseline(call, dst); return;
    }
}

/// C[m0 ..< m1][n0 ..< n1] = beta · C (0 when beta == 0), then + bias[j] (bias[j] when beta == 0):
/// the whole result when k == 0 or alpha == 0.
static void scaleRange(const ddpm_sgemm_call *call, size_t m0, size_t m1, size_t n0, size_t n1) {
    const float beta = call->beta, *bias = call->bias;
    for (size_t i = m0; i < m1; i++) {
        float *row = call->c + i * call->ldc;
        for (size_t j = n0; j < n1; j++) {
            const float scaled = beta == 0 ? 0 : beta == 1 ? row[j] : beta * row[j];
            row[j] = !bias ? scaled : beta == 0 ? bias[j] : scaled + bias[j];
        }
    }
}

static void runRange(const ddpm_sgemm_call *call, size_t m0, size_t m1, size_t n0, size_t n1) {
    if (m0 >= m1 || n0 >= n1) return;
    if (call->k == 0 || call->alpha == 0) {
        scaleRange(call, m0, m1, n0, n1);
        return;
    }
    const range_fn range = pathRange(ddpm_kernels_isa());
    float *buffer = packingBuffer();
    if (buffer) {
        range(call, m0, m1, n0, n1, buffer, buffer + GEMM_A_FLOATS);
        return;
    }
    pthread_mutex_lock(&fallbackLock);
    range(call, m0, m1, n0, n1, fallbackBuffer, fallbackBuffer + GEMM_A_FLOATS);
    pthread_mutex_unlock(&fallbackLock);
}

void ddpm_sgemm(const ddpm_sgemm_call *call) { runRange(call, 0, call->m, 0, call->n); }

// MARK: - tiles

/// Below this many multiply-adds a GEMM runs whole on one thread: handing tiles to other
/// threads (and packing the shared operand once per tile) costs more than it saves.
static const double minSplitWork = 1 << 21;
/// A tile has at least this many multiply-adds.
static const double minTileWork = 1 << 20;

void ddpm_sgemm_split(ddpm_sgemm_call *call, size_t threads) {
    call->tiles = 1;
    call->tile_axis = 0;
    const double work = (double)call->m * (double)call->n * (double)call->k;
    if (threads <= 1 || work < minSplitWork || call->alpha == 0) return;
    // Cut the longer side, in whole micro-tiles, into up to 4 tiles a thread: threads take
    // tiles as they come free, so one slowed by other work on its core holds back at most a
    // small tile (each tile packs the other operand whole again: cheap next to its product).
    const int axis = call->n >= call->m ? 1 : 0;
    const size_t unit = axis ? ddpm_sgemm_nr() : ddpm_sgemm_mr();
    const size_t units = ((axis ? call->n : call->m) + unit - 1) / unit;
    size_t tiles = 4 * threads;
    const size_t byWork = (size_t)(work / minTileWork);
    if (tiles > byWork) tiles = byWork;
    if (tiles > units) tiles = units;
    if (tiles > 1) {
        call->tiles = tiles;
        call->tile_axis = axis;
    }
}

void ddpm_sgemm_tile(const ddpm_sgemm_call *call, size_t tile) {
    const int axis = call->tile_axis;
    const size_t length = axis ? call->n : call->m, unit = axis ? ddpm_sgemm_nr() : ddpm_sgemm_mr();
    const size_t units = (length + unit - 1) / unit, tiles = call->tiles ? call->tiles : 1;
    // Tile t gets units [t·units/tiles, (t+1)·units/tiles).
    size_t lo = tile * units / tiles * unit, hi = (tile + 1) * units / tiles * unit;
    if (hi > length) hi = length;
    if (lo > hi) lo = hi;
    if (axis)
        runRange(call, 0, call->m, lo, hi);
    else
        runRange(call, lo, hi, 0, call->n);
}
