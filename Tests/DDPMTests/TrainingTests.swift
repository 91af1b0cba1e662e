// DiffusionModel.trainStep (DDPM Algorithm 1): determinism, learning, argument checks,
// and the optimizer pieces (AdamW, EMA, clipping, loss) against their formulas.
import XCTest
@testable import DDPM

final class TrainingTests: XCTestCase {
    func makeModel(seed: UInt64, numClasses: Int = 0, lr: Float = 1e-3, steps: Int = 100) throws -> DiffusionModel {
        var training = TrainingConfig()
        training.seed = seed
        training.optimizer.learningRate = lr
        return try DiffusionModel(schedule: try NoiseSchedule.linear(steps: steps, scaleToSteps: true),
                                  network: .mlp(ResidualMLP.Config(dataDim: 2, hidden: 32, depth: 2)),
                                  training: training,
                                  conditioning: numClasses > 0 ? .classes(numClasses) : .none)
    }

    /// Four 2-D Gaussian blobs (centres (±1.5, ±1.5), std 0.15), B rows, drawn with `seed`.
    func blobs(_ B: Int, seed: UInt64) -> [Float] {
        let z = normals(2 * B, seed: seed)
        var rng = Philox(seed: seed ^ 0xB10B)
        var k = [Int32](repeating: 0, count: B)
        k.withUnsafeMutableBufferPointer { rng.fillUniformInt($0.baseAddress!, count: B, below: 4) }
        var x = [Float](repeating: 0, count: 2 * B)
        for b in 0..<B {
            x[2 * b] = (k[b] & 1 == 0 ? -1.5 : 1.5) + 0.15 * z[2 * b]
            x[2 * b + 1] = (k[b] & 2 == 0 ? -1.5 : 1.5) + 0.15 * z[2 * b + 1]
        }
        return x
    }

    func testTrainStepIsDeterministicGivenSeed() throws {
        let x = blobs(32, seed: 1)
        let (a, b, c) = (try makeModel(seed: 42), try makeModel(seed: 42), try makeModel(seed: 43))
        XCTAssertEqual(a.network.parameters.valuesArray, b.network.parameters.valuesArray, "same seed, same initial weights")
        XCTAssertNotEqual(a.network.parameters.valuesArray, c.network.parameters.valuesArray, "different seed, different weights")
        var (la, lb, lc): ([Float], [Float], [Float]) = ([], [], [])
        for _ in 0..<20 {
            la.append(try a.trainStep(x0: x))
            lb.append(try b.trainStep(x0: x))
            lc.append(try c.trainStep(x0: x))
        }
        XCTAssertEqual(la.map(\.bitPattern), lb.map(\.bitPattern), "bitwise identical loss sequences")
        XCTAssertEqual(a.network.parameters.valuesArray, b.network.parameters.valuesArray, "bitwise identical weights after 20 steps")
        XCTAssertEqual(a.emaValues, b.emaValues, "bitwise identical EMA")
        XCTAssertNotEqual(la, lc, "a different seed gives a different loss sequence")
        XCTAssertEqual(a.step, 20)
        XCTAssertTrue(la.allSatisfy { $0.isFinite && $0 > 0 })
    }

    /// Loss on 4 blobs falls over 300 steps: mean of the last 50 < 0.75 × mean of the first 50
    /// (t is random per step, so single losses are noisy).
    func testLossDecreasesOnBlobs() throws {
        let model = try makeModel(seed: 7, lr: 3e-3)
        var losses: [Float] = []
        for step in 0..<300 { losses.append(try model.trainStep(x0: blobs(128, seed: UInt64(1000 + step)))) }
        let first = losses.prefix(50).reduce(0, +) / 50, last = losses.suffix(50).reduce(0, +) / 50
        print("[training] mean loss first 50 steps \(first), last 50 steps \(last)")
        XCTAssertLessThan(last, 0.75 * first, "loss fell from \(first) to \(last)")
        // The EMA moved away from the initial weights, towards the live ones.
        let live = model.network.parameters.valuesArray, ema = model.emaValues
        XCTAssertNotEqual(live, ema)
        XCTAssertTrue(ema.allSatisfy { $0.isFinite })
    }

    /// A conditional model trains with labels (including the null label K) and without.
    /// Class k's data is blob k (k = 0..3); after training with labels, guided samples of
    /// label k land at blob k's centre, not at the others (so the labels reach the network).
    func testConditionalTrainingLearnsTheLabels() throws {
        let model = try makeModel(seed: 3, numClasses: 4, lr: 3e-3)
        let centres: [(Float, Float)] = [(-1.5, -1.5), (1.5, -1.5), (-1.5, 1.5), (1.5, 1.5)]
        let B = 128
        let labels = (0..<B).map { Int32($0 % 4) }
        for step in 0..<400 {
            let z = normals(2 * B, seed: UInt64(5000 + step))
            var x = [Float](repeating: 0, count: 2 * B)
            for b in 0..<B {
                let c = centres[b % 4]
                (x[2 * b], x[2 * b + 1]) = (c.0 + 0.15 * z[2 * b], c.1 + 0.15 * z[2 * b + 1])
            }
            _ = try model.trainStep(x0: x, labels: labels)
        }
        XCTAssertNoThrow(try model.trainStep(x0: blobs(8, seed: 2), labels: nil), "unlabelled rows train as the null class")
        XCTAssertEqual(model.step, 401)
        var options = SamplerOptions()
        (options.method, options.steps, options.seed) = (.ddim, 25, 8)
        for k in 0..<4 {
            let n = 64
            let x = try model.sample(count: n, labels: [Int32](repeating: Int32(k), count: n), options: options,
                                     predict: PredictOptions(guidanceScale: 2))
            let mx = stride(from: 0, to: 2 * n, by: 2).map { x[$0] }.reduce(0, +) / Float(n)
            let my = stride(from: 1, to: 2 * n, by: 2).map { x[$0] }.reduce(0, +) / Float(n)
            let dist = centres.map { ((mx - $0.0) * (mx - $0.0) + (my - $0.1) * (my - $0.1)).squareRoot() }
            print("[training] label \(k): sample mean (\(mx), \(my)), distances to the centres \(dist)")
            XCTAssertLessThan(dist[k], 0.5, "label \(k): samples centre near blob \(k)")
            for j in 0..<4 where j != k { XCTAssertGreaterThan(dist[j], 2, "label \(k): samples far from blob \(j)") }
        }
    }

    func testBadTrainingInputsThrow() throws {
        let cond = try makeModel(seed: 1, numClasses: 3)
        let x = blobs(4, seed: 5)
        assertInvalidArgument("label > K") { try cond.trainStep(x0: x, labels: [0, 1, 4, 0]) }
        assertInvalidArgument("label < 0") { try cond.trainStep(x0: x, labels: [0, -1, 2, 0]) }
        assertInvalidArgument("labels count ≠ B") { try cond.trainStep(x0: x, labels: [0, 1]) }
        let uncond = try makeModel(seed: 1)
        assertInvalidArgument("labels for an unconditional model") { try uncond.trainStep(x0: x, labels: [0, 0, 0, 0]) }
        var nanX = x
        nanX[3] = .nan
        assertNonFinite("NaN x0") { try uncond.trainStep(x0: nanX) }
        var infX = x
        infX[0] = .infinity
        assertNonFinite("inf x0") { try uncond.trainStep(x0: infX) }
        assertInvalidArgument("empty batch") { try uncond.trainStep(x0: []) }
        assertInvalidArgument("x0 not a multiple of D") { try uncond.trainStep(x0: [1, 2, 3]) }
        // Rejected calls leave the model untouched.
        XCTAssertEqual(uncond.step, 0)
        XCTAssertEqual(cond.step, 0)
        let before = uncond.network.parameters.valuesArray
        _ = try? uncond.trainStep(x0: nanX)
        XCTAssertEqual(uncond.network.parameters.valuesArray, before)
    }

    func testInvalidTrainingConfigThrows() throws {
        let schedule = try NoiseSchedule.linear(steps: 100, scaleToSteps: true)
        let net = NetworkConfig.mlp(.init(dataDim: 2, hidden: 8, depth: 1))
        var c = TrainingConfig()
        c.optimizer.learningRate = 0
        assertInvalidArgument("lr = 0") { try DiffusionModel(schedule: schedule, network: net, training: c) }
        c = TrainingConfig(); c.emaDecay = 1.5
        assertInvalidArgument("ema decay > 1") { try DiffusionModel(schedule: schedule, network: net, training: c) }
        c = TrainingConfig(); c.labelDropout = -0.1
        assertInvalidArgument("label dropout < 0") { try DiffusionModel(schedule: schedule, network: net, training: c) }
        c = TrainingConfig(); c.optimizer.beta1 = 1
        assertInvalidArgument("beta1 = 1") { try DiffusionModel(schedule: schedule, network: net, training: c) }
        assertInvalidArgument("odd time embedding") {
            try DiffusionModel(schedule: schedule, network: .mlp(.init(dataDim: 2, timeEmbedDim: 5)))
        }
        assertInvalidArgument("data dim 0") { try DiffusionModel(schedule: schedule, network: .mlp(.init(dataDim: 0))) }
        let model = try DiffusionModel(schedule: schedule, network: net)
        assertInvalidArgument("set lr NaN") { try model.setLearningRate(.nan) }
    }

    // MARK: - Optimizer pieces

    /// AdamW against PyTorch's update written out in Double, over 3 steps, with the clip
    /// factor applied to g. P = 19 covers the 8-lane body and the scalar tail.
    func testAdamWMatchesFormula() {
        let P = 19
        let gradScale = 0.7
        let config = AdamWConfig(learningRate: 0.01, beta1: 0.8, beta2: 0.95, epsilon: 1e-6, weightDecay: 0.1)
        let opt = try! AdamW(config: config, count: P)
        var theta = uniforms(P, seed: 1)
        var (t64, m, v) = (theta.map(Double.init), [Double](repeating: 0, count: P), [Double](repeating: 0, count: P))
        for step in 1...3 {
            let g = uniforms(P, seed: UInt64(10 + step))
            opt.update(&theta, grads: g, gradScale: Float(gradScale))
            let (lr, b1, b2, eps, wd) = (0.01, 0.8, 0.95, 1e-6, 0.1)
            for i in 0..<P {
                t64[i] -= lr * wd * t64[i]
                let gi = Double(g[i]) * gradScale
                m[i] = b1 * m[i] + (1 - b1) * gi
                v[i] = b2 * v[i] + (1 - b2) * gi * gi
                let mhat = m[i] / (1 - pow(b1, Double(step))), vhat = v[i] / (1 - pow(b2, Double(step)))
                t64[i] -= lr * mhat / (vhat.squareRoot() + eps)
            }
            assertClose(theta, t64, abs: 2e-6, "AdamW after step \(step)")
        }
    }

    /// The EMA warm-up: update n uses d_n = min(d, (1+n)/(10+n)), so the first update keeps
    /// only 10% of the initial weights, and d itself is reached once (1+n)/(10+n) exceeds it.
    func testEMAWarmUp() throws {
        XCTAssertEqual(EMA.decay(0.999, afterSteps: 0), 0.1, accuracy: 1e-7)
        XCTAssertEqual(EMA.decay(0.999, afterSteps: 90), 0.91, accuracy: 1e-6)
        XCTAssertEqual(EMA.decay(0.9, afterSteps: 1000), 0.9, "capped at d")
        var training = TrainingConfig()
        training.emaDecay = 0.999
        let model = try DiffusionModel(schedule: try .linear(steps: 20),
                                       network: .mlp(.init(dataDim: 2, hidden: 8, depth: 1, timeEmbedDim: 4)),
                                       training: training)
        let initial = model.network.parameters.valuesArray
        _ = try model.trainStep(x0: [0.5, -0.5, 1, 0])
        let after = model.network.parameters.valuesArray
        let expected = zip(initial, after).map { 0.1 * $0 + 0.9 * $1 }
        assertClose(model.emaValues, expected, abs: 1e-6, "θ_ema after one step = 0.1 θ_0 + 0.9 θ_1")
    }

    func testEMAAndClippingAndLoss() {
        var ema: [Float] = [1, 2, 3]
        EMA.update(&ema, params: [3, 2, 1], count: 3, decay: 0.9)
        assertClose(ema, [1.2, 2, 2.8], abs: 1e-6, "θ_ema ← 0.9 θ_ema + 0.1 θ")

        // ‖g‖ = 5 over 11 entries (8-lane body + tail): factor 1/5 to reach unit norm.
        let g: [Float] = [3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4]
        let clipped = GradientClipping.scale(g, count: g.count, maxNorm: 1)
        XCTAssertEqual(clipped.norm, 5, accuracy: 1e-6, "the norm before clipping")
        XCTAssertEqual(clipped.scale, 0.2, accuracy: 1e-6, "factor to unit norm")
        XCTAssertEqual(GradientClipping.scale([0.3, 0.4], count: 2, maxNorm: 1).scale, 1, "below the limit: unchanged")
        let off = GradientClipping.scale([30, 40], count: 2, maxNorm: 0)
        XCTAssertEqual(off.norm, 50, accuracy: 1e-4)
        XCTAssertEqual(off.scale, 1, "maxNorm 0 only measures")

        let pred: [Float] = [1, 2, 3, 4], target: [Float] = [0, 2, 5, 3]
        var dout = [Float](repeating: 0, count: 4)
        let loss = SimpleLoss.forwardBackward(dout: &dout, predicted: pred, target: target, count: 4)
        XCTAssertEqual(loss, (1 + 0 + 4 + 1) / 4, accuracy: 1e-7)
        assertClose(dout, [0.5, 0, -1, 0.5], abs: 1e-7, "∂L/∂ε̂ = 2(ε̂ − ε)/N")
    }
}
