// Inverted dropout: while training each value is zeroed with probability p and the
// survivors are scaled by 1/(1 − p), so that inference is the identity.  N = elements.
// The mask is drawn per sample from keyed Philox streams (see DiffusionModel.trainStep) and
// kept for the backward pass.  C = channels, B = batch, N = pixels.
// The mask is formed and applied inside the GroupNorm pass before it (GroupNorm.Fusion), and
// its backward there too.

struct Dropout: Sendable {
    let probability: Float  // p in [0, 1)
    /// 1/(1 − p), the survivors' scale.
    var keep: Float { 1 / (1 - probability) }

    /// mask (C, B, N) = u ~ U[0, 1): the draw only (the mask is [u ≥ p]/(1 − p), formed where it
    /// is applied). The u of sample b come from the stream `rng` names with b added to its
    /// sample index (counter words 2–3), so a sample's mask does not depend on the batch it is
    /// in; `rng` then moves to the next stream, for the next dropout layer.
    func drawUniforms(_ mask: UnsafeMutablePointer<Float>, channels C: Int, batch B: Int, pixels N: Int, rng: inout Philox) {
        for b in 0..<B {
            var sample = Philox(seed: rng.seed, counter: rng.counter, high: rng.high &+ UInt64(b))
            for c in 0..<C { sample.fillUniform(mask + (c * B + b) * N, count: N) }
        }
        rng.high &+= 1 << 32
    }
}
