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
    var rng: Philox  // every training draw: t, ε, label dropout, dropout
    /// Train steps taken so far.
    public internal(set) var step = 0
    var buffers: TrainBuffers

    /// Per-batch training buffers, grown when a larger batch arrives.
    struct TrainBuffers {
        let capacity: Int
        let xt, eps, epsHat, dout: Buffer<Float>  // (B, S)
        let t, labels: Buffer<Int32>  // (B,)
        let coin: Buffer<Float>  // (B,) uniforms for label dropout
        /// Floats (and 4-byte integers) per row.
        static func floatsPerRow(sampleSize S: Int) -> Double { Double(4 * S + 3) }
        init(batch: Int, sampleSize: Int) throws {
            capacity = batch
            xt = try Buffer(count: batch * sampleSize); eps = try Buffer(count: batch * sampleSize)
            epsHat = try Buffer(count: batch * sampleSize); dout = try Buffer(count: batch * sampleSize)
            t = try Buffer(count: batch, zero: 0); labels = try Buffer(count: batch, zero: 0)
            coin = try Buffer(count: batch)
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
        network = try config.makeNetwork(conditioning: conditioning, timesteps: schedule.count, rng: &initRNG) { layout in
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
        buffers = try TrainBuffers(batch: 0, sampleSize: network.sampleSize)
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

    /// Checks that labels are in 0...K (K = null) for a conditional network.
    func validate(labels: UnsafePointer<Int32>?, batch: Int) throws {
        guard let labels else { return }
        let K = network.numClasses
        try require(K > 0, "labels were given but the model is unconditional (num_classes = 0)")
        for b in 0..<batch where labels[b] < 0 || Int(labels[b]) > K {
            throw DDPMError.invalidArgument("label[\(b)] = \(labels[b]) is outside 0..<\(K) (or \(K) for no class)")
        }
    }

    /// One step of DDPM Algorithm 1 on a batch x_0 (B, S) with optional labels (B,):
    /// t ~ U{0..T−1}, ε ~ N(0, I), x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε, L = mean‖ε − ε_θ(x_t, t)‖²,
    /// backward, clip, AdamW, EMA.
    /// - Returns: the loss before the update.
    /// - Throws: on a bad batch or labels, a batch over the memory limit, non-finite data,
    ///   or `.nonFinite` when the loss, the gradient norm or any updated parameter, AdamW
    ///   moment or EMA weight would not be finite: the step is then not applied (parameters,
    ///   EMA, moments and step counters unchanged; the draws of the step are spent), so that
    ///   training can go on, e.g. with a lower learning rate.
    public func trainStep(x0: UnsafePointer<Float>, labels: UnsafePointer<Int32>?, batch B: Int) throws -> Float {
        try require(B >= 1, "batch must be >= 1 (got \(B))")
        let S = network.sampleSize
        try requireMemory("a train step on a batch of \(B)", floats: network.activationFloats(batch: B, training: true)
                          + Double(max(B, buffers.capacity)) * TrainBuffers.floatsPerRow(sampleSize: S))
        try requireFinite(x0, count: B * S, "x0")
        try validate(labels: labels, batch: B)
        if buffers.capacity < B { buffers = try TrainBuffers(batch: B, sampleSize: S) }
        try network.reserve(batch: B, training: true)
        let buf = buffers
        // t ~ U{0..T−1}, ε ~ N(0, I), x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε
        rng.fillUniformInt(buf.t.pointer, count: B, below: schedule.count)
        rng.fillNormal(buf.eps.pointer, count: B * S)
        try schedule.addNoise(buf.xt.pointer, x0: x0, noise: buf.eps.pointer, t: buf.t.pointer, batch: B, dim: S)
        var netLabels: UnsafePointer<Int32>? = nil
        if network.numClasses > 0 {
            // Label dropout: a row keeps its label with probability 1 − p, else gets the null label K.
            rng.fillUniform(buf.coin.pointer, count: B)
            let K = Int32(network.numClasses)
            for b in 0..<B {
                let given = labels?[b] ?? K
                buf.labels.pointer[b] = buf.coin.pointer[b] < training.labelDropout ? K : given
            }
            netLabels = UnsafePointer(buf.labels.pointer)
        }
        let params = network.parameters
        network.forward(buf.epsHat.pointer, x: buf.xt.pointer, t: buf.t.pointer, labels: netLabels, batch: B,
                        params: params.values.pointer, training: true, rng: &rng)
        let loss = SimpleLoss.forwardBackward(dout: buf.dout.pointer, predicted: buf.epsHat.pointer,
                                              target: buf.eps.pointer, count: B * S)
        guard loss.isFinite else {
            throw DDPMError.nonFinite("the loss became \(loss) at step \(step); lower the learning rate")
        }
        params.zeroGrads()
        network.backward(dout: buf.dout.pointer, batch: B)
        var clip = GradientClipping.scale(params.grads.pointer, count: params.count, maxNorm: training.gradClip)
        if !clip.norm.isFinite { clip = try backwardAgainScaled(dout: buf.dout.pointer, batch: B, loss: loss) }
        let emaDecay = EMA.decay(training.emaDecay, afterSteps: step)
        try requireFiniteUpdate(gradScale: clip.scale, emaDecay: emaDecay)
        optimizer.update(params.values.pointer, grads: params.grads.pointer, gradScale: clip.scale)
        EMA.update(ema.pointer, params: params.values.pointer, count: params.count, decay: emaDecay)
        step += 1
        return loss
    }

    /// Array form of `trainStep` for Swift callers: x0 is (B, S) flattened.
    public func trainStep(x0: [Float], labels: [Int32]? = nil) throws -> Float {
        let S = network.sampleSize
        try require(!x0.isEmpty && x0.count % S == 0, "x0 has \(x0.count) floats, not a multiple of \(S)")
        let B = x0.count / S
        if let labels { try require(labels.count == B, "labels has \(labels.count) entries, expected \(B)") }
        return try x0.withUnsafeBufferPointer { x in
            try withOptionalPointer(labels) { try trainStep(x0: x.baseAddress!, labels: $0, batch: B) }
        }
    }

    /// A copy of the EMA weights, (P,).
    public var emaValues: [Float] { ema.array }
}

/// Calls `body` with a pointer to the array's storage, or nil.
func withOptionalPointer<T, R>(_ array: [T]?, _ body: (UnsafePointer<T>?) throws -> R) rethrows -> R {
    guard let array else { return try body(nil) }
    return try array.withUnsafeBufferPointer { try body($0.baseAddress) }
}
