// Multi-head cross-attention from the pixels of each image to a context sequence (the text
// encoder's output of a text-to-image UNet), masked by the context's length, with a
// residual connection.
//
//   B = batch, C = channels, N = H·W pixels, h = heads, d = C/h, G = groups,
//   Dc = context features, Lmax = the longest context, ℓ_b ∈ 1...Lmax = the length of row b.
//   Images are channel-major (C, B, N); see Conv2d.swift. The context is row-major (B, Lmax, Dc).
//
//   n    = GroupNorm(x) (+ P)                                (C, B, N)
//   q    = W_q·n + b_q   (1×1 conv)                          (C, B, N)
//   [k v] = W_kv·c + b_kv   (a Linear over Dc)               (B, Lmax, 2C)
//   P    = softmax_{j<ℓ_b}(q_iᵀ k_j / √d)   per image and head   (B, h, N, ℓ_b)
//   a    = Σ_{j<ℓ_b} P_ij v_j                                (C, B, N)
//   out  = x + W_o·a + b_o   (W_o, b_o start at zero)        (C, B, N)
//
// P (C, N) is an optional learned absolute position embedding of the pixels, the same for
// every image, added to the queries' input only (queryPositions): without it a pixel's query
// knows where it is only through what the zero padding of the convolutions left in x, so
// words that name a place ("left", "top") have nothing to match. Its gradient is the sum over
// the batch of the gradient of n: dP[c, i] = Σ_b dn[c, b, i].
//
// Context positions j ≥ ℓ_b are never read (their keys and values are computed and ignored;
// their gradients are zero). For one image b and head h, Q is a (d, N) block of q with row
// stride B·N, K and V are (ℓ_b, d) blocks of kv with row stride 2C: every product is one
// strided GEMM.

struct CrossAttention: Sendable {
    let channels: Int, heads: Int, pixels: Int  // C, h, N
    let contextDim: Int, maxLength: Int  // Dc, Lmax
    let norm: GroupNorm
    let query: Conv2d  // 1×1, C → C
    let keyValue: Linear  // Dc → 2C
    let proj: Conv2d  // 1×1, C → C, zero-initialised
    let positions: Int  // offset of P (C, N), or -1 without query positions

    /// `heads` and `groups` must divide `channels` (checked by the network). With
    /// `queryPositions`, P is declared after the other parameters (so that a layer without it
    /// has the layout it always had).
    init(_ layout: inout ParameterLayout, _ name: String, channels: Int, heads: Int, groups: Int, pixels: Int,
         contextDim: Int, maxLength: Int, epsilon: Float = 1e-5, queryPositions: Bool = false) {
        (self.channels, self.heads, self.pixels) = (channels, heads, pixels)
        (self.contextDim, self.maxLength) = (contextDim, maxLength)
        norm = GroupNorm(&layout, name + ".norm", channels: channels, groups: groups, epsilon: epsilon)
        query = Conv2d(&layout, name + ".q", in: channels, out: channels, kernel: 1)
        keyValue = Linear(&layout, name + ".kv", in: contextDim, out: 2 * channels)
        proj = Conv2d(&layout, name + ".proj", in: channels, out: channels, kernel: 1, zeroInit: true)
        positions = queryPositions ? layout.add(name + ".positions", [channels, pixels], .normal(std: 0.02)) : -1
    }

    /// The context of a batch: c (B, Lmax, Dc) and ℓ (B,), each ℓ_b in 1...Lmax.
    struct Context {
        let values: UnsafePointer<Float>
        let lengths: UnsafePointer<Int32>
    }

    /// The views of one forward pass, for `batch` images.
    struct Activations {
        let normed: UnsafeMutablePointer<Float>  // (C, B, N) GroupNorm(x)
        let mean, rstd: UnsafeMutablePointer<Float>  // (B, G)
        let q: UnsafeMutablePointer<Float>  // (C, B, N)
        let kv: UnsafeMutablePointer<Float>  // (B, Lmax, 2C)
        let probs: UnsafeMutablePointer<Float>  // (B, h, N, Lmax) softmax rows, (N, ℓ_b) used per image and head
        let att: UnsafeMutablePointer<Float>  // (C, B, N) attention output before proj
        let out: UnsafeMutablePointer<Float>  // (C, B, N)

        init(_ layer: CrossAttention, batch B: Int, _ arena: inout Arena) {
            let (C, N, G, L) = (layer.channels, layer.pixels, layer.norm.groups, layer.maxLength)
            normed = arena.take(C * B * N)
            (mean, rstd) = (arena.take(B * G), arena.take(B * G))
            q = arena.take(C * B * N)
            kv = arena.take(B * L * 2 * C)
            probs = arena.take(B * layer.heads * N * L)
            att = arena.take(C * B * N)
            out = arena.take(C * B * N)
        }
    }

    /// Backward temporaries: datt, dq (C, B, N); dkv (B, Lmax, 2C); dprobs (N, Lmax).
    struct Scratch {
        let datt, dq, dkv, dprobs: UnsafeMutablePointer<Float>

        init(_ layer: CrossAttention, batch B: Int, _ arena: inout Arena) {
            let (C, N, L) = (layer.channels, layer.pixels, layer.maxLength)
            self.init(&arena, activation: C * B * N, keyValues: B * L * 2 * C, probs: N * L)
        }

        /// For several layers at once: the largest of each size.
        init(_ arena: inout Arena, activation: Int, keyValues: Int, probs: Int) {
            (datt, dq) = (arena.take(activation), arena.take(activation))
            dkv = arena.take(keyValues)
            dprobs = arena.take(probs)
        }
    }

    /// a.out (C, B, N) = x + proj(crossAttention(GroupNorm(x), context)) for x = inp (C, B, N).
    func forward(_ a: Activations, _ inp: UnsafePointer<Float>, context: Context, _ pass: Pass) {
        let (B, N, C, d, L) = (pass.batch, pixels, channels, channels / heads, maxLength)
        let (params, columns, ld) = (pass.params, pass.scratch.columns, B * N)
        let scale = 1 / Float(d).squareRoot()
        norm.forward(a.normed, mean: a.mean, rstd: a.rstd, inp, params, batch: B, spatial: N)
        if positions >= 0 {  // n[c, b, i] += P[c, i]
            for c in 0..<C {
                let p = params + positions + c * N
                for b in 0..<B {
                    let n = a.normed + (c * B + b) * N
                    for i in 0..<N { n[i] += p[i] }
                }
            }
        }
        query.forward(a.q, a.normed, params, columns: columns, batch: B, height: N, width: 1)
        keyValue.forward(a.kv, context.values, params, batch: B * L)
        for b in 0..<B {
            let l = Int(context.lengths[b])
            for h in 0..<heads {
                let q = a.q + (h * d) * ld + b * N  // (d, N), row stride ld
                let k = a.kv + b * L * 2 * C + h * d, v = k + C  // (ℓ, d), row stride 2C
                let p = a.probs + (b * heads + h) * N * L  // (N, ℓ)
                // S (N, ℓ) = Qᵀ·Kᵀ/√d
                stridedGemm(p, q, k, m: N, n: l, k: d, lda: ld, ldb: 2 * C, ldc: l, transA: true, transB: true, alpha: scale)
                softmaxRows(p, rows: N, columns: l)
                // a_h (d, N) = Vᵀ·Pᵀ
                stridedGemm(a.att + (h * d) * ld + b * N, v, p, m: d, n: N, k: l, lda: 2 * C, ldb: l, ldc: ld,
                            transA: true, transB: true)
            }
        }
        a.out.update(from: inp, count: C * B * N)  // residual
        proj.forward(a.out, a.att, params, columns: columns, batch: B, height: N, width: 1, accumulate: true)
    }

    /// Backward of `forward` for x = inp: dinp (C, B, N) = ∂L/∂x, overwritten (it may be the
    /// same buffer as `dout`); dcontext (B, Lmax, Dc) += ∂L/∂c (zero at j ≥ ℓ_b), or nil.
    func backward(dinp: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, inp: UnsafePointer<Float>,
                  context: Context, dcontext: UnsafeMutablePointer<Float>?, _ a: Activations, _ s: Scratch, _ pass: Pass) {
        let (B, N, C, d, L) = (pass.batch, pixels, channels, channels / heads, maxLength)
        let (params, grads, columns, ld) = (pass.params, pass.grads, pass.scratch.columns, B * N)
        let scale = 1 / Float(d).squareRoot()
        // out = x + W_o·a + b_o
        proj.backward(dinp: s.datt, grads, dout: dout, inp: a.att, params, columns: columns, batch: B, height: N, width: 1)
        if UnsafePointer(dinp) != dout { dinp.update(from: dout, count: C * B * N) }  // the residual path
        s.dkv.update(repeating: 0, count: B * L * 2 * C)  // positions j ≥ ℓ_b keep a zero gradient
        for b in 0..<B {
            let l = Int(context.lengths[b])
            for h in 0..<heads {
                let q = a.q + (h * d) * ld + b * N
                let k = a.kv + b * L * 2 * C + h * d, v = k + C
                let dq = s.dq + (h * d) * ld + b * N
                let dk = s.dkv + b * L * 2 * C + h * d, dv = dk + C
                let p = a.probs + (b * heads + h) * N * L, dp = s.dprobs
                let da = s.datt + (h * d) * ld + b * N
                // a_h = Vᵀ·Pᵀ:  dV (ℓ, d) = P ᵀ·daᵀ,  dP (N, ℓ) = daᵀ·Vᵀ
                stridedGemm(dv, p, da, m: l, n: d, k: N, lda: l, ldb: ld, ldc: 2 * C, transA: true, transB: true)
                stridedGemm(dp, da, v, m: N, n: l, k: d, lda: ld, ldb: 2 * C, ldc: l, transA: true, transB: true)
                // P = softmax(S):  dS_ij = P_ij·(dP_ij − Σ_j' P_ij'·dP_ij')   (in place in dp)
                softmaxRowsBackward(dp, probs: p, rows: N, columns: l)
                // S = Qᵀ·Kᵀ/√d:  dQ (d, N) = Kᵀ·dSᵀ/√d,  dK (ℓ, d) = dSᵀ·Qᵀ/√d
                stridedGemm(dq, k, dp, m: d, n: N, k: l, lda: 2 * C, ldb: l, ldc: ld, transA: true, transB: true, alpha: scale)
                stridedGemm(dk, dp, q, m: l, n: d, k: N, lda: l, ldb: ld, ldc: 2 * C, transA: true, transB: true, alpha: scale)
            }
        }
        // [k v] = W_kv·c + b_kv over every position (those at j ≥ ℓ_b carry a zero gradient)
        keyValue.backward(dinp: dcontext, grads, dout: s.dkv, inp: context.values, params, batch: B * L, accumulate: true)
        // q = W_q·n + b_q, then n = GroupNorm(x)
        let dnormed = s.datt
        query.backward(dinp: dnormed, grads, dout: s.dq, inp: a.normed, params, columns: columns, batch: B, height: N, width: 1)
        if positions >= 0 {  // n = GroupNorm(x) + P:  dP[c, i] += Σ_b dn[c, b, i]
            for c in 0..<C {
                let dp = grads + positions + c * N
                for b in 0..<B {
                    let dn = dnormed + (c * B + b) * N
                    for i in 0..<N { dp[i] += dn[i] }
                }
            }
        }
        norm.backward(dinp: dinp, grads, dout: dnormed, inp: inp, mean: a.mean, rstd: a.rstd, params, batch: B, spatial: N,
                      accumulate: true)
    }
}
