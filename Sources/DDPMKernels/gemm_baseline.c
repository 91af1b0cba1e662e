// The GEMM's baseline path (any x86-64, or another architecture): a 4 × 8 micro-tile in
// scalars, each multiply-add a correctly rounded fmaf (a libm call where the CPU has no FMA
// instruction). Slow, and bitwise the same as the vector paths.
#include <math.h>

#include "isa.h"
#include "gemm_blocking.h"

#define DDPM_ISA_SUFFIX baseline
#define MR GEMM_BASELINE_MR
#define NR GEMM_BASELINE_NR
#define KC GEMM_BASELINE_KC
#define MC GEMM_BASELINE_MC
#define NC GEMM_BASELINE_NC

#define GEMM_MAX_G 1
#define GEMM_GROUP(R) 1

/// The micro-kernel (gemm_driver.inc): R ≤ MR rows × one panel of NR columns.
static inline void DDPM_FN(sgemm_kernel)(const int R, const int G, size_t kc, const float *restrict ap,
                                         const float *restrict bp, size_t bstride, size_t panel, float *restrict c,
                                         size_t ldc, int start, float beta) {
    (void)G, (void)panel;
    float acc[MR][NR];
    for (int i = 0; i < R; i++)
        for (int j = 0; j < NR; j++)
            acc[i][j] = start == 0 ? 0 : start == 1 ? c[i * ldc + j] : beta * c[i * ldc + j];
    for (size_t p = 0; p < kc; p++) {
        for (int i = 0; i < R; i++)
            for (int j = 0; j < NR; j++) acc[i][j] = fmaf(ap[i], bp[j], acc[i][j]);
        ap += MR;
        bp += bstride;
    }
    for (int i = 0; i < R; i++)
        for (int j = 0; j < NR; j++) c[i * ldc + j] = acc[i][j];
}

#include "gemm_driver.inc"
