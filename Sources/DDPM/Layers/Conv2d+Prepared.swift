// Convolution weights prepared once for every chunk of a prediction (Layers/PreparedWeights.swift
// holds the mechanism). See Conv2d.swift for the layout and the dimension legend.
//
// Each chunk used to put the weights into the form its GEMMs read itself: im2col packed W
// (Co, K) into the GEMM's A panels, Winograd transformed it into U[ξ] = G w Gᵀ (α² matrices
// Ci × Co, 4× the weights for F(4×4)) and then packed each U[ξ] into B panels, once per block
// of tiles. For a chunk of one 32×32 image that was about a third of a CIFAR-size UNet's
// prediction. Prepared once per prediction:
//
//   im2col (and 1×1):  alpha·W (Co, K) packed whole as the GEMM's A    (ddpm_sgemm_pack_a)
//   F(m×m, 3×3):       U[ξ] (Ci, Co) packed whole as each frequency's B (ddpm_wino_filter_packed)
//
// Train steps prepare nothing for convolutions (their chunks pack their own, as before); the
// weights of a CIFAR-size UNet's convolutions in F(4×4) form are 20 M floats, Ho et al.'s
// network would need more than the budget (the convolutions are then taken in network order
// while they fit).
import DDPMKernels

/// A convolution of the network with the size of its input images.
struct PreparedConvolution: WeightPreparing {
    let conv: Conv2d
    let height: Int, width: Int

    var preparedKey: Int { conv.weight }
    var preparingPaysForOneChunk: Bool { true }

    func preparedForms(batch B: Int) -> [(form: PreparedForm, count: Int, stride: Int)] {
        let algorithm = conv.algorithm(batch: B, height: height, width: width)
        let (count, stride) = conv.preparedCount(algorithm)
        return [(.convolution(algorithm), count, stride)]
    }

    func prepare(_ dst: UnsafeMutablePointer<Float>, stride: Int, _ form: PreparedForm, _ params: UnsafePointer<Float>) {
        guard case .convolution(let algorithm) = form else { return }
        conv.prepare(dst, stride: stride, algorithm, params)
    }
}

extension PreparedWeights {
    /// For every convolution of a network with the size of its input images, in network order.
    convenience init(convolutions: [(conv: Conv2d, height: Int, width: Int)]) {
        self.init(convolutions.map { PreparedConvolution(conv: $0.conv, height: $0.height, width: $0.width) })
    }

    /// The prepared operand of `conv` for `algorithm` from `params` (and, for Winograd, the floats
    /// from one frequency's matrix to the next), or nil if there is none.
    func weights(_ conv: Conv2d, _ algorithm: Conv2d.Algorithm, params: UnsafePointer<Float>)
        -> (pointer: UnsafePointer<Float>, stride: Int)? {
        weights(conv.weight, .convolution(algorithm), params: params)
    }
}

extension Conv2d {
    /// Floats of the prepared operand for `algorithm` (rounded up to 16: every operand starts a
    /// cache line), and for Winograd the stride of its frequencies' matrices.
    func preparedCount(_ algorithm: Algorithm) -> (count: Int, stride: Int) {
        let line = { (n: Int) in (n + 15) / 16 * 16 }
        if case .winograd(let m) = algorithm {
            let stride = line(ddpm_sgemm_packed_b_floats(inChannels, outChannels))
            return ((m + 2) * (m + 2) * stride, stride)
        }
        return (line(ddpm_sgemm_packed_a_floats(outChannels, inChannels * taps)), 0)
    }

    /// Writes the prepared operand for `algorithm` from the weights in `params` into `dst`.
    func prepare(_ dst: UnsafeMutablePointer<Float>, stride: Int, _ algorithm: Algorithm, _ params: UnsafePointer<Float>) {
        if case .winograd(let m) = algorithm {
            // U[ξ] (Ci, Co) = G w[co, ci] Gᵀ, as each frequency's packed B
            ddpm_wino_filter_packed(Int32(m), dst, stride, params + weight, inChannels, 9, outChannels, 9 * inChannels, 0,
                                    ddpm_sgemm_nr(), ddpm_sgemm_kc())
            return
        }
        // W (Co, K) as the packed A of out = W · columns
        var call = ddpm_sgemm_call(
            m: outChannels, n: 0, k: inChannels * taps, alpha: 1, beta: 0, a: params + weight, lda: inChannels * taps,
            trans_a: 0, b: nil, ldb: 0, trans_b: 0, pack_b: nil, pack_b_context: nil, packed_a: nil, packed_b: nil,
            c: nil, ldc: 0, bias: nil, tiles: 1, tile_axis: 0)
        ddpm_sgemm_pack_a(&call, dst)
    }
}
