// The configuration of a checkpoint as JSON (format version 2): every config is named as the
// C structs' fields. The metadata keys and the tensors are DiffusionModel+Checkpoint.swift's;
// format version 1 is CheckpointV1.swift's.
//
//   network      {"kind": "mlp" | "unet", <ddpm_mlp_params / ddpm_unet_params fields>}
//   training     {<ddpm_train_params fields>}
//   conditioning {"kind": "none"} | {"kind": "classes", "num_classes": K} | {"kind": "vector", "dim": Dc}
//                | {"kind": "sequence", "dim": Dc, "max_length": Lmax}
//                | {"kind": "tokens", "vocab_size": V, "max_length": Lmax, "dim": Dc} (Conditioning.swift)
//   schedule     {"kind": "linear", "beta_start": …, …} (NoiseSchedule+Coding.swift)
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Everything a checkpoint's metadata says about how to rebuild the model.
struct CheckpointConfig {
    var network: NetworkConfig
    var training: TrainingConfig
    var conditioning: Conditioning
    var scheduleKind: NoiseSchedule.Kind
}

/// NetworkConfig as checkpoint JSON: {"kind": "mlp" | "unet", <the config's fields>}.
enum NetworkJSON {
    enum Key: String, CodingKey { case kind }

    struct Tagged: Codable {
        var config: NetworkConfig
        init(_ config: NetworkConfig) { self.config = config }
        init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: Key.self)
            switch try c.decode(String.self, forKey: .kind) {
            case "mlp": config = .mlp(try ResidualMLP.Config.fields.decode(from: decoder, others: ["kind"]))
            case "unet": config = .unet(try UNetConfig.fields.decode(from: decoder, others: ["kind"]))
            case let other:
                throw DecodingError.dataCorruptedError(forKey: .kind, in: c, debugDescription: "unknown network '\(other)'")
            }
        }
        func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: Key.self)
            switch config {
            case .mlp(let m): try c.encode("mlp", forKey: .kind); try m.encode(to: encoder)
            case .unet(let u): try c.encode("unet", forKey: .kind); try u.encode(to: encoder)
            }
        }
    }

    static func encode(_ config: NetworkConfig) throws -> String { try json(Tagged(config)) }

    static func decode(_ text: String) throws -> NetworkConfig {
        let tagged: Tagged = try DDPM.decode(text, "network")
        return tagged.config
    }
}

func json<T: Encodable>(_ value: T) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    return String(decoding: try encoder.encode(value), as: UTF8.self)
}

func decode<T: Decodable>(_ text: String, _ key: String) throws -> T {
    do { return try JSONDecoder().decode(T.self, from: Data(text.utf8)) } catch {
        throw DDPMError.format("checkpoint metadata '\(key)' cannot be read: \(error)")
    }
}
