// Issue 10, the engine's side: sizes bounded before anything is allocated, non-finite
// training steps refused without changing the model, schedules that underflow refused, and
// checkpoints whose configuration, tensors, values or counters are wrong refused with
// .format naming what is wrong. (Files themselves: SafeTensorsFileTests; every C export
// with bad input, in forked children: tests/c/bad_inputs.c and checkpoint_mutations.c.)
import XCTest
@testable import DDPM

final class HardeningTests: TemporaryFolderTestCase {

    // MARK: - Sizes

    func testOversizedConfigurationsAreRefusedWithTheBytesTheyNeed() throws {
        let schedule = try NoiseSchedule.linear(steps: 100)
        func message(_ config: NetworkConfig) -> String {
            do {
                _ = try DiffusionModel(schedule: schedule, network: config)
                return "accepted"
            } catch DDPMError.invalidArgument(let m) { return m } catch { return "\(error)" }
        }
        // Over the byte ceiling: the message gives the bytes and the limit.
        for config: NetworkConfig in [.mlp(.init(dataDim: 2, hidden: 1 << 16)), .mlp(.init(dataDim: 1 << 24, hidden: 1024)),
                                      .unet(.init(channels: 1, height: 4096, width: 4096))] {
            let m = message(config)
            XCTAssertTrue(m.contains("bytes") && m.contains("8589934592"), "\(config): \(m)")
        }
        // Beyond a field cap (the values that used to wrap the parameter count or abort).
        for (config, field): (NetworkConfig, String) in [
            (.mlp(.init(dataDim: Int.max)), "data_dim"), (.mlp(.init(dataDim: 2, hidden: 1 << 62)), "hidden"),
            (.mlp(.init(dataDim: 2, depth: 1 << 40)), "depth"), (.mlp(.init(dataDim: 2, timeEmbedDim: 1 << 40)), "time_embed_dim"),
            (.unet(.init(channels: 1, height: 8, width: 8, channelMult: [1, Int(Int32.max)], attentionLevels: [])), "channel_mult[1]"),
            (.unet(.init(channels: 1, height: 8, width: 8, baseChannels: 1 << 20)), "base_channels"),
            (.unet(.init(channels: 1, height: 8, width: 8, resBlocks: 1_000_000)), "res_blocks"),
            (.unet(.init(channels: 1 << 40, height: 8, width: 8)), "channels"),
        ] {
            XCTAssertTrue(message(config).contains(field), "\(config): \(message(config))")
        }
        // Wide but under the ceiling: made.
        XCTAssertEqual(message(.mlp(.init(dataDim: 1 << 16, hidden: 8, depth: 0, timeEmbedDim: 4))), "accepted")
    }

    func testOversizedBatchesAreRefusedBeforeAllocating() throws {
        let model = try DiffusionModel(schedule: try .linear(steps: 10), network: .mlp(.init(dataDim: 2, hidden: 8)))
        let x: [Float] = [0.5, -0.5]
        let B = 1 << 28  // x0 is never read: the size is refused first
        // Predictions run on fixed chunks (no buffer grows with B) except a learned variance's (B, S).
        var learned = TrainingConfig()
        learned.learnedVariance = true
        let varianceModel = try DiffusionModel(schedule: try .linear(steps: 10), network: .mlp(.init(dataDim: 2, hidden: 8)),
                                               training: learned)
        let huge = 1 << 31
        for (what, body) in [("train", { _ = try model.trainStep(x0: x, labels: nil, batch: B) }),
                             ("predict", { var out: Float = 0; try varianceModel.predict(&out, x: x, t: 0, labels: nil, batch: huge) }),
                             ("sample", { var out: Float = 0; try model.sample(into: &out, count: B) })] as [(String, () throws -> Void)] {
            XCTAssertThrowsError(try body(), what) { error in
                guard case DDPMError.invalidArgument(let m) = error else { return XCTFail("\(what): \(error)") }
                XCTAssertTrue(m.contains("bytes") && (m.contains("\(B)") || m.contains("\(huge)")), "\(what): \(m)")
            }
        }
        XCTAssertEqual(model.step, 0)
        _ = try model.trainStep(x0: x + x)  // still usable
    }

    func testUNetActivationEstimateBoundsTheAllocation() throws {
        let unet = try UNet(.init(channels: 1, height: 8, width: 8, baseChannels: 8, groups: 4), timesteps: 10, rng: &rng)
        for (B, training) in [(1, true), (3, true), (17, true), (5, false), (300, false)] {
            try unet.reserve(batch: B, training: training)
            let held = Double((unet.acts?.block?.count ?? 0) + (unet.work?.block?.count ?? 0))
            XCTAssertLessThanOrEqual(held, unet.activationFloats(batch: B, training: training), "B = \(B), training \(training)")
        }
    }
    var rng = Philox(seed: 1)

    // MARK: - Training

    /// The weights, EMA values and both moments.
    func state(_ model: DiffusionModel) -> [[Float]] {
        [model.network.parameters.valuesArray, model.emaValues, model.optimizer.m.array, model.optimizer.v.array]
    }
    func allFinite(_ model: DiffusionModel) -> Bool { state(model).allSatisfy { $0.allSatisfy(\.isFinite) } }
    let batch: [Float] = (0..<128).map { Float(($0 * 37) % 17) / 8 - 1 }

    /// lr = 3e38 is refused with nothing changed; lr = 100 for many steps never leaves a
    /// non-finite weight, EMA value or moment (with clipping, a backward pass that overflows
    /// Float is run again scaled, so these steps go through); lr = 1e-3 then trains again.
    func testNonFiniteStepsAreRefusedAndTrainingRecovers() throws {
        let model = try DiffusionModel(schedule: try .linear(steps: 100),
                                       network: .mlp(.init(dataDim: 2, hidden: 32, depth: 2, timeEmbedDim: 8)))
        for _ in 0..<5 { _ = try model.trainStep(x0: batch) }
        let before = (state(model), model.step, model.optimizer.step)
        try model.setLearningRate(3e38)
        XCTAssertThrowsError(try model.trainStep(x0: batch)) { error in
            guard case DDPMError.nonFinite(let m) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(m.contains("not applied") && m.contains("learning rate") && m.contains("'"), m)
        }
        XCTAssertEqual(state(model), before.0, "a refused step changes no parameter, EMA value or moment")
        XCTAssertEqual(model.step, before.1)
        XCTAssertEqual(model.optimizer.step, before.2)

        try model.setLearningRate(100)
        var (ok, refused) = (0, 0)
        for _ in 0..<300 {
            do { _ = try model.trainStep(x0: batch); ok += 1 } catch DDPMError.nonFinite { refused += 1 }
            XCTAssertTrue(allFinite(model), "after \(ok) applied and \(refused) refused steps at lr = 100")
        }
        XCTAssertEqual(model.step, 5 + ok)

        try model.setLearningRate(1e-3)
        var losses: [Float] = []
        for _ in 0..<20 { if let l = try? model.trainStep(x0: batch) { losses.append(l) } }
        XCTAssertEqual(losses.count, 20, "with lr = 1e-3 every step trains again (\(refused) were refused at lr = 100)")
        XCTAssertTrue(losses.allSatisfy(\.isFinite) && allFinite(model))
    }

    /// Without clipping an overflowing gradient cannot be rescaled: such steps are refused,
    /// and the state stays finite whatever the learning rate does.
    func testWithoutClippingOverflowingGradientsAreRefused() throws {
        var training = TrainingConfig()
        training.gradClip = 0
        let model = try DiffusionModel(schedule: try .linear(steps: 100),
                                       network: .mlp(.init(dataDim: 2, hidden: 32, depth: 2, timeEmbedDim: 8)), training: training)
        try model.setLearningRate(100)
        var messages: [String] = []
        for _ in 0..<50 {
            do { _ = try model.trainStep(x0: batch) } catch DDPMError.nonFinite(let m) { messages.append(m) }
            XCTAssertTrue(allFinite(model))
        }
        XCTAssertFalse(messages.isEmpty, "lr = 100 without clipping should overflow at some step")
        XCTAssertTrue(messages.allSatisfy { $0.contains("not applied") }, "\(messages.first ?? "")")
    }

    // MARK: - Schedules

    func testSchedulesThatUnderflowAreRefused() throws {
        assertInvalidArgument("linear T = 100000") { try NoiseSchedule.linear(steps: 100_000) }
        assertInvalidArgument("custom 80000 × 0.01") { try NoiseSchedule(betas: [Double](repeating: 0.01, count: 80_000)) }
        assertInvalidArgument("T = 2^20 + 1") { try NoiseSchedule.linear(steps: (1 << 20) + 1, scaleToSteps: true) }
        assertInvalidArgument("1 − ᾱ_0 = 0") { try NoiseSchedule(betas: [1e-300, 0.1]) }
        // Just above the floor, every table and a whole DDPM and DDIM run stay finite.
        let T = 6873  // 0.99^6873 ≈ 1.0e-30
        let s = try NoiseSchedule(betas: [Double](repeating: 0.01, count: T))
        XCTAssertGreaterThanOrEqual(s.alphaBar[T - 1], Limits.minAlphaBar)
        for table in [s.sqrtRecipAlpha, s.posteriorVariance, s.posteriorLogVarianceClipped, s.posteriorMeanCoefX0,
                      s.posteriorMeanCoefXt] {
            XCTAssertTrue(table.allSatisfy(\.isFinite))
        }
        for method in [SamplingMethod.ddpm, .ddim] {
            var o = SamplerOptions()
            (o.method, o.steps) = (method, 50)
            var x = [Float](repeating: 0, count: 16)
            try s.sample(into: &x, count: 8, denoiser: ClosureDenoiser(sampleSize: 2) { out, x, _, _, b in
                for i in 0..<2 * b { out[i] = x[i] * 0.9 }
            }, options: o)
            XCTAssertTrue(x.allSatisfy(\.isFinite), "\(method): \(x)")
        }
        // With scale_to_steps a long schedule is fine.
        XCTAssertNoThrow(try NoiseSchedule.linear(steps: 100_000, scaleToSteps: true))
    }

    // MARK: - Checkpoints

    func makeModel(classes: Int = 0) throws -> DiffusionModel {
        try DiffusionModel(schedule: try .linear(steps: 20), network: .mlp(.init(dataDim: 2, hidden: 8, depth: 1, timeEmbedDim: 4)),
                           conditioning: classes > 0 ? .classes(classes) : .none)
    }

    /// Saves `model`, applies `edit` to its tensors and metadata, writes the result (with a
    /// fresh checksum) and returns the error loading it gives.
    func loadError(_ model: DiffusionModel,
                   _ edit: (inout [SafeTensors.Tensor], inout [String: String]) -> Void) throws -> DDPMError? {
        let path = dir + "/edited.safetensors"
        try model.save(to: path)
        let file = try SafeTensors.read(path: path)
        var (tensors, metadata) = (file.rawTensors(), file.metadata)
        edit(&tensors, &metadata)
        try SafeTensors.write(path: path, tensors: tensors, metadata: metadata)
        do { _ = try DiffusionModel.load(from: path) } catch let e as DDPMError { return e }
        return nil
    }

    func assertFormat(_ model: DiffusionModel, _ what: String, mentions: String, file: StaticString = #filePath,
                      line: UInt = #line, _ edit: (inout [SafeTensors.Tensor], inout [String: String]) -> Void) throws {
        let error = try loadError(model, edit)
        guard case .format(let m)? = error else {
            return XCTFail("\(what): expected .format, got \(error.map { "\($0)" } ?? "a loaded model")", file: file, line: line)
        }
        XCTAssertTrue(m.contains(mentions), "\(what): '\(m)' does not mention '\(mentions)'", file: file, line: line)
    }

    func testCheckpointTensorsMustMatchTheModelExactly() throws {
        let model = try makeModel()
        XCTAssertNil(try loadError(model) { _, _ in }, "an unedited file loads")
        let conditional = try makeModel(classes: 3)
        let stray = "model.class_embedding.weight"
        // A conditional model's class embedding in an unconditional one's file (was dropped silently).
        try assertFormat(model, "stray class embedding", mentions: stray) { t, _ in
            t.append(.init(name: stray, dtype: .f32, shape: [4, 8], bytes: [UInt8](repeating: 0, count: 128)))
        }
        try assertFormat(conditional, "class embedding removed", mentions: "ema.class_embedding.weight") { t, _ in
            t.removeAll { $0.name == "ema.class_embedding.weight" }
        }
        try assertFormat(model, "unknown tensor", mentions: "notes") { t, _ in
            t.append(.init(name: "notes", dtype: .u8, shape: [3], bytes: [1, 2, 3]))
        }
        try assertFormat(model, "F64 weight", mentions: "model.in_proj.bias") { t, _ in
            let i = t.firstIndex { $0.name == "model.in_proj.bias" }!
            t[i] = .init(name: t[i].name, dtype: .f64, shape: [4], bytes: t[i].bytes)
        }
        try assertFormat(model, "wrong shape", mentions: "optimizer.exp_avg.out_proj.weight") { t, _ in
            let i = t.firstIndex { $0.name == "optimizer.exp_avg.out_proj.weight" }!
            t[i].shape = [8, 2]
        }
    }

    func testNonFiniteOrNegativeStateIsRefusedNamingTheTensor() throws {
        let model = try makeModel()
        for (name, value) in [("model.blocks.0.fc1.weight", Float.nan), ("ema.out_proj.bias", .infinity),
                              ("optimizer.exp_avg.in_proj.weight", -.infinity), ("optimizer.exp_avg_sq.time.fc1.bias", -1),
                              ("optimizer.exp_avg_sq.in_proj.bias", .nan)] {
            try assertFormat(model, "\(name) = \(value)", mentions: name) { t, _ in
                let i = t.firstIndex { $0.name == name }!
                withUnsafeBytes(of: value) { t[i].bytes.replaceSubrange(4..<8, with: $0) }
            }
        }
        // -0 is a valid second moment.
        XCTAssertNil(try loadError(model) { t, _ in
            let i = t.firstIndex { $0.name == "optimizer.exp_avg_sq.time.fc1.bias" }!
            withUnsafeBytes(of: Float(-0.0)) { t[i].bytes.replaceSubrange(0..<4, with: $0) }
        })
    }

    func testCountersAndVersionsMustBeExact() throws {
        let model = try makeModel()
        for (key, value) in [("step", "9223372036854775807"), ("step", "-1"), ("step", "+1"), ("step", "01"), ("step", " 1"),
                             ("optimizer_step", "9223372036854775807"), ("optimizer_step", "9007199254740993"),
                             ("rng_counter", "x"), ("rng_counter", "18446744073709551616"), ("rng_seed", "-0")] {
            try assertFormat(model, "\(key) = \(value)", mentions: key) { _, m in m[key] = value }
        }
        for version in ["0", "-1", "+1", "01", "3", "2.0", ""] {
            try assertFormat(model, "format_version '\(version)'", mentions: "format version") { _, m in m["format_version"] = version }
        }
        XCTAssertNil(try loadError(model) { _, m in m["step"] = "9007199254740992"; m["optimizer_step"] = "7" })
    }

    func testConfigurationBoundsAreCheckedBeforeBuilding() throws {
        let model = try makeModel()
        for (field, old, new) in [("data_dim", 2, "9223372036854775807"), ("hidden", 8, "4611686018427387904"), ("depth", 1, "-1"),
                                  ("time_embed_dim", 4, "2147483647")] {
            try assertFormat(model, "\(field) = \(new)", mentions: field) { _, m in
                m["network"] = m["network"]!.replacingOccurrences(of: "\"\(field)\":\(old)", with: "\"\(field)\":\(new)")
            }
        }
        let unet = try DiffusionModel(schedule: try .linear(steps: 10),
                                      network: .unet(.init(channels: 1, height: 8, width: 8, baseChannels: 8, channelMult: [1, 2],
                                                           attentionLevels: [], groups: 4)))
        try assertFormat(unet, "channel_mult [1, INT32_MAX]", mentions: "channel_mult[1]") { _, m in
            m["network"] = m["network"]!.replacingOccurrences(of: "\"channel_mult\":[1,2]", with: "\"channel_mult\":[1,2147483647]")
        }
        try assertFormat(model, "schedule that underflows", mentions: "DDPM_MIN_ALPHA_BAR") { t, _ in
            let i = t.firstIndex { $0.name == "schedule.betas" }!
            t[i] = .init("schedule.betas", doubles: [Double](repeating: 0.5, count: 200))
        }
    }
}
