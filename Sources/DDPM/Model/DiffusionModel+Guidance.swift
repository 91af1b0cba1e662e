// How a model predicts: with which weights (EMA or live) and which classifier-free
// guidance (Ho & Salimans 2022):
//   ε̂ = ε̂_uncond + w·(ε̂_cond − ε̂_uncond)
// w = 1 is the plain conditional prediction, w = 0 the unconditional one. Both predictions
// run as one batch of 2B rows: the given condition, then the null one (label K or the
// learned null vector or context).  B = batch, S = floats per sample, Dc = conditioning-vector size.
//
// The network runs on fixed chunks of `predictionChunk` samples (the last one shorter),
// never on the whole batch at once: a BLAS may round a row of a product differently with the
// number of rows, so fixed chunks make sample i's prediction independent of how many samples
// share the call, and a shard of a sampling batch that starts on a chunk boundary computes
// bitwise what one process computes for those samples (swiftddpm.distributed.sample).
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif


/// The weights and guidance of a prediction (ddpm_predict_params in C). Checked once, in
/// `DiffusionModel.denoiser(_:batch:)`.
public struct PredictOptions: Sendable, Equatable {
    /// Classifier-free guidance scale w (1 = conditional, 0 = unconditional); used when a condition is given.
    public var guidanceScale: Float = 1
    /// Predict with the EMA weights (default) or the live ones.
    public var useEMA = true
    public init(guidanceScale: Float = 1, useEMA: Bool = true) {
        (self.guidanceScale, self.useEMA) = (guidanceScale, useEMA)
    }

    func validate() throws {
        try require(guidanceScale.isFinite, "guidance_scale must be finite (got \(guidanceScale))")
    }
}

/// Samples per network call of a prediction (DDPM_PREDICT_CHUNK in ddpm.h): a multiple of
/// every network's inference chunk (Model/ChunkPlan.swift), so shards that start on a
/// multiple of it compute bitwise what one process computes.
public let predictionChunk = 256

/// A model's network with fixed weights and guidance scale, as a Denoiser. The batch runs in
/// fixed chunks of `rows` samples on the WorkPool; worker w uses network w of the replicas and
/// scratch w (a chunk's result does not depend on which worker ran it).
final class GuidedDenoiser: Denoiser {
    let replicas: Replicas
    var network: DenoisingNetwork { replicas.network }
    let params: UnsafePointer<Float>  // (P,) the weights to use
    let guidanceScale: Float
    let sampleSize: Int
    let predictionType: PredictionType  // the model's training target
    let rows: Int  // C, samples per chunk
    let networkRows: Int  // rows of the network's chunk passes: C, or 2C guided
    let ts: Buffer<Int32>  // (2C,) the shared timestep
    let scratch: [Scratch]  // one per worker
    let variance: Buffer<Float>  // (B, S) the learned variance's v of the last prediction (conditional), or empty

    /// A worker's buffers for one chunk.
    final class Scratch {
        let labels2: Buffer<Int32>  // (2C,) cond labels then null labels (class conditioning)
        let vectors2: Buffer<Float>  // (2C, Dc) or (2C, Lmax, Dc): cond vectors or context, then unread rows
        let null2: Buffer<UInt8>  // (2C,) 0 then 1: the second half takes the null vector or context
        let tokens2: Buffer<Int32>  // (2C, Lmax) cond token ids then unread rows (token conditioning)
        let lengths2: Buffer<Int32>  // (2C,) cond lengths then unread rows (sequence and token conditioning)
        let x2: Buffer<Float>  // (2C, S)
        let out2: Buffer<Float>  // (2C, O) the network's outputs, O = S or 2S with a learned variance
        init(rows: Int, guided: Bool, network: DenoisingNetwork) throws {
            let doubled = guided ? 2 * rows : 0
            let c = network.conditioning
            labels2 = try Buffer(count: c.numClasses > 0 ? doubled : 0, zero: 0)
            vectors2 = try Buffer(count: doubled * max(c.vectorDim, c.maxLength * c.contextDim), zero: 0)
            null2 = try Buffer(count: c.numClasses == 0 ? doubled : 0, zero: 0)
            tokens2 = try Buffer(count: c.vocabulary > 0 ? doubled * c.maxLength : 0, zero: 0)
            lengths2 = try Buffer(count: c.maxLength > 0 ? doubled : 0, zero: 0)
            x2 = try Buffer(count: doubled * network.sampleSize)
            out2 = try Buffer(count: (network.learnsVariance ? max(doubled, rows) : doubled) * network.outputSize)
        }
        /// Floats (and 4-byte integers) per row of a chunk; `conditionFloats` per row of the doubled batch.
        static func floatsPerRow(sampleSize S: Int, outputSize O: Int, conditionFloats: Int, guided: Bool) -> Double {
            guided ? Double(4 + 2 * S + 2 * O + 2 * conditionFloats) : Double(O == S ? 0 : O)
        }
    }

    var lastVariance: UnsafePointer<Float>? { network.learnsVariance ? UnsafePointer(variance.pointer) : nil }

    /// Floats (and 4-byte integers) it holds per row of a batch besides the chunks' scratch:
    /// the learned variance's v.
    static func floatsPerRow(sampleSize S: Int, outputSize O: Int) -> Double { Double(O - S) }

    /// - Parameters:
    ///   - workers: the networks (and scratch blocks) to run chunks on; `replicas` holds that many.
    ///   - guided: the predictions combine a conditional and an unconditional pass.
    init(replicas: Replicas, workers: Int, params: UnsafePointer<Float>, guidanceScale: Float, batch: Int, guided: Bool,
         target: PredictionType) throws {
        self.replicas = replicas
        let network = replicas.network
        predictionType = target
        self.params = params
        self.guidanceScale = guidanceScale
        sampleSize = network.sampleSize
        variance = try Buffer(count: network.learnsVariance ? batch * network.sampleSize : 0)
        let rows = min(batch, network.config.inferenceRows)
        self.rows = rows
        networkRows = guided ? 2 * rows : rows
        ts = try Buffer(count: 2 * rows, zero: 0)
        scratch = try (0..<workers).map { _ in try Scratch(rows: rows, guided: guided, network: network) }
        job = { [unowned self] c, w in self.chunk(c, worker: w) }
    }

    /// The arguments of the prediction in progress, for `job`.
    struct Call {
        let out: UnsafeMutablePointer<Float>  // (B, S)
        let x: UnsafePointer<Float>  // (B, S)
        let cond: ConditionBatch  // the batch's conditioning
        let plan: ChunkPlan
    }
    var call: Call?
    /// Chunk c of the current call on worker w: made once, so a prediction allocates nothing (WorkPool.swift).
    private(set) var job: (Int, Int) -> Void = { _, _ in }

    func predict(_ out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, t: Int,
                 cond: ConditionBatch, batch: Int) throws {
        ts.fill(Int32(t))
        let plan = ChunkPlan(batch: batch, rows: rows)
        call = Call(out: out, x: x, cond: cond, plan: plan)
        // The weights are fixed within the call: what every chunk would make of them is made once.
        let prepared = network.preparedWeights
        defer { call = nil; prepared?.release() }
        try prepared?.prepare(params, batch: networkRows, chunks: plan.count)
        // At most scratch.count workers: the pool may have grown since the scratch was made.
        WorkPool.shared.parallelFor(chunks: plan.count, workers: scratch.count, job)
    }

    /// Chunk c of the current call, on worker w's network and scratch.
    func chunk(_ c: Int, worker w: Int) {
        let call = call!
        let S = sampleSize
        let (r0, n) = call.plan.range(c)
        predictChunk(call.out + r0 * S, variance: variance.pointer + (network.learnsVariance ? r0 * S : 0), x: call.x + r0 * S,
                     cond: call.cond.rows(from: r0, count: n), batch: n, network: replicas[w], scratch: scratch[w])
    }

    /// predict for one chunk of B ≤ rows samples; v (B, S) too when the variance is learned.
    func predictChunk(_ out: UnsafeMutablePointer<Float>, variance v: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>,
                      cond: ConditionBatch, batch B: Int, network: DenoisingNetwork, scratch: Scratch) {
        let S = sampleSize
        let w = guidanceScale
        guard cond.isGiven, network.conditioning.isConditional, w != 1 else {
            // Plain prediction: conditional if a condition was given, else the null one.
            forward(out, variance: v, x: x, cond: cond, batch: B, network: network, scratch: scratch)
            return
        }
        if w == 0 {
            forward(out, variance: v, x: x, cond: .none, batch: B, network: network, scratch: scratch)
            return
        }
        let (x2, out2) = (scratch.x2.pointer, scratch.out2.pointer)
        x2.update(from: x, count: B * S)
        (x2 + B * S).update(from: x, count: B * S)
        // The doubled batch: rows 0..<B with the condition, rows B..<2B with the null one.
        var cond2 = ConditionBatch.none
        if let vectors = cond.vectors {
            let Dc = cond.vectorDim
            scratch.vectors2.pointer.update(from: vectors, count: B * Dc)  // rows B..<2B are not read
            scratch.null2.pointer.update(repeating: 0, count: B)
            (scratch.null2.pointer + B).update(repeating: 1, count: B)
            cond2 = ConditionBatch(vectors: scratch.vectors2.pointer, vectorDim: Dc, null: scratch.null2.pointer)
        } else if cond.context != nil || cond.tokens != nil {
            let L = cond.maxLength
            cond2 = ConditionBatch(null: scratch.null2.pointer)
            (cond2.maxLength, cond2.contextDim) = (L, cond.contextDim)
            if let context = cond.context {
                scratch.vectors2.pointer.update(from: context, count: B * L * cond.contextDim)  // rows B..<2B are not read
                cond2.context = UnsafePointer(scratch.vectors2.pointer)
            }
            if let tokens = cond.tokens {
                scratch.tokens2.pointer.update(from: tokens, count: B * L)
                cond2.tokens = UnsafePointer(scratch.tokens2.pointer)
            }
            if let lengths = cond.lengths { scratch.lengths2.pointer.update(from: lengths, count: B) }
            else { scratch.lengths2.pointer.update(repeating: Int32(L), count: B) }
            cond2.lengths = UnsafePointer(scratch.lengths2.pointer)
            scratch.null2.pointer.update(repeating: 0, count: B)
            (scratch.null2.pointer + B).update(repeating: 1, count: B)
        } else if let labels = cond.labels {
            scratch.labels2.pointer.update(from: labels, count: B)
            (scratch.labels2.pointer + B).update(repeating: Int32(network.numClasses), count: B)
            cond2 = ConditionBatch(labels: scratch.labels2.pointer)
        }
        var rng = Philox(seed: 0)  // the forward pass takes one; inference draws nothing from it
        network.forward(out2, x: x2, t: ts.pointer, cond: cond2, batch: 2 * B,
                        params: params, training: false, rng: &rng)
        // Guidance mixes the outputs; a learned variance is the conditional prediction's (as GLIDE).
        let O = network.outputSize
        if O == S {
            let (cond, uncond) = (out2, out2 + B * S)
            for i in 0..<B * S { out[i] = uncond[i] + w * (cond[i] - uncond[i]) }
            return
        }
        for b in 0..<B {
            let (cond, uncond) = (out2 + b * O, out2 + (B + b) * O)
            for i in 0..<S { out[b * S + i] = uncond[i] + w * (cond[i] - uncond[i]) }
            (v + b * S).update(from: cond + S, count: S)
        }
    }

    /// One forward pass at ts[0..<B]: the output to `out` (B, S), v to `variance` when learned.
    func forward(_ out: UnsafeMutablePointer<Float>, variance v: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>,
                 cond: ConditionBatch, batch B: Int, network: DenoisingNetwork, scratch: Scratch) {
        var rng = Philox(seed: 0)  // the forward pass takes one; inference draws nothing from it
        guard network.learnsVariance else {
            network.forward(out, x: x, t: ts.pointer, cond: cond, batch: B, params: params, training: false, rng: &rng)
            return
        }
        network.forward(scratch.out2.pointer, x: x, t: ts.pointer, cond: cond, batch: B, params: params, training: false, rng: &rng)
        split(scratch.out2.pointer, into: out, v, batch: B, sampleSize: sampleSize)
    }
}

extension DiffusionModel {
    /// The model's prediction (B, S) for x (B, S) at timestep t, as `output` (ε̂, x̂_0, v̂ or the score).
    /// - Parameters:
    ///   - cond: labels (B,) in 0...K or vectors (B, Dc), or none for unconditional.
    ///   - options: the weights and the guidance scale.
    public func predict(_ out: UnsafeMutablePointer<Float>, output: PredictOutput = .epsilon, x: UnsafePointer<Float>,
                        t: Int, cond: ConditionBatch, batch: Int, options: PredictOptions = .init()) throws {
        let denoiser = try denoiser(options, cond: cond, batch: batch)
        try schedule.check(t: t)
        try requireFinite(x, count: batch * network.sampleSize, "x")
        try denoiser.predict(out, x: x, t: t, cond: cond, batch: batch)
        if output == .variance {
            guard let v = denoiser.lastVariance else {
                throw DDPMError.invalidArgument("output 'variance' needs a model trained with learned_variance")
            }
            for i in 0..<batch * network.sampleSize { out[i] = Float(exp(schedule.reverseLogVariance(t, .learned, learned: v[i]))) }
            return
        }
        try schedule.convert(out, output: out, from: denoiser.predictionType, to: output, x: x, t: t,
                             count: batch * network.sampleSize)
    }

    /// `predict` conditioned on labels (B,) in 0...K, or nil.
    public func predict(_ out: UnsafeMutablePointer<Float>, output: PredictOutput = .epsilon, x: UnsafePointer<Float>,
                        t: Int, labels: UnsafePointer<Int32>?, batch: Int, options: PredictOptions = .init()) throws {
        try predict(out, output: output, x: x, t: t, cond: ConditionBatch(labels: labels), batch: batch, options: options)
    }

    /// The network as a Denoiser with the weights and guidance of `options`, after checking
    /// them, the condition of the batch and the memory of the call once, and reserving the
    /// networks' buffers. `extraFloatsPerRow`: what the caller holds besides (a sampler's buffers).
    func denoiser(_ options: PredictOptions, cond: ConditionBatch, batch: Int, extraFloatsPerRow: Double = 0,
                  _ what: @autoclosure () -> String = "a prediction") throws -> GuidedDenoiser {
        try require(batch >= 1, "batch must be >= 1 (got \(batch))")
        try options.validate()
        let S = network.sampleSize
        let c = network.conditioning
        let conditionFloats = max(c.vectorDim, c.maxLength * (c.contextDim + 1))  // per row of the doubled batch
        let guided = cond.isGiven && c.isConditional && options.guidanceScale != 1 && options.guidanceScale != 0
        // The network runs on chunks of at most `inferenceRows` samples (twice that guided),
        // one chunk per worker at a time, each worker on its own replica.
        let rows = min(batch, network.config.inferenceRows) * (guided ? 2 : 1)
        let workers = min(WorkPool.shared.threads, ChunkPlan.inference(batch: batch, network.config).count)
        let O = network.outputSize
        let perWorker = network.activationFloats(batch: rows, training: false)
            + Double(rows) * GuidedDenoiser.Scratch.floatsPerRow(sampleSize: S, outputSize: O, conditionFloats: conditionFloats,
                                                                guided: guided)
        // Each worker but the first on a replica: its timestep table (no gradients to predict).
        let prepared = Double(network.preparedWeights?.floats(batch: rows) ?? 0)
        try requireMemory("\(what()) for a batch of \(batch)", floats: Double(workers) * perWorker + prepared
                          + Double(workers - 1) * Double(schedule.count) * Double(network.config.timeEmbedDim)
                          + Double(batch) * (GuidedDenoiser.floatsPerRow(sampleSize: S, outputSize: O) + extraFloatsPerRow))
        try validate(cond: cond, batch: batch)
        try replicas.reserve(workers, gradients: false)
        for w in 0..<workers { try replicas[w].reserve(batch: rows, training: false) }
        return try GuidedDenoiser(replicas: replicas, workers: workers,
                                  params: options.useEMA ? ema.pointer : network.parameters.values.pointer,
                                  guidanceScale: options.guidanceScale, batch: batch, guided: guided, target: training.target)
    }
}
