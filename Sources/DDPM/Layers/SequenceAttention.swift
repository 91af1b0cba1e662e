// Multi-head self-attention over row-major sequences of different lengths (the tokens of a
// caption), masked by each row's length. The attention layer of the text encoder's blocks
// (TransformerBlock.swift); no norm and no residual here.
//
//   B = batch, Lmax = the longest sequence, ℓ_b ∈ 1...Lmax = the length of row b,
//   D = features, h = heads, d = D/h features per head. Sequences are row-major (B, Lmax, D).
//
//   [q k v] = x·W_qkvᵀ + b_qkv                               (B, Lmax, 3D)
//   P       = softmax_{j<ℓ_b}(q_i·k_j / √d)   per row and head    (B, h, Lmax, Lmax), (ℓ_b, ℓ_b) used
//   a_i     = Σ_{j<ℓ_b} P_ij v_j   for i < ℓ_b, 0 for i ≥ ℓ_b   (B, Lmax, D)
//   out     = a·W_oᵀ + b_o   (W_o, b_o start at zero)          (B, Lmax, D)
//
// Positions j ≥ ℓ_b are never read: a key or value there changes nothing, and the gradient
// of everything at i ≥ ℓ_b is zero (their q, k, v are computed with the rest and ignored;
// out there is b_o, which the text encoder never reads). For one row b and head h, Q, K, V
// are (ℓ_b, d) blocks of qkv with row stride 3D: every product is one strided GEMM.

struct SequenceAttention: Sendable {
    let dim: Int, heads: Int, maxLength: Int  // D, h, Lmax
    let qkv: Linear  // D → 3D
    let proj: Linear  // D → D, zero-initialised

    /// `heads` must divide `dim` (Conditioning.validate checks it).
    init(_ layout: inout ParameterLayout, _ name: String, dim: Int, heads: Int, maxLength: Int) {
        (self.dim, self.heads, self.maxLength) = (dim, heads, maxLength)
        qkv = Linear(&layout, name + ".qkv", in: dim, out: 3 * dim)
        proj = Linear(&layout, name + ".proj", in: dim, out: dim, zeroInit: true)
    }

    /// The views of one forward pass, for `batch` rows.
    struct Activations {
        let qkv: UnsafeMutablePointer<Float>  // (B, Lmax, 3D)
        let probs: UnsafeMutablePointer<Float>  // (B, h, Lmax, Lmax) softmax rows, (ℓ_b, ℓ_b) used per row and head
        let att: UnsafeMutablePointer<Float>  // (B, Lmax, D) attention output before proj, 0 at i ≥ ℓ_b

        init(_ layer: SequenceAttention, batch B: Int, _ arena: inout Arena) {
            let (D, L) = (layer.dim, layer.maxLength)
            qkv = arena.take(B * L * 3 * D)
            probs = arena.take(B * layer.heads * L * L)
            att = arena.take(B * L * D)
        }
    }

    /// Backward temporaries, shared by every block of an encoder: datt (B, Lmax, D),
    /// dqkv (B, Lmax, 3D), dprobs (Lmax, Lmax).
    struct Scratch {
        let datt, dqkv, dprobs: UnsafeMutablePointer<Float>

        init(dim D: Int, maxLength L: Int, batch B: Int, _ arena: inout Arena) {
            (datt, dqkv, dprobs) = (arena.take(B * L * D), arena.take(B * L * 3 * D), arena.take(L * L))
        }
    }

    /// out (B, Lmax, D) = proj(attention(x)) for x = inp (B, Lmax, D), or out += … when `accumulate`.
    func forward(_ out: UnsafeMutablePointer<Float>, _ a: Activations, _ inp: UnsafePointer<Float>, lengths: UnsafePointer<Int32>,
                 _ params: UnsafePointer<Float>, batch B: Int, accumulate: Bool) {
        let (D, L, d) = (dim, maxLength, dim / heads)
        let scale = 1 / Float(d).squareRoot()
        qkv.forward(a.qkv, inp, params, batch: B * L)
        for b in 0..<B {
            let l = Int(lengths[b])
            (a.att + (b * L + l) * D).update(repeating: 0, count: (L - l) * D)  // a_i = 0 at i ≥ ℓ_b
            for h in 0..<heads {
                let q = a.qkv + b * L * 3 * D + h * d, k = q + D, v = q + 2 * D  // (ℓ, d) each, row stride 3D
                let p = a.probs + (b * heads + h) * L * L  // (ℓ, ℓ)
                // S (ℓ, ℓ) = Q·Kᵀ/√d
                stridedGemm(p, q, k, m: l, n: l, k: d, lda: 3 * D, ldb: 3 * D, ldc: l, transB: true, alpha: scale)
                softmaxRows(p, rows: l, columns: l)
                // a_h (ℓ, d) = P·V
                stridedGemm(a.att + b * L * D + h * d, p, v, m: l, n: d, k: l, lda: l, ldb: 3 * D, ldc: D)
            }
        }
        proj.forward(out, a.att, params, batch: B * L, accumulate: accumulate)
    }

    /// Backward of `forward` for x = inp: dinp (B, Lmax, D) = ∂L/∂x, overwritten (zero at
    /// i ≥ ℓ_b); grads += ∂L/∂θ. `dout` (B, Lmax, D) = ∂L/∂out must be zero at i ≥ ℓ_b (nothing
    /// reads out there), and must not be `dinp`.
    func backward(dinp: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, inp: UnsafePointer<Float>,
                  lengths: UnsafePointer<Int32>, _ a: Activations, _ s: Scratch, _ grads: UnsafeMutablePointer<Float>,
                  _ params: UnsafePointer<Float>, batch B: Int) {
        let (D, L, d) = (dim, maxLength, dim / heads)
        let scale = 1 / Float(d).squareRoot()
        // out = a·W_oᵀ + b_o
        proj.backward(dinp: s.datt, grads, dout: dout, inp: a.att, params, batch: B * L)
        s.dqkv.update(repeating: 0, count: B * L * 3 * D)  // positions i ≥ ℓ_b keep a zero gradient
        for b in 0..<B {
            let l = Int(lengths[b])
            for h in 0..<heads {
                let q = a.qkv + b * L * 3 * D + h * d, k = q + D, v = q + 2 * D
                let dq = s.dqkv + b * L * 3 * D + h * d, dk = dq + D, dv = dq + 2 * D
                let p = a.probs + (b * heads + h) * L * L, dp = s.dprobs
                let da = s.datt + b * L * D + h * d  // (ℓ, d), row stride D
                // a_h = P·V:  dV (ℓ, d) = Pᵀ·da,  dP (ℓ, ℓ) = da·Vᵀ
                stridedGemm(dv, p, da, m: l, n: d, k: l, lda: l, ldb: D, ldc: 3 * D, transA: true)
                stridedGemm(dp, da, v, m: l, n: l, k: d, lda: D, ldb: 3 * D, ldc: l, transB: true)
                // P = softmax(S):  dS_ij = P_ij·(dP_ij − Σ_j' P_ij'·dP_ij')   (in place in dp)
                softmaxRowsBackward(dp, probs: p, rows: l, columns: l)
                // S = Q·Kᵀ/√d:  dQ (ℓ, d) = dS·K/√d,  dK (ℓ, d) = dSᵀ·Q/√d
                stridedGemm(dq, dp, k, m: l, n: d, k: l, lda: l, ldb: 3 * D, ldc: 3 * D, alpha: scale)
                stridedGemm(dk, dp, q, m: l, n: d, k: l, lda: l, ldb: 3 * D, ldc: 3 * D, transA: true, alpha: scale)
            }
        }
        // [q k v] = x·W_qkvᵀ + b_qkv (rows i ≥ ℓ_b carry a zero gradient)
        qkv.backward(dinp: dinp, grads, dout: s.dqkv, inp: inp, params, batch: B * L)
    }
}
