// Global-norm gradient clipping:  g ← g·min(1, c/‖g‖₂).   P = number of parameters.

enum GradientClipping {
    /// Returns ‖g‖₂ before clipping; `maxNorm` ≤ 0 only measures.
    @discardableResult
    static func clip(_ grads: UnsafeMutablePointer<Float>, count: Int, maxNorm: Float) -> Float {
        var sum: Double = 0
        var partial: Float = 0
        for i in 0..<count {
            partial += grads[i] * grads[i]
            if i & 4095 == 4095 { sum += Double(partial); partial = 0 }  // keep the Float partials short
        }
        let norm = Float((sum + Double(partial)).squareRoot())
        if maxNorm > 0 && norm > maxNorm {
            let scale = maxNorm / (norm + 1e-6)
            for i in 0..<count { grads[i] *= scale }
        }
        return norm
    }
}
