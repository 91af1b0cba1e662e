// How a model predicts: with which weights (EMA or live) and which classifier-free
// guidance (Ho & Salimans 2022):
//   ε̂ = ε̂_uncond + w·(ε̂_cond − ε̂_uncond)
// w = 1 is the plain conditional prediction, w = 0 the unconditional one. Both predictions
// run as one batch of 2B rows: the given condition, then the null one (label K or the
// learned null vector).  B = batch, S = floats per sample, Dc = conditioning-vector size.
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

/// Samples per network call of a prediction (DDPM_PREDICT_CHUNK in ddpm.h).
public let predictionChunk = 256

/// A model's network with fixed weights and guidance scale, as a Denoiser.
final class GuidedDenoiser: Denoiser {
    static let chunk = predictionChunk
    let network: DenoisingNetwork
    let params: UnsafePointer<Float>  // (P,) the weights to use
    let guidanceScale: Float
    let sampleSize: Int
    let predictionType: PredictionType  // the model's training target
    let ts: Buffer<Int32>  // (2C,) the shared timestep; C = min(B, chunk)
    let labels2: Buffer<Int32>  // (2C,) cond labels then null labels (class conditioning)
    let vectors2: Buffer<Float>  // (2C, Dc) cond vectors then unread rows (vector conditioning)
    let null2: Buffer<UInt8>  // (2C,) 0 then 1: the second half takes the null vector or context
    let tokens2: Buffer<Int32>  // (2C, Lmax) cond token ids then unread rows (token conditioning)
    let lengths2: Buffer<Int32>  // (2C,) cond lengths then unread rows (sequence and token conditioning)
    let x2: Buffer<Float>  // (2C, S)
    let out2: Buffer<Float>  // (2C, O) the network's outputs, O = S or 2S with a learned variance
    let variance: Buffer<Float>  // (B, S) the learned variance's v of the last prediction (conditional), or empty
    var rng = Philox(seed: 0)  // the forward pass takes one; inference draws nothing from it

    var lastVariance: UnsafePointer<Float>? { network.learnsVariance ? UnsafePointer(variance.pointer) : nil }

    /// Floats (and 4-byte integers) it holds per row of a batch: the shared t, the learned
    /// variance and, when guided, the doubled batch (labels, x and output), or the whole output
    /// of an unguided pass with a learned variance.
    static func floatsPerRow(sampleSize S: Int, outputSize O: Int, vectorDim Dc: Int, guided: Bool) -> Double {
        Double(O - S) + (guided ? Double(6 + 2 * S + 2 * O + 2 * Dc) : 2 + Double(O == S ? 0 : O))
    }

    /// - Parameter guided: the predictions combine a conditional and an unconditional pass.
    init(network: DenoisingNetwork, params: UnsafePointer<Float>, guidanceScale: Float, batch: Int, guided: Bool,
         target: PredictionType) throws {
        self.network = network
        predictionType = target
        self.params = params
        self.guidanceScale = guidanceScale
        sampleSize = network.sampleSize
        variance = try Buffer(count: network.learnsVariance ? batch * network.sampleSize : 0)
        let batch = min(batch, GuidedDenoiser.chunk)
        let rows = guided ? 2 * batch : 0
        ts = try Buffer(count: 2 * batch, zero: 0)
        let c = network.conditioning
        let (Dc, K) = (c.vectorDim, c.numClasses)
        labels2 = try Buffer(count: K > 0 ? rows : 0, zero: 0)
        vectors2 = try Buffer(count: rows * max(Dc, c.maxLength * c.contextDim), zero: 0)
        tokens2 = try Buffer(count: c.vocabulary > 0 ? rows * c.maxLength : 0, zero: 0)
        lengths2 = try Buffer(count: c.maxLength > 0 ? rows : 0, zero: 0)
        null2 = try Buffer(count: K == 0 ? rows : 0, zero: 0)
        x2 = try Buffer(count: rows * network.sampleSize)
        out2 = try Buffer(count: (network.learnsVariance ? max(rows, batch) : rows) * network.outputSize)
    }

    func predict(_ out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, t: Int,
                 cond: ConditionBatch, batch: Int) throws {
        let S = sampleSize
        ts.fill(Int32(t))
        for start in stride(from: 0, to: batch, by: GuidedDenoiser.chunk) {
            predictChunk(out + start * S, variance: variance.pointer + (network.learnsVariance ? start * S : 0),
                         x: x + start * S, cond: cond.rows(from: start, count: min(GuidedDenoiser.chunk, batch - start)),
                         batch: min(GuidedDenoiser.chunk, batch - start))
        }
    }

    /// predict for one chunk of B ≤ chunk samples; v (B, S) too when the variance is learned.
    func predictChunk(_ out: UnsafeMutablePointer<Float>, variance v: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>,
                      cond: ConditionBatch, batch B: Int) {
        let S = sampleSize
        let w = guidanceScale
        guard cond.isGiven, network.conditioning.isConditional, w != 1 else {
            // Plain prediction: conditional if a condition was given, else the null one.
            forward(out, variance: v, x: x, cond: cond, batch: B)
            return
        }
        if w == 0 {
            forward(out, variance: v, x: x, cond: .none, batch: B)
            return
        }
        x2.pointer.update(from: x, count: B * S)
        (x2.pointer + B * S).update(from: x, count: B * S)
        // The doubled batch: rows 0..<B with the condition, rows B..<2B with the null one.
        var cond2 = ConditionBatch.none
        if let vectors = cond.vectors {
            let Dc = cond.vectorDim
            vectors2.pointer.update(from: vectors, count: B * Dc)  // rows B..<2B are not read
            null2.pointer.update(repeating: 0, count: B)
            (null2.pointer + B).update(repeating: 1, count: B)
            cond2 = ConditionBatch(vectors: vectors2.pointer, vectorDim: Dc, null: null2.pointer)
        } else if cond.context != nil || cond.tokens != nil {
            let L = cond.maxLength
            cond2 = ConditionBatch(null: null2.pointer)
            (cond2.maxLength, cond2.contextDim) = (L, cond.contextDim)
            if let context = cond.context {
                vectors2.pointer.update(from: context, count: B * L * cond.contextDim)  // rows B..<2B are not read
                cond2.context = UnsafePointer(vectors2.pointer)
            }
            if let tokens = cond.tokens {
                tokens2.pointer.update(from: tokens, count: B * L)
                cond2.tokens = UnsafePointer(tokens2.pointer)
            }
            if let lengths = cond.lengths { lengths2.pointer.update(from: lengths, count: B) }
            else { lengths2.pointer.update(repeating: Int32(L), count: B) }
            cond2.lengths = UnsafePointer(lengths2.pointer)
            null2.pointer.update(repeating: 0, count: B)
            (null2.pointer + B).update(repeating: 1, count: B)
        } else if let labels = cond.labels {
            labels2.pointer.update(from: labels, count: B)
            (labels2.pointer + B).update(repeating: Int32(network.numClasses), count: B)
            cond2 = ConditionBatch(labels: labels2.pointer)
        }
        network.forward(out2.pointer, x: x2.pointer, t: ts.pointer, cond: cond2, batch: 2 * B,
                        params: params, training: false, rng: &rng)
        // Guidance mixes the outputs; a learned variance is the conditional prediction's (as GLIDE).
        let O = network.outputSize
        if O == S {
            let (cond, uncond) = (out2.pointer, out2.pointer + B * S)
            for i in 0..<B * S { out[i] = uncond[i] + w * (cond[i] - uncond[i]) }
            return
        }
        for b in 0..<B {
            let (cond, uncond) = (out2.pointer + b * O, out2.pointer + (B + b) * O)
            for i in 0..<S { out[b * S + i] = uncond[i] + w * (cond[i] - uncond[i]) }
            (v + b * S).update(from: cond + S, count: S)
        }
    }

    /// One forward pass at ts[0..<B]: the output to `out` (B, S), v to `variance` when learned.
    func forward(_ out: UnsafeMutablePointer<Float>, variance v: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>,
                 cond: ConditionBatch, batch B: Int) {
        guard network.learnsVariance else {
            network.forward(out, x: x, t: ts.pointer, cond: cond, batch: B, params: params, training: false, rng: &rng)
            return
        }
        network.forward(out2.pointer, x: x, t: ts.pointer, cond: cond, batch: B, params: params, training: false, rng: &rng)
        split(out2.pointer, into: out, v, batch: B, sampleSize: sampleSize)
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
    /// them, the condition of the batch and the memory of the call once, and reserving the network's
    /// buffers. `extraFloatsPerRow`: what the caller holds besides (a sampler's buffers).
    func denoiser(_ options: PredictOptions, cond: ConditionBatch, batch: Int, extraFloatsPerRow: Double = 0,
                  _ what: @autoclosure () -> String = "a prediction") throws -> GuidedDenoiser {
        try require(batch >= 1, "batch must be >= 1 (got \(batch))")
        try options.validate()
        let S = network.sampleSize
        let c = network.conditioning
        let conditionFloats = max(c.vectorDim, c.maxLength * (c.contextDim + 1))  // per row of the doubled batch
        let guided = cond.isGiven && network.conditioning.isConditional && options.guidanceScale != 1 && options.guidanceScale != 0
        // The network runs on chunks of at most GuidedDenoiser.chunk samples (twice that guided).
        let chunk = min(batch, GuidedDenoiser.chunk)
        let rows = guided ? 2 * chunk : chunk
        try requireMemory("\(what()) for a batch of \(batch)", floats: network.activationFloats(batch: rows, training: false)
                          + Double(batch) * (GuidedDenoiser.floatsPerRow(sampleSize: S, outputSize: network.outputSize,
                                                                         vectorDim: conditionFloats, guided: guided) + extraFloatsPerRow))
        try validate(cond: cond, batch: batch)
        try network.reserve(batch: rows, training: false)
        return try GuidedDenoiser(network: network, params: options.useEMA ? ema.pointer : network.parameters.values.pointer,
                                  guidanceScale: options.guidanceScale, batch: batch, guided: guided, target: training.target)
    }
}
