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

    /// out (B, C); mean, rstd (B,) are kept for the backward pass. With `adding` (B, C),
    /// out = LN(inp) + adding in the same pass (the residual MLP's + temb): the same
    /// roundings as the two passes, one trip through out less (measured: a third of
    /// LayerNorm's time on toy2d sampling).
    func forward(_ out: UnsafeMutablePointer<Float>, mean: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>,
                 _ inp: UnsafePointer<Float>, _ params: UnsafePointer<Float>, batch: Int,
                 adding add: UnsafePointer<Float>? = nil) {
        let C = features
        let (g, b) = (params + gamma, params + beta)
        for r in 0..<batch {
            let x = inp + r * C, y = out + r * C
            let m = sumOf(x, C) / Float(C)
            let s = 1 / (squaredDeviations(x, C, from: m) / Float(C) + epsilon).squareRoot()
            if let add {
                let a = add + r * C
                for i in 0..<C { y[i] = (x[i] - m) * s * g[i] + b[i] + a[i] }
            } else {
                for i in 0..<C { y[i] = (x[i] - m) * s * g[i] + b[i] }
            }
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
            // Σ dy·γ and Σ dy·γ·x̂ in eight lanes; dγ and dβ accumulate on the way.
            typealias V = SIMD8<Float>
            var sumDyGv = V.zero, sumDyGXhatv = V.zero
            let (mv, sv) = (V(repeating: m), V(repeating: s))
            var i = 0
            while i + 8 <= C {
                let xhat = (UnsafeRawPointer(x + i).loadUnaligned(as: V.self) - mv) * sv
                let dyv = UnsafeRawPointer(dy + i).loadUnaligned(as: V.self)
                let dyg = dyv * UnsafeRawPointer(g + i).loadUnaligned(as: V.self)
                sumDyGv += dyg
                sumDyGXhatv += dyg * xhat
                UnsafeMutableRawPointer(dg + i).storeBytes(of: UnsafeRawPointer(dg + i).loadUnaligned(as: V.self) + dyv * xhat, as: V.self)
                UnsafeMutableRawPointer(db + i).storeBytes(of: UnsafeRawPointer(db + i).loadUnaligned(as: V.self) + dyv, as: V.self)
                i += 8
            }
            var (sumDyG, sumDyGXhat) = (sumDyGv.sum(), sumDyGXhatv.sum())
            while i < C {
                let xhat = (x[i] - m) * s
                let dyg = dy[i] * g[i]
                sumDyG += dyg
                sumDyGXhat += dyg * xhat
                dg[i] += dy[i] * xhat
                db[i] += dy[i]
                i += 1
            }
            let (meanDyG, meanDyGXhat) = (sumDyG / Float(C), sumDyGXhat / Float(C))
            for i in 0..<C {
                let xhat = (x[i] - m) * s
                dx[i] += s * (dy[i] * g[i] - meanDyG - xhat * meanDyGXhat)
            }
        }
    }
}
