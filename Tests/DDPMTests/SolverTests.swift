// The solvers of issue 9 against independent float64 recursions of the same methods at the
// same timesteps, driven by the exact ε* of Gaussian data x_0 ~ N(μ, diag σ²):
//   ε*(x, t) = √(1−ᾱ)(x − √ᾱ μ)/(ᾱσ² + 1 − ᾱ),  x̂_0*(x, t) = (x − √(1−ᾱ) ε*)/√ᾱ.
// The engine is stepped from outside with the test's own noise, so both sides see the same z.
// Also: diffusers' spacings, the steps-vs-error table of DDIM against DPM-Solver++ 2M, and
// Langevin dynamics reaching the data variance.
import XCTest
@testable import DDPM

final class SolverTests: XCTestCase {
    let schedule = try! NoiseSchedule.linear(steps: 1000)
    let mu: [Double] = [1, -2, 0.5, 3]
    let sigma: [Double] = [0.5, 1, 2, 0.1]
    var D: Int { mu.count }

    // MARK: - The exact model, in Double

    func eps(_ x: [Double], _ t: Int) -> [Double] {
        let a = schedule.alphaBar[t]
        return x.indices.map { i in
            let d = i % D
            return (1 - a).squareRoot() * (x[i] - a.squareRoot() * mu[d]) / (a * sigma[d] * sigma[d] + 1 - a)
        }
    }

    func x0(_ x: [Double], _ t: Int) -> [Double] {
        let e = eps(x, t)
        return x.indices.map { (x[$0] - schedule.sqrtOneMinusAlphaBar[t] * e[$0]) / schedule.sqrtAlphaBar[t] }
    }

    // MARK: - Reference recursions (written from the papers' formulas)

    /// DPM-Solver++ (Lu et al. 2022) multistep, order k ≤ 3, ODE or SDE, as diffusers runs it.
    func referenceDPMSolver(_ ts: [Int], order: Int, sde: Bool, lowerOrderFinal: Bool, x start: [Double],
                            noise: [[Double]]) -> [Double] {
        func alpha(_ t: Int) -> Double { t < 0 ? 1 : schedule.sqrtAlphaBar[t] }
        func sig(_ t: Int) -> Double { t < 0 ? 0 : schedule.sqrtOneMinusAlphaBar[t] }
        func lam(_ t: Int) -> Double { log(alpha(t)) - log(sig(t)) }
        var x = start
        var ms: [[Double]] = [], lams: [Double] = []  // history, newest last
        for (i, s) in ts.enumerated() {
            let t = i + 1 < ts.count ? ts[i + 1] : -1
            let m0 = x0(x, s)
            ms.append(m0); lams.append(lam(s))
            var k = min(order, i + 1)
            if i == ts.count - 1 { k = 1 }
            if i == ts.count - 2 && lowerOrderFinal && ts.count < 15 { k = min(k, 2) }
            if t < 0 { x = m0; continue }
            let h = lam(t) - lam(s)
            let (at, st, ss) = (alpha(t), sig(t), sig(s))
            var D0 = m0, D1 = [Double](repeating: 0, count: x.count), D2 = D1
            if k >= 2 {
                let r0 = (lams[i] - lams[i - 1]) / h
                let d10 = (0..<x.count).map { (ms[i][$0] - ms[i - 1][$0]) / r0 }
                if k == 2 { D1 = d10 } else {
                    let r1 = (lams[i - 1] - lams[i - 2]) / h
                    let d11 = (0..<x.count).map { (ms[i - 1][$0] - ms[i - 2][$0]) / r1 }
                    D1 = (0..<x.count).map { d10[$0] + r0 / (r0 + r1) * (d10[$0] - d11[$0]) }
                    D2 = (0..<x.count).map { (d10[$0] - d11[$0]) / (r0 + r1) }
                }
            }
            if sde {
                let z = noise[i]
                x = (0..<x.count).map { j in
                    st / ss * exp(-h) * x[j] + at * (1 - exp(-2 * h)) * (D0[j] + 0.5 * D1[j]) + st * (1 - exp(-2 * h)).squareRoot() * z[j]
                }
            } else if k <= 2 {
                x = (0..<x.count).map { j in st / ss * x[j] - at * (exp(-h) - 1) * (D0[j] + 0.5 * D1[j]) }
            } else {
                x = (0..<x.count).map { j in
                    st / ss * x[j] - at * (exp(-h) - 1) * D0[j] + at * ((exp(-h) - 1) / h + 1) * D1[j]
                        - at * ((exp(-h) - 1 + h) / (h * h) - 0.5) * D2[j]
                }
            }
            _ = D2
        }
        return x
    }

    /// Langevin x ← x + (δ/2)s + √δ z, s = −ε*/√(1−ᾱ), with NCSN's δ_t = ε(1−ᾱ_t)/(1−ᾱ_last)
    /// (annealed) or Song et al.'s δ/2 = 2(1−β_t)(r‖z‖/‖s‖)², norms averaged over the batch (corrector).
    func langevin(_ x: inout [Double], t: Int, z: [Double], annealed: (eps: Double, last: Double)?, snr: Double) {
        let e = eps(x, t), sd = schedule.sqrtOneMinusAlphaBar[t]
        let score = e.map { -$0 / sd }
        let B = x.count / D
        let half: Double
        if let annealed {
            half = 0.5 * annealed.eps * (1 - schedule.alphaBar[t]) / annealed.last
        } else {
            func meanNorm(_ v: [Double]) -> Double {
                (0..<B).map { b in (b * D..<(b + 1) * D).map { v[$0] * v[$0] }.reduce(0, +).squareRoot() }.reduce(0, +) / Double(B)
            }
            let ratio = snr * meanNorm(z) / meanNorm(score)
            half = 2 * (1 - schedule.betas[t]) * ratio * ratio
        }
        for j in x.indices { x[j] += half * score[j] + (2 * half).squareRoot() * z[j] }
    }

    /// The DDPM ancestral step t → p with σ² = β'.
    func ddpmStep(_ x: [Double], t: Int, p: Int, z: [Double]?) -> [Double] {
        let a = schedule.alphaBar[t], ap = p >= 0 ? schedule.alphaBar[p] : 1
        let alpha = a / ap, beta = 1 - alpha
        let e = eps(x, t)
        return x.indices.map { j in
            (x[j] - beta / (1 - a).squareRoot() * e[j]) / alpha.squareRoot() + (p >= 0 ? beta.squareRoot() * z![j] : 0)
        }
    }

    // MARK: - Driving the engine from outside

    /// Runs the engine's Sampler from `start` with the exact ε*, feeding noise[k] at the k-th
    /// noisy update; returns the result and the noise it used.
    func runEngine(_ options: SamplerOptions, start: [Float], noiseSeed: UInt64 = 77) throws -> (x: [Float], noise: [[Double]]) {
        let sampler = try Sampler(schedule: schedule, options: options, batch: start.count / D, sampleSize: D)
        var x = start, used: [[Double]] = []
        var k = 0
        while sampler.timestep >= 0 {
            let t = sampler.timestep
            let out = eps(x.map(Double.init), t).map(Float.init)
            let z = normals(x.count, seed: noiseSeed &+ UInt64(k))
            k += 1
            used.append(z.map(Double.init))
            try x.withUnsafeMutableBufferPointer { try sampler.step(output: out, x: $0.baseAddress!, noise: z) }
        }
        return (x, used)
    }

    // MARK: - Solvers against the recursions

    func testDPMSolverMatchesFloat64Recursion() throws {
        let start = normals(8 * D, seed: 1)
        for (order, sde) in [(1, false), (2, false), (3, false), (1, true), (2, true)] {
            for steps in [5, 10, 20] {
                for spacing in TimestepSpacing.allCases {
                    var o = SamplerOptions()
                    (o.method, o.solverOrder, o.steps, o.spacing) = (sde ? .sdeDPMSolverPP : .dpmSolverPP, order, steps, spacing)
                    let (got, noise) = try runEngine(o, start: start)
                    let ts = try o.samplingTimesteps(schedule)
                    // The engine draws z only on noisy steps; the recursion's i-th step takes the i-th z.
                    let want = referenceDPMSolver(ts, order: order, sde: sde, lowerOrderFinal: true,
                                                  x: start.map(Double.init), noise: noise)
                    assertClose(got, want, abs: 2e-4 * (sde ? 5 : 1),
                                "DPM-Solver++ order \(order)\(sde ? " SDE" : ""), \(steps) \(spacing) steps")
                }
            }
        }
    }

    /// Order 1 is DDIM (η = 0) at the same timesteps (the paper's remark), to float precision.
    func testFirstOrderDPMSolverIsDDIM() throws {
        let start = normals(8 * D, seed: 2)
        var o = SamplerOptions()
        (o.method, o.solverOrder, o.steps) = (.dpmSolverPP, 1, 10)
        let dpm = try runEngine(o, start: start).x
        o.method = .ddim
        assertClose(dpm, try runEngine(o, start: start).x, abs: 1e-4, "DPM-Solver++(1) = DDIM")
    }

    func testLangevinAndPCMatchFloat64Recursion() throws {
        let start = normals(6 * D, seed: 3)
        var o = SamplerOptions()
        (o.method, o.steps, o.correctorSteps, o.spacing) = (.langevin, 8, 3, .linspace)
        let (got, noise) = try runEngine(o, start: start)
        let ts = try o.samplingTimesteps(schedule)
        var x = start.map(Double.init), k = 0
        for t in ts {
            for _ in 0..<3 {
                langevin(&x, t: t, z: noise[k], annealed: (Double(o.langevinStepSize), 1 - schedule.alphaBar[ts.last!]), snr: 0)
                k += 1
            }
        }
        assertClose(got, x, abs: 2e-4, "annealed Langevin")

        (o.method, o.steps, o.correctorSteps, o.spacing) = (.predictorCorrector, 6, 2, .default)
        let pc = try runEngine(o, start: start)
        let pts = try o.samplingTimesteps(schedule)
        x = start.map(Double.init); k = 0
        for (i, t) in pts.enumerated() {
            for _ in 0..<2 { langevin(&x, t: t, z: pc.noise[k], annealed: nil, snr: 0.16); k += 1 }
            let p = i + 1 < pts.count ? pts[i + 1] : -1
            x = ddpmStep(x, t: t, p: p, z: p >= 0 ? pc.noise[k] : nil)
            if p >= 0 { k += 1 }
        }
        assertClose(pc.x, x, abs: 5e-4, "predictor–corrector")
    }

    // MARK: - Timesteps

    /// diffusers' set_timesteps for T = 1000, computed with numpy.
    func testSpacingsMatchDiffusers() throws {
        func ts(_ S: Int, _ spacing: TimestepSpacing, offset: Int = 0) throws -> [Int] {
            try schedule.timesteps(S, spacing: spacing, stepsOffset: offset)
        }
        XCTAssertEqual(try ts(10, .leading), [900, 800, 700, 600, 500, 400, 300, 200, 100, 0])
        XCTAssertEqual(try ts(10, .leading, offset: 1), [901, 801, 701, 601, 501, 401, 301, 201, 101, 1])
        XCTAssertEqual(try ts(7, .leading, offset: 1), [853, 711, 569, 427, 285, 143, 1])
        XCTAssertEqual(try ts(10, .trailing), [999, 899, 799, 699, 599, 499, 399, 299, 199, 99])
        XCTAssertEqual(try ts(7, .trailing), [999, 856, 713, 570, 428, 285, 142])
        XCTAssertEqual(try ts(3, .trailing), [999, 666, 332])
        XCTAssertEqual(try ts(3, .default), [999, 665, 332], "the default floors where trailing rounds")
        XCTAssertEqual(try ts(10, .linspace), [999, 888, 777, 666, 555, 444, 333, 222, 111, 0])
        XCTAssertEqual(try ts(7, .linspace), [999, 832, 666, 500, 333, 166, 0])
        let karras = try ts(10, .karras)
        XCTAssertEqual(karras.first, 999)
        XCTAssertEqual(karras.last, 0)
        XCTAssertTrue(zip(karras, karras.dropFirst()).allSatisfy { $0 > $1 })
        assertInvalidArgument("leading offset past T") { try ts(10, .leading, offset: 100) }
    }

    // MARK: - Quality for steps

    /// With the exact ε*, a deterministic solver is affine per dim, x_0 = G·x_T + c; its output
    /// variance is G². The error |G²/σ² − 1| averaged over the dims, for DDIM and DPM-Solver++ 2M:
    /// the solver beats DDIM at every step count.
    func testDPMSolverBeatsDDIMOnVariance() throws {
        func varianceError(_ method: SamplingMethod, steps: Int) throws -> Double {
            var o = SamplerOptions()
            (o.method, o.steps) = (method, steps)
            let c = try runEngine(o, start: [Float](repeating: 0, count: D)).x
            let g = try runEngine(o, start: [Float](repeating: 1, count: D)).x
            var total = 0.0
            for d in 0..<D {
                let gain = Double(g[d]) - Double(c[d])
                total += abs(gain * gain / (sigma[d] * sigma[d]) - 1)
            }
            return total / Double(D)
        }
        var rows: [String] = []
        for steps in [5, 10, 20, 50] {
            let (ddim, dpm) = (try varianceError(.ddim, steps: steps), try varianceError(.dpmSolverPP, steps: steps))
            rows.append("\(steps): DDIM \(String(format: "%.4f", ddim)), DPM-Solver++ 2M \(String(format: "%.4f", dpm))")
            XCTAssertLessThan(dpm, ddim, "\(steps) steps: DPM-Solver++ 2M beats DDIM")
        }
        print("[solvers] mean |Var/σ² − 1| by steps: " + rows.joined(separator: "; "))
    }

    /// Annealed Langevin and PC with the exact score reach the data variance within sampling
    /// error (5 SE, plus 2% for the step-size bias) with enough steps; prints the sweep.
    func testLangevinReachesTheDataVariance() throws {
        let N = 2000
        func draw(_ method: SamplingMethod, steps: Int, K: Int, spacing: TimestepSpacing) throws -> ([Double], [Double]) {
            var o = SamplerOptions()
            (o.method, o.steps, o.correctorSteps, o.spacing, o.seed) = (method, steps, K, spacing, 5)
            let a = schedule.alphaBar.map(Float.init)
            let (means, variances) = (mu.map(Float.init), sigma.map { Float($0 * $0) })
            let denoiser = ClosureDenoiser(sampleSize: D) { [D] out, x, t, _, batch in
                let (at, st) = (a[t], (1 - a[t]).squareRoot())
                for i in 0..<batch * D {
                    let d = i % D
                    out[i] = st * (x[i] - at.squareRoot() * means[d]) / (at * variances[d] + 1 - at)
                }
            }
            var x = [Float](repeating: 0, count: N * D)
            try x.withUnsafeMutableBufferPointer { try schedule.sample(into: $0.baseAddress!, count: N, denoiser: denoiser, options: o) }
            let (m, v) = columnMoments(x, dim: D)
            let ratios: [Double] = (0..<D).map { d in (v[d] / (sigma[d] * sigma[d]) * 1000).rounded() / 1000 }
            print("[solvers] \(method) \(steps) levels × \(K): var/σ² \(ratios)")
            return (m, v)
        }
        func failures(_ m: [Double], _ v: [Double]) -> [Int] {
            (0..<D).filter { d in
                let want = sigma[d] * sigma[d]
                return abs(v[d] - want) > 5 * want * (2 / Double(N)).squareRoot() + 0.02 * want
                    || abs(m[d] - mu[d]) > 5 * sigma[d] / Double(N).squareRoot() + 0.01
            }
        }
        for K in [30, 100] { _ = try draw(.langevin, steps: 100, K: K, spacing: .linspace) }
        let (m, v) = try draw(.langevin, steps: 100, K: 300, spacing: .linspace)
        XCTAssertEqual(failures(m, v), [], "annealed Langevin, 100 levels × 300 steps: dims off the data moments")
        let (pm, pv) = try draw(.predictorCorrector, steps: 1000, K: 1, spacing: .default)
        XCTAssertEqual(failures(pm, pv), [], "PC, 1000 steps × 1 corrector: dims off the data moments")
    }

    // MARK: - x̂_0 limits

    /// DDIM with clipping: ε̂ is the model's unless useClippedModelOutput (diffusers' default false).
    func testUseClippedModelOutput() throws {
        let (t, p) = (500, 400)
        let xt = normals(D * 4, seed: 9).map { 3 * $0 }, e = normals(D * 4, seed: 10)
        for rederive in [false, true] {
            var o = SamplerOptions()
            (o.method, o.timesteps, o.clipX0, o.useClippedModelOutput) = (.ddim, [t, p], -1...1, rederive)
            let sampler = try Sampler(schedule: schedule, options: o, batch: 4, sampleSize: D)
            var x = xt
            try x.withUnsafeMutableBufferPointer { try sampler.step(output: e, x: $0.baseAddress!) }
            let (a, ap) = (schedule.alphaBar[t], schedule.alphaBar[p])
            let want = (0..<xt.count).map { i -> Double in
                let x0 = min(max((Double(xt[i]) - (1 - a).squareRoot() * Double(e[i])) / a.squareRoot(), -1), 1)
                let eHat = rederive ? (Double(xt[i]) - a.squareRoot() * x0) / (1 - a).squareRoot() : Double(e[i])
                return ap.squareRoot() * x0 + (1 - ap).squareRoot() * eHat
            }
            assertClose(x, want, abs: 2e-5, "DDIM clipped, use_clipped_model_output = \(rederive)")
        }
    }

    /// Dynamic thresholding (Imagen): s = clamp(quantile_p(|x̂_0|), 1, max) per sample, x̂_0 ← clip(x̂_0, −s, s)/s.
    func testDynamicThresholding() throws {
        let t = 300
        let xt = normals(3 * 16, seed: 11).map { 4 * $0 }, e = normals(3 * 16, seed: 12)
        var o = SamplerOptions()
        (o.method, o.timesteps, o.thresholdQuantile, o.thresholdMax) = (.ddim, [t], 0.9, 2.5)
        let sampler = try Sampler(schedule: schedule, options: o, batch: 3, sampleSize: 16)
        var x = xt, x0 = [Float](repeating: 0, count: xt.count)
        try x.withUnsafeMutableBufferPointer { try sampler.step(output: e, x: $0.baseAddress!, x0Out: &x0) }
        for b in 0..<3 {
            let raw = (0..<16).map { i in (Double(xt[b * 16 + i]) - schedule.sqrtOneMinusAlphaBar[t] * Double(e[b * 16 + i])) / schedule.sqrtAlphaBar[t] }
            let sorted = raw.map(abs).sorted()
            let pos = 0.9 * 15, lo = Int(pos)
            let q = sorted[lo] + (pos - Double(lo)) * (sorted[lo + 1] - sorted[lo])  // numpy/torch linear quantile
            let s = min(max(q, 1), 2.5)
            let want = raw.map { min(max($0, -s), s) / s }
            assertClose(Array(x0[b * 16..<(b + 1) * 16]), want, abs: 1e-5, "thresholded x̂_0, sample \(b) (s = \(s))")
        }
    }
}
