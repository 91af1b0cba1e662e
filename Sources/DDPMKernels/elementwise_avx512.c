// The elementwise kernels on the avx512 path: 16 floats a vector (see simd.h).
#if defined(__x86_64__) || defined(__i386__)
#include <math.h>
#include <stdint.h>
#include <string.h>

#define DDPM_ISA_SUFFIX avx512
#define DDPM_VW 16
#include "isa.h"
DDPM_TARGET_BEGIN("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")
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
