// Our network as an ε-predictor, with classifier-free guidance (Ho & Salimans 2022):
//   ε̂ = ε̂_uncond + w·(ε̂_cond − ε̂_uncond)
// w = 1 is the plain conditional prediction, w = 0 the unconditional one.
// Both predictions run as one batch of 2B rows.  B = batch, S = floats per sample.

/// Runs a model's network with fixed weights (EMA or live) and guidance scale.
final class GuidedPredictor: EpsilonPredictor {
    let network: EpsilonNetwork
    let params: UnsafePointer<Float>  // (P,) the weights to use
    let guidanceScale: Float
    let sampleSize: Int
    let ts: Buffer<Int32>  // (2B,) the shared timestep
    let labels2: Buffer<Int32>  // (2B,) cond labels then null labels
    let x2: Buffer<Float>, eps2: Buffer<Float>  // (2B, S)
    var rng = Philox(seed: 0)  // unused: no dropout at inference

    init(network: EpsilonNetwork, params: UnsafePointer<Float>, guidanceScale: Float, batch: Int) {
        self.network = network
        self.params = params
        self.guidanceScale = guidanceScale
        sampleSize = network.sampleSize
        ts = Buffer(count: 2 * batch, zero: 0)
        labels2 = Buffer(count: 2 * batch, zero: 0)
        x2 = Buffer(count: 2 * batch * network.sampleSize)
        eps2 = Buffer(count: 2 * batch * network.sampleSize)
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
        network.forward(eps2.pointer, x: x2.pointer, t: ts.pointer, labels: labels2.pointer, batch: 2 * B,
                        params: params, training: false, rng: &rng)
        let (cond, uncond) = (eps2.pointer, eps2.pointer + B * S)
        for i in 0..<B * S { out[i] = uncond[i] + w * (cond[i] - uncond[i]) }
    }
}

extension DiffusionModel {
    /// ε̂ (B, S) for x (B, S) at timestep t with the given weights and guidance scale.
    /// - Parameters:
    ///   - labels: (B,) in 0...K, or nil for unconditional.
    ///   - useEMA: predict with the EMA weights (the default for sampling) or the live ones.
    public func predictEpsilon(_ out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, t: Int,
                               labels: UnsafePointer<Int32>?, batch: Int, guidanceScale: Float = 1,
                               useEMA: Bool = true) throws {
        try require(batch >= 1, "batch must be >= 1 (got \(batch))")
        try schedule.check(t: t)
        try validate(labels: labels, batch: batch)
        try requireFinite(x, count: batch * network.sampleSize, "x")
        try require(guidanceScale.isFinite, "guidance scale must be finite")
        try predictor(useEMA: useEMA, guidanceScale: guidanceScale, batch: batch)
            .predict(out, x: x, t: t, labels: labels, batch: batch)
    }

    func predictor(useEMA: Bool, guidanceScale: Float, batch: Int) -> GuidedPredictor {
        GuidedPredictor(network: network, params: useEMA ? ema.pointer : network.parameters.values.pointer,
                        guidanceScale: guidanceScale, batch: batch)
    }
}
