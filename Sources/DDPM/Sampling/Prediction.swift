// The one place a model output becomes the pair (x̂_0, ε̂) that every solver uses.
//
//   x_t = √ᾱ_t·x_0 + √(1−ᾱ_t)·ε, so given either of x̂_0, ε̂ the other follows:
//   x̂_0 = (x_t − √(1−ᾱ_t)·ε̂)/√ᾱ_t        ε̂ = (x_t − √ᾱ_t·x̂_0)/√(1−ᾱ_t)
//
// N = number of floats in x (batch × dims); every buffer is (N,).

/// What a network (or a caller's model) outputs.
public enum PredictionType: Int32, Sendable, CaseIterable {
    /// ε̂, the noise that was added.
    case epsilon = 0
    /// x̂_0, the clean sample.
    case x0 = 1
}

/// Pointers to (x̂_0, ε̂) for one step: each either the model output itself or a scratch buffer.
public struct Denoised {
    public var x0: UnsafePointer<Float>  // (N,)
    public var eps: UnsafePointer<Float>  // (N,)
}

/// Scratch for `NoiseSchedule.denoise`, sized once per sampler.
final class DenoiseScratch {
    let x0, eps: Buffer<Float>  // (N,)
    init(count: Int) throws { x0 = try Buffer(count: count); eps = try Buffer(count: count) }
}

/// x clamped to the range (written with comparisons: stdlib's `clamped` does not vectorise).
@inline(__always)
func clamp(_ x: Float, _ r: ClosedRange<Float>) -> Float {
    x < r.lowerBound ? r.lowerBound : (x > r.upperBound ? r.upperBound : x)
}

extension NoiseSchedule {
    /// (x̂_0, ε̂) at timestep t from a model `output` of `type` for x_t `x`.
    /// With `clip`, x̂_0 is clamped to the range and, when `rederiveEpsilon`, ε̂ is then
    /// recomputed from the clipped x̂_0 (so that the pair stays consistent with x_t).
    func denoise(output: UnsafePointer<Float>, type: PredictionType, x: UnsafePointer<Float>, t: Int, count: Int,
                 clip: ClosedRange<Float>?, rederiveEpsilon: Bool, scratch: DenoiseScratch) -> Denoised {
        let (x0, eps) = (scratch.x0.pointer, scratch.eps.pointer)
        switch type {
        case .epsilon:
            x0FromEpsilon(x0, eps: output, x: x, t: t, count: count)
            if let clip { for i in 0..<count { x0[i] = clamp(x0[i], clip) } }
            guard clip != nil && rederiveEpsilon else { return Denoised(x0: x0, eps: output) }
            epsilonFromX0(eps, x0: x0, x: x, t: t, count: count)
        case .x0:
            guard let clip else {
                epsilonFromX0(eps, x0: output, x: x, t: t, count: count)
                return Denoised(x0: output, eps: eps)
            }
            for i in 0..<count { x0[i] = clamp(output[i], clip) }
            epsilonFromX0(eps, x0: rederiveEpsilon ? UnsafePointer(x0) : output, x: x, t: t, count: count)
        }
        return Denoised(x0: x0, eps: eps)
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

    /// Converts a model output of type `from` at x_t into `to` (a copy when they agree).
    public func convert(_ out: UnsafeMutablePointer<Float>, output: UnsafePointer<Float>, from: PredictionType,
                        to: PredictionType, x: UnsafePointer<Float>, t: Int, count: Int) throws {
        try check(t: t)
        switch (from, to) {
        case (.epsilon, .epsilon), (.x0, .x0): out.update(from: output, count: count)
        case (.epsilon, .x0): x0FromEpsilon(out, eps: output, x: x, t: t, count: count)
        case (.x0, .epsilon): epsilonFromX0(out, x0: output, x: x, t: t, count: count)
        }
    }
}
