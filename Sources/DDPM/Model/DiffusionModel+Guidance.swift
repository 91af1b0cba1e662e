// How a model predicts: with which weights (EMA or live) and which classifier-free
// guidance (Ho & Salimans 2022):
//   ε̂ = ε̂_uncond + w·(ε̂_cond − ε̂_uncond)
// w = 1 is the plain conditional prediction, w = 0 the unconditional one. Both predictions
// run as one batch of 2B rows.  B = batch, S = floats per sample.

/// The weights and guidance of a prediction (ddpm_predict_params in C). Checked once, in
/// `DiffusionModel.denoiser(_:batch:)`.
public struct PredictOptions: Sendable, Equatable {
    /// Classifier-free guidance scale w (1 = conditional, 0 = unconditional); used when labels are given.
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

/// A model's network with fixed weights and guidance scale, as a Denoiser.
final class GuidedDenoiser: Denoiser {
    let network: DenoisingNetwork
    let params: UnsafePointer<Float>  // (P,) the weights to use
    let guidanceScale: Float
    let sampleSize: Int
    var predictionType: PredictionType { .epsilon }
    let ts: Buffer<Int32>  // (2B,) the shared timestep
    let labels2: Buffer<Int32>  // (2B,) cond labels then null labels
    let x2: Buffer<Float>, out2: Buffer<Float>  // (2B, S)
    var rng = Philox(seed: 0)  // the forward pass takes one; inference draws nothing from it

    /// Floats (and 4-byte integers) it holds per row of a batch: the shared t and, when guided,
    /// the doubled batch (labels, x and output).
    static func floatsPerRow(sampleSize S: Int, guided: Bool) -> Double { guided ? Double(4 + 4 * S) : 2 }

    /// - Parameter guided: the predictions combine a conditional and an unconditional pass.
    init(network: DenoisingNetwork, params: UnsafePointer<Float>, guidanceScale: Float, batch: Int, guided: Bool) throws {
        self.network = network
        self.params = params
        self.guidanceScale = guidanceScale
        sampleSize = network.sampleSize
        let rows = guided ? 2 * batch : 0
        ts = try Buffer(count: 2 * batch, zero: 0)
        labels2 = try Buffer(count: rows, zero: 0)
        x2 = try Buffer(count: rows * network.sampleSize)
        out2 = try Buffer(count: rows * network.sampleSize)
    }

    func predict(_ out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, t: Int,
                 labels: UnsafePointer<Int32>?, batch B: Int) throws {
        let S = sampleSize
        ts.fill(Int32(t))
        let w = guidanceScale
        guard let labels, network.numClasses > 0, w != 1 else {
            // Plain prediction: conditional if labels were given, else null labels.
            network.forward(out, x: x, t: ts.pointer, labels: labels, batch: B, params: params, training: false, rng: &rng)
            return
        }
        if w == 0 {
            network.forward(out, x: x, t: ts.pointer, labels: nil, batch: B, params: params, training: false, rng: &rng)
            return
        }
        let K = Int32(network.numClasses)
        x2.pointer.update(from: x, count: B * S)
        (x2.pointer + B * S).update(from: x, count: B * S)
        labels2.pointer.update(from: labels, count: B)
        (labels2.pointer + B).update(repeating: K, count: B)
        network.forward(out2.pointer, x: x2.pointer, t: ts.pointer, labels: labels2.pointer, batch: 2 * B,
                        params: params, training: false, rng: &rng)
        let (cond, uncond) = (out2.pointer, out2.pointer + B * S)
        for i in 0..<B * S { out[i] = uncond[i] + w * (cond[i] - uncond[i]) }
    }
}

extension DiffusionModel {
    /// The model's prediction (B, S) for x (B, S) at timestep t, as `output` (ε̂ or x̂_0).
    /// - Parameters:
    ///   - labels: (B,) in 0...K, or nil for unconditional.
    ///   - options: the weights and the guidance scale.
    public func predict(_ out: UnsafeMutablePointer<Float>, output: PredictionType = .epsilon, x: UnsafePointer<Float>,
                        t: Int, labels: UnsafePointer<Int32>?, batch: Int, options: PredictOptions = .init()) throws {
        let denoiser = try denoiser(options, labels: labels, batch: batch)
        try schedule.check(t: t)
        try requireFinite(x, count: batch * network.sampleSize, "x")
        try denoiser.predict(out, x: x, t: t, labels: labels, batch: batch)
        try schedule.convert(out, output: out, from: denoiser.predictionType, to: output, x: x, t: t,
                             count: batch * network.sampleSize)
    }

    /// The network as a Denoiser with the weights and guidance of `options`, after checking
    /// them, the labels (B,) and the memory of the call once, and reserving the network's
    /// buffers. `extraFloatsPerRow`: what the caller holds besides (a sampler's buffers).
    func denoiser(_ options: PredictOptions, labels: UnsafePointer<Int32>?, batch: Int, extraFloatsPerRow: Double = 0,
                  _ what: @autoclosure () -> String = "a prediction") throws -> GuidedDenoiser {
        try require(batch >= 1, "batch must be >= 1 (got \(batch))")
        try options.validate()
        let S = network.sampleSize
        let guided = labels != nil && network.numClasses > 0 && options.guidanceScale != 1 && options.guidanceScale != 0
        let rows = guided ? 2 * batch : batch
        try requireMemory("\(what()) for a batch of \(batch)", floats: network.activationFloats(batch: rows, training: false)
                          + Double(batch) * (GuidedDenoiser.floatsPerRow(sampleSize: S, guided: guided) + extraFloatsPerRow))
        try validate(labels: labels, batch: batch)
        try network.reserve(batch: rows, training: false)
        return try GuidedDenoiser(network: network, params: options.useEMA ? ema.pointer : network.parameters.values.pointer,
                                  guidanceScale: options.guidanceScale, batch: batch, guided: guided)
    }
}
