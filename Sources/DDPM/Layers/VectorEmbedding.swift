// The projection of a conditioning vector into the time embedding, with a learned null
// vector for classifier-free guidance.  B = batch, Dc = vector size, W = embedding width.
//
//   c̃_b = c_b, or n (the learned null vector, (Dc,)) where row b is null
//   out_b += W_c·c̃_b + b_c                                      (B, W)
//
// A single Linear: the network's time MLP and blocks already mix what it adds.

public struct VectorEmbedding: Sendable {
    public let dim: Int, features: Int  // Dc, W
    let null: Int  // offset of the null vector n, (Dc,)
    let proj: Linear  // Dc → W

    public init(_ layout: inout ParameterLayout, _ name: String, dim: Int, features: Int) {
        (self.dim, self.features) = (dim, features)
        null = layout.add(name + ".null", [dim], .zeros)  // starts as the zero vector, then learned
        proj = Linear(&layout, name + ".proj", in: dim, out: features)
    }

    /// inp (B, Dc) = c̃ and isNull (B,) = 1 where row b took n, else 0 (both kept for the
    /// backward pass), then out (B, W) += W_c·c̃ + b_c.
    func forward(accumulateInto out: UnsafeMutablePointer<Float>, inp: UnsafeMutablePointer<Float>,
                 isNull: UnsafeMutablePointer<Float>, _ cond: ConditionBatch, _ params: UnsafePointer<Float>, batch B: Int) {
        let D = dim
        for b in 0..<B {
            let takesNull = cond.vectorIsNull(b)
            isNull[b] = takesNull ? 1 : 0
            (inp + b * D).update(from: takesNull ? params + null : cond.vectors! + b * D, count: D)
        }
        proj.forward(out, inp, params, batch: B, accumulate: true)
    }

    /// In the forward pass this was: out += W_c·c̃ + b_c, so dW_c, db_c as a Linear and
    /// dn += Σ_{null rows} W_cᵀ·dout_b (through `dinp` (B, Dc), scratch). The vectors are
    /// data: they get no gradient.
    func backward(_ grads: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, inp: UnsafePointer<Float>,
                  dinp: UnsafeMutablePointer<Float>, isNull: UnsafePointer<Float>, _ params: UnsafePointer<Float>, batch B: Int) {
        let D = dim
        let anyNull = (0..<B).contains { isNull[$0] != 0 }
        proj.backward(dinp: anyNull ? dinp : nil, grads, dout: dout, inp: inp, params, batch: B)
        guard anyNull else { return }
        let dn = grads + null
        for b in 0..<B where isNull[b] != 0 {
            for i in 0..<D { dn[i] += dinp[b * D + i] }
        }
    }
}
