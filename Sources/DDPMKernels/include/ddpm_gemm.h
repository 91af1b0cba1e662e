// ddpm_gemm.h — the engine's single-precision GEMM (packed, BLIS/GotoBLAS structure), the same
// bits on every ISA path and for any split of the output.
//
//   C (m, n) = alpha · op(A) (m, k) · op(B) (k, n) + beta · C        (row-major)
//
// op(A) is A, stored (m, k) with row stride lda, or Aᵀ with A stored (k, m); op(B) likewise,
// (k, n) or (n, k) with row stride ldb. op(B) may instead come from a packing callback
// (`pack_b`), which writes B's panels straight from its own source: a convolution packs its
// columns from the image without materialising im2col (implicit GEMM).
//
// The determinism contract. Every element is one chain of fused multiply-adds over k in
// ascending order, started from beta·C:
//
//   acc = beta == 0 ? 0 : beta == 1 ? C[i][j] : beta · C[i][j]     (C not read when beta == 0)
//   for p in 0 ..< k:  acc = fma(alpha' · op(A)[i][p], op(B)[p][j], acc)
//   C[i][j] = acc                                                  (alpha' · a: one rounded
//                                                                   product, exact for alpha 1)
//
// The micro-kernels keep that chain whatever their tile (MR × NR), whatever the K blocking
// (a block's chain continues from the partial result left in C by the block before), and
// whatever part of the output a call or a thread computes. So every ISA path gives the same
// bits, and splitting the output over threads by rows or columns never changes one.
// (alpha == 0 or k == 0: C = beta·C, or 0 when beta == 0; nothing of A or B is read.)
//
// A bias row (`bias`, n floats) joins the start of each chain, as a layer's `C = bias` (or
// `C += bias`) before a GEMM with beta 1 would, without the pass over C:
//
//   acc = beta == 0 ? bias[j] : (beta == 1 ? C[i][j] : beta · C[i][j]) + bias[j]     (one rounded add)
//
// Pre-packed operands. An operand used by many calls (a layer's weights, the same in every chunk
// of a batch) can be packed once, whole, into the current path's panel layout
// (ddpm_sgemm_pack_a / ddpm_sgemm_pack_b) and given to each call as `packed_a` / `packed_b`:
// the calls then skip packing it, and compute the same bits. A packed operand is only valid on
// the path that packed it (ddpm_kernels_isa() at the time: its MR, NR and KC) and for the same
// op(·) shape; a packed A holds alpha·op(A) (a call must have the packing's alpha).
//
// Memory: each thread that runs a GEMM gets its packing buffers once (aligned, kept until the
// thread ends); no call allocates after that. If that one allocation fails, the call still
// computes the same bits, with an unpacked loop (slowly).
#ifndef DDPM_GEMM_H
#define DDPM_GEMM_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Writes op(B)[k0 ..< k0+kc][j0 ..< j0+nc] into `dst` as ⌈nc/nr⌉ panels of nr columns, one
/// after another, each kc × nr floats row by row:
///
///   dst[(q·kc + p)·nr + j] = op(B)[k0 + p][j0 + q·nr + j]     (0 where q·nr + j ≥ nc)
///
/// `dst` is 64-byte aligned. Called from several threads at once for different blocks: it
/// must only read `context`. nr is the path's panel width (ddpm_sgemm_nr()), a multiple of 8.
typedef void (*ddpm_sgemm_pack_b_fn)(const void *context, float *dst, size_t k0, size_t kc, size_t j0, size_t nc,
                                     size_t nr);

/// One GEMM's arguments. Fill every field (zero the unused ones), then call ddpm_sgemm, or
/// ddpm_sgemm_split and ddpm_sgemm_tile to run it in tiles on several threads.
typedef struct ddpm_sgemm_call {
    size_t m, n, k;
    float alpha, beta;
    const float *a;
    size_t lda;
    int trans_a;                  /* nonzero: A is stored (k, m) */
    const float *b;               /* used when pack_b is NULL */
    size_t ldb;
    int trans_b;                  /* nonzero: B is stored (n, k) */
    ddpm_sgemm_pack_b_fn pack_b;  /* NULL, or the packer of op(B) (then b, ldb, trans_b unused) */
    const void *pack_b_context;
    const float *packed_a;        /* NULL, or alpha·op(A) from ddpm_sgemm_pack_a (then a, lda, trans_a unused) */
    const float *packed_b;        /* NULL, or op(B) from ddpm_sgemm_pack_b (then b, pack_b, ... unused) */
    float *c;
    size_t ldc;
    const float *bias;            /* NULL, or a row of n floats that starts every column's chain (see below) */
    /* Set by ddpm_sgemm_split: the output is cut into `tiles` parts along `tile_axis`
       (0: rows, 1: columns), each a whole number of the path's MR rows or NR columns. */
    size_t tiles;
    int tile_axis;
} ddpm_sgemm_call;

/// Runs the whole GEMM on the calling thread.
void ddpm_sgemm(const ddpm_sgemm_call *call);

/// Plans a split of the output for `threads` threads: sets call->tiles (1 when the GEMM is too
/// small to be worth splitting) and call->tile_axis. The split changes no bit of the result.
void ddpm_sgemm_split(ddpm_sgemm_call *call, size_t threads);

/// Runs tile `tile` (0 ..< call->tiles) of a split GEMM; tiles write disjoint parts of C and
/// may run on different threads at once.
void ddpm_sgemm_tile(const ddpm_sgemm_call *call, size_t tile);

/// Floats of alpha·op(A) (m × k) packed whole on the current path: ⌈m/MR⌉·MR·k.
size_t ddpm_sgemm_packed_a_floats(size_t m, size_t k);
/// Floats of op(B) (k × n) packed whole on the current path: k·⌈n/NR⌉·NR.
size_t ddpm_sgemm_packed_b_floats(size_t k, size_t n);

/// Packs alpha·op(A) of `call` (its m, k, alpha, a, lda, trans_a) whole into `dst`
/// (ddpm_sgemm_packed_a_floats(m, k) floats) for `packed_a` in calls of the same shape and alpha.
void ddpm_sgemm_pack_a(const ddpm_sgemm_call *call, float *dst);
/// Packs op(B) of `call` (its k, n, and b, ldb, trans_b or pack_b) whole into `dst`
/// (ddpm_sgemm_packed_b_floats(k, n) floats) for `packed_b` in calls of the same shape.
void ddpm_sgemm_pack_b(const ddpm_sgemm_call *call, float *dst);

/// The layout of a whole packed operand, for producers that write one directly (the Winograd
/// filter transform): op(B)[p][j] of a (k × n) B packed whole is at
///   (p − p0)·NR + j % NR + (j − j % NR)·kc + p0·⌈n/NR⌉·NR,  p0 = p − p % KC, kc = min(KC, k − p0);
/// the columns past n of the last panel are 0. KC is the current path's depth block.
size_t ddpm_sgemm_kc(void);

/// The current path's micro-tile: MR rows × NR columns (NR is the `nr` packers are given).
size_t ddpm_sgemm_mr(void);
size_t ddpm_sgemm_nr(void);

#ifdef __cplusplus
}
#endif

#endif
