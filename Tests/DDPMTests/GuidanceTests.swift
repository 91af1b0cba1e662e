// Classifier-free guidance: ε̂ = ε̂_uncond + w·(ε̂_cond − ε̂_uncond), checked against direct
// network calls (labels given, and the null label K given explicitly).
import XCTest
@testable import DDPM

final class GuidanceTests: XCTestCase {
    let (B, D, K) = (5, 3, 3)

    /// A conditional model whose weights (class embedding included) are random and large
    /// enough that the conditional and unconditional predictions clearly differ.
    func makeModel() throws -> DiffusionModel {
        let model = try DiffusionModel(schedule: try NoiseSchedule.linear(steps: 100, scaleToSteps: true),
                                       network: .mlp(ResidualMLP.Config(dataDim: D, hidden: 16, depth: 2)), conditioning: .classes(K))
        let params = model.network.parameters
        var v = uniforms(params.count, seed: 9, in: -0.4...0.4)
        for e in params.layout.entries where e.name.hasSuffix("norm.weight") {
            for i in e.offset..<e.offset + e.count { v[i] += 1 }
        }
        try params.setValues(v)
        return model
    }

    func predict(_ model: DiffusionModel, x: [Float], t: Int, labels: [Int32]?, w: Float, useEMA: Bool = false) throws -> [Float] {
        var out = [Float](repeating: .nan, count: x.count)
        try withOptionalPointer(labels) { l in
            try model.predict(&out, x: x, t: t, labels: l, batch: x.count / D, options: PredictOptions(guidanceScale: w, useEMA: useEMA))
        }
        return out
    }

    /// The network called directly with the live weights.
    func direct(_ model: DiffusionModel, x: [Float], t: Int, labels: [Int32]?) -> [Float] {
        var out = [Float](repeating: .nan, count: x.count)
        let ts = [Int32](repeating: Int32(t), count: x.count / D)
        var rng = Philox(seed: 0)
        withOptionalPointer(labels) { l in
            model.network.forward(&out, x: x, t: ts, labels: l, batch: x.count / D,
                                  params: model.network.parameters.values.pointer, training: false, rng: &rng)
        }
        return out
    }

    func testGuidanceCombinesConditionalAndUnconditional() throws {
        let model = try makeModel()
        let x = uniforms(B * D, seed: 1, in: -2...2)
        let labels: [Int32] = [0, 1, 2, 1, 0]
        let null = [Int32](repeating: Int32(K), count: B)
        for t in [0, 37, 99] {
            let cond = direct(model, x: x, t: t, labels: labels)
            let uncond = direct(model, x: x, t: t, labels: null)
            // Guard: the test means something only if the two predictions differ.
            XCTAssertGreaterThan(maxAbsDiff(cond, uncond).value, 0.05, "t = \(t): conditional and unconditional differ")
            // No labels at all is the null label.
            assertClose(direct(model, x: x, t: t, labels: nil), uncond, abs: 0, "t = \(t): labels nil = null label K")

            let w0 = try predict(model, x: x, t: t, labels: labels, w: 0)
            assertClose(w0, uncond, abs: 1e-6, "t = \(t): w = 0 is the unconditional prediction")
            assertClose(w0, try predict(model, x: x, t: t, labels: nil, w: 1), abs: 1e-6, "t = \(t): w = 0 equals labels nil")

            let w1 = try predict(model, x: x, t: t, labels: labels, w: 1)
            assertClose(w1, cond, abs: 1e-6, "t = \(t): w = 1 is the conditional prediction")

            for w: Float in [2, 0.5, -1, 7.5] {
                let got = try predict(model, x: x, t: t, labels: labels, w: w)
                let want = (0..<B * D).map { Double(uncond[$0]) + Double(w) * (Double(cond[$0]) - Double(uncond[$0])) }
                assertClose(got, want, abs: 2e-5 * Double(max(1, abs(w))), "t = \(t): w = \(w) is uncond + w(cond − uncond)")
            }
            // Labels nil ignore the guidance scale (there is nothing to guide towards).
            assertClose(try predict(model, x: x, t: t, labels: nil, w: 3), uncond, abs: 1e-6, "t = \(t): w with no labels")
        }
    }

    /// The EMA weights are used by default; right after creation they equal the initial weights,
    /// so after overwriting the live weights the two predictions differ.
    func testUseEMASelectsWeights() throws {
        let model = try makeModel()  // live weights overwritten, EMA still the initial ones
        let x = uniforms(B * D, seed: 2)
        let live = try predict(model, x: x, t: 10, labels: nil, w: 1, useEMA: false)
        let ema = try predict(model, x: x, t: 10, labels: nil, w: 1, useEMA: true)
        XCTAssertGreaterThan(maxAbsDiff(live, ema).value, 1e-3)
        assertClose(live, direct(model, x: x, t: 10, labels: nil), abs: 0, "useEMA false is the live weights")
    }

    func testPredictEpsilonRejectsBadArguments() throws {
        let model = try makeModel()
        let x = uniforms(B * D, seed: 3)
        assertInvalidArgument("label > K") { try predict(model, x: x, t: 5, labels: [0, 1, 2, 4, 0], w: 2) }
        assertInvalidArgument("t = T") { try predict(model, x: x, t: 100, labels: nil, w: 1) }
        assertInvalidArgument("t = -1") { try predict(model, x: x, t: -1, labels: nil, w: 1) }
        assertInvalidArgument("w NaN") { try predict(model, x: x, t: 5, labels: [0, 1, 2, 3, 0], w: .nan) }
        var bad = x
        bad[2] = .nan
        assertNonFinite("NaN x") { try predict(model, x: bad, t: 5, labels: nil, w: 1) }
    }

    /// While sampling (all rows share t) the network computes the time embedding once and
    /// copies it; the result must equal the per-row path used in training.
    func testSharedTimestepPathEqualsPerRowPath() throws {
        var rng = Philox(seed: 4)
        let net = try ResidualMLP(.init(dataDim: 5, hidden: 24, depth: 2, timeEmbedDim: 16), conditioning: .classes(3), timesteps: 100, rng: &rng)
        let B = 6
        var x = [Float](repeating: 0, count: B * 5)
        x.withUnsafeMutableBufferPointer { rng.fillNormal($0.baseAddress!, count: B * 5) }
        let t = [Int32](repeating: 37, count: B), labels: [Int32] = [0, 1, 2, 3, 0, 1]
        var shared = [Float](repeating: 0, count: B * 5), perRow = shared
        let p = net.parameters.values.pointer
        net.forward(&shared, x: x, t: t, labels: labels, batch: B, params: p, training: false, rng: &rng)
        net.forward(&perRow, x: x, t: t, labels: labels, batch: B, params: p, training: true, rng: &rng)
        assertClose(shared, perRow, abs: 1e-5, "shared-t forward vs per-row forward (BLAS may round a 1-row GEMM differently)")
    }
}
