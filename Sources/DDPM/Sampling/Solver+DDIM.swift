// DDIM step (Song et al. 2021, eq. 12), deterministic at η = 0.
//
// N = number of floats in x; every buffer is (N,).

struct DDIMSolver: Solver {
    let schedule: NoiseSchedule
    let eta: Float

    func needsNoise(t: Int, prevT: Int) -> Bool { prevT >= 0 && eta > 0 }

    /// From t to prevT (−1 means to x_0, ᾱ = 1):
    ///   x_prev = √ᾱ_prev·x̂_0 + √(1−ᾱ_prev−σ²)·ε̂ + σ·z,
    ///   σ = η·√((1−ᾱ_prev)/(1−ᾱ_t))·√(1−ᾱ_t/ᾱ_prev).
    func step(_ x: UnsafeMutablePointer<Float>, denoised: Denoised, t: Int, prevT: Int,
              noise: UnsafePointer<Float>?, count: Int) {
        let a = schedule.alphaBar[t], aPrev = prevT >= 0 ? schedule.alphaBar[prevT] : 1
        let sigma2 = Double(eta * eta) * (1 - aPrev) / (1 - a) * (1 - a / aPrev)
        let (sqrtPrev, dirCoef, sigma) = (Float(aPrev.squareRoot()), Float(max(1 - aPrev - sigma2, 0).squareRoot()),
                                          Float(sigma2.squareRoot()))
        let (x0, eps) = (denoised.x0, denoised.eps)
        for i in 0..<count {
            var v = sqrtPrev * x0[i] + dirCoef * eps[i]
            if sigma > 0, let noise { v += sigma * noise[i] }
            x[i] = v
        }
    }
}
