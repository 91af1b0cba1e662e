// Sampling from a model: its network, with guidance, driven by a Sampler.
// N = number of samples, S = floats per sample.

extension DiffusionModel {
    /// Draws N samples from the model, with guidance when labels are given.
    /// - Parameters:
    ///   - out: (N, S).  - labels: (N,) in 0...K, or nil.
    ///   - options: the solver (its predictionType is ignored: the model knows its own).
    ///   - predict: the weights (EMA by default) and the guidance scale.
    public func sample(into out: UnsafeMutablePointer<Float>, count n: Int, labels: UnsafePointer<Int32>? = nil,
                       options: SamplerOptions = .init(), predict: PredictOptions = .init(),
                       progress: SamplingProgress? = nil) throws {
        let denoiser = try denoiser(predict, labels: labels, batch: n,
                                    extraFloatsPerRow: Double(Sampler.floatsPerSampleFloat * network.sampleSize), "sampling")
        let sampler = try Sampler(schedule: schedule, options: options, batch: n, sampleSize: network.sampleSize)
        try sampler.run(denoiser, into: out, labels: labels, progress: progress)
    }

    /// Array form of `sample`: returns (N, S) flattened.
    public func sample(count n: Int, labels: [Int32]? = nil, options: SamplerOptions = .init(),
                       predict: PredictOptions = .init()) throws -> [Float] {
        try require(n >= 1, "number of samples must be >= 1 (got \(n))")
        if let labels { try require(labels.count == n, "labels has \(labels.count) entries, expected \(n)") }
        var out = [Float](repeating: 0, count: n * network.sampleSize)
        try out.withUnsafeMutableBufferPointer { o in
            try withOptionalPointer(labels) {
                try sample(into: o.baseAddress!, count: n, labels: $0, options: options, predict: predict)
            }
        }
        return out
    }
}
