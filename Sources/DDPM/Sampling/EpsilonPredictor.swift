// Anything that predicts ε̂(x_t, t): our networks (through DiffusionModel, with guidance)
// or a user callback (a PyTorch model, an analytic ε*).  B = batch, S = floats per sample.

public protocol EpsilonPredictor {
    /// Floats per sample.
    var sampleSize: Int { get }
    /// ε̂ (B, S) for x_t (B, S) at one timestep t shared by the batch; labels (B,) or nil.
    func predict(_ out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, t: Int,
                 labels: UnsafePointer<Int32>?, batch: Int) throws
}

/// A predictor backed by a closure; a thrown error aborts sampling with that error.
public struct ClosurePredictor: EpsilonPredictor {
    public typealias Body = (_ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ t: Int,
                             _ labels: UnsafePointer<Int32>?, _ batch: Int) throws -> Void
    public let sampleSize: Int
    let body: Body
    public init(sampleSize: Int, _ body: @escaping Body) {
        self.sampleSize = sampleSize
        self.body = body
    }
    public func predict(_ out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, t: Int,
                        labels: UnsafePointer<Int32>?, batch: Int) throws {
        try body(out, x, t, labels, batch)
    }
}
