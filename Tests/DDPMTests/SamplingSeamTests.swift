// The reverse-process seam: the one conversion of a model output to (x̂_0, ε̂), and the
// Sampler stepped from outside against the built-in loop.
import XCTest
@testable import DDPM

final class SamplingSeamTests: XCTestCase {
    let schedule = try! NoiseSchedule.linear(steps: 100, scaleToSteps: true)
    let (mu, var0) = (0.3, 0.25)

    /// The exact ε* and x̂_0* = E[x_0|x_t] of x_0 ~ N(μ, σ²) per dim, in Double:
    ///   x̂_0* = μ + ᾱ^½σ²(x − ᾱ^½μ)/(ᾱσ² + 1 − ᾱ),  ε* = (1−ᾱ)^½(x − ᾱ^½μ)/(ᾱσ² + 1 − ᾱ).
    func exact(_ type: PredictionType) -> ClosureDenoiser {
        ClosureDenoiser(sampleSize: 3, predictionType: type) { [schedule, mu, var0] out, x, t, _, batch in
            let a = schedule.alphaBar[t]
            for i in 0..<batch * 3 {
                let r = (Double(x[i]) - a.squareRoot() * mu) / (a * var0 + 1 - a)
                out[i] = Float(type == .epsilon ? (1 - a).squareRoot() * r : mu + a.squareRoot() * var0 * r)
            }
        }
    }

    func sample(_ denoiser: Denoiser, _ options: SamplerOptions) throws -> [Float] {
        var out = [Float](repeating: 0, count: 3 * 64)
        try out.withUnsafeMutableBufferPointer {
            try schedule.sample(into: $0.baseAddress!, count: 64, denoiser: denoiser, options: options)
        }
        return out
    }

    /// An x̂_0-predicting model fed the exact x̂_0* samples as the ε-model fed ε* (the same
    /// maths, converted in one place), for every solver, with and without clipping.
    func testX0AndEpsilonModelsSampleAlike() throws {
        for method in SamplingMethod.allCases {
            for clip in [nil, -0.5...0.9] as [ClosedRange<Float>?] {
                var o = SamplerOptions()
                (o.method, o.steps, o.eta, o.seed, o.clipX0) = (method, 20, 0.3, 7, clip)
                let viaEps = try sample(exact(.epsilon), o)
                let viaX0 = try sample(exact(.x0), o)
                assertClose(viaX0, viaEps, abs: 2e-4, "\(method), clip \(String(describing: clip))")
                XCTAssertNotEqual(viaX0, try sample(exact(.x0), { var p = o; p.seed = 8; return p }()), "negative control")
            }
        }
    }

    /// convert: ε̂ → x̂_0 → ε̂ round trip and the closed form, at the ends of the schedule too.
    func testConversionMatchesTheClosedForm() throws {
        let x = normals(16, seed: 1), eps = normals(16, seed: 2)
        for t in [0, 1, 50, 99] {
            var x0 = [Float](repeating: 0, count: 16), back = x0
            try schedule.convert(&x0, output: eps, from: .epsilon, to: .x0, x: x, t: t, count: 16)
            let want = (0..<16).map { (Double(x[$0]) - schedule.sqrtOneMinusAlphaBar[t] * Double(eps[$0])) / schedule.sqrtAlphaBar[t] }
            assertClose(x0, want, abs: 1e-5 / schedule.sqrtAlphaBar[t], "x̂_0 at t = \(t)")
            try schedule.convert(&back, output: x0, from: .x0, to: .epsilon, x: x, t: t, count: 16)
            assertClose(back, eps, abs: 2e-3 / schedule.sqrtOneMinusAlphaBar[t], "ε̂ round trip at t = \(t)")
        }
        var out = [Float](repeating: 0, count: 16)
        assertInvalidArgument("t = T") { try schedule.convert(&out, output: eps, from: .epsilon, to: .x0, x: x, t: 100, count: 16) }
    }

    /// init_noise + step with the model's outputs, driven from outside, reproduces the
    /// built-in loop bit for bit; x0Out is the clipped x̂_0 of each step.
    func testSteppedFromOutsideEqualsTheLoop() throws {
        for method in SamplingMethod.allCases {
            var o = SamplerOptions()
            (o.method, o.steps, o.eta, o.seed, o.clipX0) = (method, 12, 0.7, 3, -1...1)
            let want = try sample(exact(.epsilon), o)
            let sampler = try Sampler(schedule: schedule, options: o, batch: 64, sampleSize: 3)
            var x = [Float](repeating: 0, count: 3 * 64), output = x, x0 = x
            x.withUnsafeMutableBufferPointer { sampler.initNoise($0.baseAddress!) }
            XCTAssertEqual(sampler.timestep, sampler.timesteps[0])
            var taken = 0
            while sampler.timestep >= 0 {
                try output.withUnsafeMutableBufferPointer {
                    try exact(.epsilon).predict($0.baseAddress!, x: x, t: sampler.timestep, cond: .none, batch: 64)
                }
                try x.withUnsafeMutableBufferPointer { try sampler.step(output: output, x: $0.baseAddress!, x0Out: &x0) }
                XCTAssertTrue(x0.allSatisfy { $0 >= -1 && $0 <= 1 }, "x̂_0 out is clipped")
                taken += 1
            }
            XCTAssertEqual(taken, sampler.plan.count)
            XCTAssertEqual(x.map(\.bitPattern), want.map(\.bitPattern), "\(method): stepped = looped")
            assertInvalidArgument("a step after the last") {
                try x.withUnsafeMutableBufferPointer { try sampler.step(output: output, x: $0.baseAddress!) }
            }
        }
    }

    func testBadSamplerOptionsAreRejectedOnce() {
        var o = SamplerOptions()
        o.eta = 2
        assertInvalidArgument("eta > 1") { try Sampler(schedule: schedule, options: o, batch: 1, sampleSize: 1) }
        o = SamplerOptions(); o.clipX0 = 1...1
        assertInvalidArgument("empty clip range") { try Sampler(schedule: schedule, options: o, batch: 1, sampleSize: 1) }
        o = SamplerOptions(); o.steps = 101
        assertInvalidArgument("steps > T") { try Sampler(schedule: schedule, options: o, batch: 1, sampleSize: 1) }
        assertInvalidArgument("batch 0") { try Sampler(schedule: schedule, options: .init(), batch: 0, sampleSize: 1) }
        assertInvalidArgument("overflowing size") { try Sampler(schedule: schedule, options: .init(), batch: Int.max, sampleSize: 2) }
    }
}
