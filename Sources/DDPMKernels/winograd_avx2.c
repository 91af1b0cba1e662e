// The Winograd kernels on the AVX2 + FMA path: 8 channels a vector (winograd.inc).
#include "isa.h"
#if DDPM_X86
#include <stddef.h>

#define DDPM_ISA_SUFFIX avx2
#define WINO_VW 8
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#include "winograd_simd.h"
#include "winograd.inc"
#pragma clang attribute pop
#endif
