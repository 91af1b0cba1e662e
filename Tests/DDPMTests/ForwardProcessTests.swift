// The forward process q(x_t|x_0) and the posterior q(x_{t−1}|x_t, x_0).
import XCTest
@testable import DDPM

final class ForwardProcessTests: XCTestCase {
    let schedule = try! NoiseSchedule.linear(steps: 1000)

    /// x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε, each row with its own t (t = 0 and t = T−1 included).
    func testAddNoiseMatchesFormula() throws {
        let (B, D) = (5, 7)
        let x0 = uniforms(B * D, seed: 1, in: -3...3), eps = normals(B * D, seed: 2)
        let t: [Int32] = [0, 1, 500, 998, 999]
        let xt = try schedule.addNoise(x0: x0, noise: eps, t: t)
        var expected: [Double] = []
        for b in 0..<B {
            let ab = schedule.alphaBar[Int(t[b])]
            for d in 0..<D { expected.append(ab.squareRoot() * Double(x0[b * D + d]) + (1 - ab).squareRoot() * Double(eps[b * D + d])) }
        }
        assertClose(xt, expected, abs: 2e-6, "addNoise vs √ᾱ x0 + √(1−ᾱ) ε")

        // The pointer form may write over x0.
        var inPlace = x0
        try inPlace.withUnsafeMutableBufferPointer { o in
            try schedule.addNoise(o.baseAddress!, x0: o.baseAddress!, noise: eps, t: t, batch: B, dim: D)
        }
        XCTAssertEqual(inPlace, xt, "out aliasing x0 gives the same result")
    }

    func testAddNoiseRejectsBadArguments() {
        assertInvalidArgument("t = T") { try schedule.addNoise(x0: [1, 2], noise: [0, 0], t: [1000]) }
        assertInvalidArgument("t = -1") { try schedule.addNoise(x0: [1, 2], noise: [0, 0], t: [-1]) }
        assertInvalidArgument("x0 not (B, D)") { try schedule.addNoise(x0: [1, 2, 3], noise: [0, 0, 0], t: [1, 2]) }
        assertInvalidArgument("noise count differs") { try schedule.addNoise(x0: [1, 2], noise: [0], t: [1]) }
    }

    /// Moments of q(x_t|x_0) from many Philox draws: mean √ᾱ x_0, variance 1 − ᾱ,
    /// within 5 standard errors (mean SE = √((1−ᾱ)/n), variance SE = (1−ᾱ)√(2/n)).
    func testMomentsOfForwardMarginal() throws {
        let n = 100_000
        let x0: Float = 1.7
        for step in [0, 100, 999] {
            let eps = normals(n, seed: UInt64(100 + step))
            let xt = try schedule.addNoise(x0: [Float](repeating: x0, count: n), noise: eps,
                                           t: [Int32](repeating: Int32(step), count: n))
            let (m, v) = columnMoments(xt, dim: 1)
            let ab = schedule.alphaBar[step]
            let (wantMean, wantVar) = (ab.squareRoot() * Double(x0), 1 - ab)
            let meanTol = 5 * (wantVar / Double(n)).squareRoot(), varTol = 5 * wantVar * (2 / Double(n)).squareRoot()
            XCTAssertEqual(m[0], wantMean, accuracy: meanTol, "t = \(step): mean \(m[0]) vs √ᾱ x0 = \(wantMean)")
            XCTAssertEqual(v[0], wantVar, accuracy: varTol, "t = \(step): variance \(v[0]) vs 1 − ᾱ = \(wantVar)")
        }
    }

    /// Posterior q(x_{t−1}|x_t, x_0) by Bayes' rule, computed here from
    ///   q(x_{t−1}|x_0) = N(√ᾱ_{t−1} x_0, 1−ᾱ_{t−1}),  q(x_t|x_{t−1}) = N(√α_t x_{t−1}, β_t):
    ///   precision = 1/(1−ᾱ_{t−1}) + α_t/β_t,
    ///   mean = (√ᾱ_{t−1} x_0/(1−ᾱ_{t−1}) + √α_t x_t/β_t)/precision.
    func testPosteriorMatchesBayes() throws {
        for s in [schedule, try NoiseSchedule.cosine(steps: 100), try NoiseSchedule(betas: [0.1, 0.2, 0.5])] {
            let T = s.count
            let ts = [1, 2, T / 2, T - 1].filter { $0 >= 1 && $0 < T }
            let D = 3
            let x0 = uniforms(ts.count * D, seed: 7, in: -2...2), xt = uniforms(ts.count * D, seed: 8, in: -3...3)
            var mean = [Float](repeating: 0, count: ts.count * D), variance = [Float](repeating: 0, count: ts.count)
            let t32 = ts.map { Int32($0) }
            try mean.withUnsafeMutableBufferPointer { m in
                try variance.withUnsafeMutableBufferPointer { v in
                    try s.posterior(mean: m.baseAddress!, variance: v.baseAddress!, x0: x0, xt: xt, t: t32, batch: ts.count, dim: D)
                }
            }
            var wantMean: [Double] = [], wantVar: [Double] = []
            for (b, t) in ts.enumerated() {
                let abPrev = s.alphaBar[t - 1], alpha = 1 - s.betas[t], beta = s.betas[t]
                let precision = 1 / (1 - abPrev) + alpha / beta
                wantVar.append(1 / precision)
                for d in 0..<D {
                    let i = b * D + d
                    wantMean.append((abPrev.squareRoot() * Double(x0[i]) / (1 - abPrev) + alpha.squareRoot() * Double(xt[i]) / beta)
                                    / precision)
                }
            }
            assertRelClose(variance, wantVar, rel: 1e-6, "posterior variance vs Bayes (T = \(T))")
            assertClose(mean, wantMean, abs: 5e-6, "posterior mean vs Bayes (T = \(T))")
        }
    }

    /// t = 0: x_{−1} is x_0 itself, so the posterior has mean x_0 and variance 0.
    func testPosteriorAtTimestepZero() throws {
        let x0: [Float] = [0.5, -1.25, 3], xt: [Float] = [2, 2, 2]
        var mean = [Float](repeating: .nan, count: 3), variance: [Float] = [.nan]
        try mean.withUnsafeMutableBufferPointer { m in
            try variance.withUnsafeMutableBufferPointer { v in
                try schedule.posterior(mean: m.baseAddress!, variance: v.baseAddress!, x0: x0, xt: xt, t: [0], batch: 1, dim: 3)
            }
        }
        XCTAssertEqual(variance, [0], "β̃_0 = 0")
        assertClose(mean, x0, abs: 1e-6, "posterior mean at t = 0 is x_0")
    }

    func testPosteriorRejectsTimestepOutOfRange() {
        var mean: [Float] = [0], variance: [Float] = [0]
        for bad: Int32 in [-1, 1000] {
            assertInvalidArgument("t = \(bad)") {
                try mean.withUnsafeMutableBufferPointer { m in
                    try variance.withUnsafeMutableBufferPointer { v in
                        try schedule.posterior(mean: m.baseAddress!, variance: v.baseAddress!, x0: [1], xt: [1], t: [bad],
                                               batch: 1, dim: 1)
                    }
                }
            }
        }
    }
}
