// Inverted dropout: while training each value is zeroed with probability p and the
// survivors are scaled by 1/(1 − p), so that inference is the identity.  N = elements.
// The mask is drawn per sample from keyed Philox streams (see DiffusionModel.trainStep) and
// kept for the backward pass.  C = channels, B = batch, N = pixels.

struct Dropout: Sendable {
    let probability: Float  // p in [0, 1)

    /// mask (C, B, N) = [u ≥ p]/(1 − p) with u ~ U[0, 1); out (C, B, N) = inp·mask. `out` may
    /// alias `inp`. The u of sample b come from the stream `rng` names with b added to its
    /// sample index (counter words 2–3), so a sample's mask does not depend on the batch it is
    /// in; `rng` then moves to the next stream, for the next dropout layer.
    func forward(_ out: UnsafeMutablePointer<Float>, mask: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>,
                 channels C: Int, batch B: Int, pixels N: Int, rng: inout Philox) {
        let count = C * B * N
        for b in 0..<B {
            var sample = Philox(seed: rng.seed, counter: rng.counter, high: rng.high &+ UInt64(b))
            for c in 0..<C { sample.fillUniform(mask + (c * B + b) * N, count: N) }
        }
        rng.high &+= 1 << 32
        let (p, keep) = (probability, 1 / (1 - probability))
        for i in 0..<count { mask[i] = mask[i] < p ? 0 : keep }
        for i in 0..<count { out[i] = inp[i] * mask[i] }
    }

    /// In the forward pass this was: out = inp·mask, so dinp = dout·mask (overwritten; may alias dout).
    func backward(dinp: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, mask: UnsafePointer<Float>, count: Int) {
        for i in 0..<count { dinp[i] = dout[i] * mask[i] }
    }
}
