// How a batch is cut for the WorkPool: fixed chunks that depend only on the batch size and
// the network, never on the thread count, so that a seed gives bitwise the same numbers on
// 1, 2 or more threads.
//
//   Training: B rows in n = min(maxChunks, ⌈B / r⌉) chunks of ⌈B / n⌉ rows (the last shorter),
//   r = max(minRows, min(256, ⌈B / 2⌉)): two chunks until they reach 256 rows, then more of
//   about 256 (up to 4). Fewer, larger chunks keep the per-chunk GEMMs and the gradient
//   reduction cheap (on the large MLP, 4 chunks of 128 cost 10% more than 2 of 256 on one core). Chunk c runs forward, loss and backward on its own replica of the network
//   (chunk 0 on the network itself), into its own gradients; the model then sums the
//   gradients in chunk order, g = ((g_0 + g_1) + g_2) + …, and the losses likewise.
//   Inference: chunks of `inferenceRows` rows, a divisor of predictionChunk (256), so that a
//   shard of a sampling batch that starts on a multiple of 256 computes what one process
//   computes for its samples. Rows do not interact in inference: any thread may take any chunk.
//
// The row counts keep each chunk's GEMMs large enough to run near sgemm's speed.

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

    /// At most this many chunks a training batch: bounds the gradient blocks (P floats each).
    static let maxTrainingChunks = 4

    /// The plan of a train step of `batch` rows on a network of `config`.
    static func training(batch B: Int, _ config: NetworkConfig) -> ChunkPlan {
        let r = max(config.minTrainingRows, min(256, (B + 1) / 2))
        let n = min(maxTrainingChunks, max(1, (B + r - 1) / r))
        return ChunkPlan(batch: B, rows: (B + n - 1) / n)
    }

    /// The plan of a forward pass (a prediction) of `batch` rows on a network of `config`.
    static func inference(batch B: Int, _ config: NetworkConfig) -> ChunkPlan {
        ChunkPlan(batch: B, rows: config.inferenceRows)
    }
}

extension NetworkConfig {
    /// The fewest rows of a training chunk (smaller batches are one chunk): for the MLP about
    /// 2^14 / H rows (its GEMMs are rows × H × H), so that narrow networks keep large chunks.
    var minTrainingRows: Int {
        switch self {
        case .mlp(let c): return max(32, min(256, (1 << 14) / max(1, c.hidden)))
        case .unet: return 16
        }
    }

    /// Rows of an inference chunk: divides predictionChunk.
    var inferenceRows: Int {
        switch self {
        case .mlp: return 128
        case .unet: return 64
        }
    }
}

/// The networks the chunks of a job run on: the network itself, then replicas made when
/// first needed and kept (their activations grow with the rows they are given).
final class Replicas {
    let network: DenoisingNetwork
    private(set) var copies: [DenoisingNetwork] = []

    init(_ network: DenoisingNetwork) { self.network = network }

    /// Makes sure there are `n` networks (the original included).
    func reserve(_ n: Int) throws {
        while copies.count + 1 < n { copies.append(try network.replica()) }
    }

    /// Network i (0 = the original); i < the count reserved.
    subscript(i: Int) -> DenoisingNetwork { i == 0 ? network : copies[i - 1] }

    /// Floats a replica holds beyond its activations: gradients (P) and the timestep table.
    func floatsPerCopy(timestepTable: Double) -> Double { Double(network.parameters.count) + timestepTable }
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
