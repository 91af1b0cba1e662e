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

    init(config: AdamWConfig, count: Int) throws {
        self.config = config
        m = try Buffer(count: count)
        v = try Buffer(count: count)
    }

    /// The constants of update number `n` (1-based): bias corrections folded into the step.
    struct Coefficients {
        let stepSize: Float  // lr/(1 − β1ⁿ)
        let decay: Float  // 1 − lr·λ
        let rBias2: Float  // 1/√(1 − β2ⁿ)
        let beta1, beta2, oneMinusBeta1, oneMinusBeta2, epsilon: Float
        init(_ c: AdamWConfig, update n: Int) {
            let bias1 = 1 - Float(pow(Double(c.beta1), Double(n)))
            let bias2 = 1 - Float(pow(Double(c.beta2), Double(n)))
            (stepSize, decay, rBias2) = (c.learningRate / bias1, 1 - c.learningRate * c.weightDecay, 1 / bias2.squareRoot())
            (beta1, beta2, oneMinusBeta1, oneMinusBeta2, epsilon) = (c.beta1, c.beta2, 1 - c.beta1, 1 - c.beta2, c.epsilon)
        }
    }

    /// (m', v', θ') of eight lanes: the one formula that `update` writes and `firstNonFinite` checks.
    ///   m' = β1·m + (1−β1)·g,  v' = β2·v + (1−β2)·g²,  θ' = θ·(1 − lr·λ) − (lr/bias1)·m' / (√v'/√bias2 + ε)
    @inline(__always)
    static func lanes(_ k: Coefficients, g: SIMD8<Float>, m: SIMD8<Float>, v: SIMD8<Float>, p: SIMD8<Float>)
        -> (m: SIMD8<Float>, v: SIMD8<Float>, p: SIMD8<Float>) {
        typealias V = SIMD8<Float>
        let mi = V(repeating: k.beta1) * m + V(repeating: k.oneMinusBeta1) * g
        let vi = V(repeating: k.beta2) * v + V(repeating: k.oneMinusBeta2) * g * g
        let pi = p * V(repeating: k.decay) - V(repeating: k.stepSize) * mi / (vi.squareRoot() * V(repeating: k.rBias2) + V(repeating: k.epsilon))
        return (mi, vi, pi)
    }

    /// The same formula for one lane (the tail).
    @inline(__always)
    static func lane(_ k: Coefficients, g: Float, m: Float, v: Float, p: Float) -> (m: Float, v: Float, p: Float) {
        let mi = k.beta1 * m + k.oneMinusBeta1 * g
        let vi = k.beta2 * v + k.oneMinusBeta2 * g * g
        return (mi, vi, p * k.decay - k.stepSize * mi / (vi.squareRoot() * k.rBias2 + k.epsilon))
    }

    /// One update of `params` (P,) from `gradScale`·`grads` (P,); the scale carries gradient
    /// clipping so that the gradients are read once. Eight lanes at a time (the scalar loop
    /// does not vectorise), then a scalar tail.
    func update(_ params: UnsafeMutablePointer<Float>, grads: UnsafePointer<Float>, gradScale: Float = 1) {
        update(params, grads: grads, gradScale: gradScale, range: 0..<m.count, nextStep())
    }

    /// Counts an update and returns its constants, for `update(_:grads:gradScale:range:_:)` on
    /// parts of the parameters (the model's WorkPool splits an update by ranges: every element
    /// gets the same value as in one pass).
    func nextStep() -> Coefficients {
        step += 1
        return Coefficients(config, update: step)
    }

    /// The update with constants `k` of the parameters in `range` only.
    func update(_ params: UnsafeMutablePointer<Float>, grads: UnsafePointer<Float>, gradScale: Float, range: Range<Int>,
                _ k: Coefficients) {
        let (m, v) = (self.m.pointer + range.lowerBound, self.v.pointer + range.lowerBound)
        let (params, grads, count) = (params + range.lowerBound, grads + range.lowerBound, range.count)
        typealias V = SIMD8<Float>
        let vg = V(repeating: gradScale)
        var i = 0
        while i + 8 <= count {
            let g = UnsafeRawPointer(grads + i).loadUnaligned(as: V.self) * vg
            let r = Self.lanes(k, g: g, m: UnsafeRawPointer(m + i).loadUnaligned(as: V.self),
                              v: UnsafeRawPointer(v + i).loadUnaligned(as: V.self), p: UnsafeRawPointer(params + i).loadUnaligned(as: V.self))
            UnsafeMutableRawPointer(m + i).storeBytes(of: r.m, as: V.self)
            UnsafeMutableRawPointer(v + i).storeBytes(of: r.v, as: V.self)
            UnsafeMutableRawPointer(params + i).storeBytes(of: r.p, as: V.self)
            i += 8
        }
        while i < count {
            (m[i], v[i], params[i]) = Self.lane(k, g: grads[i] * gradScale, m: m[i], v: v[i], p: params[i])
            i += 1
        }
    }

    /// What `update` (then an EMA step θ_ema += (1 − d)·(θ' − θ_ema)) would make non-finite:
    /// the first index and which of the values, or nil when every new parameter, moment and
    /// EMA value is finite. Reads what `update` reads, computes the same lanes, writes nothing,
    /// so that a step can be refused before anything changes. `sizes` receives Σ(θ' − θ)² and
    /// Σθ² (summed in Float: they only size the update against the weights).
    func firstNonFinite(_ params: UnsafePointer<Float>, grads: UnsafePointer<Float>, gradScale: Float,
                        ema: UnsafePointer<Float>, emaDecay: Float,
                        sizes: inout (update: Double, params: Double)) -> (index: Int, value: String)? {
        let k = Coefficients(config, update: step + 1)
        let (m, v, count) = (self.m.pointer, self.v.pointer, self.m.count)
        typealias V = SIMD8<Float>
        let (vg, keep) = (V(repeating: gradScale), V(repeating: 1 - emaDecay))
        // x − x is 0 for a finite x and NaN otherwise: one running sum flags the whole vector.
        var flags = V(repeating: 0)
        var (updateSquares, paramSquares) = (V(repeating: 0), V(repeating: 0))
        var i = 0
        while i + 8 <= count {
            let g = UnsafeRawPointer(grads + i).loadUnaligned(as: V.self) * vg
            let p = UnsafeRawPointer(params + i).loadUnaligned(as: V.self)
            let r = Self.lanes(k, g: g, m: UnsafeRawPointer(m + i).loadUnaligned(as: V.self),
                              v: UnsafeRawPointer(v + i).loadUnaligned(as: V.self), p: p)
            let e = UnsafeRawPointer(ema + i).loadUnaligned(as: V.self)
            let en = e + keep * (r.p - e)
            flags += (r.m - r.m) + (r.v - r.v) + (r.p - r.p) + (en - en)
            updateSquares += (r.p - p) * (r.p - p)
            paramSquares += p * p
            i += 8
        }
        sizes = (Double(updateSquares.sum()), Double(paramSquares.sum()))
        for j in i..<count {
            let d = Double(Self.lane(k, g: grads[j] * gradScale, m: m[j], v: v[j], p: params[j]).p) - Double(params[j])
            sizes.update += d * d
            sizes.params += Double(params[j]) * Double(params[j])
        }
        func scalar(_ j: Int) -> (index: Int, value: String)? {
            let r = Self.lane(k, g: grads[j] * gradScale, m: m[j], v: v[j], p: params[j])
            let en = ema[j] + (1 - emaDecay) * (r.p - ema[j])
            if !r.m.isFinite { return (j, "the first moment exp_avg (\(r.m))") }
            if !r.v.isFinite { return (j, "the second moment exp_avg_sq (\(r.v))") }
            if !r.p.isFinite { return (j, "the parameter (\(r.p))") }
            if !en.isFinite { return (j, "the EMA weight (\(en))") }
            return nil
        }
        for j in i..<count { if let bad = scalar(j) { return bad } }  // the tail
        guard flags.sum() != 0 else { return nil }
        for j in 0..<i { if let bad = scalar(j) { return bad } }  // the slow path: which value
        return nil
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
