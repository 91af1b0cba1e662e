// The ε-network for images: a small UNet in the style of DDPM / improved DDPM.
//
//   B = batch, C = image channels, H×W = image size, N = pixels at the current level,
//   c = base channels, c_l = c·mult[l] channels at level l (l = 0..<L), R = ResBlocks per level,
//   E = timestep-encoding size, T = 4c time-embedding width, K = classes (label K = null).
//
//   e       = sinusoid(t)                                              (B, E)
//   temb    = W_t2·SiLU(W_t1·e) [+ classEmbedding[label]]              (B, T)
//   h       = Conv3×3(x)                                               (c_0, B, H, W)
//   encoder: level l = 0..<L: R × [ResBlock(→ c_l) (+ Attention if l is flagged)],
//            then Downsample (stride-2 conv) unless l is the last level;
//            every stage output (and h) is kept as a skip
//   middle:  ResBlock, Attention, ResBlock
//   decoder: level l = L−1...0: R+1 × [ResBlock(concat(h, skip) → c_l) (+ Attention)],
//            the last one of each level but level 0 followed by Upsample (nearest ×2, conv)
//   ε̂       = Conv3×3(SiLU(GroupNorm(h)))   (starts at zero)           (B, C, H, W)
// Every ResBlock gets SiLU(temb) through its own linear time projection.
//
// The network's input and output are (B, C, H, W); inside, images are channel-major
// (C, B, H, W), so that every convolution of the batch is one GEMM and concatenating along
// channels is placing two blocks one after the other (see Layers/Conv2d.swift).

/// The shape of a UNet (stored in checkpoints).
public struct UNetConfig: Codable, Sendable, Equatable {
    /// C, channels of an image.
    public var channels: Int
    /// H and W; both divisible by 2^(levels − 1).
    public var height: Int
    public var width: Int
    /// c, channels at the first level.
    public var baseChannels: Int
    /// Channels of level l are baseChannels·channelMult[l]; the number of levels L is the
    /// count, 1...4. Each level halves the resolution of the one before.
    public var channelMult: [Int]
    /// R, residual blocks per level in the encoder (the decoder has R + 1).
    public var resBlocks: Int
    /// Levels (0-based) that get self-attention after each ResBlock; the middle always has one.
    public var attentionLevels: [Int]
    /// Heads of every attention layer; must divide the channels there.
    public var attentionHeads: Int
    /// GroupNorm groups; must divide every level's channel count.
    public var groups: Int
    /// Dropout probability inside ResBlocks while training, in [0, 1).
    public var dropout: Float
    /// E, size of the sinusoidal timestep encoding (even). The time embedding itself is 4·baseChannels wide.
    public var timeEmbedDim: Int
    /// K; 0 = unconditional.
    public var numClasses: Int

    public init(channels: Int, height: Int, width: Int, baseChannels: Int = 32, channelMult: [Int] = [1, 2, 2],
                resBlocks: Int = 2, attentionLevels: [Int] = [2], attentionHeads: Int = 1, groups: Int = 8,
                dropout: Float = 0, timeEmbedDim: Int = 64, numClasses: Int = 0) {
        (self.channels, self.height, self.width) = (channels, height, width)
        (self.baseChannels, self.channelMult, self.resBlocks) = (baseChannels, channelMult, resBlocks)
        (self.attentionLevels, self.attentionHeads, self.groups) = (attentionLevels, attentionHeads, groups)
        (self.dropout, self.timeEmbedDim, self.numClasses) = (dropout, timeEmbedDim, numClasses)
    }

    /// L, the number of resolutions.
    public var levels: Int { channelMult.count }
    /// T, width of the time embedding.
    public var timeDim: Int { 4 * baseChannels }

    /// `attentionLevels` as a bit mask (bit l = attention at level l), the C header's form.
    /// Setting it lists every set bit, so bits beyond the last level fail validation.
    public var attentionLevelMask: Int {
        get { attentionLevels.reduce(0) { mask, l in (0..<63).contains(l) ? mask | (1 << l) : mask } }
        set { attentionLevels = (0..<63).filter { newValue & (1 << $0) != 0 } }
    }

    /// Throws `DDPMError.invalidArgument` naming the first inconsistent field.
    public func validate(timesteps: Int = 1) throws {
        try require(channels >= 1, "channels must be >= 1 (got \(channels))")
        try require(height >= 1 && width >= 1, "height and width must be >= 1 (got \(height)×\(width))")
        try require((1...4).contains(levels), "the number of levels (channel_mult entries) must be in 1...4 (got \(levels))")
        try require(baseChannels >= 1, "base_channels must be >= 1 (got \(baseChannels))")
        for (l, m) in channelMult.enumerated() {
            try require(m >= 1, "channel_mult[\(l)] must be >= 1 (got \(m))")
        }
        let factor = 1 << (levels - 1)
        try require(height % factor == 0,
                    "height \(height) is not divisible by 2^(levels-1) = \(factor) (levels = \(levels))")
        try require(width % factor == 0,
                    "width \(width) is not divisible by 2^(levels-1) = \(factor) (levels = \(levels))")
        try require(resBlocks >= 1, "res_blocks must be >= 1 (got \(resBlocks))")
        try require(groups >= 1, "groups must be >= 1 (got \(groups))")
        for (l, m) in channelMult.enumerated() {
            let c = baseChannels * m
            try require(c % groups == 0,
                        "groups (\(groups)) must divide the \(c) channels of level \(l) (base_channels \(baseChannels) × channel_mult[\(l)] \(m))")
        }
        try require(attentionHeads >= 1, "attention_heads must be >= 1 (got \(attentionHeads))")
        for l in attentionLevels {
            try require(l >= 0 && l < levels, "attention level \(l) is outside 0..<\(levels)")
            let c = baseChannels * channelMult[l]
            try require(c % attentionHeads == 0,
                        "attention_heads (\(attentionHeads)) must divide the \(c) channels of attention level \(l)")
        }
        let middle = baseChannels * channelMult[levels - 1]
        try require(middle % attentionHeads == 0,
                    "attention_heads (\(attentionHeads)) must divide the \(middle) channels of the middle attention")
        try require(dropout.isFinite && dropout >= 0 && dropout < 1, "dropout must be in [0, 1) (got \(dropout))")
        try require(timeEmbedDim >= 2 && timeEmbedDim % 2 == 0, "time_embed_dim must be even and >= 2 (got \(timeEmbedDim))")
        try require(numClasses >= 0, "num_classes must be >= 0 (got \(numClasses))")
        try require(timesteps >= 1, "timesteps must be >= 1 (got \(timesteps))")
    }
}

/// Builds a UNet with freshly initialised parameters (drawn from `rng`).
func makeUNet(_ c: UNetConfig, timesteps: Int, rng: inout Philox) throws -> EpsilonNetwork {
    try UNet(c, timesteps: timesteps, rng: &rng)
}

public final class UNet: EpsilonNetwork {
    public let parameters: ParameterSet
    public let settings: UNetConfig
    public var sampleShape: [Int] { [settings.channels, settings.height, settings.width] }
    public var sampleSize: Int { settings.channels * settings.height * settings.width }
    public var numClasses: Int { settings.numClasses }
    public var config: NetworkConfig { .unet(settings) }

    let sinusoid: SinusoidalEmbedding
    let timeIn: Linear, timeOut: Linear  // E → T, T → T
    let classEmbedding: Embedding?  // (K + 1, T)
    let inConv: Conv2d  // 3×3, C → c_0
    let encoder: [Stage]
    let middle: [Stage]  // [ResBlock + Attention, ResBlock]
    let decoder: [Stage]
    let outNorm: GroupNorm  // c_0
    let outConv: Conv2d  // 3×3, c_0 → C, zero-initialised
    /// Per image: the most floats of any activation (the size of each scratch buffer);
    /// N² of the largest attention; the most channels of any ResBlock.
    let maxActivation: Int, maxAttention: Int, maxChannels: Int
    var acts: Activations
    var backwardBuffers: BackwardBuffers
    /// Rows per pass of an inference forward: larger batches run in several passes (rows are
    /// independent), so that sampling many images at once does not hold activations for all.
    var inferenceRows = 1
    /// Activation floats an inference pass may hold (2^26 floats = 256 MiB).
    static let inferenceBudget = 1 << 26

    public init(_ config: UNetConfig, timesteps: Int, rng: inout Philox) throws {
        try config.validate(timesteps: timesteps)
        settings = config
        let (c, L, R, T, G) = (config.baseChannels, config.levels, config.resBlocks, config.timeDim, config.groups)
        let heads = config.attentionHeads
        var layout = ParameterLayout()
        timeIn = Linear(&layout, "time.fc1", in: config.timeEmbedDim, out: T)
        timeOut = Linear(&layout, "time.fc2", in: T, out: T)
        classEmbedding = config.numClasses > 0
            ? Embedding(&layout, "class_embedding", rows: config.numClasses + 1, features: T) : nil
        var ch = c * config.channelMult[0]
        inConv = Conv2d(&layout, "in_conv", in: config.channels, out: ch, kernel: 3)

        func resBlock(_ name: String, in ci: Int, out co: Int) -> ResBlock {
            ResBlock(&layout, name + ".res", in: ci, out: co, timeDim: T, groups: G, dropout: config.dropout)
        }
        func attention(_ name: String, _ channels: Int) -> Attention {
            Attention(&layout, name + ".attn", channels: channels, heads: heads, groups: G)
        }
        var (h, w) = (config.height, config.width)
        var skipChannels = [ch]
        var encoder: [Stage] = []
        for level in 0..<L {
            let co = c * config.channelMult[level]
            for _ in 0..<R {
                let name = "encoder.\(encoder.count)"
                encoder.append(Stage(res: resBlock(name, in: ch, out: co),
                                     attention: config.attentionLevels.contains(level) ? attention(name, co) : nil,
                                     height: h, width: w))
                ch = co
                skipChannels.append(ch)
            }
            if level < L - 1 {
                let name = "encoder.\(encoder.count)"
                encoder.append(Stage(down: Downsample(&layout, name + ".down", channels: ch), height: h, width: w))
                skipChannels.append(ch)
                (h, w) = (h / 2, w / 2)
            }
        }
        self.encoder = encoder
        middle = [Stage(res: resBlock("middle.0", in: ch, out: ch), attention: attention("middle.0", ch), height: h, width: w),
                  Stage(res: resBlock("middle.1", in: ch, out: ch), height: h, width: w)]
        var decoder: [Stage] = []
        for level in (0..<L).reversed() {
            let co = c * config.channelMult[level]
            for i in 0...R {
                let name = "decoder.\(decoder.count)"
                let skip = skipChannels.removeLast()
                decoder.append(Stage(res: resBlock(name, in: ch + skip, out: co),
                                     attention: config.attentionLevels.contains(level) ? attention(name, co) : nil,
                                     up: level > 0 && i == R ? Upsample(&layout, name + ".up", channels: co) : nil,
                                     skipChannels: skip, height: h, width: w))
                ch = co
                if level > 0 && i == R { (h, w) = (2 * h, 2 * w) }
            }
        }
        self.decoder = decoder
        outNorm = GroupNorm(&layout, "out_norm", channels: ch, groups: G)
        outConv = Conv2d(&layout, "out_conv", in: ch, out: config.channels, kernel: 3, zeroInit: true)
        parameters = ParameterSet(layout: layout, rng: &rng)
        sinusoid = SinusoidalEmbedding(dim: config.timeEmbedDim, timesteps: timesteps)

        let stages = encoder + middle + decoder
        let N0 = config.height * config.width
        maxActivation = max(stages.map(\.maxActivation).max()!, max(config.channels, inConv.outChannels) * N0)
        maxAttention = stages.map { $0.attention == nil ? 0 : $0.height * $0.width * $0.height * $0.width }.max()!
        maxChannels = stages.map { $0.res?.outChannels ?? 0 }.max()!
        acts = Activations()
        backwardBuffers = BackwardBuffers()
        let perImage = Activations(self, batch: 1).floatCount
        inferenceRows = max(1, min(256, Self.inferenceBudget / perImage))
    }

    /// Floats of im2col scratch for a batch of B: the most any convolution needs.
    func columnsCount(batch B: Int) -> Int {
        let (H, W) = (settings.height, settings.width)
        return max((encoder + middle + decoder).map { $0.columnsCount(batch: B) }.max()!,
                   inConv.columnsCount(batch: B, height: H, width: W), outConv.columnsCount(batch: B, height: H, width: W))
    }

    // MARK: - Stages

    /// One step of the encoder, middle or decoder: a ResBlock with optional attention and
    /// resampling, or a lone Downsample. A decoder stage's input is concat(h, skip).
    struct Stage {
        var res: ResBlock? = nil
        var attention: Attention? = nil
        var down: Downsample? = nil
        var up: Upsample? = nil
        var skipChannels = 0  // channels concatenated from the encoder (decoder only)
        let height: Int, width: Int  // input resolution

        var pixels: Int { height * width }
        var inChannels: Int { res?.inChannels ?? down!.conv.inChannels }
        var outChannels: Int { res?.outChannels ?? down!.conv.outChannels }
        /// Output resolution.
        var outSize: (height: Int, width: Int) {
            if down != nil { return (height / 2, width / 2) }
            if up != nil { return (2 * height, 2 * width) }
            return (height, width)
        }
        /// The most floats per image of any tensor inside the stage (concat, qkv, upsampled).
        var maxActivation: Int {
            let N = pixels
            return max(max(inChannels, outChannels) * N, attention == nil ? 0 : 3 * outChannels * N,
                       up == nil ? 0 : 4 * outChannels * N)
        }

        func columnsCount(batch B: Int) -> Int {
            max(res?.columnsCount(batch: B, height: height, width: width) ?? 0,
                down?.columnsCount(batch: B, height: height, width: width) ?? 0,
                up?.columnsCount(batch: B, height: height, width: width) ?? 0)
        }

        /// The buffers of one stage for `batch` images.
        final class Activations {
            let cat: Buffer<Float>  // (Ci, B, N) concat(h, skip) for a decoder stage; empty otherwise
            let res: ResBlock.Activations?
            let attention: Attention.Activations?
            let up: Buffer<Float>  // (Co, B, 2H, 2W) nearest-upsampled; empty without Upsample
            let resampled: Buffer<Float>  // (Co, B, Ho, Wo) Downsample/Upsample output; empty otherwise
            /// The stage's result: the last of res.out, attention.out, resampled.
            let output: UnsafeMutablePointer<Float>

            init(_ s: Stage, batch B: Int) {
                let N = s.pixels
                cat = Buffer(count: s.skipChannels > 0 ? s.inChannels * B * N : 0)
                res = s.res.map { ResBlock.Activations($0, batch: B, spatial: N) }
                attention = s.attention.map { Attention.Activations($0, batch: B, spatial: N) }
                up = Buffer(count: s.up == nil ? 0 : s.outChannels * B * 4 * N)
                let (Ho, Wo) = s.outSize
                resampled = Buffer(count: s.down == nil && s.up == nil ? 0 : s.outChannels * B * Ho * Wo)
                output = s.down != nil || s.up != nil ? resampled.pointer : (attention?.out.pointer ?? res!.out.pointer)
            }

            var floatCount: Int { cat.count + up.count + resampled.count + (res?.floatCount ?? 0) + (attention?.floatCount ?? 0) }
        }

        /// a.output = stage(inp); inp is (Ci, B, N) (already concatenated for a decoder stage).
        func forward(_ a: Activations, _ inp: UnsafePointer<Float>, tembAct: UnsafePointer<Float>, _ params: UnsafePointer<Float>,
                     columns: UnsafeMutablePointer<Float>, batch B: Int, training: Bool, rng: inout Philox) {
            var h = inp
            if let res, let r = a.res {
                res.forward(r, h, tembAct: tembAct, params, columns: columns, batch: B, height: height, width: width,
                            training: training, rng: &rng)
                h = UnsafePointer(r.out.pointer)
            }
            if let attention, let at = a.attention {
                attention.forward(at, h, params, batch: B, spatial: pixels)
                h = UnsafePointer(at.out.pointer)
            }
            if let down { down.forward(a.resampled.pointer, h, params, columns: columns, batch: B, height: height, width: width) }
            if let up {
                up.forward(a.resampled.pointer, up: a.up.pointer, h, params, columns: columns, batch: B, height: height, width: width)
            }
        }

        /// dinp (Ci, B, N) (+)= ∂L/∂inp given dout = ∂L/∂output, which is consumed (overwritten).
        /// dinp, dout and s.temp are distinct buffers.
        func backward(dinp: UnsafeMutablePointer<Float>, accumulate: Bool, dout: UnsafeMutablePointer<Float>,
                      inp: UnsafePointer<Float>, _ a: Activations, _ s: BackwardBuffers, dtembAct: UnsafeMutablePointer<Float>,
                      tembAct: UnsafePointer<Float>, _ grads: UnsafeMutablePointer<Float>, _ params: UnsafePointer<Float>,
                      batch B: Int) {
            let columns = s.columns.pointer
            if let down {
                down.backward(dinp: dinp, grads, dout: dout, inp: inp, params, columns: columns, batch: B,
                              height: height, width: width, accumulate: accumulate)
                return
            }
            guard let res, let r = a.res else { return }
            var d = dout
            if let up {
                up.backward(dinp: s.temp.pointer, grads, dout: d, up: a.up.pointer, params, dup: s.scratch1.pointer,
                            columns: columns, batch: B, height: height, width: width, accumulate: false)
                d = s.temp.pointer
            }
            if let attention, let at = a.attention {
                attention.backward(dinp: d, grads, dout: d, inp: r.out.pointer, at, params, scratch1: s.scratch1.pointer,
                                   scratch2: s.scratch2.pointer, dprobs: s.dprobs.pointer, batch: B, spatial: pixels)
            }
            res.backward(dinp: dinp, dtembAct: dtembAct, grads, dout: d, inp: inp, tembAct: tembAct, r, params,
                         scratch1: s.scratch1.pointer, scratch2: s.scratch2.pointer, dtime: s.dtime.pointer,
                         columns: columns, batch: B, height: height, width: width, accumulate: accumulate)
        }
    }

    // MARK: - Buffers

    /// Every buffer of a forward pass, sized for `capacity` images.
    final class Activations {
        let capacity: Int
        let e: Buffer<Float>  // (B, E) sinusoid(t)
        let te1, te1s, temb, tembAct: Buffer<Float>  // (B, T) ×4: W_t1·e, SiLU of it, temb, SiLU(temb)
        let labels: Buffer<Int32>  // (B,) labels with nil resolved to K
        let x: Buffer<Float>  // (C, B, H, W) the input, channel-major
        let h0: Buffer<Float>  // (c_0, B, H, W) inConv(x), the first skip
        let encoder, middle, decoder: [Stage.Activations]
        let outNormed, outAct: Buffer<Float>  // (c_0, B, H, W)
        let outMean, outRstd: Buffer<Float>  // (B, G)
        let out: Buffer<Float>  // (C, B, H, W) ε̂, channel-major
        let columns: Buffer<Float>  // im2col scratch of the largest convolution

        init() {
            capacity = 0
            (e, te1, te1s, temb, tembAct) = (Buffer(count: 0), Buffer(count: 0), Buffer(count: 0), Buffer(count: 0), Buffer(count: 0))
            labels = Buffer(count: 0, zero: 0)
            (x, h0, outNormed, outAct, outMean, outRstd, out, columns) = (Buffer(count: 0), Buffer(count: 0), Buffer(count: 0),
                Buffer(count: 0), Buffer(count: 0), Buffer(count: 0), Buffer(count: 0), Buffer(count: 0))
            (encoder, middle, decoder) = ([], [], [])
        }

        init(_ net: UNet, batch B: Int) {
            capacity = B
            let c = net.settings
            let (T, N, c0) = (c.timeDim, c.height * c.width, net.inConv.outChannels)
            e = Buffer(count: B * c.timeEmbedDim)
            (te1, te1s, temb, tembAct) = (Buffer(count: B * T), Buffer(count: B * T), Buffer(count: B * T), Buffer(count: B * T))
            labels = Buffer(count: B, zero: 0)
            x = Buffer(count: c.channels * B * N)
            h0 = Buffer(count: c0 * B * N)
            encoder = net.encoder.map { Stage.Activations($0, batch: B) }
            middle = net.middle.map { Stage.Activations($0, batch: B) }
            decoder = net.decoder.map { Stage.Activations($0, batch: B) }
            outNormed = Buffer(count: net.outNorm.channels * B * N)
            outAct = Buffer(count: net.outNorm.channels * B * N)
            outMean = Buffer(count: B * c.groups); outRstd = Buffer(count: B * c.groups)
            out = Buffer(count: c.channels * B * N)
            columns = Buffer(count: net.columnsCount(batch: B))
        }

        /// Floats held, the im2col scratch included.
        var floatCount: Int {
            [e, te1, te1s, temb, tembAct, x, h0, outNormed, outAct, outMean, outRstd, out, columns].reduce(0) { $0 + $1.count }
                + (encoder + middle + decoder).reduce(0) { $0 + $1.floatCount }
        }

        /// The skips: h0, then every encoder stage's output.  skips[k] is (C_k, B, N_k).
        func skip(_ k: Int) -> UnsafeMutablePointer<Float> { k == 0 ? h0.pointer : encoder[k - 1].output }
    }

    /// Gradient and scratch buffers of the backward pass, sized for `capacity` images;
    /// allocated on the first training forward (sampling never needs them).
    final class BackwardBuffers {
        let capacity: Int
        let dskips: [Buffer<Float>]  // like Activations.skip(k): ∂L/∂skip_k
        let streamA, streamB: Buffer<Float>  // (maxActivation·B,) ∂L/∂h along the decoder, ping-pong
        let temp, scratch1, scratch2: Buffer<Float>  // (maxActivation·B,) each
        let dprobs: Buffer<Float>  // (N, N) of the largest attention
        let dtime: Buffer<Float>  // (B, maxChannels)
        let dtemb, dtembAct, dte: Buffer<Float>  // (B, T)
        let columns: Buffer<Float>  // the forward pass's im2col scratch, shared

        init() {
            capacity = 0
            dskips = []
            (streamA, streamB, temp, scratch1, scratch2, dprobs, dtime) = (Buffer(count: 0), Buffer(count: 0), Buffer(count: 0),
                Buffer(count: 0), Buffer(count: 0), Buffer(count: 0), Buffer(count: 0))
            (dtemb, dtembAct, dte, columns) = (Buffer(count: 0), Buffer(count: 0), Buffer(count: 0), Buffer(count: 0))
        }

        init(_ net: UNet, _ acts: Activations, batch B: Int) {
            capacity = B
            let c = net.settings
            let N0 = c.height * c.width
            var sizes = [net.inConv.outChannels * B * N0]
            for s in net.encoder {
                let (h, w) = s.outSize
                sizes.append(s.outChannels * B * h * w)
            }
            dskips = sizes.map { Buffer(count: $0) }
            let M = net.maxActivation * B
            (streamA, streamB, temp, scratch1, scratch2) = (Buffer(count: M), Buffer(count: M), Buffer(count: M),
                                                             Buffer(count: M), Buffer(count: M))
            dprobs = Buffer(count: net.maxAttention)
            dtime = Buffer(count: B * net.maxChannels)
            (dtemb, dtembAct, dte) = (Buffer(count: B * c.timeDim), Buffer(count: B * c.timeDim), Buffer(count: B * c.timeDim))
            columns = acts.columns
        }
    }

    // MARK: - Forward and backward

    public func forward(_ out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, t: UnsafePointer<Int32>,
                        labels: UnsafePointer<Int32>?, batch B: Int, params p: UnsafePointer<Float>,
                        training: Bool, rng: inout Philox) {
        guard !training && B > inferenceRows else {
            forwardPass(out, x: x, t: t, labels: labels, batch: B, params: p, training: training, rng: &rng)
            return
        }
        let S = sampleSize
        for r0 in Swift.stride(from: 0, to: B, by: inferenceRows) {
            let rows = min(inferenceRows, B - r0)
            forwardPass(out + r0 * S, x: x + r0 * S, t: t + r0, labels: labels.map { $0 + r0 }, batch: rows, params: p,
                        training: false, rng: &rng)
        }
    }

    /// One forward pass over B rows, keeping every activation.
    func forwardPass(_ out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, t: UnsafePointer<Int32>,
                     labels: UnsafePointer<Int32>?, batch B: Int, params p: UnsafePointer<Float>,
                     training: Bool, rng: inout Philox) {
        if acts.capacity < B {
            acts = Activations(self, batch: B)
            backwardBuffers = BackwardBuffers()
        }
        if training && backwardBuffers.capacity < acts.capacity {
            backwardBuffers = BackwardBuffers(self, acts, batch: acts.capacity)
        }
        let a = acts
        let (C, N, T) = (settings.channels, settings.height * settings.width, settings.timeDim)
        let columns = a.columns.pointer
        // temb (B, T) = W_t2·SiLU(W_t1·sinusoid(t)) [+ class embedding]; every ResBlock reads SiLU(temb).
        sinusoid.forward(a.e.pointer, t: t, batch: B)
        timeIn.forward(a.te1.pointer, a.e.pointer, p, batch: B)
        SiLU.forward(a.te1s.pointer, a.te1.pointer, count: B * T)
        timeOut.forward(a.temb.pointer, a.te1s.pointer, p, batch: B)
        if let classEmbedding {
            for b in 0..<B { a.labels.pointer[b] = labels?[b] ?? Int32(settings.numClasses) }
            classEmbedding.forward(accumulateInto: a.temb.pointer, ids: a.labels.pointer, p, batch: B)
        }
        SiLU.forward(a.tembAct.pointer, a.temb.pointer, count: B * T)
        let tembAct = UnsafePointer(a.tembAct.pointer)
        // x (B, C, H, W) → (C, B, H, W)
        swapLeadingAxes(a.x.pointer, x, outer: B, inner: C, run: N)
        inConv.forward(a.h0.pointer, a.x.pointer, p, columns: columns, batch: B, height: settings.height, width: settings.width)
        var h = UnsafePointer(a.h0.pointer)
        for (k, stage) in encoder.enumerated() {
            stage.forward(a.encoder[k], h, tembAct: tembAct, p, columns: columns, batch: B, training: training, rng: &rng)
            h = UnsafePointer(a.encoder[k].output)
        }
        for (k, stage) in middle.enumerated() {
            stage.forward(a.middle[k], h, tembAct: tembAct, p, columns: columns, batch: B, training: training, rng: &rng)
            h = UnsafePointer(a.middle[k].output)
        }
        for (k, stage) in decoder.enumerated() {
            // cat (Ci, B, N) = [h (Ci − Cs, B, N); skip (Cs, B, N)]
            let cat = a.decoder[k].cat.pointer, hCount = (stage.inChannels - stage.skipChannels) * B * stage.pixels
            cat.update(from: h, count: hCount)
            (cat + hCount).update(from: a.skip(encoder.count - k), count: stage.skipChannels * B * stage.pixels)
            stage.forward(a.decoder[k], cat, tembAct: tembAct, p, columns: columns, batch: B, training: training, rng: &rng)
            h = UnsafePointer(a.decoder[k].output)
        }
        // ε̂ = Conv3×3(SiLU(GroupNorm(h)))
        let c0 = outNorm.channels
        outNorm.forward(a.outNormed.pointer, mean: a.outMean.pointer, rstd: a.outRstd.pointer, h, p, batch: B, spatial: N)
        SiLU.forward(a.outAct.pointer, a.outNormed.pointer, count: c0 * B * N)
        outConv.forward(a.out.pointer, a.outAct.pointer, p, columns: columns, batch: B, height: settings.height, width: settings.width)
        swapLeadingAxes(out, a.out.pointer, outer: C, inner: B, run: N)  // (C, B, H, W) → (B, C, H, W)
    }

    public func backward(dout: UnsafePointer<Float>, batch B: Int) {
        let (a, s) = (acts, backwardBuffers)
        guard s.capacity >= B else { return }  // no training forward of this batch size was made
        let p = UnsafePointer(parameters.values.pointer), g = parameters.grads.pointer
        let (C, N, T, c0) = (settings.channels, settings.height * settings.width, settings.timeDim, outNorm.channels)
        let (H, W) = (settings.height, settings.width)
        let tembAct = UnsafePointer(a.tembAct.pointer)
        for d in s.dskips { d.fill(0) }
        let dtembAct = s.dtembAct.pointer
        dtembAct.update(repeating: 0, count: B * T)
        // ε̂ = Conv3×3(SiLU(GroupNorm(h)))
        let dOutChannelMajor = s.scratch2.pointer
        swapLeadingAxes(dOutChannelMajor, dout, outer: B, inner: C, run: N)
        outConv.backward(dinp: s.scratch1.pointer, g, dout: dOutChannelMajor, inp: a.outAct.pointer, p, columns: s.columns.pointer,
                         batch: B, height: H, width: W)
        SiLU.backward(dinp: s.scratch1.pointer, dout: s.scratch1.pointer, inp: a.outNormed.pointer, count: c0 * B * N)
        var (d, spare) = (s.streamA.pointer, s.streamB.pointer)
        outNorm.backward(dinp: d, g, dout: s.scratch1.pointer, inp: a.decoder[decoder.count - 1].output,
                         mean: a.outMean.pointer, rstd: a.outRstd.pointer, p, batch: B, spatial: N, accumulate: false)
        // decoder: cat = [h; skip] → d(cat) lands in `spare`; its head is ∂L/∂h, its tail goes to the skip.
        for k in decoder.indices.reversed() {  // ReversedCollection: no array is built
            let stage = decoder[k]
            stage.backward(dinp: spare, accumulate: false, dout: d, inp: a.decoder[k].cat.pointer, a.decoder[k], s,
                           dtembAct: dtembAct, tembAct: tembAct, g, p, batch: B)
            let hCount = (stage.inChannels - stage.skipChannels) * B * stage.pixels
            let dskip = s.dskips[encoder.count - k].pointer
            for i in 0..<stage.skipChannels * B * stage.pixels { dskip[i] += spare[hCount + i] }
            swap(&d, &spare)
        }
        // middle: the first stage's input is the last skip
        middle[1].backward(dinp: spare, accumulate: false, dout: d, inp: a.middle[0].output, a.middle[1], s,
                           dtembAct: dtembAct, tembAct: tembAct, g, p, batch: B)
        swap(&d, &spare)
        middle[0].backward(dinp: s.dskips[encoder.count].pointer, accumulate: true, dout: d, inp: a.skip(encoder.count),
                           a.middle[0], s, dtembAct: dtembAct, tembAct: tembAct, g, p, batch: B)
        // encoder: stage k maps skip k to skip k+1
        for k in encoder.indices.reversed() {
            let stage = encoder[k]
            stage.backward(dinp: s.dskips[k].pointer, accumulate: true, dout: s.dskips[k + 1].pointer, inp: a.skip(k),
                           a.encoder[k], s, dtembAct: dtembAct, tembAct: tembAct, g, p, batch: B)
        }
        inConv.backward(dinp: nil, g, dout: s.dskips[0].pointer, inp: a.x.pointer, p, columns: s.columns.pointer,
                        batch: B, height: H, width: W)
        // temb: tembAct = SiLU(temb), temb = W_t2·SiLU(W_t1·e) [+ class embedding]
        SiLU.backward(dinp: s.dtemb.pointer, dout: s.dtembAct.pointer, inp: a.temb.pointer, count: B * T)
        if let classEmbedding { classEmbedding.backward(g, dout: s.dtemb.pointer, ids: a.labels.pointer, batch: B) }
        timeOut.backward(dinp: s.dte.pointer, g, dout: s.dtemb.pointer, inp: a.te1s.pointer, p, batch: B)
        SiLU.backward(dinp: s.dte.pointer, dout: s.dte.pointer, inp: a.te1.pointer, count: B * T)
        timeIn.backward(dinp: nil, g, dout: s.dte.pointer, inp: a.e.pointer, p, batch: B)
    }
}

/// out (inner, outer, run) = inp (outer, inner, run): swaps the two leading axes.
func swapLeadingAxes(_ out: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>, outer: Int, inner: Int, run: Int) {
    for o in 0..<outer {
        for i in 0..<inner { (out + (i * outer + o) * run).update(from: inp + (o * inner + i) * run, count: run) }
    }
}
