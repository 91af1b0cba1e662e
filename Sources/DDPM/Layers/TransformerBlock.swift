// One pre-LayerNorm transformer block over row-major sequences, masked by length (the text
// encoder's layer; GPT-2's block with bidirectional attention and SiLU).
//
//   B = batch, Lmax = the longest sequence, ℓ_b = the length of row b, D = features, F = 4D.
//
//   n1  = LayerNorm(x)                                (B, Lmax, D)
//   x1  = x + SelfAttention(n1)   (masked by ℓ_b)     (B, Lmax, D)
//   n2  = LayerNorm(x1)                               (B, Lmax, D)
//   u   = n2·W_1ᵀ + b_1                                (B, Lmax, F)
//   out = x1 + SiLU(u)·W_2ᵀ + b_2   (W_2, b_2 start at zero)   (B, Lmax, D)
//
// Every row-wise layer runs over all B·Lmax positions; positions i ≥ ℓ_b are not read by the
// attention, so what they hold never reaches a position i < ℓ_b, and their gradient is zero
// when the gradient reaching the block is zero there.

struct TransformerBlock: Sendable {
    let dim: Int, maxLength: Int  // D, Lmax
    let norm1: LayerNorm
    let attention: SequenceAttention
    let norm2: LayerNorm
    let fc1: Linear  // D → F
    let fc2: Linear  // F → D, zero-initialised

    var hidden: Int { fc1.outFeatures }  // F

    init(_ layout: inout ParameterLayout, _ name: String, dim: Int, heads: Int, maxLength: Int) {
        (self.dim, self.maxLength) = (dim, maxLength)
        norm1 = LayerNorm(&layout, name + ".norm1", features: dim)
        attention = SequenceAttention(&layout, name + ".attn", dim: dim, heads: heads, maxLength: maxLength)
        norm2 = LayerNorm(&layout, name + ".norm2", features: dim)
        fc1 = Linear(&layout, name + ".mlp.fc1", in: dim, out: 4 * dim)
        fc2 = Linear(&layout, name + ".mlp.fc2", in: 4 * dim, out: dim, zeroInit: true)
    }

    /// The views of one forward pass, for `batch` rows.
    struct Activations {
        let n1, x1, n2: UnsafeMutablePointer<Float>  // (B, Lmax, D) each
        let mean1, rstd1, mean2, rstd2: UnsafeMutablePointer<Float>  // (B·Lmax,) each
        let attention: SequenceAttention.Activations
        let u, g: UnsafeMutablePointer<Float>  // (B, Lmax, F) each: the MLP's pre-activation and SiLU(u)
        let out: UnsafeMutablePointer<Float>  // (B, Lmax, D)

        init(_ block: TransformerBlock, batch B: Int, _ arena: inout Arena) {
            let (R, D, F) = (B * block.maxLength, block.dim, block.hidden)
            (n1, x1, n2) = (arena.take(R * D), arena.take(R * D), arena.take(R * D))
            (mean1, rstd1, mean2, rstd2) = (arena.take(R), arena.take(R), arena.take(R), arena.take(R))
            attention = SequenceAttention.Activations(block.attention, batch: B, &arena)
            (u, g) = (arena.take(R * F), arena.take(R * F))
            out = arena.take(R * D)
        }
    }

    /// Backward temporaries, shared by every block of an encoder.
    struct Scratch {
        let dn: UnsafeMutablePointer<Float>  // (B, Lmax, D) ∂L/∂n2, then ∂L/∂n1
        let dhidden: UnsafeMutablePointer<Float>  // (B, Lmax, F) ∂L/∂SiLU(u), then ∂L/∂u
        let attention: SequenceAttention.Scratch

        init(dim D: Int, maxLength L: Int, batch B: Int, _ arena: inout Arena) {
            (dn, dhidden) = (arena.take(B * L * D), arena.take(B * L * 4 * D))
            attention = SequenceAttention.Scratch(dim: D, maxLength: L, batch: B, &arena)
        }
    }

    /// a.out (B, Lmax, D) = block(x) for x = inp (B, Lmax, D).
    func forward(_ a: Activations, _ inp: UnsafePointer<Float>, lengths: UnsafePointer<Int32>, _ params: UnsafePointer<Float>,
                 batch B: Int) {
        let (R, D) = (B * maxLength, dim)
        // x1 = x + SelfAttention(LayerNorm(x))
        norm1.forward(a.n1, mean: a.mean1, rstd: a.rstd1, inp, params, batch: R)
        a.x1.update(from: inp, count: R * D)
        attention.forward(a.x1, a.attention, a.n1, lengths: lengths, params, batch: B, accumulate: true)
        // out = x1 + W_2·SiLU(W_1·LayerNorm(x1) + b_1) + b_2
        norm2.forward(a.n2, mean: a.mean2, rstd: a.rstd2, a.x1, params, batch: R)
        fc1.forward(a.u, a.n2, params, batch: R)
        SiLU.forward(a.g, a.u, count: R * hidden)
        a.out.update(from: a.x1, count: R * D)
        fc2.forward(a.out, a.g, params, batch: R, accumulate: true)
    }

    /// Backward of `forward` for x = inp, in place: dx (B, Lmax, D) holds ∂L/∂out on entry
    /// (zero at i ≥ ℓ_b) and ∂L/∂x on return; grads += ∂L/∂θ.
    func backward(_ dx: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, lengths: UnsafePointer<Int32>, _ a: Activations,
                  _ s: Scratch, _ grads: UnsafeMutablePointer<Float>, _ params: UnsafePointer<Float>, batch B: Int) {
        let R = B * maxLength
        // out = x1 + W_2·g + b_2, g = SiLU(u), u = W_1·n2 + b_1, n2 = LayerNorm(x1):
        // ∂L/∂x1 = ∂L/∂out (the residual path, already in dx) + LayerNorm's backward of ∂L/∂n2
        fc2.backward(dinp: s.dhidden, grads, dout: dx, inp: a.g, params, batch: R)
        SiLU.backward(dinp: s.dhidden, dout: s.dhidden, inp: a.u, count: R * hidden)
        fc1.backward(dinp: s.dn, grads, dout: s.dhidden, inp: a.n2, params, batch: R)
        norm2.backward(dinp: dx, grads, dout: s.dn, inp: a.x1, mean: a.mean2, rstd: a.rstd2, params, batch: R)
        // x1 = x + SelfAttention(n1), n1 = LayerNorm(x): ∂L/∂x = ∂L/∂x1 + LayerNorm's backward of ∂L/∂n1
        attention.backward(dinp: s.dn, dout: dx, inp: a.n1, lengths: lengths, a.attention, s.attention, grads, params, batch: B)
        norm1.backward(dinp: dx, grads, dout: s.dn, inp: inp, mean: a.mean1, rstd: a.rstd1, params, batch: R)
    }
}
