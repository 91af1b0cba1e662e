// diffusers' scheduler conventions (issue 21), each against an independent oracle: numpy's own
// timesteps (printed by numpy, pasted), the closed forms of the steps to ᾱ_0, the scaled_linear
// β, and L_0 of the bound with σ_0² = β̃_1 (Ho's and Nichol's code). The fixtures of
// python/tests/fixtures/diffusers check whole trajectories against diffusers itself.
import XCTest
@testable import DDPM

final class DiffusersConventionTests: XCTestCase {
    let schedule = try! NoiseSchedule.linear(steps: 1000)

    /// Ties of np.round on numpy's arange and linspace arithmetic (T = 1000): trailing S = 48 has
    /// 937.4999… at i = 3, linspace S = 27 has 499.4999… at k = 13; the textbook formulas give
    /// 937.5 and 499.5, which round to the other side.
    func testTrailingAndLinspaceRoundAsNumpy() throws {
        let trailing = try schedule.timesteps(48, spacing: .trailing)
        XCTAssertEqual(Array(trailing.prefix(6)), [999, 978, 957, 936, 916, 895])  // np.round(np.arange(1000, 0, -1000/48)) - 1
        XCTAssertEqual(trailing.last, 20)
        let linspace = try schedule.timesteps(27, spacing: .linspace)
        XCTAssertEqual(Array(linspace[11...15]), [576, 538, 499, 461, 423])  // np.linspace(0, 999, 27).round()[::-1]
        XCTAssertEqual(linspace.first, 999)
        XCTAssertEqual(linspace.last, 0)
    }

    /// DPMSolverMultistepScheduler lays out S + 1 points and drops the last (issue 21's values).
    func testDPMSpacings() throws {
        XCTAssertEqual(try schedule.timesteps(10, spacing: .dpmLeading), [900, 810, 720, 630, 540, 450, 360, 270, 180, 90])
        XCTAssertEqual(try schedule.timesteps(10, spacing: .dpmLeading, stepsOffset: 1),
                       [901, 811, 721, 631, 541, 451, 361, 271, 181, 91])
        XCTAssertEqual(try schedule.timesteps(10, spacing: .dpmLinspace), [999, 899, 799, 699, 599, 500, 400, 300, 200, 100])
        // S = T leaves ⌊T/(S+1)⌋ = 0: repeated timesteps, refused.
        XCTAssertThrowsError(try schedule.timesteps(1000, spacing: .dpmLeading))
    }

    /// Runs one step from t over `options` with model output ε̂ = `eps` at x, returns x after it.
    func oneStep(_ options: SamplerOptions, t: Int, x: [Float], eps: [Float], noise: [Float]? = nil) throws -> [Float] {
        var o = options
        o.timesteps = [t]
        let sampler = try Sampler(schedule: schedule, options: o, batch: 1, sampleSize: x.count)
        var out = x
        try eps.withUnsafeBufferPointer { e in
            try out.withUnsafeMutableBufferPointer { xo in
                if let noise {
                    try noise.withUnsafeBufferPointer { try sampler.step(output: e.baseAddress!, x: xo.baseAddress!, noise: $0.baseAddress!) }
                } else {
                    try sampler.step(output: e.baseAddress!, x: xo.baseAddress!)
                }
            }
        }
        return out
    }

    /// DDIM's last step goes to ᾱ_0 without set_alpha_to_one:
    ///   x = √ᾱ_0·x̂_0 + √(1 − ᾱ_0 − σ²)·ε̂ + σ·z,  σ² = η²(1 − ᾱ_0)/(1 − ᾱ_t)·(1 − ᾱ_t/ᾱ_0),
    /// with noise on that step when η > 0; with it (the default) x = x̂_0.
    func testDDIMFinalStepToAlphaBarZero() throws {
        let (x, eps, z): ([Float], [Float], [Float]) = ([0.7, -1.2, 0.1], [0.3, 0.5, -0.9], [1.1, -0.4, 0.25])
        let t = 300, a = schedule.alphaBar[t], a0 = schedule.alphaBar[0]
        let x0 = zip(x, eps).map { (Double($0) - (1 - a).squareRoot() * Double($1)) / a.squareRoot() }
        var o = SamplerOptions()
        o.method = .ddim
        XCTAssertEqual(try oneStep(o, t: t, x: x, eps: eps).map(Double.init), x0, accuracy: 1e-5)
        o.setAlphaToOne = false
        for eta in [0.0, 0.6] {
            o.eta = Float(eta)
            let sigma2 = eta * eta * (1 - a0) / (1 - a) * (1 - a / a0)
            let expected = (0..<3).map { i in
                a0.squareRoot() * x0[i] + (1 - a0 - sigma2).squareRoot() * Double(eps[i]) + sigma2.squareRoot() * Double(z[i])
            }
            XCTAssertEqual(try oneStep(o, t: t, x: x, eps: eps, noise: z).map(Double.init), expected, accuracy: 1e-5, "η = \(eta)")
        }
    }

    /// DPM-Solver++ (first order) to ᾱ_0 without set_alpha_to_one (final_sigmas_type "sigma_min"):
    ///   x = (σ_0/σ_s)·x − α_0(e^{−h} − 1)·x̂_0, h = λ_0 − λ_s, λ = log(α/σ).
    func testDPMSolverFinalStepToAlphaBarZero() throws {
        let (x, eps): ([Float], [Float]) = ([0.7, -1.2, 0.1], [0.3, 0.5, -0.9])
        let s = 400, a = schedule.alphaBar[s], a0 = schedule.alphaBar[0]
        let x0 = zip(x, eps).map { (Double($0) - (1 - a).squareRoot() * Double($1)) / a.squareRoot() }
        let lambda = { (ab: Double) in 0.5 * log(ab / (1 - ab)) }
        let h = lambda(a0) - lambda(a)
        let expected = (0..<3).map { i in
            ((1 - a0) / (1 - a)).squareRoot() * Double(x[i]) - a0.squareRoot() * (exp(-h) - 1) * x0[i]
        }
        var o = SamplerOptions()
        (o.method, o.setAlphaToOne) = (.dpmSolverPP, false)
        XCTAssertEqual(try oneStep(o, t: s, x: x, eps: eps).map(Double.init), expected, accuracy: 1e-5)
        o.setAlphaToOne = true
        XCTAssertEqual(try oneStep(o, t: s, x: x, eps: eps).map(Double.init), x0, accuracy: 1e-5)
    }

    func testSetAlphaToOneFalseOnlyWhereItMeansSomething() {
        for method in [SamplingMethod.ddpm, .langevin, .predictorCorrector] {
            var o = SamplerOptions()
            (o.method, o.setAlphaToOne, o.steps) = (method, false, 10)
            XCTAssertThrowsError(try Sampler(schedule: schedule, options: o, batch: 1, sampleSize: 1), "\(method)")
        }
    }

    /// scaled_linear: β_t = (√β_start + (√β_end − √β_start)·t/(T−1))², and it survives the checkpoint JSON.
    func testScaledLinear() throws {
        let s = try NoiseSchedule.scaledLinear(steps: 5, betaStart: 0.0001, betaEnd: 0.0081)
        XCTAssertEqual(s.betas, [0.0001, 0.0009, 0.0025, 0.0049, 0.0081], accuracy: 1e-15)
        let json = try JSONEncoder().encode(s.kind)
        XCTAssertEqual(try JSONDecoder().decode(NoiseSchedule.Kind.self, from: json), s.kind)
        XCTAssertEqual(s.kind.name, "scaled_linear")
    }

    /// L_0 of the bound uses σ_0² = β̃_1 with either fixed variance (Ho's "fixedlarge" is
    /// np.append(posterior_variance[1], betas[1:])): −log N(x_0; x̂_0, β̃_1), x̂_0 from ε̂.
    func testDecoderVarianceIsPosteriorOfStepOne() throws {
        let small = try NoiseSchedule.linear(steps: 20, betaStart: 1e-3, betaEnd: 0.2)
        let eps: Float = 0.05
        let denoiser = ClosureDenoiser(sampleSize: 2) { out, _, _, _, batch in
            for i in 0..<batch * 2 { out[i] = eps }
        }
        let x0: [Float] = [0.3, -0.6]
        var results: [Double] = []
        for variance in [ReverseVariance.beta, .posterior] {
            var o = VLBOptions()
            (o.variance, o.seed) = (variance, 7)
            let r = try x0.withUnsafeBufferPointer { try small.variationalBound(x0: $0.baseAddress!, batch: 1, denoiser: denoiser, options: o) }
            results.append(r.terms[0])
        }
        // the oracle: x_0 at t = 0 is √ᾱ_0 x_0 + √(1−ᾱ_0) z; x̂_0 = x_0 + √(1−ᾱ_0)(z − ε̂)/√ᾱ_0 — z from the
        // same Philox stream the bound draws (its first draw is at t = T−1, the last at t = 0).
        var rng = Philox(seed: 7)
        var z = [Float](repeating: 0, count: 2)
        for _ in 0..<small.count { z.withUnsafeMutableBufferPointer { rng.fillNormal($0.baseAddress!, count: 2) } }
        let a = small.alphaBar[0], variance = small.posteriorVariance[1]
        let nll = (0..<2).map { i -> Double in
            let xt = Double(Float(a.squareRoot()) * x0[i] + Float((1 - a).squareRoot()) * z[i])
            let x0Hat = (xt - (1 - a).squareRoot() * Double(eps)) / a.squareRoot()
            let d = Double(x0[i]) - x0Hat
            return 0.5 * log(2 * Double.pi * variance) + 0.5 * d * d / variance
        }.reduce(0, +) / 2
        XCTAssertEqual(results[0], results[1], accuracy: 1e-12)
        XCTAssertEqual(results[0], nll, accuracy: 1e-4 * abs(nll))
    }
}

private func XCTAssertEqual(_ a: [Double], _ b: [Double], accuracy: Double, _ message: String = "",
                            file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.count, b.count, message, file: file, line: line)
    for (i, (x, y)) in zip(a, b).enumerated() {
        XCTAssertEqual(x, y, accuracy: accuracy, "[\(i)] \(message)", file: file, line: line)
    }
}
