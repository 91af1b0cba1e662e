// The GEMM's AVX-512 path: an MR × NR micro-tile (8 × 32, gemm_blocking.h), one zmm accumulator
// per row and 16 columns; each step over k loads NR/16 vectors of B and broadcasts MR values of A.
#include "isa.h"
#if DDPM_X86
#include <immintrin.h>

#include "gemm_blocking.h"

#define DDPM_ISA_SUFFIX avx512
#define MR GEMM_AVX512_MR
#define NR GEMM_AVX512_NR
#define KC GEMM_AVX512_KC
#define MC GEMM_AVX512_MC
#define NC GEMM_AVX512_NC

DDPM_TARGET_BEGIN("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")

/// Panels a kernel of R < MR rows takes at once: enough accumulators (R · G · 2 ≥ 8) to hide
/// the FMA latency, few enough (≤ 18, plus 2·G of B) to stay in the 32 registers.
#define GEMM_MAX_G 4
#define GEMM_GROUP(R) ((R) <= 2 ? 4 : (R) == 3 ? 3 : (R) == 4 ? 2 : 1)

/// The micro-kernel (gemm_driver.inc): R ≤ MR rows × G panels of NR columns, R and G constants.
static inline __attribute__((always_inline)) void DDPM_FN(sgemm_kernel)(const int R, const int G, size_t kc,
                                                                      const float *restrict ap, const float *restrict bp,
                                                                      size_t bstride, size_t panel, float *restrict c,
                                                                      size_t ldc, int start, float beta) {
    enum { NV = NR / 16 };  // vectors per panel row
    __m512 acc[MR][GEMM_MAX_G * NV];
    if (start == 0) {
#pragma unroll
        for (int i = 0; i < R; i++)
#pragma unroll
            for (int v = 0; v < G * NV; v++) acc[i][v] = _mm512_setzero_ps();
    } else {
        const __m512 vb = _mm512_set1_ps(beta);
#pragma unroll
        for (int i = 0; i < R; i++)
#pragma unroll
            for (int v = 0; v < G * NV; v++) {
                acc[i][v] = _mm512_loadu_ps(c + i * ldc + 16 * v);
                if (start == 2) acc[i][v] = _mm512_mul_ps(vb, acc[i][v]);
            }
    }
    for (size_t p = 0; p < kc; p++) {
        __m512 b[GEMM_MAX_G * NV];
#pragma unroll
        for (int g = 0; g < G; g++)
#pragma unroll
            for (int v = 0; v < NV; v++) b[g * NV + v] = _mm512_loadu_ps(bp + g * panel + 16 * v);
#pragma unroll
        for (int i = 0; i < R; i++) {
            const __m512 a = _mm512_set1_ps(ap[i]);
#pragma unroll
            for (int v = 0; v < G * NV; v++) acc[i][v] = _mm512_fmadd_ps(a, b[v], acc[i][v]);
        }
        ap += MR;
        bp += bstride;
    }
#pragma unroll
    for (int i = 0; i < R; i++)
#pragma unroll
        for (int v = 0; v < G * NV; v++) _mm512_storeu_ps(c + i * ldc + 16 * v, acc[i][v]);
}

/// The packing's block transpose: dst[c·ldd + r] = alpha · src[r·lds + c] for 16 columns c and
/// rows r < rows ≤ 16 (rows past `rows` are neither read nor written).
#define GEMM_TB 16
static inline void DDPM_FN(sgemm_transpose_block)(float *restrict dst, size_t ldd, const float *restrict src, size_t lds,
                                                  size_t rows, float alpha) {
    const __m512 va = _mm512_set1_ps(alpha);
    __m512 r[16], t[16];
    if (rows == 16) {  // the common case, without a test per row
#pragma unroll
        for (size_t i = 0; i < 16; i++) r[i] = _mm512_mul_ps(va, _mm512_loadu_ps(src + i * lds));
    } else {
#pragma unroll
        for (size_t i = 0; i < 16; i++) r[i] = i < rows ? _mm512_mul_ps(va, _mm512_loadu_ps(src + i * lds)) : _mm512_setzero_ps();
    }
    // 2×2 blocks of floats, then of pairs, then of 128-bit lanes, then of 256-bit halves.
#pragma unroll
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
#pragma unroll
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
        r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
        r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
#pragma unroll
    for (int i = 0; i < 16; i += 8) {
#pragma unroll
        for (int j = 0; j < 4; j++) {
            t[i + j] = _mm512_shuffle_f32x4(r[i + j], r[i + j + 4], 0x88);
            t[i + j + 4] = _mm512_shuffle_f32x4(r[i + j], r[i + j + 4], 0xDD);
        }
    }
#pragma unroll
    for (int j = 0; j < 8; j++) {
        r[j] = _mm512_shuffle_f32x4(t[j], t[j + 8], 0x88);
        r[j + 8] = _mm512_shuffle_f32x4(t[j], t[j + 8], 0xDD);
    }
    const __mmask16 keep = (__mmask16)((1u << rows) - 1);
#pragma unroll
    for (int c = 0; c < 16; c++) _mm512_mask_storeu_ps(dst + c * ldd, keep, r[c]);
}

#include "gemm_driver.inc"

DDPM_TARGET_END
#endif
