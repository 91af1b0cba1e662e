// DDPM ancestral step (Ho et al. 2020, Algorithm 2), also over a strided subset of the
// timesteps (the respaced sampler of Nichol & Dhariwal).
//
// N = number of floats in x; every buffer is (N,).

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

struct DDPMSolver: Solver {
    let schedule: NoiseSchedule
    let variance: ReverseVariance
    /// x̂_0 was clipped or thresholded: form the mean from it rather than from ε̂.
    let clipped: Bool
    let count: Int  // N

    init(schedule: NoiseSchedule, options: SamplerOptions, count: Int) {
        (self.schedule, self.variance, self.count) = (schedule, options.variance, count)
        clipped = options.clipX0 != nil || options.thresholdQuantile != nil
    }

    func addsNoise(_ step: Sampler.Step) -> Bool { step.prevT >= 0 }

    /// From t to prevT (t − 1 for the ordinary step; −1 means to x_0). With α' = ᾱ_t/ᾱ_prev
    /// and β' = 1 − α' (α_t and β_t when prevT = t − 1):
    ///   x_prev = 1/√α'·(x_t − β'/√(1−ᾱ_t)·ε̂) + σ·z,  σ² = β' or β̃' = (1−ᾱ_prev)/(1−ᾱ_t)·β',
    /// and no noise on the last step. With clipping the mean is the posterior mean
    /// c0·x̂_0 + ct·x_t, c0 = √ᾱ_prev·β'/(1−ᾱ_t), ct = √α'·(1−ᾱ_prev)/(1−ᾱ_t) (equal unclipped).
    func update(_ x: UnsafeMutablePointer<Float>, denoised: Denoised, _ step: Sampler.Step, noise: UnsafePointer<Float>?) {
        let (t, prevT) = (step.t, step.prevT)
        // 1. α', β' between the two timesteps.
        let a = schedule.alphaBar[t], aPrev = prevT >= 0 ? schedule.alphaBar[prevT] : 1
        let alpha = a / aPrev, beta = 1 - alpha
        // 2. σ² of the step: β' or β̃'; none on the last step.
        let variance = self.variance == .beta ? beta : (1 - aPrev) / (1 - a) * beta
        let sigma = prevT == -1 ? 0 : Float(variance.squareRoot())
        // 3. the mean, read from x_t before x is overwritten.
        if clipped {
            let c0 = Float(aPrev.squareRoot() * beta / (1 - a)), ct = Float(alpha.squareRoot() * (1 - aPrev) / (1 - a))
            let x0 = denoised.x0
            for i in 0..<count { x[i] = c0 * x0[i] + ct * x[i] }
        } else {
            let (r, k) = (Float(1 / alpha.squareRoot()), Float(beta / (1 - a).squareRoot()))
            let eps = denoised.eps
            for i in 0..<count { x[i] = r * (x[i] - k * eps[i]) }
        }
        // 4. the noise.
        if self.variance == .learned, prevT >= 0, let noise, let v = denoised.variance {
            // log σ² = frac·log β' + (1 − frac)·log β̃', frac = (v + 1)/2, per element.
            let (maxLog, minLog) = (log(beta), log((1 - aPrev) / (1 - a) * beta))
            for i in 0..<count {
                let frac = (Double(v[i]) + 1) / 2
                x[i] += Float(exp(0.5 * (frac * maxLog + (1 - frac) * minLog))) * noise[i]
            }
        } else if sigma > 0, let noise {
            for i in 0..<count { x[i] += sigma * noise[i] }
        }
    }
}
