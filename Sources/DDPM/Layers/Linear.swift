// Fully connected layer.  B = batch (rows), I = in features, O = out features.
import DDPMKernels

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

    /// out (B, O) = inp (B, I) · Wᵀ + b, or out += … when `accumulate`. Wᵀ comes from `prepared`
    /// when it holds it for `params` (Linear+Prepared.swift): the same bits.
    func forward(_ out: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>, _ params: UnsafePointer<Float>,
                 batch: Int, accumulate: Bool = false, prepared: PreparedWeights? = nil) {
        // b starts each output's chain (the GEMM's bias row): out = b + inp·Wᵀ, or out + b + inp·Wᵀ
        gemm(out, inp, params + weight, m: batch, n: outFeatures, k: inFeatures, transB: true, beta: accumulate ? 1 : 0,
             packedB: prepared?.weights(weight, .linearForward, params: params)?.pointer, bias: params + bias)
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
        for r in 0..<batch { ddpm_add_inplace(db, dout + r * O, Int64(O)) }  // row by row, in order
        if let dinp { gemm(dinp, dout, params + weight, m: batch, n: I, k: O, beta: accumulate ? 1 : 0) }
    }
}
