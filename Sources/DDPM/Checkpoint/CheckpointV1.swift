// Reading the configuration of format-version-1 checkpoints (library 0.1), which stored
// Swift's own Codable encoding: {"mlp": {"_0": {"dataDim": 2, …}}}, a nested optimizer,
// and {"linear": {"betaStart": …}} as "schedule_kind". Tensors are the same as in version 2.
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

enum CheckpointV1 {
    /// The training recipe as 0.1 encoded it.
    private struct Training: Decodable {
        var optimizer: AdamWConfig
        var gradClip: Float, emaDecay: Float, labelDropout: Float
        var seed: UInt64
    }

    static func config(_ file: SafeTensors.File) throws -> CheckpointConfig {
        let networks: V1Network = try decode(file.meta("network"), "network")
        let network: NetworkConfig
        switch (networks.mlp?["_0"], networks.unet?["_0"]) {
        case (.some(let m), nil): network = .mlp(m.config)
        case (nil, .some(let u)): network = .unet(u.config)
        default: throw DDPMError.format("checkpoint metadata 'network' names no known network")
        }
        let t: Training = try decode(file.meta("training"), "training")
        var training = TrainingConfig()
        training.optimizer = t.optimizer
        (training.gradClip, training.emaDecay, training.labelDropout, training.seed) = (t.gradClip, t.emaDecay, t.labelDropout, t.seed)
        let kinds: [String: [String: Double]] = try decode(file.meta("schedule_kind"), "schedule_kind")
        guard kinds.count == 1, let (name, v) = kinds.first else {
            throw DDPMError.format("checkpoint metadata 'schedule_kind' names no schedule kind")
        }
        func field(_ key: String) throws -> Double {
            guard let x = v[key] else { throw DDPMError.format("checkpoint schedule_kind '\(name)' has no '\(key)'") }
            return x
        }
        let kind: NoiseSchedule.Kind
        switch name {
        case "linear": kind = .linear(betaStart: try field("betaStart"), betaEnd: try field("betaEnd"))
        case "cosine": kind = .cosine(offset: try field("offset"), maxBeta: try field("maxBeta"))
        case "sigmoid": kind = .sigmoid(betaMin: try field("betaMin"), betaMax: try field("betaMax"),
                                        start: try field("start"), end: try field("end"))
        case "custom": kind = .custom
        default: throw DDPMError.format("checkpoint schedule kind '\(name)' is unknown")
        }
        let k = try classCount(file.meta("network"))
        return CheckpointConfig(network: network, training: training, conditioning: k > 0 ? .classes(k) : .none,
                                scheduleKind: kind)
    }
}

/// A version-1 network: {"mlp": {"_0": {…}}} or {"unet": {"_0": {…}}}, the config's fields under
/// their Swift names (dataDim) beside numClasses.
private struct V1Network: Decodable {
    var mlp: [String: V1Payload<ResidualMLP.Config>]?
    var unet: [String: V1Payload<UNetConfig>]?
}

private struct V1Payload<Config: FieldCoded>: Decodable {
    let config: Config
    init(from decoder: Decoder) throws { config = try Config.fields.decode(from: decoder, spelling: camelCase, others: ["numClasses"]) }
}

/// num_classes as version 1 kept it, inside the network's JSON.
private func classCount(_ text: String) throws -> Int {
    struct Classes: Decodable { var numClasses: Int }
    let payload: [String: [String: Classes]] = try decode(text, "network")
    guard let k = payload.values.first?["_0"]?.numClasses, k >= 0 else {
        throw DDPMError.format("checkpoint metadata 'network' has no valid numClasses")
    }
    return k
}
