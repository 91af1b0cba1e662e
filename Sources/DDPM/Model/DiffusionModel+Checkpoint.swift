// A model as one safetensors file: parameters, EMA, AdamW moments, schedule, configuration,
// step counters and the RNG state, so that a loaded model resumes training exactly.
//
// Tensors:  model.<name>, ema.<name>, optimizer.exp_avg.<name>, optimizer.exp_avg_sq.<name>
//           (F32, one per parameter tensor), schedule.betas (F64, (T,)); with importance
//           sampling resampler.loss_history (F64, (T·10,)) and resampler.counts (F64, (T,))
// Metadata (format version 2):
//   format = "swiftddpm-checkpoint", format_version = "2", library_version, data_crc32c,
//   network, training, conditioning, schedule (the configuration as JSON named as the C
//   structs' fields: Checkpoint/CheckpointJSON.swift),
//   step, optimizer_step, rng_seed, rng_counter (decimal integers)
// Version 1 files (library 0.1) are read by Checkpoint/CheckpointV1.swift.
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

public let checkpointFormat = "swiftddpm-checkpoint"
public let checkpointFormatVersion = 2

extension DiffusionModel {
    /// Writes the model to `path` atomically (temporary file + rename).
    public func save(to path: String) throws {
        let params = network.parameters
        var tensors: [SafeTensors.Tensor] = []
        for (prefix, base) in stateTensors(self) {
            for e in params.layout.entries {
                tensors.append(.init(prefix + e.name, shape: e.shape, floats: base + e.offset, count: e.count))
            }
        }
        tensors.append(.init("schedule.betas", doubles: schedule.betas))
        if let resampler {  // importance sampling's loss history: (T·10,) and its counts (T,)
            tensors.append(.init("resampler.loss_history", doubles: resampler.history))
            tensors.append(.init("resampler.counts", doubles: resampler.counts.map(Double.init)))
        }
        let metadata: [String: String] = [
            "format": checkpointFormat,
            "format_version": String(checkpointFormatVersion),
            "library_version": libraryVersion,
            "network": try NetworkJSON.encode(network.config),
            "training": try json(training),
            "conditioning": try json(conditioning),
            "schedule": try json(schedule.kind),
            "step": String(step),
            "optimizer_step": String(optimizer.step),
            "rng_seed": String(rng.seed),
            "rng_counter": String(rng.counter),
        ]
        try SafeTensors.write(path: path, tensors: tensors, metadata: metadata)
    }

    /// Reads a model written by `save(to:)`, by this library or by 0.1 (format version 1).
    /// - Throws: `.io` if the file cannot be read, `.format` if it is not a valid checkpoint.
    public static func load(from path: String) throws -> DiffusionModel {
        let file = try SafeTensors.read(path: path)
        guard file.metadata["format"] == checkpointFormat else {
            throw DDPMError.format("'\(path)' is not a SwiftDDPM checkpoint (format = \(file.metadata["format"] ?? "missing"))")
        }
        let config: CheckpointConfig
        switch file.metadata["format_version"] {
        case "1": config = try CheckpointV1.config(file)
        case "2":
            // Every format-2 writer (0.2 onward) stored the data's checksum: without it a file
            // was edited, and nothing would catch a damaged weight that is still finite.
            guard file.checksum != nil else {
                throw DDPMError.format("'\(path)' has no '\(SafeTensors.checksumKey)' checksum, which every format-2 checkpoint carries")
            }
            config = try CheckpointConfig(
            network: NetworkJSON.decode(file.meta("network")),
            training: decode(file.meta("training"), "training"),
            conditioning: decode(file.meta("conditioning"), "conditioning"),
            scheduleKind: decode(file.meta("schedule"), "schedule"))
        case let other:
            throw DDPMError.format("'\(path)' has checkpoint format version \(other ?? "missing"); this library reads 1 and 2")
        }
        // Counters first (cheap); then the schedule and the configuration are validated by the
        // constructors, the tensor table against the parameter layout before anything of size
        // P is allocated, and every value as it is copied in.
        let step = try file.counter("step", max: maxCheckpointStep)
        let optimizerStep = try file.counter("optimizer_step", max: maxCheckpointStep)
        let (seed, counter) = (try file.counter("rng_seed", max: .max), try file.counter("rng_counter", max: .max))
        let schedule: NoiseSchedule
        do { schedule = try NoiseSchedule(betas: try file.doubles("schedule.betas"), kind: config.scheduleKind) } catch let e as DDPMError {
            throw DDPMError.format("checkpoint schedule is invalid: \(e)")
        }
        try file.checkScheduleKind(schedule)
        let model: DiffusionModel
        do {
            model = try DiffusionModel(schedule: schedule, network: config.network, training: config.training,
                                       conditioning: config.conditioning) { layout in
                try file.checkTensors(layout, importanceSampling: config.training.timestepSampling == .importance)
            }
        } catch DDPMError.invalidArgument(let message) {
            throw DDPMError.format("checkpoint configuration is invalid: \(message)")
        }
        let params = model.network.parameters
        for (prefix, base) in stateTensors(model) {
            for e in params.layout.entries {
                let name = prefix + e.name
                let values = try file.floats(name, shape: e.shape)
                values.withUnsafeBufferPointer { (base + e.offset).update(from: $0.baseAddress!, count: e.count) }
                try file.checkValues(base + e.offset, count: e.count, name, nonNegative: prefix == "optimizer.exp_avg_sq.")
            }
        }
        if let resampler = model.resampler {
            let T = resampler.T
            let (history, counts) = (try file.doubles("resampler.loss_history"), try file.doubles("resampler.counts"))
            let H = LossSecondMomentResampler.historyPerTerm
            let bound = LossSecondMomentResampler.maxLoss
            guard history.count == resampler.T * H, counts.count == resampler.T, history.allSatisfy({ $0 >= 0 && $0 <= bound }),
                  counts.allSatisfy({ $0 >= 0 && $0 <= Double(H) && $0 == $0.rounded() })
            else { throw DDPMError.format("'\(path)': the resampler's loss history is not valid (\(T)·\(H) losses in 0...\(bound), \(T) counts in 0...\(H))") }
            resampler.history = history
            resampler.counts = counts.map { Int($0) }
            resampler.refresh()
        }
        model.step = Int(step)
        model.optimizer.step = Int(optimizerStep)
        model.rng = Philox(seed: seed, counter: counter)
        return model
    }
}

/// The largest step counter a checkpoint may hold: 2^53 (exact in a Double, far beyond any run).
/// A train step that would pass it is refused (`applyGradients`), so every save loads.
let maxCheckpointStep: UInt64 = 1 << 53

extension SafeTensors.File {
    /// The metadata value under `key` as a decimal integer in 0...max, written as we write it
    /// (digits only, no sign, no leading zero); `.format` otherwise.
    func counter(_ key: String, max: UInt64) throws -> UInt64 {
        let text = try meta(key)
        guard let value = UInt64(text), String(value) == text, value <= max else {
            throw DDPMError.format("'\(path)': metadata '\(key)' = '\(text)' is not a decimal integer in 0...\(max)")
        }
        return value
    }

    /// Throws `.format` unless the file holds exactly the tensors of a model with this
    /// parameter layout (model., ema., optimizer.exp_avg., optimizer.exp_avg_sq. of each
    /// parameter tensor, F32 with its shape) and schedule.betas: nothing missing, nothing else.
    func checkTensors(_ layout: ParameterLayout, importanceSampling: Bool) throws {
        var expected: Set<String> = importanceSampling ? ["schedule.betas", "resampler.loss_history", "resampler.counts"]
                                                       : ["schedule.betas"]
        for prefix in checkpointPrefixes {
            for e in layout.entries {
                let name = prefix + e.name
                guard let info = tensors[name] else { throw DDPMError.format("'\(path)' has no tensor '\(name)'") }
                guard info.dtype == .f32, info.shape == e.shape else {
                    throw DDPMError.format("'\(path)': tensor '\(name)' is \(info.dtype.rawValue) \(info.shape), expected F32 \(e.shape)")
                }
                expected.insert(name)
            }
        }
        if let extra = tensors.keys.filter({ !expected.contains($0) }).sorted().first {
            throw DDPMError.format("'\(path)': tensor '\(extra)' is not part of this model (\(layout.entries.count) parameter tensors, "
                                   + "\(tensors.count - expected.count) unknown tensors in the file)")
        }
    }

    /// Throws `.format` unless the metadata's schedule kind gives the β of schedule.betas
    /// (to 1e-9 relative: a file whose description and table disagree is not one we wrote).
    func checkScheduleKind(_ schedule: NoiseSchedule) throws {
        let T = schedule.count
        let expected: NoiseSchedule
        do {
            switch schedule.kind {
            case .custom: return
            case .linear(let a, let b): expected = try .linear(steps: T, betaStart: a, betaEnd: b)
            case .scaledLinear(let a, let b): expected = try .scaledLinear(steps: T, betaStart: a, betaEnd: b)
            case .cosine(let s, let m): expected = try .cosine(steps: T, offset: s, maxBeta: m)
            case .sigmoid(let lo, let hi, let start, let end): expected = try .sigmoid(steps: T, betaMin: lo, betaMax: hi, start: start, end: end)
            }
        } catch DDPMError.invalidArgument(let m) {
            throw DDPMError.format("'\(path)': the schedule metadata (\(schedule.kind.name)) is invalid: \(m)")
        }
        for t in 0..<T where abs(expected.betas[t] - schedule.betas[t]) > 1e-9 * schedule.betas[t] {
            throw DDPMError.format("'\(path)': schedule.betas[\(t)] = \(schedule.betas[t]) but the schedule metadata "
                                   + "(\(schedule.kind.name)) gives \(expected.betas[t])")
        }
    }

    /// Throws `.format` naming the tensor and index of the first value that is not finite
    /// (or negative, with `nonNegative`: AdamW's second moment).
    func checkValues(_ p: UnsafePointer<Float>, count: Int, _ name: String, nonNegative: Bool) throws {
        var ok = true
        for i in 0..<count { ok = ok && p[i].isFinite && (!nonNegative || p[i] >= 0) }  // branch-free, vectorises
        if ok { return }
        let i = (0..<count).first { !p[$0].isFinite || (nonNegative && p[$0] < 0) }!
        throw DDPMError.format("'\(path)': tensor '\(name)'[\(i)] is \(p[i]); "
                               + (nonNegative ? "a second moment must be finite and >= 0" : "every value must be finite"))
    }
}

/// The tensor-name prefixes of the four (P,) vectors, in file order.
private let checkpointPrefixes = ["model.", "ema.", "optimizer.exp_avg.", "optimizer.exp_avg_sq."]

/// The four (P,) float vectors a checkpoint stores, with their tensor-name prefixes.
private func stateTensors(_ m: DiffusionModel) -> [(String, UnsafeMutablePointer<Float>)] {
    zip(checkpointPrefixes, [m.network.parameters.values.pointer, m.ema.pointer, m.optimizer.m.pointer, m.optimizer.v.pointer]).map { ($0, $1) }
}
