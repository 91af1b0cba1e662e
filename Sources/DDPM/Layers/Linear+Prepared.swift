// Linear weights prepared once for every chunk of a call (Layers/PreparedWeights.swift holds the
// mechanism). See Linear.swift for the dimension legend.
//
// out = inp·Wᵀ + b reads Wᵀ (I, O) as the GEMM's B: each GEMM used to pack it into NR-column
// panels itself, once per chunk of rows (for the MLP sampling 1000 rows of toy2d, 8 chunks of 128
// rows each packing the same 128 × 128 weights: about half of the step's 13% of packing). Prepared
// once per prediction of several chunks: Wᵀ (I, O) packed whole as the forward's B
// (ddpm_sgemm_pack_b). (Train steps prepare nothing: PreparedWeights.swift.)
import DDPMKernels

extension Linear: WeightPreparing {
    var preparedKey: Int { weight }
    /// A call of one chunk packs each weight once anyway.
    var preparingPaysForOneChunk: Bool { false }

    /// Nothing for a thin product (n < NR/2 output columns: the MLP's readout of 2-d data): the GEMM
    /// runs it transposed, where B is read as the A side, and a packed B would force the slow way.
    func preparedForms(batch B: Int) -> [(form: PreparedForm, count: Int, stride: Int)] {
        guard 2 * outFeatures >= ddpm_sgemm_nr() else { return [] }
        return [(.linearForward, (ddpm_sgemm_packed_b_floats(inFeatures, outFeatures) + 15) / 16 * 16, 0)]  // whole cache lines
    }

    func prepare(_ dst: UnsafeMutablePointer<Float>, stride: Int, _ form: PreparedForm, _ params: UnsafePointer<Float>) {
        // op(B) = Wᵀ (k = I, n = O), W stored (O, I)
        var call = ddpm_sgemm_call(
            m: 0, n: outFeatures, k: inFeatures, alpha: 1, beta: 0, a: nil, lda: 0, trans_a: 0, b: params + weight,
            ldb: inFeatures, trans_b: 1, pack_b: nil, pack_b_context: nil, packed_a: nil, packed_b: nil, c: nil, ldc: 0,
            bias: nil, tiles: 1, tile_axis: 0)
        ddpm_sgemm_pack_b(&call, dst)
    }
}
