// Which ISA path the kernels take: detected once from the CPU's feature flags, lowered by
// the environment variable DDPM_KERNEL_ISA (baseline | avx2 | avx512) or by
// ddpm_kernels_set_isa (tests).
#include <stdlib.h>
#include <string.h>

#include "isa.h"

static ddpm_isa detect(void) {
#if DDPM_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq")
        && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma"))
        return DDPM_ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return DDPM_ISA_AVX2;
#endif
    return DDPM_ISA_BASELINE;
}

// -1 until the first call; then the path in use. Written once at start-up (or by tests).
static int current = -1;

ddpm_isa ddpm_kernels_best_isa(void) {
    static int best = -1;
    if (best < 0) best = (int)detect();
    return (ddpm_isa)best;
}

const char *ddpm_isa_name(ddpm_isa isa) {
    switch (isa) {
    case DDPM_ISA_AVX512: return "avx512";
    case DDPM_ISA_AVX2: return "avx2";
    default: return "baseline";
    }
}

ddpm_isa ddpm_kernels_isa(void) {
    if (current >= 0) return (ddpm_isa)current;
    ddpm_isa isa = ddpm_kernels_best_isa();
    const char *asked = getenv("DDPM_KERNEL_ISA");
    if (asked) {
        for (int i = DDPM_ISA_BASELINE; i <= DDPM_ISA_AVX512; i++) {
            if (strcmp(asked, ddpm_isa_name((ddpm_isa)i)) == 0 && i <= (int)isa) isa = (ddpm_isa)i;
        }
    }
    current = (int)isa;
    return isa;
}

int ddpm_kernels_set_isa(ddpm_isa isa) {
    if ((int)isa < DDPM_ISA_BASELINE || (int)isa > (int)ddpm_kernels_best_isa()) return -1;
    current = (int)isa;
    return 0;
}
