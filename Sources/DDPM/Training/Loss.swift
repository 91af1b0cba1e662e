// L_simple = mean((ε̂ − ε)²) over the (B, S) elements, and its gradient
//   ∂L/∂ε̂ = 2(ε̂ − ε)/(B·S).                N = B·S.

enum SimpleLoss {
    /// Writes ∂L/∂ε̂ to `dout` (N,) and returns L.
    static func forwardBackward(dout: UnsafeMutablePointer<Float>, predicted: UnsafePointer<Float>,
                                target: UnsafePointer<Float>, count: Int) -> Float {
        for i in 0..<count { dout[i] = predicted[i] - target[i] }  // (ε̂ − ε), vectorised
        let loss = sumOfSquares(dout, count) / Double(count)
        let scale = 2 / Float(count)
        for i in 0..<count { dout[i] *= scale }
        return Float(loss)
    }
}
