// Exponential moving average of the weights, used for sampling:
//   θ_ema ← d_n·θ_ema + (1 − d_n)·θ,   d_n = min(d, (1 + n)/(10 + n))   P = number of parameters.
// The warm-up d_n (diffusers' EMAModel default) lets the average forget the random initial
// weights early: with a constant d = 0.999, 0.999^2000 ≈ 13% of them would remain after 2000 steps.
// The loop is a C kernel (Sources/DDPMKernels/optimizer.inc); AdamW.update can do this step in
// its own pass (`ema:`).
import DDPMKernels

enum EMA {
    /// d_n for the update that follows `step` completed updates (n = step).
    static func decay(_ d: Float, afterSteps n: Int) -> Float {
        min(d, Float(1 + n) / Float(10 + n))
    }

    /// θ_ema += (1 − d)·(θ − θ_ema)
    static func update(_ ema: UnsafeMutablePointer<Float>, params: UnsafePointer<Float>, count: Int, decay: Float) {
        ddpm_ema_update(ema, params, 1 - decay, Int64(count))
    }
}
