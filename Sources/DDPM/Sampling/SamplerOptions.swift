// What a reverse process is: the solver, its timesteps, noise and clipping. Validated once,
// when a Sampler is made. How the model predicts (weights, guidance) lives apart, in
// PredictOptions (Model/DiffusionModel+Guidance.swift).

public enum SamplingMethod: Int32, Sendable, CaseIterable {
    /// Ancestral sampling (DDPM Algorithm 2); fewer than T steps is the respaced sampler.
    case ddpm = 0
    /// DDIM (Song et al. 2021) with stochasticity η.
    case ddim = 1
}

/// The variance σ_t² of the DDPM reverse step.
public enum ReverseVariance: Int32, Sendable, CaseIterable {
    /// σ_t² = β_t (the upper bound; best for x_0 ~ N(0, I)).
    case beta = 0
    /// σ_t² = β̃_t (the lower bound; exact for a point mass x_0).
    case posterior = 1
}

public struct SamplerOptions: Sendable, Equatable {
    public var method: SamplingMethod = .ddpm
    /// Number of reverse steps; 0 means T for DDPM and 50 (or T if smaller) for DDIM.
    public var steps: Int = 0
    /// The caller's own timesteps (strictly decreasing, in 0..<T); override `steps`.
    public var timesteps: [Int]? = nil
    /// DDPM: σ_t² = β_t or β̃_t.
    public var variance: ReverseVariance = .beta
    /// DDIM stochasticity: 0 is deterministic, 1 matches DDPM's β̃ variance.
    public var eta: Float = 0
    /// Clip the predicted x̂_0 to this range before it is used (e.g. −1...1 for images).
    public var clipX0: ClosedRange<Float>? = nil
    /// Seeds x_T and every noise draw.
    public var seed: UInt64 = 0
    /// What the model output is (callbacks; a DiffusionModel sets its own).
    public var predictionType: PredictionType = .epsilon
    /// Sharded sampling: this batch is samples sampleOffset..<sampleOffset+batch of a global
    /// batch of `globalBatch` (0 = this batch alone); x_T and every z are then that slice of
    /// the global batch's noise, so the shards together give the one-process samples.
    public var sampleOffset: Int = 0
    public var globalBatch: Int = 0
    public init() {}

    /// Throws `.invalidArgument` unless every option is usable with a schedule of T steps.
    func validate(timestepCount T: Int) throws {
        try require(steps >= 0, "steps must be >= 0 (got \(steps))")
        try require(eta.isFinite && eta >= 0 && eta <= 1, "eta must be in [0, 1] (got \(eta))")
        try require(sampleOffset >= 0 && globalBatch >= 0, "sample offset and global batch must be >= 0")
        if let clipX0 {
            try require(clipX0.lowerBound.isFinite && clipX0.upperBound.isFinite && clipX0.lowerBound < clipX0.upperBound,
                        "clip range [\(clipX0.lowerBound), \(clipX0.upperBound)] is empty or not finite")
        }
        _ = try samplingTimesteps(T)
    }

    /// The timesteps visited, noisiest first; each step goes to the next, the last to x_0.
    public func samplingTimesteps(_ T: Int) throws -> [Int] {
        if let timesteps {
            try require(!timesteps.isEmpty, "timesteps is empty")
            for (i, t) in timesteps.enumerated() {
                try require(t >= 0 && t < T, "timesteps[\(i)] = \(t) is outside 0..<\(T)")
                try require(i == 0 || t < timesteps[i - 1], "timesteps must be strictly decreasing (timesteps[\(i)] = \(t))")
            }
            return timesteps
        }
        let count = steps == 0 ? (method == .ddpm ? T : min(50, T)) : steps
        return try trailingTimesteps(count, of: T)  // with count == T this is T−1, …, 0
    }
}

/// `steps` ≤ T timesteps evenly spaced and ending at T−1 ("trailing"):
/// τ_i = ⌊(S−i)·T/S⌋ − 1 for i = 0..<S; the step after the last goes to x_0.
public func trailingTimesteps(_ steps: Int, of T: Int) throws -> [Int] {
    try require(steps >= 1 && steps <= T, "steps must be in 1...\(T) (got \(steps))")
    return (0..<steps).map { (steps - $0) * T / steps - 1 }
}
