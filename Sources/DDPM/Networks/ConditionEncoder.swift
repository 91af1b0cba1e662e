// The conditioning front end of our networks, written once: every condition embedding, its
// views and its workspace. ResidualMLP and the UNet each hold one beside their TimeEmbedding
// (as diffusers' UNet2DModel and UNet2DConditionModel share TimestepEmbedding).
//
//   B = batch, W = time-embedding width (H of the MLP, T of the UNet), K = classes
//   (label K = null), Dc = conditioning-vector size, Lmax = the longest context,
//   Dx = context features.
//
//   classes:           temb += classEmbedding[label]                         (B, W)
//   vector:            temb += W_c·c̃ + b_c   (c̃ = c, or the learned null vector)   (B, W)
//   sequence, tokens:  c̃, ℓ = encodeContext(cond)                  (B, Lmax, Dx), (B,)
//                      (tokens: E_tok[id] + E_pos[i], then the text encoder's transformer
//                      when the conditioning has encoder layers, Layers/TextEncoder.swift)
//                      temb += W_p·pooled(c̃) + b_p   (pooled = the masked mean, (B, Dx))
//
// `forward` adds into temb (which the network's TimeEmbedding wrote) and returns the context
// (c̃, ℓ) that the UNet's cross-attention reads (nil without one). `backward` takes ∂L/∂temb
// and the readers' ∂L/∂c̃, and accumulates parameter gradients only: conditions are data.
//
// `encodeContext` / `encodeContextBackward` are the only code that makes c̃ from the batch (a
// token + position lookup, Layers/ContextEmbedding.swift, then the TextEncoder if any);
// pooling, the time embedding and the cross-attention read c̃ and ℓ.
//
// The parameters are declared in this order (checkpoints name them so):
//   class_embedding.weight | cond_vector.{null, proj} | context.{null, tokens, positions},
//   context.encoder.{0, 1, …, norm} (with encoder layers), context_pool

struct ConditionEncoder {
    let conditioning: Conditioning
    let classEmbedding: Embedding?  // (K + 1, W)
    let vectorEmbedding: VectorEmbedding?  // Dc → W, with the learned null vector
    let contextEmbedding: ContextEmbedding?  // c̃ (B, Lmax, Dx) of a sequence or token condition
    let textEncoder: TextEncoder?  // the transformer over the token embeddings (encoder layers > 0)
    let pooledProj: Linear?  // Dx → W, of c̃'s masked mean

    /// Declares the embeddings `conditioning` needs, after the time embedding (which the
    /// network declares first), into a time embedding of `width` features.
    init(_ layout: inout ParameterLayout, _ conditioning: Conditioning, width W: Int) {
        self.conditioning = conditioning
        let (K, Dc, Dx) = (conditioning.numClasses, conditioning.vectorDim, conditioning.contextDim)
        classEmbedding = K > 0 ? Embedding(&layout, "class_embedding", rows: K + 1, features: W) : nil
        vectorEmbedding = Dc > 0 ? VectorEmbedding(&layout, "cond_vector", dim: Dc, features: W) : nil
        contextEmbedding = Dx > 0 ? ContextEmbedding(&layout, "context", dim: Dx, maxLength: conditioning.maxLength,
                                                     vocabulary: conditioning.vocabulary) : nil
        let shape = conditioning.textEncoder
        textEncoder = shape.layers > 0
            ? TextEncoder(&layout, "context.encoder", dim: Dx, maxLength: conditioning.maxLength, shape: shape) : nil
        pooledProj = Dx > 0 ? Linear(&layout, "context_pool", in: Dx, out: W) : nil
    }

    /// Int32s per row of the side buffers (labels, lengths, token ids), which live outside the arena.
    var sideElementsPerRow: Int { 2 + conditioning.maxLength }

    /// What a forward pass keeps for the backward pass, for `batch` rows (views of the network's activation block).
    struct Activations {
        let labels: Buffer<Int32>  // (B,) labels with nil resolved to K
        let vector: UnsafeMutablePointer<Float>  // (B, Dc) the conditioning vectors, null rows resolved
        let vectorIsNull: UnsafeMutablePointer<Float>  // (B,) 1 where the row took the null vector
        let context: UnsafeMutablePointer<Float>  // (B, Lmax, Dx) c̃
        let pooled: UnsafeMutablePointer<Float>  // (B, Dx) its masked mean
        let contextIsNull: UnsafeMutablePointer<Float>  // (B,) 1 where the row took the null context
        let lengths: Buffer<Int32>  // (B,) ℓ_b, null rows resolved to 1
        let tokens: Buffer<Int32>  // (B, Lmax) the token ids, kept for the backward pass
        let text: TextEncoder.Activations?  // x_0 = the token embeddings and the encoder's views

        init(_ e: ConditionEncoder, batch B: Int, _ arena: inout Arena) throws {
            let k = e.conditioning
            let (Dc, Dx, Lx) = (k.vectorDim, k.contextDim, k.maxLength)
            labels = try Buffer(count: arena.isCounting ? 0 : B, zero: 0)
            (vector, vectorIsNull) = (arena.take(B * Dc), arena.take(Dc > 0 ? B : 0))
            (context, pooled, contextIsNull) = (arena.take(B * Lx * Dx), arena.take(B * Dx), arena.take(Dx > 0 ? B : 0))
            lengths = try Buffer(count: arena.isCounting || Dx == 0 ? 0 : B, zero: 0)
            tokens = try Buffer(count: arena.isCounting || k.vocabulary == 0 ? 0 : B * Lx, zero: 0)
            text = e.textEncoder.map { TextEncoder.Activations($0, batch: B, &arena) }
        }
    }

    /// The backward pass's gradients, for `batch` rows (views of the network's workspace).
    struct Workspace {
        let dvector: UnsafeMutablePointer<Float>  // (B, Dc) ∂L/∂c̃ (VectorEmbedding.backward scratch)
        let dcontext, dpooled: UnsafeMutablePointer<Float>  // (B, Lmax, Dx), (B, Dx) ∂L/∂c̃, ∂L/∂pooled
        let text: TextEncoder.Workspace?

        init(_ e: ConditionEncoder, batch B: Int, _ arena: inout Arena) {
            let k = e.conditioning
            dvector = arena.take(B * k.vectorDim)
            (dcontext, dpooled) = (arena.take(B * k.maxLength * k.contextDim), arena.take(B * k.contextDim))
            text = e.textEncoder.map { TextEncoder.Workspace($0, batch: B, &arena) }
        }
    }

    // MARK: - Forward and backward

    /// temb (B, W) += the embedding of each row's condition; returns the context (c̃, ℓ) for
    /// cross-attention, nil when the conditioning has none.
    @discardableResult
    func forward(accumulateInto temb: UnsafeMutablePointer<Float>, _ a: Activations, _ cond: ConditionBatch,
                 _ params: UnsafePointer<Float>, batch B: Int, training: Bool) -> CrossAttention.Context? {
        if let classEmbedding {
            for b in 0..<B { a.labels.pointer[b] = cond.labels?[b] ?? Int32(conditioning.numClasses) }
            classEmbedding.forward(accumulateInto: temb, ids: a.labels.pointer, params, batch: B)
        }
        vectorEmbedding?.forward(accumulateInto: temb, inp: a.vector, isNull: a.vectorIsNull, cond, params, batch: B)
        guard let contextEmbedding, let pooledProj else { return nil }
        // temb += W_p·mean(c̃) + b_p
        encodeContext(a, cond, params, batch: B, training: training)
        contextEmbedding.pool(a.pooled, a.context, lengths: a.lengths.pointer, batch: B)
        pooledProj.forward(temb, a.pooled, params, batch: B, accumulate: true)
        return context(a)
    }

    /// The context (c̃, ℓ) of the last forward pass, nil when the conditioning has none.
    func context(_ a: Activations) -> CrossAttention.Context? {
        contextEmbedding == nil ? nil : .init(values: a.context, lengths: a.lengths.pointer)
    }

    /// ∂L/∂c̃ (B, Lmax, Dx) zeroed, for the context's readers (the UNet's cross-attention) to
    /// add theirs into before `backward`; nil when the conditioning has no context.
    func zeroedContextGradient(_ w: Workspace, batch B: Int) -> UnsafeMutablePointer<Float>? {
        guard let contextEmbedding else { return nil }
        w.dcontext.update(repeating: 0, count: B * contextEmbedding.maxLength * contextEmbedding.dim)
        return w.dcontext
    }

    /// In the forward pass this was temb += embedding(cond) (and c̃ = encodeContext(cond)), so,
    /// given dtemb (B, W) = ∂L/∂temb and dcontext = ∂L/∂c̃ of c̃'s other readers (from
    /// `zeroedContextGradient`; nil: the pool is its only reader), the embeddings' gradients
    /// accumulate into `grads`. dcontext is consumed.
    func backward(dtemb: UnsafePointer<Float>, dcontext: UnsafeMutablePointer<Float>?, _ a: Activations, _ w: Workspace,
                  _ grads: UnsafeMutablePointer<Float>, _ params: UnsafePointer<Float>, batch B: Int) {
        if let classEmbedding { classEmbedding.backward(grads, dout: dtemb, ids: a.labels.pointer, batch: B) }
        vectorEmbedding?.backward(grads, dout: dtemb, inp: a.vector, dinp: w.dvector, isNull: a.vectorIsNull, params, batch: B)
        guard let contextEmbedding, let pooledProj else { return }
        // temb += W_p·mean(c̃) + b_p: ∂L/∂c̃ += ∂L/∂pooled spread over each row's ℓ_b positions
        pooledProj.backward(dinp: w.dpooled, grads, dout: dtemb, inp: a.pooled, params, batch: B)
        let dc = dcontext ?? zeroedContextGradient(w, batch: B)!
        contextEmbedding.poolBackward(dc, dpooled: w.dpooled, lengths: a.lengths.pointer, batch: B)
        encodeContextBackward(dcontext: dc, a, w, grads, params, batch: B)
    }

    // MARK: - The text encoder

    /// c̃ (B, Lmax, Dx) and ℓ (B,) of the batch: the given vectors, or the token + position
    /// embeddings of the ids (through the text encoder when there is one); the learned null
    /// context for null rows (see ContextEmbedding). The token ids are kept for the backward
    /// pass when `training`.
    func encodeContext(_ a: Activations, _ cond: ConditionBatch, _ params: UnsafePointer<Float>, batch B: Int, training: Bool) {
        guard let contextEmbedding else { return }
        let (lengths, isNull) = (a.lengths.pointer, a.contextIsNull)
        // x_0 = E_tok[id] + E_pos[i] (n for a null row): c̃ itself, or the text encoder's input
        contextEmbedding.forward(a.text?.embedded ?? a.context, lengths: lengths, isNull: isNull, cond, params, batch: B)
        if let textEncoder, let text = a.text {
            textEncoder.forward(a.context, text, lengths: lengths, isNull: isNull, params, batch: B)
        }
        if let tokens = cond.tokens, training { a.tokens.pointer.update(from: tokens, count: B * contextEmbedding.maxLength) }
    }

    /// In the forward pass this was c̃ = encodeContext(cond), so the text encoder's gradients,
    /// then dE_tok, dE_pos and dn accumulate from dcontext (B, Lmax, Dx) = ∂L/∂c̃.
    func encodeContextBackward(dcontext: UnsafePointer<Float>, _ a: Activations, _ w: Workspace, _ grads: UnsafeMutablePointer<Float>,
                               _ params: UnsafePointer<Float>, batch B: Int) {
        guard let contextEmbedding else { return }
        let (lengths, isNull) = (UnsafePointer(a.lengths.pointer), UnsafePointer(a.contextIsNull))
        var dembedded = dcontext  // ∂L/∂x_0
        if let textEncoder, let text = a.text, let tw = w.text {
            dembedded = UnsafePointer(textEncoder.backward(dout: dcontext, text, tw, lengths: lengths, isNull: isNull, grads, params,
                                                           batch: B))
        }
        contextEmbedding.backward(grads, dout: dembedded, lengths: lengths, isNull: isNull,
                                  tokens: contextEmbedding.vocabulary > 0 ? UnsafePointer(a.tokens.pointer) : nil, batch: B)
    }
}
