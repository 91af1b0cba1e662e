// Row-major single-precision GEMM on the system BLAS.
//
//   C (m, n) = alpha · op(A) (m, k) · op(B) (k, n) + beta · C
//
// op(X) is X or Xᵀ; transposes are passed to BLAS, never materialised.
import CBLAS

@inline(__always)
func gemm(
    _ c: UnsafeMutablePointer<Float>, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
    m: Int, n: Int, k: Int,
    transA: Bool = false, transB: Bool = false,
    alpha: Float = 1, beta: Float = 0
) {
    let lda = transA ? m : k  // A is stored (m, k), or (k, m) when transposed
    let ldb = transB ? k : n  // B is stored (k, n), or (n, k) when transposed
    cblas_sgemm(
        CblasRowMajor,
        transA ? CblasTrans : CblasNoTrans,
        transB ? CblasTrans : CblasNoTrans,
        Int32(m), Int32(n), Int32(k),
        alpha, a, Int32(lda), b, Int32(ldb),
        beta, c, Int32(n))
}

/// Sets the number of threads the BLAS uses (OpenBLAS); `n <= 0` leaves it unchanged.
public func setBLASThreads(_ n: Int) {
    #if !os(macOS)
    if n > 0 { openblas_set_num_threads(Int32(n)) }
    #endif
}

/// The number of threads the BLAS currently uses.
public func blasThreads() -> Int {
    #if os(macOS)
    return 1
    #else
    return Int(openblas_get_num_threads())
    #endif
}
