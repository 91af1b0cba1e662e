// DPM-Solver++ (Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion
// Probabilistic Models"), multistep, in data-prediction form: it integrates the diffusion
// ODE (or, for the SDE variant, the SDE) in λ = log(α/σ), α_t = √ᾱ_t, σ_t = √(1−ᾱ_t),
// using the x̂_0 of the current and earlier steps (Algorithm 2 of the paper).
//
// From s = t_{i−1} to t = t_i, h = λ_t − λ_s; m0, m1, m2 = x̂_0 at s and the two steps before,
// h_0 = λ_s − λ_{s'}, h_1 = λ_{s'} − λ_{s''}, r0 = h_0/h, r1 = h_1/h:
//   1st order (= DDIM):  x_t = (σ_t/σ_s)·x − α_t(e^{−h} − 1)·m0
//   2M:  D0 = m0, D1 = (m0 − m1)/r0,
//        x_t = (σ_t/σ_s)·x − α_t(e^{−h} − 1)·D0 − ½α_t(e^{−h} − 1)·D1
//   3M:  D1_0 = (m0 − m1)/r0, D1_1 = (m1 − m2)/r1,
//        D1 = D1_0 + r0/(r0 + r1)·(D1_0 − D1_1), D2 = (D1_0 − D1_1)/(r0 + r1),
//        x_t = (σ_t/σ_s)·x − α_t(e^{−h} − 1)·D0 + α_t((e^{−h} − 1)/h + 1)·D1
//              − α_t((e^{−h} − 1 + h)/h² − ½)·D2
//   SDE-DPM-Solver++ (1st / 2M):
//        x_t = (σ_t/σ_s)e^{−h}·x + α_t(1 − e^{−2h})·(D0 [+ ½D1]) + σ_t√(1 − e^{−2h})·z
// The last step goes to x_0 (α = 1, σ = 0, λ = ∞), where every order gives x̂_0: it is taken
// at first order. With lowerOrderFinal and fewer than 15 steps, the step before it is at
// most second order (diffusers' rule). The first steps use the order the history allows.
//
// N = number of floats in x; every buffer is (N,).
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

final class DPMSolverPP: Solver {
    let schedule: NoiseSchedule
    let order: Int
    let stochastic: Bool
    let timesteps: [Int]
    let lowerOrderFinal: Bool
    let m1, m2: Buffer<Float>  // (N,) x̂_0 of the previous two steps
    var lambda1 = 0.0, lambda2 = 0.0  // λ at those steps
    var taken = 0  // steps so far

    init(schedule: NoiseSchedule, order: Int, stochastic: Bool, timesteps: [Int], lowerOrderFinal: Bool, count: Int) throws {
        (self.schedule, self.order, self.stochastic) = (schedule, order, stochastic)
        (self.timesteps, self.lowerOrderFinal) = (timesteps, lowerOrderFinal)
        m1 = try Buffer(count: count)
        m2 = try Buffer(count: order >= 3 ? count : 0)
    }

    func needsNoise(t: Int, prevT: Int) -> Bool { stochastic && prevT >= 0 }

    /// λ_t = log α_t − log σ_t.
    func lambda(_ t: Int) -> Double { log(schedule.sqrtAlphaBar[t]) - log(schedule.sqrtOneMinusAlphaBar[t]) }

    /// The order of step `i`: limited by the history and, near the end, by the rules above.
    func effectiveOrder(_ i: Int) -> Int {
        let last = i == timesteps.count - 1
        let secondLast = i == timesteps.count - 2 && lowerOrderFinal && timesteps.count < 15
        return min(order, i + 1, last ? 1 : (secondLast ? 2 : order))
    }

    func step(_ x: UnsafeMutablePointer<Float>, denoised: Denoised, t s: Int, prevT t: Int,
              noise: UnsafePointer<Float>?, count: Int) {
        let m0 = denoised.x0
        let k = effectiveOrder(taken)
        let lambdaS = lambda(s)
        if t < 0 {
            x.update(from: m0, count: count)  // α = 1, σ = 0: x_0 = x̂_0
        } else {
            let (alphaT, sigmaT, sigmaS) = (schedule.sqrtAlphaBar[t], schedule.sqrtOneMinusAlphaBar[t], schedule.sqrtOneMinusAlphaBar[s])
            let h = lambda(t) - lambdaS
            let em1 = expm1(-h)  // e^{−h} − 1
            let p1 = m1.pointer
            if stochastic {
                let decay = Float(sigmaT / sigmaS * exp(-h)), gain = alphaT * -expm1(-2 * h)
                let z = noise!, zScale = Float(sigmaT * (-expm1(-2 * h)).squareRoot())
                let (c0, c1) = k == 1 ? (Float(gain), Float(0)) : secondOrder(gain: gain, h0: lambdaS - lambda1, h: h)
                for i in 0..<count {
                    let d1 = k == 1 ? 0 : m0[i] - p1[i]
                    x[i] = decay * x[i] + c0 * m0[i] + c1 * d1 + zScale * z[i]
                }
            } else if k == 1 {
                let (a, b) = (Float(sigmaT / sigmaS), Float(-alphaT * em1))
                for i in 0..<count { x[i] = a * x[i] + b * m0[i] }
            } else if k == 2 {
                let a = Float(sigmaT / sigmaS)
                let (c0, c1) = secondOrder(gain: -alphaT * em1, h0: lambdaS - lambda1, h: h)
                for i in 0..<count { x[i] = a * x[i] + c0 * m0[i] + c1 * (m0[i] - p1[i]) }
            } else {
                let (r0, r1) = ((lambdaS - lambda1) / h, (lambda1 - lambda2) / h)
                // x_t = a·x − α(e^{−h}−1)·D0 + α((e^{−h}−1)/h + 1)·D1 − α((e^{−h}−1+h)/h² − ½)·D2, with
                // D1_0 = (m0−m1)/r0, D1_1 = (m1−m2)/r1, D1 = D1_0 + r0/(r0+r1)(D1_0−D1_1), D2 = (D1_0−D1_1)/(r0+r1).
                let a = Float(sigmaT / sigmaS)
                let (cD0, cD1, cD2) = (-alphaT * em1, alphaT * (em1 / h + 1), -alphaT * ((em1 + h) / (h * h) - 0.5))
                let (w10, w11) = (1 / r0, 1 / r1)
                let (u, v) = (r0 / (r0 + r1), 1 / (r0 + r1))
                for i in 0..<count {
                    let d10 = Double(m0[i] - p1[i]) * w10, d11 = Double(p1[i] - m2.pointer[i]) * w11
                    let d1 = d10 + u * (d10 - d11), d2 = (d10 - d11) * v
                    x[i] = a * x[i] + Float(cD0 * Double(m0[i]) + cD1 * d1 + cD2 * d2)
                }
            }
        }
        // Remember x̂_0 and λ of this step for the next ones.
        if order >= 3 { m2.pointer.update(from: m1.pointer, count: count); lambda2 = lambda1 }
        m1.pointer.update(from: m0, count: count)
        lambda1 = lambdaS
        taken += 1
    }

    /// Coefficients (c0, c1) of m0 and (m0 − m1) for the 2M update with D1 = (m0 − m1)/r0,
    /// r0 = h0/h: c0·m0 + c1·(m0 − m1) = gain·(D0 + ½D1).
    func secondOrder(gain: Double, h0: Double, h: Double) -> (Float, Float) {
        let r0 = h0 / h
        return (Float(gain), Float(gain * 0.5 / r0))
    }
}
