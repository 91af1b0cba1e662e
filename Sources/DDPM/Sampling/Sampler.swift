// One reverse process for a batch: the timesteps, the solver and its state, the noise
// stream, and the loop that drives a Denoiser through it. Also steppable from outside
// (a diffusers-style scheduler): `initNoise`, then `step` with each model output.
//
//   N = batch × S floats; every buffer is (N,).
//
// Random numbers: one Philox stream from `options.seed`. x_T is drawn first (when the
// sampler is made), then z for every step that adds noise, so the samples of a seed do
// not depend on who drives the steps.

/// Called with x_T before the first step (step 0, t = the first timestep), then after every
/// reverse step (step 1...total, t of the new x, −1 for the final x_0), with x (N, S).
/// Return false to cancel.
public typealias SamplingProgress = (_ step: Int, _ total: Int, _ t: Int, _ x: UnsafePointer<Float>) -> Bool

public final class Sampler {
    public let schedule: NoiseSchedule
    public let options: SamplerOptions
    /// The timesteps the steps start from, noisiest first.
    public let timesteps: [Int]
    public let batch: Int, sampleSize: Int
    /// Steps taken so far.
    public private(set) var stepsTaken = 0
    var solver: any Solver
    var rng: Philox  // the noise z of the steps; starts after the draws of x_T
    let noise: Buffer<Float>  // (N,) z of the current step
    let modelOutput: Buffer<Float>  // (N,) for `run`
    let scratch: DenoiseScratch  // (N,) x̂_0 and ε̂

    /// - Throws: `.invalidArgument` on bad options or sizes.
    public init(schedule: NoiseSchedule, options: SamplerOptions, batch: Int, sampleSize: Int) throws {
        try options.validate(timestepCount: schedule.count)
        try require(batch >= 1, "number of samples must be >= 1 (got \(batch))")
        try require(sampleSize >= 1, "sample size must be >= 1 (got \(sampleSize))")
        let (N, overflow) = batch.multipliedReportingOverflow(by: sampleSize)
        try require(!overflow, "\(batch) samples of \(sampleSize) floats overflow")
        try Limits.requireFloats(Double(Sampler.floatsPerSampleFloat) * Double(N),
                                 "a sampler for \(batch) samples of \(sampleSize) floats")
        self.schedule = schedule
        self.options = options
        timesteps = try options.samplingTimesteps(schedule.count)
        (self.batch, self.sampleSize) = (batch, sampleSize)
        solver = options.makeSolver(schedule)
        // x_T takes the first ⌈N/4⌉ counters of the stream (fillNormal uses one per 4 floats).
        rng = Philox(seed: options.seed, counter: UInt64((N + 3) / 4))
        noise = try Buffer(count: N)
        modelOutput = try Buffer(count: N)
        scratch = try DenoiseScratch(count: N)
    }

    /// Floats a sampler holds per float of its batch: noise, model output, x̂_0 and ε̂.
    static let floatsPerSampleFloat = 4

    /// N, the floats of a whole batch.
    public var count: Int { batch * sampleSize }

    /// The timestep of the x the next step expects, or −1 once every step is taken.
    public var timestep: Int { stepsTaken < timesteps.count ? timesteps[stepsTaken] : -1 }

    /// Writes x_T (N,), drawn from the seed: where `run` starts.
    public func initNoise(_ x: UnsafeMutablePointer<Float>) {
        var start = Philox(seed: options.seed)
        start.fillNormal(x, count: count)  // x_T ~ N(0, I)
    }

    /// One reverse step of x (N,) from `timestep` to the next (x_0 after the last), given the
    /// model output at (x, timestep) of `options.predictionType`.
    /// - Parameters:
    ///   - noise: z (N,) to use instead of the sampler's own draw (which then does not advance).
    ///   - x0Out: receives the x̂_0 (N,) the step used, after clipping.
    public func step(output: UnsafePointer<Float>, x: UnsafeMutablePointer<Float>, noise: UnsafePointer<Float>? = nil,
                     x0Out: UnsafeMutablePointer<Float>? = nil) throws {
        try step(output: output, type: options.predictionType, x: x, noise: noise, x0Out: x0Out)
    }

    func step(output: UnsafePointer<Float>, type: PredictionType, x: UnsafeMutablePointer<Float>,
              noise given: UnsafePointer<Float>?, x0Out: UnsafeMutablePointer<Float>?) throws {
        let t = timestep
        try require(t >= 0, "the sampler has taken all its \(timesteps.count) steps")
        let prevT = stepsTaken + 1 < timesteps.count ? timesteps[stepsTaken + 1] : -1
        let N = count
        try requireFinite(output, count: N, "the model output at t = \(t)")
        var z: UnsafePointer<Float>? = nil
        if solver.needsNoise(t: t, prevT: prevT) {
            if let given { z = given } else {
                rng.fillNormal(noise.pointer, count: N)
                z = UnsafePointer(noise.pointer)
            }
        }
        let denoised = schedule.denoise(output: output, type: type, x: x, t: t, count: N, clip: options.clipX0,
                                        rederiveEpsilon: solver.rederivesEpsilon, scratch: scratch)
        if let x0Out { x0Out.update(from: denoised.x0, count: N) }
        solver.step(x, denoised: denoised, t: t, prevT: prevT, noise: z, count: N)
        stepsTaken += 1
    }

    /// Runs every step with `denoiser` from x_T, writing x_0 to `x` (N,).
    /// - Parameters:
    ///   - labels: (batch,) passed through to the denoiser, or nil.
    ///   - progress: see `SamplingProgress`; returning false throws `.cancelled`.
    /// - Complexity: one denoiser call per step; no allocation inside the loop.
    public func run(_ denoiser: Denoiser, into x: UnsafeMutablePointer<Float>, labels: UnsafePointer<Int32>? = nil,
                    progress: SamplingProgress? = nil) throws {
        try require(denoiser.sampleSize == sampleSize,
                    "the denoiser gives \(denoiser.sampleSize) floats per sample, the sampler expects \(sampleSize)")
        try require(stepsTaken == 0, "the sampler has already taken \(stepsTaken) steps")
        initNoise(x)
        if let progress, !progress(0, timesteps.count, timesteps[0], x) {
            throw DDPMError.cancelled("sampling cancelled by the progress callback before the first step")
        }
        for i in 0..<timesteps.count {
            try denoiser.predict(modelOutput.pointer, x: x, t: timestep, labels: labels, batch: batch)
            try step(output: modelOutput.pointer, type: denoiser.predictionType, x: x, noise: nil, x0Out: nil)
            if let progress, !progress(i + 1, timesteps.count, timestep, x) {
                throw DDPMError.cancelled("sampling cancelled by the progress callback after step \(i + 1)")
            }
        }
    }
}

extension NoiseSchedule {
    /// Draws N samples with `denoiser`, writing x_0 to `out` (N, S): a Sampler run once.
    public func sample(
        into out: UnsafeMutablePointer<Float>, count n: Int, denoiser: Denoiser,
        labels: UnsafePointer<Int32>? = nil, options: SamplerOptions = .init(), progress: SamplingProgress? = nil
    ) throws {
        let sampler = try Sampler(schedule: self, options: options, batch: n, sampleSize: denoiser.sampleSize)
        try sampler.run(denoiser, into: out, labels: labels, progress: progress)
    }
}
