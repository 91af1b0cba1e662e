// A learned lookup table (class embeddings).  B = batch, K = rows, C = features.

public struct Embedding: Sendable {
    public let rows: Int, features: Int
    let table: Int  // offset of the table, (K, C)

    public init(_ layout: inout ParameterLayout, _ name: String, rows: Int, features: Int) {
        self.rows = rows
        self.features = features
        table = layout.add(name + ".weight", [rows, features], .normal(std: 0.02))
    }

    /// out (B, C) += table[ids_b]; ids must already be in 0..<K.
    func forward(accumulateInto out: UnsafeMutablePointer<Float>, ids: UnsafePointer<Int32>,
                 _ params: UnsafePointer<Float>, batch: Int) {
        let C = features
        for b in 0..<batch {
            let row = params + table + Int(ids[b]) * C, y = out + b * C
            for i in 0..<C { y[i] += row[i] }
        }
    }

    /// In the forward pass this was: out[b] += table[ids_b], so dtable[ids_b] += dout[b].
    func backward(_ grads: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, ids: UnsafePointer<Int32>, batch: Int) {
        let C = features
        for b in 0..<batch {
            let row = grads + table + Int(ids[b]) * C, dy = dout + b * C
            for i in 0..<C { row[i] += dy[i] }
        }
    }
}
