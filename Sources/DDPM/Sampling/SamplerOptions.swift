// What a reverse process is: the solver, its timesteps, noise, clipping and corrector.
// Validated once, when a Sampler is made. How the model predicts (weights, guidance)
// lives apart, in PredictOptions (Model/DiffusionModel+Guidance.swift).

public enum SamplingMethod: Int32, Sendable, CaseIterable {
    /// Ancestral sampling (DDPM Algorithm 2); fewer than T steps is the respaced sampler.
    case ddpm = 0
    /// DDIM (Song et al. 2021) with stochasticity η.
    case ddim = 1
    /// DPM-Solver++ (Lu et al. 2022), multistep in data-prediction form, order 1–3.
    case dpmSolverPP = 2
    /// SDE-DPM-Solver++ (the stochastic variant), order 1–2.
    case sdeDPMSolverPP = 3
    /// Annealed Langevin dynamics with the score (Song & Ermon 2019): K steps at each level.
    case langevin = 4
    /// Predictor–corrector (Song et al. 2021): at each timestep K Langevin corrector steps, then a DDPM step.
    case predictorCorrector = 5
}

/// The variance σ_t² of the DDPM reverse step.
public enum ReverseVariance: Int32, Sendable, CaseIterable {
    /// σ_t² = β_t (the upper bound; best for x_0 ~ N(0, I)).
    case beta = 0
    /// σ_t² = β̃_t (the lower bound; exact for a point mass x_0).
    case posterior = 1
    /// The model's own: log σ_t² = frac·log β_t + (1 − frac)·log β̃_t, frac = (v + 1)/2 from its
    /// variance output (Nichol & Dhariwal; between the respaced β' and β̃' for fewer steps).
    case learned = 2
}

public struct SamplerOptions: Sendable, Equatable {
    public var method: SamplingMethod = .ddpm
    /// Number of timesteps; 0 means T for DDPM and PC, min(50, T) for the others.
    public var steps: Int = 0
    /// How the timesteps are spread (Timesteps.swift).
    public var spacing: TimestepSpacing = .default
    /// Added to every timestep of the leading spacing (diffusers' steps_offset).
    public var stepsOffset: Int = 0
    /// The caller's own timesteps (strictly decreasing, in 0..<T); override steps and spacing.
    public var timesteps: [Int]? = nil
    /// DDPM and PC predictor: σ_t² = β_t or β̃_t.
    public var variance: ReverseVariance = .beta
    /// DDIM stochasticity: 0 is deterministic, 1 matches DDPM's β̃ variance.
    public var eta: Float = 0
    /// Clip the predicted x̂_0 to this range before it is used (e.g. −1...1 for images).
    public var clipX0: ClosedRange<Float>? = nil
    /// Dynamic thresholding (Imagen): per sample, s = max(1, quantile_p(|x̂_0|)) capped at
    /// `thresholdMax`, then x̂_0 ← clip(x̂_0, −s, s)/s. nil = off; p in (0, 1].
    public var thresholdQuantile: Float? = nil
    public var thresholdMax: Float = 1
    /// DDIM: recompute ε̂ from the clipped/thresholded x̂_0 (diffusers' use_clipped_model_output;
    /// default false, as in diffusers).
    public var useClippedModelOutput = false
    /// DPM-Solver++ order (1, 2 or 3; 2 for the SDE variant at most).
    public var solverOrder = 2
    /// DPM-Solver++: first order on the last step and at most second order on the one before
    /// when there are fewer than 15 steps (diffusers' lower_order_final).
    public var lowerOrderFinal = true
    /// DDIM and DPM-Solver++: the step after the last timestep goes to x_0 (ᾱ = 1; true) or to
    /// ᾱ_0, the level of the first timestep (false): diffusers' DDIM set_alpha_to_one and
    /// DPMSolverMultistepScheduler's final_sigmas_type "zero" (true) or "sigma_min" (false).
    /// With false, DPM-Solver++ takes that step at its full order unless lowerOrderFinal and
    /// fewer than 15 steps (diffusers' rule), and a stochastic solver adds noise on it.
    public var setAlphaToOne = true
    /// Langevin steps per level (annealed Langevin) or corrector steps per step (PC).
    public var correctorSteps = 1
    /// PC corrector: the signal-to-noise ratio r of the step size 2α_t(r‖z‖/‖s‖)² (Song et al.).
    public var snr: Float = 0.16
    /// Annealed Langevin: ε of the step size δ_t = ε·(1−ᾱ_t)/(1−ᾱ_last) (Song & Ermon).
    public var langevinStepSize: Float = 2e-5
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

    /// Throws `.invalidArgument` unless every option is usable with `schedule`.
    func validate(for schedule: NoiseSchedule) throws {
        try require(steps >= 0, "steps must be >= 0 (got \(steps))")
        try require(eta.isFinite && eta >= 0 && eta <= 1, "eta must be in [0, 1] (got \(eta))")
        try require(sampleOffset >= 0 && globalBatch >= 0, "sample offset and global batch must be >= 0")
        if let clipX0 {
            try require(clipX0.lowerBound.isFinite && clipX0.upperBound.isFinite && clipX0.lowerBound < clipX0.upperBound,
                        "clip range [\(clipX0.lowerBound), \(clipX0.upperBound)] is empty or not finite")
        }
        if let q = thresholdQuantile {
            try require(q > 0 && q <= 1, "threshold quantile must be in (0, 1] (got \(q))")
            try require(thresholdMax.isFinite && thresholdMax >= 1, "threshold max must be >= 1 (got \(thresholdMax))")
        }
        let maxOrder = method == .sdeDPMSolverPP ? 2 : 3
        try require(solverOrder >= 1 && solverOrder <= maxOrder, "solver order must be in 1...\(maxOrder) (got \(solverOrder))")
        try require(setAlphaToOne || [.ddim, .dpmSolverPP, .sdeDPMSolverPP].contains(method),
                    "set_alpha_to_one = false applies to DDIM and DPM-Solver++ only (method \(method))")
        try require(correctorSteps >= 1 && correctorSteps <= 10_000, "corrector steps must be in 1...10000 (got \(correctorSteps))")
        try require(snr.isFinite && snr > 0, "snr must be > 0 (got \(snr))")
        try require(langevinStepSize.isFinite && langevinStepSize > 0, "Langevin step size must be > 0 (got \(langevinStepSize))")
        _ = try samplingTimesteps(schedule)
    }

    /// The timesteps visited, noisiest first; each step goes to the next, the last to x_0.
    public func samplingTimesteps(_ schedule: NoiseSchedule) throws -> [Int] {
        let T = schedule.count
        if let timesteps {
            try require(!timesteps.isEmpty, "timesteps is empty")
            for (i, t) in timesteps.enumerated() {
                try require(t >= 0 && t < T, "timesteps[\(i)] = \(t) is outside 0..<\(T)")
                try require(i == 0 || t < timesteps[i - 1], "timesteps must be strictly decreasing (timesteps[\(i)] = \(t))")
            }
            return timesteps
        }
        let full = method == .ddpm || method == .predictorCorrector
        let count = steps == 0 ? (full ? T : min(50, T)) : steps
        return try schedule.timesteps(count, spacing: spacing, stepsOffset: stepsOffset)
    }
}
