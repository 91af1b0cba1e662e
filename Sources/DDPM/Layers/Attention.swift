// Multi-head self-attention over the pixels of each image, with a residual connection
// (the attention block of DDPM / improved DDPM).
//
//   B = batch, C = channels, N = H·W pixels, h = heads, d = C/h channels per head, G = groups.
//   Images are channel-major (C, B, N); see Conv2d.swift.
//
//   n    = GroupNorm(x)                               (C, B, N)
//   qkv  = W_qkv·n + b_qkv   (1×1 conv = Linear over channels)   (3C, B, N): q, k, v stacked
//   P    = softmax_j(q_iᵀ k_j / √d)   per image and head          (B, h, N, N)
//   a    = Σ_j P_ij v_j                                           (C, B, N)
//   out  = x + W_proj·a + b_proj  (W_proj, b_proj start at zero)  (C, B, N)
//
// For one image b and head h, Q, K, V are (d, N) blocks of qkv with row stride B·N,
// so every product below is one strided GEMM; nothing is transposed in memory.
//
// The scores of an image and head are materialised: at 16×16 (N = 256) the (N, N) block is
// 256 KB and stays in L2 between its GEMM, the softmax (Softmax.swift, eight lanes) and the
// next GEMM. A blocked, flash-style kernel would not pay there: on a CIFAR-size UNet the
// attention GEMMs ran at the convolutions' GEMM rate, and the softmax was left at about 1%
// of a prediction (issue 18).

struct Attention: Sendable {
    let channels: Int, heads: Int, pixels: Int  // C, h, N
    let norm: GroupNorm
    let qkv: Conv2d  // 1×1, C → 3C
    let proj: Conv2d  // 1×1, C → C, zero-initialised

    /// `heads` must divide `channels` and `groups` must divide `channels` (checked by the network).
    init(_ layout: inout ParameterLayout, _ name: String, channels: Int, heads: Int, groups: Int, pixels: Int, epsilon: Float = 1e-5) {
        (self.channels, self.heads, self.pixels) = (channels, heads, pixels)
        norm = GroupNorm(&layout, name + ".norm", channels: channels, groups: groups, epsilon: epsilon)
        qkv = Conv2d(&layout, name + ".qkv", in: channels, out: 3 * channels, kernel: 1)
        proj = Conv2d(&layout, name + ".proj", in: channels, out: channels, kernel: 1, zeroInit: true)
    }

    /// The views of one forward pass, for `batch` images.
    struct Activations {
        let normed: UnsafeMutablePointer<Float>  // (C, B, N) GroupNorm(x)
        let mean, rstd: UnsafeMutablePointer<Float>  // (B, G)
        let qkv: UnsafeMutablePointer<Float>  // (3C, B, N)
        let probs: UnsafeMutablePointer<Float>  // (B, h, N, N) softmax rows
        let att: UnsafeMutablePointer<Float>  // (C, B, N) attention output before proj
        let out: UnsafeMutablePointer<Float>  // (C, B, N)

        init(_ layer: Attention, batch B: Int, _ arena: inout Arena) {
            let (C, N, G) = (layer.channels, layer.pixels, layer.norm.groups)
            normed = arena.take(C * B * N)
            (mean, rstd) = (arena.take(B * G), arena.take(B * G))
            qkv = arena.take(3 * C * B * N)
            probs = arena.take(B * layer.heads * N * N)
            att = arena.take(C * B * N)
            out = arena.take(C * B * N)
        }
    }

    /// a.out (C, B, N) = x + proj(attention(GroupNorm(x))) for x = inp (C, B, N).
    func forward(_ a: Activations, _ inp: UnsafePointer<Float>, _ pass: Pass) {
        let (B, N, C, d) = (pass.batch, pixels, channels, channels / heads)
        let (params, columns, ld) = (pass.params, pass.scratch.columns, B * N)
        let scale = 1 / Float(d).squareRoot()
        norm.forward(a.normed, mean: a.mean, rstd: a.rstd, inp, params, batch: B, spatial: N)
        qkv.forward(a.qkv, a.normed, params, columns: columns, batch: B, height: N, width: 1)
        for b in 0..<B {
            for h in 0..<heads {
                let q = a.qkv + (h * d) * ld + b * N  // (d, N), row stride ld
                let k = q + C * ld, v = q + 2 * C * ld
                let p = a.probs + (b * heads + h) * N * N  // (N, N)
                // S (N, N) = Qᵀ·K/√d
                stridedGemm(p, q, k, m: N, n: N, k: d, lda: ld, ldb: ld, ldc: N, transA: true, alpha: scale)
                softmaxRows(p, rows: N, columns: N)
                // a_h (d, N) = V·Pᵀ
                stridedGemm(a.att + (h * d) * ld + b * N, v, p, m: d, n: N, k: N, lda: ld, ldb: N, ldc: ld, transB: true)
            }
        }
        a.out.update(from: inp, count: C * B * N)  // residual
        proj.forward(a.out, a.att, params, columns: columns, batch: B, height: N, width: 1, accumulate: true)
    }

    /// Backward of `forward` for x = inp. `dinp` receives ∂L/∂x, overwritten; it may be the
    /// same buffer as `dout` (in place). Uses scratch.a (C, B, N), scratch.b (3C, B, N) and scratch.probs (N, N).
    func backward(dinp: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, inp: UnsafePointer<Float>,
                  _ a: Activations, _ pass: Pass) {
        let (B, N, C, d) = (pass.batch, pixels, channels, channels / heads)
        let (params, grads, columns, ld) = (pass.params, pass.grads, pass.scratch.columns, B * N)
        let scale = 1 / Float(d).squareRoot()
        let (datt, dqkv, dprobs) = (pass.scratch.a, pass.scratch.b, pass.scratch.probs)
        // out = x + W_proj·a + b_proj
        proj.backward(dinp: datt, grads, dout: dout, inp: a.att, params, columns: columns, batch: B, height: N, width: 1)
        if UnsafePointer(dinp) != dout { dinp.update(from: dout, count: C * B * N) }  // the residual path
        for b in 0..<B {
            for h in 0..<heads {
                let q = a.qkv + (h * d) * ld + b * N, k = q + C * ld, v = q + 2 * C * ld
                let dq = dqkv + (h * d) * ld + b * N, dk = dq + C * ld, dv = dq + 2 * C * ld
                let p = a.probs + (b * heads + h) * N * N
                let da = datt + (h * d) * ld + b * N
                // a_h = V·Pᵀ:  dV (d, N) = da·P,  dP (N, N) = daᵀ·V
                stridedGemm(dv, da, p, m: d, n: N, k: N, lda: ld, ldb: N, ldc: ld)
                stridedGemm(dprobs, da, v, m: N, n: N, k: d, lda: ld, ldb: ld, ldc: N, transA: true)
                // P = softmax(S):  dS_ij = P_ij·(dP_ij − Σ_j' P_ij'·dP_ij')   (in place in dprobs)
                softmaxRowsBackward(dprobs, probs: p, rows: N, columns: N)
                // S = Qᵀ·K/√d:  dQ (d, N) = K·dSᵀ/√d,  dK (d, N) = Q·dS/√d
                stridedGemm(dq, k, dprobs, m: d, n: N, k: N, lda: ld, ldb: N, ldc: ld, transB: true, alpha: scale)
                stridedGemm(dk, q, dprobs, m: d, n: N, k: N, lda: ld, ldb: N, ldc: ld, alpha: scale)
            }
        }
        // qkv = W_qkv·n + b_qkv, then n = GroupNorm(x)
        let dnormed = pass.scratch.a
        qkv.backward(dinp: dnormed, grads, dout: dqkv, inp: a.normed, params, columns: columns, batch: B, height: N, width: 1)
        norm.backward(dinp: dinp, grads, dout: dnormed, inp: inp, mean: a.mean, rstd: a.rstd, params, batch: B, spatial: N,
                      accumulate: true)
    }
}
