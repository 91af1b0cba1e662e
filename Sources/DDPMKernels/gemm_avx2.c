// The GEMM's AVX2 + FMA path: an MR × NR micro-tile (6 × 16, gemm_blocking.h), one ymm accumulator
// per row and 8 columns (12 of the 16 registers); each step over k loads NR/8 vectors of B and
// broadcasts MR values of A.
#include "isa.h"
#if DDPM_X86
#include <immintrin.h>

#include "gemm_blocking.h"

#define DDPM_ISA_SUFFIX avx2
#define MR GEMM_AVX2_MR
#define NR GEMM_AVX2_NR
#define KC GEMM_AVX2_KC
#define MC GEMM_AVX2_MC
#define NC GEMM_AVX2_NC

DDPM_TARGET_BEGIN("avx2,fma")

/// Panels a kernel of R < MR rows takes at once: more accumulators (R · G · 2) for the FMA
/// latency, within the 16 registers (with 2·G of B and a broadcast).
#define GEMM_MAX_G 3
#define GEMM_GROUP(R) ((R) == 1 ? 3 : (R) == 2 ? 2 : 1)

/// The micro-kernel (gemm_driver.inc): R ≤ MR rows × G panels of NR columns, R and G constants.
static inline __attribute__((always_inline)) void DDPM_FN(sgemm_kernel)(const int R, const int G, size_t kc,
                                                                      const float *restrict ap, const float *restrict bp,
                                                                      size_t bstride, size_t panel, float *restrict c,
                                                                      size_t ldc, int start, float beta) {
    enum { NV = NR / 8 };  // vectors per panel row
    __m256 acc[MR][GEMM_MAX_G * NV];
    if (start == 0) {
#pragma unroll
        for (int i = 0; i < R; i++)
#pragma unroll
            for (int v = 0; v < G * NV; v++) acc[i][v] = _mm256_setzero_ps();
    } else {
        const __m256 vb = _mm256_set1_ps(beta);
#pragma unroll
        for (int i = 0; i < R; i++)
#pragma unroll
            for (int v = 0; v < G * NV; v++) {
                acc[i][v] = _mm256_loadu_ps(c + i * ldc + 8 * v);
                if (start == 2) acc[i][v] = _mm256_mul_ps(vb, acc[i][v]);
            }
    }
    for (size_t p = 0; p < kc; p++) {
        __m256 b[GEMM_MAX_G * NV];
#pragma unroll
        for (int g = 0; g < G; g++)
#pragma unroll
            for (int v = 0; v < NV; v++) b[g * NV + v] = _mm256_loadu_ps(bp + g * panel + 8 * v);
#pragma unroll
        for (int i = 0; i < R; i++) {
            const __m256 a = _mm256_broadcast_ss(ap + i);
#pragma unroll
            for (int v = 0; v < G * NV; v++) acc[i][v] = _mm256_fmadd_ps(a, b[v], acc[i][v]);
        }
        ap += MR;
        bp += bstride;
    }
#pragma unroll
    for (int i = 0; i < R; i++)
#pragma unroll
        for (int v = 0; v < G * NV; v++) _mm256_storeu_ps(c + i * ldc + 8 * v, acc[i][v]);
}

/// The packing's block transpose: dst[c·ldd + r] = alpha · src[r·lds + c] for 8 columns c and
/// rows r < rows ≤ 8 (rows past `rows` are neither read nor written).
#define GEMM_TB 8
static inline void DDPM_FN(sgemm_transpose_block)(float *restrict dst, size_t ldd, const float *restrict src, size_t lds,
                                                  size_t rows, float alpha) {
    const __m256 va = _mm256_set1_ps(alpha);
    __m256 r[8], t[8];
    if (rows == 8) {  // the common case, without a test per row
#pragma unroll
        for (size_t i = 0; i < 8; i++) r[i] = _mm256_mul_ps(va, _mm256_loadu_ps(src + i * lds));
    } else {
#pragma unroll
        for (size_t i = 0; i < 8; i++) r[i] = i < rows ? _mm256_mul_ps(va, _mm256_loadu_ps(src + i * lds)) : _mm256_setzero_ps();
    }
#pragma unroll
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
#pragma unroll
    for (int i = 0; i < 8; i += 4) {
        r[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
        r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
        r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
#pragma unroll
    for (int j = 0; j < 4; j++) {
        t[j] = _mm256_permute2f128_ps(r[j], r[j + 4], 0x20);
        t[j + 4] = _mm256_permute2f128_ps(r[j], r[j + 4], 0x31);
    }
    if (rows == 8) {
#pragma unroll
        for (int c = 0; c < 8; c++) _mm256_storeu_ps(dst + c * ldd, t[c]);
    } else {
        const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        const __m256i keep = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)rows), lane);
#pragma unroll
        for (int c = 0; c < 8; c++) _mm256_maskstore_ps(dst + c * ldd, keep, t[c]);
    }
}

#include "gemm_driver.inc"

DDPM_TARGET_END
#endif
