// The GEMM's AVX2 + FMA path: a 6 × 16 micro-tile, 12 ymm accumulators (6 rows × 2 vectors of
// 8 columns); each step over k loads two vectors of B and broadcasts 6 values of A.
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

static inline __attribute__((always_inline)) void DDPM_FN(sgemm_micro)(size_t kc, const float *restrict ap,
                                                                     const float *restrict bp, float *restrict c,
                                                                     size_t ldc, int start, float beta) {
    __m256 acc[MR][2];
    if (start == 0) {
#pragma unroll
        for (int i = 0; i < MR; i++) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
    } else {
#pragma unroll
        for (int i = 0; i < MR; i++) {
            acc[i][0] = _mm256_loadu_ps(c + i * ldc);
            acc[i][1] = _mm256_loadu_ps(c + i * ldc + 8);
        }
        if (start == 2) {
            const __m256 vb = _mm256_set1_ps(beta);
#pragma unroll
            for (int i = 0; i < MR; i++) {
                acc[i][0] = _mm256_mul_ps(vb, acc[i][0]);
                acc[i][1] = _mm256_mul_ps(vb, acc[i][1]);
            }
        }
    }
    for (size_t p = 0; p < kc; p++) {
        const __m256 b0 = _mm256_load_ps(bp), b1 = _mm256_load_ps(bp + 8);
#pragma unroll
        for (int i = 0; i < MR; i++) {
            const __m256 a = _mm256_broadcast_ss(ap + i);
            acc[i][0] = _mm256_fmadd_ps(a, b0, acc[i][0]);
            acc[i][1] = _mm256_fmadd_ps(a, b1, acc[i][1]);
        }
        ap += MR;
        bp += NR;
    }
#pragma unroll
    for (int i = 0; i < MR; i++) {
        _mm256_storeu_ps(c + i * ldc, acc[i][0]);
        _mm256_storeu_ps(c + i * ldc + 8, acc[i][1]);
    }
}

#include "gemm_driver.inc"

DDPM_TARGET_END
#endif
