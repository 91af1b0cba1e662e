// The elementwise kernels on the avx2 path: 8 floats a vector (see simd.h).
#if defined(__x86_64__) || defined(__i386__)
#include <math.h>
#include <stdint.h>
#include <string.h>

#define DDPM_ISA_SUFFIX avx2
#define DDPM_VW 8
#include "isa.h"
// (isa.h's DDPM_TARGET_BEGIN does not expand: _Pragma needs one string literal)
#pragma clang attribute push (__attribute__((target("avx2,fma"))), apply_to = function)
#include "simd.h"
#include "activation.inc"
#include "reduce.inc"
#include "groupnorm.inc"
#include "layernorm.inc"
#include "optimizer.inc"
#pragma clang attribute pop
#endif
