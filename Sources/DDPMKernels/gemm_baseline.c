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

static void DDPM_FN(sgemm_micro)(size_t kc, const float *restrict ap, const float *restrict bp, float *restrict c,
                                 size_t ldc, int start, float beta) {
    float acc[MR][NR];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++)
            acc[i][j] = start == 0 ? 0 : start == 1 ? c[i * ldc + j] : beta * c[i * ldc + j];
    for (size_t p = 0; p < kc; p++) {
        for (int i = 0; i < MR; i++)
            for (int j = 0; j < NR; j++) acc[i][j] = fmaf(ap[i], bp[j], acc[i][j]);
        ap += MR;
        bp += NR;
    }
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) c[i * ldc + j] = acc[i][j];
}

#include "gemm_driver.inc"
