// What the UNet's cross-attention layers look at: for each pixel of a layer, the attention
// weights over the context positions (the words of a caption), averaged over the heads.
//
//   B = batch, N = H·W pixels of the layer, h = heads, Lmax = the longest context, ℓ_b its length.
//   map_b[p, j] = (1/h)·Σ_heads P_{b,head}[p, j]   for j < ℓ_b, 0 for j ≥ ℓ_b   (B, N, Lmax)
//
// The layers are numbered in the order the forward pass runs them: encoder, middle, decoder.

extension UNet {
    /// The stages with a cross-attention layer, in forward order, as (part, index) of
    /// `encoder` (0), `middle` (1) or `decoder` (2).
    var crossAttentionStages: [(part: Int, index: Int)] {
        [encoder, middle, decoder].enumerated().flatMap { part, stages in
            stages.indices.filter { stages[$0].crossAttention != nil }.map { (part, $0) }
        }
    }

    /// (height, width) of each cross-attention layer, in forward order.
    public var crossAttentionSizes: [(height: Int, width: Int)] {
        crossAttentionStages.map { s in
            let stage = [encoder, middle, decoder][s.part][s.index]
            return (stage.height, stage.width)
        }
    }

    /// out (B, N, Lmax) = the attention maps of cross-attention layer `layer` (an index into
    /// `crossAttentionSizes`) for an inference forward pass of x (B, C, H, W) at t (B,) with
    /// `cond`; `scratch` holds the pass's output, at least min(B, inferenceRows) × outputSize floats.
    func crossAttentionMaps(_ out: UnsafeMutablePointer<Float>, layer: Int, x: UnsafePointer<Float>, t: UnsafePointer<Int32>,
                            cond: ConditionBatch, batch B: Int, params: UnsafePointer<Float>, scratch: UnsafeMutablePointer<Float>) {
        let where_ = crossAttentionStages[layer]
        let stage = [encoder, middle, decoder][where_.part][where_.index]
        let (N, L, heads) = (stage.pixels, conditioning.maxLength, stage.crossAttention!.heads)
        var rng = Philox(seed: 0)  // an inference pass draws nothing from it
        for r0 in Swift.stride(from: 0, to: B, by: inferenceRows) {
            let rows = min(inferenceRows, B - r0)
            forwardPass(scratch, x: x + r0 * sampleSize, t: t + r0, cond: cond.rows(from: r0, count: rows), batch: rows,
                        params: params, training: false, rng: &rng)
            let a = [acts!.encoder, acts!.middle, acts!.decoder][where_.part][where_.index]
            let (probs, lengths) = (a.crossAttention!.probs, acts!.condition.lengths.pointer)
            for b in 0..<rows {
                let (l, map) = (Int(lengths[b]), out + (r0 + b) * N * L)  // P of (b, head) is (N, ℓ_b), row stride ℓ_b
                map.update(repeating: 0, count: N * L)
                for h in 0..<heads {
                    let p = probs + (b * heads + h) * N * L
                    for i in 0..<N { for j in 0..<l { map[i * L + j] += p[i * l + j] } }
                }
                for i in 0..<N * L { map[i] /= Float(heads) }
            }
        }
    }
}
