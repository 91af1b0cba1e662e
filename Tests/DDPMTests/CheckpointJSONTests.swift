// The configuration of a checkpoint as JSON, read by one table per config (Core/ConfigFields.swift):
// a field absent from the JSON takes its default (checkpoints written before it keep loading),
// a key the table does not know is refused, a required field (the image's shape) must be
// there; and the fuzzer's dictionaries (fuzz/load_fuzzer.cc) know every key and name a
// checkpoint of either format can hold.
import XCTest
@testable import DDPM

final class CheckpointJSONTests: XCTestCase {
    let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    func decodeTraining(_ text: String) throws -> TrainingConfig { try decode(text, "training") }

    /// A format-2 training config of an older writer (none of the fields after seed) reads with
    /// the defaults; a later field given is read.
    func testAbsentFieldsTakeTheirDefaults() throws {
        let old = #"{"learning_rate":0.002,"beta1":0.8,"beta2":0.99,"adam_eps":1e-06,"weight_decay":0.01,"grad_clip":0.5,"ema_decay":0.9,"label_dropout":0.2,"seed":7}"#
        let t = try decodeTraining(old)
        var expected = TrainingConfig()
        expected.optimizer = AdamWConfig(learningRate: 0.002, beta1: 0.8, beta2: 0.99, epsilon: 1e-6, weightDecay: 0.01)
        (expected.gradClip, expected.emaDecay, expected.labelDropout, expected.seed) = (0.5, 0.9, 0.2, 7)
        XCTAssertEqual(t, expected)
        XCTAssertEqual(t.target, .epsilon)
        XCTAssertEqual(t.timestepSampling, .uniform)
        XCTAssertEqual(try decodeTraining(#"{"prediction_target":"v","min_snr_gamma":3}"#).target, .v, "a later field is read")
        XCTAssertEqual(try decodeTraining("{}"), TrainingConfig(), "every field absent: the defaults")

        // A UNet of 0.2 (no cross_attention_levels) has none; the image's shape is required.
        let unet = #"{"kind":"unet","channels":1,"height":8,"width":8,"base_channels":8,"channel_mult":[1,2],"res_blocks":1,"attention_levels":[1],"attention_heads":1,"groups":4,"dropout":0,"time_embed_dim":8}"#
        guard case .unet(let u) = try NetworkJSON.decode(unet) else { return XCTFail("a UNet") }
        XCTAssertEqual(u.crossAttentionLevels, [])
        XCTAssertEqual(u.channelMult, [1, 2])
        let noHeight = unet.replacingOccurrences(of: #""height":8,"#, with: "")
        XCTAssertThrowsError(try NetworkJSON.decode(noHeight), "a UNet without a height") { error in
            XCTAssertTrue("\(error)".contains("height"), "\(error)")
        }
        XCTAssertThrowsError(try NetworkJSON.decode(#"{"kind":"mlp","hidden":8}"#), "an MLP without data_dim")
    }

    /// A key no table knows is refused (a misspelt field, or a newer library's), naming it;
    /// a known name of the wrong type or an unknown enum name too.
    func testUnknownKeysAndNamesAreRefused() throws {
        for (text, mentions) in [(#"{"grad_clop":1}"#, "grad_clop"), (#"{"loss_weighting":"snr"}"#, "snr"),
                                 (#"{"seed":"7"}"#, "seed"), (#"{"learned_variance":1}"#, "learned_variance")] {
            XCTAssertThrowsError(try decodeTraining(text), text) { error in
                guard case DDPMError.format(let m) = error else { return XCTFail("\(text): \(error)") }
                XCTAssertTrue(m.contains(mentions), "\(text): '\(m)' does not name '\(mentions)'")
            }
        }
        XCTAssertThrowsError(try NetworkJSON.decode(#"{"kind":"mlp","data_dim":2,"widht":3}"#)) { error in
            XCTAssertTrue("\(error)".contains("widht"), "\(error)")
        }
        // Negative control: the same JSON without the stray key reads.
        XCTAssertEqual(try NetworkJSON.decode(#"{"kind":"mlp","data_dim":2}"#), .mlp(.init(dataDim: 2)))
    }

    /// Every config written and read back is the same config, and the JSON holds every row.
    func testEveryConfigRoundTrips() throws {
        var unet = UNetConfig(channels: 3, height: 8, width: 16, baseChannels: 8, channelMult: [1, 2, 3], resBlocks: 1,
                              attentionLevels: [1], attentionHeads: 2, groups: 4, dropout: 0.25, timeEmbedDim: 12)
        unet.crossAttentionLevels = [0, 2]
        for config in [NetworkConfig.mlp(.init(dataDim: 5, hidden: 12, depth: 3, timeEmbedDim: 6)), .unet(unet)] {
            let text = try NetworkJSON.encode(config)
            XCTAssertEqual(try NetworkJSON.decode(text), config, text)
        }
        var t = TrainingConfig()
        (t.target, t.lossWeighting, t.timestepSampling, t.learnedVariance, t.seed) = (.x0, .vlb, .importance, true, 1 << 60)
        XCTAssertEqual(try decodeTraining(try json(t)), t)
        let keys = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(try json(t).utf8)) as? [String: Any]).keys
        XCTAssertEqual(Set(keys), Set(TrainingConfig.fields.keys))
    }

    /// fuzz/load_fuzzer.cc mutates checkpoints with the keys and names of its dictionaries: every
    /// key (and every name stored as a value) of the configuration of either format, of the
    /// metadata and of the tensors that are not parameters must be in them.
    func testTheFuzzersDictionariesKnowEveryKey() throws {
        let source = try String(contentsOf: repository.appendingPathComponent("fuzz/load_fuzzer.cc"), encoding: .utf8)
        let fuzzKeys = try literals(named: "kKeys", in: source), fuzzStrings = try literals(named: "kStrings", in: source)
        var keys = Set<String>(), names = Set<String>()

        // Format 2: every config of every kind, every enum by each of its names.
        var texts: [String] = []
        var unet = UNetConfig(channels: 1, height: 4, width: 4, channelMult: [1, 2], attentionLevels: [1])
        unet.crossAttentionLevels = [0]
        texts += [try NetworkJSON.encode(.mlp(.init(dataDim: 2))), try NetworkJSON.encode(.unet(unet))]
        for target in PredictionType.allCases {
            for weighting in LossWeighting.allCases {
                for sampling in TimestepSampling.allCases {
                    var t = TrainingConfig()
                    (t.target, t.lossWeighting, t.timestepSampling) = (target, weighting, sampling)
                    texts.append(try json(t))
                }
            }
        }
        let conditionings: [Conditioning] = [.none, .classes(3), .vector(4), .sequence(dim: 4, maxLength: 5),
                                             .tokens(vocabulary: 9, maxLength: 5, dim: 4)]
        texts += try conditionings.map { try json($0) }
        let kinds: [NoiseSchedule.Kind] = [.linear(betaStart: 1e-4, betaEnd: 0.02), .scaledLinear(betaStart: 1e-4, betaEnd: 0.02),
                                           .cosine(offset: 0.008, maxBeta: 0.999), .sigmoid(betaMin: 0, betaMax: 0.1, start: -6, end: 6),
                                           .custom]
        texts += try kinds.map { try json($0) }
        // The metadata and the tensors beside the parameters, of a model that has them all.
        var training = TrainingConfig()
        training.timestepSampling = .importance
        let model = try DiffusionModel(schedule: try .linear(steps: 10), network: .mlp(.init(dataDim: 2, hidden: 4, depth: 1, timeEmbedDim: 4)),
                                       training: training, conditioning: .classes(2))
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("fuzz-keys-\(getpid()).safetensors").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try model.save(to: path)
        let file = try SafeTensors.read(path: path)
        keys.formUnion(file.metadata.keys)
        keys.insert(SafeTensors.checksumKey)  // read (and removed) by SafeTensors itself
        keys.formUnion(file.tensors.keys.filter { !["model.", "ema.", "optimizer."].contains(where: $0.hasPrefix) })
        texts += ["network", "training", "conditioning", "schedule"].map { file.metadata[$0]! }

        // Format 1: the configuration of the fixtures 0.1.0 wrote.
        for fixture in ["v1-mlp", "v1-unet"] {
            let v1 = try SafeTensors.read(path: repository.appendingPathComponent("Tests/DDPMTests/Fixtures/\(fixture).safetensors").path)
            keys.formUnion(v1.metadata.keys)
            texts += ["network", "training", "schedule_kind"].map { v1.metadata[$0]! }
        }

        for text in texts { collect(try JSONSerialization.jsonObject(with: Data(text.utf8)), &keys, &names) }
        XCTAssertTrue(keys.contains("cross_attention_levels") && keys.contains("dataDim") && names.contains("min_snr"),
                      "the collection reaches both formats")
        XCTAssertEqual(keys.subtracting(fuzzKeys).sorted(), [], "keys missing from kKeys in fuzz/load_fuzzer.cc")
        XCTAssertEqual(names.subtracting(fuzzStrings).sorted(), [], "names missing from kStrings in fuzz/load_fuzzer.cc")
        // Negative control: a list without one key misses it.
        XCTAssertEqual(keys.subtracting(fuzzKeys.subtracting(["vocab_size"])).sorted(), ["vocab_size"])
    }

    /// The string literals of `const char *name[] = { ... };` in C source.
    func literals(named name: String, in source: String) throws -> Set<String> {
        let start = try XCTUnwrap(source.range(of: "\(name)[] = {"), "\(name) in load_fuzzer.cc")
        let end = try XCTUnwrap(source.range(of: "};", range: start.upperBound..<source.endIndex))
        var result = Set<String>(), current: String?, escaped = false
        for ch in source[start.upperBound..<end.lowerBound] {
            if var s = current {
                if escaped { s.append(ch); escaped = false; current = s } else if ch == "\\" { escaped = true }
                else if ch == "\"" { result.insert(s); current = nil } else { s.append(ch); current = s }
            } else if ch == "\"" {
                current = ""
            }
        }
        return result
    }

    /// Every object key under `value`, and every string value that is not a number.
    func collect(_ value: Any, _ keys: inout Set<String>, _ names: inout Set<String>) {
        if let object = value as? [String: Any] {
            for (k, v) in object { keys.insert(k); collect(v, &keys, &names) }
        } else if let array = value as? [Any] {
            for v in array { collect(v, &keys, &names) }
        } else if let s = value as? String, Double(s) == nil {
            names.insert(s)
        }
    }
}
