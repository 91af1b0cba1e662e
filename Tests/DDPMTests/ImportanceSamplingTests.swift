// Importance-sampled timesteps (improved-diffusion's loss-second-moment resampler): the
// distribution against its formula, the draws against the distribution, the weights making
// the expected loss the uniform one, and training that resumes exactly from a checkpoint.
import XCTest
@testable import DDPM

final class ImportanceSamplingTests: TemporaryFolderTestCase {
    /// p_t = (1 − u)·√(mean L_t²)/Σ√(mean L²) + u/T, u = 0.001, from a known history.
    func testProbabilitiesAndDrawsFollowTheFormula() {
        let T = 5, H = LossSecondMomentResampler.historyPerTerm
        let r = LossSecondMomentResampler(timesteps: T)
        var t = [Int32](), losses = [Double]()
        for ti in 0..<T { for k in 0..<H { t.append(Int32(ti)); losses.append(Double(ti + 1) * (k % 2 == 0 ? 1 : 2)) } }
        XCTAssertNil(r.probabilities(), "uniform before every t has \(H) losses")
        r.update(t: t, losses: losses, batch: t.count)
        // The losses of t alternate (t+1) and 2(t+1): mean of the squares (t+1)²·(1 + 4)/2.
        var rms = [Double]()
        for ti in 0..<T {
            let a = Double(ti + 1)
            rms.append((a * a * 2.5).squareRoot())
        }
        let total = rms.reduce(0, +)
        let want: [Double] = rms.map { 0.999 * $0 / total + 0.001 / Double(T) }
        let p = r.probabilities()!
        assertClose(p, want, abs: 1e-12, "p_t")
        // Draws over a fine grid of u land on t as often as p says; each weight is 1/(T·p_t),
        // so Σ_t p_t·w_t·L_t is the uniform mean of L_t.
        let n = 100_000
        var counts = [Int](repeating: 0, count: T), weighted = 0.0
        let L = [3.0, 1.0, 4.0, 1.0, 5.0]
        for k in 0..<n {
            let (ti, w) = r.draw(Float((Double(k) + 0.5) / Double(n)))
            counts[ti] += 1
            weighted += Double(w) * L[ti]
        }
        assertClose(counts.map { Double($0) / Double(n) }, p, abs: 1e-4, "draw frequencies")
        XCTAssertEqual(weighted / Double(n), L.reduce(0, +) / Double(T), accuracy: 1e-3, "importance weights unbias the loss")
        // Later losses push the oldest out.
        r.update(t: [0], losses: [100], batch: 1)
        XCTAssertEqual(r.history[H - 1], 100)
        XCTAssertGreaterThan(r.probabilities()![0], p[0])
    }

    func makeModel() throws -> DiffusionModel {
        var training = TrainingConfig()
        (training.seed, training.timestepSampling) = (4, .importance)
        return try DiffusionModel(schedule: try .linear(steps: 50, scaleToSteps: true),
                                  network: .mlp(.init(dataDim: 2, hidden: 16, depth: 1)), training: training)
    }

    /// Training with importance sampling: finite, non-uniform t after warm-up, and a checkpoint
    /// keeps the history so that a resumed run matches an uninterrupted one bit for bit.
    func testTrainingResumesWithItsLossHistory() throws {
        let (a, b) = (try makeModel(), try makeModel())
        func batch(_ k: Int) -> [Float] { normals(64, seed: UInt64(300 + k)).map { 0.5 * $0 } }
        for k in 0..<60 { _ = try a.trainStep(x0: batch(k)); _ = try b.trainStep(x0: batch(k)) }
        guard let p = a.resampler?.probabilities() else {
            return XCTFail("every one of 50 timesteps has 10 losses after 60 steps of 32 samples (counts \(a.resampler!.counts))")
        }
        XCTAssertGreaterThan(p.max()! / p.min()!, 1.5, "t is no longer uniform: \(p)")
        try b.save(to: dir + "/b.safetensors")
        let c = try DiffusionModel.load(from: dir + "/b.safetensors")
        XCTAssertEqual(c.resampler!.history, b.resampler!.history)
        var (la, lc) = ([Float](), [Float]())
        for k in 60..<65 { la.append(try a.trainStep(x0: batch(k))); lc.append(try c.trainStep(x0: batch(k))) }
        XCTAssertEqual(la.map(\.bitPattern), lc.map(\.bitPattern), "resumed losses are the uninterrupted ones")
        XCTAssertTrue(la.allSatisfy(\.isFinite))
        assertInvalidArgument("not across shards") { try a.computeGradients(x0: batch(0), labels: nil, batch: 16, globalBatch: 32) }
    }
}
