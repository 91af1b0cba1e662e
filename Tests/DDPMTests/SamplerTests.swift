// End-to-end sampler tests with the exact ε* of a Gaussian data distribution.
//
// Data: x_0 ~ N(μ, diag σ²) in D = 4 dims. Then x_t ~ N(√ᾱ_t μ, ᾱ_t σ² + 1 − ᾱ_t) per dim and
// the MMSE noise predictor is ε*(x_t, t) = √(1−ᾱ_t)·(x_t − √ᾱ_t μ)/(ᾱ_t σ² + 1 − ᾱ_t).
//
// With ε* linear in x_t every reverse step is x' = G·x + c + s·z, so the sampler's output is
// exactly Gaussian, and its mean and variance follow from a scalar recursion that the test
// computes independently in Double (`exactOutputMoments`). The checks are:
//   1. the Monte Carlo moments of the engine's samples equal the recursion's within 5 SE
//      (mean SE = √(v/N), variance SE = v·√(2/N): the output is Gaussian);
//   2. the samples reproduce the data's μ and σ² within 5 SE plus the sampler's own
//      discretisation bias (recursion − truth), and that bias is small where it should be;
//   3. negative controls: a predictor with the wrong μ or σ fails check 1.
import XCTest
@testable import DDPM

final class SamplerTests: XCTestCase {
    let mu: [Double] = [1, -2, 0.5, 3]
    let sigma: [Double] = [0.5, 1, 2, 0.1]
    let sampleCount = 4000

    /// ε* for x_0 ~ N(mu, diag sigma²) under `schedule`.
    func exactPredictor(_ schedule: NoiseSchedule, mu: [Double], sigma: [Double]) -> ClosureDenoiser {
        let D = mu.count
        return ClosureDenoiser(sampleSize: D) { out, x, t, _, batch in
            let a = schedule.alphaBar[t]
            let k = sigma.map { (1 - a).squareRoot() / (a * $0 * $0 + 1 - a) }
            let c = mu.map { a.squareRoot() * $0 }
            for b in 0..<batch {
                for d in 0..<D { out[b * D + d] = Float(k[d] * (Double(x[b * D + d]) - c[d])) }
            }
        }
    }

    /// The visited timesteps: all of T−1…0 for full DDPM, else the trailing spacing, counted
    /// independently of the engine (TestSupport.swift).
    func expectedTimesteps(T: Int, steps S: Int) -> [Int] { trailingByCounting(T: T, S: S) }

    /// Mean and variance per dim of the sampler's output when driven by the exact ε*,
    /// by the recursion m ← G m + c, v ← G² v + s² starting from x_T ~ N(0, 1).
    /// Step formulas (Double, from the papers):
    ///   DDPM: α' = ᾱ_t/ᾱ_p, β' = 1 − α', x_p = (x − β'/√(1−ᾱ_t)·ε)/√α' + s z,
    ///         s² = β' (.beta) or (1−ᾱ_p)/(1−ᾱ_t)·β' (.posterior), 0 on the last step.
    ///   DDIM: x_p = √ᾱ_p·(x − √(1−ᾱ_t)·ε)/√ᾱ_t + √(1−ᾱ_p−s²)·ε + s z,
    ///         s² = η²·(1−ᾱ_p)/(1−ᾱ_t)·(1 − ᾱ_t/ᾱ_p).
    func exactOutputMoments(_ schedule: NoiseSchedule, timesteps: [Int], method: SamplingMethod,
                            variance: ReverseVariance, eta: Double) -> (mean: [Double], variance: [Double]) {
        var m = [Double](repeating: 0, count: mu.count), v = [Double](repeating: 1, count: mu.count)
        for (i, t) in timesteps.enumerated() {
            let p = i + 1 < timesteps.count ? timesteps[i + 1] : -1
            let a = schedule.alphaBar[t], ap = p >= 0 ? schedule.alphaBar[p] : 1
            // x' = A·x + B·ε + s·z
            var A: Double, B: Double, s2: Double
            switch method {
            case .ddpm:
                let alpha = a / ap, beta = 1 - alpha
                A = 1 / alpha.squareRoot()
                B = -A * beta / (1 - a).squareRoot()
                s2 = p < 0 ? 0 : (variance == .beta ? beta : (1 - ap) / (1 - a) * beta)
            case .ddim:
                s2 = eta * eta * (1 - ap) / (1 - a) * (1 - a / ap)
                A = (ap / a).squareRoot()
                B = -(ap / a).squareRoot() * (1 - a).squareRoot() + max(1 - ap - s2, 0).squareRoot()
            default:
                preconditionFailure("the moment recursion covers DDPM and DDIM")
            }
            for d in 0..<mu.count {
                // ε = k·(x − √ᾱ μ)
                let k = (1 - a).squareRoot() / (a * sigma[d] * sigma[d] + 1 - a)
                let G = A + B * k
                m[d] = G * m[d] - B * k * a.squareRoot() * mu[d]
                v[d] = G * G * v[d] + s2
            }
        }
        return (m, v)
    }

    /// Runs the engine's sampler with ε* built from (mu, sigma) and returns (N, D) samples.
    func draw(_ schedule: NoiseSchedule, options: SamplerOptions, mu: [Double], sigma: [Double]) throws -> [Float] {
        var out = [Float](repeating: 0, count: sampleCount * mu.count)
        let predictor = exactPredictor(schedule, mu: mu, sigma: sigma)
        try out.withUnsafeMutableBufferPointer {
            try schedule.sample(into: $0.baseAddress!, count: sampleCount, denoiser: predictor, options: options)
        }
        return out
    }

    /// Every way the sample moments miss (mean, variance) by more than `k` standard errors
    /// plus an allowance `slack` per dim (empty when all checks pass).
    func momentFailures(_ x: [Float], mean: [Double], variance: [Double], k: Double = 5,
                        meanSlack: [Double]? = nil, varianceSlack: [Double]? = nil) -> [String] {
        let D = mean.count, N = Double(x.count / D)
        let (m, v) = columnMoments(x, dim: D)
        var failures: [String] = []
        for d in 0..<D {
            let meanTol = k * (variance[d] / N).squareRoot() + (meanSlack?[d] ?? 0)
            let varTol = k * variance[d] * (2 / N).squareRoot() + (varianceSlack?[d] ?? 0)
            if !(abs(m[d] - mean[d]) <= meanTol) {
                failures.append("dim \(d): mean \(m[d]) vs \(mean[d]) (|diff| \(abs(m[d] - mean[d])) > \(meanTol))")
            }
            if !(abs(v[d] - variance[d]) <= varTol) {
                failures.append("dim \(d): variance \(v[d]) vs \(variance[d]) (|diff| \(abs(v[d] - variance[d])) > \(varTol))")
            }
        }
        return failures
    }

    /// The full check of one sampler configuration; returns the recursion's moments for extra checks.
    @discardableResult
    func checkSampler(_ schedule: NoiseSchedule, options: SamplerOptions, steps: Int,
                      file: StaticString = #filePath, line: UInt = #line) throws -> (mean: [Double], variance: [Double]) {
        let timesteps = expectedTimesteps(T: schedule.count, steps: steps)
        XCTAssertEqual(try options.samplingTimesteps(schedule), timesteps, "visited timesteps", file: file, line: line)
        let exact = exactOutputMoments(schedule, timesteps: timesteps, method: options.method,
                                       variance: options.variance, eta: Double(options.eta))
        let x = try draw(schedule, options: options, mu: mu, sigma: sigma)
        XCTAssertTrue(x.allSatisfy { $0.isFinite }, "samples are finite", file: file, line: line)
        // 1. Monte Carlo vs the exact output distribution of this discretised sampler.
        let vsExact = momentFailures(x, mean: exact.mean, variance: exact.variance)
        XCTAssertEqual(vsExact, [], "samples vs the sampler's exact output moments", file: file, line: line)
        // 2. vs the data distribution, allowing the sampler's discretisation bias.
        let truthVar = sigma.map { $0 * $0 }
        let meanBias = zip(exact.mean, mu).map { abs($0 - $1) }
        let varBias = zip(exact.variance, truthVar).map { abs($0 - $1) }
        let vsTruth = momentFailures(x, mean: mu, variance: truthVar, meanSlack: meanBias, varianceSlack: varBias)
        XCTAssertEqual(vsTruth, [], "samples vs data μ, σ² (+ bias \(varBias))", file: file, line: line)
        let (m, v) = columnMoments(x, dim: mu.count)
        print("[sampler] \(options.method) var=\(options.variance) eta=\(options.eta) S=\(steps) T=\(schedule.count): "
              + "mean \(m.map { ($0 * 1e4).rounded() / 1e4 }) var \(v.map { ($0 * 1e4).rounded() / 1e4 }); "
              + "exact var/σ² \(zip(exact.variance, truthVar).map { (($0 / $1) * 1e4).rounded() / 1e4 })")
        return exact
    }

    // MARK: - Deterministic DDIM against numbers computed independently with numpy

    /// With the exact ε*, deterministic DDIM is affine per dim, x_0 = G·x_T + c, so its output
    /// variance over x_T ~ N(0, 1) is G². The engine's G (from stepping x_T = 0 and x_T = 1
    /// through the Sampler) gives variance ratios G²/σ² that a separate numpy script computed
    /// for the linear T = 1000 schedule, 50 trailing steps (cumprod of linspace betas, eq. 12).
    func testDeterministicDDIMGainMatchesNumpyReference() throws {
        let schedule = try NoiseSchedule.linear(steps: 1000)
        let ratios = [0.88888192, 0.92843050, 0.94129693, 0.55016567]
        var options = SamplerOptions()
        (options.method, options.steps) = (.ddim, 50)
        let eps = exactPredictor(schedule, mu: mu, sigma: sigma)
        func run(from start: Float) throws -> [Float] {
            let sampler = try Sampler(schedule: schedule, options: options, batch: 1, sampleSize: mu.count)
            var x = [Float](repeating: start, count: mu.count), out = x
            while sampler.timestep >= 0 {
                try out.withUnsafeMutableBufferPointer { try eps.predict($0.baseAddress!, x: x, t: sampler.timestep, cond: .none, batch: 1) }
                try x.withUnsafeMutableBufferPointer { try sampler.step(output: out, x: $0.baseAddress!) }
            }
            return x
        }
        let (c, g1) = (try run(from: 0), try run(from: 1))
        let gain = zip(g1, c).map { Double($0) - Double($1) }
        let got = zip(gain, sigma).map { $0 * $0 / ($1 * $1) }
        assertRelClose(got, ratios, rel: 2e-4, "deterministic DDIM-50 variance ratio G²/σ² vs numpy")
        // The recursion used by the other tests gives the same numbers (it is checked here too).
        let exact = exactOutputMoments(schedule, timesteps: expectedTimesteps(T: 1000, steps: 50), method: .ddim,
                                       variance: .beta, eta: 0)
        assertClose(zip(exact.variance, sigma).map { $0 / ($1 * $1) }, ratios, abs: 1e-7, "recursion vs numpy")
    }

    // MARK: - The engine's samplers

    /// DDPM ancestral sampling (Algorithm 2), σ_t² = β_t, full T = 1000 linear schedule:
    /// consistent, so the exact output is also close to the data distribution.
    func testDDPMBetaVarianceReproducesGaussian() throws {
        let schedule = try NoiseSchedule.linear(steps: 1000)
        var options = SamplerOptions()
        options.method = .ddpm
        options.variance = .beta
        options.seed = 11
        let exact = try checkSampler(schedule, options: options, steps: 1000)
        assertClose(exact.mean, mu, abs: 1e-3, "DDPM(β) exact output mean vs μ")
        assertRelClose(exact.variance, sigma.map { $0 * $0 }, rel: 0.02, "DDPM(β) exact output variance vs σ²")
    }

    /// DDPM with σ_t² = β̃_t on a T = 200 linear schedule scaled to the same total noise.
    func testDDPMPosteriorVarianceReproducesGaussian() throws {
        let schedule = try NoiseSchedule.linear(steps: 200, scaleToSteps: true)
        var options = SamplerOptions()
        options.method = .ddpm
        options.variance = .posterior
        options.seed = 12
        let exact = try checkSampler(schedule, options: options, steps: 200)
        assertClose(exact.mean, mu, abs: 1e-3, "DDPM(β̃) exact output mean vs μ")
    }

    /// DDIM, 50 steps, η = 0 (deterministic given x_T).
    func testDDIMDeterministicReproducesGaussian() throws {
        let schedule = try NoiseSchedule.linear(steps: 1000)
        var options = SamplerOptions()
        options.method = .ddim
        options.steps = 50
        options.eta = 0
        options.seed = 13
        let exact = try checkSampler(schedule, options: options, steps: 50)
        assertClose(exact.mean, mu, abs: 0.02, "DDIM(η=0) exact output mean vs μ")
        // The broad dims lose little variance; the σ = 0.1 dim loses ~45% to the coarse last steps.
        assertRelClose(Array(exact.variance[1...2]), [1.0, 4.0], rel: 0.08, "DDIM(η=0) variance, broad dims")
    }

    /// DDIM, 50 steps, η = 1.
    func testDDIMStochasticReproducesGaussian() throws {
        let schedule = try NoiseSchedule.linear(steps: 1000)
        var options = SamplerOptions()
        options.method = .ddim
        options.steps = 50
        options.eta = 1
        options.seed = 14
        let exact = try checkSampler(schedule, options: options, steps: 50)
        assertClose(exact.mean, mu, abs: 1e-3, "DDIM(η=1) exact output mean vs μ")
    }

    /// Sampling is a pure function of the seed: the same seed gives bitwise the same samples.
    func testSamplerIsDeterministicGivenSeed() throws {
        let schedule = try NoiseSchedule.linear(steps: 100, scaleToSteps: true)
        var options = SamplerOptions()
        options.method = .ddpm
        options.seed = 5
        let a = try draw(schedule, options: options, mu: mu, sigma: sigma)
        let b = try draw(schedule, options: options, mu: mu, sigma: sigma)
        XCTAssertEqual(a, b, "same seed, same samples")
        options.seed = 6
        let c = try draw(schedule, options: options, mu: mu, sigma: sigma)
        XCTAssertNotEqual(a, c, "different seed, different samples")
    }

    // MARK: - Negative controls: the checks above can fail

    /// A predictor for the wrong μ (dim 0 shifted by 0.3, about 40 SE with N = 4000) must fail.
    func testWrongMeanPredictorFailsTheCheck() throws {
        let schedule = try NoiseSchedule.linear(steps: 100, scaleToSteps: true)
        var options = SamplerOptions()
        options.method = .ddim
        options.steps = 20
        options.seed = 21
        let timesteps = expectedTimesteps(T: 100, steps: 20)
        let exact = exactOutputMoments(schedule, timesteps: timesteps, method: .ddim, variance: .beta, eta: 0)
        let right = try draw(schedule, options: options, mu: mu, sigma: sigma)
        XCTAssertEqual(momentFailures(right, mean: exact.mean, variance: exact.variance), [], "the right ε* passes")
        var wrongMu = mu
        wrongMu[0] += 0.3
        let wrong = try draw(schedule, options: options, mu: wrongMu, sigma: sigma)
        let failures = momentFailures(wrong, mean: exact.mean, variance: exact.variance)
        XCTAssertTrue(failures.contains { $0.hasPrefix("dim 0: mean") }, "a wrong μ must fail the mean check: \(failures)")
    }

    /// A predictor for the wrong σ (dim 1: 1.0 -> 1.2) must fail the variance check.
    func testWrongVariancePredictorFailsTheCheck() throws {
        let schedule = try NoiseSchedule.linear(steps: 100, scaleToSteps: true)
        var options = SamplerOptions()
        options.method = .ddpm
        options.seed = 22
        let exact = exactOutputMoments(schedule, timesteps: expectedTimesteps(T: 100, steps: 100),
                                       method: .ddpm, variance: .beta, eta: 0)
        var wrongSigma = sigma
        wrongSigma[1] = 1.2
        let wrong = try draw(schedule, options: options, mu: mu, sigma: wrongSigma)
        let failures = momentFailures(wrong, mean: exact.mean, variance: exact.variance)
        XCTAssertTrue(failures.contains { $0.hasPrefix("dim 1: variance") }, "a wrong σ must fail the variance check: \(failures)")
    }

    // MARK: - Plumbing

    /// The progress callback sees x_T first (step 0, t = T−1), then every step, ends at
    /// t = −1, and cancels with `.cancelled`.
    func testProgressAndCancellation() throws {
        let schedule = try NoiseSchedule.linear(steps: 10, betaStart: 0.01, betaEnd: 0.3)
        let predictor = exactPredictor(schedule, mu: mu, sigma: sigma)
        var out = [Float](repeating: 0, count: 3 * mu.count)
        var seen: [Int] = []
        try out.withUnsafeMutableBufferPointer { o in
            try schedule.sample(into: o.baseAddress!, count: 3, denoiser: predictor) { step, total, t, _ in
                XCTAssertEqual(total, 10)
                XCTAssertEqual(step, seen.count)
                seen.append(t)
                return true
            }
        }
        XCTAssertEqual(seen, Array((-1...9).reversed()), "x_T at t = 9, then t of the new x after each step")
        do {
            try out.withUnsafeMutableBufferPointer { o in
                try schedule.sample(into: o.baseAddress!, count: 3, denoiser: predictor) { step, _, _, _ in step < 4 }
            }
            XCTFail("expected .cancelled")
        } catch DDPMError.cancelled {
        } catch { XCTFail("expected .cancelled, got \(error)") }
    }

    /// A predictor returning NaN stops sampling with `.nonFinite`; zero samples is invalid.
    func testNonFinitePredictionAndBadCountThrow() throws {
        let schedule = try NoiseSchedule.linear(steps: 10, betaStart: 0.01, betaEnd: 0.3)
        let nan = ClosureDenoiser(sampleSize: 2) { out, _, _, _, batch in
            for i in 0..<batch * 2 { out[i] = .nan }
        }
        var out = [Float](repeating: 0, count: 4)
        assertNonFinite("NaN ε̂") {
            try out.withUnsafeMutableBufferPointer { try schedule.sample(into: $0.baseAddress!, count: 2, denoiser: nan) }
        }
        assertInvalidArgument("count 0") {
            try out.withUnsafeMutableBufferPointer { try schedule.sample(into: $0.baseAddress!, count: 0, denoiser: nan) }
        }
    }
}
