// A train step changes the model only if everything it writes stays finite (issue 10):
// the loss is checked before the backward pass (DiffusionModel.swift), the gradient norm
// and the update here; and only if the update does not explode (issue 19: one step at
// lr = 1e6 left finite weights of 1e6 from which no later step could recover). A refused step throws `.nonFinite` and leaves parameters, EMA,
// AdamW moments and step counters as they were, so that training can go on with a lower
// learning rate.
//
//   P = number of parameters, B = batch, S = floats per sample.

extension DiffusionModel {
    /// Called when the gradients of a finite loss are not finite: Float overflowed in the
    /// backward pass. With clipping only the gradient's direction matters, so the backward
    /// pass runs again on ∂L/∂out (B, outputSize) scaled by 2^-64 (exact in binary) and the clip factor
    /// is taken from the scaled norm: g·c/‖g‖ = g'·c/‖g'‖ for g' = 2^-64·g. Without clipping
    /// (or if even that overflows) the step is refused.
    /// - Returns: the scaled gradients' norm and the factor that clips them to `gradClip`.
    func backwardAgainScaled(dout: UnsafeMutablePointer<Float>, batch B: Int, loss: Float) throws -> (norm: Double, scale: Float) {
        let params = network.parameters
        func refuse(_ norm: Double) -> DDPMError {
            .nonFinite("the gradient norm became \(norm) at step \(step) (loss \(loss)); the step was not applied: "
                       + "lower the learning rate (now \(training.optimizer.learningRate))")
        }
        guard training.gradClip > 0 else { throw refuse(.infinity) }
        for i in 0..<B * network.outputSize { dout[i] *= 0x1p-64 }
        backwardChunks(dout: dout, batch: B)
        let norm = sumOfSquares(params.grads.pointer, params.count).squareRoot()
        guard norm.isFinite && norm > 0 else { throw refuse(norm.isFinite ? .infinity : norm) }
        return (norm, Float(Double(training.gradClip) / norm))
    }

    /// Throws `.nonFinite` naming the first parameter whose update by `gradScale`·grads
    /// (then the EMA step with `emaDecay`) would make it, its AdamW moments or its EMA value
    /// non-finite, or when the update explodes (see `maxUpdateGrowth`); nothing is written.
    func requireFiniteUpdate(gradScale: Float, emaDecay: Float) throws {
        let params = network.parameters
        var sizes = (update: 0.0, params: 0.0)
        if let bad = optimizer.firstNonFinite(params.values.pointer, grads: params.grads.pointer, gradScale: gradScale,
                                              ema: ema.pointer, emaDecay: emaDecay, sizes: &sizes) {
            throw DDPMError.nonFinite("the update at step \(step) would make \(bad.value) of \(params.layout.describe(bad.index)) "
                                      + "non-finite; the step was not applied: lower the learning rate (now \(training.optimizer.learningRate))")
        }
        // rms(θ' − θ) ≤ G·max(rms(θ), 1), in squares: Σ(θ' − θ)² ≤ G²·max(Σθ², P).
        let G = Self.maxUpdateGrowth
        guard !(sizes.update <= G * G * max(sizes.params, Double(params.count))) else { return }
        let P = Double(params.count)
        let (update, weights) = (Float((sizes.update / P).squareRoot()), Float((sizes.params / P).squareRoot()))
        throw DDPMError.nonFinite("the update at step \(step) would move the parameters by \(update) (RMS), more than "
                                  + "\(Int(G)) × max(their RMS \(weights), 1): an exploding step, not applied; "
                                  + "lower the learning rate (now \(training.optimizer.learningRate))")
    }

    /// A step whose update is larger than this many times the weights (by RMS, weights
    /// counted as at least 1) is refused as exploding: with AdamW an update's RMS is about the
    /// learning rate, so only a rate of order 100 or more reaches it, and one accepted step
    /// there leaves weights so large that every later loss overflows and training cannot go on.
    static let maxUpdateGrowth = 100.0
}
