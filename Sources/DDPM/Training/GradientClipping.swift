// Global-norm gradient clipping:  g ← g·min(1, c/‖g‖₂).   P = number of parameters.
// The scale is handed to the optimizer, which applies it while it reads the gradients.

enum GradientClipping {
    /// ‖g‖₂ (in Double: finite whenever every g is, even beyond Float's range) and the
    /// factor min(1, c/‖g‖₂) to apply; `maxNorm` ≤ 0 gives factor 1.
    static func scale(_ grads: UnsafePointer<Float>, count: Int, maxNorm: Float) -> (norm: Double, scale: Float) {
        let norm = norm2(grads, count)
        let floatNorm = Float(norm)
        guard maxNorm > 0 && floatNorm > maxNorm else { return (norm, 1) }
        // Beyond Float's range the factor is formed in Double (it may then be subnormal).
        return (norm, floatNorm.isFinite ? maxNorm / (floatNorm + 1e-6) : Float(Double(maxNorm) / norm))
    }
}

/// ‖g‖₂ in Double for any finite g: `sumOfSquares` sums each block in Float, which overflows
/// once an entry passes √Float.max ≈ 1.8e19; then the squares are summed again one by one in
/// Double (at most 2^31 squares of at most 1.2e77 each: finite). Infinite or NaN for a g that
/// holds one.
func norm2(_ g: UnsafePointer<Float>, _ count: Int) -> Double {
    let fast = sumOfSquares(g, count)
    if fast.isFinite { return fast.squareRoot() }
    var total = 0.0
    for i in 0..<count { total += Double(g[i]) * Double(g[i]) }
    return total.squareRoot()
}
