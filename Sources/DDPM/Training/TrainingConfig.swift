// The training recipe of a model (ddpm_train_params in C, TrainConfig in Python; stored
// in checkpoints as JSON with the C field names; condition dropout under its first name,
// "label_dropout", so that checkpoints read the same either way). A new field: its property
// and its row in `fields` (JSON, default when absent, bound), then its row in the C table
// (Sources/DDPMC).

/// Optimisation settings of a model (stored in checkpoints).
public struct TrainingConfig: Codable, Sendable, Equatable, FieldCoded {
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

    /// Flat, as the C struct: the optimizer's fields stand beside the others. The optimizer's
    /// own checks are AdamWConfig.validate's.
    static let fields = ConfigFields(defaults: TrainingConfig(), [
        .value("learning_rate", \.optimizer.learningRate),
        .value("beta1", \.optimizer.beta1),
        .value("beta2", \.optimizer.beta2),
        .value("adam_eps", \.optimizer.epsilon),
        .value("weight_decay", \.optimizer.weightDecay),
        .number("grad_clip", \.gradClip, .atLeast(0)),
        .number("ema_decay", \.emaDecay, .within(0, 1)),
        .number("label_dropout", \.conditionDropout, .within(0, 1)),
        .value("seed", \.seed),
        .named("prediction_target", \.target, [.epsilon: "eps", .x0: "x0", .v: "v"]),
        .named("loss_weighting", \.lossWeighting, [.uniform: "uniform", .minSNR: "min_snr", .vlb: "vlb"]),
        .number("min_snr_gamma", \.minSNRGamma, .above(0)),
        .value("learned_variance", \.learnedVariance),
        .number("vlb_lambda", \.vlbLambda, .atLeast(0)),
        .named("timestep_sampling", \.timestepSampling, [.uniform: "uniform", .importance: "importance"]),
    ])

    public init(from decoder: Decoder) throws { self = try Self.fields.decode(from: decoder) }
    public func encode(to encoder: Encoder) throws { try Self.fields.encode(self, to: encoder) }

    func validate() throws {
        try optimizer.validate()
        try Self.fields.validate(self)
    }

    /// The objective these settings describe over `schedule`.
    func objective(_ schedule: NoiseSchedule) -> Objective {
        Objective(schedule: schedule, target: target, weighting: lossWeighting, gamma: Double(minSNRGamma))
    }
}

