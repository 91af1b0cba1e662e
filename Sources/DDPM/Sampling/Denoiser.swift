// Anything that gives a model output at (x_t, t): our networks (through DiffusionModel,
// with guidance) or a user callback (a PyTorch model, an analytic ε*).
// B = batch, S = floats per sample.

public protocol Denoiser {
    /// Floats per sample.
    var sampleSize: Int { get }
    /// What `predict` writes: ε̂ or x̂_0.
    var predictionType: PredictionType { get }
    /// The output (B, S) for x_t (B, S) at one timestep t shared by the batch, conditioned on `cond`.
    func predict(_ out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, t: Int,
                 cond: ConditionBatch, batch: Int) throws
    /// The learned variance's v (B, S) of the last `predict`, or nil when the model has none.
    var lastVariance: UnsafePointer<Float>? { get }
}

extension Denoiser {
    public var lastVariance: UnsafePointer<Float>? { nil }
}

/// A denoiser backed by a closure; a thrown error aborts sampling with that error. The
/// closure sees the whole condition of its `batch` rows (labels, vectors, tokens, lengths), as
/// the caller of the sampling gave it.
public struct ClosureDenoiser: Denoiser {
    public typealias Body = (_ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ t: Int,
                             _ cond: ConditionBatch, _ batch: Int) throws -> Void
    public let sampleSize: Int
    public let predictionType: PredictionType
    let body: Body
    public init(sampleSize: Int, predictionType: PredictionType = .epsilon, _ body: @escaping Body) {
        self.sampleSize = sampleSize
        self.predictionType = predictionType
        self.body = body
    }
    public func predict(_ out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, t: Int,
                        cond: ConditionBatch, batch: Int) throws {
        try body(out, x, t, cond, batch)
    }
}
