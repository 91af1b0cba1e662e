// A diffusion model: schedule + denoising network + optimizer state + EMA weights + RNG.
// One `trainStep` is DDPM Algorithm 1. Beside this file: prediction and guidance
// (+Guidance), sampling (+Sampling), files (+Checkpoint).
//
//   B = batch, S = floats per sample, P = number of parameters, K = classes.

public final class DiffusionModel {
    public let schedule: NoiseSchedule
    public let network: DenoisingNetwork
    public private(set) var training: TrainingConfig
    let optimizer: AdamW
    let ema: Buffer<Float>  // (P,) EMA of the parameters
    var rng: Philox  // its seed keys every training draw (see `computeGradients`); not advanced
    /// Train steps taken so far.
    public internal(set) var step = 0
    var buffers: TrainBuffers
    /// The network and its replicas: what the chunks of a batch run on (Model/ChunkPlan.swift).
    let replicas: Replicas
    /// Each training chunk's loss and error (ChunkPlan.maxTrainingChunks).
    let chunkLoss: Buffer<Float>
    let chunkErrors = ChunkErrors(count: ChunkPlan.maxTrainingChunks)
    /// The jobs of a train step's chunks (DiffusionModel+Chunks.swift).
    var chunks = TrainChunks()
    /// computeGradients has filled the gradients and applyGradients has not yet used them.
    public private(set) var gradientsPending = false
    /// The pending gradients were computed again at 2^-64 after the backward pass overflowed.
    var gradientsScaledDown = false
    /// The loss history of importance-sampled timesteps, or nil for uniform t.
    let resampler: LossSecondMomentResampler?
    /// The training loss: target and weighting, and the learned variance's part.
    let objective: Objective
    let varianceLoss: VarianceLoss

    /// Per-batch training buffers, grown when a larger batch arrives.
    struct TrainBuffers {
        let capacity: Int
        let xt, eps, output, dout: Buffer<Float>  // (B, S)
        let target: Buffer<Float>  // (B, S) v when the network predicts v, else empty
        // With a learned variance (else empty):
        let full, dfull: Buffer<Float>  // (B, 2S) the network's output [mean; v] and its gradient
        let variance, dvariance, x0Hat: Buffer<Float>  // (B, S) v, ∂L/∂v, x̂_0 of the stopped mean
        let t, labels: Buffer<Int32>  // (B,)
        let importance: Buffer<Float>  // (B,) 1/(T·p_t) of importance-sampled t, else 1
        let perSample: Buffer<Double>  // (B,) each sample's loss, for the resampler's history
        let coin: Buffer<Float>  // (B,) uniforms for condition dropout
        let null: Buffer<UInt8>  // (B,) 1 where a conditioning vector is dropped for the null vector
        /// Floats (and 4-byte integers) per row.
        static func floatsPerRow(sampleSize S: Int, target: PredictionType, learnedVariance: Bool) -> Double {
            Double(4 * S + 7 + (target == .v ? S : 0) + (learnedVariance ? 7 * S : 0))
        }
        init(batch: Int, sampleSize: Int, target: PredictionType, learnedVariance: Bool) throws {
            capacity = batch
            xt = try Buffer(count: batch * sampleSize); eps = try Buffer(count: batch * sampleSize)
            output = try Buffer(count: batch * sampleSize); dout = try Buffer(count: batch * sampleSize)
            self.target = try Buffer(count: target == .v ? batch * sampleSize : 0)
            let extra = learnedVariance ? batch * sampleSize : 0
            (full, dfull) = (try Buffer(count: 2 * extra), try Buffer(count: 2 * extra))
            (variance, dvariance, x0Hat) = (try Buffer(count: extra), try Buffer(count: extra), try Buffer(count: extra))
            t = try Buffer(count: batch, zero: 0); labels = try Buffer(count: batch, zero: 0)
            coin = try Buffer(count: batch)
            null = try Buffer(count: batch, zero: 0)
            importance = try Buffer(count: batch)
            perSample = try Buffer(count: batch, zero: 0)
        }
    }

    /// Floats of the model's state: parameters, gradients, EMA, the two AdamW moments (P each)
    /// and the timestep table (T × E).
    let stateFloats: Double

    /// Throws `.invalidArgument` unless the model's state and `floats` more (the buffers of one
    /// call) fit in `Limits.modelBytes`.
    func requireMemory(_ what: @autoclosure () -> String, floats: Double) throws {
        try Limits.requireFloats(stateFloats + floats,
                                 "\(what()) (the model's state \(Limits.describeBytes(4 * stateFloats)) and buffers of \(Limits.describeBytes(4 * floats)))")
    }

    /// A fresh model: parameters initialised from `training.seed`, EMA equal to them.
    /// - Parameter conditioning: what samples are conditioned on.
    /// - Throws: `.invalidArgument` on a bad configuration, or one whose state (5 × P floats
    ///   and the T × E timestep table) is over `Limits.modelBytes`.
    public convenience init(schedule: NoiseSchedule, network config: NetworkConfig, training: TrainingConfig = .init(),
                            conditioning: Conditioning = .none) throws {
        try self.init(schedule: schedule, network: config, training: training, conditioning: conditioning, checkLayout: { _ in })
    }

    /// - Parameter checkLayout: runs on the parameter layout, after the memory check and
    ///   before anything of size P is allocated (a checkpoint checks its tensors there).
    init(schedule: NoiseSchedule, network config: NetworkConfig, training: TrainingConfig, conditioning: Conditioning,
         checkLayout: (ParameterLayout) throws -> Void) throws {
        try training.validate()
        self.schedule = schedule
        self.training = training
        var initRNG = Philox(seed: training.seed ^ 0x5EED_1417_0000_0001)
        var state = 0.0
        network = try config.makeNetwork(conditioning: conditioning, learnsVariance: training.learnedVariance,
                                         timesteps: schedule.count, rng: &initRNG) { layout in
            state = 5 * Double(layout.count) + Double(schedule.count) * Double(config.timeEmbedDim)
            try Limits.requireFloats(state, "a model of \(layout.count) parameters (values, gradients, EMA and 2 AdamW moments) "
                                     + "and a \(schedule.count) × \(config.timeEmbedDim) timestep table")
            try checkLayout(layout)
        }
        stateFloats = state
        let P = network.parameters.count
        optimizer = try AdamW(config: training.optimizer, count: P)
        ema = try Buffer(count: P)
        ema.pointer.update(from: network.parameters.values.pointer, count: P)
        rng = Philox(seed: training.seed)
        objective = training.objective(schedule)
        resampler = training.timestepSampling == .importance ? LossSecondMomentResampler(timesteps: schedule.count) : nil
        varianceLoss = VarianceLoss(schedule: schedule, target: training.target, lambda: Double(training.vlbLambda))
        buffers = try TrainBuffers(batch: 0, sampleSize: network.sampleSize, target: training.target,
                                   learnedVariance: training.learnedVariance)
        replicas = Replicas(network)
        chunkLoss = try Buffer(count: ChunkPlan.maxTrainingChunks)
        _ = WorkPool.shared  // starts the pool (and sets BLAS to one thread) before any GEMM
        chunks.makeJobs(self)
    }

    /// What samples are conditioned on.
    public var conditioning: Conditioning { network.conditioning }

    /// Changes the learning rate (e.g. for a schedule driven by the caller).
    public func setLearningRate(_ lr: Float) throws {
        var c = training.optimizer
        c.learningRate = lr
        try c.validate()
        training.optimizer = c
        optimizer.config = c
    }

    /// Checks a batch's condition against the network's conditioning (ConditionBatch.swift).
    func validate(cond: ConditionBatch, batch: Int) throws {
        try cond.validate(against: network.conditioning, batch: batch)
    }

    /// One step of DDPM Algorithm 1 on a batch x_0 (B, S) with optional labels (B,):
    /// t ~ U{0..T−1}, ε ~ N(0, I), x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε, L = mean‖ε − ε_θ(x_t, t)‖²,
    /// backward, clip, AdamW, EMA. `computeGradients` then `applyGradients`.
    /// - Returns: the loss before the update.
    /// - Throws: on a bad batch or labels, a batch over the memory limit, non-finite data,
    ///   or `.nonFinite` when the loss, the gradient norm or any updated parameter, AdamW
    ///   moment or EMA weight would not be finite: the step is then not applied (parameters,
    ///   EMA, moments and step counters unchanged; the draws of the step are spent), so that
    ///   training can go on, e.g. with a lower learning rate.
    public func trainStep(x0: UnsafePointer<Float>, cond: ConditionBatch, batch B: Int) throws -> Float {
        let loss = try computeGradients(x0: x0, cond: cond, batch: B)
        try applyGradients()
        return loss
    }

    /// `trainStep` conditioned on labels (B,) only.
    public func trainStep(x0: UnsafePointer<Float>, labels: UnsafePointer<Int32>?, batch B: Int) throws -> Float {
        try trainStep(x0: x0, cond: ConditionBatch(labels: labels), batch: B)
    }

    /// `computeGradients` conditioned on labels (B,) only.
    public func computeGradients(x0: UnsafePointer<Float>, labels: UnsafePointer<Int32>?, batch B: Int,
                                 sampleOffset: Int = 0, globalBatch: Int? = nil) throws -> Float {
        try computeGradients(x0: x0, cond: ConditionBatch(labels: labels), batch: B, sampleOffset: sampleOffset,
                             globalBatch: globalBatch)
    }

    /// The first half of a train step, up to the gradients: draws t, ε, label dropout and
    /// dropout, runs forward, the loss and backward, and leaves ∂L/∂θ in `gradients`.
    /// For data-parallel training each worker passes its shard of a global batch of
    /// `globalBatch` samples, starting at global sample `sampleOffset`: the loss returned and
    /// the gradients are then this shard's terms of the global mean, so that summing them over
    /// the workers (an allreduce) gives the loss and gradients of the whole batch.
    ///
    /// Random draws are keyed, never sequential: the draws of global sample i at step n come
    /// from `Philox.keyed(seed, n, i, stream)` with stream 0 = t, 1 = ε, 2 = the label-dropout
    /// coin (labels or vectors: a dropped row takes the null label K or the learned null
    /// vector), 3 + l = the dropout mask of the l-th dropout layer. A shard thus draws exactly what
    /// one process draws for those samples of the whole batch.
    /// - Throws: on bad arguments, non-finite data or a non-finite loss (nothing is then pending).
    public func computeGradients(x0: UnsafePointer<Float>, cond: ConditionBatch, batch B: Int,
                                 sampleOffset: Int = 0, globalBatch: Int? = nil) throws -> Float {
        gradientsPending = false
        try require(B >= 1, "batch must be >= 1 (got \(B))")
        let globalBatch = globalBatch ?? B
        try require(resampler == nil || globalBatch == B,
                    "importance-sampled timesteps keep one process's loss history: they do not shard over data-parallel workers")
        try require(sampleOffset >= 0 && sampleOffset <= globalBatch - B,
                    "the shard's samples \(sampleOffset)..<\(sampleOffset + B) are not inside the global batch of \(globalBatch)")
        try require(globalBatch <= Int(UInt32.max), "global batch \(globalBatch) is too large (at most 2^32 - 1)")
        let S = network.sampleSize
        let plan = ChunkPlan.training(batch: B, network.config, parameters: network.parameters.count)
        // The prepared weights of the last prediction stay allocated (PreparedWeights.swift).
        try requireMemory("a train step on a batch of \(B)", floats: trainingFloats(plan)
                          + Double(network.preparedWeights?.heldFloats ?? 0)
                          + Double(max(B, buffers.capacity)) * TrainBuffers.floatsPerRow(sampleSize: S, target: training.target,
                                                                                      learnedVariance: training.learnedVariance))
        try requireFinite(x0, count: B * S, "x0")
        try validate(cond: cond, batch: B)
        if buffers.capacity < B {
            buffers = try TrainBuffers(batch: B, sampleSize: S, target: training.target, learnedVariance: training.learnedVariance)
        }
        try replicas.reserve(plan.count, gradients: true)
        for c in 0..<plan.count { try replicas[c].reserve(batch: plan.range(c).rows, training: true) }
        let buf = buffers
        let K = Int32(network.numClasses)
        let conditional = network.conditioning.isConditional
        for b in 0..<B {
            // t ~ U{0..T−1}, ε ~ N(0, I) and the label coin, each from its own stream of sample i.
            let i = sampleOffset + b
            var tStream = Philox.keyed(seed: rng.seed, step: step, sample: i, stream: 0)
            if let resampler, resampler.isWarm {
                // t ~ p by the loss history, weighted 1/(T·p_t) (TimestepSampler.swift)
                var u: Float = 0
                tStream.fillUniform(&u, count: 1)
                let (t, weight) = resampler.draw(u)
                (buf.t.pointer[b], buf.importance.pointer[b]) = (Int32(t), weight)
            } else {
                tStream.fillUniformInt(buf.t.pointer + b, count: 1, below: schedule.count)
                buf.importance.pointer[b] = 1
            }
            var epsStream = Philox.keyed(seed: rng.seed, step: step, sample: i, stream: 1)
            epsStream.fillNormal(buf.eps.pointer + b * S, count: S)
            if conditional {
                // Condition dropout: a row keeps its condition with probability 1 − p, else gets
                // the null one (label K, or the learned null vector).
                var coinStream = Philox.keyed(seed: rng.seed, step: step, sample: i, stream: 2)
                coinStream.fillUniform(buf.coin.pointer + b, count: 1)
                let dropped = buf.coin.pointer[b] < training.conditionDropout
                if K > 0 { buf.labels.pointer[b] = dropped ? K : cond.labels?[b] ?? K }
                buf.null.pointer[b] = dropped ? 1 : 0
            }
        }
        // x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε
        try schedule.addNoise(buf.xt.pointer, x0: x0, noise: buf.eps.pointer, t: buf.t.pointer, batch: B, dim: S)
        var netCond = cond
        netCond.labels = K > 0 ? UnsafePointer(buf.labels.pointer) : nil
        netCond.null = K == 0 && conditional ? UnsafePointer(buf.null.pointer) : nil
        let params = network.parameters
        let learned = network.learnsVariance
        // Forward and loss per chunk, each on its own replica (DiffusionModel+Chunks.swift).
        chunks.call = TrainCall(x0: x0, cond: netCond, plan: plan, sampleOffset: sampleOffset, globalBatch: globalBatch,
                                dout: nil)
        WorkPool.shared.parallelFor(chunks: plan.count, chunks.forwardJob)
        try chunkErrors.throwFirst(plan.count)
        // The chunks' losses summed in chunk order.
        var loss: Float = 0
        for c in 0..<plan.count { loss += chunkLoss.pointer[c] }
        guard loss.isFinite else {
            throw DDPMError.nonFinite("the loss became \(loss) at step \(step); lower the learning rate")
        }
        let backwardOut = learned ? buf.dfull.pointer : buf.dout.pointer  // (B, outputSize)
        backwardChunks(dout: backwardOut, batch: B)
        // Float overflowed in the backward pass of a finite loss: with clipping only the direction
        // matters, so run it again on a scaled ∂L/∂out (DiffusionModel+Finite.swift).
        gradientsScaledDown = false
        if !sumOfSquares(params.grads.pointer, params.count).isFinite {
            _ = try backwardAgainScaled(dout: backwardOut, batch: B, loss: loss)
            gradientsScaledDown = true
        }
        gradientsPending = true
        return loss
    }

    /// ∂L/∂θ (P,), flat in the order of the parameters: what `computeGradients` wrote and
    /// `applyGradients` reads. A data-parallel caller reduces it in place in between (an
    /// allreduce-sum of the shards' terms). The storage lives as long as the model.
    public var gradients: UnsafeMutableBufferPointer<Float> {
        UnsafeMutableBufferPointer(start: network.parameters.grads.pointer, count: network.parameters.count)
    }

    /// The second half of a train step: clips the (possibly reduced) gradients, applies AdamW,
    /// updates the EMA and counts the step.
    /// - Throws: `.invalidArgument` without pending gradients; `.nonFinite` if the gradients,
    ///   or the parameters, moments or EMA after the update, would not be finite (the model is
    ///   then left unchanged).
    public func applyGradients() throws {
        try require(gradientsPending, "no gradients to apply: call computeGradients first (once per step)")
        try require(UInt64(max(step, optimizer.step)) < maxCheckpointStep,
                    "the step counters are at \(max(step, optimizer.step)) = 2^53, the most a checkpoint holds: no further step")
        gradientsPending = false
        let params = network.parameters
        var clip = GradientClipping.scale(params.grads.pointer, count: params.count, maxNorm: training.gradClip)
        guard clip.norm.isFinite else {
            throw DDPMError.nonFinite("the gradient norm is \(clip.norm) at step \(step); the parameters are unchanged")
        }
        // Gradients rerun at 2^-64 had an infinite norm: clip them to gradClip whatever their scaled norm.
        if gradientsScaledDown, clip.norm > 0 { clip.scale = Float(Double(training.gradClip) / clip.norm) }
        let emaDecay = EMA.decay(training.emaDecay, afterSteps: step)
        try requireFiniteUpdate(gradScale: clip.scale, emaDecay: emaDecay)
        // AdamW then the EMA, by fixed ranges of parameters on the pool (DiffusionModel+Chunks.swift).
        chunks.update = ParameterUpdate(adam: optimizer.nextStep(), gradScale: clip.scale, emaDecay: emaDecay)
        WorkPool.shared.parallelFor(chunks: (params.count + TrainChunks.span - 1) / TrainChunks.span, chunks.updateJob)
        step += 1
        // Only an applied step feeds importance sampling's loss history (TimestepSampler.swift).
        if let resampler, let call = chunks.call {
            resampler.update(t: buffers.t.pointer, losses: buffers.perSample.pointer, batch: call.plan.batch)
        }
    }

    /// FNV-1a (64 bit) over the bit patterns of the parameters, then of the EMA weights: equal
    /// on every worker of a data-parallel run that stays in step.
    public var parameterHash: UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for buffer in [network.parameters.values, ema] {
            for k in 0..<network.parameters.count {
                var bits = buffer.pointer[k].bitPattern
                for _ in 0..<4 { h = (h ^ UInt64(bits & 0xFF)) &* 0x0000_0100_0000_01B3; bits >>= 8 }
            }
        }
        return h
    }

    /// Array form of `trainStep` for Swift callers: x0 is (B, S) flattened, vectors (B, Dc).
    public func trainStep(x0: [Float], labels: [Int32]? = nil, vectors: [Float]? = nil) throws -> Float {
        let S = network.sampleSize
        try require(!x0.isEmpty && x0.count % S == 0, "x0 has \(x0.count) floats, not a multiple of \(S)")
        let B = x0.count / S
        return try withConditionArrays(labels: labels, vectors: vectors, batch: B) { cond in
            try x0.withUnsafeBufferPointer { x in try trainStep(x0: x.baseAddress!, cond: cond, batch: B) }
        }
    }

    /// A copy of the EMA weights, (P,).
    public var emaValues: [Float] { ema.array }
}

/// Splits rows [mean (S); v (S)] of `full` (B, 2S) into `mean` and `v` (B, S).
func split(_ full: UnsafePointer<Float>, into mean: UnsafeMutablePointer<Float>, _ v: UnsafeMutablePointer<Float>,
           batch B: Int, sampleSize S: Int) {
    for b in 0..<B {
        (mean + b * S).update(from: full + 2 * b * S, count: S)
        (v + b * S).update(from: full + 2 * b * S + S, count: S)
    }
}

/// The inverse of `split`: rows [mean (S); v (S)] of `full` (B, 2S).
func merge(_ mean: UnsafePointer<Float>, _ v: UnsafePointer<Float>, into full: UnsafeMutablePointer<Float>,
           batch B: Int, sampleSize S: Int) {
    for b in 0..<B {
        (full + 2 * b * S).update(from: mean + b * S, count: S)
        (full + 2 * b * S + S).update(from: v + b * S, count: S)
    }
}

/// Calls `body` with a pointer to the array's storage, or nil.
func withOptionalPointer<T, R>(_ array: [T]?, _ body: (UnsafePointer<T>?) throws -> R) rethrows -> R {
    guard let array else { return try body(nil) }
    return try array.withUnsafeBufferPointer { try body($0.baseAddress) }
}
