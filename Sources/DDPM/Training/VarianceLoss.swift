// The learned-variance part of Nichol & Dhariwal's hybrid loss L_simple + λ·L_vlb: for the
// sampled t, λ·T·L_t in bits per dimension, with the gradient reaching only the variance
// output v (the mean is stopped, so L_simple alone trains it).
//
//   frac = (v + 1)/2,  log σ² = frac·log β_t + (1 − frac)·log β̃_t   (β̃_0 → β̃_1, the clipped log)
//   t ≥ 1:  L_{t−1} = KL(N(μ̃, β̃_t) ‖ N(μ_θ, σ²)) per dim
//                   = ½(−1 + log σ² − log β̃_t + β̃_t/σ² + (μ̃ − μ_θ)²/σ²),  μ̃ − μ_θ = c0_t·(x_0 − x̂_0)
//           ∂/∂log σ² = ½(1 − β̃_t/σ² − (μ̃ − μ_θ)²/σ²)
//   t = 0:  L_0 = −log N(x_0; x̂_0, σ²) per dim = ½(log 2π + log σ² + (x_0 − x̂_0)²/σ²)
//           ∂/∂log σ² = ½(1 − (x_0 − x̂_0)²/σ²)
//   ∂log σ²/∂v = (log β_t − log β̃_t)/2
// (improved-diffusion scores t = 0 with a discretized decoder for images; here the Gaussian
// density serves every kind of data, as the bound's continuous decoder does.)
//
// B = batch, S = floats per sample; buffers are (B, S).
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

struct VarianceLoss {
    let schedule: NoiseSchedule
    let target: PredictionType
    let lambda: Double

    /// log σ² (the interpolation above) and ∂log σ²/∂v at t.
    func logVariance(_ v: Float, t: Int) -> (Double, Double) {
        let (maxLog, minLog) = (log(schedule.betas[t]), schedule.posteriorLogVarianceClipped[t])
        let frac = (Double(v) + 1) / 2
        return (frac * maxLog + (1 - frac) * minLog, (maxLog - minLog) / 2)
    }

    /// Writes ∂L/∂v to `dvar` and returns λ·T·mean_b L_t(b), the mean over the global batch
    /// (a shard's share). `x0Hat` is scratch.
    func lossAndGradient(dvar: UnsafeMutablePointer<Float>, v: UnsafePointer<Float>, output: UnsafePointer<Float>,
                         x0: UnsafePointer<Float>, xt: UnsafePointer<Float>, t: UnsafePointer<Int32>, batch B: Int,
                         sampleSize S: Int, globalBatch: Int, x0Hat: UnsafeMutablePointer<Float>) throws -> Double {
        let scale = lambda * Double(schedule.count) / log(2.0)  // λ·T, nats → bits
        var total = 0.0
        for b in 0..<B {
            let ti = Int(t[b]), row = b * S
            try schedule.convert(x0Hat + row, output: output + row, from: target, to: .x0, x: xt + row, t: ti, count: S)
            let c0 = ti == 0 ? 1 : schedule.posteriorMeanCoefX0[ti]
            let logQ = schedule.posteriorLogVarianceClipped[ti]
            var sum = 0.0
            for i in row..<row + S {
                let (logVar, dLogVar) = logVariance(v[i], t: ti)
                let invVar = exp(-logVar)
                let d = c0 * (Double(x0[i]) - Double(x0Hat[i]))
                let term: Double, dTerm: Double
                if ti == 0 {
                    term = 0.5 * (log(2 * Double.pi) + logVar + d * d * invVar)
                    dTerm = 0.5 * (1 - d * d * invVar)
                } else {
                    let ratio = exp(logQ - logVar)
                    term = 0.5 * (-1 + logVar - logQ + ratio + d * d * invVar)
                    dTerm = 0.5 * (1 - ratio - d * d * invVar)
                }
                sum += term
                dvar[i] = Float(scale / Double(globalBatch * S) * dTerm * dLogVar)
            }
            total += sum / Double(S)
        }
        return scale * total / Double(globalBatch)
    }
}
