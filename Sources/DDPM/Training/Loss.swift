// L_simple = mean((ε̂ − ε)²) over the (B, S) elements, and its gradient
//   ∂L/∂ε̂ = 2(ε̂ − ε)/(B·S).                N = B·S.

enum SimpleLoss {
    /// Writes ∂L/∂ε̂ to `dout` (N,) and returns L. With `meanOver` M > N the N elements are a
    /// shard of a global batch of M: L and ∂L/∂ε̂ are this shard's terms of the global mean
    /// (Σ(ε̂ − ε)²/M and 2(ε̂ − ε)/M), so that the shards' sums are the global ones.
    static func forwardBackward(dout: UnsafeMutablePointer<Float>, predicted: UnsafePointer<Float>,
                                target: UnsafePointer<Float>, count: Int, meanOver total: Int? = nil) -> Float {
        let total = total ?? count
        for i in 0..<count { dout[i] = predicted[i] - target[i] }  // (ε̂ − ε), vectorised
        let loss = sumOfSquares(dout, count) / Double(total)
        let scale = 2 / Float(total)
        for i in 0..<count { dout[i] *= scale }
        return Float(loss)
    }
}
