// Linear weights prepared once for every chunk of a call (Layers/PreparedWeights.swift holds the
// mechanism). See Linear.swift for the dimension legend.
//
// out = inp·Wᵀ + b reads Wᵀ (I, O) as the GEMM's B, and the backward's dinp = dout·W reads W
// (O, I) as its B: each GEMM used to pack it into NR-column panels itself, once per chunk of rows
// (for the MLP sampling 1000 rows of toy2d, 8 chunks of 128 rows each packing the same 128 × 128
// weights: 13% of the step, against 66% for the GEMMs). Prepared once per call:
//
//   prediction:  Wᵀ (I, O) packed whole as the forward's B          (ddpm_sgemm_pack_b)
//   train step:  that, and W (O, I) packed whole as the backward's B (dinp = dout·W)
import DDPMKernels

extension Linear: WeightPreparing {
    var preparedKey: Int { weight }
    /// A call of one chunk packs each weight once anyway.
    var preparingPaysForOneChunk: Bool { false }

    /// Nothing for a thin product (n < NR/2 output columns: the MLP's readout of 2-d data): the GEMM
    /// runs it transposed, where B is read as the A side, and a packed B would force the slow way.
    func preparedForms(batch B: Int, training: Bool) -> [(form: PreparedForm, count: Int, stride: Int)] {
        let line = { (n: Int) in (n + 15) / 16 * 16 }  // every operand starts a cache line
        let wide = { (n: Int) in 2 * n >= ddpm_sgemm_nr() }
        var forms: [(form: PreparedForm, count: Int, stride: Int)] = []
        if wide(outFeatures) { forms.append((.linearForward, line(ddpm_sgemm_packed_b_floats(inFeatures, outFeatures)), 0)) }
        if training && wide(inFeatures) {
            forms.append((.linearBackward, line(ddpm_sgemm_packed_b_floats(outFeatures, inFeatures)), 0))
        }
        return forms
    }

    func prepare(_ dst: UnsafeMutablePointer<Float>, stride: Int, _ form: PreparedForm, _ params: UnsafePointer<Float>) {
        let (I, O) = (inFeatures, outFeatures)
        // forward: op(B) = Wᵀ (k = I, n = O), W stored (O, I); backward: op(B) = W (k = O, n = I)
        let forward = form == .linearForward
        var call = ddpm_sgemm_call(
            m: 0, n: forward ? O : I, k: forward ? I : O, alpha: 1, beta: 0, a: nil, lda: 0, trans_a: 0,
            b: params + weight, ldb: I, trans_b: forward ? 1 : 0, pack_b: nil, pack_b_context: nil, packed_a: nil,
            packed_b: nil, c: nil, ldc: 0, bias: nil, tiles: 1, tile_axis: 0)
        ddpm_sgemm_pack_b(&call, dst)
    }
}
