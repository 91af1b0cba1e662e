// The conditioning of a batch, as the networks, the denoisers and the model take it: one
// value threaded through instead of a labels pointer, so that adding a kind of conditioning
// changes no signature.  B = batch, Dc = conditioning-vector size.
//
// Which field is read depends on the network's `Conditioning`: labels for `.classes`,
// vectors for `.vector`. A field left nil means the null condition for every row; `null`
// marks single rows as null (condition dropout while training, the unconditional half of a
// guided batch). `validate(against:)` checks a batch against the network's conditioning.

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

    /// Checks the condition of `batch` rows against a network's conditioning `c`: labels in
    /// 0...K (K = null) for classes, finite vectors of Dc floats for vectors, a finite context
    /// or token ids in 0..<V of the network's Lmax × Dc, lengths in 0...Lmax; nothing the
    /// network does not read.
    func validate(against c: Conditioning, batch: Int) throws {
        if let labels {
            let K = c.numClasses
            try require(K > 0, c == .none ? "labels were given but the model is unconditional (num_classes = 0)"
                                          : "labels were given but the model is conditioned on vectors, not classes")
            for b in 0..<batch where labels[b] < 0 || Int(labels[b]) > K {
                throw DDPMError.invalidArgument("label[\(b)] = \(labels[b]) is outside 0..<\(K) (or \(K) for no class)")
            }
        }
        if let vectors {
            let Dc = c.vectorDim
            try require(Dc > 0, "conditioning vectors were given but the model is not conditioned on vectors")
            try require(vectorDim == Dc, "conditioning vectors have \(vectorDim) floats each, the model expects \(Dc)")
            try requireFinite(vectors, count: batch * Dc, "conditioning vectors")
        }
        let (L, V) = (c.maxLength, c.vocabulary)
        if let context {
            guard case .sequence(let Dc, _) = c else {
                throw DDPMError.invalidArgument("a context sequence was given but the model is not conditioned on sequences")
            }
            try require(maxLength == L && contextDim == Dc,
                        "the context is \(maxLength) × \(contextDim) per row, the model expects \(L) × \(Dc)")
            try requireFinite(context, count: batch * L * Dc, "the context")
        }
        if let tokens {
            try require(V > 0, "tokens were given but the model is not conditioned on tokens")
            try require(maxLength == L, "tokens have \(maxLength) positions per row, the model expects \(L)")
            for i in 0..<batch * L where tokens[i] < 0 || Int(tokens[i]) >= V {
                throw DDPMError.invalidArgument("token[\(i / L)][\(i % L)] = \(tokens[i]) is outside 0..<\(V) (vocab_size)")
            }
        }
        if let lengths {
            try require(L > 0, "lengths were given but the model is not conditioned on sequences or tokens")
            for b in 0..<batch where lengths[b] < 0 || Int(lengths[b]) > L {
                throw DDPMError.invalidArgument("length[\(b)] = \(lengths[b]) is outside 0...\(L) (max_length)")
            }
        }
    }
}
