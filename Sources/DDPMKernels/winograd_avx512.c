// The Winograd kernels on the AVX-512 path: 16 channels a vector (winograd.inc).
#include "isa.h"
#if DDPM_X86
#include <stddef.h>

#define DDPM_ISA_SUFFIX avx512
#define WINO_VW 16
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma"))), apply_to = function)
#include "winograd_simd.h"
#include "winograd.inc"
#pragma clang attribute pop
#endif
