// DDPMKernels: the engine's hot loops in C, compiled once per instruction set and chosen at
// run time (issue 18). The shipped library runs on any x86-64: nothing here is built with
// -march=native; each ISA path is a set of functions compiled with a target attribute
// (see isa.h), and the path is picked once from the CPU's feature flags.
//
// Paths: BASELINE (any x86-64, or another architecture), AVX2 (+FMA), AVX512 (F, BW, DQ, VL).
// Every kernel gives bitwise the same results on every path: products are added with an
// explicit fused multiply-add in the same order on each path (fmaf on BASELINE), vector
// widths only change how many independent outputs run at once, and a reduction keeps the
// same 16 partial sums whatever the vector width. So a seed gives the same bits on any
// machine, the pinned-values test holds on each path, and tests can compare the paths on
// one machine (ddpm_kernels_set_isa).
//
// The engine (Swift) calls these through the module DDPMKernels; they are not part of the
// public C API (include/ddpm.h).
#ifndef DDPM_KERNELS_H
#define DDPM_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    DDPM_ISA_BASELINE = 0,
    DDPM_ISA_AVX2 = 1,    /* AVX2 + FMA */
    DDPM_ISA_AVX512 = 2,  /* AVX-512 F, BW, DQ, VL */
} ddpm_isa;

/// The path the kernels use now: the best the CPU supports, unless DDPM_KERNEL_ISA
/// (baseline | avx2 | avx512) asked for a lower one at the first call, or
/// ddpm_kernels_set_isa changed it.
ddpm_isa ddpm_kernels_isa(void);

/// The best path this CPU supports.
ddpm_isa ddpm_kernels_best_isa(void);

/// Uses `isa` from now on (tests compare the paths). Returns 0, or -1 when the CPU lacks it
/// (nothing changes then). Not to be called while kernels run on other threads.
int ddpm_kernels_set_isa(ddpm_isa isa);

/// "baseline", "avx2" or "avx512".
const char *ddpm_isa_name(ddpm_isa isa);

#ifdef __cplusplus
}
#endif

#endif
