// Langevin dynamics with the score s_θ(x, t) = ∇ log q_t(x) = −ε̂/√(1−ᾱ_t):
//   x ← x + (δ/2)·s + √δ·z,  z ~ N(0, I)
// at one noise level t. Two step-size rules:
//   annealed (NCSN, Song & Ermon 2019):  δ_t = ε·(1−ᾱ_t)/(1−ᾱ_last), the same for every sample,
//     with ᾱ_last the least noisy level visited (σ_t² = 1−ᾱ_t plays NCSN's σ_i²);
//   corrector (PC, Song et al. 2021):    δ/2 = 2α_t·(r·‖z‖/‖s‖)², α_t = 1 − β_t, per sample,
//     so that the step keeps a fixed signal-to-noise ratio r. (Song et al. average the norms
//     over the batch; per sample, a sample's path does not depend on the rest of the batch.)
//
// B = batch, S = floats per sample, N = B·S; every buffer is (N,).

struct LangevinStep {
    enum Rule {
        case annealed(epsilon: Double, lastNoise: Double)  // ε, 1−ᾱ_last
        case signalToNoise(Double)  // r
    }
    let schedule: NoiseSchedule
    let rule: Rule

    /// One Langevin step of x (B, S) at level t, with ε̂ (B, S) at (x, t) and z (B, S).
    func step(_ x: UnsafeMutablePointer<Float>, eps: UnsafePointer<Float>, t: Int, noise z: UnsafePointer<Float>,
              batch B: Int, sampleSize S: Int) {
        let sigma = schedule.sqrtOneMinusAlphaBar[t]  // s = −ε̂/σ
        for b in 0..<B {
            let (xb, eb, zb) = (x + b * S, eps + b * S, z + b * S)
            let half: Double  // δ/2
            switch rule {
            case .annealed(let epsilon, let lastNoise):
                half = 0.5 * epsilon * (1 - schedule.alphaBar[t]) / lastNoise
            case .signalToNoise(let r):
                var (zz, ee) = (0.0, 0.0)
                for i in 0..<S { zz += Double(zb[i] * zb[i]); ee += Double(eb[i] * eb[i]) }
                let scoreNorm2 = ee / (sigma * sigma)  // ‖s‖²
                half = scoreNorm2 > 0 ? 2 * (1 - schedule.betas[t]) * r * r * zz / scoreNorm2 : 0
            }
            // x + (δ/2)·s + √δ·z with s = −ε̂/σ.
            let (a, c) = (Float(-half / sigma), Float((2 * half).squareRoot()))
            for i in 0..<S { xb[i] += a * eb[i] + c * zb[i] }
        }
    }
}
