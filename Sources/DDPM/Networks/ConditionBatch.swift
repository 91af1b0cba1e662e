// The conditioning of a batch, as the networks, the denoisers and the model take it: one
// value threaded through instead of a labels pointer, so that adding a kind of conditioning
// changes no signature.  B = batch, Dc = conditioning-vector size.
//
// Which field is read depends on the network's `Conditioning`: labels for `.classes`,
// vectors for `.vector`. A field left nil means the null condition for every row; `null`
// marks single rows as null (condition dropout while training, the unconditional half of a
// guided batch).

public struct ConditionBatch {
    /// (B,) labels in 0...K (K = the null label), or nil.
    public var labels: UnsafePointer<Int32>?
    /// (B, Dc) conditioning vectors, or nil.
    public var vectors: UnsafePointer<Float>?
    /// Dc, floats per row of `vectors` (0 when there are none).
    public var vectorDim: Int
    /// (B,) 1 where the row takes the network's learned null condition instead of its own, or nil.
    public var null: UnsafePointer<UInt8>?
    /// (B, Lmax, Dc) context vectors of a sequence condition, or nil.
    public var context: UnsafePointer<Float>?
    /// (B, Lmax) token ids of a token condition, or nil.
    public var tokens: UnsafePointer<Int32>?
    /// (B,) lengths in 0...Lmax of the context or tokens (0 = the null condition), or nil for Lmax.
    public var lengths: UnsafePointer<Int32>?

    public init(labels: UnsafePointer<Int32>? = nil, vectors: UnsafePointer<Float>? = nil, vectorDim: Int = 0,
                null: UnsafePointer<UInt8>? = nil) {
        (self.labels, self.vectors, self.vectorDim, self.null) = (labels, vectors, vectorDim, null)
    }

    /// No conditioning: the null condition for every row.
    public static var none: ConditionBatch { ConditionBatch() }

    /// Whether any condition is given (a guided prediction needs one).
    public var isGiven: Bool { labels != nil || vectors != nil || context != nil || tokens != nil }

    /// The rows start..<start+count (a chunk of the batch).
    public func rows(from start: Int, count: Int) -> ConditionBatch {
        var r = ConditionBatch(labels: labels.map { $0 + start }, vectors: vectors.map { $0 + start * vectorDim },
                               vectorDim: vectorDim, null: null.map { $0 + start })
        (r.maxLength, r.contextDim) = (maxLength, contextDim)
        r.context = context.map { $0 + start * maxLength * contextDim }
        r.tokens = tokens.map { $0 + start * maxLength }
        r.lengths = lengths.map { $0 + start }
        return r
    }

    /// Lmax and Dc of `context` / `tokens` (0 when there are none).
    public var maxLength = 0, contextDim = 0

    /// Whether row b takes the null condition: no vectors, or flagged in `null`.
    func vectorIsNull(_ b: Int) -> Bool { vectors == nil || (null?[b] ?? 0) != 0 }
}
