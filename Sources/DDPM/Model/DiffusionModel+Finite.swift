// A train step changes the model only if everything it writes stays finite (issue 10):
// the loss is checked before the backward pass (DiffusionModel.swift), the gradient norm
// and the update here. A refused step throws `.nonFinite` and leaves parameters, EMA,
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
    /// non-finite; nothing is written.
    func requireFiniteUpdate(gradScale: Float, emaDecay: Float) throws {
        let params = network.parameters
        guard let bad = optimizer.firstNonFinite(params.values.pointer, grads: params.grads.pointer, gradScale: gradScale,
                                                 ema: ema.pointer, emaDecay: emaDecay) else { return }
        throw DDPMError.nonFinite("the update at step \(step) would make \(bad.value) of \(params.layout.describe(bad.index)) "
                                  + "non-finite; the step was not applied: lower the learning rate (now \(training.optimizer.learningRate))")
    }
}
