// The data-parallel seam (issue 12): draws keyed by (seed, step, global sample index), the
// compute / reduce / apply split of a train step, and sharded sampling. Two "workers" are
// two models with the same seed in one process; the reduction is their gradient sum.
import XCTest
@testable import DDPM

final class DataParallelTests: XCTestCase {
    func mlpModel(numClasses: Int = 0, seed: UInt64 = 21) throws -> DiffusionModel {
        var training = TrainingConfig()
        training.seed = seed
        training.optimizer.learningRate = 2e-3
        return try DiffusionModel(schedule: try NoiseSchedule.linear(steps: 100, scaleToSteps: true),
                                  network: .mlp(ResidualMLP.Config(dataDim: 3, hidden: 16, depth: 2)),
                                  training: training, conditioning: numClasses > 0 ? .classes(numClasses) : .none)
    }

    func unetModel() throws -> DiffusionModel {
        let config = UNetConfig(channels: 1, height: 4, width: 4, baseChannels: 4, channelMult: [1], resBlocks: 1,
                                attentionLevels: [], attentionHeads: 1, groups: 2, dropout: 0.5, timeEmbedDim: 8)
        var training = TrainingConfig()
        training.seed = 5
        return try DiffusionModel(schedule: try NoiseSchedule.linear(steps: 50, scaleToSteps: true),
                                  network: .unet(config), training: training)
    }

    /// Runs computeGradients on x0 rows first..<first+count (global batch B) and returns
    /// (loss term, gradients, t, ε) copies.
    func shard(_ m: DiffusionModel, _ x0: [Float], labels: [Int32]? = nil, first: Int, count: Int, of B: Int)
        throws -> (loss: Float, grads: [Float], t: [Int32], eps: [Float], out: [Float]) {
        let S = m.network.sampleSize
        let loss = try x0.withUnsafeBufferPointer { x in
            try withOptionalPointer(labels) { l in
                try m.computeGradients(x0: x.baseAddress! + first * S, labels: l.map { $0 + first }, batch: count,
                                       sampleOffset: first, globalBatch: B)
            }
        }
        let b = m.buffers
        return (loss, Array(m.gradients), Array(UnsafeBufferPointer(start: b.t.pointer, count: count)),
                Array(UnsafeBufferPointer(start: b.eps.pointer, count: count * S)),
                Array(UnsafeBufferPointer(start: b.output.pointer, count: count * S)))
    }

    func testShardsDrawWhatTheWholeBatchDraws() throws {
        let (whole, worker) = (try mlpModel(numClasses: 2), try mlpModel(numClasses: 2))
        let B = 10, x0 = uniforms(B * 3, seed: 1)
        let labels: [Int32] = [0, 1, 2, 1, 0, 0, 1, 2, 1, 0]
        let all = try shard(whole, x0, labels: labels, first: 0, count: B, of: B)
        let a = try shard(worker, x0, labels: labels, first: 0, count: 4, of: B)
        XCTAssertEqual(a.t, Array(all.t[0..<4]), "t of samples 0..<4")
        XCTAssertEqual(a.eps, Array(all.eps[0..<12]), "ε of samples 0..<4")
        let b = try shard(worker, x0, labels: labels, first: 4, count: 6, of: B)
        XCTAssertEqual(b.t, Array(all.t[4...]), "t of samples 4..<10")
        XCTAssertEqual(b.eps, Array(all.eps[12...]), "ε of samples 4..<10")
        // The loss terms sum to the whole batch's mean, the gradient terms to its gradient
        // (up to the order of the float sums inside the GEMMs).
        XCTAssertEqual(Double(a.loss + b.loss), Double(all.loss), accuracy: 1e-6 * Double(all.loss))
        assertClose(zip(a.grads, b.grads).map { $0 + $1 }, all.grads, abs: 1e-6, "summed shard gradients")
        // Negative control: the next step draws other numbers.
        try whole.applyGradients()
        let next = try shard(whole, x0, labels: labels, first: 0, count: B, of: B)
        XCTAssertNotEqual(next.eps, all.eps, "step 1 must not repeat the draws of step 0")
    }

    func testDropoutMasksAreKeyedBySample() throws {
        // A UNet with dropout 0.5: a shard's outputs equal the whole batch's rows only if its
        // dropout masks are the whole batch's (sequential masks would repeat sample 0's).
        let (whole, worker) = (try unetModel(), try unetModel())
        let B = 4, S = 16, x0 = uniforms(B * S, seed: 2)
        let all = try shard(whole, x0, first: 0, count: B, of: B)
        let first = try shard(worker, x0, first: 0, count: 2, of: B)
        let second = try shard(worker, x0, first: 2, count: 2, of: B)
        // The network output (B, S) in sample order, rows 2..<4
        assertClose(second.out, Array(all.out[(2 * S)...]), abs: 1e-5, "outputs of samples 2, 3 in a shard")
        XCTAssertEqual(second.eps, Array(all.eps[(2 * S)...]))
        // The shards' gradients (convolutions, GroupNorm, dropout) sum to the whole batch's.
        let scale = all.grads.map { abs(Double($0)) }.max()!
        assertClose(zip(first.grads, second.grads).map { $0 + $1 }, all.grads, abs: 1e-5 * scale, "UNet shard gradients")
    }

    func testKeyedDrawsHaveTheRightDistribution() throws {
        // The keyed streams replace one sequential stream: over 4096 samples of one step, t is
        // uniform on 0..<100 and ε is N(0, 1), independent across samples and elements.
        let m = try mlpModel()
        let B = 4096, S = 3
        let r = try shard(m, uniforms(B * S, seed: 9), first: 0, count: B, of: B)
        var counts = [Int](repeating: 0, count: 100)
        for t in r.t { counts[Int(t)] += 1 }
        let chi2 = counts.reduce(0.0) { $0 + pow(Double($1) - 40.96, 2) / 40.96 }
        XCTAssertLessThan(chi2, 160, "χ² of t over 100 bins (99 dof; p ≈ 1e-4 at 160)")
        let n = Double(r.eps.count)
        let mean = r.eps.reduce(0.0) { $0 + Double($1) } / n
        let variance = r.eps.reduce(0.0) { $0 + pow(Double($1) - mean, 2) } / n
        XCTAssertEqual(mean, 0, accuracy: 4 / n.squareRoot(), "mean of ε")
        XCTAssertEqual(variance, 1, accuracy: 4 * (2 / n).squareRoot(), "variance of ε")
        // Lag-S correlation: the same element of neighbouring samples.
        var lag = 0.0
        for k in 0..<(r.eps.count - S) { lag += Double(r.eps[k]) * Double(r.eps[k + S]) }
        XCTAssertEqual(lag / n, 0, accuracy: 4 / n.squareRoot(), "correlation of neighbouring samples' ε")
    }

    func testTwoWorkersStayInStepWithOneProcess() throws {
        // 2 workers (shards of B/2, gradient sum as the allreduce) against one process with
        // batch B; and a "chunked" single process that sums the same two shard gradients in
        // the same order, which the workers must match bit for bit.
        let (one, w0, w1) = (try mlpModel(), try mlpModel(), try mlpModel())
        XCTAssertEqual(w0.parameterHash, one.parameterHash, "same seed, same initial parameters")
        let B = 16, S = 3
        var losses: (one: Float, two: Float) = (0, 0)
        for step in 0..<50 {
            let x0 = uniforms(B * S, seed: UInt64(100 + step))
            losses.one = try one.trainStep(x0: x0)
            let r0 = try shard(w0, x0, first: 0, count: B / 2, of: B)
            let r1 = try shard(w1, x0, first: B / 2, count: B / 2, of: B)
            let reduced = zip(r0.grads, r1.grads).map { $0 + $1 }
            for w in [w0, w1] { _ = w.gradients.update(from: reduced); try w.applyGradients() }
            losses.two = r0.loss + r1.loss
            if step % 10 == 9 { XCTAssertEqual(w0.parameterHash, w1.parameterHash, "workers equal at step \(step)") }
        }
        XCTAssertEqual(w0.step, 50)
        let (d, _) = maxAbsDiff(w0.network.parameters.valuesArray, one.network.parameters.valuesArray)
        print("[data-parallel] 50 steps, B = \(B): max |Δθ| 2 workers vs 1 process = \(d); last losses \(losses)")
        XCTAssertLessThan(d, 1e-4, "2 workers vs one process after 50 steps")
        XCTAssertEqual(Double(losses.two), Double(losses.one), accuracy: 1e-4)
    }

    func testApplyNeedsComputeAndFiniteGradients() throws {
        let m = try mlpModel()
        XCTAssertThrowsError(try m.applyGradients(), "apply before compute")
        let x0 = uniforms(8 * 3, seed: 3)
        _ = try shard(m, x0, first: 0, count: 8, of: 8)
        let before = m.network.parameters.valuesArray
        m.gradients[5] = .nan
        XCTAssertThrowsError(try m.applyGradients()) { XCTAssert("\($0)".contains("gradient")) }
        XCTAssertEqual(m.network.parameters.valuesArray, before, "a NaN reduction leaves the parameters unchanged")
        XCTAssertEqual(m.step, 0)
        XCTAssertThrowsError(try m.computeGradients(x0: x0, labels: nil, batch: 8, sampleOffset: 4, globalBatch: 10),
                             "shard outside the global batch")
    }

    func testShardedSamplingIsBitwiseTheWholeBatch() throws {
        let m = try mlpModel()
        for step in 0..<5 { _ = try m.trainStep(x0: uniforms(8 * 3, seed: UInt64(step))) }
        for method in [SamplingMethod.ddpm, .ddim] {
            var options = SamplerOptions()
            (options.method, options.seed, options.steps, options.eta) = (method, 17, 20, 1)
            let n = 2 * predictionChunk + 45  // 3 chunks; the second shard holds two, the last one short
            let whole = try m.sample(count: n, options: options)
            var pieces: [Float] = []
            for (first, count) in [(0, predictionChunk), (predictionChunk, predictionChunk + 45)] {
                (options.sampleOffset, options.globalBatch) = (first, n)
                pieces += try m.sample(count: count, options: options)
            }
            XCTAssertEqual(bitHash(pieces), bitHash(whole), "\(method): shards concatenated = one process")
        }
    }

    func testHeaderChunkIsTheEngines() throws {
        let header = try String(contentsOfFile: #filePath.replacingOccurrences(of: "Tests/DDPMTests/DataParallelTests.swift",
                                                                               with: "include/ddpm.h"), encoding: .utf8)
        XCTAssert(header.contains("#define DDPM_PREDICT_CHUNK \(predictionChunk)\n"), "ddpm.h names the engine's chunk")
    }

    func testPositionedNormalsAreASliceOfTheStream() {
        var stream = Philox(seed: 3, counter: 10)
        var all = [Float](repeating: 0, count: 23)
        stream.fillNormal(&all, count: 23)
        for first in [0, 1, 2, 3, 5, 11] {
            var part = [Float](repeating: 0, count: 23 - first)
            Philox.fillNormal(&part, count: part.count, seed: 3, base: 10, from: first)
            XCTAssertEqual(part, Array(all[first...]), "from position \(first)")
        }
    }
}
