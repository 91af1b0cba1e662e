// One reverse step: DDPM (Algorithm 2) and DDIM (Song et al. eq. 12), against the
// table formulas re-derived here in Double.
import XCTest
@testable import DDPM

final class StepTests: XCTestCase {
    let schedule = try! NoiseSchedule.linear(steps: 1000)
    let n = 64

    /// The options of one step (method-specific fields of SamplerOptions).
    struct StepOptions {
        var variance: ReverseVariance = .beta
        var eta: Float = 0
        var clipX0: ClosedRange<Float>? = nil
    }

    /// One reverse step t → prevT (default t − 1; −1 means x_0): the first step of a Sampler over
    /// the explicit timesteps [t, prevT] (or [t]), fed `eps` as the model output and `noise` as z
    /// (nil: the sampler's own draw).
    func step(_ method: SamplingMethod, _ s: NoiseSchedule, eps: [Float], xt: [Float], noise: [Float]?, t: Int, prevT: Int?,
              options: StepOptions) throws -> [Float] {
        let prevT = prevT ?? t - 1
        var o = SamplerOptions()
        o.method = method
        o.timesteps = prevT == -1 ? [t] : [t, prevT]
        (o.variance, o.eta, o.clipX0) = (options.variance, options.eta, options.clipX0)
        let sampler = try Sampler(schedule: s, options: o, batch: 1, sampleSize: xt.count)
        var x = xt
        try x.withUnsafeMutableBufferPointer { xp in
            try withOptionalPointer(noise) { z in try sampler.step(output: eps, x: xp.baseAddress!, noise: z) }
        }
        return x
    }

    func ddpm(_ s: NoiseSchedule, eps: [Float], xt: [Float], noise: [Float]?, t: Int, prevT: Int? = nil,
              options: StepOptions = .init()) throws -> [Float] {
        try step(.ddpm, s, eps: eps, xt: xt, noise: noise, t: t, prevT: prevT, options: options)
    }

    func ddim(_ s: NoiseSchedule, eps: [Float], xt: [Float], noise: [Float]?, t: Int, prevT: Int,
              options: StepOptions = .init()) throws -> [Float] {
        try step(.ddim, s, eps: eps, xt: xt, noise: noise, t: t, prevT: prevT, options: options)
    }

    // MARK: - DDPM

    /// prevT = t − 1: x_{t−1} = 1/√α_t·(x_t − β_t/√(1−ᾱ_t)·ε) + σ_t z, σ_t² = β_t or β̃_t.
    func testDDPMStepMatchesTableFormula() throws {
        let eps = normals(n, seed: 1), xt = normals(n, seed: 2).map { 1.5 * $0 }, z = normals(n, seed: 3)
        for variance in [ReverseVariance.beta, .posterior] {
            for t in [1, 10, 500, 999] {
                let got = try ddpm(schedule, eps: eps, xt: xt, noise: z, t: t, options: StepOptions(variance: variance))
                let sigma2 = variance == .beta ? schedule.betas[t] : schedule.posteriorVariance[t]
                let want = (0..<n).map { i in
                    schedule.sqrtRecipAlpha[t] * (Double(xt[i]) - schedule.betas[t] / schedule.sqrtOneMinusAlphaBar[t] * Double(eps[i]))
                        + sigma2.squareRoot() * Double(z[i])
                }
                assertClose(got, want, abs: 2e-5, "DDPM step, \(variance), t = \(t)")
                // Explicit prevT = t − 1 is the same call.
                XCTAssertEqual(try ddpm(schedule, eps: eps, xt: xt, noise: z, t: t, prevT: t - 1, options: StepOptions(variance: variance)),
                               got)
            }
        }
    }

    /// A strided step t → prevT uses α' = ᾱ_t/ᾱ_prev, β' = 1 − α' (respaced DDPM).
    func testDDPMStridedStep() throws {
        let eps = normals(n, seed: 4), xt = normals(n, seed: 5), z = normals(n, seed: 6)
        let (t, p) = (700, 650)
        let alpha = schedule.alphaBar[t] / schedule.alphaBar[p], beta = 1 - alpha
        for variance in [ReverseVariance.beta, .posterior] {
            let sigma2 = variance == .beta ? beta : (1 - schedule.alphaBar[p]) / (1 - schedule.alphaBar[t]) * beta
            let got = try ddpm(schedule, eps: eps, xt: xt, noise: z, t: t, prevT: p, options: StepOptions(variance: variance))
            let want = (0..<n).map { i in
                (Double(xt[i]) - beta / (1 - schedule.alphaBar[t]).squareRoot() * Double(eps[i])) / alpha.squareRoot()
                    + sigma2.squareRoot() * Double(z[i])
            }
            assertClose(got, want, abs: 2e-5, "strided DDPM step \(t) → \(p), \(variance)")
        }
    }

    /// t = 0 (prevT = −1): no noise is added, whatever noise is passed, and the result is x̂_0.
    func testDDPMNoNoiseAtTimestepZero() throws {
        let eps = normals(n, seed: 7), xt = normals(n, seed: 8)
        for variance in [ReverseVariance.beta, .posterior] {
            let options = StepOptions(variance: variance)
            let withNoise = try ddpm(schedule, eps: eps, xt: xt, noise: normals(n, seed: 9), t: 0, options: options)
            let withoutNoise = try ddpm(schedule, eps: eps, xt: xt, noise: nil, t: 0, options: options)
            XCTAssertEqual(withNoise, withoutNoise, "\(variance): noise ignored at t = 0")
            let x0hat = (0..<n).map { (Double(xt[$0]) - schedule.sqrtOneMinusAlphaBar[0] * Double(eps[$0])) / schedule.sqrtAlphaBar[0] }
            assertClose(withNoise, x0hat, abs: 1e-5, "\(variance): t = 0 step returns x̂_0")
        }
    }

    /// With a clip range that never binds, the clipped path (c0·x̂_0 + ct·x_t) equals the ε-form.
    func testDDPMClippingWithHugeRangeEqualsUnclipped() throws {
        let eps = normals(n, seed: 10), xt = normals(n, seed: 11), z = normals(n, seed: 12)
        for variance in [ReverseVariance.beta, .posterior] {
            for (t, p) in [(1, 0), (400, 399), (999, 998), (700, 600), (0, -1)] {
                let plain = try ddpm(schedule, eps: eps, xt: xt, noise: z, t: t, prevT: p, options: StepOptions(variance: variance))
                let clipped = try ddpm(schedule, eps: eps, xt: xt, noise: z, t: t, prevT: p,
                                       options: StepOptions(variance: variance, clipX0: -1e6...1e6))
                // x̂_0 at t = 999 has magnitude ~1/√ᾱ ≈ 160, hence the looser tolerance there.
                assertClose(clipped, plain, abs: t == 999 ? 2e-4 : 2e-5, "clip(huge) vs unclipped, t = \(t) → \(p), \(variance)")
            }
        }
    }

    /// A binding clip: the mean is c0·clip(x̂_0) + ct·x_t.
    func testDDPMClippingBinds() throws {
        let eps = normals(n, seed: 13), xt = normals(n, seed: 14).map { 3 * $0 }
        let t = 300
        let got = try ddpm(schedule, eps: eps, xt: xt, noise: [Float](repeating: 0, count: n), t: t,
                           options: StepOptions(clipX0: -1...1))
        let want = (0..<n).map { i -> Double in
            let x0 = (Double(xt[i]) - schedule.sqrtOneMinusAlphaBar[t] * Double(eps[i])) / schedule.sqrtAlphaBar[t]
            return schedule.posteriorMeanCoefX0[t] * min(max(x0, -1), 1) + schedule.posteriorMeanCoefXt[t] * Double(xt[i])
        }
        assertClose(got, want, abs: 1e-5, "clipped DDPM mean")
    }

    /// The step writes over x_t (the sampler's x is in and out); it must read each x_t[i]
    /// before writing it: the result equals the formula on the original x_t.
    func testDDPMStepInPlace() throws {
        let eps = normals(n, seed: 15), xt = normals(n, seed: 16), z = normals(n, seed: 17)
        let t = 321
        let got = try ddpm(schedule, eps: eps, xt: xt, noise: z, t: t)
        let want = (0..<n).map { i in
            schedule.sqrtRecipAlpha[t] * (Double(xt[i]) - schedule.betas[t] / schedule.sqrtOneMinusAlphaBar[t] * Double(eps[i]))
                + schedule.betas[t].squareRoot() * Double(z[i])
        }
        assertClose(got, want, abs: 2e-5, "in-place DDPM step")
    }

    /// With clipping the step must still read x_t before overwriting it (regression: the mean
    /// was formed from the clipped x̂_0 written over x_t): c0·clip(x̂_0) + ct·x_t + σz.
    func testDDPMClippedStepInPlace() throws {
        let eps = normals(n, seed: 25), xt = normals(n, seed: 26).map { 3 * $0 }, z = normals(n, seed: 27)
        let t = 321
        let got = try ddpm(schedule, eps: eps, xt: xt, noise: z, t: t, options: StepOptions(clipX0: -1...1))
        let want = (0..<n).map { i -> Double in
            let x0 = min(max((Double(xt[i]) - schedule.sqrtOneMinusAlphaBar[t] * Double(eps[i])) / schedule.sqrtAlphaBar[t], -1), 1)
            return schedule.posteriorMeanCoefX0[t] * x0 + schedule.posteriorMeanCoefXt[t] * Double(xt[i])
                + schedule.betas[t].squareRoot() * Double(z[i])
        }
        assertClose(got, want, abs: 2e-5, "in-place clipped DDPM step")
    }

    func testDDPMStepRejectsBadArguments() {
        let v: [Float] = [0, 0]
        assertInvalidArgument("t = T") { try ddpm(schedule, eps: v, xt: v, noise: v, t: 1000) }
        assertInvalidArgument("t = -1") { try ddpm(schedule, eps: v, xt: v, noise: v, t: -1) }
        assertInvalidArgument("prevT = t") { try ddpm(schedule, eps: v, xt: v, noise: v, t: 5, prevT: 5) }
        assertInvalidArgument("prevT < -1") { try ddpm(schedule, eps: v, xt: v, noise: v, t: 5, prevT: -2) }
        assertInvalidArgument("prevT = T") { try ddpm(schedule, eps: v, xt: v, noise: v, t: 5, prevT: 1000) }
    }

    /// Without a given z, a step that needs noise draws it from the sampler's stream (seed 0,
    /// after the ⌈N/4⌉ counters of x_T): the same as passing those numbers explicitly.
    func testStepWithoutNoiseDrawsFromTheSeedStream() throws {
        let eps = normals(8, seed: 40), xt = normals(8, seed: 41)
        var stream = Philox(seed: 0, counter: 2)  // x_T of 8 floats used counters 0 and 1
        var z = [Float](repeating: 0, count: 8)
        z.withUnsafeMutableBufferPointer { stream.fillNormal($0.baseAddress!, count: 8) }
        XCTAssertEqual(try ddpm(schedule, eps: eps, xt: xt, noise: nil, t: 5), try ddpm(schedule, eps: eps, xt: xt, noise: z, t: 5))
        XCTAssertNotEqual(try ddpm(schedule, eps: eps, xt: xt, noise: nil, t: 5),
                          try ddpm(schedule, eps: eps, xt: xt, noise: normals(8, seed: 42), t: 5), "negative control")
    }

    // MARK: - DDIM

    /// η = 0: if ε is the true noise that made x_t from x_0, one step to prevT = −1 returns x_0,
    /// and a step to prevT ≥ 0 lands on √ᾱ_prev x_0 + √(1−ᾱ_prev) ε (the same noise, re-scaled).
    func testDDIMDeterministicReconstruction() throws {
        let x0 = uniforms(n, seed: 18, in: -2...2), eps = normals(n, seed: 19)
        for t in [0, 1, 50, 500, 900] {
            let xt = try schedule.addNoise(x0: x0, noise: eps, t: [Int32](repeating: Int32(t), count: n))
            let back = try ddim(schedule, eps: eps, xt: xt, noise: nil, t: t, prevT: -1)
            // Float error of x_t is amplified by 1/√ᾱ_t.
            let tol = 4e-6 / schedule.sqrtAlphaBar[t]
            assertClose(back, x0, abs: tol, "DDIM η=0 to x_0 from t = \(t)")
            if t >= 1 {
                let p = t / 2
                let mid = try ddim(schedule, eps: eps, xt: xt, noise: nil, t: t, prevT: p)
                let want = (0..<n).map { schedule.sqrtAlphaBar[p] * Double(x0[$0]) + schedule.sqrtOneMinusAlphaBar[p] * Double(eps[$0]) }
                assertClose(mid, want, abs: tol, "DDIM η=0 from t = \(t) to \(p)")
            }
        }
    }

    /// DDIM eq. 12 in full for η in {0, 0.5, 1} on a strided step.
    func testDDIMStepMatchesFormula() throws {
        let eps = normals(n, seed: 20), xt = normals(n, seed: 21), z = normals(n, seed: 22)
        let (t, p) = (600, 580)
        let (a, ap) = (schedule.alphaBar[t], schedule.alphaBar[p])
        for eta in [0.0, 0.5, 1.0] {
            let s2 = eta * eta * (1 - ap) / (1 - a) * (1 - a / ap)
            let got = try ddim(schedule, eps: eps, xt: xt, noise: z, t: t, prevT: p, options: StepOptions(eta: Float(eta)))
            let want = (0..<n).map { i -> Double in
                let x0 = (Double(xt[i]) - (1 - a).squareRoot() * Double(eps[i])) / a.squareRoot()
                return ap.squareRoot() * x0 + (1 - ap - s2).squareRoot() * Double(eps[i]) + s2.squareRoot() * Double(z[i])
            }
            assertClose(got, want, abs: 2e-5, "DDIM step η = \(eta)")
        }
    }

    /// DDIM with η = 1 and prevT = t − 1 is the DDPM step with σ² = β̃ (Song et al. §4.1).
    func testDDIMEtaOneEqualsDDPMPosterior() throws {
        let eps = normals(n, seed: 23), xt = normals(n, seed: 24), z = normals(n, seed: 25)
        for t in [1, 100, 999] {
            let a = try ddim(schedule, eps: eps, xt: xt, noise: z, t: t, prevT: t - 1, options: StepOptions(eta: 1))
            let b = try ddpm(schedule, eps: eps, xt: xt, noise: z, t: t, options: StepOptions(variance: .posterior))
            assertClose(a, b, abs: t == 999 ? 1e-4 : 1e-5, "DDIM(η=1) vs DDPM(β̃) at t = \(t)")
        }
    }

    /// Huge clip range: same as no clipping; with eta = 0 no noise is needed.
    func testDDIMClippingWithHugeRangeEqualsUnclipped() throws {
        let eps = normals(n, seed: 26), xt = normals(n, seed: 27)
        for (t, p) in [(999, 979), (20, -1), (300, 100)] {
            let plain = try ddim(schedule, eps: eps, xt: xt, noise: nil, t: t, prevT: p)
            let clipped = try ddim(schedule, eps: eps, xt: xt, noise: nil, t: t, prevT: p, options: StepOptions(clipX0: -1e6...1e6))
            assertClose(clipped, plain, abs: 1e-4, "DDIM clip(huge) vs unclipped, \(t) → \(p)")
        }
    }

    func testDDIMStepRejectsBadArguments() {
        let v: [Float] = [0, 0]
        assertInvalidArgument("prevT = t") { try ddim(schedule, eps: v, xt: v, noise: v, t: 5, prevT: 5) }
        assertInvalidArgument("t = T") { try ddim(schedule, eps: v, xt: v, noise: v, t: 1000, prevT: 5) }
        assertInvalidArgument("eta > 1") { try ddim(schedule, eps: v, xt: v, noise: v, t: 5, prevT: 4, options: StepOptions(eta: 1.5)) }
        assertInvalidArgument("eta < 0") { try ddim(schedule, eps: v, xt: v, noise: v, t: 5, prevT: 4, options: StepOptions(eta: -0.1)) }
        assertInvalidArgument("eta NaN") { try ddim(schedule, eps: v, xt: v, noise: v, t: 5, prevT: 4, options: StepOptions(eta: .nan)) }
    }

    // MARK: - Timesteps

    func timesteps(_ s: NoiseSchedule, _ steps: Int) throws -> [Int] {
        var o = SamplerOptions()
        o.steps = steps
        return try o.samplingTimesteps(s)
    }

    func testTrailingTimesteps() throws {
        for (T, S) in [(1000, 50), (1000, 1000), (1000, 1), (1000, 7), (1000, 999), (100, 30), (1, 1)] {
            let s = try NoiseSchedule(betas: [Double](repeating: 0.01, count: T))
            let ts = try timesteps(s, S)
            XCTAssertEqual(ts.count, S, "T = \(T), S = \(S): count")
            XCTAssertEqual(ts.first, T - 1, "T = \(T), S = \(S): starts at T − 1")
            XCTAssertTrue(zip(ts, ts.dropFirst()).allSatisfy { $0 > $1 }, "T = \(T), S = \(S): strictly decreasing")
            XCTAssertGreaterThanOrEqual(ts.last!, 0, "T = \(T), S = \(S): last ≥ 0")
            XCTAssertEqual(ts, trailingByCounting(T: T, S: S), "T = \(T), S = \(S): trailing spacing")
        }
        XCTAssertEqual(try timesteps(schedule, 1000), Array((0..<1000).reversed()), "S = T visits every step")
        XCTAssertEqual(Array(try timesteps(schedule, 50).prefix(3)), [999, 979, 959])
        XCTAssertEqual(try timesteps(schedule, 50).last, 19)
        // By hand: T = 10, S = 3: ⌊30/3⌋ − 1 = 9, ⌊20/3⌋ − 1 = 5, ⌊10/3⌋ − 1 = 2.
        XCTAssertEqual(try timesteps(try NoiseSchedule(betas: [Double](repeating: 0.01, count: 10)), 3), [9, 5, 2])
        assertInvalidArgument("S = 0") { try schedule.timesteps(0) }
        assertInvalidArgument("S > T") { try timesteps(schedule, 1001) }
        assertInvalidArgument("S < 0") { try timesteps(schedule, -1) }
        // Explicit timesteps: used as given, checked.
        var o = SamplerOptions()
        o.timesteps = [900, 500, 3]
        XCTAssertEqual(try o.samplingTimesteps(schedule), [900, 500, 3])
        for bad in [[], [5, 5], [5, 7], [1000], [-1]] as [[Int]] {
            o.timesteps = bad
            assertInvalidArgument("timesteps \(bad)") { try o.samplingTimesteps(schedule) }
        }
    }
}
