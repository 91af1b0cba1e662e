// A model as one safetensors file: parameters, EMA, AdamW moments, schedule, configs,
// step counters and the RNG state, so that a loaded model resumes training exactly.
//
// Tensors:  model.<name>, ema.<name>, optimizer.exp_avg.<name>, optimizer.exp_avg_sq.<name>
//           (F32, one per parameter tensor), schedule.betas (F64, (T,))
// Metadata: format = "swiftddpm-checkpoint", format_version, library_version, network,
//           training, schedule_kind (JSON), step, optimizer_step, rng_seed, rng_counter
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

public let checkpointFormat = "swiftddpm-checkpoint"
public let checkpointFormatVersion = 1

extension DiffusionModel {
    /// Writes the model to `path` atomically (temporary file + rename).
    public func save(to path: String) throws {
        let params = network.parameters
        var tensors: [SafeTensors.Tensor] = []
        for (prefix, base) in [("model.", params.values.pointer), ("ema.", ema.pointer),
                               ("optimizer.exp_avg.", optimizer.m.pointer), ("optimizer.exp_avg_sq.", optimizer.v.pointer)] {
            for e in params.layout.entries {
                tensors.append(.init(prefix + e.name, shape: e.shape, floats: base + e.offset, count: e.count))
            }
        }
        tensors.append(.init("schedule.betas", doubles: schedule.betas))
        let metadata: [String: String] = [
            "format": checkpointFormat,
            "format_version": String(checkpointFormatVersion),
            "library_version": libraryVersion,
            "network": try json(network.config),
            "training": try json(training),
            "schedule_kind": try json(schedule.kind),
            "step": String(step),
            "optimizer_step": String(optimizer.step),
            "rng_seed": String(rng.seed),
            "rng_counter": String(rng.counter),
        ]
        try SafeTensors.write(path: path, tensors: tensors, metadata: metadata)
    }

    /// Reads a model written by `save(to:)`.
    /// - Throws: `.io` if the file cannot be read, `.format` if it is not a valid checkpoint.
    public static func load(from path: String) throws -> DiffusionModel {
        let file = try SafeTensors.read(path: path)
        guard file.metadata["format"] == checkpointFormat else {
            throw DDPMError.format("'\(path)' is not a SwiftDDPM checkpoint (format = \(file.metadata["format"] ?? "missing"))")
        }
        guard let version = Int(try file.meta("format_version")), version <= checkpointFormatVersion else {
            throw DDPMError.format("'\(path)' has checkpoint format version \(file.metadata["format_version"]!), this library reads up to \(checkpointFormatVersion)")
        }
        let network: NetworkConfig = try decode(file.meta("network"), "network")
        let training: TrainingConfig = try decode(file.meta("training"), "training")
        let kind: NoiseSchedule.Kind = try decode(file.meta("schedule_kind"), "schedule_kind")
        let schedule: NoiseSchedule
        do { schedule = try NoiseSchedule(betas: try file.doubles("schedule.betas"), kind: kind) } catch let e as DDPMError {
            throw DDPMError.format("checkpoint schedule is invalid: \(e)")
        }
        let model: DiffusionModel
        do { model = try DiffusionModel(schedule: schedule, network: network, training: training) } catch let e as DDPMError {
            throw DDPMError.format("checkpoint configuration is invalid: \(e)")
        }
        let params = model.network.parameters
        for (prefix, base) in [("model.", params.values.pointer), ("ema.", model.ema.pointer),
                               ("optimizer.exp_avg.", model.optimizer.m.pointer), ("optimizer.exp_avg_sq.", model.optimizer.v.pointer)] {
            for e in params.layout.entries {
                let values = try file.floats(prefix + e.name, shape: e.shape)
                values.withUnsafeBufferPointer { (base + e.offset).update(from: $0.baseAddress!, count: e.count) }
            }
        }
        guard let step = Int(try file.meta("step")), let optStep = Int(try file.meta("optimizer_step")),
              let seed = UInt64(try file.meta("rng_seed")), let counter = UInt64(try file.meta("rng_counter")),
              step >= 0, optStep >= 0
        else { throw DDPMError.format("checkpoint step or RNG state is not a valid integer") }
        model.step = step
        model.optimizer.step = optStep
        model.rng = Philox(seed: seed, counter: counter)
        return model
    }
}

private func json<T: Encodable>(_ value: T) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    return String(decoding: try encoder.encode(value), as: UTF8.self)
}

private func decode<T: Decodable>(_ text: String, _ key: String) throws -> T {
    do { return try JSONDecoder().decode(T.self, from: Data(text.utf8)) } catch {
        throw DDPMError.format("checkpoint metadata '\(key)' cannot be read: \(error)")
    }
}
