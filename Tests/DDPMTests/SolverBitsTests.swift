// Pinned bits of every solver, driven by a closure (no network, no BLAS: the bits are the
// same on every CPU). Pinned before the solvers were rewritten as planning solvers (issue 20,
// item 3), which was meant to change no bit: the samples of each method and option set, the
// (step, total, t) the progress callback sees, and the (timestep, adds noise) of every step
// of the stepping API. A change of numerics must re-pin on purpose, saying why in the commit.
import XCTest
@testable import DDPM

final class SolverBitsTests: XCTestCase {
    let schedule = try! NoiseSchedule.linear(steps: 100, scaleToSteps: true)

    /// The exact ε* (or x̂_0*, v*) of x_0 ~ N(0.3, 0.5²) per dim, in Double.
    func exact(_ type: PredictionType) -> ClosureDenoiser {
        ClosureDenoiser(sampleSize: 3, predictionType: type) { [schedule] out, x, t, _, batch in
            let (mu, var0) = (0.3, 0.25)
            let a = schedule.alphaBar[t]
            for i in 0..<batch * 3 {
                let r = (Double(x[i]) - a.squareRoot() * mu) / (a * var0 + 1 - a)
                let (eps, x0) = ((1 - a).squareRoot() * r, mu + a.squareRoot() * var0 * r)
                switch type {
                case .epsilon: out[i] = Float(eps)
                case .x0: out[i] = Float(x0)
                case .v: out[i] = Float(a.squareRoot() * eps - (1 - a).squareRoot() * x0)
                }
            }
        }
    }

    /// Every method with the options that change its step; name → options.
    var cases: [(String, SamplerOptions, PredictionType, Int)] {
        func o(_ method: SamplingMethod, _ steps: Int, _ edit: (inout SamplerOptions) -> Void = { _ in }) -> SamplerOptions {
            var o = SamplerOptions()
            (o.method, o.steps, o.seed) = (method, steps, 11)
            edit(&o)
            return o
        }
        return [
            ("ddpm beta", o(.ddpm, 0), .epsilon, 8),
            ("ddpm posterior 20", o(.ddpm, 20) { $0.variance = .posterior }, .epsilon, 8),
            ("ddpm clip x0-model", o(.ddpm, 10) { $0.clipX0 = -0.5...0.9 }, .x0, 8),
            ("ddpm threshold v-model", o(.ddpm, 10) { ($0.thresholdQuantile, $0.thresholdMax) = (0.8, 1.5) }, .v, 8),
            ("ddpm big batch (chunked noise)", o(.ddpm, 4), .epsilon, 3000),
            ("ddim eta 0", o(.ddim, 10), .epsilon, 8),
            ("ddim eta 0.7 leading", o(.ddim, 10) { ($0.eta, $0.spacing, $0.stepsOffset) = (0.7, .leading, 1) }, .epsilon, 8),
            ("ddim clipped model output", o(.ddim, 10) { ($0.clipX0, $0.useClippedModelOutput) = (-0.5...0.9, true) }, .epsilon, 8),
            ("dpm++ 1", o(.dpmSolverPP, 10) { $0.solverOrder = 1 }, .epsilon, 8),
            ("dpm++ 2M", o(.dpmSolverPP, 10), .epsilon, 8),
            ("dpm++ 2M 20 karras", o(.dpmSolverPP, 20) { $0.spacing = .karras }, .epsilon, 8),
            ("dpm++ 3M", o(.dpmSolverPP, 10) { $0.solverOrder = 3 }, .epsilon, 8),
            ("dpm++ 3M 20", o(.dpmSolverPP, 20) { $0.solverOrder = 3 }, .x0, 8),
            ("dpm++ 3M no lower-order final", o(.dpmSolverPP, 8) { ($0.solverOrder, $0.lowerOrderFinal) = (3, false) }, .epsilon, 8),
            ("dpm++ 3M clip", o(.dpmSolverPP, 10) { ($0.solverOrder, $0.clipX0) = (3, -0.5...0.9) }, .v, 8),
            ("sde-dpm++ 1", o(.sdeDPMSolverPP, 10) { $0.solverOrder = 1 }, .epsilon, 8),
            ("sde-dpm++ 2M", o(.sdeDPMSolverPP, 10), .epsilon, 8),
            ("sde-dpm++ 2M 20 trailing", o(.sdeDPMSolverPP, 20) { $0.spacing = .trailing }, .x0, 8),
            ("langevin 3", o(.langevin, 10) { ($0.correctorSteps, $0.langevinStepSize) = (3, 1e-3) }, .epsilon, 8),
            ("langevin 1 linspace", o(.langevin, 12) { ($0.spacing, $0.langevinStepSize) = (.linspace, 1e-2) }, .x0, 8),
            ("pc 2", o(.predictorCorrector, 10) { $0.correctorSteps = 2 }, .epsilon, 8),
            ("pc 1 posterior snr 0.3", o(.predictorCorrector, 0) { ($0.variance, $0.snr) = (.posterior, 0.3) }, .v, 8),
            ("pc 2 clip", o(.predictorCorrector, 10) { ($0.correctorSteps, $0.clipX0) = (2, -0.5...0.9) }, .epsilon, 8),
        ]
    }

    let pinned: [String: UInt64] = [
        "ddpm beta": 0xfdbf1f3d_813a03bd,
        "ddpm posterior 20": 0x951c4734_4f71d3e0,
        "ddpm clip x0-model": 0x140fdbb4_0fe72453,
        "ddpm threshold v-model": 0xf317bc9f_1f7eef85,
        "ddpm big batch (chunked noise)": 0xe804f974_e59ded4b,
        "ddim eta 0": 0x118941c4_a3e6ea48,
        "ddim eta 0.7 leading": 0xcae96c96_4269fd7e,
        "ddim clipped model output": 0xfd75ceed_c5be5a71,
        "dpm++ 1": 0x4041084b_e16aceb5,
        "dpm++ 2M": 0x67b5e4cd_8f091b6a,
        "dpm++ 2M 20 karras": 0x58dc502f_843bb872,
        "dpm++ 3M": 0xa674d9e7_ab7382e1,
        "dpm++ 3M 20": 0x1944c1fb_0b02c69c,
        "dpm++ 3M no lower-order final": 0x8a958283_725e1240,
        "dpm++ 3M clip": 0xa018659b_e0635681,
        "sde-dpm++ 1": 0xbfefa08f_ceba5368,
        "sde-dpm++ 2M": 0x0ec86b77_9eccf217,
        "sde-dpm++ 2M 20 trailing": 0xb80e61d2_8d21c7c7,
        "langevin 3": 0xd2c03b5b_27ad36f8,
        "langevin 1 linspace": 0xe9aa9543_d1650e2e,
        "pc 2": 0x9ca7886b_e0751836,
        "pc 1 posterior snr 0.3": 0x04dc0fe5_c597d292,
        "pc 2 clip": 0x44b39ad5_3f7c5004,
    ]

    func testEverySolverBitsArePinned() throws {
        var mismatches: [String] = []
        for (name, options, type, n) in cases {
            // The built-in loop, with the progress callback's (step, total, t).
            var samples = [Float](repeating: 0, count: 3 * n)
            var seen: [Float] = []
            try samples.withUnsafeMutableBufferPointer {
                try schedule.sample(into: $0.baseAddress!, count: n, denoiser: exact(type), options: options) { step, total, t, _ in
                    seen += [Float(step), Float(total), Float(t)]
                    return true
                }
            }
            // The stepping API: (timestep, adds noise) before every step, and its samples (equal to the loop's).
            var o = options
            o.predictionType = type
            let sampler = try Sampler(schedule: schedule, options: o, batch: n, sampleSize: 3)
            var x = [Float](repeating: 0, count: 3 * n), output = x, steps: [Float] = []
            x.withUnsafeMutableBufferPointer { sampler.initNoise($0.baseAddress!) }
            while sampler.timestep >= 0 {
                steps += [Float(sampler.timestep), sampler.nextStepAddsNoise! ? 1 : 0]
                try output.withUnsafeMutableBufferPointer {
                    try exact(type).predict($0.baseAddress!, x: x, t: sampler.timestep, cond: .none, batch: n)
                }
                try x.withUnsafeMutableBufferPointer { try sampler.step(output: output, x: $0.baseAddress!) }
            }
            XCTAssertNil(sampler.nextStepAddsNoise)
            XCTAssertEqual(x.map(\.bitPattern), samples.map(\.bitPattern), "\(name): stepped = looped")
            let h = bitHash(samples + seen + steps)
            if pinned[name] != h { mismatches.append("(\"\(name)\", 0x\(String(h, radix: 16)))") }
        }
        XCTAssertEqual(mismatches, [], "bits changed; the new hashes:\n" + mismatches.joined(separator: ",\n"))
        XCTAssertEqual(pinned.count, cases.count, "every case is pinned")
    }
}
