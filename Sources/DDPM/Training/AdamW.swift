// AdamW (Loshchilov & Hutter) over a flat parameter vector, PyTorch's update order:
//   θ ← θ − lr·λ·θ
//   m ← β1·m + (1−β1)·g,  v ← β2·v + (1−β2)·g²
//   θ ← θ − lr·(m/(1−β1ᵗ)) / (√(v/(1−β2ᵗ)) + ε)
// P = number of parameters.

public struct AdamWConfig: Codable, Sendable, Equatable {
    public var learningRate: Float = 1e-3
    public var beta1: Float = 0.9
    public var beta2: Float = 0.999
    public var epsilon: Float = 1e-8
    public var weightDecay: Float = 0
    public init(learningRate: Float = 1e-3, beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8, weightDecay: Float = 0) {
        (self.learningRate, self.beta1, self.beta2, self.epsilon, self.weightDecay) = (learningRate, beta1, beta2, epsilon, weightDecay)
    }

    func validate() throws {
        try require(learningRate.isFinite && learningRate > 0, "learning rate must be > 0 (got \(learningRate))")
        try require(beta1 >= 0 && beta1 < 1, "beta1 must be in [0, 1) (got \(beta1))")
        try require(beta2 >= 0 && beta2 < 1, "beta2 must be in [0, 1) (got \(beta2))")
        try require(epsilon.isFinite && epsilon > 0, "adam epsilon must be > 0 (got \(epsilon))")
        try require(weightDecay.isFinite && weightDecay >= 0, "weight decay must be >= 0 (got \(weightDecay))")
    }
}

final class AdamW {
    var config: AdamWConfig
    let m: Buffer<Float>  // (P,) first moment
    let v: Buffer<Float>  // (P,) second moment
    var step = 0  // updates done so far

    init(config: AdamWConfig, count: Int) {
        self.config = config
        m = Buffer(count: count)
        v = Buffer(count: count)
    }

    /// One update of `params` (P,) from `gradScale`·`grads` (P,); the scale carries gradient
    /// clipping so that the gradients are read once. Eight lanes at a time (the scalar loop
    /// does not vectorise), then a scalar tail.
    func update(_ params: UnsafeMutablePointer<Float>, grads: UnsafePointer<Float>, gradScale: Float = 1) {
        step += 1
        let c = config
        let bias1 = 1 - Float(pow(Double(c.beta1), Double(step)))
        let bias2 = 1 - Float(pow(Double(c.beta2), Double(step)))
        // θ ← θ·(1 − lr·λ) − (lr/bias1)·m / (√v/√bias2 + ε)
        let (stepSize, decay, rBias2) = (c.learningRate / bias1, 1 - c.learningRate * c.weightDecay, 1 / bias2.squareRoot())
        let (m, v, count) = (self.m.pointer, self.v.pointer, self.m.count)
        typealias V = SIMD8<Float>
        let (b1, b2, g1, g2) = (V(repeating: c.beta1), V(repeating: c.beta2), V(repeating: 1 - c.beta1), V(repeating: 1 - c.beta2))
        let (vs, vd, vr, ve, vg) = (V(repeating: stepSize), V(repeating: decay), V(repeating: rBias2),
                                    V(repeating: c.epsilon), V(repeating: gradScale))
        var i = 0
        while i + 8 <= count {
            let g = UnsafeRawPointer(grads + i).loadUnaligned(as: V.self) * vg
            let mi = b1 * UnsafeRawPointer(m + i).loadUnaligned(as: V.self) + g1 * g
            let vi = b2 * UnsafeRawPointer(v + i).loadUnaligned(as: V.self) + g2 * g * g
            let p = UnsafeRawPointer(params + i).loadUnaligned(as: V.self)
            UnsafeMutableRawPointer(m + i).storeBytes(of: mi, as: V.self)
            UnsafeMutableRawPointer(v + i).storeBytes(of: vi, as: V.self)
            UnsafeMutableRawPointer(params + i).storeBytes(of: p * vd - vs * mi / (vi.squareRoot() * vr + ve), as: V.self)
            i += 8
        }
        while i < count {
            let g = grads[i] * gradScale
            m[i] = c.beta1 * m[i] + (1 - c.beta1) * g
            v[i] = c.beta2 * v[i] + (1 - c.beta2) * g * g
            params[i] = params[i] * decay - stepSize * m[i] / (v[i].squareRoot() * rBias2 + c.epsilon)
            i += 1
        }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
