// Layer normalisation over the last dimension.  B = rows, C = features.
//   y = (x − μ)·rstd·γ + β,  rstd = 1/√(σ² + ε)
// The loops are C kernels (Sources/DDPMKernels/layernorm.inc).
import DDPMKernels

public struct LayerNorm: Sendable {
    public let features: Int
    public let epsilon: Float = 1e-5
    let gamma: Int  // offset of γ, (C,)
    let beta: Int  // offset of β, (C,)

    public init(_ layout: inout ParameterLayout, _ name: String, features: Int) {
        self.features = features
        gamma = layout.add(name + ".weight", [features], .ones)
        beta = layout.add(name + ".bias", [features], .zeros)
    }

    /// out (B, C); mean, rstd (B,) are kept for the backward pass. With `adding` (B, C),
    /// out = LN(inp) + adding in the same pass (the residual MLP's + temb): the same
    /// roundings as the two passes, one trip through out less (measured: a third of
    /// LayerNorm's time on toy2d sampling).
    func forward(_ out: UnsafeMutablePointer<Float>, mean: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>,
                 _ inp: UnsafePointer<Float>, _ params: UnsafePointer<Float>, batch: Int,
                 adding add: UnsafePointer<Float>? = nil) {
        // One range: the MLP's LayerNorms run inside the chunk jobs, and a pass is a few microseconds.
        ddpm_layernorm_forward(out, mean, rstd, inp, params + gamma, params + beta, add, Int64(features), epsilon, 0, Int64(batch))
    }

    /// In the forward pass this was: y = x̂·γ + β with x̂ = (x − μ)·rstd, so
    /// dγ += Σ dy·x̂,  dβ += Σ dy,  dx += rstd·(dy·γ − mean(dy·γ) − x̂·mean(dy·γ·x̂)).
    /// `dinp` always accumulates (it is the residual stream's gradient in our networks).
    /// One range: dγ and dβ take the rows in order.
    func backward(dinp: UnsafeMutablePointer<Float>, _ grads: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>,
                  inp: UnsafePointer<Float>, mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>,
                  _ params: UnsafePointer<Float>, batch: Int) {
        ddpm_layernorm_backward(dinp, grads + gamma, grads + beta, dout, inp, mean, rstd, params + gamma, Int64(features), 0,
                                Int64(batch))
    }
}
