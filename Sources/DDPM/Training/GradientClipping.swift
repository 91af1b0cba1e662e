// Global-norm gradient clipping:  g ← g·min(1, c/‖g‖₂).   P = number of parameters.
// The scale is handed to the optimizer, which applies it while it reads the gradients.

enum GradientClipping {
    /// ‖g‖₂ (in Double: finite whenever every g is, even beyond Float's range) and the
    /// factor min(1, c/‖g‖₂) to apply; `maxNorm` ≤ 0 gives factor 1.
    static func scale(_ grads: UnsafePointer<Float>, count: Int, maxNorm: Float) -> (norm: Double, scale: Float) {
        let norm = sumOfSquares(grads, count).squareRoot()
        let floatNorm = Float(norm)
        guard maxNorm > 0 && floatNorm > maxNorm else { return (norm, 1) }
        // Beyond Float's range the factor is formed in Double (it may then be subnormal).
        return (norm, floatNorm.isFinite ? maxNorm / (floatNorm + 1e-6) : Float(Double(maxNorm) / norm))
    }
}
