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

/// The path's vector (gemm_driver.inc): 16 floats.
typedef __m512 gemm_vec;
#define GEMM_VW 16
#define gemm_zero() _mm512_setzero_ps()
#define gemm_set1(x) _mm512_set1_ps(x)
#define gemm_load(p) _mm512_loadu_ps(p)
#define gemm_store(p, v) _mm512_storeu_ps(p, v)
#define gemm_mul(a, b) _mm512_mul_ps(a, b)
#define gemm_add(a, b) _mm512_add_ps(a, b)
#define gemm_fma(a, b, c) _mm512_fmadd_ps(a, b, c)

/// The packing's transposes (gemm_driver.inc's sgemm_transpose_block), 16 × 16.
#define GEMM_TB 16
#define gemm_unpacklo(a, b) _mm512_unpacklo_ps(a, b)
#define gemm_unpackhi(a, b) _mm512_unpackhi_ps(a, b)
#define gemm_shuffle(a, b, imm) _mm512_shuffle_ps(a, b, imm)
#define gemm_store_first(p, v, n) _mm512_mask_storeu_ps(p, (__mmask16)((1u << (n)) - 1), v)

/// Completes the transpose of 16 rows whose 128-bit lanes each hold a transposed 4 × 4 block:
/// lanes are exchanged between rows 4 apart, then between rows 8 apart.
static inline void DDPM_FN(sgemm_transpose_lanes)(__m512 r[16]) {
    __m512 t[16];
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
}

#include "gemm_driver.inc"

DDPM_TARGET_END
#endif
