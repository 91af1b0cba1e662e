// The GEMM's blocking per ISA path (private to DDPMKernels; see ddpm_gemm.h).
//
//   MR × NR   the micro-tile: the accumulators the micro-kernel keeps in registers
//   KC        the depth of one packed block (A's micro-panel MR × KC and B's KC × NR stay in L1)
//   MC        rows of A packed at once (MC × KC floats, kept in L2), a multiple of MR
//   NC        columns of B packed at once (KC × NC floats, L3), a multiple of NR
//
// None of these changes a bit of the result (ddpm_gemm.h's contract): they only move data.
// (Each can be overridden with -D for tuning experiments: CFLAGS=-DGEMM_AVX512_NC=1024 bench/gemm_bench.sh.)
//
// Chosen on the Zen 5 of 2026-12 with bench/gemm_bench.sh (ratios to OpenBLAS's AVX-512 kernels,
// loaded machine, ±5%): for AVX-512, 8 × 32 beat 12 × 32, 14 × 32, 6 × 64 and 8 × 48 (the
// engine's row counts are multiples of 8; 16 accumulators are enough for 2 FMA pipes of
// latency 4); NC 256–512 beat 1024–2048 on the convolutions' long rows (B's block stays in
// L2); KC 256, 384, 512 and MC 120–480 were within the noise.
#ifndef DDPM_GEMM_BLOCKING_H
#define DDPM_GEMM_BLOCKING_H

#ifndef GEMM_AVX512_MR
#define GEMM_AVX512_MR 8
#endif
#ifndef GEMM_AVX512_NR
#define GEMM_AVX512_NR 32
#endif
#ifndef GEMM_AVX512_KC
#define GEMM_AVX512_KC 256
#endif
#ifndef GEMM_AVX512_MC
#define GEMM_AVX512_MC 240
#endif
#ifndef GEMM_AVX512_NC
#define GEMM_AVX512_NC 512
#endif

#ifndef GEMM_AVX2_MR
#define GEMM_AVX2_MR 6
#endif
#ifndef GEMM_AVX2_NR
#define GEMM_AVX2_NR 16
#endif
#ifndef GEMM_AVX2_KC
#define GEMM_AVX2_KC 256
#endif
#ifndef GEMM_AVX2_MC
#define GEMM_AVX2_MC 144
#endif
#ifndef GEMM_AVX2_NC
#define GEMM_AVX2_NC 512
#endif

#ifndef GEMM_BASELINE_MR
#define GEMM_BASELINE_MR 4
#endif
#ifndef GEMM_BASELINE_NR
#define GEMM_BASELINE_NR 8
#endif
#ifndef GEMM_BASELINE_KC
#define GEMM_BASELINE_KC 256
#endif
#ifndef GEMM_BASELINE_MC
#define GEMM_BASELINE_MC 64
#endif
#ifndef GEMM_BASELINE_NC
#define GEMM_BASELINE_NC 1024
#endif

#define GEMM_MAX_(a, b) ((a) > (b) ? (a) : (b))
#define GEMM_MAX3_(a, b, c) GEMM_MAX_(GEMM_MAX_(a, b), c)
/// Floats of a thread's packed A block and packed B block, enough for every path.
#define GEMM_A_FLOATS GEMM_MAX3_(GEMM_AVX512_MC * GEMM_AVX512_KC, GEMM_AVX2_MC * GEMM_AVX2_KC, \
                                 GEMM_BASELINE_MC * GEMM_BASELINE_KC)
#define GEMM_B_FLOATS GEMM_MAX3_(GEMM_AVX512_KC * GEMM_AVX512_NC, GEMM_AVX2_KC * GEMM_AVX2_NC, \
                                 GEMM_BASELINE_KC * GEMM_BASELINE_NC)

#include "ddpm_gemm.h"

// Each path's driver: computes C[m0 ..< m1][n0 ..< n1] of `call` with the given buffers
// (GEMM_A_FLOATS and GEMM_B_FLOATS floats, 64-byte aligned). k > 0 and alpha != 0. Internal to
// the library (not exported from libddpm.so).
#define GEMM_INTERNAL __attribute__((visibility("hidden")))
GEMM_INTERNAL void ddpm_sgemm_range_baseline(const ddpm_sgemm_call *call, size_t m0, size_t m1, size_t n0, size_t n1,
                                             float *abuf, float *bbuf);
GEMM_INTERNAL void ddpm_sgemm_range_avx2(const ddpm_sgemm_call *call, size_t m0, size_t m1, size_t n0, size_t n1,
                                         float *abuf, float *bbuf);
GEMM_INTERNAL void ddpm_sgemm_range_avx512(const ddpm_sgemm_call *call, size_t m0, size_t m1, size_t n0, size_t n1,
                                           float *abuf, float *bbuf);
// Each path's whole-operand packing (ddpm_sgemm_pack_a / ddpm_sgemm_pack_b).
#define GEMM_PACK_WHOLE_(path)                                                                    \
    GEMM_INTERNAL void ddpm_sgemm_pack_a_whole_##path(const ddpm_sgemm_call *call, float *dst); \
    GEMM_INTERNAL void ddpm_sgemm_pack_b_whole_##path(const ddpm_sgemm_call *call, float *dst);
GEMM_PACK_WHOLE_(baseline)
GEMM_PACK_WHOLE_(avx2)
GEMM_PACK_WHOLE_(avx512)

#endif
