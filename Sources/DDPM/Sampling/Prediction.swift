// The one place a model output becomes the pair (x̂_0, ε̂) that every solver uses.
//
//   x_t = √ᾱ_t·x_0 + √(1−ᾱ_t)·ε, so given either of x̂_0, ε̂ the other follows:
//   x̂_0 = (x_t − √(1−ᾱ_t)·ε̂)/√ᾱ_t        ε̂ = (x_t − √ᾱ_t·x̂_0)/√(1−ᾱ_t)
// and v = √ᾱ_t·ε − √(1−ᾱ_t)·x_0 (Salimans & Ho 2022) gives both:
//   x̂_0 = √ᾱ_t·x_t − √(1−ᾱ_t)·v̂            ε̂ = √(1−ᾱ_t)·x_t + √ᾱ_t·v̂
// The score of q(x_t) is s = −ε̂/√(1−ᾱ_t) (Song & Ermon's s_θ, Tweedie).
//
// Then x̂_0 may be clipped to a range or dynamically thresholded, and ε̂ recomputed from
// the result (DDIM's use_clipped_model_output).
//
// B = batch, S = floats per sample, N = B·S; every buffer is (N,).

/// What a prediction may be asked for: a model output of any type, or the score.
public enum PredictOutput: Int32, Sendable, CaseIterable {
    case epsilon = 0, x0 = 1, v = 2
    /// s = ∇_x log q_t(x) = −ε̂/√(1−ᾱ_t).
    case score = 3
    /// σ_t² of the learned reverse variance (models with learned_variance only).
    case variance = 4
}

/// Pointers to (x̂_0, ε̂) for one step: each either the model output itself or a scratch buffer.
public struct Denoised {
    public var x0: UnsafePointer<Float>  // (N,)
    public var eps: UnsafePointer<Float>  // (N,)
    /// The learned variance's v (N,), when the model has one.
    public var variance: UnsafePointer<Float>? = nil
}

/// How x̂_0 is limited before a solver uses it.
struct X0Limit {
    var clip: ClosedRange<Float>?
    /// Dynamic thresholding: the quantile p of |x̂_0| per sample, and the cap of s.
    var thresholdQuantile: Float?
    var thresholdMax: Float = 1
    /// Recompute ε̂ from the limited x̂_0.
    var rederiveEpsilon = false

    var isActive: Bool { clip != nil || thresholdQuantile != nil }
}

/// Scratch for `NoiseSchedule.denoise`, sized once per sampler.
final class DenoiseScratch {
    let x0, eps: Buffer<Float>  // (N,)
    let sorted: Buffer<Float>  // (S,) |x̂_0| of one sample, for the threshold quantile
    init(count: Int, sampleSize: Int) throws {
        x0 = try Buffer(count: count); eps = try Buffer(count: count); sorted = try Buffer(count: sampleSize)
    }
}

/// x clamped to the range (written with comparisons: stdlib's `clamped` does not vectorise).
@inline(__always)
func clamp(_ x: Float, _ r: ClosedRange<Float>) -> Float {
    x < r.lowerBound ? r.lowerBound : (x > r.upperBound ? r.upperBound : x)
}

extension NoiseSchedule {
    /// (x̂_0, ε̂) at timestep t from a model `output` of `type` for x_t `x` (B samples of S).
    func denoise(output: UnsafePointer<Float>, type: PredictionType, x: UnsafePointer<Float>, t: Int, batch: Int,
                 sampleSize: Int, limit: X0Limit, scratch: DenoiseScratch) -> Denoised {
        let count = batch * sampleSize
        let (x0, eps) = (scratch.x0.pointer, scratch.eps.pointer)
        switch type {
        case .epsilon:
            x0FromEpsilon(x0, eps: output, x: x, t: t, count: count)
            guard limit.isActive else { return Denoised(x0: x0, eps: output) }
            limitX0(x0, batch: batch, sampleSize: sampleSize, limit: limit, scratch: scratch)
            guard limit.rederiveEpsilon else { return Denoised(x0: x0, eps: output) }
            epsilonFromX0(eps, x0: x0, x: x, t: t, count: count)
        case .x0:
            guard limit.isActive else {
                epsilonFromX0(eps, x0: output, x: x, t: t, count: count)
                return Denoised(x0: output, eps: eps)
            }
            x0.update(from: output, count: count)
            limitX0(x0, batch: batch, sampleSize: sampleSize, limit: limit, scratch: scratch)
            epsilonFromX0(eps, x0: limit.rederiveEpsilon ? UnsafePointer(x0) : output, x: x, t: t, count: count)
        case .v:
            fromV(x0: x0, eps: eps, v: output, x: x, t: t, count: count)
            guard limit.isActive else { return Denoised(x0: x0, eps: eps) }
            limitX0(x0, batch: batch, sampleSize: sampleSize, limit: limit, scratch: scratch)
            if limit.rederiveEpsilon { epsilonFromX0(eps, x0: x0, x: x, t: t, count: count) }
        }
        return Denoised(x0: x0, eps: eps)
    }

    /// Clips, then thresholds, x̂_0 (B, S) in place.
    func limitX0(_ x0: UnsafeMutablePointer<Float>, batch B: Int, sampleSize S: Int, limit: X0Limit, scratch: DenoiseScratch) {
        if let clip = limit.clip { for i in 0..<B * S { x0[i] = clamp(x0[i], clip) } }
        guard let p = limit.thresholdQuantile else { return }
        let sorted = scratch.sorted.pointer
        for b in 0..<B {
            let row = x0 + b * S
            // s = quantile_p(|x̂_0|) with linear interpolation (torch.quantile), kept in [1, max].
            for i in 0..<S { sorted[i] = abs(row[i]) }
            var buffer = UnsafeMutableBufferPointer(start: sorted, count: S)
            buffer.sort()
            let position = Double(p) * Double(S - 1)
            let lo = Int(position), hi = min(lo + 1, S - 1)
            let q = Double(sorted[lo]) + (position - Double(lo)) * Double(sorted[hi] - sorted[lo])
            let s = Float(min(max(q, 1), Double(limit.thresholdMax)))
            let range = -s...s
            for i in 0..<S { row[i] = clamp(row[i], range) / s }
        }
    }

    /// x̂_0 = (x_t − √(1−ᾱ_t)·ε̂)/√ᾱ_t, (N,); `out` may alias `eps` or `x`.
    func x0FromEpsilon(_ out: UnsafeMutablePointer<Float>, eps: UnsafePointer<Float>, x: UnsafePointer<Float>,
                       t: Int, count: Int) {
        let (recip, s) = (Float(1 / sqrtAlphaBar[t]), Float(sqrtOneMinusAlphaBar[t]))
        for i in 0..<count { out[i] = (x[i] - s * eps[i]) * recip }
    }

    /// ε̂ = (x_t − √ᾱ_t·x̂_0)/√(1−ᾱ_t), (N,); `out` may alias `x0` or `x`.
    func epsilonFromX0(_ out: UnsafeMutablePointer<Float>, x0: UnsafePointer<Float>, x: UnsafePointer<Float>,
                       t: Int, count: Int) {
        let (a, s) = (Float(sqrtAlphaBar[t]), Float(sqrtOneMinusAlphaBar[t]))
        for i in 0..<count { out[i] = (x[i] - a * x0[i]) / s }
    }

    /// x̂_0 = √ᾱ_t·x_t − √(1−ᾱ_t)·v̂ and ε̂ = √(1−ᾱ_t)·x_t + √ᾱ_t·v̂, (N,) each.
    func fromV(x0: UnsafeMutablePointer<Float>, eps: UnsafeMutablePointer<Float>, v: UnsafePointer<Float>,
               x: UnsafePointer<Float>, t: Int, count: Int) {
        let (a, s) = (Float(sqrtAlphaBar[t]), Float(sqrtOneMinusAlphaBar[t]))
        for i in 0..<count {
            let (xi, vi) = (x[i], v[i])
            x0[i] = a * xi - s * vi
            eps[i] = s * xi + a * vi
        }
    }

    /// v = √ᾱ_t·ε − √(1−ᾱ_t)·x_0, (N,); `out` may alias either input.
    func velocity(_ out: UnsafeMutablePointer<Float>, eps: UnsafePointer<Float>, x0: UnsafePointer<Float>, t: Int, count: Int) {
        let (a, s) = (Float(sqrtAlphaBar[t]), Float(sqrtOneMinusAlphaBar[t]))
        for i in 0..<count { out[i] = a * eps[i] - s * x0[i] }
    }

    /// Converts a model output of type `from` at x_t (N,) into `to`; `out` may alias `output`.
    public func convert(_ out: UnsafeMutablePointer<Float>, output: UnsafePointer<Float>, from: PredictionType,
                        to: PredictOutput, x: UnsafePointer<Float>, t: Int, count: Int) throws {
        try check(t: t)
        if from.rawValue == to.rawValue { out.update(from: output, count: count); return }
        // Through (x̂_0, ε̂), element by element (so that out may alias output).
        let (a, s) = (Double(sqrtAlphaBar[t]), Double(sqrtOneMinusAlphaBar[t]))
        for i in 0..<count {
            let (xi, o) = (Double(x[i]), Double(output[i]))
            let (x0, e): (Double, Double)
            switch from {
            case .epsilon: (x0, e) = ((xi - s * o) / a, o)
            case .x0: (x0, e) = (o, (xi - a * o) / s)
            case .v: (x0, e) = (a * xi - s * o, s * xi + a * o)
            }
            switch to {
            case .epsilon: out[i] = Float(e)
            case .x0: out[i] = Float(x0)
            case .v: out[i] = Float(a * e - s * x0)
            case .score: out[i] = Float(-e / s)
            case .variance: throw DDPMError.invalidArgument("the variance is no conversion of a model output")
            }
        }
    }
}
