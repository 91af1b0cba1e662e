// How a kernel is written once and compiled for each ISA path (private to DDPMKernels).
//
// A kernel's body lives in a `*.inc` file written against the macros below; a file per path
// includes it after choosing the target:
//
//   // gemm_avx2.c
//   #define DDPM_ISA_SUFFIX avx2
//   #include "isa.h"
//   DDPM_TARGET_BEGIN("avx2,fma")
//   #include "gemm.inc"          // defines DDPM_FN(sgemm_kernel) = ddpm_sgemm_kernel_avx2, ...
//   DDPM_TARGET_END
//
// and the dispatching function (in the concept's plain .c file) switches on
// ddpm_kernels_isa(). Floating-point contraction is off everywhere (Package.swift passes
// -ffp-contract=off, and the pragma below repeats it): a multiply-add is fused only where
// the code says fmaf / _mm*_fmadd_ps, identically on every path.
#ifndef DDPM_ISA_H
#define DDPM_ISA_H

#include "ddpm_kernels.h"

#pragma clang fp contract(off)

#define DDPM_CAT_(a, b) a##_##b
#define DDPM_CAT(a, b) DDPM_CAT_(a, b)
/// name → name_<suffix> for the path being compiled.
#define DDPM_FN(name) DDPM_CAT(name, DDPM_ISA_SUFFIX)

#if defined(__x86_64__) || defined(__i386__)
#define DDPM_X86 1
#define DDPM_PRAGMA_(text) _Pragma(#text)
/// DDPM_TARGET_BEGIN("avx2,fma"): the functions up to DDPM_TARGET_END get that target attribute.
#define DDPM_TARGET_BEGIN(features) DDPM_PRAGMA_(clang attribute push(__attribute__((target(features))), apply_to = function))
#define DDPM_TARGET_END _Pragma("clang attribute pop")
#else
#define DDPM_X86 0
#define DDPM_TARGET_BEGIN(features)
#define DDPM_TARGET_END
#endif

#endif
