// One reverse process for a batch: the solver and its plan of model evaluations, the noise
// stream, and the loop that drives a Denoiser through the plan. Also steppable from outside
// (a diffusers-style scheduler): `initNoise`, then `step` with each model output at
// `timestep`, until `timestep` is −1.
//
//   Plan (SamplingPlan.swift): one entry per model evaluation at x (B, S) and timestep t,
//   whose (x̂_0, ε̂) feed one update of the solver (Solver.swift); the solver says which.
//   The sampler knows no solver by name: every step is the same three sub-steps.
//
//   B = batch, S = floats per sample, N = B·S; every buffer is (N,).
//
// Random numbers: one Philox stream from `options.seed`. x_T takes its first ⌈N/4⌉
// counters, then z is drawn for every update that adds noise, so the samples of a seed do
// not depend on who drives the steps. A shard (options.sampleOffset, options.globalBatch)
// draws its slice of the global batch's stream, so shards reproduce one process bitwise
// (N then counts the global batch). Every noise draw goes through `drawNoise`.

/// Called with x_T before the first step (step 0, t = the first timestep), then after every
/// step (step 1...total, t of the new x, −1 for the final x_0), with x (N, S).
/// Return false to cancel.
public typealias SamplingProgress = (_ step: Int, _ total: Int, _ t: Int, _ x: UnsafePointer<Float>) -> Bool

public final class Sampler {
    public let schedule: NoiseSchedule
    public let options: SamplerOptions
    /// The timesteps (noise levels) visited, noisiest first.
    public let timesteps: [Int]
    /// Every model evaluation in order.
    public let plan: [Step]
    public let batch: Int, sampleSize: Int
    /// Steps taken so far.
    public private(set) var stepsTaken = 0
    var solver: any Solver
    let limit: X0Limit
    var rng: Philox  // the noise z of the steps; starts after the draws of x_T
    let noiseBlocks: UInt64  // counters one draw of the global batch's noise takes: ⌈N_global/4⌉
    let noise: Buffer<Float>  // (N,) z of the current step
    let modelOutput: Buffer<Float>  // (N,) for `run`
    let scratch: DenoiseScratch  // (N,) x̂_0 and ε̂

    /// - Throws: `.invalidArgument` on bad options or sizes (the buffers and the plan are
    ///   bounded by DDPM_MAX_MODEL_BYTES before anything is allocated).
    public init(schedule: NoiseSchedule, options: SamplerOptions, batch: Int, sampleSize: Int) throws {
        try options.validate(for: schedule)
        try require(batch >= 1, "number of samples must be >= 1 (got \(batch))")
        try require(sampleSize >= 1, "sample size must be >= 1 (got \(sampleSize))")
        let (N, overflow) = batch.multipliedReportingOverflow(by: sampleSize)
        try require(!overflow, "\(batch) samples of \(sampleSize) floats overflow")
        let heldFloats = Double(Sampler.floatsPerSampleFloat) * Double(N)
        try Limits.requireFloats(heldFloats, "a sampler for \(batch) samples of \(sampleSize) floats")
        self.schedule = schedule
        self.options = options
        let timesteps = try options.samplingTimesteps(schedule)
        self.timesteps = timesteps
        (self.batch, self.sampleSize) = (batch, sampleSize)
        solver = try options.makeSolver(schedule, timesteps: timesteps, batch: batch, sampleSize: sampleSize)
        plan = try Self.plan(timesteps, updates: solver.updatesPerTimestep, heldFloats: heldFloats,
                             "a sampler for \(batch) samples of \(sampleSize) floats")
        limit = options.x0Limit
        // x_T takes the first ⌈N/4⌉ counters of the stream (fillNormal uses one per 4 floats);
        // N counts the global batch when this batch is a shard of one.
        let globalBatch = options.globalBatch == 0 ? batch : options.globalBatch
        try require(options.sampleOffset + batch <= globalBatch,
                    "samples \(options.sampleOffset)..<\(options.sampleOffset + batch) are not inside the global batch of \(globalBatch)")
        let (globalN, globalOverflow) = globalBatch.multipliedReportingOverflow(by: sampleSize)
        try require(!globalOverflow, "\(globalBatch) samples of \(sampleSize) floats overflow")
        noiseBlocks = UInt64((globalN + 3) / 4)
        rng = Philox(seed: options.seed, counter: noiseBlocks)
        noise = try Buffer(count: N)
        modelOutput = try Buffer(count: N)
        scratch = try DenoiseScratch(count: N, sampleSize: sampleSize)
        noiseJob = { [unowned self] c, _ in self.drawNoise(chunk: c) }
    }

    /// Floats a sampler holds per float of its batch: noise, model output, x̂_0 and ε̂, and the
    /// two earlier x̂_0 of DPM-Solver++ (at most).
    static let floatsPerSampleFloat = 6

    /// N, the floats of a whole batch.
    public var count: Int { batch * sampleSize }

    /// The timestep of the model output the next step expects, or −1 once every step is taken.
    public var timestep: Int { stepsTaken < plan.count ? plan[stepsTaken].t : -1 }

    /// Whether the next step adds noise (uses z), or nil once every step is taken.
    public var nextStepAddsNoise: Bool? {
        guard stepsTaken < plan.count else { return nil }
        return solver.addsNoise(plan[stepsTaken])
    }

    /// Writes x_T (N,), drawn from the seed: where `run` starts.
    public func initNoise(_ x: UnsafeMutablePointer<Float>) {
        // x_T ~ N(0, I): this shard's slice of the global batch's draw
        Philox.fillNormal(x, count: count, seed: options.seed, base: 0, from: options.sampleOffset * sampleSize)
    }

    /// Writes the next z ~ N(0, I) (N,) of the noise stream: this shard's slice of the global
    /// batch's draw. Every noise draw of a step should come from here, so that shards stay
    /// bitwise the one-process run.
    ///
    /// The draw is cut into fixed chunks of `noiseChunk` floats on the WorkPool: chunk c writes
    /// positions [c·noiseChunk, …) of the stream, the bits one pass writes, whatever the threads
    /// (Box–Muller's logf/sinf/cosf were 3.5% of a signal sampling step on one thread).
    func drawNoise(_ out: UnsafeMutablePointer<Float>) {
        let chunks = (count + Sampler.noiseChunk - 1) / Sampler.noiseChunk
        if chunks == 1 {
            Philox.fillNormal(out, count: count, seed: rng.seed, base: rng.counter, from: options.sampleOffset * sampleSize)
        } else {
            noiseOut = out
            WorkPool.shared.parallelFor(chunks: chunks, noiseJob)
            noiseOut = nil
        }
        rng.counter &+= noiseBlocks
    }

    /// Floats per chunk of a noise draw (a multiple of 4: chunks start on a Philox block).
    static let noiseChunk = 1 << 13
    /// The draw in progress, for `noiseJob`.
    private var noiseOut: UnsafeMutablePointer<Float>?
    /// Chunk c of the draw in progress: made once, so a draw allocates nothing (WorkPool.swift).
    private var noiseJob: (Int, Int) -> Void = { _, _ in }

    private func drawNoise(chunk c: Int) {
        let start = c * Sampler.noiseChunk
        Philox.fillNormal(noiseOut! + start, count: min(Sampler.noiseChunk, count - start), seed: rng.seed, base: rng.counter,
                          from: options.sampleOffset * sampleSize + start)
    }

    /// The next step of x (N,), given the model output at (x, `timestep`) of `options.predictionType`.
    /// - Parameters:
    ///   - noise: z (N,) to use instead of the sampler's own draw (which then does not advance).
    ///   - x0Out: receives the x̂_0 (N,) the step used, after clipping or thresholding.
    public func step(output: UnsafePointer<Float>, x: UnsafeMutablePointer<Float>, noise: UnsafePointer<Float>? = nil,
                     x0Out: UnsafeMutablePointer<Float>? = nil) throws {
        try step(output: output, type: options.predictionType, x: x, noise: noise, x0Out: x0Out, learnedVariance: nil)
    }

    func step(output: UnsafePointer<Float>, type: PredictionType, x: UnsafeMutablePointer<Float>,
              noise given: UnsafePointer<Float>?, x0Out: UnsafeMutablePointer<Float>?,
              learnedVariance: UnsafePointer<Float>?) throws {
        try require(stepsTaken < plan.count, "the sampler has taken all its \(plan.count) steps")
        let s = plan[stepsTaken]
        let N = count
        try requireFinite(output, count: N, "the model output at t = \(s.t)")
        // 1. z, when the update adds noise.
        var z: UnsafePointer<Float>? = nil
        if solver.addsNoise(s) {
            if let given { z = given } else {
                drawNoise(noise.pointer)
                z = UnsafePointer(noise.pointer)
            }
        }
        // 2. (x̂_0, ε̂) from the model output, x̂_0 limited.
        try require(options.variance != .learned || learnedVariance != nil,
                    "variance 'learned' needs a model that learns its variance (a built-in model trained with learned_variance)")
        var denoised = schedule.denoise(output: output, type: type, x: x, t: s.t, batch: batch, sampleSize: sampleSize,
                                        limit: limit, scratch: scratch)
        denoised.variance = learnedVariance
        if let x0Out { x0Out.update(from: denoised.x0, count: N) }
        // 3. the solver's update.
        solver.update(x, denoised: denoised, s, noise: z)
        stepsTaken += 1
    }

    /// Runs every step with `denoiser` from x_T, writing x_0 to `x` (N,).
    /// - Parameters:
    ///   - cond: the condition of each row, passed through to the denoiser.
    ///   - progress: see `SamplingProgress`; returning false throws `.cancelled`.
    /// - Complexity: one denoiser call per step; no allocation inside the loop.
    public func run(_ denoiser: Denoiser, into x: UnsafeMutablePointer<Float>, cond: ConditionBatch = .none,
                    progress: SamplingProgress? = nil) throws {
        try require(denoiser.sampleSize == sampleSize,
                    "the denoiser gives \(denoiser.sampleSize) floats per sample, the sampler expects \(sampleSize)")
        try require(stepsTaken == 0, "the sampler has already taken \(stepsTaken) steps")
        initNoise(x)
        if let progress, !progress(0, plan.count, plan[0].t, x) {
            throw DDPMError.cancelled("sampling cancelled by the progress callback before the first step")
        }
        for (i, s) in plan.enumerated() {
            try denoiser.predict(modelOutput.pointer, x: x, t: s.t, cond: cond, batch: batch)
            try step(output: modelOutput.pointer, type: denoiser.predictionType, x: x, noise: nil, x0Out: nil,
                     learnedVariance: denoiser.lastVariance)
            if let progress, !progress(i + 1, plan.count, s.prevT, x) {
                throw DDPMError.cancelled("sampling cancelled by the progress callback after step \(i + 1)")
            }
        }
    }
}

extension NoiseSchedule {
    /// Draws N samples with `denoiser`, writing x_0 to `out` (N, S): a Sampler run once.
    public func sample(
        into out: UnsafeMutablePointer<Float>, count n: Int, denoiser: Denoiser,
        cond: ConditionBatch = .none, options: SamplerOptions = .init(), progress: SamplingProgress? = nil
    ) throws {
        let sampler = try Sampler(schedule: self, options: options, batch: n, sampleSize: denoiser.sampleSize)
        try sampler.run(denoiser, into: out, cond: cond, progress: progress)
    }
}
