// L_simple = mean((ε̂ − ε)²) over the (B, S) elements, and its gradient
//   ∂L/∂ε̂ = 2(ε̂ − ε)/(B·S).                N = B·S.

enum SimpleLoss {
    /// Writes ∂L/∂ε̂ to `dout` (N,) and returns L.
    static func forwardBackward(dout: UnsafeMutablePointer<Float>, predicted: UnsafePointer<Float>,
                                target: UnsafePointer<Float>, count: Int) -> Float {
        var sum: Double = 0
        var partial: Float = 0
        let scale = 2 / Float(count)
        for i in 0..<count {
            let d = predicted[i] - target[i]
            partial += d * d
            dout[i] = scale * d
            if i & 4095 == 4095 { sum += Double(partial); partial = 0 }
        }
        return Float((sum + Double(partial)) / Double(count))
    }
}
