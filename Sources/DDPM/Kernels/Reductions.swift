// Reductions over float vectors, in the C kernels (Sources/DDPMKernels/reduce.inc): 16 partial
// sums (element i into partial i mod 16) combined in one fixed tree, so every ISA path and
// every thread count gives the same bits.
import DDPMKernels

/// Σ x[0..<n]
@inline(__always)
func sumOf(_ x: UnsafePointer<Float>, _ n: Int) -> Float { ddpm_sum(x, Int64(n)) }

/// (Σ a, Σ a·b) over [0..<n]
@inline(__always)
func sumAndDot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> (Float, Float) {
    var (sum, dot): (Float, Float) = (0, 0)
    ddpm_sum_dot(a, b, Int64(n), &sum, &dot)
    return (sum, dot)
}

/// Σ (x − m)² over x[0..<n]
@inline(__always)
func squaredDeviations(_ x: UnsafePointer<Float>, _ n: Int, from m: Float) -> Float { ddpm_squared_deviations(x, Int64(n), m) }

/// Σ a·b over [0..<n]
@inline(__always)
func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float { ddpm_dot(a, b, Int64(n)) }

/// Σ x² over [0..<n] in Double (each square and every partial sum): for large vectors,
/// gradient norms, losses. Blocks of `sumOfSquaresBlock` values are summed on their own and
/// the block sums added in order, so a split of the vector by blocks (onto threads) gives the
/// same bits.
func sumOfSquares(_ x: UnsafePointer<Float>, _ n: Int) -> Double {
    var total: Double = 0
    var start = 0
    while start < n {
        let len = min(sumOfSquaresBlock, n - start)
        total += ddpm_sum_squares_f64(x + start, Int64(len))
        start += len
    }
    return total
}

/// Values per block of `sumOfSquares`.
let sumOfSquaresBlock = 1 << 16
