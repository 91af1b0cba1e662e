// The JSON of a safetensors header: a small strict parser (RFC 8259) and the writer.
//
// The parser is ours rather than Foundation's so that the header is judged exactly:
// duplicate keys, invalid UTF-8, lone surrogates, control characters in strings, numbers
// outside the grammar and nesting deeper than `maxDepth` are all errors (with the byte
// offset), and numbers keep their text, so an offset is an integer only when written as
// one and an out-of-range integer is never rounded.
// The writer emits compact JSON with keys in byte order, so a header is reproducible.

extension SafeTensors {
    /// A parsed JSON value. Objects keep their keys in file order.
    indirect enum JSON: Equatable {
        case object([(key: String, value: JSON)])
        case array([JSON])
        case string(String)
        case number(String)  // the literal text, e.g. "-12", "1.5e3"
        case bool(Bool)
        case null

        static func == (a: JSON, b: JSON) -> Bool {
            switch (a, b) {
            case (.object(let x), .object(let y)): return x.count == y.count && zip(x, y).allSatisfy { $0.key == $1.key && $0.value == $1.value }
            case (.array(let x), .array(let y)): return x == y
            case (.string(let x), .string(let y)), (.number(let x), .number(let y)): return x == y
            case (.bool(let x), .bool(let y)): return x == y
            case (.null, .null): return true
            default: return false
            }
        }

        /// The value as an exact integer: a number written without fraction or exponent
        /// that fits in Int; nil otherwise.
        var integer: Int? {
            guard case .number(let text) = self, !text.contains(where: { $0 == "." || $0 == "e" || $0 == "E" }) else { return nil }
            return Int(text)
        }

        /// A short description for messages: the kind, and the value when it is short.
        var summary: String {
            switch self {
            case .object: return "an object"
            case .array: return "an array"
            case .string(let s): return s.count <= 40 ? "the string \"\(s)\"" : "a string"
            case .number(let n): return n.count <= 40 ? "the number \(n)" : "a number"
            case .bool(let b): return "\(b)"
            case .null: return "null"
            }
        }
    }

    /// Nesting deeper than this is refused (a header needs 3: root, entry, shape).
    static let maxJSONDepth = 32

    /// Parses one JSON value that fills `bytes`, except for trailing spaces (0x20), as the
    /// safetensors format allows for padding.
    /// - Parameter maxArrayCount: arrays longer than this are refused as soon as the parser
    ///   reaches the element past it (a header's arrays are shapes and offset pairs: a long
    ///   one is an error anyway, and its tree would take about 30 bytes of memory a byte).
    /// - Throws: a message (without the file name) saying what is wrong and at which byte.
    /// - Complexity: O(n) in the header's length.
    static func parseJSON(_ bytes: UnsafeRawBufferPointer, maxArrayCount: Int = .max) throws(JSONError) -> JSON {
        var parser = JSONParser(bytes: bytes, maxArrayCount: maxArrayCount)
        let value = try parser.value(depth: 0)
        while parser.i < bytes.count {
            guard bytes[parser.i] == 0x20 else { throw JSONError("unexpected bytes after the JSON value at byte \(parser.i)") }
            parser.i += 1
        }
        return value
    }

    struct JSONError: Error {
        var message: String
        /// An array passed `maxArrayCount`: valid JSON, but over the caller's limit.
        var tooLong = false
        init(_ message: String, tooLong: Bool = false) { (self.message, self.tooLong) = (message, tooLong) }
    }

    /// Appends `s` as a JSON string literal: quotes, backslashes and control characters
    /// escaped, everything else as UTF-8.
    static func appendJSONString(_ s: String, to out: inout [UInt8]) {
        out.append(0x22)
        for b in s.utf8 {
            switch b {
            case 0x22: out += [0x5c, 0x22]
            case 0x5c: out += [0x5c, 0x5c]
            case 0x0a: out += [0x5c, 0x6e]
            case 0x0d: out += [0x5c, 0x72]
            case 0x09: out += [0x5c, 0x74]
            case 0x00..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                out += [0x5c, 0x75, 0x30, 0x30, hex[Int(b >> 4)], hex[Int(b & 15)]]
            default: out.append(b)
            }
        }
        out.append(0x22)
    }

    /// Keys in byte order of their UTF-8 (a stable order, independent of the locale).
    static func byteOrdered<V>(_ d: [String: V]) -> [(key: String, value: V)] {
        d.sorted { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }
    }
}

private struct JSONParser {
    let bytes: UnsafeRawBufferPointer
    let maxArrayCount: Int
    var i = 0

    init(bytes: UnsafeRawBufferPointer, maxArrayCount: Int) { (self.bytes, self.maxArrayCount) = (bytes, maxArrayCount) }

    typealias JSON = SafeTensors.JSON
    typealias JSONError = SafeTensors.JSONError

    mutating func skipWhitespace() {
        while i < bytes.count, bytes[i] == 0x20 || bytes[i] == 0x0a || bytes[i] == 0x0d || bytes[i] == 0x09 { i += 1 }
    }

    func fail(_ what: String) -> JSONError {
        i < bytes.count ? JSONError("\(what) at byte \(i)") : JSONError("\(what) at the end of the header (byte \(i))")
    }

    mutating func expect(_ byte: UInt8, _ what: String) throws(JSONError) {
        guard i < bytes.count, bytes[i] == byte else { throw fail("expected \(what)") }
        i += 1
    }

    mutating func value(depth: Int) throws(JSONError) -> JSON {
        guard depth < SafeTensors.maxJSONDepth else { throw fail("JSON nested deeper than \(SafeTensors.maxJSONDepth) levels") }
        skipWhitespace()
        guard i < bytes.count else { throw fail("expected a JSON value") }
        switch bytes[i] {
        case 0x7b: return try object(depth: depth)
        case 0x5b: return try array(depth: depth)
        case 0x22: return .string(try string())
        case 0x74: try literal("true"); return .bool(true)
        case 0x66: try literal("false"); return .bool(false)
        case 0x6e: try literal("null"); return .null
        case 0x2d, 0x30...0x39: return .number(try number())
        default: throw fail("expected a JSON value")
        }
    }

    mutating func literal(_ word: StaticString) throws(JSONError) {
        let n = word.utf8CodeUnitCount
        guard bytes.count - i >= n, (0..<n).allSatisfy({ bytes[i + $0] == word.utf8Start[$0] }) else { throw fail("invalid literal") }
        i += n
    }

    mutating func object(depth: Int) throws(JSONError) -> JSON {
        i += 1  // {
        var members: [(key: String, value: JSON)] = []
        var seen = Set<String>()
        skipWhitespace()
        if i < bytes.count, bytes[i] == 0x7d { i += 1; return .object(members) }
        while true {
            skipWhitespace()
            guard i < bytes.count, bytes[i] == 0x22 else { throw fail("expected a key string") }
            let keyStart = i
            let key = try string()
            guard seen.insert(key).inserted else { i = keyStart; throw fail("duplicate key \"\(key)\"") }
            skipWhitespace()
            try expect(0x3a, "':'")
            members.append((key, try value(depth: depth + 1)))
            skipWhitespace()
            guard i < bytes.count else { throw fail("expected ',' or '}'") }
            if bytes[i] == 0x2c { i += 1; continue }
            if bytes[i] == 0x7d { i += 1; return .object(members) }
            throw fail("expected ',' or '}'")
        }
    }

    mutating func array(depth: Int) throws(JSONError) -> JSON {
        i += 1  // [
        var elements: [JSON] = []
        skipWhitespace()
        if i < bytes.count, bytes[i] == 0x5d { i += 1; return .array(elements) }
        while true {
            guard elements.count < maxArrayCount else {
                var error = fail("an array of more than \(maxArrayCount) elements")
                error.tooLong = true
                throw error
            }
            elements.append(try value(depth: depth + 1))
            skipWhitespace()
            guard i < bytes.count else { throw fail("expected ',' or ']'") }
            if bytes[i] == 0x2c { i += 1; continue }
            if bytes[i] == 0x5d { i += 1; return .array(elements) }
            throw fail("expected ',' or ']'")
        }
    }

    /// -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
    mutating func number() throws(JSONError) -> String {
        let start = i
        func isDigit(_ k: Int) -> Bool { k < bytes.count && (0x30...0x39).contains(bytes[k]) }
        if bytes[i] == 0x2d { i += 1 }
        guard isDigit(i) else { throw fail("invalid number") }
        if bytes[i] == 0x30 { i += 1 } else { while isDigit(i) { i += 1 } }
        if i < bytes.count, bytes[i] == 0x2e {
            i += 1
            guard isDigit(i) else { throw fail("invalid number") }
            while isDigit(i) { i += 1 }
        }
        if i < bytes.count, bytes[i] == 0x65 || bytes[i] == 0x45 {
            i += 1
            if i < bytes.count, bytes[i] == 0x2b || bytes[i] == 0x2d { i += 1 }
            guard isDigit(i) else { throw fail("invalid number") }
            while isDigit(i) { i += 1 }
        }
        return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<i]), as: UTF8.self)
    }

    /// A string literal; the result must be valid UTF-8 with no lone surrogate escapes.
    mutating func string() throws(JSONError) -> String {
        let start = i
        i += 1  // "
        var out: [UInt8] = []
        while true {
            guard i < bytes.count else { throw fail("unterminated string") }
            let b = bytes[i]
            if b == 0x22 { i += 1; break }
            if b < 0x20 { throw fail("control character in a string") }
            if b != 0x5c { out.append(b); i += 1; continue }
            i += 1
            guard i < bytes.count else { throw fail("unterminated string") }
            let e = bytes[i]
            i += 1
            switch e {
            case 0x22, 0x5c, 0x2f: out.append(e)
            case 0x62: out.append(0x08)
            case 0x66: out.append(0x0c)
            case 0x6e: out.append(0x0a)
            case 0x72: out.append(0x0d)
            case 0x74: out.append(0x09)
            case 0x75:
                var scalar = try hex4()
                if (0xD800..<0xDC00).contains(scalar) {
                    guard bytes.count - i >= 2, bytes[i] == 0x5c, bytes[i + 1] == 0x75 else { throw fail("lone surrogate escape") }
                    i += 2
                    let low = try hex4()
                    guard (0xDC00..<0xE000).contains(low) else { throw fail("lone surrogate escape") }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                } else if (0xDC00..<0xE000).contains(scalar) {
                    throw fail("lone surrogate escape")
                }
                out += Array(String(Character(Unicode.Scalar(scalar)!)).utf8)
            default:
                i -= 1
                throw fail("invalid escape")
            }
        }
        // Decoding replaces each invalid sequence with U+FFFD, so valid means unchanged.
        let s = String(decoding: out, as: UTF8.self)
        guard s.utf8.elementsEqual(out) else { i = start; throw fail("string is not valid UTF-8") }
        return s
    }

    mutating func hex4() throws(JSONError) -> UInt32 {
        guard bytes.count - i >= 4 else { throw fail("invalid \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let b = bytes[i]
            let d: UInt8
            switch b {
            case 0x30...0x39: d = b - 0x30
            case 0x61...0x66: d = b - 0x61 + 10
            case 0x41...0x46: d = b - 0x41 + 10
            default: throw fail("invalid \\u escape")
            }
            v = v << 4 | UInt32(d)
            i += 1
        }
        return v
    }
}
