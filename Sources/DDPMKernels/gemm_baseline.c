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

/// The path's "vector" (gemm_driver.inc): one float; its multiply-add is fmaf, correctly
/// rounded (a libm call where the CPU has no FMA instruction).
typedef float gemm_vec;
#define GEMM_VW 1
#define gemm_zero() 0.0f
#define gemm_set1(x) (x)
#define gemm_load(p) (*(p))
#define gemm_store(p, v) (*(p) = (v))
#define gemm_mul(a, b) ((a) * (b))
#define gemm_add(a, b) ((a) + (b))
#define gemm_fma(a, b, c) fmaf(a, b, c)

#include "gemm_driver.inc"
