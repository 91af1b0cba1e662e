// Group normalisation (Wu & He 2018) over channel-major images.
//
//   B = batch, C = channels, G = groups, Cg = C/G channels per group, N = H·W pixels.
//   Statistics are per (image b, group g), over the Cg·N values of that group:
//   y = (x − μ_bg)·rstd_bg·γ_c + β_c,  rstd = 1/√(σ² + ε).
// Images are (C, B, N): channel c of image b is the run of N floats at (c·B + b)·N.

public struct GroupNorm: Sendable {
    public let channels: Int, groups: Int
    public let epsilon: Float = 1e-5
    let gamma: Int  // offset of γ, (C,)
    let beta: Int  // offset of β, (C,)

    /// `groups` must divide `channels` (checked by the network's config).
    public init(_ layout: inout ParameterLayout, _ name: String, channels: Int, groups: Int) {
        (self.channels, self.groups) = (channels, groups)
        gamma = layout.add(name + ".weight", [channels], .ones)
        beta = layout.add(name + ".bias", [channels], .zeros)
    }

    /// out (C, B, N); mean, rstd (B, G) are kept for the backward pass.
    func forward(_ out: UnsafeMutablePointer<Float>, mean: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>,
                 _ inp: UnsafePointer<Float>, _ params: UnsafePointer<Float>, batch B: Int, spatial N: Int) {
        let (G, Cg) = (groups, channels / groups)
        let (g, bt) = (params + gamma, params + beta)
        let count = Float(Cg * N)
        for b in 0..<B {
            for grp in 0..<G {
                var sum: Float = 0
                for c in grp * Cg..<(grp + 1) * Cg { sum += sumOf(inp + (c * B + b) * N, N) }
                let m = sum / count
                var sq: Float = 0
                for c in grp * Cg..<(grp + 1) * Cg { sq += squaredDeviations(inp + (c * B + b) * N, N, from: m) }
                let s = 1 / (sq / count + epsilon).squareRoot()
                for c in grp * Cg..<(grp + 1) * Cg {
                    let x = inp + (c * B + b) * N, y = out + (c * B + b) * N
                    let scale = s * g[c], shift = bt[c] - m * s * g[c]
                    for i in 0..<N { y[i] = x[i] * scale + shift }  // (x − μ)·rstd·γ + β
                }
                mean[b * G + grp] = m
                rstd[b * G + grp] = s
            }
        }
    }

    /// In the forward pass this was: y = x̂·γ + β with x̂ = (x − μ)·rstd, so
    /// dγ += Σ dy·x̂,  dβ += Σ dy,  dx (+)= rstd·(dy·γ − mean(dy·γ) − x̂·mean(dy·γ·x̂)),
    /// means over the group. `dinp` is overwritten unless `accumulate`; it must not alias `dout`.
    func backward(dinp: UnsafeMutablePointer<Float>, _ grads: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>,
                  inp: UnsafePointer<Float>, mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>,
                  _ params: UnsafePointer<Float>, batch B: Int, spatial N: Int, accumulate: Bool) {
        let (G, Cg) = (groups, channels / groups)
        let g = params + gamma
        let (dg, db) = (grads + gamma, grads + beta)
        let count = Float(Cg * N)
        for b in 0..<B {
            for grp in 0..<G {
                let (m, s) = (mean[b * G + grp], rstd[b * G + grp])
                var sumDyG: Float = 0, sumDyGXhat: Float = 0
                for c in grp * Cg..<(grp + 1) * Cg {
                    let x = inp + (c * B + b) * N, dy = dout + (c * B + b) * N
                    // Σ dy·x̂ = rstd·(Σ dy·x − μ·Σ dy)
                    let (sumDy, sumDyX) = sumAndDot(dy, x, N)
                    let sumDyXhat = s * (sumDyX - m * sumDy)
                    dg[c] += sumDyXhat
                    db[c] += sumDy
                    sumDyG += sumDy * g[c]
                    sumDyGXhat += sumDyXhat * g[c]
                }
                let (meanDyG, meanDyGXhat) = (sumDyG / count, sumDyGXhat / count)
                for c in grp * Cg..<(grp + 1) * Cg {
                    let x = inp + (c * B + b) * N, dy = dout + (c * B + b) * N, dx = dinp + (c * B + b) * N
                    // dx = rstd·(dy·γ − mean(dy·γ) − x̂·mean(dy·γ·x̂)) = a·dy + b·x + c
                    let a = s * g[c], b = -s * s * meanDyGXhat, c0 = s * (s * m * meanDyGXhat - meanDyG)
                    if accumulate {
                        for i in 0..<N { dx[i] += a * dy[i] + b * x[i] + c0 }
                    } else {
                        for i in 0..<N { dx[i] = a * dy[i] + b * x[i] + c0 }
                    }
                }
            }
        }
    }
}
