// Langevin dynamics with the score s_θ(x, t) = ∇ log q_t(x) = −ε̂/√(1−ᾱ_t):
//   x ← x + (δ/2)·s + √δ·z,  z ~ N(0, I)
// at one noise level t. Two step-size rules:
//   annealed (NCSN, Song & Ermon 2019):  δ_t = ε·(1−ᾱ_t)/(1−ᾱ_last), the same for every sample,
//     with ᾱ_last the least noisy level visited (σ_t² = 1−ᾱ_t plays NCSN's σ_i²);
//   corrector (PC, Song et al. 2021):    δ/2 = 2α_t·(r·‖z‖/‖s‖)², α_t = 1 − β_t, with ‖z‖ and
//     ‖s‖ the batch means of the per-sample norms (as score_sde does), so that the step keeps
//     a fixed signal-to-noise ratio r. Per-sample norms would make the step heavy-tailed for
//     small samples (‖s‖ near 0 gives a huge step); the price is that a sample's path depends
//     on the rest of its batch.
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
        let half: Double  // δ/2
        switch rule {
        case .annealed(let epsilon, let lastNoise):
            half = 0.5 * epsilon * (1 - schedule.alphaBar[t]) / lastNoise
        case .signalToNoise(let r):
            // Means over the batch of the per-sample norms ‖z_b‖ and ‖s_b‖ = ‖ε̂_b‖/σ.
            var (zNorm, eNorm) = (0.0, 0.0)
            for b in 0..<B {
                var (zz, ee) = (0.0, 0.0)
                for i in b * S..<(b + 1) * S { zz += Double(z[i] * z[i]); ee += Double(eps[i] * eps[i]) }
                zNorm += zz.squareRoot(); eNorm += ee.squareRoot()
            }
            let scoreNorm = eNorm / sigma
            half = scoreNorm > 0 ? 2 * (1 - schedule.betas[t]) * (r * zNorm / scoreNorm) * (r * zNorm / scoreNorm) : 0
        }
        // x + (δ/2)·s + √δ·z with s = −ε̂/σ.
        let (a, c) = (Float(-half / sigma), Float((2 * half).squareRoot()))
        for i in 0..<B * S { x[i] += a * eps[i] + c * z[i] }
    }
}
