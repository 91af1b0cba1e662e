// Row-major single-precision GEMM on the system BLAS.
//
//   C (m, n) = alpha · op(A) (m, k) · op(B) (k, n) + beta · C
//
// op(X) is X or Xᵀ; transposes are passed to BLAS, never materialised.
//
// Threads: OpenBLAS splits every call across its threads, which costs more than it gains on
// the small GEMMs of our MLPs (and the UNet's per-chunk convolutions). Each call therefore
// runs on one thread below `parallelThreshold` multiply-adds and on `maxThreads` above it.
// (ddpm_blas_get/set_num_threads: Sources/CBLAS/shim.h; OpenBLAS's, or no-ops on Accelerate.)
import CBLAS

enum BLASThreads {
    /// The most threads a GEMM may use; set by `setBLASThreads` (ddpm_set_num_threads).
    nonisolated(unsafe) static var maxThreads = Int(ddpm_blas_get_num_threads())
    /// The count OpenBLAS is set to now.
    nonisolated(unsafe) static var current = Int(ddpm_blas_get_num_threads())
    /// m·n·k below which a GEMM runs on one thread (2^25 ≈ 33.5M multiply-adds).
    static let parallelThreshold = 1 << 25

    @inline(__always)
    static func prepare(m: Int, n: Int, k: Int) {
        let want = m * n * k >= parallelThreshold ? maxThreads : 1
        if want != current {
            ddpm_blas_set_num_threads(Int32(want))
            current = want
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
    BLASThreads.prepare(m: m, n: n, k: k)
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

/// Sets the most threads a GEMM may use; `n <= 0` leaves it unchanged.
public func setBLASThreads(_ n: Int) {
    if n > 0 { BLASThreads.maxThreads = n }
}

/// The most threads a GEMM may use.
public func blasThreads() -> Int { BLASThreads.maxThreads }
