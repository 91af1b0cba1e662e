// The context a cross-attention reads, resolved per row from a sequence condition, with a
// learned null context for classifier-free guidance; and its masked mean.
//   B = batch, Lmax = the longest context, Dc = context features, V = vocabulary size.
//
// Two sources (Conditioning.sequence / .tokens):
//   vectors:  c̃_b[i] = context_b[i]                       i < ℓ_b   (the user's encoder output)
//   tokens:   c̃_b[i] = E_tok[id_b,i] + E_pos[i]           i < ℓ_b   (a small learned text encoder)
// A row that is null (condition dropout, the unconditional half of guidance) or has ℓ_b = 0
// takes the null context: one learned vector, c̃_b[0] = n, ℓ_b = 1. So "no condition" is a
// context of its own, which the attention and the pooled embedding both learn to read.
// Positions i ≥ ℓ_b are zero and never read downstream.
//
//   pooled_b = (1/ℓ_b)·Σ_{i<ℓ_b} c̃_b[i]                  (B, Dc)  (the masked mean)

struct ContextEmbedding: Sendable {
    let dim: Int, maxLength: Int, vocabulary: Int  // Dc, Lmax, V (0: the context comes as vectors)
    let null: Int  // offset of n, (Dc,)
    let tokens: Int, positions: Int  // offsets of E_tok (V, Dc) and E_pos (Lmax, Dc); tokens only

    init(_ layout: inout ParameterLayout, _ name: String, dim: Int, maxLength: Int, vocabulary: Int = 0) {
        (self.dim, self.maxLength, self.vocabulary) = (dim, maxLength, vocabulary)
        null = layout.add(name + ".null", [dim], .normal(std: 0.02))
        if vocabulary > 0 {
            tokens = layout.add(name + ".tokens", [vocabulary, dim], .normal(std: 0.02))
            positions = layout.add(name + ".positions", [maxLength, dim], .normal(std: 0.02))
        } else {
            (tokens, positions) = (-1, -1)
        }
    }

    /// out (B, Lmax, Dc) = c̃, lengths (B,) = ℓ_b (null rows resolved to 1), isNull (B,) = 1
    /// where the row took the null context. The batch's ids must be in 0..<V and its lengths
    /// in 0...Lmax (the model checks them).
    func forward(_ out: UnsafeMutablePointer<Float>, lengths: UnsafeMutablePointer<Int32>, isNull: UnsafeMutablePointer<Float>,
                 _ cond: ConditionBatch, _ params: UnsafePointer<Float>, batch B: Int) {
        let (D, L) = (dim, maxLength)
        out.update(repeating: 0, count: B * L * D)
        for b in 0..<B {
            let given = vocabulary > 0 ? cond.tokens != nil : cond.context != nil
            let l = given ? Int(cond.lengths?[b] ?? Int32(L)) : 0
            let row = out + b * L * D
            if l == 0 || (cond.null?[b] ?? 0) != 0 {
                row.update(from: params + null, count: D)
                (lengths[b], isNull[b]) = (1, 1)
                continue
            }
            (lengths[b], isNull[b]) = (Int32(l), 0)
            if vocabulary == 0 {
                row.update(from: cond.context! + b * L * D, count: l * D)
                continue
            }
            for i in 0..<l {
                let (y, e, p) = (row + i * D, params + tokens + Int(cond.tokens![b * L + i]) * D, params + positions + i * D)
                for k in 0..<D { y[k] = e[k] + p[k] }
            }
        }
    }

    /// In the forward pass this was c̃ as above, so (for i < ℓ_b) dE_tok[id_b,i] += dc̃_b[i],
    /// dE_pos[i] += dc̃_b[i], and dn += dc̃_b[0] for a null row. Given vectors get no gradient.
    func backward(_ grads: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, lengths: UnsafePointer<Int32>,
                  isNull: UnsafePointer<Float>, tokens ids: UnsafePointer<Int32>?, batch B: Int) {
        let (D, L) = (dim, maxLength)
        for b in 0..<B {
            let drow = dout + b * L * D
            if isNull[b] != 0 {
                for k in 0..<D { grads[null + k] += drow[k] }
                continue
            }
            guard vocabulary > 0, let ids else { continue }
            for i in 0..<Int(lengths[b]) {
                let (de, dp, dy) = (grads + tokens + Int(ids[b * L + i]) * D, grads + positions + i * D, drow + i * D)
                for k in 0..<D { de[k] += dy[k]; dp[k] += dy[k] }
            }
        }
    }

    /// pooled (B, Dc) = the mean of each row's first ℓ_b vectors of c̃ (B, Lmax, Dc).
    func pool(_ pooled: UnsafeMutablePointer<Float>, _ context: UnsafePointer<Float>, lengths: UnsafePointer<Int32>, batch B: Int) {
        let (D, L) = (dim, maxLength)
        for b in 0..<B {
            let (y, l) = (pooled + b * D, Int(lengths[b]))
            y.update(repeating: 0, count: D)
            for i in 0..<l { for k in 0..<D { y[k] += context[(b * L + i) * D + k] } }
            let inv = 1 / Float(l)
            for k in 0..<D { y[k] *= inv }
        }
    }

    /// The backward of `pool`: dcontext_b[i] += dpooled_b/ℓ_b for i < ℓ_b.
    func poolBackward(_ dcontext: UnsafeMutablePointer<Float>, dpooled: UnsafePointer<Float>, lengths: UnsafePointer<Int32>,
                      batch B: Int) {
        let (D, L) = (dim, maxLength)
        for b in 0..<B {
            let (l, dy) = (Int(lengths[b]), dpooled + b * D)
            let inv = 1 / Float(l)
            for i in 0..<l { for k in 0..<D { dcontext[(b * L + i) * D + k] += dy[k] * inv } }
        }
    }
}
