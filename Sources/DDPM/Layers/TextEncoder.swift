// The text encoder of a token condition: a small transformer over the token + position
// embeddings of each caption, trained with the denoiser, so that the context c̃ that the
// cross-attention and the pooled embedding read relates each word to the others.
//
//   B = batch, Lmax = the longest caption, ℓ_b = the length of row b, D = features,
//   n_l = encoder layers.
//
//   x_0 = E_tok[id] + E_pos[i]   (ContextEmbedding.forward)            (B, Lmax, D)
//   x_k = TransformerBlock_k(x_{k−1})   k = 1...n_l, masked by ℓ_b      (B, Lmax, D)
//   c̃   = LayerNorm(x_{n_l}) at i < ℓ_b, 0 at i ≥ ℓ_b                    (B, Lmax, D)
//
// A null row (condition dropout, the unconditional half of guidance) does not go through the
// transformer: its context is the learned null vector n as it stands (c̃_b[0] = n, ℓ_b = 1),
// a point of the context space learned for itself, as without an encoder. Its row is
// computed with the others (the layers run over every position) and replaced.

struct TextEncoder: Sendable {
    let dim: Int, maxLength: Int  // D, Lmax
    let blocks: [TransformerBlock]
    let norm: LayerNorm

    init(_ layout: inout ParameterLayout, _ name: String, dim: Int, maxLength: Int, shape: TextEncoderShape) {
        (self.dim, self.maxLength) = (dim, maxLength)
        blocks = (0..<shape.layers).map {
            TransformerBlock(&layout, name + ".\($0)", dim: dim, heads: shape.heads, maxLength: maxLength)
        }
        norm = LayerNorm(&layout, name + ".norm", features: dim)
    }

    /// The views of one forward pass, for `batch` rows.
    struct Activations {
        let embedded: UnsafeMutablePointer<Float>  // (B, Lmax, D) x_0, what ContextEmbedding.forward writes
        let blocks: [TransformerBlock.Activations]
        let mean, rstd: UnsafeMutablePointer<Float>  // (B·Lmax,) of the final LayerNorm

        init(_ e: TextEncoder, batch B: Int, _ arena: inout Arena) {
            let R = B * e.maxLength
            embedded = arena.take(R * e.dim)
            blocks = e.blocks.map { TransformerBlock.Activations($0, batch: B, &arena) }
            (mean, rstd) = (arena.take(R), arena.take(R))
        }

        /// x_{n_l}, the last block's output.
        var last: UnsafeMutablePointer<Float> { blocks.last?.out ?? embedded }
    }

    /// The backward pass's gradients, for `batch` rows.
    struct Workspace {
        let dx: UnsafeMutablePointer<Float>  // (B, Lmax, D) ∂L/∂x_k, going down the blocks; ∂L/∂x_0 at the end
        let block: TransformerBlock.Scratch

        init(_ e: TextEncoder, batch B: Int, _ arena: inout Arena) {
            dx = arena.take(B * e.maxLength * e.dim)
            block = TransformerBlock.Scratch(dim: e.dim, maxLength: e.maxLength, batch: B, &arena)
        }
    }

    /// out (B, Lmax, D) = c̃ of a.embedded (x_0, null rows already resolved to n by
    /// ContextEmbedding, which also wrote `lengths` and `isNull`).
    func forward(_ out: UnsafeMutablePointer<Float>, _ a: Activations, lengths: UnsafePointer<Int32>, isNull: UnsafePointer<Float>,
                 _ params: UnsafePointer<Float>, batch B: Int) {
        let (L, D) = (maxLength, dim)
        var x = UnsafePointer(a.embedded)
        for (k, block) in blocks.enumerated() {
            block.forward(a.blocks[k], x, lengths: lengths, params, batch: B)
            x = UnsafePointer(a.blocks[k].out)
        }
        norm.forward(out, mean: a.mean, rstd: a.rstd, x, params, batch: B * L)
        for b in 0..<B {
            let row = out + b * L * D
            if isNull[b] != 0 {
                row.update(from: a.embedded + b * L * D, count: L * D)  // c̃_b = [n, 0, …]
            } else {
                let l = Int(lengths[b])
                (row + l * D).update(repeating: 0, count: (L - l) * D)
            }
        }
    }

    /// In the forward pass this was c̃ = encoder(x_0) (n as it stands for null rows), so, given
    /// dout (B, Lmax, D) = ∂L/∂c̃, grads += ∂L/∂θ and the result, w.dx
    /// (B, Lmax, D), is ∂L/∂x_0 (for a null row, ∂L/∂c̃ itself: the gradient of n).
    @discardableResult
    func backward(dout: UnsafePointer<Float>, _ a: Activations, _ w: Workspace, lengths: UnsafePointer<Int32>,
                  isNull: UnsafePointer<Float>, _ grads: UnsafeMutablePointer<Float>, _ params: UnsafePointer<Float>,
                  batch B: Int) -> UnsafeMutablePointer<Float> {
        let (L, D) = (maxLength, dim)
        // c̃ = LayerNorm(x_{n_l}) at i < ℓ_b of the rows that are not null (a constant elsewhere)
        let dnormed = w.block.dn  // free until the blocks' backward
        dnormed.update(from: dout, count: B * L * D)
        for b in 0..<B {
            let l = isNull[b] != 0 ? 0 : Int(lengths[b])
            (dnormed + (b * L + l) * D).update(repeating: 0, count: (L - l) * D)
        }
        w.dx.update(repeating: 0, count: B * L * D)
        norm.backward(dinp: w.dx, grads, dout: dnormed, inp: a.last, mean: a.mean, rstd: a.rstd, params, batch: B * L)
        // x_k = TransformerBlock_k(x_{k−1})
        for k in blocks.indices.reversed() {
            let inp = k == 0 ? a.embedded : a.blocks[k - 1].out
            blocks[k].backward(w.dx, inp: inp, lengths: lengths, a.blocks[k], w.block, grads, params, batch: B)
        }
        // a null row's c̃ was x_0 itself
        for b in 0..<B where isNull[b] != 0 { (w.dx + b * L * D).update(from: dout + b * L * D, count: L * D) }
        return w.dx
    }
}
