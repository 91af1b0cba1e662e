// The UNet fields of ddpm_model_params <-> the engine's UNetConfig.
import CDDPM
import DDPM

func unetConfig(_ p: ddpm_model_params) throws -> NetworkConfig {
    guard (1...4).contains(p.num_levels) else {
        throw DDPMError.invalidArgument("num_levels must be in 1...4 (got \(p.num_levels))")
    }
    let m = p.channel_mult
    let mult = [Int(m.0), Int(m.1), Int(m.2), Int(m.3)]
    let levels = Int(p.num_levels)
    var config = UNetConfig(
        channels: Int(p.channels), height: Int(p.height), width: Int(p.width), baseChannels: Int(p.base_channels),
        channelMult: Array(mult.prefix(levels)), resBlocks: Int(p.res_blocks),
        attentionLevels: [],
        attentionHeads: Int(p.attention_heads), groups: Int(p.groups), dropout: p.dropout,
        timeEmbedDim: Int(p.time_embed_dim), numClasses: Int(p.num_classes))
    config.attentionLevelMask = Int(p.attention_levels)  // bits beyond the last level fail validation
    try config.validate()
    return .unet(config)
}

func fillUNetParams(_ p: inout ddpm_model_params, _ config: NetworkConfig) {
    guard case .unet(let c) = config else { return }
    p.network = 1
    (p.channels, p.height, p.width) = (Int32(c.channels), Int32(c.height), Int32(c.width))
    p.base_channels = Int32(c.baseChannels)
    p.num_levels = Int32(c.levels)
    var mult: [Int32] = [1, 1, 1, 1]
    for (l, m) in c.channelMult.prefix(4).enumerated() { mult[l] = Int32(m) }
    p.channel_mult = (mult[0], mult[1], mult[2], mult[3])
    p.res_blocks = Int32(c.resBlocks)
    p.attention_levels = Int32(c.attentionLevelMask)
    p.attention_heads = Int32(c.attentionHeads)
    p.groups = Int32(c.groups)
    p.dropout = c.dropout
    p.time_embed_dim = Int32(c.timeEmbedDim)
    p.num_classes = Int32(c.numClasses)
}
