// The reverse process: start from x_T ~ N(0, I) and apply reverse steps down to x_0.
//   DDPM (Algorithm 2): every t from T−1 to 0, or a strided subset (respaced DDPM).
//   DDIM (Song et al.): S ≤ T strided steps with stochasticity η.
// N = number of samples, S = floats per sample.

public enum SamplingMethod: Int32, Sendable, CaseIterable {
    case ddpm = 0
    case ddim = 1
}

public struct SamplerOptions: Sendable, Equatable {
    public var method: SamplingMethod = .ddpm
    /// Number of reverse steps; 0 means T for DDPM and 50 (or T if smaller) for DDIM.
    public var steps: Int = 0
    /// Reverse-step options: DDPM variance, DDIM η, x̂_0 clipping.
    public var step = StepOptions()
    public var seed: UInt64 = 0
    /// Classifier-free guidance scale w (1 = conditional, 0 = unconditional).
    public var guidanceScale: Float = 1
    /// Sample from the EMA weights (default) or the live ones.
    public var useEMA = true
    public init() {}
}

/// Called with x_T before the first step (step 0, t = the first timestep), then after every
/// reverse step (step 1...total, t of the new x, −1 for the final x_0), with x (N, S).
/// Return false to cancel.
public typealias SamplingProgress = (_ step: Int, _ total: Int, _ t: Int, _ x: UnsafePointer<Float>) -> Bool

extension NoiseSchedule {
    /// The timesteps visited, from T−1 (or the largest strided one) down; each step goes to the next, the last to x_0.
    public func samplingTimesteps(_ options: SamplerOptions) throws -> [Int] {
        let steps = options.steps == 0 ? (options.method == .ddpm ? count : min(50, count)) : options.steps
        return try ddimTimesteps(steps)  // with steps == T this is T−1, …, 0
    }

    /// Draws N samples with `predictor`, writing x_0 to `out` (N, S).
    /// - Parameters:
    ///   - labels: (N,) class labels passed through to the predictor, or nil.
    ///   - progress: see `SamplingProgress`; returning false throws `.cancelled`.
    /// - Complexity: one predictor call per step; no allocation inside the loop.
    public func sample(
        into out: UnsafeMutablePointer<Float>, count n: Int, predictor: EpsilonPredictor,
        labels: UnsafePointer<Int32>? = nil, options: SamplerOptions = .init(), progress: SamplingProgress? = nil
    ) throws {
        try require(n >= 1, "number of samples must be >= 1 (got \(n))")
        let S = predictor.sampleSize
        let timesteps = try samplingTimesteps(options)
        let N = n * S
        var rng = Philox(seed: options.seed)
        let eps = Buffer<Float>(count: N), noise = Buffer<Float>(count: N)
        rng.fillNormal(out, count: N)  // x_T ~ N(0, I)
        if let progress, !progress(0, timesteps.count, timesteps[0], out) {
            throw DDPMError.cancelled("sampling cancelled by the progress callback before the first step")
        }
        for (i, t) in timesteps.enumerated() {
            let prevT = i + 1 < timesteps.count ? timesteps[i + 1] : -1
            try predictor.predict(eps.pointer, x: out, t: t, labels: labels, batch: n)
            try requireFinite(eps.pointer, count: N, "the predicted noise at t = \(t)")
            let needsNoise = prevT >= 0 && (options.method == .ddpm || options.step.eta > 0)
            if needsNoise { rng.fillNormal(noise.pointer, count: N) }
            let z = needsNoise ? UnsafePointer(noise.pointer) : nil
            switch options.method {
            case .ddpm:
                try ddpmStep(out, eps: eps.pointer, xt: out, noise: z, t: t, prevT: prevT, count: N, options: options.step)
            case .ddim:
                try ddimStep(out, eps: eps.pointer, xt: out, noise: z, t: t, prevT: prevT, count: N, options: options.step)
            }
            if let progress, !progress(i + 1, timesteps.count, prevT, out) {
                throw DDPMError.cancelled("sampling cancelled by the progress callback after step \(i + 1)")
            }
        }
    }
}

extension DiffusionModel {
    /// Draws N samples from the model (EMA weights by default), with guidance when labels are given.
    /// - Parameters:
    ///   - out: (N, S).  - labels: (N,) in 0...K, or nil.
    public func sample(into out: UnsafeMutablePointer<Float>, count n: Int, labels: UnsafePointer<Int32>? = nil,
                       options: SamplerOptions = .init(), progress: SamplingProgress? = nil) throws {
        try require(n >= 1, "number of samples must be >= 1 (got \(n))")
        try validate(labels: labels, batch: n)
        try require(options.guidanceScale.isFinite, "guidance scale must be finite")
        let predictor = predictor(useEMA: options.useEMA, guidanceScale: options.guidanceScale, batch: n)
        try schedule.sample(into: out, count: n, predictor: predictor, labels: labels, options: options, progress: progress)
    }

    /// Array form of `sample`: returns (N, S) flattened.
    public func sample(count n: Int, labels: [Int32]? = nil, options: SamplerOptions = .init()) throws -> [Float] {
        try require(n >= 1, "number of samples must be >= 1 (got \(n))")
        if let labels { try require(labels.count == n, "labels has \(labels.count) entries, expected \(n)") }
        var out = [Float](repeating: 0, count: n * network.sampleSize)
        try out.withUnsafeMutableBufferPointer { o in
            try withOptionalPointer(labels) { try sample(into: o.baseAddress!, count: n, labels: $0, options: options) }
        }
        return out
    }
}
