// The forward process q(x_t|x_0) and the exact posterior q(x_{t−1}|x_t, x_0).
//
// Shapes: B = batch, D = dims per sample; every x buffer is (B, D), t is (B,).

extension NoiseSchedule {
    /// Closed-form noising: x_t = √ᾱ_t·x_0 + √(1−ᾱ_t)·ε, each sample with its own t.
    /// - Parameters:
    ///   - out: (B, D) receives x_t; may alias `x0` or `noise`.
    ///   - x0: (B, D) clean data.  - noise: (B, D) ε.  - t: (B,) timesteps in 0..<T.
    public func addNoise(
        _ out: UnsafeMutablePointer<Float>, x0: UnsafePointer<Float>, noise: UnsafePointer<Float>,
        t: UnsafePointer<Int32>, batch: Int, dim: Int
    ) throws {
        for b in 0..<batch { try check(t: Int(t[b])) }
        for b in 0..<batch {
            let step = Int(t[b])
            let (a, s) = (Float(sqrtAlphaBar[step]), Float(sqrtOneMinusAlphaBar[step]))
            let row = b * dim
            for i in row..<row + dim { out[i] = a * x0[i] + s * noise[i] }
        }
    }

    /// The Gaussian posterior q(x_{t−1}|x_t, x_0) = N(c0_t·x_0 + ct_t·x_t, β̃_t I).
    /// - Parameters:
    ///   - mean: (B, D) receives the posterior mean.  - variance: (B,) receives β̃_t.
    ///   - x0, xt: (B, D).  - t: (B,) timesteps in 0..<T.
    public func posterior(
        mean: UnsafeMutablePointer<Float>, variance: UnsafeMutablePointer<Float>,
        x0: UnsafePointer<Float>, xt: UnsafePointer<Float>, t: UnsafePointer<Int32>, batch: Int, dim: Int
    ) throws {
        for b in 0..<batch { try check(t: Int(t[b])) }
        for b in 0..<batch {
            let step = Int(t[b])
            let (c0, ct) = (Float(posteriorMeanCoefX0[step]), Float(posteriorMeanCoefXt[step]))
            let row = b * dim
            for i in row..<row + dim { mean[i] = c0 * x0[i] + ct * xt[i] }
            variance[b] = Float(posteriorVariance[step])
        }
    }

    /// Array form of `addNoise` for Swift callers: x0 and noise are (B, D) flattened.
    public func addNoise(x0: [Float], noise: [Float], t: [Int32]) throws -> [Float] {
        try require(!t.isEmpty && x0.count % t.count == 0 && noise.count == x0.count,
                    "x0 (\(x0.count)) and noise (\(noise.count)) must be (B, D) with B = \(t.count)")
        var out = [Float](repeating: 0, count: x0.count)
        try out.withUnsafeMutableBufferPointer { o in
            try addNoise(o.baseAddress!, x0: x0, noise: noise, t: t, batch: t.count, dim: x0.count / t.count)
        }
        return out
    }
}
