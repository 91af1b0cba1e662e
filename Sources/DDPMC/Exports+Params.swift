// The params structs of ddpm.h <-> the engine's configs, one table each (ParamsTable.swift):
// the networks, training, conditioning and prediction. Each table serves the struct's
// _default(), the read of a caller's struct and the write-back of a model's config. The
// condition batch, which carries pointers rather than a config, is read by hand below.
import CDDPM
import DDPM

// ---- Networks --------------------------------------------------------------------------

/// ddpm_mlp_params ↔ ResidualMLP.Config (data_dim 0, the default, is "unset").
private let mlpTable = ParamsTable(defaults: ResidualMLP.Config(dataDim: 0), blank: mlpBlank, [
    .int("data_dim", \.data_dim, \.dataDim, in: 1...Int(Int32.max), " for the MLP"),
    .int("hidden", \.hidden, \.hidden),
    .int("depth", \.depth, \.depth),
    .int("time_embed_dim", \.time_embed_dim, \.timeEmbedDim),
])

@_cdecl("ddpm_mlp_params_default")
public func ddpm_mlp_params_default() -> ddpm_mlp_params { mlpTable.cDefaults }

/// The zeroed network structs headed by their kind (the tables set struct_size).
private let mlpBlank = { var p = ddpm_mlp_params(); p.base.kind = Int32(DDPM_NETWORK_MLP.rawValue); return p }()
private let unetBlank = { var p = ddpm_unet_params(); p.base.kind = Int32(DDPM_NETWORK_UNET.rawValue); return p }()

/// ddpm_unet_params ↔ UNetConfig (height and width 0, the defaults, are "unset").
private let unetTable = ParamsTable(defaults: UNetConfig(channels: 1, height: 0, width: 0), blank: unetBlank, [
    .int("channels", \.channels, \.channels),
    .int("height", \.height, \.height),
    .int("width", \.width, \.width),
    .int("base_channels", \.base_channels, \.baseChannels),
    channelMultRow,
    .int("res_blocks", \.res_blocks, \.resBlocks),
    .mask("attention_levels", \.attention_levels, \.attentionLevelMask),  // bits beyond the last level fail validation
    .int("attention_heads", \.attention_heads, \.attentionHeads),
    .int("groups", \.groups, \.groups),
    .value("dropout", \.dropout, \.dropout),
    .int("time_embed_dim", \.time_embed_dim, \.timeEmbedDim),
    .mask("cross_attention_levels", \.cross_attention_levels, \.crossAttentionLevelMask),
    .flag("flip_sin_to_cos", \.flip_sin_to_cos, \.flipSinToCos),
    .value("freq_shift", \.freq_shift, \.freqShift),
    .value("norm_eps", \.norm_eps, \.normEps),
    .int("downsample_padding", \.downsample_padding, \.downsamplePadding),
    .int("attention_head_dim", \.attention_head_dim, \.attentionHeadDim),
    .flag("middle_attention", \.middle_attention, \.middleAttention),
    .flag("cross_attention_positions", \.cross_attention_positions, \.crossAttentionPositions),
])

/// num_levels and the fixed-size channel_mult array ↔ channelMult (the unused tail repeats its last entry).
private let channelMultRow = ParamRow<ddpm_unet_params, UNetConfig>(
    field: "num_levels, channel_mult",
    write: { config, p in
        p.num_levels = Int32(clamping: config.levels)
        withUnsafeMutableBytes(of: &p.channel_mult) { raw in
            let mult = raw.bindMemory(to: Int32.self)
            for l in mult.indices { mult[l] = Int32(clamping: config.channelMult[min(l, config.levels - 1)]) }
        }
    },
    read: { p, config in
        let levels = Int(p.num_levels)
        guard (1...maxLevels).contains(levels) else {
            throw DDPMError.invalidArgument("num_levels must be in 1...\(maxLevels) (got \(levels))")
        }
        config.channelMult = withUnsafeBytes(of: p.channel_mult) { $0.bindMemory(to: Int32.self).prefix(levels).map { Int($0) } }
    })
private let maxLevels = Int(DDPM_UNET_MAX_LEVELS)

@_cdecl("ddpm_unet_params_default")
public func ddpm_unet_params_default() -> ddpm_unet_params { unetTable.cDefaults }

/// The engine's network config from a caller's network struct (headed by ddpm_network_params).
func networkConfig(_ head: UnsafePointer<ddpm_network_params>?) throws -> NetworkConfig {
    let head = try nonNull(head, "network")
    switch ddpm_network_kind(rawValue: UInt32(bitPattern: head.pointee.kind)) {
    case DDPM_NETWORK_MLP:
        return .mlp(try mlpTable.read(try readStruct(UnsafeRawPointer(head), defaults: mlpTable.cDefaults, "network")))
    case DDPM_NETWORK_UNET:
        let config = try unetTable.read(try readStruct(UnsafeRawPointer(head), defaults: unetTable.cDefaults, "network"))
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
        try writeStruct(mlpTable.write(c), to: out, "network")
    case .unet(let c):
        try requireKind(out, DDPM_NETWORK_UNET, "UNet")
        try writeStruct(unetTable.write(c), to: out, "network")
    }
}

private func requireKind(_ out: UnsafeMutablePointer<ddpm_network_params>, _ kind: ddpm_network_kind, _ name: String) throws {
    guard out.pointee.kind == Int32(kind.rawValue) else {
        throw DDPMError.invalidArgument("the model's network is the \(name) (kind \(kind.rawValue)); pass that kind's struct (got kind \(out.pointee.kind))")
    }
}

// ---- Training, conditioning, prediction --------------------------------------------------

/// ddpm_train_params ↔ TrainingConfig (flat, as the C struct: the optimizer's fields beside the others).
private let trainTable = ParamsTable(defaults: TrainingConfig(), blank: ddpm_train_params(), [
    .value("learning_rate", \.learning_rate, \.optimizer.learningRate),
    .value("beta1", \.beta1, \.optimizer.beta1),
    .value("beta2", \.beta2, \.optimizer.beta2),
    .value("adam_eps", \.adam_eps, \.optimizer.epsilon),
    .value("weight_decay", \.weight_decay, \.optimizer.weightDecay),
    .value("grad_clip", \.grad_clip, \.gradClip),
    .value("ema_decay", \.ema_decay, \.emaDecay),
    .value("condition_dropout", \.condition_dropout, \.conditionDropout),  // a union with label_dropout
    .value("seed", \.seed, \.seed),
    .choice("prediction_target", \.prediction_target, \.target),
    .choice("loss_weighting", \.loss_weighting, \.lossWeighting),
    .value("min_snr_gamma", \.min_snr_gamma, \.minSNRGamma),
    .flag("learned_variance", \.learned_variance, \.learnedVariance),
    .value("vlb_lambda", \.vlb_lambda, \.vlbLambda),
    .choice("timestep_sampling", \.timestep_sampling, \.timestepSampling),
])

@_cdecl("ddpm_train_params_default")
public func ddpm_train_params_default() -> ddpm_train_params { trainTable.cDefaults }

/// A model's training config as the C struct.
func trainParams(_ t: TrainingConfig) -> ddpm_train_params { trainTable.write(t) }

/// The engine's training config (NULL means the defaults).
func trainingConfig(_ params: UnsafePointer<ddpm_train_params>?) throws -> TrainingConfig {
    try trainTable.read(params, "train")
}

/// Conditioning as the flat fields of ddpm_cond_params (the engine's enum carries them in its cases).
struct CondFields {
    var kind = Int32(DDPM_COND_NONE.rawValue)
    var numClasses = 0, dim = 0, maxLength = 0, vocabulary = 0, encoderLayers = 0, encoderHeads = 0

    init() {}

    init(_ c: Conditioning) {
        switch c {
        case .none: break
        case .classes(let k): (kind, numClasses) = (Int32(DDPM_COND_CLASSES.rawValue), k)
        case .vector(let d): (kind, dim) = (Int32(DDPM_COND_VECTOR.rawValue), d)
        case .sequence(let d, let l): (kind, dim, maxLength) = (Int32(DDPM_COND_SEQUENCE.rawValue), d, l)
        case .tokens(let v, let l, let d, let e):
            (kind, dim, maxLength, vocabulary) = (Int32(DDPM_COND_TOKENS.rawValue), d, l, v)
            (encoderLayers, encoderHeads) = (e.layers, e.heads)
        }
    }

    /// The engine's conditioning; a SEQUENCE or TOKENS field must be >= 1 (the engine checks the rest).
    func conditioning() throws -> Conditioning {
        func positive(_ name: String, _ v: Int) throws -> Int {
            guard v >= 1 else { throw DDPMError.invalidArgument("\(name) must be >= 1 for conditioning kind \(kind) (got \(v))") }
            return v
        }
        switch ddpm_cond_kind(rawValue: UInt32(bitPattern: kind)) {
        case DDPM_COND_NONE: return .none
        case DDPM_COND_CLASSES: return .classes(numClasses)
        case DDPM_COND_VECTOR: return .vector(dim)
        case DDPM_COND_SEQUENCE: return .sequence(dim: try positive("dim", dim), maxLength: try positive("max_length", maxLength))
        case DDPM_COND_TOKENS:
            return .tokens(vocabulary: try positive("vocab_size", vocabulary), maxLength: try positive("max_length", maxLength),
                           dim: try positive("dim", dim), encoder: TextEncoderShape(layers: encoderLayers, heads: encoderHeads))
        default: throw DDPMError.invalidArgument("unknown conditioning kind \(kind) (0 none, 1 classes, 2 vector, 3 sequence, 4 tokens)")
        }
    }
}

/// A ddpm_cond_params field and the kinds that read it: for the other kinds it must stay 0
/// (a field set for another kind is a mistake).
private struct CondRow: Sendable {
    let row: ParamRow<ddpm_cond_params, CondFields>
    let value: KeyPath<ddpm_cond_params, Int32> & Sendable
    let kinds: [ddpm_cond_kind]
    init(_ field: String, _ c: WritableKeyPath<ddpm_cond_params, Int32> & Sendable, _ s: WritableKeyPath<CondFields, Int> & Sendable,
         _ kinds: ddpm_cond_kind...) {
        (row, value, self.kinds) = (.int(field, c, s), c, kinds)
    }
}

private let condRows = [
    CondRow("num_classes", \.num_classes, \.numClasses, DDPM_COND_CLASSES),
    CondRow("dim", \.dim, \.dim, DDPM_COND_VECTOR, DDPM_COND_SEQUENCE, DDPM_COND_TOKENS),
    CondRow("max_length", \.max_length, \.maxLength, DDPM_COND_SEQUENCE, DDPM_COND_TOKENS),
    CondRow("vocab_size", \.vocab_size, \.vocabulary, DDPM_COND_TOKENS),
    CondRow("encoder_layers", \.encoder_layers, \.encoderLayers, DDPM_COND_TOKENS),
    CondRow("encoder_heads", \.encoder_heads, \.encoderHeads, DDPM_COND_TOKENS),
]

/// ddpm_cond_params ↔ CondFields: the kind, then the rows above.
private let condTable = ParamsTable(defaults: CondFields(), blank: ddpm_cond_params(), [.value("kind", \.kind, \.kind)] + condRows.map(\.row))
private let condKindNames = ["NONE", "CLASSES", "VECTOR", "SEQUENCE", "TOKENS"]

@_cdecl("ddpm_cond_params_default")
public func ddpm_cond_params_default() -> ddpm_cond_params { condTable.cDefaults }

/// A model's conditioning as the C struct.
func condParams(_ c: Conditioning) -> ddpm_cond_params { condTable.write(CondFields(c)) }

/// The engine's conditioning (NULL means none).
func conditioning(_ params: UnsafePointer<ddpm_cond_params>?) throws -> Conditioning {
    guard params != nil else { return .none }
    let p = try readParams(params, defaults: condTable.cDefaults, "cond")
    let kind = ddpm_cond_kind(rawValue: UInt32(bitPattern: p.kind))
    for r in condRows where !r.kinds.contains(kind) && p[keyPath: r.value] != 0 {
        let kindName = condKindNames.indices.contains(Int(p.kind)) ? condKindNames[Int(p.kind)] : "\(p.kind)"
        throw DDPMError.invalidArgument("\(r.row.field) is \(p[keyPath: r.value]) but kind is \(kindName), which does not use it; "
                                        + "set kind (or leave \(r.row.field) 0)")
    }
    return try condTable.read(p).conditioning()
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

/// ddpm_predict_params ↔ PredictOptions.
private let predictTable = ParamsTable(defaults: PredictOptions(), blank: ddpm_predict_params(), [
    .value("guidance_scale", \.guidance_scale, \.guidanceScale),
    .flag("use_ema", \.use_ema, \.useEMA),
])

@_cdecl("ddpm_predict_params_default")
public func ddpm_predict_params_default() -> ddpm_predict_params { predictTable.cDefaults }

/// The engine's prediction options (NULL means the defaults).
func predictOptions(_ params: UnsafePointer<ddpm_predict_params>?) throws -> PredictOptions {
    try predictTable.read(params, "predict_params")
}
