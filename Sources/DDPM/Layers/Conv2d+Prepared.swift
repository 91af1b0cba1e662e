// Convolution weights prepared once for every chunk of a call. See Conv2d.swift for the layout
// and the dimension legend.
//
// Within a prediction the weights are fixed, and every chunk of the batch convolves with the
// same ones: each chunk used to put them into the form its GEMMs read itself — im2col packed W
// (Co, K) into the GEMM's A panels, Winograd transformed it into U[ξ] = G w Gᵀ (α² matrices
// Ci × Co, 4× the weights for F(4×4)) and then packed each U[ξ] into B panels, once per block
// of tiles. For a chunk of one 32×32 image that was about a third of a CIFAR-size UNet's
// prediction. `PreparedConvolutions` does it once per call, on the pool, into one buffer the
// chunks then read:
//
//   im2col (and 1×1):  alpha·W (Co, K) packed whole as the GEMM's A    (ddpm_sgemm_pack_a)
//   F(m×m, 3×3):       U[ξ] (Ci, Co) packed whole as each frequency's B (ddpm_wino_filter_packed)
//
// The bits do not change: the packed operands are exactly what each call would have packed. A
// convolution that finds nothing prepared for it (no prepared call, another algorithm for its
// batch, another ISA path, other parameters, or past the budget) prepares its own, as before.
//
// Memory: at most `budget` floats, the convolutions taken in network order while they fit
// (the weights of a CIFAR-size UNet's convolutions in F(4×4) form are 20 M floats; Ho et al.'s
// network would need more than 100 M). The network's replicas share one instance; the
// prediction that prepared it releases it (`release`) before it returns, so that no later call
// (a train step changing the weights in place) can read stale values.
import DDPMKernels

/// Public only as the type of `DenoisingNetwork.preparedConvolutions`; everything in it is internal.
public final class PreparedConvolutions {
    /// Floats the prepared weights may hold: 2^26 (256 MiB).
    static let budget = 1 << 26

    /// Every convolution of the network with the size of its input images, in network order.
    let layers: [(conv: Conv2d, height: Int, width: Int)]

    /// One convolution's prepared weights: `algorithm`'s operand at `offset` in the buffer;
    /// for Winograd, frequency ξ's matrix at offset + ξ·stride.
    struct Entry {
        let layer: Int
        let algorithm: Conv2d.Algorithm
        let offset: Int, count: Int, stride: Int
    }

    private var entries: [Entry] = []
    private var entryOfWeight: [Int: Int] = [:]  // conv.weight → index into entries
    private var storage: Buffer<Float>?
    private var base = UnsafeMutablePointer<Float>(bitPattern: 64)!  // storage's first 64-byte boundary
    /// The chunk batch and ISA path the entries were planned for.
    private var planned: (batch: Int, isa: KernelISA)?
    /// The parameters the entries hold the prepared form of; nil when nothing is valid.
    private(set) var source: UnsafePointer<Float>?
    private var sourceISA = KernelISA.baseline
    /// The parameters being prepared, for `job`.
    private var preparing: UnsafePointer<Float>?
    /// Prepares entry e (made once: a call allocates nothing; WorkPool.swift).
    private var job: (Int, Int) -> Void = { _, _ in }

    init(_ layers: [(conv: Conv2d, height: Int, width: Int)]) {
        self.layers = layers
        job = { [unowned self] e, _ in self.prepare(entry: e) }
    }

    /// The entries for chunks of B images: each convolution's algorithm at that batch and the
    /// floats of its prepared operand, taken in network order while they fit in the budget;
    /// the largest first (the order the pool prepares them in).
    func plan(batch B: Int) -> (entries: [Entry], floats: Int) {
        var list: [Entry] = [], floats = 0
        for (i, layer) in layers.enumerated() {
            let algorithm = layer.conv.algorithm(batch: B, height: layer.height, width: layer.width)
            let (count, stride) = layer.conv.preparedCount(algorithm)
            guard count > 0, floats + count <= Self.budget else { continue }
            list.append(Entry(layer: i, algorithm: algorithm, offset: floats, count: count, stride: stride))
            floats += count
        }
        return (list.sorted { $0.count > $1.count }, floats)
    }

    /// Floats `prepare` holds for chunks of B images (an upper bound: the budget).
    func floats(batch B: Int) -> Int { min(Self.budget, plan(batch: B).floats) + 16 }

    /// Floats held now (kept between predictions of one batch, so that a sampling step
    /// allocates nothing): what a train step counts besides its own buffers.
    var heldFloats: Int { storage?.count ?? 0 }

    /// Prepares every planned convolution's weights from `params` for chunks of B images, on the
    /// pool; they stay valid for lookups with the same `params` until `release`.
    /// - Throws: if the buffer cannot be allocated (only when the batch or the ISA path changed).
    func prepare(_ params: UnsafePointer<Float>, batch B: Int) throws {
        source = nil
        let isa = KernelISA.current
        if planned?.batch != B || planned?.isa != isa {
            planned = nil
            storage = nil
            let (list, floats) = plan(batch: B)
            let block = try Buffer<Float>(count: floats + 16)
            let address = UInt(bitPattern: block.pointer)
            (storage, base) = (block, block.pointer + Int(((address + 63) & ~63) - address) / MemoryLayout<Float>.stride)
            entries = list
            entryOfWeight = Dictionary(uniqueKeysWithValues: list.indices.map { (layers[list[$0].layer].conv.weight, $0) })
            planned = (B, isa)
        }
        preparing = params
        WorkPool.shared.parallelFor(chunks: entries.count, job)
        (source, sourceISA) = (params, isa)
    }

    /// Nothing is valid any more (the parameters may change).
    func release() { source = nil }

    private func prepare(entry e: Int) {
        let entry = entries[e]
        layers[entry.layer].conv.prepare(base + entry.offset, stride: entry.stride, entry.algorithm, preparing!)
    }

    /// The prepared operand of `conv` for `algorithm` from `params` (and, for Winograd, the floats
    /// from one frequency's matrix to the next), or nil if there is none.
    func weights(_ conv: Conv2d, _ algorithm: Conv2d.Algorithm, params: UnsafePointer<Float>)
        -> (pointer: UnsafePointer<Float>, stride: Int)? {
        guard let source, source == params, let e = entryOfWeight[conv.weight], sourceISA == KernelISA.current else { return nil }
        let entry = entries[e]
        guard entry.algorithm == algorithm else { return nil }
        return (UnsafePointer(base + entry.offset), entry.stride)
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
            c: nil, ldc: 0, tiles: 1, tile_axis: 0)
        ddpm_sgemm_pack_a(&call, dst)
    }
}
