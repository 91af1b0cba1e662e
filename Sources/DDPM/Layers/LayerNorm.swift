// Layer normalisation over the last dimension.  B = rows, C = features.
//   y = (x − μ)·rstd·γ + β,  rstd = 1/√(σ² + ε)

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

    /// out (B, C); mean, rstd (B,) are kept for the backward pass.
    func forward(_ out: UnsafeMutablePointer<Float>, mean: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>,
                 _ inp: UnsafePointer<Float>, _ params: UnsafePointer<Float>, batch: Int) {
        let C = features
        let (g, b) = (params + gamma, params + beta)
        for r in 0..<batch {
            let x = inp + r * C, y = out + r * C
            var sum: Float = 0
            for i in 0..<C { sum += x[i] }
            let m = sum / Float(C)
            var sq: Float = 0
            for i in 0..<C { let d = x[i] - m; sq += d * d }
            let s = 1 / (sq / Float(C) + epsilon).squareRoot()
            for i in 0..<C { y[i] = (x[i] - m) * s * g[i] + b[i] }
            mean[r] = m
            rstd[r] = s
        }
    }

    /// In the forward pass this was: y = x̂·γ + β with x̂ = (x − μ)·rstd, so
    /// dγ += Σ dy·x̂,  dβ += Σ dy,  dx += rstd·(dy·γ − mean(dy·γ) − x̂·mean(dy·γ·x̂)).
    /// `dinp` always accumulates (it is the residual stream's gradient in our networks).
    func backward(dinp: UnsafeMutablePointer<Float>, _ grads: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>,
                  inp: UnsafePointer<Float>, mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>,
                  _ params: UnsafePointer<Float>, batch: Int) {
        let C = features
        let g = params + gamma
        let (dg, db) = (grads + gamma, grads + beta)
        for r in 0..<batch {
            let x = inp + r * C, dy = dout + r * C, dx = dinp + r * C
            let (m, s) = (mean[r], rstd[r])
            var sumDyG: Float = 0, sumDyGXhat: Float = 0
            for i in 0..<C {
                let xhat = (x[i] - m) * s
                let dyg = dy[i] * g[i]
                sumDyG += dyg
                sumDyGXhat += dyg * xhat
                dg[i] += dy[i] * xhat
                db[i] += dy[i]
            }
            let (meanDyG, meanDyGXhat) = (sumDyG / Float(C), sumDyGXhat / Float(C))
            for i in 0..<C {
                let xhat = (x[i] - m) * s
                dx[i] += s * (dy[i] * g[i] - meanDyG - xhat * meanDyGXhat)
            }
        }
    }
}
