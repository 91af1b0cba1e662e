// Issue 19, the engine's findings: a refused step leaves importance sampling's loss history
// as it was and a loaded history is bounded (3); one exploding update is refused so that
// training can go on (9); step counters stop at what a checkpoint holds, gradients beyond
// √Float.max are clipped rather than refused (10; main's Double sum of squares now does it). Each test has a control that trains, so a
// refusal cannot come from a broken fixture, and each failed before its fix.
import XCTest
@testable import DDPM

final class HardeningRound2Tests: TemporaryFolderTestCase {
    func mlp(_ training: TrainingConfig = TrainingConfig()) throws -> DiffusionModel {
        try DiffusionModel(schedule: try .linear(steps: 20), network: .mlp(.init(dataDim: 2, hidden: 16, depth: 2, timeEmbedDim: 8)),
                           training: training)
    }
    let batch: [Float] = (0..<64).map { Float(($0 * 37) % 17) / 8 - 1 }

    /// Parameters, EMA weights and both AdamW moments.
    func state(_ m: DiffusionModel) -> [[Float]] {
        [m.network.parameters.valuesArray, m.emaValues, m.optimizer.m.array, m.optimizer.v.array]
    }

    /// A checkpoint of `model` with metadata edited and tensors replaced, checksum recomputed.
    func edited(_ model: DiffusionModel, _ name: String, metadata: [String: String] = [:],
                tensors replace: [String: [Double]] = [:]) throws -> String {
        let path = dir + "/" + name
        try model.save(to: path)
        let file = try SafeTensors.read(path: path)
        let tensors = file.rawTensors().map { t in replace[t.name].map { SafeTensors.Tensor(t.name, doubles: $0) } ?? t }
        try SafeTensors.write(path: path, tensors: tensors, metadata: file.metadata.merging(metadata) { $1 })
        return path
    }

    // MARK: - 3. Importance sampling

    func importanceModel() throws -> DiffusionModel {
        var training = TrainingConfig()
        (training.timestepSampling, training.target, training.seed) = (.importance, .x0, 3)
        return try DiffusionModel(schedule: try .linear(steps: 4), network: .mlp(.init(dataDim: 2, hidden: 8, depth: 1, timeEmbedDim: 4)),
                                  training: training)
    }

    /// A step refused for its loss (x0 = 1e30 with the x0 target: (x̂0 − x0)² overflows) or for
    /// its update leaves the history and counts as they were, and the model saves a file that
    /// loads. Before the fix the refused step's infinite loss went into the history, and the
    /// saved file was refused ("the resampler's loss history is not valid").
    func testARefusedStepLeavesTheLossHistoryUnchanged() throws {
        let model = try importanceModel()
        for _ in 0..<3 { _ = try model.trainStep(x0: batch) }
        let resampler = try XCTUnwrap(model.resampler)
        let (history, counts) = (resampler.history, resampler.counts)
        XCTAssertGreaterThan(counts.reduce(0, +), 0, "control: applied steps record losses")

        assertNonFinite("x0 = 1e30: the loss overflows") { try model.trainStep(x0: batch.map { $0 * 1e30 }) }
        XCTAssertEqual(resampler.history, history, "a step refused for its loss records nothing")
        XCTAssertEqual(resampler.counts, counts)

        try model.setLearningRate(1e6)
        assertNonFinite("lr = 1e6: an exploding update") { try model.trainStep(x0: batch) }
        XCTAssertEqual(resampler.history, history, "a step refused at its update records nothing")
        XCTAssertEqual(resampler.counts, counts)

        try model.setLearningRate(1e-3)
        for _ in 0..<50 { _ = try model.trainStep(x0: batch) }
        let path = dir + "/resampler.safetensors"
        try model.save(to: path)
        let loaded = try DiffusionModel.load(from: path)
        XCTAssertEqual(loaded.resampler?.history, resampler.history)
        XCTAssertNotNil(resampler.probabilities(), "warm after 53 applied steps of 32 samples over T = 4")
    }

    /// A loaded history must be finite, ≥ 0 and at most maxLoss: a crafted one of 1e200 loaded
    /// before the fix and then made every step non-finite (Σ L² overflowed, p was NaN).
    func testALoadedLossHistoryIsBounded() throws {
        let model = try importanceModel()
        for _ in 0..<60 { _ = try model.trainStep(x0: batch) }
        let resampler = try XCTUnwrap(model.resampler)
        XCTAssertTrue(resampler.isWarm)
        let n = resampler.history.count
        for value in [1e200, .infinity, -1, .nan] {
            let path = try edited(model, "bad-\(value).safetensors",
                                  tensors: ["resampler.loss_history": [Double](repeating: value, count: n)])
            XCTAssertThrowsError(try DiffusionModel.load(from: path), "history of \(value)") { error in
                guard case DDPMError.format(let m)? = error as? DDPMError else { return XCTFail("\(error)") }
                XCTAssertTrue(m.contains("loss history"), m)
            }
        }
        // At the bound itself it loads, draws a distribution and trains.
        let bound = LossSecondMomentResampler.maxLoss
        let path = try edited(model, "bound.safetensors", tensors: ["resampler.loss_history": [Double](repeating: bound, count: n)])
        let loaded = try DiffusionModel.load(from: path)
        let p = try XCTUnwrap(loaded.resampler?.probabilities())
        XCTAssertTrue(p.allSatisfy { $0.isFinite && $0 > 0 } && abs(p.reduce(0, +) - 1) < 1e-12, "\(p)")
        for _ in 0..<5 { XCTAssertTrue(try loaded.trainStep(x0: batch).isFinite) }
    }

    // MARK: - 9. Divergence

    /// One step at lr = 1e6 used to be applied (weights of about 1e6, finite) and every later
    /// step refused, even at lr = 1e-4. Now that update is refused as exploding, nothing
    /// changes, and training goes on at a sane rate.
    func testAnExplodingUpdateIsRefusedAndTrainingGoesOn() throws {
        let model = try mlp()
        for _ in 0..<3 { _ = try model.trainStep(x0: batch) }
        let before = (state(model), model.step, model.optimizer.step)
        for lr: Float in [1e6, 1e4, 1e3] {
            try model.setLearningRate(lr)
            XCTAssertThrowsError(try model.trainStep(x0: batch), "lr = \(lr)") { error in
                guard case DDPMError.nonFinite(let m)? = error as? DDPMError else { return XCTFail("\(error)") }
                XCTAssertTrue(m.contains("exploding") && m.contains("not applied"), m)
            }
            XCTAssertEqual(state(model), before.0, "lr = \(lr): nothing changed")
            XCTAssertEqual(model.step, before.1)
            XCTAssertEqual(model.optimizer.step, before.2)
        }
        try model.setLearningRate(1e-4)
        for _ in 0..<20 { XCTAssertTrue(try model.trainStep(x0: batch).isFinite, "training goes on at lr = 1e-4") }
        XCTAssertEqual(model.step, before.1 + 20)
        // Control: lr = 1 (large, but an update of the size of the weights) is applied.
        try model.setLearningRate(1)
        XCTAssertNoThrow(try model.trainStep(x0: batch))
    }

    // MARK: - 10. Counters and gradients

    /// Counters up to 2^53 load; a step that would pass 2^53 is refused, so that the model
    /// still saves a file that loads. Before the fix the step went through and the file it
    /// saved was refused (step 2^53 + 1).
    func testStepCountersStopAtWhatACheckpointHolds() throws {
        let model = try mlp()
        _ = try model.trainStep(x0: batch)
        let top = String(UInt64(1) << 53)
        let path = try edited(model, "top.safetensors", metadata: ["step": top, "optimizer_step": top])
        let loaded = try DiffusionModel.load(from: path)
        XCTAssertEqual(loaded.step, 1 << 53)
        XCTAssertThrowsError(try loaded.trainStep(x0: batch)) { error in
            guard case DDPMError.invalidArgument(let m)? = error as? DDPMError else { return XCTFail("\(error)") }
            XCTAssertTrue(m.contains("2^53"), m)
        }
        XCTAssertEqual(loaded.step, 1 << 53)
        try loaded.save(to: path)
        XCTAssertEqual(try DiffusionModel.load(from: path).step, 1 << 53, "what it saves loads")
        // Control: one below the top takes its last step.
        let below = try edited(model, "below.safetensors", metadata: ["step": String((UInt64(1) << 53) - 1)])
        let last = try DiffusionModel.load(from: below)
        _ = try last.trainStep(x0: batch)
        try last.save(to: below)
        XCTAssertEqual(try DiffusionModel.load(from: below).step, 1 << 53)
    }

    /// With clipping, gradients beyond √Float.max ≈ 1.8e19 (finite) are clipped like any other:
    /// before the fix each 4096-block's Σg² overflowed Float and the step was refused
    /// ("the gradient norm is inf"). A data-parallel caller can hand such gradients to apply.
    func testFiniteGradientsBeyondFloatSquareRangeAreClipped() throws {
        for g: Float in [1e20, 3e38] {
            let model = try mlp()
            _ = try model.computeGradients(x0: batch, labels: nil, batch: 32)
            let grads = model.gradients
            for i in grads.indices { grads[i] = i % 2 == 0 ? g : -g }
            let before = model.network.parameters.valuesArray
            XCTAssertNoThrow(try model.applyGradients(), "gradients of \(g)")
            let after = model.network.parameters.valuesArray
            XCTAssertEqual(model.step, 1)
            XCTAssertTrue(after.allSatisfy(\.isFinite))
            // Adam's first step moves each weight by about lr against the gradient's sign.
            let moved = zip(before, after).map { Double($1 - $0) }
            XCTAssertEqual(moved.map(abs).max()!, 1e-3, accuracy: 1e-4, "gradients of \(g)")
        }
        // The norm itself: √(P·g²) = g·√P, finite although g² is not a Float.
        let values = [Float](repeating: 2e19, count: 10_000)
        let clip = values.withUnsafeBufferPointer { GradientClipping.scale($0.baseAddress!, count: 10_000, maxNorm: 1) }
        XCTAssertEqual(clip.norm / (2e19 * 100), 1, accuracy: 1e-6)
        XCTAssertFalse((Float(2e19) * Float(2e19)).isFinite, "control: the square overflows Float")
    }

    // MARK: - 9. The sizes the update check returns

    /// Σ(θ' − θ)² and Σθ² from the check's pass (ddpm_adamw_first_nonfinite) against the update
    /// applied to a copy and summed in Double (P = 1005: whole vectors and a tail).
    func testUpdateSizesAreThoseOfTheAppliedUpdate() throws {
        let P = 1005
        let optimizer = try AdamW(config: AdamWConfig(learningRate: 0.3, weightDecay: 0.01), count: P)
        let (params, grads, ema) = (normals(P, seed: 1), normals(P, seed: 2), normals(P, seed: 3))
        var sizes = (update: 0.0, params: 0.0)
        XCTAssertNil(optimizer.firstNonFinite(params, grads: grads, gradScale: 0.7, ema: ema, emaDecay: 0.9, sizes: &sizes))
        var updated = params
        optimizer.update(&updated, grads: grads, gradScale: 0.7)
        let update = zip(updated, params).reduce(0.0) { $0 + Double($1.0 - $1.1) * Double($1.0 - $1.1) }
        let weights = params.reduce(0.0) { $0 + Double($1) * Double($1) }
        XCTAssertGreaterThan(update, 0)
        XCTAssertEqual(sizes.update / update, 1, accuracy: 1e-5)
        XCTAssertEqual(sizes.params / weights, 1, accuracy: 1e-5)
    }
}
