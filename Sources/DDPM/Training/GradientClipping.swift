// Global-norm gradient clipping:  g ← g·min(1, c/‖g‖₂).   P = number of parameters.
// The scale is handed to the optimizer, which applies it while it reads the gradients.

enum GradientClipping {
    /// ‖g‖₂ and the factor min(1, c/‖g‖₂) to apply; `maxNorm` ≤ 0 gives factor 1.
    static func scale(_ grads: UnsafePointer<Float>, count: Int, maxNorm: Float) -> (norm: Float, scale: Float) {
        let norm = Float(sumOfSquares(grads, count).squareRoot())
        guard maxNorm > 0 && norm > maxNorm else { return (norm, 1) }
        return (norm, maxNorm / (norm + 1e-6))
    }
}
