// DDIM step (Song et al. 2021, eq. 12), deterministic at η = 0.
//
// N = number of floats in x; every buffer is (N,).

struct DDIMSolver: Solver {
    let schedule: NoiseSchedule
    let eta: Float
    let count: Int  // N

    func addsNoise(_ step: Sampler.Step) -> Bool { step.prevT >= 0 && eta > 0 }

    /// From t to prevT (−1 means to x_0, ᾱ = 1):
    ///   x_prev = √ᾱ_prev·x̂_0 + √(1−ᾱ_prev−σ²)·ε̂ + σ·z,
    ///   σ = η·√((1−ᾱ_prev)/(1−ᾱ_t))·√(1−ᾱ_t/ᾱ_prev).
    func update(_ x: UnsafeMutablePointer<Float>, denoised: Denoised, _ step: Sampler.Step, noise: UnsafePointer<Float>?) {
        let (t, prevT) = (step.t, step.prevT)
        // 1. ᾱ at t and prevT, and σ² of the step.
        let a = schedule.alphaBar[t], aPrev = prevT >= 0 ? schedule.alphaBar[prevT] : 1
        let sigma2 = Double(eta * eta) * (1 - aPrev) / (1 - a) * (1 - a / aPrev)
        // 2. the coefficients of x̂_0, of the direction ε̂ and of z.
        let (sqrtPrev, dirCoef, sigma) = (Float(aPrev.squareRoot()), Float(max(1 - aPrev - sigma2, 0).squareRoot()),
                                          Float(sigma2.squareRoot()))
        // 3. x_prev.
        let (x0, eps) = (denoised.x0, denoised.eps)
        for i in 0..<count {
            var v = sqrtPrev * x0[i] + dirCoef * eps[i]
            if sigma > 0, let noise { v += sigma * noise[i] }
            x[i] = v
        }
    }
}
