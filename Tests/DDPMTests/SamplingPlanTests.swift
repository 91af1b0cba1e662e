// The plan of model evaluations each solver asks for (issue 20, item 3), against the loops of
// the papers written out by hand, and its size bound (issue 19, finding 5: a plan of 2^20
// timesteps × 10001 evaluations was allocated unchecked, 251 GB, and aborted the process).
import XCTest
@testable import DDPM

final class SamplingPlanTests: XCTestCase {
    let schedule = try! NoiseSchedule.linear(steps: 100, scaleToSteps: true)
    let timesteps = [90, 60, 30, 0]

    /// (t, timestep of x after the update, is a corrector, adds noise) of every planned step.
    struct Planned: Equatable, CustomStringConvertible {
        let t: Int, after: Int, corrector: Bool, noise: Bool
        var description: String { "(\(t)→\(after)\(corrector ? " corrector" : "")\(noise ? " +z" : ""))" }
    }

    func planned(_ method: SamplingMethod, K: Int = 2, eta: Float = 0) throws -> [Planned] {
        var o = SamplerOptions()
        (o.method, o.timesteps, o.correctorSteps, o.eta) = (method, timesteps, K, eta)
        let sampler = try Sampler(schedule: schedule, options: o, batch: 2, sampleSize: 3)
        var x = [Float](repeating: 0, count: 6), out: [Planned] = []
        let zero = [Float](repeating: 0, count: 6)
        for s in sampler.plan {
            XCTAssertEqual(sampler.timestep, s.t)
            out.append(Planned(t: s.t, after: s.prevT, corrector: s.update == .corrector, noise: sampler.nextStepAddsNoise!))
            try x.withUnsafeMutableBufferPointer { try sampler.step(output: zero, x: $0.baseAddress!) }
        }
        XCTAssertEqual(sampler.timestep, -1)
        return out
    }

    /// Each method's plan over timesteps 90, 60, 30, 0, written out from the papers' loops:
    /// one predictor per timestep to the next (DDPM Algorithm 2, DDIM, DPM-Solver++ Algorithm 2),
    /// K Langevin steps at each level that stay there (NCSN Algorithm 1), and K correctors then
    /// a predictor (score_sde's pc_sampler). z is drawn by every ancestral, stochastic and
    /// Langevin update, never on the step to x_0.
    func testEverySolverPlansThePapersLoop() throws {
        func move(_ t: Int, _ next: Int, noise: Bool) -> Planned { Planned(t: t, after: next, corrector: false, noise: noise && next >= 0) }
        func correct(_ t: Int) -> Planned { Planned(t: t, after: t, corrector: true, noise: true) }
        let moves = [(90, 60), (60, 30), (30, 0), (0, -1)]
        XCTAssertEqual(try planned(.ddpm), moves.map { move($0, $1, noise: true) })
        XCTAssertEqual(try planned(.ddim), moves.map { move($0, $1, noise: false) })
        XCTAssertEqual(try planned(.ddim, eta: 0.5), moves.map { move($0, $1, noise: true) })
        XCTAssertEqual(try planned(.dpmSolverPP), moves.map { move($0, $1, noise: false) })
        XCTAssertEqual(try planned(.sdeDPMSolverPP), moves.map { move($0, $1, noise: true) })
        XCTAssertEqual(try planned(.langevin, K: 3), timesteps.flatMap { [correct($0), correct($0), correct($0)] })
        XCTAssertEqual(try planned(.predictorCorrector, K: 2), moves.flatMap { [correct($0), correct($0), move($0, $1, noise: true)] })
        XCTAssertEqual(try planned(.predictorCorrector, K: 1).count, 8)
        XCTAssertNotEqual(try planned(.predictorCorrector, K: 1), try planned(.langevin, K: 2), "negative control")
    }

    /// The built-in loop asks the denoiser for exactly the plan's timesteps, and the progress
    /// callback counts the plan.
    func testTheLoopFollowsThePlan() throws {
        for method in SamplingMethod.allCases {
            var o = SamplerOptions()
            (o.method, o.timesteps, o.correctorSteps) = (method, timesteps, 2)
            let plan = try Sampler(schedule: schedule, options: o, batch: 2, sampleSize: 3).plan
            var asked: [Int] = [], totals: Set<Int> = []
            let denoiser = ClosureDenoiser(sampleSize: 3) { out, _, t, _, batch in
                asked.append(t)
                for i in 0..<batch * 3 { out[i] = 0.1 }
            }
            var x = [Float](repeating: 0, count: 6)
            try x.withUnsafeMutableBufferPointer {
                try schedule.sample(into: $0.baseAddress!, count: 2, denoiser: denoiser, options: o) { _, total, _, _ in
                    totals.insert(total)
                    return true
                }
            }
            XCTAssertEqual(asked, plan.map(\.t), "\(method)")
            XCTAssertEqual(totals, [plan.count], "\(method)")
        }
    }

    /// Asserts `.invalidArgument` whose message names the bytes needed.
    func assertOverTheBound(_ what: String, line: UInt = #line, _ body: () throws -> Void) {
        do {
            try body()
            XCTFail("\(what): nothing was thrown", line: line)
        } catch DDPMError.invalidArgument(let message) {
            XCTAssertTrue(message.contains("bytes") && message.contains("plan"), "\(what): \(message)", line: line)
        } catch {
            XCTFail("\(what): expected .invalidArgument, got \(error)", line: line)
        }
    }

    /// The issue's case: 2^20 timesteps × 10000 Langevin steps (+ 1 predictor for PC) would
    /// need a 251 GB plan: refused before it is allocated, from a Sampler and from a model
    /// (tests/c/bad_inputs.c has each method through both); 2^16 × 30 (47 MB) is fine.
    func testAPlanOverTheMemoryBoundIsRefusedBeforeItIsAllocated() throws {
        let longest = try NoiseSchedule.linear(steps: Limits.timesteps, scaleToSteps: true)
        var o = SamplerOptions()
        (o.method, o.steps, o.correctorSteps) = (.predictorCorrector, Limits.timesteps, 10_000)
        assertOverTheBound("PC sampler") { _ = try Sampler(schedule: longest, options: o, batch: 1, sampleSize: 2) }
        let model = try DiffusionModel(schedule: longest,
                                       network: .mlp(ResidualMLP.Config(dataDim: 2, hidden: 8, depth: 1, timeEmbedDim: 4)))
        o.method = .langevin
        assertOverTheBound("Langevin model sample") { _ = try model.sample(count: 1, options: o) }
        (o.method, o.steps, o.correctorSteps) = (.predictorCorrector, 1 << 16, 29)
        XCTAssertEqual(try Sampler(schedule: longest, options: o, batch: 1, sampleSize: 2).plan.count, 30 << 16)
    }
}
