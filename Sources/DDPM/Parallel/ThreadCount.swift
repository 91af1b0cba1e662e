// How many threads the engine splits its work over: the size of the WorkPool (the calling
// thread included), ddpm_set_num_threads in C. Results are the same bits for every count
// (Model/ChunkPlan.swift). OpenBLAS, which stays linked as the tests' oracle, is kept on one
// thread, and its count when the library loads is the pool's default size.
// (ddpm_blas_get/set_num_threads: Sources/CBLAS/shim.h; OpenBLAS's, or no-ops on Accelerate.)
import CBLAS

/// Sets the number of threads the engine's work is split over (the WorkPool's size, the
/// caller included); `n <= 0` leaves it unchanged. Results do not depend on it.
public func setWorkPoolSize(_ n: Int) {
    BLASThreads.prepare()
    if n > 0 { WorkPool.shared.resize(n) }
}

/// The number of threads the engine's work is split over.
public func workPoolSize() -> Int { WorkPool.shared.threads }

@available(*, deprecated, renamed: "setWorkPoolSize(_:)", message: "it sets the engine's WorkPool size; BLAS runs on one thread")
public func setBLASThreads(_ n: Int) { setWorkPoolSize(n) }

@available(*, deprecated, renamed: "workPoolSize()", message: "the engine's WorkPool size; BLAS runs on one thread")
public func blasThreads() -> Int { workPoolSize() }

enum BLASThreads {
    /// OpenBLAS's thread count when the library loaded (OPENBLAS_NUM_THREADS or the cores):
    /// the pool's default size.
    static let initial = max(1, Int(ddpm_blas_get_num_threads()))
    /// The count OpenBLAS is set to now (1 once the pool started).
    nonisolated(unsafe) static var current = Int(ddpm_blas_get_num_threads())

    /// Sets OpenBLAS to one thread, once (when the pool starts).
    @inline(__always)
    static func prepare() {
        if current != 1 {
            ddpm_blas_set_num_threads(1)
            current = 1
        }
    }
}
