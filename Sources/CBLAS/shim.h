// The BLAS the engine links: Accelerate's CBLAS on macOS, OpenBLAS elsewhere (Debian's
// libopenblas-dev). Package.swift links the matching library (the module map links none,
// since a module map cannot say "on this platform only").
//
// The engine calls cblas_sgemm, plus the two thread-count shims below, and nothing else of
// either library, so these shims are the only place the two differ.
#ifndef DDPM_CBLAS_SHIM_H
#define DDPM_CBLAS_SHIM_H

#if defined(__APPLE__)
#include <Accelerate/Accelerate.h>

// Accelerate schedules its own threads and has no per-call thread count: the engine's
// choice of 1 or max threads per GEMM is accepted and ignored (macOS is not built or run
// by our CI; this branch keeps the build consistent).
static inline int ddpm_blas_get_num_threads(void) { return 1; }
static inline void ddpm_blas_set_num_threads(int n) { (void)n; }
#else
#include <cblas.h>

static inline int ddpm_blas_get_num_threads(void) { return openblas_get_num_threads(); }
static inline void ddpm_blas_set_num_threads(int n) { openblas_set_num_threads(n); }
#endif

#endif
