// Row-major single-precision GEMM on the engine's own kernels (Sources/DDPMKernels/include/ddpm_gemm.h).
//
//   C (m, n) = alpha · op(A) (m, k) · op(B) (k, n) + beta · C
//
// op(X) is X or Xᵀ; transposes are read by the packing, never materialised. Every element of C
// is one chain of fused multiply-adds over k, the same on every ISA path (KernelISA) and for
// any split of the output, so results are the same bits on every x86-64 CPU and at any thread
// count. beta == 0 never reads C.
//
// Threads: a GEMM called while the WorkPool is free and large enough to pay (ddpm_sgemm_split)
// is cut into tiles of C run on the pool; one called from inside a pool job (the engine's
// per-chunk work) runs whole on its caller. Each thread's packing buffers are allocated once.
//
// OpenBLAS stays linked: the tests use it as an oracle and bench/gemm_bench.sh as the
// comparison; Parallel/ThreadCount.swift keeps it on one thread.
import DDPMKernels

/// A GEMM split into tiles on the pool: the call (written by the caller that holds the pool,
/// in parallelForIfFree's `prepare`, read by the tiles) and the stored job, so that running
/// one allocates nothing.
private enum GemmTiles {
    nonisolated(unsafe) static let call = UnsafeMutablePointer<ddpm_sgemm_call>.allocate(capacity: 1)
    nonisolated(unsafe) static let job: (Int, Int) -> Void = { tile, _ in ddpm_sgemm_tile(call, tile) }
}

/// Runs `call` (its `tiles` and `tile_axis` are set here): in tiles on the pool when it is free
/// and the GEMM is large, else whole on this thread. Same bits either way.
func runGemm(_ call: inout ddpm_sgemm_call) {
    let pool = WorkPool.shared
    ddpm_sgemm_split(&call, pool.threads)
    if call.tiles > 1 {
        let tiles = Int(call.tiles)
        if pool.parallelForIfFree(chunks: tiles, prepare: { GemmTiles.call.pointee = call }, GemmTiles.job) { return }
    }
    ddpm_sgemm(&call)
}

/// GEMM with explicit leading dimensions (for sub-blocks of larger matrices). `packedA` /
/// `packedB`, when given, are op(A) / op(B) packed whole beforehand (ddpm_sgemm_pack_a / _b, on
/// the current ISA path, for this shape and alpha): the call reads them instead of packing
/// `a` / `b` (which it then never reads), with the same bits. `bias` (n,), when given, starts
/// every column's chain: C = bias + op(A)·op(B) (beta 0), or C + bias + … (beta 1).
@inline(__always)
func stridedGemm(
    _ c: UnsafeMutablePointer<Float>, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
    m: Int, n: Int, k: Int, lda: Int, ldb: Int, ldc: Int,
    transA: Bool = false, transB: Bool = false, alpha: Float = 1, beta: Float = 0,
    packedA: UnsafePointer<Float>? = nil, packedB: UnsafePointer<Float>? = nil, bias: UnsafePointer<Float>? = nil
) {
    var call = ddpm_sgemm_call(
        m: m, n: n, k: k, alpha: alpha, beta: beta,
        a: a, lda: lda, trans_a: transA ? 1 : 0, b: b, ldb: ldb, trans_b: transB ? 1 : 0,
        pack_b: nil, pack_b_context: nil, packed_a: packedA, packed_b: packedB, c: c, ldc: ldc, bias: bias, tiles: 1, tile_axis: 0)
    runGemm(&call)
}

/// Dense GEMM: A is stored (m, k), or (k, m) when transposed; B is (k, n), or (n, k).
@inline(__always)
func gemm(
    _ c: UnsafeMutablePointer<Float>, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
    m: Int, n: Int, k: Int,
    transA: Bool = false, transB: Bool = false,
    alpha: Float = 1, beta: Float = 0, packedA: UnsafePointer<Float>? = nil, packedB: UnsafePointer<Float>? = nil,
    bias: UnsafePointer<Float>? = nil
) {
    stridedGemm(c, a, b, m: m, n: n, k: k, lda: transA ? m : k, ldb: transB ? k : n, ldc: n,
                transA: transA, transB: transB, alpha: alpha, beta: beta, packedA: packedA, packedB: packedB, bias: bias)
}

/// GEMM whose op(B) (k, n) is written by `packB` straight from its own source (an image, for a
/// convolution without im2col): packB(context, dst, k0, kc, j0, nc, nr) writes
/// op(B)[k0 ..< k0+kc][j0 ..< j0+nc] as NR-column panels (ddpm_gemm.h's ddpm_sgemm_pack_b_fn).
/// It may be called from several threads at once (tiles on the pool) and must only read `context`.
func packedGemm(
    _ c: UnsafeMutablePointer<Float>, _ a: UnsafePointer<Float>,
    packB: ddpm_sgemm_pack_b_fn, context: UnsafeRawPointer?,
    m: Int, n: Int, k: Int, lda: Int, ldc: Int,
    transA: Bool = false, alpha: Float = 1, beta: Float = 0
) {
    var call = ddpm_sgemm_call(
        m: m, n: n, k: k, alpha: alpha, beta: beta,
        a: a, lda: lda, trans_a: transA ? 1 : 0, b: nil, ldb: 0, trans_b: 0,
        pack_b: packB, pack_b_context: context, packed_a: nil, packed_b: nil, c: c, ldc: ldc, bias: nil, tiles: 1, tile_axis: 0)
    runGemm(&call)
}
