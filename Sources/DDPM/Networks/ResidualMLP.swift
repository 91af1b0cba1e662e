// The ε-network for vector data: a residual MLP with a sinusoidal timestep embedding.
//
//   B = batch, D = data dims, H = hidden width, E = timestep-encoding size,
//   L = residual blocks, c = the row's condition.
//
//   e    = sinusoid(t)                                     (B, E)
//   temb = W_t2·SiLU(W_t1·e) + condition(c)                (B, H)
//   (condition: the class, vector or pooled-context embedding, Networks/ConditionEncoder.swift;
//   a sequence or token condition reaches the MLP through its masked mean only, the UNet also
//   cross-attends to it)
//   h_0  = W_in·x                                          (B, H)
//   h_{l+1} = h_l + W2_l·SiLU(W1_l·(LN_l(h_l) + temb))     (B, H)   l = 0..<L
//   ε̂    = W_out·h_L                                       (B, D)
// (every W· includes its bias)
//
// The readout is linear in the residual stream on purpose: at large t the ideal ε̂ ≈ x_t
// grows with |x|, and a final LayerNorm would bound it (DDIM then diverges on outliers).
import DDPMKernels

public final class ResidualMLP: DenoisingNetwork {
    public struct Config: Codable, Sendable, Equatable, FieldCoded {
        public var dataDim: Int
        public var hidden: Int = 128
        public var depth: Int = 4
        public var timeEmbedDim: Int = 64
        public init(dataDim: Int, hidden: Int = 128, depth: Int = 4, timeEmbedDim: Int = 64) {
            (self.dataDim, self.hidden, self.depth, self.timeEmbedDim) = (dataDim, hidden, depth, timeEmbedDim)
        }

        /// As checkpoint JSON (ddpm_mlp_params' names); data_dim has no default.
        static let fields = ConfigFields(defaults: Config(dataDim: 0), [
            .required("data_dim", \.dataDim),
            .value("hidden", \.hidden),
            .value("depth", \.depth),
            .value("time_embed_dim", \.timeEmbedDim),
        ])

        public init(from decoder: Decoder) throws { self = try Self.fields.decode(from: decoder) }
        public func encode(to encoder: Encoder) throws { try Self.fields.encode(self, to: encoder) }
    }

    struct Block {
        let norm: LayerNorm, fc1: Linear, fc2: Linear
    }

    public let parameters: ParameterSet
    public let settings: Config
    public var sampleShape: [Int] { [settings.dataDim] }
    public var sampleSize: Int { settings.dataDim }
    public let conditioning: Conditioning
    public let learnsVariance: Bool
    public var config: NetworkConfig { .mlp(settings) }

    let time: TimeEmbedding  // E → H
    let condition: ConditionEncoder  // the condition's embeddings, added into temb (B, H)
    let inProj: Linear
    let blocks: [Block]
    let outProj: Linear
    /// The weights of the time embedding, in_proj, the blocks' fc1 and fc2 and out_proj prepared once
    /// per prediction for all its chunks; one instance shared by the network and its replicas (Layers/PreparedWeights.swift).
    public let preparedWeights: PreparedWeights?
    /// The activation block and the workspace, sized for `acts.capacity` rows.
    var acts: Activations
    var work: Workspace

    /// - Parameter checkLayout: runs on the complete parameter layout before anything of
    ///   size P is allocated (the model checks its memory, a checkpoint its tensors).
    public init(_ config: Config, conditioning: Conditioning = .none, learnsVariance: Bool = false, timesteps: Int,
                rng: inout Philox, checkLayout: (ParameterLayout) throws -> Void = { _ in },
                sharingValuesOf original: ParameterSet? = nil, sharingPrepared: PreparedWeights? = nil) throws {
        let (D, H, E, L) = (config.dataDim, config.hidden, config.timeEmbedDim, config.depth)
        // The field caps keep every size below exact in Int; the byte limit is checked on the layout.
        try Limits.requireField("data_dim", D, cap: Limits.sampleFloats)
        try Limits.requireField("hidden", H, cap: Limits.width)
        try Limits.requireField("depth", L, cap: Limits.depth, allowZero: true)
        try require(E >= 2 && E % 2 == 0, "time_embed_dim must be even and >= 2 (got \(E))")
        try Limits.requireField("time_embed_dim", E, cap: Limits.width)
        try conditioning.validate()
        try Limits.requireField("timesteps", timesteps, cap: Limits.timesteps)
        settings = config
        self.conditioning = conditioning
        self.learnsVariance = learnsVariance
        var layout = ParameterLayout()
        time = try TimeEmbedding(&layout, "time", encoding: E, width: H, timesteps: timesteps)
        condition = ConditionEncoder(&layout, conditioning, width: H)
        inProj = Linear(&layout, "in_proj", in: D, out: H)
        blocks = (0..<L).map { l in
            Block(norm: LayerNorm(&layout, "blocks.\(l).norm", features: H),
                  fc1: Linear(&layout, "blocks.\(l).fc1", in: H, out: H),
                  fc2: Linear(&layout, "blocks.\(l).fc2", in: H, out: H))
        }
        outProj = Linear(&layout, "out_proj", in: H, out: learnsVariance ? 2 * D : D)  // [output; variance]
        try checkLayout(layout)
        parameters = try original.map { try ParameterSet(layout: layout, sharingValuesOf: $0) }
            ?? ParameterSet(layout: layout, rng: &rng)
        preparedWeights = sharingPrepared
            ?? PreparedWeights([time.fc1, time.fc2, inProj] + blocks.flatMap { [$0.fc1, $0.fc2] } + [outProj])
        // Every view is B × (a width): the floats of B rows are B times those of one, plus the
        // condition's side buffers (labels, lengths, token ids).
        floatsPerRow = try Arena.floats { [time, condition] in try Activations(config, time, condition, batch: 1, &$0) }
            + Arena.floats { [condition] in Workspace(config, condition, batch: 1, &$0) } + condition.sideElementsPerRow
        acts = try Arena.allocate { [time, condition] in try Activations(config, time, condition, batch: 0, &$0) }
        work = try Arena.allocate { [condition] in Workspace(config, condition, batch: 0, &$0) }
    }

    public func replica() throws -> DenoisingNetwork {
        var unused = Philox(seed: 0)  // a replica draws no initial values
        return try ResidualMLP(settings, conditioning: conditioning, learnsVariance: learnsVariance,
                           timesteps: time.sinusoid.table.count / time.sinusoid.dim, rng: &unused, sharingValuesOf: parameters,
                               sharingPrepared: preparedWeights)
    }

    /// Floats of the activation block and workspace per row (each side buffer's Int32 counted as one).
    let floatsPerRow: Int


    public func activationFloats(batch B: Int, training: Bool) -> Double { Double(max(B, acts.capacity)) * Double(floatsPerRow) }

    public func reserve(batch B: Int, training: Bool) throws {
        guard acts.capacity < B else { return }
        acts = try Arena.allocate { [settings, time, condition] in try Activations(settings, time, condition, batch: B, &$0) }
        work = try Arena.allocate { [settings, condition] in Workspace(settings, condition, batch: B, &$0) }
    }

    /// Every tensor of a forward pass, for `capacity` rows.
    struct Activations {
        let block: Buffer<Float>?  // the arena's block: keeps the views alive
        let capacity: Int
        let x: UnsafeMutablePointer<Float>  // (B, D) the input, kept for W_in's gradient
        let time: TimeEmbedding.Activations  // e (B, E), ..., out = temb (B, H)
        let h: [UnsafeMutablePointer<Float>]  // L+1 × (B, H): the residual stream
        let normed: [UnsafeMutablePointer<Float>]  // L × (B, H): LN(h_l) + temb
        let mean, rstd: [UnsafeMutablePointer<Float>]  // L × (B,)
        let u, s: [UnsafeMutablePointer<Float>]  // L × (B, H): fc1(normed), SiLU of it
        let condition: ConditionEncoder.Activations  // resolved labels, vectors, context c̃ (B, Lmax, Dx), ...

        init(_ c: Config, _ time: TimeEmbedding, _ condition: ConditionEncoder, batch B: Int, _ arena: inout Arena) throws {
            (block, capacity) = (arena.block, B)
            let (H, L) = (c.hidden, c.depth)
            x = arena.take(B * c.dataDim)
            self.time = TimeEmbedding.Activations(time, batch: B, &arena)
            h = (0...L).map { _ in arena.take(B * H) }
            normed = (0..<L).map { _ in arena.take(B * H) }
            mean = (0..<L).map { _ in arena.take(B) }
            rstd = (0..<L).map { _ in arena.take(B) }
            u = (0..<L).map { _ in arena.take(B * H) }
            s = (0..<L).map { _ in arena.take(B * H) }
            self.condition = try ConditionEncoder.Activations(condition, batch: B, &arena)
        }
    }

    /// The scratch arena: gradients of the backward pass, for `capacity` rows.
    struct Workspace {
        let block: Buffer<Float>?  // the arena's block: keeps the views alive
        let dh, da, ds: UnsafeMutablePointer<Float>  // (B, H) ∂L/∂h_l, ∂L/∂normed_l, ∂L/∂u_l
        let dtemb, dtimeHidden: UnsafeMutablePointer<Float>  // (B, H) ∂L/∂temb, ∂L/∂(W_t1·e) (TimeEmbedding.backward scratch)
        let condition: ConditionEncoder.Workspace  // the condition embeddings' backward scratch

        init(_ c: Config, _ condition: ConditionEncoder, batch B: Int, _ arena: inout Arena) {
            block = arena.block
            let H = c.hidden
            (dh, da, ds) = (arena.take(B * H), arena.take(B * H), arena.take(B * H))
            (dtemb, dtimeHidden) = (arena.take(B * H), arena.take(B * H))
            self.condition = ConditionEncoder.Workspace(condition, batch: B, &arena)
        }
    }

    public func forward(_ out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, t: UnsafePointer<Int32>,
                        cond: ConditionBatch, batch B: Int, params p: UnsafePointer<Float>,
                        training: Bool, rng: inout Philox) {
        // A caller that did not reserve (a Swift test) gets the buffers here; the model always reserves.
        if acts.capacity < B { try! reserve(batch: B, training: training) }
        let (a, prepared) = (acts, training ? nil : preparedWeights)  // train steps prepare nothing (PreparedWeights.swift)
        let H = settings.hidden
        // temb (B, H) = W_t2·SiLU(W_t1·sinusoid(t)) + condition(c). While sampling every row
        // shares t: one row is computed and copied. (The MLP reads a context through its mean only.)
        let temb = a.time.out
        time.forward(a.time, t: t, p, batch: B, sharedT: !training && (0..<B).allSatisfy { t[$0] == t[0] }, prepared: prepared)
        condition.forward(accumulateInto: temb, a.condition, cond, p, batch: B, training: training)
        // h_0 = W_in·x  (x is kept for the backward pass)
        if training { a.x.update(from: x, count: B * settings.dataDim) }
        inProj.forward(a.h[0], x, p, batch: B, prepared: prepared)
        // Inference keeps nothing for a backward pass: the residual stream stays in h_0 (fc2
        // accumulates into it: no copy of h_l). The same operations in the same order, so the
        // same bits as training's forward. (SiLU in place in u_l was 50% slower: the loop's
        // runtime overlap check sends an aliased call to its scalar version.)
        for (l, block) in blocks.enumerated() {
            let (hIn, hOut, n) = (a.h[training ? l : 0], a.h[training ? l + 1 : 0], a.normed[l])
            block.norm.forward(n, mean: a.mean[l], rstd: a.rstd[l], hIn, p, batch: B, adding: temb)  // LN(h_l) + temb
            block.fc1.forward(a.u[l], n, p, batch: B, prepared: prepared)
            SiLU.forward(a.s[l], a.u[l], count: B * H)
            if training { hOut.update(from: hIn, count: B * H) }  // residual: h_{l+1} = h_l + fc2(...)
            block.fc2.forward(hOut, a.s[l], p, batch: B, accumulate: true, prepared: prepared)
        }
        outProj.forward(out, a.h[training ? blocks.count : 0], p, batch: B, prepared: prepared)
    }

    public func backward(dout: UnsafePointer<Float>, batch B: Int) {
        let (a, w) = (acts, work)
        let H = settings.hidden
        let p = UnsafePointer(parameters.values.pointer), g = parameters.grads.pointer
        let (dh, da, ds) = (w.dh, w.da, w.ds)
        // ε̂ = W_out·h_L
        outProj.backward(dinp: dh, g, dout: dout, inp: a.h[blocks.count], p, batch: B)
        w.dtemb.update(repeating: 0, count: B * H)
        for l in blocks.indices.reversed() {  // a ReversedCollection: no array is built
            let block = blocks[l]
            // h_{l+1} = h_l + fc2(SiLU(fc1(LN(h_l) + temb))); dh carries ∂L/∂h_{l+1}, then ∂L/∂h_l.
            block.fc2.backward(dinp: ds, g, dout: dh, inp: a.s[l], p, batch: B)
            SiLU.backward(dinp: ds, dout: ds, inp: a.u[l], count: B * H)
            block.fc1.backward(dinp: da, g, dout: ds, inp: a.normed[l], p, batch: B)
            ddpm_add_inplace(w.dtemb, da, Int64(B * H))
            block.norm.backward(dinp: dh, g, dout: da, inp: a.h[l], mean: a.mean[l],
                                rstd: a.rstd[l], p, batch: B)
        }
        inProj.backward(dinp: nil, g, dout: dh, inp: a.x, p, batch: B)
        // temb = W_t2·SiLU(W_t1·e) + condition(c)  (the pool is the context's only reader)
        condition.backward(dtemb: w.dtemb, dcontext: nil, a.condition, w.condition, g, p, batch: B)
        time.backward(dout: w.dtemb, a.time, dhidden: w.dtimeHidden, g, p, batch: B)
    }
}
