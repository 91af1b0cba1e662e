// DPM-Solver++ (Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion
// Probabilistic Models"), multistep, in data-prediction form: it integrates the diffusion
// ODE (or, for the SDE variant, the SDE) in λ = log(α/σ), α_t = √ᾱ_t, σ_t = √(1−ᾱ_t),
// using the x̂_0 of the current and earlier steps (Algorithm 2 of the paper). One function
// per order, as diffusers' DPMSolverMultistepScheduler writes them.
//
// Names (diffusers'): a step goes from s₀ (the timestep of x, where the model gave m0 = x̂_0)
// to t (the next timestep); s₁, s₂ are the timesteps of the two steps before, where the model
// gave m1, m2. Then
//   h = λ_t − λ_s₀,  h_0 = λ_s₀ − λ_s₁,  h_1 = λ_s₁ − λ_s₂,  r0 = h_0/h,  r1 = h_1/h,
//   1st order (= DDIM):  x_t = (σ_t/σ_s₀)·x − α_t(e^{−h} − 1)·D0,                 D0 = m0
//   2M:                  x_t = (σ_t/σ_s₀)·x − α_t(e^{−h} − 1)·(D0 + ½D1),         D1 = (m0 − m1)/r0
//   3M:                  x_t = (σ_t/σ_s₀)·x − α_t(e^{−h} − 1)·D0 + α_t((e^{−h} − 1)/h + 1)·D1
//                              − α_t((e^{−h} − 1 + h)/h² − ½)·D2,  with
//                        D1_0 = (m0 − m1)/r0, D1_1 = (m1 − m2)/r1,
//                        D1 = D1_0 + r0/(r0 + r1)·(D1_0 − D1_1), D2 = (D1_0 − D1_1)/(r0 + r1)
//   SDE 1st / 2M:        x_t = (σ_t/σ_s₀)e^{−h}·x + α_t(1 − e^{−2h})·(D0 [+ ½D1]) + σ_t√(1 − e^{−2h})·z
// The last step goes to x_0 (α = 1, σ = 0, λ = ∞), where every order gives x̂_0: it is taken
// at first order. With lowerOrderFinal and fewer than 15 steps, the step before it is at
// most second order (diffusers' rule). The first steps use the order the history allows.
// Without setAlphaToOne the last step goes to ᾱ_0 instead (diffusers' final_sigmas_type
// "sigma_min"), at first order only with lowerOrderFinal and fewer than 15 steps.
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
    /// The last step goes to x_0 (true) or to ᾱ_0, timestep 0's level (false).
    let setAlphaToOne: Bool
    let count: Int  // N
    let m1, m2: Buffer<Float>  // (N,) x̂_0 at s₁ and s₂, the timesteps of the previous two steps
    var s1 = 0, s2 = 0
    var taken = 0  // steps so far

    init(schedule: NoiseSchedule, order: Int, stochastic: Bool, timesteps: [Int], lowerOrderFinal: Bool,
         setAlphaToOne: Bool, count: Int) throws {
        (self.schedule, self.order, self.stochastic) = (schedule, order, stochastic)
        (self.timesteps, self.lowerOrderFinal, self.count) = (timesteps, lowerOrderFinal, count)
        self.setAlphaToOne = setAlphaToOne
        m1 = try Buffer(count: count)
        m2 = try Buffer(count: order >= 3 ? count : 0)
    }

    func addsNoise(_ step: Sampler.Step) -> Bool { stochastic && (step.prevT >= 0 || !setAlphaToOne) }

    /// α_t = √ᾱ_t.
    func alpha(_ t: Int) -> Double { schedule.sqrtAlphaBar[t] }
    /// σ_t = √(1−ᾱ_t).
    func sigma(_ t: Int) -> Double { schedule.sqrtOneMinusAlphaBar[t] }
    /// λ_t = log α_t − log σ_t.
    func lambda(_ t: Int) -> Double { log(schedule.sqrtAlphaBar[t]) - log(schedule.sqrtOneMinusAlphaBar[t]) }

    /// The order of step `i`: limited by the history and, near the end, by the rules above.
    func effectiveOrder(_ i: Int) -> Int {
        let few = lowerOrderFinal && timesteps.count < 15
        let firstOrderLast = i == timesteps.count - 1 && (setAlphaToOne || few)
        let secondLast = i == timesteps.count - 2 && few
        return min(order, i + 1, firstOrderLast ? 1 : (secondLast ? 2 : order))
    }

    /// The step from s₀ = step.t to t = step.prevT with m0 = x̂_0 at (x, s₀), at the order the
    /// history allows; then m0 joins the history.
    func update(_ x: UnsafeMutablePointer<Float>, denoised: Denoised, _ step: Sampler.Step, noise: UnsafePointer<Float>?) {
        // The target: the next timestep, or after the last one x_0 (−1) or timestep 0's level.
        let (s0, t, m0) = (step.t, step.prevT >= 0 || setAlphaToOne ? step.prevT : 0, denoised.x0)
        if t < 0 {
            x.update(from: m0, count: count)  // to x_0: α_t = 1, σ_t = 0, so x_0 = x̂_0 at every order
        } else if t == s0 {
            // already at ᾱ_0 (h = 0): x stays
        } else {
            switch (stochastic, effectiveOrder(taken)) {
            case (false, 1): firstOrderUpdate(x, m0: m0, s0: s0, t: t)
            case (false, 2): secondOrderUpdate(x, m0: m0, s0: s0, t: t)
            case (false, _): thirdOrderUpdate(x, m0: m0, s0: s0, t: t)
            case (true, 1): sdeFirstOrderUpdate(x, m0: m0, s0: s0, t: t, noise: noise!)
            case (true, _): sdeSecondOrderUpdate(x, m0: m0, s0: s0, t: t, noise: noise!)
            }
        }
        // m0 at s₀ becomes m1 at s₁ for the next step (and m1 at s₁ becomes m2 at s₂).
        if order >= 3 { m2.pointer.update(from: m1.pointer, count: count); s2 = s1 }
        m1.pointer.update(from: m0, count: count)
        s1 = s0
        taken += 1
    }

    // MARK: - DPM-Solver++ (the ODE)

    /// 1st order (= DDIM with η = 0): x_t = (σ_t/σ_s₀)·x − α_t(e^{−h} − 1)·m0.
    func firstOrderUpdate(_ x: UnsafeMutablePointer<Float>, m0: UnsafePointer<Float>, s0: Int, t: Int) {
        // 1. h = λ_t − λ_s₀.
        let h = lambda(t) - lambda(s0)
        // 2. the coefficients of x and of D0 = m0.
        let (a, b) = (Float(sigma(t) / sigma(s0)), Float(-alpha(t) * expm1(-h)))
        // 3. x_t.
        for i in 0..<count { x[i] = a * x[i] + b * m0[i] }
    }

    /// 2M: x_t = (σ_t/σ_s₀)·x − α_t(e^{−h} − 1)·(D0 + ½D1), D0 = m0, D1 = (m0 − m1)/r0.
    func secondOrderUpdate(_ x: UnsafeMutablePointer<Float>, m0: UnsafePointer<Float>, s0: Int, t: Int) {
        // 1. h = λ_t − λ_s₀ and r0 = h_0/h, h_0 = λ_s₀ − λ_s₁.
        let (lambdaT, lambdaS0, lambdaS1) = (lambda(t), lambda(s0), lambda(s1))
        let h = lambdaT - lambdaS0
        let r0 = (lambdaS0 - lambdaS1) / h
        // 2. written as a·x + c0·m0 + c1·(m0 − m1): c0 = −α_t(e^{−h} − 1), c1 = c0/(2r0).
        let gain = -alpha(t) * expm1(-h)
        let (a, c0, c1) = (Float(sigma(t) / sigma(s0)), Float(gain), Float(gain * 0.5 / r0))
        // 3. x_t.
        let m1 = self.m1.pointer
        for i in 0..<count { x[i] = a * x[i] + c0 * m0[i] + c1 * (m0[i] - m1[i]) }
    }

    /// 3M: x_t = (σ_t/σ_s₀)·x − α_t(e^{−h} − 1)·D0 + α_t((e^{−h} − 1)/h + 1)·D1 − α_t((e^{−h} − 1 + h)/h² − ½)·D2.
    func thirdOrderUpdate(_ x: UnsafeMutablePointer<Float>, m0: UnsafePointer<Float>, s0: Int, t: Int) {
        // 1. h = λ_t − λ_s₀, r0 = h_0/h and r1 = h_1/h, h_0 = λ_s₀ − λ_s₁, h_1 = λ_s₁ − λ_s₂.
        let (lambdaT, lambdaS0, lambdaS1, lambdaS2) = (lambda(t), lambda(s0), lambda(s1), lambda(s2))
        let h = lambdaT - lambdaS0
        let (r0, r1) = ((lambdaS0 - lambdaS1) / h, (lambdaS1 - lambdaS2) / h)
        // 2. the coefficients of x, D0, D1 and D2, and the weights that form
        //    D1_0 = (m0 − m1)/r0, D1_1 = (m1 − m2)/r1, D1 = D1_0 + u·(D1_0 − D1_1), D2 = v·(D1_0 − D1_1).
        let em1 = expm1(-h)  // e^{−h} − 1
        let alphaT = alpha(t)
        let a = Float(sigma(t) / sigma(s0))
        let (cD0, cD1, cD2) = (-alphaT * em1, alphaT * (em1 / h + 1), -alphaT * ((em1 + h) / (h * h) - 0.5))
        let (w10, w11) = (1 / r0, 1 / r1)
        let (u, v) = (r0 / (r0 + r1), 1 / (r0 + r1))
        // 3. x_t, the differences in Double.
        let (m1, m2) = (self.m1.pointer, self.m2.pointer)
        for i in 0..<count {
            let d10 = Double(m0[i] - m1[i]) * w10, d11 = Double(m1[i] - m2[i]) * w11
            let d1 = d10 + u * (d10 - d11), d2 = (d10 - d11) * v
            x[i] = a * x[i] + Float(cD0 * Double(m0[i]) + cD1 * d1 + cD2 * d2)
        }
    }

    // MARK: - SDE-DPM-Solver++

    /// The factors of x and z, and the gain of D0 + ½D1, of an SDE step from s₀ to t:
    /// (σ_t/σ_s₀)e^{−h}, σ_t√(1 − e^{−2h}) and α_t(1 − e^{−2h}), h = λ_t − λ_s₀.
    func sdeFactors(s0: Int, t: Int) -> (decay: Float, noiseScale: Float, gain: Double, h: Double) {
        let h = lambda(t) - lambda(s0)
        let oneMinusE2h = -expm1(-2 * h)  // 1 − e^{−2h}
        return (Float(sigma(t) / sigma(s0) * exp(-h)), Float(sigma(t) * oneMinusE2h.squareRoot()), alpha(t) * oneMinusE2h, h)
    }

    /// SDE 1st order: x_t = (σ_t/σ_s₀)e^{−h}·x + α_t(1 − e^{−2h})·m0 + σ_t√(1 − e^{−2h})·z.
    func sdeFirstOrderUpdate(_ x: UnsafeMutablePointer<Float>, m0: UnsafePointer<Float>, s0: Int, t: Int,
                             noise z: UnsafePointer<Float>) {
        // 1. the factors of x, D0 = m0 and z.
        let (decay, noiseScale, gain, _) = sdeFactors(s0: s0, t: t)
        let c0 = Float(gain)
        // 2. x_t.
        for i in 0..<count { x[i] = decay * x[i] + c0 * m0[i] + noiseScale * z[i] }
    }

    /// SDE 2M: x_t = (σ_t/σ_s₀)e^{−h}·x + α_t(1 − e^{−2h})·(D0 + ½D1) + σ_t√(1 − e^{−2h})·z, D1 = (m0 − m1)/r0.
    func sdeSecondOrderUpdate(_ x: UnsafeMutablePointer<Float>, m0: UnsafePointer<Float>, s0: Int, t: Int,
                              noise z: UnsafePointer<Float>) {
        // 1. the factors of x and z; r0 = h_0/h, h_0 = λ_s₀ − λ_s₁.
        let (decay, noiseScale, gain, h) = sdeFactors(s0: s0, t: t)
        let r0 = (lambda(s0) - lambda(s1)) / h
        // 2. the gain written as c0·m0 + c1·(m0 − m1): c0 = α_t(1 − e^{−2h}), c1 = c0/(2r0).
        let (c0, c1) = (Float(gain), Float(gain * 0.5 / r0))
        // 3. x_t.
        let m1 = self.m1.pointer
        for i in 0..<count { x[i] = decay * x[i] + c0 * m0[i] + c1 * (m0[i] - m1[i]) + noiseScale * z[i] }
    }
}
