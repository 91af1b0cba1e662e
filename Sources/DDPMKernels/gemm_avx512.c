// The GEMM's AVX-512 path: a 12 × 32 micro-tile, 24 zmm accumulators (12 rows × 2 vectors of
// 16 columns); each step over k loads two vectors of B and broadcasts 12 values of A.
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

static inline __attribute__((always_inline)) void DDPM_FN(sgemm_micro)(size_t kc, const float *restrict ap,
                                                                     const float *restrict bp, float *restrict c,
                                                                     size_t ldc, int start, float beta) {
    __m512 acc[MR][2];
    if (start == 0) {
#pragma unroll
        for (int i = 0; i < MR; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    } else {
#pragma unroll
        for (int i = 0; i < MR; i++) {
            acc[i][0] = _mm512_loadu_ps(c + i * ldc);
            acc[i][1] = _mm512_loadu_ps(c + i * ldc + 16);
        }
        if (start == 2) {
            const __m512 vb = _mm512_set1_ps(beta);
#pragma unroll
            for (int i = 0; i < MR; i++) {
                acc[i][0] = _mm512_mul_ps(vb, acc[i][0]);
                acc[i][1] = _mm512_mul_ps(vb, acc[i][1]);
            }
        }
    }
    for (size_t p = 0; p < kc; p++) {
        const __m512 b0 = _mm512_load_ps(bp), b1 = _mm512_load_ps(bp + 16);
#pragma unroll
        for (int i = 0; i < MR; i++) {
            const __m512 a = _mm512_set1_ps(ap[i]);
            acc[i][0] = _mm512_fmadd_ps(a, b0, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(a, b1, acc[i][1]);
        }
        ap += MR;
        bp += NR;
    }
#pragma unroll
    for (int i = 0; i < MR; i++) {
        _mm512_storeu_ps(c + i * ldc, acc[i][0]);
        _mm512_storeu_ps(c + i * ldc + 16, acc[i][1]);
    }
}

#include "gemm_driver.inc"

DDPM_TARGET_END
#endif
