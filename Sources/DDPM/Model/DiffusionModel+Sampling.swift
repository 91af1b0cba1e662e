// Sampling from a model: its network, with guidance, driven by a Sampler.
// N = number of samples, S = floats per sample, Dc = conditioning-vector size.

extension DiffusionModel {
    /// Draws N samples from the model, with guidance when a condition is given.
    /// - Parameters:
    ///   - out: (N, S).  - cond: labels (N,) in 0...K or vectors (N, Dc), or none.
    ///   - options: the solver (its predictionType is ignored: the model knows its own).
    ///   - predict: the weights (EMA by default) and the guidance scale.
    public func sample(into out: UnsafeMutablePointer<Float>, count n: Int, cond: ConditionBatch,
                       options: SamplerOptions = .init(), predict: PredictOptions = .init(),
                       progress: SamplingProgress? = nil) throws {
        let denoiser = try denoiser(predict, cond: cond, batch: n,
                                    extraFloatsPerRow: Double(Sampler.floatsPerSampleFloat * network.sampleSize), "sampling")
        let sampler = try Sampler(schedule: schedule, options: options, batch: n, sampleSize: network.sampleSize)
        try sampler.run(denoiser, into: out, cond: cond, progress: progress)
    }

    /// `sample` conditioned on labels (N,) in 0...K, or nil.
    public func sample(into out: UnsafeMutablePointer<Float>, count n: Int, labels: UnsafePointer<Int32>? = nil,
                       options: SamplerOptions = .init(), predict: PredictOptions = .init(),
                       progress: SamplingProgress? = nil) throws {
        try sample(into: out, count: n, cond: ConditionBatch(labels: labels), options: options, predict: predict, progress: progress)
    }

    /// Array form of `sample`: returns (N, S) flattened. vectors is (N, Dc) flattened.
    public func sample(count n: Int, labels: [Int32]? = nil, vectors: [Float]? = nil, options: SamplerOptions = .init(),
                       predict: PredictOptions = .init()) throws -> [Float] {
        try require(n >= 1, "number of samples must be >= 1 (got \(n))")
        var out = [Float](repeating: 0, count: n * network.sampleSize)
        try withConditionArrays(labels: labels, vectors: vectors, batch: n) { cond in
            try out.withUnsafeMutableBufferPointer { o in
                try sample(into: o.baseAddress!, count: n, cond: cond, options: options, predict: predict)
            }
        }
        return out
    }

    /// Calls `body` with a ConditionBatch over the arrays, after checking their sizes.
    func withConditionArrays<R>(labels: [Int32]?, vectors: [Float]?, batch n: Int,
                                _ body: (ConditionBatch) throws -> R) throws -> R {
        if let labels { try require(labels.count == n, "labels has \(labels.count) entries, expected \(n)") }
        let Dc = conditioning.vectorDim
        if let vectors {
            try require(Dc > 0, "vectors were given but the model is not conditioned on vectors")
            try require(vectors.count == n * Dc, "vectors has \(vectors.count) floats, expected \(n) × \(Dc)")
        }
        return try withOptionalPointer(labels) { l in
            try withOptionalPointer(vectors) { v in try body(ConditionBatch(labels: l, vectors: v, vectorDim: Dc)) }
        }
    }
}
