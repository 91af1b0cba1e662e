// The elementwise kernels' entry points: each calls its variant for the path in use
// (ddpm_kernels_isa), compiled from the same source in elementwise_{avx512,avx2,baseline}.c.
#include "isa.h"
#include "elementwise_kernels.h"

#if DDPM_X86
#define DDPM_DECLARE(ret, name, params, args) ret name##_avx512 params; ret name##_avx2 params; ret name##_baseline params;
#define DDPM_DISPATCH(ret, name, params, args)                        \
    ret name params {                                                 \
        switch (ddpm_kernels_isa()) {                                 \
        case DDPM_ISA_AVX512: return name##_avx512 args;              \
        case DDPM_ISA_AVX2: return name##_avx2 args;                  \
        default: return name##_baseline args;                         \
        }                                                             \
    }
#else
#define DDPM_DECLARE(ret, name, params, args) ret name##_baseline params;
#define DDPM_DISPATCH(ret, name, params, args) ret name params { return name##_baseline args; }
#endif

DDPM_ELEMENTWISE_KERNELS(DDPM_DECLARE)
DDPM_ELEMENTWISE_KERNELS(DDPM_DISPATCH)
