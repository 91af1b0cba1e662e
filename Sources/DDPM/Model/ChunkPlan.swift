// How a batch is cut for the WorkPool: fixed chunks that depend only on the batch size and
// the network, never on the thread count, so that a seed gives bitwise the same numbers on
// 1, 2 or more threads.
//
// A chunk's work is counted in rows × pixels (a row is a sample; a pixel one position of the
// network's input, H·W for the UNet, 1 for the MLP, whose rows cost H² each instead), so that
// a batch of two 32×32 images splits as a batch of 32 8×8 ones does.
//
//   Training: B rows in n = min(maxChunks(P), ⌈B / r⌉) chunks of ⌈B / n⌉ rows (the last shorter),
//   r = max(minRows, min(maxRows, ⌈B / 2⌉)): two chunks until they reach maxRows, then more of
//   about maxRows (up to 4). For the UNet minRows = min(16, ⌈1024 / pixels⌉) (16 rows of 8×8 or
//   less, one row of 32×32) and maxRows = max(minRows, 16384 / pixels) (256 rows of 8×8, 16 of
//   32×32); for the MLP see minTrainingRows and 256. Fewer, larger chunks keep the per-chunk GEMMs
//   and the gradient reduction cheap (on the large MLP, 4 chunks of 128 cost 10% more than 2 of
//   256 on one core). Chunk c runs forward, loss and backward on its own replica of the network
//   (chunk 0 on the network itself), into its own gradients; the model then sums the gradients
//   in chunk order, g = ((g_0 + g_1) + g_2) + …, and the losses likewise. Each replica holds P
//   gradient floats: their sum is bounded (replicaGradientBudget), so a network of 35.7 M
//   parameters gets at most 2 chunks (one replica, 143 MB), one of 6.5 M up to 4.
//   Inference: chunks of `inferenceRows` rows, a power of two dividing predictionChunk (256), so
//   that a shard of a sampling batch that starts on a multiple of 256 computes what one process
//   computes for its samples: for the UNet the fewest rows holding inferencePixels pixels, at most
//   64 (a 32×32 image a chunk; 16 rows of 8×8). Rows do not interact in inference: any thread may
//   take any chunk.
//
// Chunks, or GEMMs split over the threads (the engine's SGEMM, Kernels/Gemm.swift, cuts a GEMM
// into tiles when the pool is free: in a batch of one chunk)? Chunks parallelise everything, a
// split GEMM only the GEMM (about 75% of a CIFAR-size UNet's prediction on the engine's own
// SGEMM), so for any batch of 2 or more images chunks win. Measured as the busiest thread's CPU time at 2 threads (the
// machine was too busy for wall times), against the CPU time at 1 thread: a prediction of 4
// 32×32 images 0.059 s in 4 chunks against 0.083 s in one with split GEMMs (1 thread: 0.107 s);
// a train step of Ho et al.'s network on 8 images 1.25 s in 2 chunks against 1.88 s in one
// (1 thread: 2.56 s). A batch of one image is one chunk, and its GEMMs split.

struct ChunkPlan {
    let batch: Int
    /// Rows of every chunk but the last.
    let rows: Int
    /// The number of chunks, ⌈batch / rows⌉.
    var count: Int { (batch + rows - 1) / rows }

    init(batch: Int, rows: Int) {
        (self.batch, self.rows) = (batch, max(1, rows))
    }

    /// The first row of chunk c and its number of rows.
    func range(_ c: Int) -> (start: Int, rows: Int) {
        let start = c * rows
        return (start, min(rows, batch - start))
    }

    /// At most this many chunks a training batch.
    static let maxTrainingChunks = 4
    /// Floats the training replicas' gradients may hold together (2^26: 256 MiB).
    static let replicaGradientBudget = 1 << 26

    /// The most training chunks for a network of P parameters: 1 + the replicas whose
    /// gradients (P floats each) fit in the budget, at most maxTrainingChunks.
    static func maxTrainingChunks(parameters P: Int) -> Int {
        min(maxTrainingChunks, 1 + replicaGradientBudget / max(1, P))
    }

    /// The plan of a train step of `batch` rows on a network of `config` with P parameters.
    static func training(batch B: Int, _ config: NetworkConfig, parameters P: Int) -> ChunkPlan {
        let r = max(config.minTrainingRows, min(config.maxTrainingRows, (B + 1) / 2))
        let n = min(maxTrainingChunks(parameters: P), max(1, (B + r - 1) / r))
        return ChunkPlan(batch: B, rows: (B + n - 1) / n)
    }

    /// The plan of a forward pass (a prediction) of `batch` rows on a network of `config`.
    static func inference(batch B: Int, _ config: NetworkConfig) -> ChunkPlan {
        ChunkPlan(batch: B, rows: config.inferenceRows)
    }

    /// Pixels (rows × pixels a row) an inference chunk of the UNet holds at least. Chunks of one
    /// 32×32 image cost about the CPU time of larger ones (a CIFAR-size UNet's prediction of 32
    /// images on one thread: 1.39 s of CPU in chunks of 1, 1.31–1.39 s in chunks of 2 to 64;
    /// Ho et al.'s network on 8 images: 1.18–1.21 s in chunks of 1, 1.12–1.17 s in one chunk),
    /// and let a batch of 2 images use 2 cores.
    static let inferencePixels = 1024
}

extension NetworkConfig {
    /// Pixels of one row: H·W for the UNet, 1 for the MLP.
    var pixelsPerRow: Int {
        switch self {
        case .mlp: return 1
        case .unet(let c): return c.height * c.width
        }
    }

    /// The fewest rows of a training chunk (smaller batches are one chunk): for the MLP about
    /// 2^14 / H rows (its GEMMs are rows × H × H), so that narrow networks keep large chunks;
    /// for the UNet 1024 pixels, at most 16 rows.
    var minTrainingRows: Int {
        switch self {
        case .mlp(let c): return max(32, min(256, (1 << 14) / max(1, c.hidden)))
        case .unet: return min(16, (1024 + pixelsPerRow - 1) / pixelsPerRow)
        }
    }

    /// Rows of a training chunk beyond which a batch is cut into more than two chunks.
    var maxTrainingRows: Int {
        switch self {
        case .mlp: return 256
        case .unet: return max(minTrainingRows, (1 << 14) / pixelsPerRow)
        }
    }

    /// Rows of an inference chunk: a power of two dividing predictionChunk.
    var inferenceRows: Int {
        switch self {
        case .mlp: return 128
        case .unet:
            var rows = 1
            while rows < 64 && rows * pixelsPerRow < ChunkPlan.inferencePixels { rows *= 2 }
            return rows
        }
    }
}

/// The networks the chunks of a job run on: the network itself, then replicas made when
/// first needed and kept (their activations grow with the rows they are given).
final class Replicas {
    let network: DenoisingNetwork
    private(set) var copies: [DenoisingNetwork] = []

    init(_ network: DenoisingNetwork) { self.network = network }

    /// Makes sure there are `n` networks (the original included), the first n with gradient
    /// blocks when they are to train (a replica that only predicts holds no P gradient floats).
    func reserve(_ n: Int, gradients: Bool) throws {
        while copies.count + 1 < n { copies.append(try network.replica()) }
        if gradients { for copy in copies.prefix(n - 1) { try copy.parameters.reserveGradients() } }
    }

    /// Network i (0 = the original); i < the count reserved.
    subscript(i: Int) -> DenoisingNetwork { i == 0 ? network : copies[i - 1] }
}

/// One error slot per chunk, for chunks that can fail (a job's body cannot throw).
final class ChunkErrors {
    private let slots: UnsafeMutablePointer<Error?>
    let count: Int

    init(count: Int) {
        self.count = count
        slots = .allocate(capacity: count)
        slots.initialize(repeating: nil, count: count)
    }

    deinit {
        slots.deinitialize(count: count)
        slots.deallocate()
    }

    subscript(c: Int) -> Error? {
        get { slots[c] }
        set { slots[c] = newValue }
    }

    /// Throws the error of the first failed chunk among the first n, clearing every slot.
    func throwFirst(_ n: Int) throws {
        var first: Error?
        for c in 0..<n where slots[c] != nil {
            if first == nil { first = slots[c] }
            slots[c] = nil
        }
        if let first { throw first }
    }
}
