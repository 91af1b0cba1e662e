// Layer weights prepared once per call for every chunk of it.
//
// Within a prediction the weights are fixed, and every chunk of the batch multiplies by the same
// ones: each chunk used to put them into the form its GEMMs read (packed panels, Winograd-
// transformed filters) itself, once per GEMM. `PreparedWeights` makes each form once per
// prediction, on the pool, into one buffer the chunks then read. The layers say which forms their
// calls read and how to make them:
//
//   convolutions (Conv2d+Prepared.swift):  W packed as the GEMM's A, or U[ξ] packed as each
//                                          frequency's B
//   linear layers (Linear+Prepared.swift): Wᵀ packed as the forward's B
//
// Train steps prepare nothing: for the MLP's (signal: 2 chunks of 64 rows) preparing Wᵀ and W once
// per step measured slower than each chunk packing its own (the prepared forms, 5 MB, leave L2;
// a chunk's own packing goes through an L2-resident block).
//
// The bits do not change: a prepared operand is exactly what each call would have packed. A
// layer that finds nothing prepared for it (no prepared call, another form for its batch,
// another ISA path, other parameters, or past the budget) prepares its own, as before.
//
// Lifetime: the network's replicas share one instance; the prediction that prepared it releases it (`release`) before it returns, so that no later call
// (a train step changing the weights in place, a checkpoint load) can read stale values.
// Memory: at most `budget` floats, the forms taken in network order while they fit; the buffer
// is kept between calls (so that a steady-state step allocates nothing) and counted in the
// model's memory checks (`floats`, `heldFloats`).

/// The form a layer's calls read its weights in.
enum PreparedForm: Hashable {
    /// A convolution's operand for this algorithm (Conv2d+Prepared.swift).
    case convolution(Conv2d.Algorithm)
    /// Wᵀ (I, O) packed as the B of out = inp·Wᵀ (Linear+Prepared.swift).
    case linearForward
}

/// A layer whose weights can be prepared for every chunk of a call.
protocol WeightPreparing {
    /// The parameter offset of its weights: what its calls look their prepared forms up by.
    var preparedKey: Int { get }
    /// The forms its calls on chunks of `batch` rows read, with the floats of each (a multiple of
    /// 16) and, for Winograd, the stride of its frequencies' matrices.
    func preparedForms(batch: Int) -> [(form: PreparedForm, count: Int, stride: Int)]
    /// Whether preparing pays when a call has a single chunk (the chunk's own GEMMs would pack the
    /// weights more than once: a Winograd convolution's blocks of tiles), or only for several.
    var preparingPaysForOneChunk: Bool { get }
    /// Writes `form` of the weights in `params` into `dst` (64-byte aligned).
    func prepare(_ dst: UnsafeMutablePointer<Float>, stride: Int, _ form: PreparedForm, _ params: UnsafePointer<Float>)
}

/// Public only as the type of `DenoisingNetwork.preparedWeights`; everything in it is internal.
public final class PreparedWeights {
    /// Floats the prepared weights may hold: 2^26 (256 MiB).
    static let budget = 1 << 26

    /// Every layer whose weights may be prepared, in network order.
    let layers: [any WeightPreparing]

    /// One layer's prepared form at `offset` in the buffer; for Winograd, frequency ξ's matrix
    /// at offset + ξ·stride.
    struct Entry {
        let layer: Int
        let form: PreparedForm
        let offset: Int, count: Int, stride: Int
    }
    struct Key: Hashable {
        let weight: Int
        let form: PreparedForm
    }

    private var entries: [Entry] = []
    private var entryOfKey: [Key: Int] = [:]  // (layer's weights, form) → index into entries
    private var storage: Buffer<Float>?
    private var base = UnsafeMutablePointer<Float>(bitPattern: 64)!  // storage's first 64-byte boundary
    /// The chunk batch, call size and ISA path the entries were planned for.
    private var planned: (batch: Int, oneChunk: Bool, isa: KernelISA)?
    /// The parameters the entries hold the prepared form of; nil when nothing is valid.
    private(set) var source: UnsafePointer<Float>?
    private var sourceISA = KernelISA.baseline
    /// The parameters being prepared, for `job`.
    private var preparing: UnsafePointer<Float>?
    /// Prepares entry e (made once: a call allocates nothing; WorkPool.swift).
    private var job: (Int, Int) -> Void = { _, _ in }

    init(_ layers: [any WeightPreparing]) {
        self.layers = layers
        job = { [unowned self] e, _ in self.prepare(entry: e) }
    }

    /// The entries for chunks of B rows: each layer's forms at that batch (for a call of one chunk,
    /// only those of layers that pay for it), taken in network order while they fit in the budget;
    /// the largest first (the order the pool prepares them in).
    func plan(batch B: Int, oneChunk: Bool = false) -> (entries: [Entry], floats: Int) {
        var list: [Entry] = [], floats = 0
        for (i, layer) in layers.enumerated() where !oneChunk || layer.preparingPaysForOneChunk {
            for (form, count, stride) in layer.preparedForms(batch: B) {
                guard count > 0, floats + count <= Self.budget else { continue }
                list.append(Entry(layer: i, form: form, offset: floats, count: count, stride: stride))
                floats += count
            }
        }
        return (list.sorted { $0.count > $1.count }, floats)
    }

    /// Floats `prepare` holds for chunks of B rows (an upper bound: the budget).
    func floats(batch B: Int) -> Int { min(Self.budget, plan(batch: B).floats) + 16 }

    /// Floats held now (kept between predictions, so that a sampling step allocates nothing): what a
    /// train step counts besides its own buffers.
    var heldFloats: Int { storage?.count ?? 0 }

    /// Prepares every planned form of the weights in `params` for a call of `chunks` chunks of B
    /// rows, on the pool; they stay valid for lookups with the same `params` until `release`.
    /// - Throws: if the buffer cannot be allocated (only when a plan needs more than it holds).
    func prepare(_ params: UnsafePointer<Float>, batch B: Int, chunks: Int) throws {
        source = nil
        let isa = KernelISA.current, oneChunk = chunks <= 1
        if planned?.batch != B || planned?.oneChunk != oneChunk || planned?.isa != isa {
            planned = nil
            let (list, floats) = plan(batch: B, oneChunk: oneChunk)
            if floats + 16 > heldFloats {
                storage = nil
                let block = try Buffer<Float>(count: floats + 16)
                let address = UInt(bitPattern: block.pointer)
                (storage, base) = (block, block.pointer + Int(((address + 63) & ~63) - address) / MemoryLayout<Float>.stride)
            }
            entries = list
            entryOfKey = Dictionary(uniqueKeysWithValues: list.indices.map {
                (Key(weight: layers[list[$0].layer].preparedKey, form: list[$0].form), $0)
            })
            planned = (B, oneChunk, isa)
        }
        preparing = params
        WorkPool.shared.parallelFor(chunks: entries.count, job)
        (source, sourceISA) = (params, isa)
    }

    /// Nothing is valid any more (the parameters may change).
    func release() { source = nil }

    private func prepare(entry e: Int) {
        let entry = entries[e]
        layers[entry.layer].prepare(base + entry.offset, stride: entry.stride, entry.form, preparing!)
    }

    /// The prepared `form` of the weights at parameter offset `weight` from `params` (and, for
    /// Winograd, the floats from one frequency's matrix to the next), or nil if there is none.
    func weights(_ weight: Int, _ form: PreparedForm, params: UnsafePointer<Float>) -> (pointer: UnsafePointer<Float>, stride: Int)? {
        guard let source, source == params, sourceISA == KernelISA.current,
              let e = entryOfKey[Key(weight: weight, form: form)] else { return nil }
        let entry = entries[e]
        return (UnsafePointer(base + entry.offset), entry.stride)
    }
}
