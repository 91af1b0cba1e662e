// The elementwise kernels on the baseline path: 4 floats a vector (see simd.h).
#include <math.h>
#include <stdint.h>
#include <string.h>

#define DDPM_ISA_SUFFIX baseline
#define DDPM_VW 4
#include "isa.h"
#include "simd.h"
#include "activation.inc"
#include "reduce.inc"
#include "groupnorm.inc"
#include "layernorm.inc"
#include "optimizer.inc"
#include "im2col.inc"
#include "random.inc"
