// One reverse step x_t -> x_{t−1} given the network's ε̂ (a scheduler's `step`).
//
// Shapes: N = number of floats in x (batch × dims); every buffer is (N,).

/// The variance σ_t² of the DDPM reverse step.
public enum ReverseVariance: Int32, Sendable, CaseIterable {
    /// σ_t² = β_t (the upper bound; best for x_0 ~ N(0, I)).
    case beta = 0
    /// σ_t² = β̃_t (the lower bound; exact for a point mass x_0).
    case posterior = 1
}

/// Options shared by the reverse steps.
public struct StepOptions: Sendable, Equatable {
    public var variance: ReverseVariance = .beta
    /// DDIM stochasticity: 0 is deterministic, 1 matches DDPM's β̃ variance.
    public var eta: Float = 0
    /// Clip the predicted x̂_0 to this range before forming the mean (e.g. −1...1 for images).
    public var clipX0: ClosedRange<Float>? = nil
    public init(variance: ReverseVariance = .beta, eta: Float = 0, clipX0: ClosedRange<Float>? = nil) {
        self.variance = variance
        self.eta = eta
        self.clipX0 = clipX0
    }
}

/// x clamped to the range (written with comparisons: stdlib's `clamped` does not vectorise).
@inline(__always)
func clamp(_ x: Float, _ r: ClosedRange<Float>) -> Float {
    x < r.lowerBound ? r.lowerBound : (x > r.upperBound ? r.upperBound : x)
}

extension NoiseSchedule {
    /// DDPM ancestral step (Algorithm 2) from t to `prevT` (default t − 1; −1 means to x_0).
    /// With α' = ᾱ_t/ᾱ_prev and β' = 1 − α' (α_t and β_t when prevT = t − 1):
    ///   x_prev = 1/√α'·(x_t − β'/√(1−ᾱ_t)·ε̂) + σ·z,  σ² = β' or β̃' = (1−ᾱ_prev)/(1−ᾱ_t)·β',
    /// and no noise on the last step (prevT = −1). With clipping the mean is formed as
    /// c0·clip(x̂_0) + ct·x_t, c0 = √ᾱ_prev·β'/(1−ᾱ_t), ct = √α'·(1−ᾱ_prev)/(1−ᾱ_t) (equal unclipped).
    /// A strided prevT < t − 1 gives the respaced DDPM sampler of Nichol & Dhariwal.
    /// - Parameters:
    ///   - out: (N,) x_prev; may alias `xt`.  - eps, xt: (N,).
    ///   - noise: (N,) z ~ N(0, I); unused (may be nil) on the last step.
    public func ddpmStep(
        _ out: UnsafeMutablePointer<Float>, eps: UnsafePointer<Float>, xt: UnsafePointer<Float>,
        noise: UnsafePointer<Float>?, t: Int, prevT: Int? = nil, count: Int, options: StepOptions = .init()
    ) throws {
        try check(t: t)
        let prevT = prevT ?? t - 1
        try require(prevT >= -1 && prevT < t, "DDPM needs -1 <= prevT < t (got t = \(t), prevT = \(prevT))")
        try require(prevT == -1 || noise != nil, "the DDPM step at t = \(t) needs noise")
        let a = alphaBar[t], aPrev = prevT >= 0 ? alphaBar[prevT] : 1
        let alpha = a / aPrev, beta = 1 - alpha
        let variance = options.variance == .beta ? beta : (1 - aPrev) / (1 - a) * beta
        let sigma = prevT == -1 ? 0 : Float(variance.squareRoot())
        if let clip = options.clipX0 {
            // One pass, reading x_t[i] before writing out[i] (they may alias).
            let c0 = Float(aPrev.squareRoot() * beta / (1 - a)), ct = Float(alpha.squareRoot() * (1 - aPrev) / (1 - a))
            let (recip, s) = (Float(1 / sqrtAlphaBar[t]), Float(sqrtOneMinusAlphaBar[t]))
            for i in 0..<count {
                let x = xt[i]
                let x0 = clamp((x - s * eps[i]) * recip, clip)
                out[i] = c0 * x0 + ct * x
            }
        } else {
            let (r, k) = (Float(1 / alpha.squareRoot()), Float(beta / (1 - a).squareRoot()))
            for i in 0..<count { out[i] = r * (xt[i] - k * eps[i]) }
        }
        if sigma > 0, let noise { for i in 0..<count { out[i] += sigma * noise[i] } }
    }

    /// DDIM step (Song et al. 2021, eq. 12) from t to `prevT` (−1 means to x_0, ᾱ = 1):
    /// x_prev = √ᾱ_prev·x̂_0 + √(1−ᾱ_prev−σ²)·ε̂ + σ·z,
    /// σ = η·√((1−ᾱ_prev)/(1−ᾱ_t))·√(1−ᾱ_t/ᾱ_prev).
    /// - Parameters:
    ///   - out: (N,); may alias `xt`.  - noise: (N,); unused (may be nil) when σ = 0.
    public func ddimStep(
        _ out: UnsafeMutablePointer<Float>, eps: UnsafePointer<Float>, xt: UnsafePointer<Float>,
        noise: UnsafePointer<Float>?, t: Int, prevT: Int, count: Int, options: StepOptions = .init()
    ) throws {
        try check(t: t)
        try require(prevT >= -1 && prevT < t, "DDIM needs -1 <= prevT < t (got t = \(t), prevT = \(prevT))")
        try require(options.eta >= 0 && options.eta <= 1 && options.eta.isFinite, "eta must be in [0, 1] (got \(options.eta))")
        let a = alphaBar[t], aPrev = prevT >= 0 ? alphaBar[prevT] : 1
        let sigma2 = Double(options.eta * options.eta) * (1 - aPrev) / (1 - a) * (1 - a / aPrev)
        try require(sigma2 == 0 || noise != nil, "the DDIM step with eta > 0 needs noise")
        let (sqrtPrev, dirCoef, sigma) = (Float(aPrev.squareRoot()), Float(max(1 - aPrev - sigma2, 0).squareRoot()),
                                          Float(sigma2.squareRoot()))
        // Keep ε̂ and x_t readable while `out` (which may alias x_t) takes x̂_0 then x_prev.
        let (recip, s) = (Float(1 / sqrtAlphaBar[t]), Float(sqrtOneMinusAlphaBar[t]))
        let clip = options.clipX0
        for i in 0..<count {
            var x0 = (xt[i] - s * eps[i]) * recip
            var e = eps[i]
            if let clip {
                x0 = clamp(x0, clip)
                e = (xt[i] - Float(sqrtAlphaBar[t]) * x0) / s  // ε consistent with the clipped x̂_0
            }
            var v = sqrtPrev * x0 + dirCoef * e
            if sigma > 0, let noise { v += sigma * noise[i] }
            out[i] = v
        }
    }

    /// The DDIM timesteps for `steps` ≤ T, evenly spaced and ending at T−1 ("trailing"):
    /// τ_i = ⌊(S−i)·T/S⌋ − 1 for i = 0..<S; the step after the last goes to x_0.
    public func ddimTimesteps(_ steps: Int) throws -> [Int] {
        try require(steps >= 1 && steps <= count, "DDIM steps must be in 1...\(count) (got \(steps))")
        return (0..<steps).map { (steps - $0) * count / steps - 1 }
    }
}
