// The training recipe of a model (ddpm_train_params in C, TrainConfig in Python; stored
// in checkpoints as JSON with the C field names; condition dropout under its first name,
// "label_dropout", so that checkpoints read the same either way).

/// Optimisation settings of a model (stored in checkpoints).
public struct TrainingConfig: Codable, Sendable, Equatable {
    public var optimizer = AdamWConfig()
    /// Clip the global gradient norm to this value; 0 disables clipping.
    public var gradClip: Float = 1
    /// EMA decay d in θ_ema ← d_n·θ_ema + (1−d_n)·θ, with warm-up d_n = min(d, (1+n)/(10+n)).
    public var emaDecay: Float = 0.995
    /// Probability of training a row on the null condition instead of its own (the null label,
    /// vector or context; classifier-free guidance's condition dropout).
    public var conditionDropout: Float = 0.1
    /// `conditionDropout` under its name before 0.3.
    public var labelDropout: Float {
        get { conditionDropout }
        set { conditionDropout = newValue }
    }
    /// Seeds parameter initialisation and every training draw.
    public var seed: UInt64 = 0
    /// What the network predicts (Objective.swift).
    public var target: PredictionType = .epsilon
    /// How each sample's error is weighted.
    public var lossWeighting: LossWeighting = .uniform
    /// γ of min-SNR-γ weighting.
    public var minSNRGamma: Float = 5
    /// The network also outputs its reverse variance, trained by the hybrid loss (VarianceLoss.swift).
    public var learnedVariance = false
    /// λ of the hybrid loss L_simple + λ·L_vlb.
    public var vlbLambda: Float = 0.001
    /// How t is drawn (TimestepSampler.swift).
    public var timestepSampling: TimestepSampling = .uniform
    public init() {}

    enum CodingKeys: String, CodingKey {
        case learningRate = "learning_rate", beta1, beta2, adamEps = "adam_eps", weightDecay = "weight_decay"
        case gradClip = "grad_clip", emaDecay = "ema_decay", conditionDropout = "label_dropout", seed
        case target = "prediction_target", lossWeighting = "loss_weighting", minSNRGamma = "min_snr_gamma"
        case learnedVariance = "learned_variance", vlbLambda = "vlb_lambda", timestepSampling = "timestep_sampling"
    }

    static let targetNames: [PredictionType: String] = [.epsilon: "eps", .x0: "x0", .v: "v"]
    static let weightingNames: [LossWeighting: String] = [.uniform: "uniform", .minSNR: "min_snr", .vlb: "vlb"]
    static let samplingNames: [TimestepSampling: String] = [.uniform: "uniform", .importance: "importance"]

    /// Flat, as the C struct: the optimizer's fields stand beside the others.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        optimizer = AdamWConfig(learningRate: try c.decode(Float.self, forKey: .learningRate),
                                beta1: try c.decode(Float.self, forKey: .beta1), beta2: try c.decode(Float.self, forKey: .beta2),
                                epsilon: try c.decode(Float.self, forKey: .adamEps),
                                weightDecay: try c.decode(Float.self, forKey: .weightDecay))
        gradClip = try c.decode(Float.self, forKey: .gradClip)
        emaDecay = try c.decode(Float.self, forKey: .emaDecay)
        conditionDropout = try c.decode(Float.self, forKey: .conditionDropout)
        seed = try c.decode(UInt64.self, forKey: .seed)
        // Absent in checkpoints before these fields existed: ε, uniform.
        func named<T>(_ key: CodingKeys, _ names: [T: String], _ fallback: T) throws -> T {
            guard let name = try c.decodeIfPresent(String.self, forKey: key) else { return fallback }
            guard let value = names.first(where: { $0.value == name })?.key else {
                throw DecodingError.dataCorruptedError(forKey: key, in: c, debugDescription: "unknown \(key.stringValue) '\(name)'")
            }
            return value
        }
        target = try named(.target, Self.targetNames, .epsilon)
        lossWeighting = try named(.lossWeighting, Self.weightingNames, .uniform)
        minSNRGamma = try c.decodeIfPresent(Float.self, forKey: .minSNRGamma) ?? 5
        learnedVariance = try c.decodeIfPresent(Bool.self, forKey: .learnedVariance) ?? false
        vlbLambda = try c.decodeIfPresent(Float.self, forKey: .vlbLambda) ?? 0.001
        timestepSampling = try named(.timestepSampling, Self.samplingNames, .uniform)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(optimizer.learningRate, forKey: .learningRate)
        try c.encode(optimizer.beta1, forKey: .beta1)
        try c.encode(optimizer.beta2, forKey: .beta2)
        try c.encode(optimizer.epsilon, forKey: .adamEps)
        try c.encode(optimizer.weightDecay, forKey: .weightDecay)
        try c.encode(gradClip, forKey: .gradClip)
        try c.encode(emaDecay, forKey: .emaDecay)
        try c.encode(conditionDropout, forKey: .conditionDropout)
        try c.encode(seed, forKey: .seed)
        try c.encode(Self.targetNames[target], forKey: .target)
        try c.encode(Self.weightingNames[lossWeighting], forKey: .lossWeighting)
        try c.encode(minSNRGamma, forKey: .minSNRGamma)
        try c.encode(learnedVariance, forKey: .learnedVariance)
        try c.encode(vlbLambda, forKey: .vlbLambda)
        try c.encode(Self.samplingNames[timestepSampling], forKey: .timestepSampling)
    }

    func validate() throws {
        try optimizer.validate()
        try require(gradClip.isFinite && gradClip >= 0, "grad_clip must be >= 0 (got \(gradClip))")
        try require(emaDecay >= 0 && emaDecay <= 1, "ema_decay must be in [0, 1] (got \(emaDecay))")
        try require(conditionDropout >= 0 && conditionDropout <= 1,
                    "condition_dropout (label_dropout) must be in [0, 1] (got \(conditionDropout))")
        try require(minSNRGamma.isFinite && minSNRGamma > 0, "min_snr_gamma must be > 0 (got \(minSNRGamma))")
        try require(vlbLambda.isFinite && vlbLambda >= 0, "vlb_lambda must be >= 0 (got \(vlbLambda))")
    }

    /// The objective these settings describe over `schedule`.
    func objective(_ schedule: NoiseSchedule) -> Objective {
        Objective(schedule: schedule, target: target, weighting: lossWeighting, gamma: Double(minSNRGamma))
    }
}

