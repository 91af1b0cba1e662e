// The ε-network for vector data: a residual MLP with a sinusoidal timestep embedding.
//
//   B = batch, D = data dims, H = hidden width, E = timestep-encoding size,
//   L = residual blocks, K = classes (label K = null), Dc = conditioning-vector size.
//
//   e    = sinusoid(t)                                     (B, E)
//   temb = W_t2·SiLU(W_t1·e) [+ classEmbedding[label] | + W_c·c + b_c | + W_p·pooled(c̃) + b_p]   (B, H)
//   (a sequence or token condition reaches the MLP through its masked mean only, see
//   Layers/ContextEmbedding.swift; the UNet also cross-attends to it)
//   h_0  = W_in·x                                          (B, H)
//   h_{l+1} = h_l + W2_l·SiLU(W1_l·(LN_l(h_l) + temb))     (B, H)   l = 0..<L
//   ε̂    = W_out·h_L                                       (B, D)
// (every W· includes its bias)
//
// The readout is linear in the residual stream on purpose: at large t the ideal ε̂ ≈ x_t
// grows with |x|, and a final LayerNorm would bound it (DDIM then diverges on outliers).

public final class ResidualMLP: DenoisingNetwork {
    public struct Config: Codable, Sendable, Equatable {
        public var dataDim: Int
        public var hidden: Int = 128
        public var depth: Int = 4
        public var timeEmbedDim: Int = 64
        public init(dataDim: Int, hidden: Int = 128, depth: Int = 4, timeEmbedDim: Int = 64) {
            (self.dataDim, self.hidden, self.depth, self.timeEmbedDim) = (dataDim, hidden, depth, timeEmbedDim)
        }
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
    let classEmbedding: Embedding?  // (K + 1, H)
    let vectorEmbedding: VectorEmbedding?  // Dc → H, with the learned null vector
    let contextEmbedding: ContextEmbedding?  // the context c̃ (B, Lmax, Dc) of a sequence or token condition
    let pooledProj: Linear?  // Dc → H, of the context's masked mean
    let inProj: Linear
    let blocks: [Block]
    let outProj: Linear
    /// The activation block and the workspace, sized for `acts.capacity` rows.
    var acts: Activations
    var work: Workspace

    /// - Parameter checkLayout: runs on the complete parameter layout before anything of
    ///   size P is allocated (the model checks its memory, a checkpoint its tensors).
    public init(_ config: Config, conditioning: Conditioning = .none, learnsVariance: Bool = false, timesteps: Int,
                rng: inout Philox, checkLayout: (ParameterLayout) throws -> Void = { _ in },
                sharingValuesOf original: ParameterSet? = nil) throws {
        let (D, H, E, L, K) = (config.dataDim, config.hidden, config.timeEmbedDim, config.depth, conditioning.numClasses)
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
        classEmbedding = K > 0 ? Embedding(&layout, "class_embedding", rows: K + 1, features: H) : nil
        let Dc = conditioning.vectorDim
        vectorEmbedding = Dc > 0 ? VectorEmbedding(&layout, "cond_vector", dim: Dc, features: H) : nil
        let Dx = conditioning.contextDim
        contextEmbedding = Dx > 0 ? ContextEmbedding(&layout, "context", dim: Dx, maxLength: conditioning.maxLength,
                                                     vocabulary: conditioning.vocabulary) : nil
        pooledProj = Dx > 0 ? Linear(&layout, "context_pool", in: Dx, out: H) : nil
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
        // Every view is B × (a width): the floats of B rows are B times those of one, plus B labels.
        floatsPerRow = try Arena.floats { [time] in try Activations(config, time, conditioning, batch: 1, &$0) }
            + Arena.floats { Workspace(config, conditioning, batch: 1, &$0) } + 2 + conditioning.maxLength
        acts = try Arena.allocate { [time] in try Activations(config, time, conditioning, batch: 0, &$0) }
        work = try Arena.allocate { Workspace(config, conditioning, batch: 0, &$0) }
    }

    public func replica() throws -> DenoisingNetwork {
        var unused = Philox(seed: 0)  // a replica draws no initial values
        return try ResidualMLP(settings, conditioning: conditioning, learnsVariance: learnsVariance,
                           timesteps: time.sinusoid.table.count / time.sinusoid.dim, rng: &unused, sharingValuesOf: parameters)
    }

    /// Floats of the activation block and workspace per row (the labels counted as one).
    let floatsPerRow: Int


    public func activationFloats(batch B: Int, training: Bool) -> Double { Double(max(B, acts.capacity)) * Double(floatsPerRow) }

    public func reserve(batch B: Int, training: Bool) throws {
        guard acts.capacity < B else { return }
        acts = try Arena.allocate { [settings, time, conditioning] in try Activations(settings, time, conditioning, batch: B, &$0) }
        work = try Arena.allocate { [settings, conditioning] in Workspace(settings, conditioning, batch: B, &$0) }
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
        let labels: Buffer<Int32>  // (B,) labels with nil resolved to K
        let cond: UnsafeMutablePointer<Float>  // (B, Dc) the conditioning vectors, null rows resolved
        let condNull: UnsafeMutablePointer<Float>  // (B,) 1 where the row took the null vector (vector conditioning)
        let context: UnsafeMutablePointer<Float>  // (B, Lmax, Dc) c̃ (sequence or token conditioning)
        let pooled: UnsafeMutablePointer<Float>  // (B, Dc) its masked mean
        let contextNull: UnsafeMutablePointer<Float>  // (B,) 1 where the row took the null context
        let contextLengths: Buffer<Int32>  // (B,) ℓ_b, null rows resolved to 1
        let tokens: Buffer<Int32>  // (B, Lmax) the token ids, kept for the backward pass

        init(_ c: Config, _ time: TimeEmbedding, _ cond: Conditioning, batch B: Int, _ arena: inout Arena) throws {
            let (Dc, Dx, Lx) = (cond.vectorDim, cond.contextDim, cond.maxLength)
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
            labels = try Buffer(count: arena.isCounting ? 0 : B, zero: 0)
            self.cond = arena.take(B * Dc)
            condNull = arena.take(Dc > 0 ? B : 0)
            (context, pooled, contextNull) = (arena.take(B * Lx * Dx), arena.take(B * Dx), arena.take(Dx > 0 ? B : 0))
            contextLengths = try Buffer(count: arena.isCounting || Dx == 0 ? 0 : B, zero: 0)
            tokens = try Buffer(count: arena.isCounting || cond.vocabulary == 0 ? 0 : B * Lx, zero: 0)
        }
    }

    /// The scratch arena: gradients of the backward pass, for `capacity` rows.
    struct Workspace {
        let block: Buffer<Float>?  // the arena's block: keeps the views alive
        let dh, da, ds: UnsafeMutablePointer<Float>  // (B, H) ∂L/∂h_l, ∂L/∂normed_l, ∂L/∂u_l
        let dtemb, dtimeHidden: UnsafeMutablePointer<Float>  // (B, H) ∂L/∂temb, ∂L/∂(W_t1·e) (TimeEmbedding.backward scratch)
        let dcond: UnsafeMutablePointer<Float>  // (B, Dc) ∂L/∂c̃ (VectorEmbedding.backward scratch)
        let dcontext, dpooled: UnsafeMutablePointer<Float>  // (B, Lmax, Dc), (B, Dc) ∂L/∂c̃, ∂L/∂pooled

        init(_ c: Config, _ cond: Conditioning, batch B: Int, _ arena: inout Arena) {
            block = arena.block
            let H = c.hidden
            (dh, da, ds) = (arena.take(B * H), arena.take(B * H), arena.take(B * H))
            (dtemb, dtimeHidden) = (arena.take(B * H), arena.take(B * H))
            dcond = arena.take(B * cond.vectorDim)
            (dcontext, dpooled) = (arena.take(B * cond.maxLength * cond.contextDim), arena.take(B * cond.contextDim))
        }
    }

    public func forward(_ out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, t: UnsafePointer<Int32>,
                        cond: ConditionBatch, batch B: Int, params p: UnsafePointer<Float>,
                        training: Bool, rng: inout Philox) {
        // A caller that did not reserve (a Swift test) gets the buffers here; the model always reserves.
        if acts.capacity < B { try! reserve(batch: B, training: training) }
        let a = acts
        let H = settings.hidden
        // temb (B, H) = W_t2·SiLU(W_t1·sinusoid(t)) [+ class or vector embedding]. While sampling every
        // row shares t: one row is computed and copied.
        let temb = a.time.out
        time.forward(a.time, t: t, p, batch: B, sharedT: !training && (0..<B).allSatisfy { t[$0] == t[0] })
        if let classEmbedding {
            for b in 0..<B { a.labels.pointer[b] = cond.labels?[b] ?? Int32(numClasses) }
            classEmbedding.forward(accumulateInto: temb, ids: a.labels.pointer, p, batch: B)
        }
        vectorEmbedding?.forward(accumulateInto: temb, inp: a.cond, isNull: a.condNull, cond, p, batch: B)
        if let contextEmbedding, let pooledProj {
            // temb += W_p·mean(c̃) + b_p
            contextEmbedding.forward(a.context, lengths: a.contextLengths.pointer, isNull: a.contextNull, cond, p, batch: B)
            if let tokens = cond.tokens, training { a.tokens.pointer.update(from: tokens, count: B * contextEmbedding.maxLength) }
            contextEmbedding.pool(a.pooled, a.context, lengths: a.contextLengths.pointer, batch: B)
            pooledProj.forward(temb, a.pooled, p, batch: B, accumulate: true)
        }
        // h_0 = W_in·x  (x is kept for the backward pass)
        if training { a.x.update(from: x, count: B * settings.dataDim) }
        inProj.forward(a.h[0], x, p, batch: B)
        // Inference keeps nothing for a backward pass: the residual stream stays in h_0 (fc2
        // accumulates into it: no copy of h_l). The same operations in the same order, so the
        // same bits as training's forward. (SiLU in place in u_l was 50% slower: the loop's
        // runtime overlap check sends an aliased call to its scalar version.)
        for (l, block) in blocks.enumerated() {
            let (hIn, hOut, n) = (a.h[training ? l : 0], a.h[training ? l + 1 : 0], a.normed[l])
            block.norm.forward(n, mean: a.mean[l], rstd: a.rstd[l], hIn, p, batch: B, adding: temb)  // LN(h_l) + temb
            block.fc1.forward(a.u[l], n, p, batch: B)
            SiLU.forward(a.s[l], a.u[l], count: B * H)
            if training { hOut.update(from: hIn, count: B * H) }  // residual: h_{l+1} = h_l + fc2(...)
            block.fc2.forward(hOut, a.s[l], p, batch: B, accumulate: true)
        }
        outProj.forward(out, a.h[training ? blocks.count : 0], p, batch: B)
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
            for i in 0..<B * H { w.dtemb[i] += da[i] }
            block.norm.backward(dinp: dh, g, dout: da, inp: a.h[l], mean: a.mean[l],
                                rstd: a.rstd[l], p, batch: B)
        }
        inProj.backward(dinp: nil, g, dout: dh, inp: a.x, p, batch: B)
        // temb = W_t2·SiLU(W_t1·e) [+ class embedding]
        if let classEmbedding { classEmbedding.backward(g, dout: w.dtemb, ids: a.labels.pointer, batch: B) }
        vectorEmbedding?.backward(g, dout: w.dtemb, inp: a.cond, dinp: w.dcond, isNull: a.condNull, p, batch: B)
        if let contextEmbedding, let pooledProj {
            let n = B * contextEmbedding.maxLength * contextEmbedding.dim
            pooledProj.backward(dinp: w.dpooled, g, dout: w.dtemb, inp: a.pooled, p, batch: B)
            w.dcontext.update(repeating: 0, count: n)
            contextEmbedding.poolBackward(w.dcontext, dpooled: w.dpooled, lengths: a.contextLengths.pointer, batch: B)
            contextEmbedding.backward(g, dout: w.dcontext, lengths: a.contextLengths.pointer, isNull: a.contextNull,
                                      tokens: contextEmbedding.vocabulary > 0 ? UnsafePointer(a.tokens.pointer) : nil, batch: B)
        }
        time.backward(dout: w.dtemb, a.time, dhidden: w.dtimeHidden, g, p, batch: B)
    }
}
