// The params structs of ddpm.h <-> the engine's configs: defaults, validation of what
// only C can get wrong (struct sizes, enum values, array lengths), and the way back.
// Range checks of the values themselves are the engine's (one place, for every caller).
import CDDPM
import DDPM

// ---- Reading a caller's struct --------------------------------------------------------

/// Reads a caller's params struct of `struct_size` bytes over our defaults, so that a caller
/// built against an older, shorter struct keeps working and a newer one's tail is ignored.
/// `sizeAt` is where struct_size sits (0, or inside the network head).
func readParams<T>(_ p: UnsafePointer<T>?, defaults: T, _ name: String) throws -> T {
    let p = try nonNull(p, name)
    return try readStruct(UnsafeRawPointer(p), defaults: defaults, name)
}

func readStruct<T>(_ raw: UnsafeRawPointer, defaults: T, _ name: String) throws -> T {
    let given = raw.load(as: Int.self)  // struct_size is the first field
    guard given >= MemoryLayout<Int>.size, given <= 1 << 20 else {
        throw DDPMError.invalidArgument("\(name)->struct_size is \(given); initialise it with its _default() function")
    }
    var value = defaults
    withUnsafeMutableBytes(of: &value) { dst in
        dst.copyMemory(from: UnsafeRawBufferPointer(start: raw, count: min(given, MemoryLayout<T>.size)))
    }
    return value
}

/// Writes `value` to a caller's struct, at most its struct_size bytes (which are kept).
func writeStruct<T>(_ value: T, to out: UnsafeMutableRawPointer?, _ name: String) throws {
    let out = try nonNull(out, name)
    let given = out.load(as: Int.self)
    guard given >= MemoryLayout<Int>.size, given <= 1 << 20 else {
        throw DDPMError.invalidArgument("\(name)->struct_size is \(given); initialise it with its _default() function")
    }
    var copy = value
    let size = min(given, MemoryLayout<T>.size)
    withUnsafeBytes(of: &copy) { out.copyMemory(from: $0.baseAddress!, byteCount: size) }
    out.storeBytes(of: given, as: Int.self)
}

// ---- Networks --------------------------------------------------------------------------

@_cdecl("ddpm_mlp_params_default")
public func ddpm_mlp_params_default() -> ddpm_mlp_params {
    var p = ddpm_mlp_params()
    p.base = ddpm_network_params(struct_size: MemoryLayout<ddpm_mlp_params>.size, kind: Int32(DDPM_NETWORK_MLP.rawValue))
    let c = ResidualMLP.Config(dataDim: 0)
    (p.data_dim, p.hidden, p.depth, p.time_embed_dim) = (0, Int32(c.hidden), Int32(c.depth), Int32(c.timeEmbedDim))
    return p
}

/// The fixed-size C array as a Swift array, and back.
private let maxLevels = Int(DDPM_UNET_MAX_LEVELS)
private func array(_ tuple: (Int32, Int32, Int32, Int32, Int32, Int32, Int32, Int32)) -> [Int32] {
    withUnsafeBytes(of: tuple) { Array($0.bindMemory(to: Int32.self)) }
}
private func tuple(_ a: [Int32]) -> (Int32, Int32, Int32, Int32, Int32, Int32, Int32, Int32) {
    var t: (Int32, Int32, Int32, Int32, Int32, Int32, Int32, Int32) = (1, 1, 1, 1, 1, 1, 1, 1)
    withUnsafeMutableBytes(of: &t) { raw in
        for (i, v) in a.prefix(maxLevels).enumerated() { raw.storeBytes(of: v, toByteOffset: 4 * i, as: Int32.self) }
    }
    return t
}

@_cdecl("ddpm_unet_params_default")
public func ddpm_unet_params_default() -> ddpm_unet_params {
    var p = ddpm_unet_params()
    p.base = ddpm_network_params(struct_size: MemoryLayout<ddpm_unet_params>.size, kind: Int32(DDPM_NETWORK_UNET.rawValue))
    let c = UNetConfig(channels: 1, height: 0, width: 0)
    (p.channels, p.height, p.width) = (1, 0, 0)
    p.base_channels = Int32(c.baseChannels)
    p.num_levels = Int32(c.channelMult.count)
    p.channel_mult = tuple(c.channelMult.map { Int32($0) } + [Int32](repeating: Int32(c.channelMult.last!), count: maxLevels))
    p.res_blocks = Int32(c.resBlocks)
    p.attention_levels = UInt32(c.attentionLevelMask)
    (p.attention_heads, p.groups, p.dropout, p.time_embed_dim) = (Int32(c.attentionHeads), Int32(c.groups), c.dropout,
                                                                 Int32(c.timeEmbedDim))
    p.cross_attention_levels = 0
    return p
}

/// The engine's network config from a caller's network struct (headed by ddpm_network_params).
func networkConfig(_ head: UnsafePointer<ddpm_network_params>?) throws -> NetworkConfig {
    let head = try nonNull(head, "network")
    switch ddpm_network_kind(rawValue: UInt32(bitPattern: head.pointee.kind)) {
    case DDPM_NETWORK_MLP:
        let p = try readStruct(UnsafeRawPointer(head), defaults: ddpm_mlp_params_default(), "network")
        guard p.data_dim >= 1 else { throw DDPMError.invalidArgument("data_dim must be >= 1 for the MLP (got \(p.data_dim))") }
        return .mlp(.init(dataDim: Int(p.data_dim), hidden: Int(p.hidden), depth: Int(p.depth), timeEmbedDim: Int(p.time_embed_dim)))
    case DDPM_NETWORK_UNET:
        let p = try readStruct(UnsafeRawPointer(head), defaults: ddpm_unet_params_default(), "network")
        guard (1...maxLevels).contains(Int(p.num_levels)) else {
            throw DDPMError.invalidArgument("num_levels must be in 1...\(maxLevels) (got \(p.num_levels))")
        }
        var config = UNetConfig(
            channels: Int(p.channels), height: Int(p.height), width: Int(p.width), baseChannels: Int(p.base_channels),
            channelMult: array(p.channel_mult).prefix(Int(p.num_levels)).map { Int($0) }, resBlocks: Int(p.res_blocks),
            attentionLevels: [], attentionHeads: Int(p.attention_heads), groups: Int(p.groups), dropout: p.dropout,
            timeEmbedDim: Int(p.time_embed_dim))
        config.attentionLevelMask = Int(p.attention_levels)  // bits beyond the last level fail validation
        config.crossAttentionLevelMask = Int(p.cross_attention_levels)
        try config.validate()
        return .unet(config)
    default:
        throw DDPMError.invalidArgument("unknown network kind \(head.pointee.kind) (0 MLP, 1 UNet)")
    }
}

/// Writes a model's network config into the caller's struct of the same kind.
func writeNetwork(_ config: NetworkConfig, to out: UnsafeMutablePointer<ddpm_network_params>?) throws {
    let out = try nonNull(out, "network")
    switch config {
    case .mlp(let c):
        try requireKind(out, DDPM_NETWORK_MLP, "MLP")
        var p = ddpm_mlp_params_default()
        (p.data_dim, p.hidden, p.depth, p.time_embed_dim) = (Int32(c.dataDim), Int32(c.hidden), Int32(c.depth), Int32(c.timeEmbedDim))
        try writeStruct(p, to: out, "network")
    case .unet(let c):
        try requireKind(out, DDPM_NETWORK_UNET, "UNet")
        var p = ddpm_unet_params_default()
        (p.channels, p.height, p.width) = (Int32(c.channels), Int32(c.height), Int32(c.width))
        p.base_channels = Int32(c.baseChannels)
        p.num_levels = Int32(c.levels)
        p.channel_mult = tuple(c.channelMult.map { Int32($0) } + [Int32](repeating: Int32(c.channelMult.last!), count: maxLevels))
        p.res_blocks = Int32(c.resBlocks)
        p.attention_levels = UInt32(c.attentionLevelMask)
        (p.attention_heads, p.groups, p.dropout, p.time_embed_dim) = (Int32(c.attentionHeads), Int32(c.groups), c.dropout,
                                                                     Int32(c.timeEmbedDim))
        p.cross_attention_levels = UInt32(c.crossAttentionLevelMask)
        try writeStruct(p, to: out, "network")
    }
}

private func requireKind(_ out: UnsafeMutablePointer<ddpm_network_params>, _ kind: ddpm_network_kind, _ name: String) throws {
    guard out.pointee.kind == Int32(kind.rawValue) else {
        throw DDPMError.invalidArgument("the model's network is the \(name) (kind \(kind.rawValue)); pass that kind's struct (got kind \(out.pointee.kind))")
    }
}

// ---- Training, conditioning, prediction --------------------------------------------------

@_cdecl("ddpm_train_params_default")
public func ddpm_train_params_default() -> ddpm_train_params {
    trainParams(TrainingConfig())
}

func trainParams(_ t: TrainingConfig) -> ddpm_train_params {
    let o = t.optimizer
    var p = ddpm_train_params()  // field by field: condition_dropout is a union with its old name
    (p.struct_size, p.learning_rate, p.beta1, p.beta2) = (MemoryLayout<ddpm_train_params>.size, o.learningRate, o.beta1, o.beta2)
    (p.adam_eps, p.weight_decay, p.grad_clip, p.ema_decay) = (o.epsilon, o.weightDecay, t.gradClip, t.emaDecay)
    (p.condition_dropout, p.seed, p.prediction_target) = (t.conditionDropout, t.seed, t.target.rawValue)
    (p.loss_weighting, p.min_snr_gamma, p.learned_variance) = (t.lossWeighting.rawValue, t.minSNRGamma, t.learnedVariance ? 1 : 0)
    (p.vlb_lambda, p.timestep_sampling) = (t.vlbLambda, t.timestepSampling.rawValue)
    return p
}

/// The engine's training config (NULL means the defaults).
func trainingConfig(_ params: UnsafePointer<ddpm_train_params>?) throws -> TrainingConfig {
    guard params != nil else { return TrainingConfig() }
    let p = try readParams(params, defaults: ddpm_train_params_default(), "train")
    var t = TrainingConfig()
    t.optimizer = AdamWConfig(learningRate: p.learning_rate, beta1: p.beta1, beta2: p.beta2, epsilon: p.adam_eps,
                              weightDecay: p.weight_decay)
    (t.gradClip, t.emaDecay, t.conditionDropout, t.seed) = (p.grad_clip, p.ema_decay, p.condition_dropout, p.seed)
    t.target = try predictionType(p.prediction_target, "prediction_target")
    switch ddpm_loss_weighting(rawValue: UInt32(bitPattern: p.loss_weighting)) {
    case DDPM_LOSS_UNIFORM: t.lossWeighting = .uniform
    case DDPM_LOSS_MIN_SNR: t.lossWeighting = .minSNR
    case DDPM_LOSS_VLB: t.lossWeighting = .vlb
    default: throw DDPMError.invalidArgument("unknown loss_weighting \(p.loss_weighting) (0 uniform, 1 min-SNR, 2 VLB)")
    }
    t.minSNRGamma = p.min_snr_gamma
    (t.learnedVariance, t.vlbLambda) = (p.learned_variance != 0, p.vlb_lambda)
    switch ddpm_timestep_sampling(rawValue: UInt32(bitPattern: p.timestep_sampling)) {
    case DDPM_TIMESTEPS_UNIFORM: t.timestepSampling = .uniform
    case DDPM_TIMESTEPS_IMPORTANCE: t.timestepSampling = .importance
    default: throw DDPMError.invalidArgument("unknown timestep_sampling \(p.timestep_sampling) (0 uniform, 1 importance)")
    }
    return t
}

@_cdecl("ddpm_cond_params_default")
public func ddpm_cond_params_default() -> ddpm_cond_params {
    condParams(.none)
}

func condParams(_ c: Conditioning) -> ddpm_cond_params {
    let size = MemoryLayout<ddpm_cond_params>.size
    func make(_ kind: ddpm_cond_kind, k: Int = 0, d: Int = 0, l: Int = 0, v: Int = 0, e: TextEncoderShape = .none) -> ddpm_cond_params {
        ddpm_cond_params(struct_size: size, kind: Int32(kind.rawValue), num_classes: Int32(k), dim: Int32(d),
                         max_length: Int32(l), vocab_size: Int32(v), encoder_layers: Int32(e.layers), encoder_heads: Int32(e.heads))
    }
    switch c {
    case .none: return make(DDPM_COND_NONE)
    case .classes(let k): return make(DDPM_COND_CLASSES, k: k)
    case .vector(let d): return make(DDPM_COND_VECTOR, d: d)
    case .sequence(let d, let l): return make(DDPM_COND_SEQUENCE, d: d, l: l)
    case .tokens(let v, let l, let d, let e): return make(DDPM_COND_TOKENS, d: d, l: l, v: v, e: e)
    }
}

/// The engine's conditioning (NULL means none).
func conditioning(_ params: UnsafePointer<ddpm_cond_params>?) throws -> Conditioning {
    guard params != nil else { return .none }
    let p = try readParams(params, defaults: ddpm_cond_params_default(), "cond")
    let kind = ddpm_cond_kind(rawValue: UInt32(bitPattern: p.kind))
    // Each kind reads its fields; the others must stay 0 (a field set for another kind is a mistake).
    let used: [(String, Int32, Bool)] = [
        ("num_classes", p.num_classes, kind == DDPM_COND_CLASSES),
        ("dim", p.dim, [DDPM_COND_VECTOR, DDPM_COND_SEQUENCE, DDPM_COND_TOKENS].contains(kind)),
        ("max_length", p.max_length, [DDPM_COND_SEQUENCE, DDPM_COND_TOKENS].contains(kind)),
        ("vocab_size", p.vocab_size, kind == DDPM_COND_TOKENS),
        ("encoder_layers", p.encoder_layers, kind == DDPM_COND_TOKENS),
        ("encoder_heads", p.encoder_heads, kind == DDPM_COND_TOKENS),
    ]
    let kindName = ["NONE", "CLASSES", "VECTOR", "SEQUENCE", "TOKENS"].indices.contains(Int(p.kind))
        ? ["NONE", "CLASSES", "VECTOR", "SEQUENCE", "TOKENS"][Int(p.kind)] : "\(p.kind)"
    for (name, value, read) in used where !read && value != 0 {
        throw DDPMError.invalidArgument("\(name) is \(value) but kind is \(kindName), which does not use it; set kind (or leave \(name) 0)")
    }
    func positive(_ name: String, _ v: Int32) throws -> Int {
        guard v >= 1 else { throw DDPMError.invalidArgument("\(name) must be >= 1 for conditioning kind \(p.kind) (got \(v))") }
        return Int(v)
    }
    switch kind {
    case DDPM_COND_NONE: return .none
    case DDPM_COND_CLASSES: return .classes(Int(p.num_classes))
    case DDPM_COND_VECTOR: return .vector(Int(p.dim))
    case DDPM_COND_SEQUENCE: return .sequence(dim: try positive("dim", p.dim), maxLength: try positive("max_length", p.max_length))
    case DDPM_COND_TOKENS:
        return .tokens(vocabulary: try positive("vocab_size", p.vocab_size), maxLength: try positive("max_length", p.max_length),
                       dim: try positive("dim", p.dim),
                       encoder: TextEncoderShape(layers: Int(p.encoder_layers), heads: Int(p.encoder_heads)))
    default: throw DDPMError.invalidArgument("unknown conditioning kind \(p.kind) (0 none, 1 classes, 2 vector, 3 sequence, 4 tokens)")
    }
}

@_cdecl("ddpm_cond_batch_default")
public func ddpm_cond_batch_default() -> ddpm_cond_batch {
    ddpm_cond_batch(struct_size: MemoryLayout<ddpm_cond_batch>.size, labels: nil, vectors: nil, vectors_count: 0,
                    tokens: nil, tokens_count: 0, lengths: nil)
}

/// The engine's ConditionBatch for `rows` rows of a model conditioned on `c` (NULL means
/// none): the struct read over its defaults, each count checked against the rows and the
/// conditioning's sizes. The values themselves (labels in 0...K, ids in 0..<V, lengths in
/// 0...Lmax, finite floats) are the engine's to check.
func conditionBatch(_ params: UnsafePointer<ddpm_cond_batch>?, rows: Int64, _ c: Conditioning) throws -> ConditionBatch {
    guard let params else { return .none }
    try checkCondBatchSize(params, c)
    let p = try readParams(params, defaults: ddpm_cond_batch_default(), "cond")
    var batch = ConditionBatch(labels: p.labels)
    (batch.maxLength, batch.contextDim, batch.lengths) = (c.maxLength, c.contextDim, p.lengths)
    if let vectors = p.vectors {
        switch c {
        case .vector(let d):
            _ = try checkCount(p.vectors_count, rows: rows, cols: Int64(d), "cond->vectors")
            (batch.vectors, batch.vectorDim) = (vectors, d)
        case .sequence(let d, let l):
            _ = try checkCount(p.vectors_count, rows: rows, cols: Int64(l) * Int64(d), "cond->vectors (rows × max_length × dim)")
            batch.context = vectors
        default:
            throw DDPMError.invalidArgument("cond->vectors was given but the model is not conditioned on vectors or sequences")
        }
    } else if p.vectors_count != 0 {
        throw DDPMError.invalidArgument("cond->vectors is NULL but vectors_count is \(p.vectors_count)")
    }
    if let tokens = p.tokens {
        guard c.vocabulary > 0 else { throw DDPMError.invalidArgument("cond->tokens was given but the model is not conditioned on tokens") }
        _ = try checkCount(p.tokens_count, rows: rows, cols: Int64(c.maxLength), "cond->tokens (rows × max_length)")
        batch.tokens = tokens
    } else if p.tokens_count != 0 {
        throw DDPMError.invalidArgument("cond->tokens is NULL but tokens_count is \(p.tokens_count)")
    }
    if p.lengths != nil, c.maxLength == 0 {
        throw DDPMError.invalidArgument("cond->lengths was given but the model is not conditioned on sequences or tokens")
    }
    return batch
}

/// The ends of ddpm_cond_batch's fields, in order: a struct_size must be one of them (an older,
/// shorter struct ends at a field boundary; one that ends inside a pointer would hand us half
/// of it) or at least the whole struct (a newer caller's tail is ignored).
private let condBatchFieldEnds: [(end: Int, field: String)] = {
    typealias B = ddpm_cond_batch
    let fields: [(PartialKeyPath<B>, Int, String)] = [
        (\B.labels, 8, "labels"), (\B.vectors, 8, "vectors"), (\B.vectors_count, 8, "vectors_count"),
        (\B.tokens, 8, "tokens"), (\B.tokens_count, 8, "tokens_count"), (\B.lengths, 8, "lengths"),
    ]
    return fields.map { (MemoryLayout<B>.offset(of: $0.0)! + $0.1, $0.2) }
}()

/// Throws `.invalidArgument` unless cond->struct_size ends at a field boundary (or covers the
/// whole struct) and covers every field a model conditioned on `c` reads: labels (CLASSES);
/// vectors and vectors_count (VECTOR, SEQUENCE); tokens and tokens_count (TOKENS). lengths may
/// be left out (NULL: every row has max_length).
func checkCondBatchSize(_ params: UnsafePointer<ddpm_cond_batch>, _ c: Conditioning) throws {
    let given = UnsafeRawPointer(params).load(as: Int.self)
    let whole = MemoryLayout<ddpm_cond_batch>.size
    guard given >= MemoryLayout<Int>.size, given <= 1 << 20 else { return }  // readParams names it
    guard given >= whole || given == MemoryLayout<Int>.size || condBatchFieldEnds.contains(where: { $0.end == given }) else {
        throw DDPMError.invalidArgument("cond->struct_size is \(given), which ends inside a field of ddpm_cond_batch "
                                        + "(field ends: \(condBatchFieldEnds.map { "\($0.field) \($0.end)" }.joined(separator: ", ")), "
                                        + "sizeof \(whole)); initialise it with ddpm_cond_batch_default()")
    }
    let needed: String
    switch c {
    case .none: return
    case .classes: needed = "labels"
    case .vector, .sequence: needed = "vectors_count"
    case .tokens: needed = "tokens_count"
    }
    let end = condBatchFieldEnds.first { $0.field == needed }!.end
    guard given >= end else {
        throw DDPMError.invalidArgument("cond->struct_size is \(given), which leaves out cond->\(needed) (it ends at byte \(end)), "
                                        + "a field the model's conditioning reads; initialise it with ddpm_cond_batch_default()")
    }
}

@_cdecl("ddpm_predict_params_default")
public func ddpm_predict_params_default() -> ddpm_predict_params {
    let o = PredictOptions()
    return ddpm_predict_params(struct_size: MemoryLayout<ddpm_predict_params>.size, guidance_scale: o.guidanceScale,
                               use_ema: o.useEMA ? 1 : 0)
}

/// The engine's prediction options (NULL means the defaults).
func predictOptions(_ params: UnsafePointer<ddpm_predict_params>?) throws -> PredictOptions {
    guard params != nil else { return PredictOptions() }
    let p = try readParams(params, defaults: ddpm_predict_params_default(), "predict_params")
    return PredictOptions(guidanceScale: p.guidance_scale, useEMA: p.use_ema != 0)
}

/// A ddpm_output value as the engine's PredictOutput (what a prediction may be asked for).
func predictOutput(_ value: Int32, _ name: String) throws -> PredictOutput {
    if ddpm_output(rawValue: UInt32(bitPattern: value)) == DDPM_OUTPUT_SCORE { return .score }
    if ddpm_output(rawValue: UInt32(bitPattern: value)) == DDPM_OUTPUT_VARIANCE { return .variance }
    guard let type = try? predictionType(value, name), let output = PredictOutput(rawValue: type.rawValue) else {
        throw DDPMError.invalidArgument("unknown \(name) \(value) (0 eps, 1 x0, 2 v, 3 score, 4 variance)")
    }
    return output
}

/// A ddpm_output value as the engine's PredictionType (what a model outputs; not the score).
func predictionType(_ value: Int32, _ name: String) throws -> PredictionType {
    switch ddpm_output(rawValue: UInt32(bitPattern: value)) {
    case DDPM_OUTPUT_EPS: return .epsilon
    case DDPM_OUTPUT_X0: return .x0
    case DDPM_OUTPUT_V: return .v
    default: throw DDPMError.invalidArgument("unknown \(name) \(value) (0 eps, 1 x0, 2 v; the score is no model output)")
    }
}

/// A ddpm_variance value as the engine's ReverseVariance.
func reverseVariance(_ value: Int32) throws -> ReverseVariance {
    switch ddpm_variance(rawValue: UInt32(bitPattern: value)) {
    case DDPM_VARIANCE_BETA: return .beta
    case DDPM_VARIANCE_POSTERIOR: return .posterior
    case DDPM_VARIANCE_LEARNED: return .learned
    default: throw DDPMError.invalidArgument("unknown variance \(value) (0 beta, 1 posterior, 2 learned)")
    }
}
