// The elementwise kernels on the avx2 path: 8 floats a vector (see simd.h).
#if defined(__x86_64__) || defined(__i386__)
#include <math.h>
#include <stdint.h>
#include <string.h>

#define DDPM_ISA_SUFFIX avx2
#define DDPM_VW 8
#include "isa.h"
DDPM_TARGET_BEGIN("avx2,fma")
#include "simd.h"
#include "activation.inc"
#include "reduce.inc"
#include "groupnorm.inc"
#include "layernorm.inc"
#include "optimizer.inc"
#include "im2col.inc"
#include "random.inc"
DDPM_TARGET_END
#endif
