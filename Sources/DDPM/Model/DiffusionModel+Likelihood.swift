// The model's variational bound on −log p_θ(x_0) (Evaluation/VariationalBound.swift) and
// its score. B = batch, S = floats per sample.

extension DiffusionModel {
    /// The bound for x_0 (B, S), term by term, with the weights and guidance of `predict`.
    /// - Parameter labels: (B,) in 0...K, or nil.
    public func negativeLogLikelihood(x0: UnsafePointer<Float>, batch: Int, labels: UnsafePointer<Int32>? = nil,
                                      options: VLBOptions = .init(), predict: PredictOptions = .init()) throws -> VLBResult {
        let denoiser = try denoiser(predict, labels: labels, batch: batch)
        return try schedule.variationalBound(x0: x0, batch: batch, denoiser: denoiser, labels: labels, options: options)
    }
}
