// Checkpoints: a saved model reloads bit for bit, resumes training exactly, and a failed
// save never damages an existing file; bad files are rejected with .io or .format.
import XCTest
@testable import DDPM
#if canImport(Glibc)
import Glibc
#endif

final class CheckpointTests: TemporaryFolderTestCase {

    func makeModel(classes: Int = 0, seed: UInt64 = 3) throws -> DiffusionModel {
        var training = TrainingConfig()
        training.seed = seed
        training.optimizer.weightDecay = 0.01
        return try DiffusionModel(schedule: try .cosine(steps: 50),
                                  network: .mlp(.init(dataDim: 3, hidden: 16, depth: 2, timeEmbedDim: 8)),
                                  training: training,
                                  conditioning: classes > 0 ? .classes(classes) : .none)
    }

    /// A fixed data batch (8, 3) and labels (8,).
    let batch: [Float] = (0..<24).map { Float(($0 * 37) % 11) / 5 - 1 }
    let labels: [Int32] = [0, 1, 2, 0, 1, 2, 0, 1]

    func testRoundTripRestoresEveryTensorAndCounter() throws {
        let model = try makeModel(classes: 3)
        for _ in 0..<5 { _ = try model.trainStep(x0: batch, labels: labels) }
        let path = dir + "/m.safetensors"
        try model.save(to: path)
        let loaded = try DiffusionModel.load(from: path)
        XCTAssertEqual(loaded.network.config, model.network.config)
        XCTAssertEqual(loaded.training, model.training)
        XCTAssertEqual(loaded.schedule, model.schedule, "schedule tables and kind")
        XCTAssertEqual(loaded.step, 5)
        XCTAssertEqual(loaded.optimizer.step, model.optimizer.step)
        XCTAssertEqual(loaded.rng, model.rng)
        XCTAssertEqual(loaded.network.parameters.valuesArray, model.network.parameters.valuesArray)
        XCTAssertEqual(loaded.emaValues, model.emaValues)
        XCTAssertEqual(loaded.optimizer.m.array, model.optimizer.m.array)
        XCTAssertEqual(loaded.optimizer.v.array, model.optimizer.v.array)
        var options = SamplerOptions()
        options.method = .ddim
        options.steps = 10
        options.seed = 9
        XCTAssertEqual(try loaded.sample(count: 4, labels: [0, 1, 2, 3], options: options),
                       try model.sample(count: 4, labels: [0, 1, 2, 3], options: options), "samples from the reloaded model")
    }

    func testResumeIsExact() throws {
        // Uninterrupted: 10 steps. Interrupted: 4 steps, save, load, 6 more. Same losses, same weights.
        let straight = try makeModel()
        let losses = try (0..<10).map { _ in try straight.trainStep(x0: batch) }
        let first = try makeModel()
        var resumed = try (0..<4).map { _ in try first.trainStep(x0: batch) }
        let path = dir + "/resume.safetensors"
        try first.save(to: path)
        let second = try DiffusionModel.load(from: path)
        resumed += try (0..<6).map { _ in try second.trainStep(x0: batch) }
        XCTAssertEqual(resumed, losses, "loss sequence across a save/load")
        XCTAssertEqual(second.network.parameters.valuesArray, straight.network.parameters.valuesArray)
        XCTAssertEqual(second.emaValues, straight.emaValues)
    }

    func testFailedSaveKeepsTheExistingFile() throws {
        let model = try makeModel()
        let path = dir + "/keep.safetensors"
        try model.save(to: path)
        let before = try readBytes(path)
        // A directory in the way of the rename: the save fails and the old file stays whole.
        let blocked = dir + "/blocked"
        mkdir(blocked, 0o755)
        mkdir(blocked + "/inner", 0o755)
        XCTAssertThrowsError(try model.save(to: blocked)) { XCTAssertEqual(kind($0), "io") }
        XCTAssertThrowsError(try model.save(to: dir + "/missing-dir/x.safetensors")) { XCTAssertEqual(kind($0), "io") }
        XCTAssertEqual(try readBytes(path), before)
        let leftovers = try folderEntries(dir).filter { $0.contains(".tmp-") }
        XCTAssertEqual(leftovers, [], "temporary files are removed after a failed save")
    }

    func testBadFilesAreRejected() throws {
        XCTAssertThrowsError(try DiffusionModel.load(from: dir + "/nope.safetensors")) { XCTAssertEqual(kind($0), "io") }
        let cases: [(String, [UInt8])] = [
            ("empty", []),
            ("short", [1, 2, 3]),
            ("header larger than file", [255, 255, 0, 0, 0, 0, 0, 0, 123]),
            ("not json", [4, 0, 0, 0, 0, 0, 0, 0] + Array("abcd".utf8)),
            ("json but no metadata", [2, 0, 0, 0, 0, 0, 0, 0] + Array("{}".utf8)),
        ]
        for (name, bytes) in cases {
            let path = dir + "/\(name).safetensors"
            try writeBytes(path, bytes)
            XCTAssertThrowsError(try DiffusionModel.load(from: path), name) { XCTAssertEqual(kind($0), "format", name) }
        }
        // A real checkpoint, truncated: offsets now point past the end.
        let model = try makeModel()
        let good = dir + "/good.safetensors"
        try model.save(to: good)
        let bytes = try readBytes(good)
        try writeBytes(dir + "/truncated.safetensors", Array(bytes.prefix(bytes.count - 100)))
        XCTAssertThrowsError(try DiffusionModel.load(from: dir + "/truncated.safetensors")) { XCTAssertEqual(kind($0), "format") }
    }

    func testFileIsStandardSafetensors() throws {
        // u64 header length, JSON header with __metadata__ and data_offsets, 8-byte aligned data.
        let model = try makeModel()
        let path = dir + "/std.safetensors"
        try model.save(to: path)
        let bytes = try readBytes(path)
        let n = bytes[0..<8].enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        XCTAssertEqual(n % 8, 0)
        let header = String(decoding: bytes[8..<8 + n], as: UTF8.self)
        XCTAssertTrue(header.contains("\"__metadata__\""))
        XCTAssertTrue(header.contains("\"format\":\"swiftddpm-checkpoint\""))
        XCTAssertTrue(header.contains("\"model.in_proj.weight\":{\"data_offsets\":["))
        let floats = 4 * model.network.parameters.count * 4 + 8 * model.schedule.count
        XCTAssertEqual(bytes.count, 8 + n + floats, "file = prefix + header + every tensor, nothing else")
    }
}

private func kind(_ error: Error) -> String {
    switch error as? DDPMError {
    case .io?: return "io"
    case .format?: return "format"
    default: return "\(error)"
    }
}

private func readBytes(_ path: String) throws -> [UInt8] {
    guard let f = fopen(path, "rb") else { throw DDPMError.io(path) }
    defer { fclose(f) }
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = fread(&chunk, 1, chunk.count, f)
        out += chunk[0..<n]
        if n < chunk.count { return out }
    }
}

private func writeBytes(_ path: String, _ bytes: [UInt8]) throws {
    guard let f = fopen(path, "wb") else { throw DDPMError.io(path) }
    if !bytes.isEmpty { fwrite(bytes, 1, bytes.count, f) }
    fclose(f)
}

