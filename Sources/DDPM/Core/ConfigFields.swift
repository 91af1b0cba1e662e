// A config's fields as checkpoint JSON, one row per field: its key (the C field's name in
// ddpm.h), its key path, how its value is written, and the bound the engine checks it
// against. One table serves the encoding, the decoding and the simple range checks, so a new
// field is its property and its row.
//
// Decoding starts from the config's defaults: a key absent from the JSON keeps its default,
// so a field added later needs no Optional and checkpoints written before it keep loading. A
// key the table does not know is refused: a misspelt field, or one of a newer library, would
// otherwise be dropped without a word and the model would not be the one that was saved.

/// A JSON key.
struct ConfigKey: CodingKey {
    let stringValue: String
    init(_ key: String) { stringValue = key }
    init?(stringValue: String) { self.stringValue = stringValue }
    var intValue: Int? { nil }
    init?(intValue: Int) { nil }
}

/// The closed or open range a number must lie in (NaN never does; a lower bound alone also
/// excludes infinity).
enum FieldBound: Sendable {
    case atLeast(Double), above(Double), within(Double, Double), from(Double, below: Double)

    func contains(_ x: Double) -> Bool {
        switch self {
        case .atLeast(let a): return x.isFinite && x >= a
        case .above(let a): return x.isFinite && x > a
        case .within(let a, let b): return x >= a && x <= b
        case .from(let a, let b): return x >= a && x < b
        }
    }

    /// ">= 0", "in [0, 1)".
    var text: String {
        func n(_ x: Double) -> String { x == x.rounded() && abs(x) < 1e15 ? String(Int(x)) : "\(x)" }
        switch self {
        case .atLeast(let a): return ">= \(n(a))"
        case .above(let a): return "> \(n(a))"
        case .within(let a, let b): return "in [\(n(a)), \(n(b))]"
        case .from(let a, let b): return "in [\(n(a)), \(n(b)))"
        }
    }
}

/// One field of a config.
struct ConfigField<Config>: Sendable {
    let key: String
    /// Writes the field under `key`.
    let encode: @Sendable (Config, inout KeyedEncodingContainer<ConfigKey>, ConfigKey) throws -> Void
    /// Reads the field from under `key` into the config (absent: the default stays, unless required).
    let decode: @Sendable (inout Config, KeyedDecodingContainer<ConfigKey>, ConfigKey) throws -> Void
    /// Throws `.invalidArgument` unless the field is within its bound (nil: the config checks it).
    let check: (@Sendable (Config) throws -> Void)?
    /// Whether the field of a config equals the defaults' (set: the row is not written then).
    var isDefault: (@Sendable (Config, Config) -> Bool)? = nil
}

extension ConfigField {
    /// A value as itself (a number, a list, a flag); absent keeps the default.
    static func value<V: Codable & Sendable>(_ key: String, _ path: WritableKeyPath<Config, V> & Sendable) -> Self {
        Self(key: key, encode: { config, c, k in try c.encode(config[keyPath: path], forKey: k) },
             decode: { config, c, k in if let v = try c.decodeIfPresent(V.self, forKey: k) { config[keyPath: path] = v } },
             check: nil)
    }

    /// A value added after checkpoints were first written: written only when it differs from
    /// the config's default (so a config that does not use it writes what it always wrote);
    /// absent keeps the default.
    static func changed<V: Codable & Equatable & Sendable>(_ key: String, _ path: WritableKeyPath<Config, V> & Sendable) -> Self {
        var row = value(key, path)
        row.isDefault = { config, defaults in config[keyPath: path] == defaults[keyPath: path] }
        return row
    }

    /// A value every stored config states (the shape of a network: there is no default image
    /// size); absent is an error.
    static func required<V: Codable & Sendable>(_ key: String, _ path: WritableKeyPath<Config, V> & Sendable) -> Self {
        Self(key: key, encode: { config, c, k in try c.encode(config[keyPath: path], forKey: k) },
             decode: { config, c, k in config[keyPath: path] = try c.decode(V.self, forKey: k) }, check: nil)
    }

    /// A Float within `bound`, checked by the config's validation with the message
    /// "<key> must be <bound> (got <value>)"; absent keeps the default.
    static func number(_ key: String, _ path: WritableKeyPath<Config, Float> & Sendable, _ bound: FieldBound) -> Self {
        let plain = value(key, path)
        return Self(key: key, encode: plain.encode, decode: plain.decode, check: { config in
            let x = config[keyPath: path]
            try require(bound.contains(Double(x)), "\(key) must be \(bound.text) (got \(x))")
        })
    }

    /// An enum stored by name ("eps", "min_snr"); absent keeps the default, an unknown name is an error.
    static func named<E: Hashable & Sendable>(_ key: String, _ path: WritableKeyPath<Config, E> & Sendable, _ names: [E: String]) -> Self {
        Self(key: key, encode: { config, c, k in try c.encode(names[config[keyPath: path]], forKey: k) },
             decode: { config, c, k in
                 guard let name = try c.decodeIfPresent(String.self, forKey: k) else { return }
                 guard let value = names.first(where: { $0.value == name })?.key else {
                     let known = names.values.sorted().map { "'\($0)'" }.joined(separator: ", ")
                     throw DecodingError.dataCorruptedError(forKey: k, in: c, debugDescription: "unknown \(key) '\(name)' (\(known))")
                 }
                 config[keyPath: path] = value
             }, check: nil)
    }
}

/// A config coded by its rows.
protocol FieldCoded: Sendable {
    static var fields: ConfigFields<Self> { get }
}

/// A config's rows, and the defaults decoding starts from.
struct ConfigFields<Config: Sendable>: Sendable {
    let defaults: Config
    let fields: [ConfigField<Config>]
    init(defaults: Config, _ fields: [ConfigField<Config>]) { (self.defaults, self.fields) = (defaults, fields) }

    /// The JSON keys, in row order.
    var keys: [String] { fields.map(\.key) }

    func encode(_ config: Config, to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: ConfigKey.self)
        for f in fields where f.isDefault?(config, defaults) != true { try f.encode(config, &c, ConfigKey(f.key)) }
    }

    /// The config under `decoder`'s keys, over the defaults. `spelling` maps a row's key to the
    /// stored one (format 1 wrote Swift's names: `camelCase`); `others` are keys that belong to
    /// whoever holds the config (the network's "kind").
    /// - Throws: `DecodingError` for a missing required field, a value of the wrong type, or a
    ///   key that is neither a row's nor one of `others`.
    func decode(from decoder: Decoder, spelling: (String) -> String = { $0 }, others: Set<String> = []) throws -> Config {
        let c = try decoder.container(keyedBy: ConfigKey.self)
        let known = Set(keys.map(spelling)).union(others)
        if let unknown = c.allKeys.first(where: { !known.contains($0.stringValue) }) {
            throw DecodingError.dataCorruptedError(forKey: unknown, in: c, debugDescription: "unknown field '\(unknown.stringValue)'")
        }
        var config = defaults
        for f in fields { try f.decode(&config, c, ConfigKey(spelling(f.key))) }
        return config
    }

    /// Checks every bounded row, in order.
    func validate(_ config: Config) throws {
        for f in fields { try f.check?(config) }
    }
}

/// "time_embed_dim" → "timeEmbedDim": the keys of format-1 checkpoints (Swift's property names).
func camelCase(_ key: String) -> String {
    let words = key.split(separator: "_")
    return words.prefix(1).joined() + words.dropFirst().map { $0.prefix(1).uppercased() + $0.dropFirst() }.joined()
}
