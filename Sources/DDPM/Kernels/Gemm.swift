// Row-major single-precision GEMM on the system BLAS.
//
//   C (m, n) = alpha · op(A) (m, k) · op(B) (k, n) + beta · C
//
// op(X) is X or Xᵀ; transposes are passed to BLAS, never materialised.
//
// Threads: every GEMM runs on one BLAS thread, on whichever thread calls it. The engine
// splits its work itself, in fixed chunks run on the WorkPool (Parallel/), so that results
// do not depend on the thread count; concurrent single-threaded calls are safe in OpenBLAS
// (its buffers are taken under a lock). Splitting one GEMM over OpenBLAS's own threads cost
// more than it gained on our shapes, allocated per call (39 allocations a step on the
// large MLP) and could change the rounding with the thread count.
// (ddpm_blas_get/set_num_threads: Sources/CBLAS/shim.h; OpenBLAS's, or no-ops on Accelerate.)
import CBLAS

enum BLASThreads {
    /// OpenBLAS's thread count when the library loaded (OPENBLAS_NUM_THREADS or the cores):
    /// the pool's default size.
    static let initial = max(1, Int(ddpm_blas_get_num_threads()))
    /// The count OpenBLAS is set to now (1 once the first GEMM ran).
    nonisolated(unsafe) static var current = Int(ddpm_blas_get_num_threads())

    /// Sets OpenBLAS to one thread, once (on the first GEMM of the process, or when the pool
    /// starts).
    @inline(__always)
    static func prepare() {
        if current != 1 {
            ddpm_blas_set_num_threads(1)
            current = 1
        }
    }
}

/// GEMM with explicit leading dimensions (for sub-blocks of larger matrices).
@inline(__always)
func stridedGemm(
    _ c: UnsafeMutablePointer<Float>, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
    m: Int, n: Int, k: Int, lda: Int, ldb: Int, ldc: Int,
    transA: Bool = false, transB: Bool = false, alpha: Float = 1, beta: Float = 0
) {
    BLASThreads.prepare()
    cblas_sgemm(
        CblasRowMajor,
        transA ? CblasTrans : CblasNoTrans,
        transB ? CblasTrans : CblasNoTrans,
        Int32(m), Int32(n), Int32(k),
        alpha, a, Int32(lda), b, Int32(ldb),
        beta, c, Int32(ldc))
}

/// Dense GEMM: A is stored (m, k), or (k, m) when transposed; B is (k, n), or (n, k).
@inline(__always)
func gemm(
    _ c: UnsafeMutablePointer<Float>, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
    m: Int, n: Int, k: Int,
    transA: Bool = false, transB: Bool = false,
    alpha: Float = 1, beta: Float = 0
) {
    stridedGemm(c, a, b, m: m, n: n, k: k, lda: transA ? m : k, ldb: transB ? k : n, ldc: n,
                transA: transA, transB: transB, alpha: alpha, beta: beta)
}

/// Sets the number of threads the engine's work is split over (the WorkPool's size, the
/// caller included); `n <= 0` leaves it unchanged. Results do not depend on it.
public func setBLASThreads(_ n: Int) {
    BLASThreads.prepare()
    if n > 0 { WorkPool.shared.resize(n) }
}

/// The number of threads the engine's work is split over.
public func blasThreads() -> Int { WorkPool.shared.threads }
