// Fully connected layer.  B = batch (rows), I = in features, O = out features.

public struct Linear: Sendable {
    public let inFeatures: Int, outFeatures: Int
    let weight: Int  // offset of W, (O, I)
    let bias: Int  // offset of b, (O,)

    /// Declares W and b with PyTorch's default initialisation U(±1/√I), or zeros (`zeroInit`:
    /// the last layer of a residual branch, which then starts as the identity).
    public init(_ layout: inout ParameterLayout, _ name: String, in inFeatures: Int, out outFeatures: Int, zeroInit: Bool = false) {
        self.inFeatures = inFeatures
        self.outFeatures = outFeatures
        let initial = zeroInit ? Initializer.zeros : .uniform(bound: 1 / Float(inFeatures).squareRoot())
        weight = layout.add(name + ".weight", [outFeatures, inFeatures], initial)
        bias = layout.add(name + ".bias", [outFeatures], initial)
    }

    /// out (B, O) = inp (B, I) · Wᵀ + b, or out += … when `accumulate`.
    func forward(_ out: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>, _ params: UnsafePointer<Float>,
                 batch: Int, accumulate: Bool = false) {
        let (O, b) = (outFeatures, params + bias)
        for r in 0..<batch {
            let row = out + r * O
            if accumulate { for o in 0..<O { row[o] += b[o] } } else { for o in 0..<O { row[o] = b[o] } }
        }
        gemm(out, inp, params + weight, m: batch, n: O, k: inFeatures, transB: true, beta: 1)
    }

    /// In the forward pass this was: out = inp·Wᵀ + b, so
    /// dW (O, I) += doutᵀ·inp,  db (O,) += Σ_rows dout,  dinp (B, I) (+)= dout·W.
    /// `dinp` may be nil when the input needs no gradient; it is overwritten unless `accumulate`.
    func backward(dinp: UnsafeMutablePointer<Float>?, _ grads: UnsafeMutablePointer<Float>,
                  dout: UnsafePointer<Float>, inp: UnsafePointer<Float>, _ params: UnsafePointer<Float>,
                  batch: Int, accumulate: Bool = false) {
        let (I, O) = (inFeatures, outFeatures)
        gemm(grads + weight, dout, inp, m: O, n: I, k: batch, transA: true, beta: 1)
        let db = grads + bias
        for r in 0..<batch {
            let row = dout + r * O
            for o in 0..<O { db[o] += row[o] }
        }
        if let dinp { gemm(dinp, dout, params + weight, m: batch, n: I, k: O, beta: accumulate ? 1 : 0) }
    }
}
