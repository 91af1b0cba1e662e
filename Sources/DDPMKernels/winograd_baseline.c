// The Winograd kernels on the baseline path (any x86-64, or another architecture): 4 channels
// a vector, each fused multiply-add an fmaf (a libm call where the CPU has no FMA instruction).
// Slower, and bitwise the same as the other paths (winograd.inc).
#include <stddef.h>

#include "isa.h"

#define DDPM_ISA_SUFFIX baseline
#define WINO_VW 4
#include "winograd_simd.h"
#include "winograd.inc"
