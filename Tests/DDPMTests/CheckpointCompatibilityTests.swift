// Checkpoints written by library 0.1 (format version 1, Fixtures/v1-*.safetensors, made by
// 0.1.0 itself) still load, with their configuration, and sample exactly as they did then;
// format 2 stores the configuration as JSON named as the C structs' fields.
import XCTest
@testable import DDPM

final class CheckpointCompatibilityTests: XCTestCase {
    let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

    /// DDIM-5 samples (seed 4) of each fixture, hashed by 0.1.0 when it wrote the file; re-pinned
    /// when the engine's own GEMM replaced OpenBLAS's (issue 18: the same bits on every CPU since).
    func testVersion1CheckpointsLoadAndSampleAsBefore() throws {
        let mlp = try DiffusionModel.load(from: fixtures.appendingPathComponent("v1-mlp.safetensors").path)
        XCTAssertEqual(mlp.network.config, .mlp(ResidualMLP.Config(dataDim: 3, hidden: 8, depth: 1, timeEmbedDim: 8)))
        XCTAssertEqual(mlp.conditioning, .classes(2))
        XCTAssertEqual(mlp.training.seed, 5)
        XCTAssertEqual(mlp.training.labelDropout, 0.2)
        XCTAssertEqual(mlp.training.optimizer.weightDecay, 0.01)
        XCTAssertEqual(mlp.schedule.kind, .cosine(offset: 0.008, maxBeta: 0.999))
        XCTAssertEqual(mlp.step, 3)
        var o = SamplerOptions()
        (o.seed, o.method, o.steps) = (4, .ddim, 5)
        XCTAssertEqual(bitHash(try mlp.sample(count: 2, labels: [1, 0], options: o)), 0x1323_31e9_2968_6aa7)

        let unet = try DiffusionModel.load(from: fixtures.appendingPathComponent("v1-unet.safetensors").path)
        guard case .unet(let u) = unet.network.config else { return XCTFail("the fixture is a UNet") }
        XCTAssertEqual([u.channels, u.height, u.width, u.baseChannels], [1, 4, 4, 4])
        XCTAssertEqual(u.channelMult, [1, 2])
        XCTAssertEqual(u.attentionLevels, [1])
        XCTAssertEqual(unet.conditioning, .none)
        XCTAssertEqual(unet.schedule.kind, .sigmoid(betaMin: 0, betaMax: 0.1, start: -6, end: 6))
        XCTAssertEqual(bitHash(try unet.sample(count: 2, options: o)), 0x0564_e56e_9859_6668)

        // Saved again, they are format 2 and load to the same model.
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("v1-resaved-\(getpid()).safetensors").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try mlp.save(to: path)
        XCTAssertEqual(try SafeTensors.read(path: path).metadata["format_version"], "2")
        let again = try DiffusionModel.load(from: path)
        XCTAssertEqual(again.network.config, mlp.network.config)
        XCTAssertEqual(again.training, mlp.training)
        XCTAssertEqual(again.conditioning, mlp.conditioning)
        XCTAssertEqual(bitHash(try again.sample(count: 2, labels: [1, 0], options: o)), 0x1323_31e9_2968_6aa7)
    }

    /// Checkpoints written by library 0.2.0 (format 2, Fixtures/v2-*.safetensors, made by 0.2.0
    /// itself with Fixtures/make_v2_fixtures.c) load with their configuration, the fields added
    /// since (cross_attention_levels) at their defaults, and every parameter bit as stored.
    func testVersion2CheckpointsOf0_2LoadAsStored() throws {
        let mlpPath = fixtures.appendingPathComponent("v2-mlp.safetensors").path
        let mlp = try DiffusionModel.load(from: mlpPath)
        XCTAssertEqual(mlp.network.config, .mlp(ResidualMLP.Config(dataDim: 3, hidden: 8, depth: 1, timeEmbedDim: 8)))
        XCTAssertEqual(mlp.conditioning, .classes(2))
        XCTAssertEqual([mlp.training.target], [.v])
        XCTAssertEqual([mlp.training.lossWeighting], [.minSNR])
        XCTAssertEqual([mlp.training.minSNRGamma, mlp.training.labelDropout, mlp.training.optimizer.weightDecay], [4, 0.2, 0.01])
        XCTAssertEqual(mlp.training.seed, 5)
        XCTAssertEqual(mlp.schedule.kind, .cosine(offset: 0.008, maxBeta: 0.999))
        XCTAssertEqual(mlp.step, 3)

        let unetPath = fixtures.appendingPathComponent("v2-unet.safetensors").path
        let unet = try DiffusionModel.load(from: unetPath)
        guard case .unet(let u) = unet.network.config else { return XCTFail("the fixture is a UNet") }
        XCTAssertEqual([u.channels, u.height, u.width, u.baseChannels, u.resBlocks, u.groups], [1, 4, 4, 4, 1, 2])
        XCTAssertEqual(u.channelMult, [1, 2])
        XCTAssertEqual(u.attentionLevels, [1])
        XCTAssertEqual(u.crossAttentionLevels, [], "absent in 0.2: none")
        XCTAssertEqual(unet.schedule.kind, .sigmoid(betaMin: 0, betaMax: 0.1, start: -6, end: 6))

        for (model, path) in [(mlp, mlpPath), (unet, unetPath)] {
            // Every weight and EMA value is the file's, read here on its own.
            let file = try SafeTensors.read(path: path)
            for e in model.network.parameters.layout.entries {
                let stored = try file.floats("model." + e.name, shape: e.shape), ema = try file.floats("ema." + e.name, shape: e.shape)
                XCTAssertEqual(Array(model.network.parameters.valuesArray[e.offset..<e.offset + e.count]).map(\.bitPattern),
                               stored.map(\.bitPattern), e.name)
                XCTAssertEqual(Array(model.emaValues[e.offset..<e.offset + e.count]).map(\.bitPattern), ema.map(\.bitPattern), e.name)
            }
            // Saved again (format 2 with today's fields), it loads to the same model.
            let again = FileManager.default.temporaryDirectory.appendingPathComponent("v2-resaved-\(getpid()).safetensors").path
            defer { try? FileManager.default.removeItem(atPath: again) }
            try model.save(to: again)
            let reloaded = try DiffusionModel.load(from: again)
            XCTAssertEqual(reloaded.network.config, model.network.config)
            XCTAssertEqual(reloaded.training, model.training)
            XCTAssertEqual(reloaded.network.parameters.valuesArray, model.network.parameters.valuesArray)
        }
    }

    /// The metadata a person (or another language) reads: snake_case JSON named as in ddpm.h.
    func testFormat2MetadataIsReadableJSON() throws {
        var training = TrainingConfig()
        training.seed = 9
        let model = try DiffusionModel(schedule: try .linear(steps: 30, betaStart: 1e-3, betaEnd: 0.05),
                                       network: .mlp(.init(dataDim: 2, hidden: 8, depth: 1, timeEmbedDim: 8)),
                                       training: training, conditioning: .classes(3))
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("meta-\(getpid()).safetensors").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try model.save(to: path)
        let meta = try SafeTensors.read(path: path).metadata
        func object(_ key: String) throws -> [String: Any] {
            try XCTUnwrap(JSONSerialization.jsonObject(with: Data(try XCTUnwrap(meta[key]).utf8)) as? [String: Any], key)
        }
        let network = try object("network")
        XCTAssertEqual(network["kind"] as? String, "mlp")
        XCTAssertEqual(network["data_dim"] as? Int, 2)
        XCTAssertEqual(network["time_embed_dim"] as? Int, 8)
        let train = try object("training")
        XCTAssertEqual(Set(train.keys), ["learning_rate", "beta1", "beta2", "adam_eps", "weight_decay", "grad_clip",
                                         "ema_decay", "label_dropout", "seed", "prediction_target", "loss_weighting",
                                         "min_snr_gamma", "learned_variance", "vlb_lambda", "timestep_sampling"])
        XCTAssertEqual(train["prediction_target"] as? String, "eps")
        XCTAssertEqual(train["seed"] as? Int, 9)
        let cond = try object("conditioning")
        XCTAssertEqual(cond["kind"] as? String, "classes")
        XCTAssertEqual(cond["num_classes"] as? Int, 3)
        let schedule = try object("schedule")
        XCTAssertEqual(schedule["kind"] as? String, "linear")
        XCTAssertEqual(schedule["beta_end"] as? Double, 0.05)
        // An unknown format version is refused, with the versions this library reads.
        XCTAssertEqual(meta["format_version"], "2")
    }
}
