// The shape of a UNet, stored in checkpoints, and its validation.
//
//   C = image channels, H×W = image size, c = base channels, L = levels, R = ResBlocks per
//   level, E = timestep-encoding size, K = classes. See UNet.swift for the architecture.

/// The shape of a UNet (stored in checkpoints).
public struct UNetConfig: Codable, Sendable, Equatable, FieldCoded {
    /// C, channels of an image.
    public var channels: Int
    /// H and W; both divisible by 2^(levels − 1). H = 1 makes a 1-D UNet over signals of
    /// length W (`isSignal`): 1×3 kernels, resampling along the width only, W alone divisible.
    public var height: Int
    public var width: Int
    /// c, channels at the first level.
    public var baseChannels: Int
    /// Channels of level l are baseChannels·channelMult[l]; the number of levels L is the
    /// count, 1...`UNetConfig.maxLevels`. Each level halves the resolution of the one before.
    public var channelMult: [Int]
    /// R, residual blocks per level in the encoder (the decoder has R + 1).
    public var resBlocks: Int
    /// Levels (0-based) that get self-attention after each ResBlock; the middle always has one.
    public var attentionLevels: [Int]
    /// Levels (0-based) that get cross-attention to a sequence condition after each ResBlock
    /// (and its self-attention); the middle always has one when the model has a context.
    public var crossAttentionLevels: [Int] = []
    /// Every cross-attention layer adds a learned absolute position embedding of its pixels to
    /// its queries (CrossAttention.swift), so that words naming a place can be matched to it.
    /// Stored in checkpoints only when on (files without it load as they always did).
    public var crossAttentionPositions = false
    /// Heads of every attention layer; must divide the channels there.
    public var attentionHeads: Int
    /// GroupNorm groups; must divide every level's channel count.
    public var groups: Int
    /// Dropout probability inside ResBlocks while training, in [0, 1).
    public var dropout: Float
    /// E, size of the sinusoidal timestep encoding (even). The time embedding itself is 4·baseChannels wide.
    public var timeEmbedDim: Int
    // The options of diffusers' UNet2DModel (Interop: python/swiftddpm/diffusers.py); the
    // defaults are our network as it always was, and checkpoints write them only when changed.
    /// The sinusoid's halves: [sin, cos] (false), or [cos, sin] (diffusers' flip_sin_to_cos).
    public var flipSinToCos: Bool = false
    /// s in ω_i = 10000^(−i/(E/2 − s)) (diffusers' freq_shift; DDPM's own code: 1); below E/2.
    public var freqShift: Float = 0
    /// ε of every GroupNorm (diffusers' norm_eps).
    public var normEps: Float = 1e-5
    /// 1: Downsample is a stride-2 3×3 convolution with padding 1 on every side; 0: the input
    /// is padded by one zero row and column at the bottom and right only (the original DDPM's
    /// (0, 1) pad, diffusers' downsample_padding = 0).
    public var downsamplePadding: Int = 1
    /// d > 0: every attention has c_l / d heads of d channels (diffusers' attention_head_dim),
    /// overriding `attentionHeads`; 0: `attentionHeads` heads everywhere.
    public var attentionHeadDim: Int = 0
    /// The middle's self-attention (diffusers' add_attention).
    public var middleAttention: Bool = true

    public init(channels: Int, height: Int, width: Int, baseChannels: Int = 32, channelMult: [Int] = [1, 2, 2],
                resBlocks: Int = 2, attentionLevels: [Int] = [2], attentionHeads: Int = 1, groups: Int = 8,
                dropout: Float = 0, timeEmbedDim: Int = 64) {
        (self.channels, self.height, self.width) = (channels, height, width)
        (self.baseChannels, self.channelMult, self.resBlocks) = (baseChannels, channelMult, resBlocks)
        (self.attentionLevels, self.attentionHeads, self.groups) = (attentionLevels, attentionHeads, groups)
        (self.dropout, self.timeEmbedDim) = (dropout, timeEmbedDim)
    }

    /// Height 1: a 1-D UNet over C-channel signals of length W.
    public var isSignal: Bool { height == 1 }
    /// The height at level l: H / 2^l, or 1 for a signal.
    func height(atLevel l: Int) -> Int { isSignal ? 1 : height >> l }

    /// L, the number of resolutions.
    public var levels: Int { channelMult.count }
    /// The most levels a UNet may have (DDPM_UNET_MAX_LEVELS in ddpm.h).
    public static let maxLevels = 8
    /// Heads of an attention over `channels` channels: channels / attentionHeadDim, or attentionHeads.
    func heads(channels: Int) -> Int { attentionHeadDim > 0 ? channels / attentionHeadDim : attentionHeads }

    /// T, width of the time embedding.
    public var timeDim: Int { 4 * baseChannels }

    /// `attentionLevels` as a bit mask (bit l = attention at level l), the C header's form.
    /// Setting it lists every set bit, so bits beyond the last level fail validation.
    public var attentionLevelMask: Int {
        get { Self.mask(attentionLevels) }
        set { attentionLevels = Self.levels(newValue) }
    }

    /// `crossAttentionLevels` as a bit mask (the C header's form), likewise.
    public var crossAttentionLevelMask: Int {
        get { Self.mask(crossAttentionLevels) }
        set { crossAttentionLevels = Self.levels(newValue) }
    }

    @available(*, deprecated, renamed: "crossAttentionLevels", message: "no longer Optional: [] is none")
    public var crossLevels: [Int] { crossAttentionLevels }

    private static func mask(_ levels: [Int]) -> Int { levels.reduce(0) { mask, l in (0..<63).contains(l) ? mask | (1 << l) : mask } }
    private static func levels(_ mask: Int) -> [Int] { (0..<63).filter { mask & (1 << $0) != 0 } }

    /// As checkpoint JSON (ddpm_unet_params' names; the levels as lists). The image's shape has
    /// no default; cross_attention_levels is absent from checkpoints written before it (none).
    static let fields = ConfigFields(defaults: UNetConfig(channels: 1, height: 0, width: 0), [
        .required("channels", \.channels),
        .required("height", \.height),
        .required("width", \.width),
        .value("base_channels", \.baseChannels),
        .value("channel_mult", \.channelMult),
        .value("res_blocks", \.resBlocks),
        .value("attention_levels", \.attentionLevels),
        .value("cross_attention_levels", \.crossAttentionLevels),
        .value("attention_heads", \.attentionHeads),
        .value("groups", \.groups),
        .value("dropout", \.dropout),
        .value("time_embed_dim", \.timeEmbedDim),
        .changed("flip_sin_to_cos", \.flipSinToCos),
        .changed("freq_shift", \.freqShift),
        .changed("norm_eps", \.normEps),
        .changed("downsample_padding", \.downsamplePadding),
        .changed("attention_head_dim", \.attentionHeadDim),
        .changed("middle_attention", \.middleAttention),
        .changed("cross_attention_positions", \.crossAttentionPositions),
    ])

    public init(from decoder: Decoder) throws { self = try Self.fields.decode(from: decoder) }
    public func encode(to encoder: Encoder) throws { try Self.fields.encode(self, to: encoder) }

    /// Throws `DDPMError.invalidArgument` naming the first inconsistent field.
    public func validate(timesteps: Int = 1) throws {
        // The field caps keep every size of the network exact in Int; the byte limit is
        // checked on the parameter layout and on each batch (Core/Limits.swift).
        try require(channels >= 1, "channels must be >= 1 (got \(channels))")
        try Limits.requireField("channels", channels, cap: Limits.width)
        try require(height >= 1 && width >= 1, "height and width must be >= 1 (got \(height)×\(width))")
        try Limits.requireField("height", height, cap: Limits.width)
        try Limits.requireField("width", width, cap: Limits.width)
        try require(channels * height * width <= Limits.sampleFloats,
                    "an image of \(channels)×\(height)×\(width) has \(channels * height * width) floats, more than \(Limits.sampleFloats)")
        try require((1...Self.maxLevels).contains(levels),
                    "the number of levels (channel_mult entries) must be in 1...\(Self.maxLevels) (got \(levels))")
        try require(baseChannels >= 1, "base_channels must be >= 1 (got \(baseChannels))")
        try Limits.requireField("base_channels", baseChannels, cap: Limits.width)
        for (l, m) in channelMult.enumerated() {
            try require(m >= 1, "channel_mult[\(l)] must be >= 1 (got \(m))")
            try require(m <= Limits.width && baseChannels * m <= Limits.width,
                        "level \(l) has base_channels \(baseChannels) × channel_mult[\(l)] \(m) channels, more than \(Limits.width)")
        }
        let factor = 1 << (levels - 1)
        try require(isSignal || height % factor == 0,
                    "height \(height) is not divisible by 2^(levels-1) = \(factor) (levels = \(levels))")
        try require(width % factor == 0,
                    "width \(width) is not divisible by 2^(levels-1) = \(factor) (levels = \(levels))")
        try Limits.requireField("res_blocks", resBlocks, cap: Limits.resBlocks)
        try require(groups >= 1, "groups must be >= 1 (got \(groups))")
        for (l, m) in channelMult.enumerated() {
            let c = baseChannels * m
            try require(c % groups == 0,
                        "groups (\(groups)) must divide the \(c) channels of level \(l) (base_channels \(baseChannels) × channel_mult[\(l)] \(m))")
        }
        try require(attentionHeads >= 1, "attention_heads must be >= 1 (got \(attentionHeads))")
        try require(attentionHeadDim >= 0, "attention_head_dim must be >= 0 (got \(attentionHeadDim))")
        let headsField = attentionHeadDim > 0 ? "attention_head_dim (\(attentionHeadDim))" : "attention_heads (\(attentionHeads))"
        for l in attentionLevels {
            try require(l >= 0 && l < levels, "attention level \(l) is outside 0..<\(levels)")
            let c = baseChannels * channelMult[l]
            try require(c % (attentionHeadDim > 0 ? attentionHeadDim : attentionHeads) == 0,
                        "\(headsField) must divide the \(c) channels of attention level \(l)")
        }
        for l in crossAttentionLevels {
            try require(l >= 0 && l < levels, "cross-attention level \(l) is outside 0..<\(levels)")
            let c = baseChannels * channelMult[l]
            try require(c % (attentionHeadDim > 0 ? attentionHeadDim : attentionHeads) == 0,
                        "\(headsField) must divide the \(c) channels of cross-attention level \(l)")
        }
        let middle = baseChannels * channelMult[levels - 1]
        try require(middle % (attentionHeadDim > 0 ? attentionHeadDim : attentionHeads) == 0,
                    "\(headsField) must divide the \(middle) channels of the middle attention")
        try require(dropout.isFinite && dropout >= 0 && dropout < 1, "dropout must be in [0, 1) (got \(dropout))")
        try require(timeEmbedDim >= 2 && timeEmbedDim % 2 == 0, "time_embed_dim must be even and >= 2 (got \(timeEmbedDim))")
        try Limits.requireField("time_embed_dim", timeEmbedDim, cap: Limits.width)
        try require(freqShift.isFinite && freqShift < Float(timeEmbedDim / 2),
                    "freq_shift must be below time_embed_dim / 2 = \(timeEmbedDim / 2) (got \(freqShift))")
        try require(normEps.isFinite && normEps > 0, "norm_eps must be > 0 (got \(normEps))")
        try require(downsamplePadding == 0 || downsamplePadding == 1,
                    "downsample_padding must be 0 (bottom and right) or 1 (every side) (got \(downsamplePadding))")
        try Limits.requireField("timesteps", timesteps, cap: Limits.timesteps)
        // The attention probabilities of one image, heads × N² at each attention level (and the
        // middle, at the last level), are the one size that grows with N²: bound it here.
        for l in Set(attentionLevels + (middleAttention ? [levels - 1] : [])) {
            let pixels = Double(height(atLevel: l)) * Double(width >> l)
            let heads = heads(channels: baseChannels * channelMult[l])
            try Limits.requireFloats(Double(heads) * pixels * pixels,
                                     "the attention at level \(l) (\(heads) heads over \(height(atLevel: l))×\(width >> l) pixels, per image)")
        }
    }
}
