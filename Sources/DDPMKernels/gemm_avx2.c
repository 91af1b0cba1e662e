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

/// The path's vector (gemm_driver.inc): 8 floats.
typedef __m256 gemm_vec;
#define GEMM_VW 8
#define gemm_zero() _mm256_setzero_ps()
#define gemm_set1(x) _mm256_set1_ps(x)
#define gemm_load(p) _mm256_loadu_ps(p)
#define gemm_store(p, v) _mm256_storeu_ps(p, v)
#define gemm_mul(a, b) _mm256_mul_ps(a, b)
#define gemm_add(a, b) _mm256_add_ps(a, b)
#define gemm_fma(a, b, c) _mm256_fmadd_ps(a, b, c)

/// The packing's transposes (gemm_driver.inc's sgemm_transpose_block), 8 × 8.
#define GEMM_TB 8
#define gemm_unpacklo(a, b) _mm256_unpacklo_ps(a, b)
#define gemm_unpackhi(a, b) _mm256_unpackhi_ps(a, b)
#define gemm_shuffle(a, b, imm) _mm256_shuffle_ps(a, b, imm)
#define gemm_store_first(p, v, n) \
    _mm256_maskstore_ps(p, _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)), v)

/// Completes the transpose of 8 rows whose 128-bit lanes each hold a transposed 4 × 4 block:
/// the halves are exchanged between rows 4 apart.
static inline void DDPM_FN(sgemm_transpose_lanes)(__m256 r[8]) {
    __m256 t[8];
#pragma unroll
    for (int j = 0; j < 4; j++) {
        t[j] = _mm256_permute2f128_ps(r[j], r[j + 4], 0x20);
        t[j + 4] = _mm256_permute2f128_ps(r[j], r[j + 4], 0x31);
    }
#pragma unroll
    for (int j = 0; j < 8; j++) r[j] = t[j];
}

#include "gemm_driver.inc"

DDPM_TARGET_END
#endif
