// The ε-network for images: a small UNet in the style of DDPM / improved DDPM.
//
//   B = batch, C = image channels, H×W = image size, N = pixels at the current level,
//   c = base channels, c_l = c·mult[l] channels at level l (l = 0..<L), R = ResBlocks per level,
//   E = timestep-encoding size, T = 4c time-embedding width, c̃ = the condition's context.
//
//   e       = sinusoid(t)                                              (B, E)
//   temb    = W_t2·SiLU(W_t1·e) + condition(c)   (Networks/ConditionEncoder.swift)   (B, T)
//   h       = Conv3×3(x)                                               (c_0, B, H, W)
//   encoder: level l = 0..<L: R × [ResBlock(→ c_l) (+ Attention if l is flagged)],
//            then Downsample (stride-2 conv) unless l is the last level;
//            every stage output (and h) is kept as a skip
//   middle:  ResBlock, Attention, ResBlock
//   decoder: level l = L−1...0: R+1 × [ResBlock(concat(h, skip) → c_l) (+ Attention)],
//            the last one of each level but level 0 followed by Upsample (nearest ×2, conv)
//   ε̂       = Conv3×3(SiLU(GroupNorm(h)))   (starts at zero)           (B, C, H, W)
// Every ResBlock gets SiLU(temb) through its own linear time projection; with a sequence or
// token condition every cross-attention stage (cross_attention_levels and the middle) reads c̃.
// A 1-D UNet over signals is the same network with H = 1 (`UNetConfig.isSignal`): every 3×3
// kernel is 1×3 and Downsample / Upsample halve / double the width only.
//
// The network's input and output are (B, C, H, W); inside, images are channel-major
// (C, B, H, W), so that every convolution of the batch is one GEMM and concatenating along
// channels is placing two blocks one after the other (see Layers/Conv2d.swift).
//
// Files: UNetConfig.swift (the shape and its validation), UNet+Stages.swift (one step of the
// encoder, middle or decoder), UNet+Buffers.swift (the activation block and the workspace).

public final class UNet: DenoisingNetwork {
    public let parameters: ParameterSet
    public let settings: UNetConfig
    public var sampleShape: [Int] { [settings.channels, settings.height, settings.width] }
    public var sampleSize: Int { settings.channels * settings.height * settings.width }
    public let conditioning: Conditioning
    public let learnsVariance: Bool
    /// C, or 2·C with the learned variance's channels.
    var outputChannels: Int { learnsVariance ? 2 * settings.channels : settings.channels }
    public var config: NetworkConfig { .unet(settings) }

    let time: TimeEmbedding  // E → T
    let condition: ConditionEncoder  // the condition's embeddings into temb (B, T), and its context c̃
    let inConv: Conv2d  // 3×3, C → c_0
    let encoder: [Stage]
    let middle: [Stage]  // [ResBlock + Attention, ResBlock]
    let decoder: [Stage]
    let outNorm: GroupNorm  // c_0
    /// The output head's GroupNorm is followed by SiLU, in the same pass.
    private var outFusion: GroupNorm.Fusion { GroupNorm.Fusion(silu: true) }
    let outConv: Conv2d  // 3×3, c_0 → C, zero-initialised
    /// Per image: the most floats of any activation (the size of each big scratch buffer);
    /// N² of the largest attention; the most channels of any ResBlock; the floats of each skip.
    let maxActivation: Int, maxAttention: Int, maxChannels: Int, skipFloats: [Int]
    /// The convolutions' weights prepared once per prediction for all its chunks; one instance
    /// shared by the network and its replicas (Layers/PreparedWeights.swift, Conv2d+Prepared.swift).
    public let preparedWeights: PreparedWeights?
    /// The activation block and the workspace, sized for the largest batch so far; nil before the first forward.
    var acts: Activations?
    var work: Workspace?
    /// Rows per pass of an inference forward: larger batches run in several passes (rows are
    /// independent), so that sampling many images at once does not hold activations for all.
    var inferenceRows = 1
    /// Activation floats an inference pass may hold (2^26 floats = 256 MiB).
    static let inferenceBudget = 1 << 26

    /// - Parameter checkLayout: runs on the complete parameter layout before anything of
    ///   size P is allocated (the model checks its memory, a checkpoint its tensors).
    public init(_ config: UNetConfig, conditioning: Conditioning = .none, learnsVariance: Bool = false, timesteps: Int,
                rng: inout Philox, checkLayout: (ParameterLayout) throws -> Void = { _ in },
                sharingValuesOf original: ParameterSet? = nil, sharingPrepared: PreparedWeights? = nil) throws {
        try config.validate(timesteps: timesteps)
        try conditioning.validate()
        settings = config
        self.conditioning = conditioning
        self.learnsVariance = learnsVariance
        let T = config.timeDim
        var layout = ParameterLayout()
        time = try TimeEmbedding(&layout, "time", encoding: config.timeEmbedDim, width: T, timesteps: timesteps,
                                 flipSinToCos: config.flipSinToCos, freqShift: config.freqShift)
        condition = ConditionEncoder(&layout, conditioning, width: T)
        let c0 = config.baseChannels * config.channelMult[0]
        inConv = Conv2d(&layout, "in_conv", in: config.channels, out: c0, kernel: 3, kernelHeight: config.isSignal ? 1 : 3)
        (encoder, middle, decoder) = Self.makeStages(config, conditioning, &layout)  // UNet+Stages.swift
        outNorm = GroupNorm(&layout, "out_norm", channels: c0, groups: config.groups, epsilon: config.normEps)
        outConv = Conv2d(&layout, "out_conv", in: c0, out: (learnsVariance ? 2 : 1) * config.channels, kernel: 3,
                         kernelHeight: config.isSignal ? 1 : 3, zeroInit: true)
        try checkLayout(layout)
        parameters = try original.map { try ParameterSet(layout: layout, sharingValuesOf: $0) }
            ?? ParameterSet(layout: layout, rng: &rng)

        let stages = encoder + middle + decoder
        let N0 = config.height * config.width
        preparedWeights = sharingPrepared ?? PreparedWeights(convolutions:
            [(inConv, config.height, config.width)] + stages.flatMap(\.convolutions) + [(outConv, config.height, config.width)])
        maxActivation = max(stages.map(\.maxActivation).max()!, max(outConv.outChannels, inConv.outChannels) * N0)
        maxAttention = stages.map { $0.attention == nil ? 0 : $0.pixels * $0.pixels }.max()!
        maxChannels = stages.map { $0.res?.outChannels ?? 0 }.max()!
        skipFloats = [inConv.outChannels * N0] + encoder.map { $0.outChannels * $0.outSize.height * $0.outSize.width }
        let perImage = try Arena.floats { try Activations(self, batch: 1, &$0) } + columnsCount(batch: 1)
        inferenceRows = max(1, min(256, Self.inferenceBudget / perImage))
        func floats(_ rows: Int, _ backward: Bool) throws -> Int {
            try Arena.floats { try Activations(self, batch: rows, &$0) } + Arena.floats { Workspace(self, batch: rows, backward: backward, &$0) }
                - columnsCount(batch: rows)
        }
        floatsOfOneAndTwo = (training: (try floats(1, true), try floats(2, true)), inference: (try floats(1, false), try floats(2, false)))
    }

    public func replica() throws -> DenoisingNetwork {
        var unused = Philox(seed: 0)  // a replica draws no initial values
        return try UNet(settings, conditioning: conditioning, learnsVariance: learnsVariance,
                           timesteps: time.sinusoid.table.count / time.sinusoid.dim, rng: &unused, sharingValuesOf: parameters,
                           sharingPrepared: preparedWeights)
    }

    /// Floats of the activation block and workspace for one and for two images, less the
    /// convolutions' scratch (`columnsCount`). Every other view is linear in the batch but the
    /// backward attention scratch (constant), so the line through these two points bounds them
    /// for any batch from above; the scratch (the most of several convolutions' im2col columns
    /// and Winograd blocks, each growing with the batch up to a cap) is counted exactly.
    var floatsOfOneAndTwo = (training: (0, 0), inference: (0, 0))
    /// columnsCount(batch: rows) of the last activationFloats: a train step's memory check asks
    /// for the same batch every step, and working it out again allocates (the candidates' lists).
    private var lastColumns = (rows: 0, floats: 0)

    public func activationFloats(batch B: Int, training: Bool) -> Double {
        // What is already held stays: a larger capacity, a backward workspace.
        let rows = max(training ? B : min(B, inferenceRows), acts?.capacity ?? 0)
        let (one, two) = training || work?.backward == true ? floatsOfOneAndTwo.training : floatsOfOneAndTwo.inference
        if lastColumns.rows != rows { lastColumns = (rows, columnsCount(batch: rows)) }
        return Double(one) + Double(rows - 1) * Double(two - one) + Double(lastColumns.floats)
    }

    public func reserve(batch B: Int, training: Bool) throws {
        let rows = training ? B : min(B, inferenceRows)
        if rows > acts?.capacity ?? 0 {
            acts = try Arena.allocate { try Activations(self, batch: rows, &$0) }
            work = try Arena.allocate { Workspace(self, batch: rows, backward: training, &$0) }
        }
        if training && !work!.backward {
            let capacity = acts!.capacity
            work = try Arena.allocate { Workspace(self, batch: capacity, backward: true, &$0) }
        }
    }

    /// Floats of the convolutions' scratch for a batch of B (Conv2d.columnsCount: im2col's
    /// columns or Winograd's blocks): the most any convolution needs.
    func columnsCount(batch B: Int) -> Int {
        let (H, W) = (settings.height, settings.width)
        return max((encoder + middle + decoder).map { $0.columnsCount(batch: B) }.max()!,
                   inConv.columnsCount(batch: B, height: H, width: W), outConv.columnsCount(batch: B, height: H, width: W))
    }

    // MARK: - Forward and backward

    public func forward(_ out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, t: UnsafePointer<Int32>,
                        cond: ConditionBatch, batch B: Int, params p: UnsafePointer<Float>,
                        training: Bool, rng: inout Philox) {
        guard !training && B > inferenceRows else {
            forwardPass(out, x: x, t: t, cond: cond, batch: B, params: p, training: training, rng: &rng)
            return
        }
        let (S, O) = (sampleSize, outputSize)
        for r0 in Swift.stride(from: 0, to: B, by: inferenceRows) {
            let rows = min(inferenceRows, B - r0)
            forwardPass(out + r0 * O, x: x + r0 * S, t: t + r0, cond: cond.rows(from: r0, count: rows), batch: rows, params: p,
                        training: false, rng: &rng)
        }
    }

    /// One forward pass over B rows, keeping every activation.
    func forwardPass(_ out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, t: UnsafePointer<Int32>,
                     cond: ConditionBatch, batch B: Int, params p: UnsafePointer<Float>,
                     training: Bool, rng: inout Philox) {
        // A caller that did not reserve (a Swift test) gets the buffers here; the model always reserves.
        if B > acts?.capacity ?? 0 || (training && !work!.backward) { try! reserve(batch: B, training: training) }
        let (a, w) = (acts!, work!)
        let pass = Pass(params: p, grads: parameters.grads.pointer, batch: B, training: training, scratch: w.scratch,
                        prepared: training ? nil : preparedWeights)
        let (C, H, W, N, T) = (settings.channels, settings.height, settings.width, settings.height * settings.width, settings.timeDim)
        // temb (B, T) = W_t2·SiLU(W_t1·sinusoid(t)) + condition(c); every ResBlock reads SiLU(temb),
        // every cross-attention stage the condition's context c̃.
        time.forward(a.time, t: t, p, batch: B)
        let context = condition.forward(accumulateInto: a.time.out, a.condition, cond, p, batch: B, training: training)
            .map { ContextPass(context: $0, dcontext: nil, scratch: w.cross) }
        SiLU.forward(a.tembAct, a.time.out, count: B * T)
        // x (B, C, H, W) → (C, B, H, W)
        swapLeadingAxes(a.x, x, outer: B, inner: C, run: N)
        inConv.forward(a.h0, a.x, p, columns: pass.scratch.columns, batch: B, height: H, width: W, prepared: pass.prepared)
        var h = UnsafePointer(a.h0)
        for (k, stage) in encoder.enumerated() {
            stage.forward(a.encoder[k], h, temb: a.tembAct, pass, context: context, rng: &rng)
            h = UnsafePointer(a.encoder[k].out)
        }
        for (k, stage) in middle.enumerated() {
            stage.forward(a.middle[k], h, temb: a.tembAct, pass, context: context, rng: &rng)
            h = UnsafePointer(a.middle[k].out)
        }
        for (k, stage) in decoder.enumerated() {
            // cat (Ci, B, N) = [h (Ci − Cs, B, N); skip (Cs, B, N)]
            let cat = a.decoder[k].cat, hCount = (stage.inChannels - stage.skipChannels) * B * stage.pixels
            cat.update(from: h, count: hCount)
            (cat + hCount).update(from: a.skip(encoder.count - k), count: stage.skipChannels * B * stage.pixels)
            stage.forward(a.decoder[k], cat, temb: a.tembAct, pass, context: context, rng: &rng)
            h = UnsafePointer(a.decoder[k].out)
        }
        // ε̂ = Conv3×3(SiLU(GroupNorm(h))), GroupNorm and SiLU in one pass
        outNorm.forward(a.outAct, mean: a.outMean, rstd: a.outRstd, h, p, batch: B, spatial: N, fusing: outFusion)
        outConv.forward(a.out, a.outAct, p, columns: pass.scratch.columns, batch: B, height: H, width: W,
                        prepared: pass.prepared)
        swapLeadingAxes(out, a.out, outer: outputChannels, inner: B, run: N)  // (C', B, H, W) → (B, C', H, W)
    }

    public func backward(dout: UnsafePointer<Float>, batch B: Int) {
        // Only after a training forward of at least this batch (which sized the workspace for backward).
        guard let a = acts, let w = work, w.backward, w.capacity >= B else { return }
        let (p, g) = (UnsafePointer(parameters.values.pointer), parameters.grads.pointer)
        let pass = Pass(params: p, grads: g, batch: B, training: true, scratch: w.scratch)
        let (H, W, N, T) = (settings.height, settings.width, settings.height * settings.width, settings.timeDim)
        let (tembAct, dtembAct) = (UnsafePointer(a.tembAct), w.dtembAct)  // every ResBlock reads SiLU(temb), adds to its gradient
        for (k, d) in w.dskips.enumerated() { d.update(repeating: 0, count: skipFloats[k] * B) }
        dtembAct.update(repeating: 0, count: B * T)
        let dcontext = condition.zeroedContextGradient(w.condition, batch: B)  // every cross-attention adds ∂L/∂c̃ into it
        let context = condition.context(a.condition).map { ContextPass(context: $0, dcontext: dcontext, scratch: w.cross) }
        // ε̂ = Conv3×3(SiLU(GroupNorm(h)))
        let (dAct, dOut) = (w.scratch.a, w.scratch.b)
        swapLeadingAxes(dOut, dout, outer: B, inner: outputChannels, run: N)  // (B, C', H, W) → (C', B, H, W)
        outConv.backward(dinp: dAct, g, dout: dOut, inp: a.outAct, p, columns: w.scratch.columns, batch: B, height: H, width: W)
        var (d, spare) = (w.streamA, w.streamB)
        // through SiLU and GroupNorm in one pass (GroupNorm's output recomputed from h; dAct overwritten)
        outNorm.backward(dinp: d, g, dout: dAct, dbias: nil, inp: a.decoder[decoder.count - 1].out, mean: a.outMean,
                         rstd: a.outRstd, p, batch: B, spatial: N, accumulate: false, fusing: outFusion)
        // decoder: cat = [h; skip] → d(cat) lands in `spare`; its head is ∂L/∂h, its tail goes to the skip.
        for k in decoder.indices.reversed() {  // ReversedCollection: no array is built
            let stage = decoder[k]
            stage.backward(dinp: spare, dout: d, inp: a.decoder[k].cat, temb: tembAct, dtemb: dtembAct, a.decoder[k], pass,
                           context: context, accumulate: false)
            let hCount = (stage.inChannels - stage.skipChannels) * B * stage.pixels
            let dskip = w.dskips[encoder.count - k]
            for i in 0..<stage.skipChannels * B * stage.pixels { dskip[i] += spare[hCount + i] }
            swap(&d, &spare)
        }
        // middle: the first stage's input is the last skip
        middle[1].backward(dinp: spare, dout: d, inp: a.middle[0].out, temb: tembAct, dtemb: dtembAct, a.middle[1], pass,
                           context: context, accumulate: false)
        swap(&d, &spare)
        middle[0].backward(dinp: w.dskips[encoder.count], dout: d, inp: a.skip(encoder.count), temb: tembAct, dtemb: dtembAct,
                           a.middle[0], pass, context: context, accumulate: true)
        // encoder: stage k maps skip k to skip k+1
        for k in encoder.indices.reversed() {
            encoder[k].backward(dinp: w.dskips[k], dout: w.dskips[k + 1], inp: a.skip(k), temb: tembAct, dtemb: dtembAct,
                                a.encoder[k], pass, context: context, accumulate: true)
        }
        inConv.backward(dinp: nil, g, dout: w.dskips[0], inp: a.x, p, columns: w.scratch.columns, batch: B, height: H, width: W)
        // temb: tembAct = SiLU(temb), temb = W_t2·SiLU(W_t1·e) + condition(c); c̃ also fed every
        // cross-attention (their ∂L/∂c̃ is in dcontext)
        SiLU.backward(dinp: w.dtemb, dout: dtembAct, inp: a.time.out, count: B * T)
        condition.backward(dtemb: w.dtemb, dcontext: dcontext, a.condition, w.condition, g, p, batch: B)
        time.backward(dout: w.dtemb, a.time, dhidden: w.dtimeHidden, g, p, batch: B)
    }
}

/// out (inner, outer, run) = inp (outer, inner, run): swaps the two leading axes.
func swapLeadingAxes(_ out: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>, outer: Int, inner: Int, run: Int) {
    for o in 0..<outer {
        for i in 0..<inner { (out + (i * outer + o) * run).update(from: inp + (o * inner + i) * run, count: run) }
    }
}
