// The variational bound on −log p_θ(x_0) (Ho et al. eq. 5; Nichol & Dhariwal §2), term by term:
//
//   L = L_T + Σ_{t=1}^{T−1} L_{t−1} + L_0      (paper indices; here t = 0..T−1 as everywhere)
//   L_T     = KL(q(x_T|x_0) ‖ N(0, I)),  q(x_T|x_0) = N(√ᾱ x_0, (1−ᾱ) I) at the last timestep
//   L_{t−1} = KL(q(x_{t−1}|x_t, x_0) ‖ p_θ(x_{t−1}|x_t))  for our t = 1..T−1, with x_t ~ q(x_t|x_0):
//             q = N(μ̃ = c0_t·x_0 + ct_t·x_t, β̃_t),  p_θ = N(μ_θ = c0_t·x̂_0 + ct_t·x_t, σ_t²),
//             per dimension ½(log σ_t² − log β̃_t + β̃_t/σ_t² − 1 + (μ̃ − μ_θ)²/σ_t²)
//   L_0     = −log p_θ(x_0|x_1) at our t = 0, with μ_θ = x̂_0 and σ_0² = β̃_1 for both fixed
//             variances (β̃_0 = 0 cannot be used). This follows Ho et al.'s and Nichol & Dhariwal's
//             code, whose "fixedlarge" variance is np.append(posterior_variance[1], betas[1:]) and
//             "fixedsmall" the clipped log of β̃, so our bits/dim compare with published ones
//             (σ_0² = β_0 instead moves L_0 by up to 1.3 nats/dim per sample).
//             A learned variance keeps frac·log β_0 + (1 − frac)·log β̃_1 there, as
//             improved-diffusion's learned_range. A Gaussian density for
//             vector data (the total is then in nats per dimension), or for image data in [−1, 1]
//             on 2^bits levels the discretized Gaussian (the mass of the bin around x_0, the
//             outermost bins open to ±∞; the total is then in bits per dimension).
// x̂_0 comes from the model output through Prediction.swift (no clipping). σ_t² = β_t, β̃_t, or
// the model's learned log σ_t² = frac·log β_t + (1 − frac)·log β̃_t (clipped log), frac = (v+1)/2.
//
// B = batch, S = floats per sample, T = timesteps. Sums run in Double.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How x_0 is scored by the last term.
public enum DataDecoder: Equatable, Sendable {
    /// A Gaussian density: the bound is on the continuous NLL, in nats per dimension.
    case continuous
    /// Data on 2^bits levels in [−1, 1]: the bound is on the discrete NLL, in bits per dimension.
    case discretized(bits: Int)
}

public struct VLBOptions: Sendable, Equatable {
    /// σ_t² of p_θ: β_t, β̃_t, or the model's learned variance.
    public var variance: ReverseVariance = .beta
    public var decoder: DataDecoder = .continuous
    /// Seeds the x_t ~ q(x_t|x_0) of every term.
    public var seed: UInt64 = 0
    public init() {}

    func validate() throws {
        if case .discretized(let bits) = decoder {
            try require(bits >= 1 && bits <= 16, "bits must be in 1...16 (got \(bits))")
        }
    }
}

/// The bound for a batch, per sample; nats/dim for `.continuous`, bits/dim for `.discretized`.
public struct VLBResult: Sendable {
    /// (B,) the whole bound.
    public var total: [Double]
    /// (B,) L_T.
    public var prior: [Double]
    /// (B, T) row-major: terms[b·T + t] is L_0 at t = 0 and L_{t−1} at t ≥ 1.
    public var terms: [Double]
    /// "bits/dim" or "nats/dim".
    public var unit: String
}

extension NoiseSchedule {
    /// The variational bound of x_0 (B, S) under a denoiser (one evaluation per timestep).
    /// - Parameter cond: the condition of each row, passed through to the denoiser.
    public func variationalBound(x0: UnsafePointer<Float>, batch B: Int, denoiser: Denoiser,
                                 cond: ConditionBatch = .none, options: VLBOptions = .init()) throws -> VLBResult {
        try options.validate()
        try require(B >= 1, "batch must be >= 1 (got \(B))")
        let S = denoiser.sampleSize, T = count
        let (N, overflow) = B.multipliedReportingOverflow(by: S)
        try require(!overflow, "\(B) samples of \(S) floats overflow")
        try requireFinite(x0, count: N, "x0")
        if case .discretized = options.decoder {
            for i in 0..<N where x0[i] < -1 || x0[i] > 1 {
                throw DDPMError.invalidArgument("x0[\(i)] = \(x0[i]) is outside [-1, 1], which a discretized decoder needs")
            }
        }
        var rng = Philox(seed: options.seed)
        let eps = try Buffer<Float>(count: N), xt = try Buffer<Float>(count: N), output = try Buffer<Float>(count: N)
        let scratch = try DenoiseScratch(count: N, sampleSize: S)
        var terms = [Double](repeating: 0, count: B * T)
        let ts = try Buffer<Int32>(count: B, zero: 0)
        for t in stride(from: T - 1, through: 0, by: -1) {
            // x_t ~ q(x_t|x_0), the model output there, and (x̂_0, ε̂).
            rng.fillNormal(eps.pointer, count: N)
            ts.fill(Int32(t))
            try addNoise(xt.pointer, x0: x0, noise: eps.pointer, t: ts.pointer, batch: B, dim: S)
            try denoiser.predict(output.pointer, x: xt.pointer, t: t, cond: cond, batch: B)
            try requireFinite(output.pointer, count: N, "the model output at t = \(t)")
            let x0Hat = denoise(output: output.pointer, type: denoiser.predictionType, x: xt.pointer, t: t, batch: B,
                                sampleSize: S, limit: X0Limit(), scratch: scratch).x0
            let v = denoiser.lastVariance
            try require(options.variance != .learned || v != nil, "variance 'learned' needs a model that learns its variance")
            let learned = options.variance == .learned ? v : nil
            for b in 0..<B {
                let row = b * S
                let vRow = learned.map { $0 + row }
                terms[b * T + t] = t == 0
                    ? decoderNLL(x0 + row, mean: x0Hat + row, count: S, options: options, learned: vRow)
                    : posteriorKL(x0 + row, x0Hat: x0Hat + row, t: t, count: S, variance: options.variance, learned: vRow)
            }
        }
        let prior = (0..<B).map { priorKL(x0 + $0 * S, count: S) }
        let scale: Double
        if case .discretized = options.decoder { scale = 1 / log(2.0) } else { scale = 1 }
        let total = (0..<B).map { b in (prior[b] + terms[b * T..<(b + 1) * T].reduce(0, +)) * scale }
        return VLBResult(total: total, prior: prior.map { $0 * scale }, terms: terms.map { $0 * scale },
                         unit: scale == 1 ? "nats/dim" : "bits/dim")
    }

    /// L_T per dimension: KL(N(√ᾱ x_0, 1−ᾱ) ‖ N(0, 1)) at t = T−1, averaged over the S dims.
    func priorKL(_ x0: UnsafePointer<Float>, count S: Int) -> Double {
        let a = alphaBar[count - 1]
        var total = 0.0
        for i in 0..<S {
            let m2 = a * Double(x0[i]) * Double(x0[i])
            total += 0.5 * (-log(1 - a) + (1 - a) + m2 - 1)
        }
        return total / Double(S)
    }

    /// log σ_t² of p_θ for one element: fixed (β_t, or β̃_t; both β̃_1 at t = 0, see the file
    /// header), or learned from v.
    func reverseLogVariance(_ t: Int, _ variance: ReverseVariance, learned v: Float?) -> Double {
        if let v {
            let frac = (Double(v) + 1) / 2
            return frac * log(betas[t]) + (1 - frac) * posteriorLogVarianceClipped[t]
        }
        return variance == .beta && t > 0 ? log(betas[t]) : posteriorLogVarianceClipped[t]
    }

    /// L_{t−1} per dimension (t ≥ 1), averaged over the S dims; μ̃ − μ_θ = c0_t·(x_0 − x̂_0)
    /// (the x_t parts cancel).
    func posteriorKL(_ x0: UnsafePointer<Float>, x0Hat: UnsafePointer<Float>, t: Int, count S: Int,
                     variance: ReverseVariance, learned v: UnsafePointer<Float>?) -> Double {
        let logQ = log(posteriorVariance[t])
        let c0 = posteriorMeanCoefX0[t]
        var total = 0.0
        for i in 0..<S {
            let logP = reverseLogVariance(t, variance, learned: v?[i])
            let d = c0 * (Double(x0[i]) - Double(x0Hat[i]))
            total += 0.5 * (logP - logQ + exp(logQ - logP) - 1 + d * d * exp(-logP))
        }
        return total / Double(S)
    }

    /// L_0 = −log p_θ(x_0|x_1) per dimension, averaged over the S dims.
    func decoderNLL(_ x0: UnsafePointer<Float>, mean: UnsafePointer<Float>, count S: Int, options: VLBOptions,
                    learned v: UnsafePointer<Float>?) -> Double {
        var total = 0.0
        for i in 0..<S {
            let variance = exp(reverseLogVariance(0, options.variance, learned: v?[i]))
            let sigma = variance.squareRoot()
            let (x, m) = (Double(x0[i]), Double(mean[i]))
            switch options.decoder {
            case .continuous:
                let z = (x - m) / sigma
                total += 0.5 * log(2 * Double.pi * variance) + 0.5 * z * z
            case .discretized(let bits):
                let half = 1 / Double((1 << bits) - 1)  // half a bin: the levels are 2/(2^bits − 1) apart
                let (zPlus, zMinus) = ((x + half - m) / sigma, (x - half - m) / sigma)
                let mass: Double
                if x > 1 - half / 2 {
                    mass = 0.5 * erfc(zMinus / 2.0.squareRoot())  // top bin: 1 − Φ(z−)
                } else if x < -1 + half / 2 {
                    mass = normalCDF(zPlus)  // bottom bin: Φ(z+)
                } else {
                    mass = normalCDF(zPlus) - normalCDF(zMinus)
                }
                total += -log(max(mass, 1e-300))
            }
        }
        return total / Double(S)
    }
}

/// Φ(z), the standard normal CDF.
func normalCDF(_ z: Double) -> Double { 0.5 * erfc(-z / 2.0.squareRoot()) }
