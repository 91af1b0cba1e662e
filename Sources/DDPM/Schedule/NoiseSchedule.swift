// The forward-process noise schedule β_0..β_{T-1} and every table derived from it.
//
// Index convention: t in 0..<T, t = 0 is the first noising step (as in diffusers).
// ᾱ_{-1} = 1 by definition, so the posterior at t = 0 has zero variance.
//
// Tables are computed and kept in Double; kernels convert the few scalars they need.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

public struct NoiseSchedule: Sendable, Equatable {
    /// How β was produced; recorded in checkpoints (see NoiseSchedule+Coding.swift).
    public enum Kind: Sendable, Equatable {
        case linear(betaStart: Double, betaEnd: Double)
        case scaledLinear(betaStart: Double, betaEnd: Double)
        case cosine(offset: Double, maxBeta: Double)
        case sigmoid(betaMin: Double, betaMax: Double, start: Double, end: Double)
        case custom
    }

    public let kind: Kind
    /// β_t, (T,)
    public let betas: [Double]
    /// α_t = 1 − β_t, (T,)
    public let alphas: [Double]
    /// ᾱ_t = ∏_{s≤t} α_s, (T,): q(x_t|x_0) = N(√ᾱ_t x_0, (1−ᾱ_t) I)
    public let alphaBar: [Double]
    /// ᾱ_{t−1}, with ᾱ_{−1} = 1, (T,)
    public let alphaBarPrev: [Double]
    /// √ᾱ_t, (T,): scales x_0 when adding noise
    public let sqrtAlphaBar: [Double]
    /// √(1−ᾱ_t), (T,): scales ε when adding noise
    public let sqrtOneMinusAlphaBar: [Double]
    /// 1/√α_t, (T,): the ε-form of the reverse mean
    public let sqrtRecipAlpha: [Double]
    /// β̃_t = (1−ᾱ_{t−1})/(1−ᾱ_t)·β_t, (T,): posterior variance, 0 at t = 0
    public let posteriorVariance: [Double]
    /// log β̃_t with β̃_0 replaced by β̃_1 (finite), (T,)
    public let posteriorLogVarianceClipped: [Double]
    /// c0_t = √ᾱ_{t−1}·β_t/(1−ᾱ_t), (T,): posterior mean coefficient of x_0
    public let posteriorMeanCoefX0: [Double]
    /// ct_t = √α_t·(1−ᾱ_{t−1})/(1−ᾱ_t), (T,): posterior mean coefficient of x_t
    public let posteriorMeanCoefXt: [Double]

    /// T, the number of diffusion steps.
    public var count: Int { betas.count }

    /// Throws unless 1 ≤ T ≤ `Limits.timesteps`.
    static func checkCount(_ T: Int) throws {
        try require(T >= 1, "a schedule needs T >= 1 steps (got \(T))")
        try require(T <= Limits.timesteps, "a schedule has at most \(Limits.timesteps) steps (got T = \(T); DDPM_MAX_TIMESTEPS)")
    }

    /// Builds the schedule from explicit β values.
    /// - Throws: `.invalidArgument` unless 1 ≤ T ≤ `Limits.timesteps`, every β is finite and
    ///   in (0, 1), β_0 is large enough that 1 − ᾱ_0 > 0 in Double, and ᾱ_{T−1} ≥
    ///   `Limits.minAlphaBar` (1e-30): below it x̂_0 = (x_t − √(1−ᾱ)·ε̂)/√ᾱ and the reverse
    ///   steps lose every digit of x_0, and ᾱ soon underflows to 0 (1/√ᾱ = ∞).
    public init(betas: [Double], kind: Kind = .custom) throws {
        try NoiseSchedule.checkCount(betas.count)
        for (t, b) in betas.enumerated() {
            try require(b.isFinite && b > 0 && b < 1, "beta[\(t)] = \(b) is not in (0, 1)")
        }
        self.kind = kind
        self.betas = betas
        let T = betas.count
        alphas = betas.map { 1 - $0 }
        var bar = [Double](repeating: 1, count: T)
        var running = 1.0
        for t in 0..<T { running *= alphas[t]; bar[t] = running }
        try require(bar[0] < 1, "beta[0] = \(betas[0]) is too small: 1 - alpha_bar[0] rounds to 0 (beta must be >= 2^-53)")
        if bar[T - 1] < Limits.minAlphaBar, let t = bar.firstIndex(where: { $0 < Limits.minAlphaBar }) {
            throw DDPMError.invalidArgument(
                "the schedule underflows: alpha_bar[\(t)] = \(bar[t]) is below \(Limits.minAlphaBar) (DDPM_MIN_ALPHA_BAR), "
                + "where sampling cannot stay finite; use fewer steps or smaller betas (alpha_bar[T-1] = \(bar[T - 1]), T = \(T))")
        }
        alphaBar = bar
        alphaBarPrev = [1] + bar.dropLast()
        sqrtAlphaBar = bar.map { $0.squareRoot() }
        sqrtOneMinusAlphaBar = bar.map { (1 - $0).squareRoot() }
        sqrtRecipAlpha = alphas.map { 1 / $0.squareRoot() }
        var variance = [Double](repeating: 0, count: T)
        var coefX0 = variance, coefXt = variance
        for t in 0..<T {
            let prev = t == 0 ? 1.0 : bar[t - 1]
            variance[t] = (1 - prev) / (1 - bar[t]) * betas[t]
            coefX0[t] = prev.squareRoot() * betas[t] / (1 - bar[t])
            coefXt[t] = alphas[t].squareRoot() * (1 - prev) / (1 - bar[t])
        }
        posteriorVariance = variance
        // β̃_0 = 0; the clipped log uses β̃_1 there (β_0 when T = 1) to stay finite.
        let first = T > 1 ? variance[1] : betas[0]
        posteriorLogVarianceClipped = ([first] + variance.dropFirst()).map { log($0) }
        posteriorMeanCoefX0 = coefX0
        posteriorMeanCoefXt = coefXt
    }

    /// Throws unless 0 ≤ t < T.
    func check(t: Int) throws {
        try require(t >= 0 && t < count, "timestep \(t) is outside 0..<\(count)")
    }
}
