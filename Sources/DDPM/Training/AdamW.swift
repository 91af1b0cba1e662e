// AdamW (Loshchilov & Hutter) over a flat parameter vector, PyTorch's update order:
//   θ ← θ − lr·λ·θ
//   m ← β1·m + (1−β1)·g,  v ← β2·v + (1−β2)·g²
//   θ ← θ − lr·(m/(1−β1ᵗ)) / (√(v/(1−β2ᵗ)) + ε)
// P = number of parameters. The loop is a C kernel (Sources/DDPMKernels/optimizer.inc).
import DDPMKernels

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

    /// The kernel's constants for update `k` with gradient scale `gradScale`, and the EMA step
    /// θ_ema += (1 − d)·(θ' − θ_ema) after it (emaDecay d).
    static func kernelStep(_ k: Coefficients, gradScale: Float, emaDecay: Float = 1) -> ddpm_adamw_step {
        ddpm_adamw_step(step_size: k.stepSize, decay: k.decay, rbias2: k.rBias2, beta1: k.beta1, beta2: k.beta2,
                        one_minus_beta1: k.oneMinusBeta1, one_minus_beta2: k.oneMinusBeta2, epsilon: k.epsilon,
                        grad_scale: gradScale, ema_keep: 1 - emaDecay)
    }

    /// One update of `params` (P,) from `gradScale`·`grads` (P,); the scale carries gradient
    /// clipping so that the gradients are read once.
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

    /// The update with constants `k` of the parameters in `range` only; with `ema`, the EMA step
    /// of decay `emaDecay` on the same range in the same pass (the values EMA.update would give).
    func update(_ params: UnsafeMutablePointer<Float>, grads: UnsafePointer<Float>, gradScale: Float, range: Range<Int>,
                _ k: Coefficients, ema: UnsafeMutablePointer<Float>? = nil, emaDecay: Float = 1) {
        let lo = range.lowerBound
        var step = Self.kernelStep(k, gradScale: gradScale, emaDecay: emaDecay)
        ddpm_adamw_update(&step, params + lo, m.pointer + lo, v.pointer + lo, grads + lo, ema.map { $0 + lo }, Int64(range.count))
    }

    /// What `update` (then an EMA step θ_ema += (1 − d)·(θ' − θ_ema)) would make non-finite:
    /// the first index and which of the values, or nil when every new parameter, moment and
    /// EMA value is finite. Reads what `update` reads, computes the same values, writes nothing,
    /// so that a step can be refused before anything changes. When all are finite, `sizes`
    /// receives Σ(θ' − θ)² and Σθ² (the update against the weights: DiffusionModel+Finite.swift).
    func firstNonFinite(_ params: UnsafePointer<Float>, grads: UnsafePointer<Float>, gradScale: Float,
                        ema: UnsafePointer<Float>, emaDecay: Float,
                        sizes: inout (update: Double, params: Double)) -> (index: Int, value: String)? {
        var k = Self.kernelStep(Coefficients(config, update: step + 1), gradScale: gradScale, emaDecay: emaDecay)
        var (which, value): (Int32, Float) = (0, 0)
        var sums: (Double, Double) = (0, 0)
        let index = withUnsafeMutableBytes(of: &sums) { raw in
            ddpm_adamw_first_nonfinite(&k, params, m.pointer, v.pointer, grads, ema, Int64(m.count), &which, &value,
                                       raw.baseAddress!.assumingMemoryBound(to: Double.self))
        }
        sizes = (sums.0, sums.1)
        guard index >= 0 else { return nil }
        let names = ["the first moment exp_avg", "the second moment exp_avg_sq", "the parameter", "the EMA weight"]
        return (Int(index), "\(names[Int(which)]) (\(value))")
    }

    /// `firstNonFinite` without the sizes.
    func firstNonFinite(_ params: UnsafePointer<Float>, grads: UnsafePointer<Float>, gradScale: Float,
                        ema: UnsafePointer<Float>, emaDecay: Float) -> (index: Int, value: String)? {
        var sizes = (update: 0.0, params: 0.0)
        return firstNonFinite(params, grads: grads, gradScale: gradScale, ema: ema, emaDecay: emaDecay, sizes: &sizes)
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
