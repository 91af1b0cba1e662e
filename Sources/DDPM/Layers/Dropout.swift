// Inverted dropout: while training each value is zeroed with probability p and the
// survivors are scaled by 1/(1 − p), so that inference is the identity.  N = elements.
// The mask is drawn from the model's Philox stream and kept for the backward pass.

struct Dropout: Sendable {
    let probability: Float  // p in [0, 1)

    /// mask (N,) = [u ≥ p]/(1 − p) with u ~ U[0, 1); out (N,) = inp·mask. `out` may alias `inp`.
    func forward(_ out: UnsafeMutablePointer<Float>, mask: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>,
                 count: Int, rng: inout Philox) {
        rng.fillUniform(mask, count: count)
        let (p, keep) = (probability, 1 / (1 - probability))
        for i in 0..<count { mask[i] = mask[i] < p ? 0 : keep }
        for i in 0..<count { out[i] = inp[i] * mask[i] }
    }

    /// In the forward pass this was: out = inp·mask, so dinp = dout·mask (overwritten; may alias dout).
    func backward(dinp: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, mask: UnsafePointer<Float>, count: Int) {
        for i in 0..<count { dinp[i] = dout[i] * mask[i] }
    }
}
