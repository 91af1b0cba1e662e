// One table per params struct of ddpm.h, in the manner of sqlite's db_config and zstd's
// cParameter bounds: each row maps one C field onto one field of the engine's config — the
// C field, the Swift key path, the conversion between their types, and the bound that C alone
// can get wrong (an enum value, an array's length). The default is the engine's: a struct's
// _default() is the table writing the engine's default config, so C, Python (which reads the
// _default() functions) and Swift start from the same values. The same rows read a caller's
// struct over those defaults and write a model's config back (ddpm_model_get_*), so a field
// cannot be half-mapped. Range checks of the values themselves are the engine's (one place,
// for every caller).
import CDDPM
import DDPM

/// One C field ↔ one field of an engine config.
struct ParamRow<C, Config>: Sendable {
    /// The field's name in ddpm.h (the key of the checkpoint JSON where the config is stored).
    let field: String
    /// Writes the config's value into the C struct: the default, and the write-back.
    let write: @Sendable (Config, inout C) -> Void
    /// Reads the C value into the config, converted and checked against the row's bound.
    let read: @Sendable (C, inout Config) throws -> Void
}

/// The rows of one params struct, and the engine's default config they start from.
struct ParamsTable<C, Config>: @unchecked Sendable {  // immutable: rows, a default config, a plain C struct
    let defaults: Config
    let rows: [ParamRow<C, Config>]
    /// What the rows write into: zeroed but for struct_size (and a network struct's kind).
    private let blank: C

    /// - Parameter blank: the zeroed struct (`ddpm_train_params()`), with a network's kind set;
    ///   its struct_size, the first field, is set here.
    init(defaults: Config, blank: C, _ rows: [ParamRow<C, Config>]) {
        var blank = blank
        withUnsafeMutableBytes(of: &blank) { $0.storeBytes(of: MemoryLayout<C>.size, as: Int.self) }
        (self.defaults, self.blank, self.rows) = (defaults, blank, rows)
    }

    /// The struct's _default(): the engine's defaults written out.
    var cDefaults: C { write(defaults) }

    /// `config` as the C struct: the default (of the default config), and the write-back.
    func write(_ config: Config) -> C {
        var p = blank
        for row in rows { row.write(config, &p) }
        return p
    }

    /// The config of a caller's struct (already read over `cDefaults`): every row, in order
    /// (the first bad field throws), over the defaults.
    func read(_ p: C) throws -> Config {
        var config = defaults
        for row in rows { try row.read(p, &config) }
        return config
    }

    /// The config of a caller's struct of `struct_size` bytes; NULL means the defaults.
    func read(_ params: UnsafePointer<C>?, _ name: String) throws -> Config {
        guard params != nil else { return defaults }
        return try read(try readParams(params, defaults: cDefaults, name))
    }
}

extension ParamRow {
    /// The same type on both sides (float, double, uint64_t).
    static func value<V>(_ field: String, _ c: WritableKeyPath<C, V> & Sendable, _ s: WritableKeyPath<Config, V> & Sendable) -> Self {
        Self(field: field, write: { config, p in p[keyPath: c] = config[keyPath: s] },
             read: { p, config in config[keyPath: s] = p[keyPath: c] })
    }

    /// int32_t ↔ Int, within `bound` where C alone can get it wrong (the engine checks the rest).
    static func int(_ field: String, _ c: WritableKeyPath<C, Int32> & Sendable, _ s: WritableKeyPath<Config, Int> & Sendable,
                    in bound: ClosedRange<Int>? = nil, _ why: String = "") -> Self {
        Self(field: field, write: { config, p in p[keyPath: c] = Int32(clamping: config[keyPath: s]) },
             read: { p, config in
                 let v = Int(p[keyPath: c])
                 if let bound, !bound.contains(v) {
                     let range = bound.upperBound == Int(Int32.max) ? ">= \(bound.lowerBound)" : "in \(bound.lowerBound)...\(bound.upperBound)"
                     throw DDPMError.invalidArgument("\(field) must be \(range)\(why) (got \(v))")
                 }
                 config[keyPath: s] = v
             })
    }

    /// int32_t ↔ Bool: nonzero reads as true; written as 1 or 0.
    static func flag(_ field: String, _ c: WritableKeyPath<C, Int32> & Sendable, _ s: WritableKeyPath<Config, Bool> & Sendable) -> Self {
        Self(field: field, write: { config, p in p[keyPath: c] = config[keyPath: s] ? 1 : 0 },
             read: { p, config in config[keyPath: s] = p[keyPath: c] != 0 })
    }

    /// uint32_t bit mask ↔ Int bit mask.
    static func mask(_ field: String, _ c: WritableKeyPath<C, UInt32> & Sendable, _ s: WritableKeyPath<Config, Int> & Sendable) -> Self {
        Self(field: field, write: { config, p in p[keyPath: c] = UInt32(truncatingIfNeeded: config[keyPath: s]) },
             read: { p, config in config[keyPath: s] = Int(p[keyPath: c]) })
    }

    /// int32_t ↔ an engine enum whose raw values are the header's: converted by raw value, the
    /// unknown ones refused.
    static func choice<E: CEnumMirror>(_ field: String, _ c: WritableKeyPath<C, Int32> & Sendable,
                                                           _ s: WritableKeyPath<Config, E> & Sendable) -> Self where E.RawValue == Int32 {
        Self(field: field, write: { config, p in p[keyPath: c] = config[keyPath: s].rawValue },
             read: { p, config in config[keyPath: s] = try E(checked: p[keyPath: c], field) })
    }
}

/// An engine enum that mirrors a header enum (its metatype is captured by a row's closures,
/// which Swift 6.2 and later want Sendable).
#if compiler(>=6.2)
typealias CEnumMirror = RawRepresentable & CaseIterable & SendableMetatype
#else
typealias CEnumMirror = RawRepresentable & CaseIterable
#endif

extension RawRepresentable where Self: CaseIterable, RawValue == Int32 {
    /// The case whose raw value is `value`: the engine's enums carry the values of the header's
    /// (ddpm_method, ddpm_spacing, ddpm_output, ...), so a C value converts by raw value, checked.
    /// - Throws: `.invalidArgument` naming `name` and every valid value by its header name
    ///   ("unknown method 9 (0 ddpm, 1 ddim, 2 dpm_solver_pp, ...)").
    init(checked value: Int32, _ name: String) throws {
        guard let known = Self(rawValue: value) else {
            let valid = Self.allCases.map { "\($0.rawValue) \(headerName(of: $0))" }.joined(separator: ", ")
            throw DDPMError.invalidArgument("unknown \(name) \(value) (\(valid))")
        }
        self = known
    }
}

/// The name a C or Python caller knows an engine enum case by: the tail of its header constant
/// in lower case (DDPM_METHOD_DPM_SOLVER_PP -> "dpm_solver_pp", which Python accepts too), made
/// from the Swift case name (dpmSolverPP) by splitting its words, or, where the header says it
/// otherwise, from `headerNameExceptions`.
func headerName<E>(of value: E) -> String {
    let swiftName = String(describing: value)
    if let name = headerNameExceptions[swiftName] { return name }
    var out = "", previous: Character? = nil
    let chars = Array(swiftName)
    for (i, c) in chars.enumerated() {
        let next: Character? = i + 1 < chars.count ? chars[i + 1] : nil
        // a word starts at an upper-case letter after a lower-case one or a digit (dpm|Solver),
        // or at the last capital of an acronym followed by lower case (sdeDPM|Solver)
        if c.isUppercase, let p = previous,
           p.isLowercase || p.isNumber || (p.isUppercase && next?.isLowercase == true) {
            out += "_"
        }
        out += c.lowercased()
        previous = c
    }
    return out
}

/// Swift case names whose header constant is not their words (DDPM_METHOD_PC, DDPM_OUTPUT_EPS).
private let headerNameExceptions = ["predictorCorrector": "pc", "epsilon": "eps"]

// ---- Reading and writing a caller's struct ------------------------------------------------

/// Reads a caller's params struct of `struct_size` bytes over our defaults, so that a caller
/// built against an older, shorter struct keeps working and a newer one's tail is ignored.
func readParams<T>(_ p: UnsafePointer<T>?, defaults: T, _ name: String) throws -> T {
    let p = try nonNull(p, name)
    return try readStruct(UnsafeRawPointer(p), defaults: defaults, name)
}

/// `readParams` at a raw address (a network struct, read through its head).
func readStruct<T>(_ raw: UnsafeRawPointer, defaults: T, _ name: String) throws -> T {
    let given = raw.load(as: Int.self)  // struct_size is the first field
    guard given >= MemoryLayout<Int>.size, given <= 1 << 20 else {
        throw DDPMError.invalidArgument("\(name)->struct_size is \(given); initialise it with its _default() function")
    }
    var value = defaults
    withUnsafeMutableBytes(of: &value) { dst in
        dst.copyMemory(from: UnsafeRawBufferPointer(start: raw, count: min(given, MemoryLayout<T>.size)))
    }
    return value
}

/// Writes `value` to a caller's struct, at most its struct_size bytes (which are kept).
func writeStruct<T>(_ value: T, to out: UnsafeMutableRawPointer?, _ name: String) throws {
    let out = try nonNull(out, name)
    let given = out.load(as: Int.self)
    guard given >= MemoryLayout<Int>.size, given <= 1 << 20 else {
        throw DDPMError.invalidArgument("\(name)->struct_size is \(given); initialise it with its _default() function")
    }
    var copy = value
    let size = min(given, MemoryLayout<T>.size)
    withUnsafeBytes(of: &copy) { out.copyMemory(from: $0.baseAddress!, byteCount: size) }
    out.storeBytes(of: given, as: Int.self)
}
