// SiLU (swish): y = x·σ(x).  N = number of elements.

enum SiLU {
    /// out (N,) = inp·σ(inp); `out` may alias `inp` only if the backward pass is not needed.
    static func forward(_ out: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>, count: Int) {
        for i in 0..<count { let x = inp[i]; out[i] = x * sigmoid(x) }
    }

    /// In the forward pass this was: y = x·σ(x), so dx = dy·σ(x)·(1 + x·(1 − σ(x))).
    /// `dinp` is overwritten; it may alias `dout`.
    static func backward(dinp: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, inp: UnsafePointer<Float>, count: Int) {
        for i in 0..<count {
            let x = inp[i], s = sigmoid(x)
            dinp[i] = dout[i] * s * (1 + x * (1 - s))
        }
    }
}
