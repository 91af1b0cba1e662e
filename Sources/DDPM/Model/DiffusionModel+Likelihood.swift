// The model's variational bound on −log p_θ(x_0) (Evaluation/VariationalBound.swift) and
// its score. B = batch, S = floats per sample.

extension DiffusionModel {
    /// The bound for x_0 (B, S), term by term, with the weights and guidance of `predict`.
    /// - Parameter cond: labels (B,) in 0...K or vectors (B, Dc), or none.
    public func negativeLogLikelihood(x0: UnsafePointer<Float>, batch: Int, cond: ConditionBatch,
                                      options: VLBOptions = .init(), predict: PredictOptions = .init()) throws -> VLBResult {
        let denoiser = try denoiser(predict, cond: cond, batch: batch)
        return try schedule.variationalBound(x0: x0, batch: batch, denoiser: denoiser, cond: cond, options: options)
    }

    /// `negativeLogLikelihood` conditioned on labels (B,) in 0...K, or nil.
    public func negativeLogLikelihood(x0: UnsafePointer<Float>, batch: Int, labels: UnsafePointer<Int32>? = nil,
                                      options: VLBOptions = .init(), predict: PredictOptions = .init()) throws -> VLBResult {
        try negativeLogLikelihood(x0: x0, batch: batch, cond: ConditionBatch(labels: labels), options: options, predict: predict)
    }
}
