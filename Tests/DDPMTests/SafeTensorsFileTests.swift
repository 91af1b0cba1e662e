// The safetensors container on its own: strict reading (regular files only, the whole
// header validated, the data checksum verified) and safe saving (unguessable, locked
// temporary files; rename; cleanup of stale ones; nothing left behind on failure).
// Every case builds its own bytes or files, and each has a control that loads, so a
// rejection cannot come from a broken fixture.
import XCTest
@testable import DDPM
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

final class SafeTensorsFileTests: TemporaryFolderTestCase {

    // MARK: - Fixtures

    /// Three tensors of different dtypes, one empty, and awkward metadata.
    func sampleTensors() -> [SafeTensors.Tensor] {
        let floats: [Float] = [1, -2.5, .infinity, -0.0, Float(bitPattern: 0x7fc0_1234), 6]
        let a = floats.withUnsafeBufferPointer { SafeTensors.Tensor("layer.weight", shape: [2, 3], floats: $0.baseAddress!, count: 6) }
        let b = SafeTensors.Tensor("schedule.betas", doubles: [1e-4, 0.02, 0.5, 1])
        let empty = SafeTensors.Tensor(name: "empty", dtype: .f32, shape: [0, 5], bytes: [])
        let scalar = SafeTensors.Tensor(name: "counter", dtype: .i32, shape: [], bytes: [7, 0, 0, 0])
        return [a, b, empty, scalar]
    }

    let sampleMetadata = ["format": "test", "quote\"and\\slash/": "line\nnew\ttab\u{1}ctl ünï 😀", "": "", "json": "{\"a\":[1,2]}"]

    /// prefix (u64 LE header length) + header bytes + data, with no padding added.
    func container(_ header: [UInt8], _ data: [UInt8], length: UInt64? = nil) -> [UInt8] {
        let n = length ?? UInt64(header.count)
        return (0..<8).map { UInt8(truncatingIfNeeded: n >> (8 * UInt64($0))) } + header + data
    }

    func container(_ header: String, _ data: [UInt8]) -> [UInt8] { container(Array(header.utf8), data) }

    /// Twelve data bytes: a F32 [2] at [0, 8) and b F32 [1] at [8, 12).
    let twelve: [UInt8] = Array(1...12)
    let goodHeader = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#
    var goodEntries: String { String(goodHeader.dropFirst().dropLast()) }

    func expectFormat(_ path: String, _ mentions: [String], _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try SafeTensors.read(path: path), what, file: file, line: line) { error in
            guard case DDPMError.format(let message)? = error as? DDPMError else {
                return XCTFail("\(what): expected .format, got \(error)", file: file, line: line)
            }
            for m in mentions + [path] where !message.contains(m) {
                XCTFail("\(what): message does not mention \(m): \(message)", file: file, line: line)
            }
        }
    }

    // MARK: - Round trip and checksum

    func testRoundTripKeepsEveryTensorBitAndMetadataValue() throws {
        let path = dir + "/round.safetensors"
        let tensors = sampleTensors()
        var metadata = sampleMetadata
        metadata[SafeTensors.checksumKey] = "a caller's value is replaced"
        try SafeTensors.write(path: path, tensors: tensors, metadata: metadata)
        let file = try SafeTensors.read(path: path)

        XCTAssertEqual(file.metadata, sampleMetadata, "metadata comes back exactly, without the reserved checksum key")
        XCTAssertEqual(Set(file.tensors.keys), ["layer.weight", "schedule.betas", "empty", "counter"])
        XCTAssertEqual(file.tensors["layer.weight"], .init(dtype: .f32, shape: [2, 3], data_offsets: [0, 24]), "tensors in the order given")
        XCTAssertEqual(file.tensors["schedule.betas"], .init(dtype: .f64, shape: [4], data_offsets: [24, 56]))
        XCTAssertEqual(file.tensors["empty"], .init(dtype: .f32, shape: [0, 5], data_offsets: [56, 56]))
        XCTAssertEqual(file.tensors["counter"], .init(dtype: .i32, shape: [], data_offsets: [56, 60]), "a scalar has one element")
        XCTAssertEqual(try file.floats("layer.weight", shape: [2, 3]).map(\.bitPattern), tensors[0].bytes.withUnsafeBytes { Array($0.bindMemory(to: UInt32.self)) }, "bits, NaN payload and -0 included")
        XCTAssertEqual(try file.doubles("schedule.betas"), [1e-4, 0.02, 0.5, 1])
        XCTAssertEqual(try file.floats("empty", shape: [0, 5]), [])
        XCTAssertEqual(Array(file.bytes(file.tensors["counter"]!)), [7, 0, 0, 0])
        XCTAssertEqual(file.rawTensors().map(\.name), ["layer.weight", "schedule.betas", "empty", "counter"])
        XCTAssertEqual(file.rawTensors().map(\.bytes), tensors.map(\.bytes))
        XCTAssertEqual(file.checksum, bitwiseCRC32C(tensors.flatMap(\.bytes)), "the stored checksum is the CRC-32C of the data region")

        let bytes = try fileBytes(path)
        let n = Int(bytes[0..<8].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) })
        XCTAssertEqual((8 + n) % 8, 0, "data region 8-byte aligned")
        XCTAssertEqual(bytes.count, 8 + n + 60, "prefix + header + tensors, nothing else")
        XCTAssertTrue(String(decoding: bytes[8..<8 + n], as: UTF8.self).contains("\"\(SafeTensors.checksumKey)\":\"\(CRC32C.hex(file.checksum!))\""))
    }

    func testCRC32CMatchesPublishedVectorsAndABitwiseReference() {
        // The CRC catalogue's check value and the iSCSI test vectors of RFC 3720, B.4.
        XCTAssertEqual(CRC32C.checksum(Array("123456789".utf8)), 0xE306_9283)
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0, count: 32)), 0x8A91_36AA)
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0xff, count: 32)), 0x62A8_AB43)
        XCTAssertEqual(CRC32C.checksum((0..<32).map { UInt8($0) }), 0x46DD_794E)
        XCTAssertEqual(CRC32C.checksum((0..<32).reversed().map { UInt8($0) }), 0x113F_DB5C)
        // Slicing-by-8 against one bit at a time, over every length and start alignment to 40.
        let bytes = (0..<48).map { UInt8(truncatingIfNeeded: $0 &* 151 &+ 7) }
        for start in 0..<8 {
            for length in 0...40 {
                let piece = Array(bytes[start..<start + length])
                XCTAssertEqual(bytes.withUnsafeBytes { CRC32C.update(0, UnsafeRawBufferPointer(rebasing: $0[start..<start + length])) },
                               bitwiseCRC32C(piece), "start \(start), length \(length)")
            }
        }
        // Continuing a CRC equals one CRC over the concatenation.
        let whole = CRC32C.checksum(bytes)
        let split = bytes[20...].withUnsafeBytes { CRC32C.update(CRC32C.checksum(Array(bytes[..<20])), $0) }
        XCTAssertEqual(split, whole)
    }

    func testEveryFlippedBitInTheDataIsDetected() throws {
        let path = dir + "/flip.safetensors"
        try SafeTensors.write(path: path, tensors: sampleTensors(), metadata: ["k": "v"])
        let good = try fileBytes(path)
        XCTAssertNoThrow(try SafeTensors.read(path: path), "control: the unflipped file loads")
        let dataStart = good.count - 60
        var undetected: [String] = []
        for byte in dataStart..<good.count {
            for bit in 0..<8 {
                var bad = good
                bad[byte] ^= 1 << bit
                try putBytes(path, bad)
                do {
                    _ = try SafeTensors.read(path: path)
                    undetected.append("byte \(byte - dataStart) bit \(bit)")
                } catch DDPMError.format(let m) where m.contains("corrupted") && m.contains(path) {
                } catch {
                    undetected.append("byte \(byte - dataStart) bit \(bit): wrong error \(error)")
                }
            }
        }
        XCTAssertEqual(undetected, [], "each of the 480 single-bit flips of the data region is rejected by the checksum")
    }

    func testAFileWithoutChecksumStillReadsButNoFormat2Checkpoint() throws {
        // A file as written before the checksum existed: same layout, no reserved key.
        let path = dir + "/old.safetensors"
        let header = #"{"__metadata__":{"format":"old","network":"{\"a\":\/1}","emoji":"\ud83d\ude00 \u00e9"},"# + String(goodHeader.dropFirst())
        try putBytes(path, container(header + "    ", twelve))
        let file = try SafeTensors.read(path: path)
        XCTAssertNil(file.checksum)
        XCTAssertEqual(file.metadata, ["format": "old", "network": "{\"a\":/1}", "emoji": "😀 é"], "escapes: \\/, a surrogate pair, \\u00e9")
        XCTAssertEqual(Array(file.bytes(file.tensors["b"]!)), [9, 10, 11, 12])

        // A whole checkpoint with the key removed from its header loads as a model.
        let model = try DiffusionModel(schedule: try .linear(steps: 20),
                                       network: .mlp(.init(dataDim: 2, hidden: 8, depth: 1, timeEmbedDim: 4)),
                                       training: TrainingConfig())
        let modern = dir + "/modern.safetensors"
        try model.save(to: modern)
        let saved = try SafeTensors.read(path: modern)
        XCTAssertNotNil(saved.checksum)
        var json: [UInt8] = Array("{\"__metadata__\":{".utf8)
        for (k, (key, value)) in SafeTensors.byteOrdered(saved.metadata).enumerated() {
            json += k > 0 ? [0x2c] : []
            SafeTensors.appendJSONString(key, to: &json)
            json.append(0x3a)
            SafeTensors.appendJSONString(value, to: &json)
        }
        json.append(0x7d)
        var data: [UInt8] = []
        for t in saved.rawTensors() {
            json += Array(",\"\(t.name)\":{\"dtype\":\"\(t.dtype.rawValue)\",\"shape\":\(t.shape),\"data_offsets\":[\(data.count),\(data.count + t.bytes.count)]}".utf8)
            data += t.bytes
        }
        json.append(0x7d)
        let legacy = dir + "/legacy.safetensors"
        try putBytes(legacy, container(json, data))
        XCTAssertFalse(String(decoding: try fileBytes(legacy), as: UTF8.self).contains(SafeTensors.checksumKey))
        // The container reads, but a format-2 checkpoint without it is refused (issue 19): every
        // format-2 writer stored it, so its absence means an edit the checksum cannot vouch for.
        XCTAssertNil(try SafeTensors.read(path: legacy).checksum)
        XCTAssertThrowsError(try DiffusionModel.load(from: legacy)) { error in
            guard case DDPMError.format(let m)? = error as? DDPMError else { return XCTFail("expected .format, got \(error)") }
            XCTAssertTrue(m.contains(SafeTensors.checksumKey) && m.contains("format-2"), m)
        }
        // The same file with its checksum added back loads as the model (control).
        let restored = dir + "/restored.safetensors"
        try SafeTensors.write(path: restored, tensors: saved.rawTensors(), metadata: saved.metadata)
        let loaded = try DiffusionModel.load(from: restored)
        XCTAssertEqual(loaded.network.parameters.valuesArray, model.network.parameters.valuesArray)
    }

    // MARK: - Only regular files, bounded

    func testFIFOWithoutWriterIsRefusedPromptly() throws {
        // The event that matters: the read returns, refusing the FIFO by its type, while no writer
        // ever opens it (a read that waited for one would never return on its own). The watchdog
        // only turns such a hang into a failure: then a writer lets the blocked read go.
        let fifo = dir + "/pipe.safetensors"
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        let finished = DispatchSemaphore(value: 0)
        let outcome = Locked<Error?>(nil)
        DispatchQueue.global().async {
            do { _ = try SafeTensors.read(path: fifo) } catch { outcome.set(error) }
            finished.signal()
        }
        if finished.wait(timeout: .now() + 300) == .timedOut {
            XCTFail("reading a FIFO with no writer blocked: it waited for a writer instead of refusing the file")
            let w = open(fifo, O_WRONLY | O_NONBLOCK)  // let the blocked reader go
            if w >= 0 { close(w) }
            finished.wait()
            return
        }
        guard case DDPMError.io(let message)? = outcome.get() as? DDPMError else { return XCTFail("expected .io, got \(String(describing: outcome.get()))") }
        XCTAssertTrue(message.contains("FIFO") && message.contains(fifo), message)
    }

    func testDevicesFoldersAndLinksToDevicesAreRefused() throws {
        try symlinkOrFail("/dev/zero", dir + "/zero.safetensors")
        for (path, kind) in [("/dev/zero", "character device"), (dir + "/zero.safetensors", "character device"), (dir, "folder")] {
            XCTAssertThrowsError(try SafeTensors.read(path: path), path) { error in
                guard case DDPMError.io(let message)? = error as? DDPMError else { return XCTFail("\(path): expected .io, got \(error)") }
                XCTAssertTrue(message.contains(kind) && message.contains(path), message)
            }
        }
        XCTAssertThrowsError(try SafeTensors.read(path: dir + "/missing.safetensors")) {
            guard case DDPMError.io? = $0 as? DDPMError else { return XCTFail("expected .io, got \($0)") }
        }
        XCTAssertThrowsError(try SafeTensors.read(path: dir + "/a\0b")) {
            guard case DDPMError.invalidArgument? = $0 as? DDPMError else { return XCTFail("expected .invalidArgument, got \($0)") }
        }
    }

    func testSizeLimitsAreCheckedBeforeReading() throws {
        // Sparse files: no disk space used, and nothing should be read or allocated.
        let huge = dir + "/huge.safetensors"
        let fd = open(huge, O_WRONLY | O_CREAT, 0o644)
        XCTAssertGreaterThanOrEqual(fd, 0)
        XCTAssertEqual(ftruncate(fd, off_t(SafeTensors.maxFileBytes + 1)), 0)
        close(fd)
        expectFormat(huge, ["larger than the limit"], "a file over 64 GiB")

        let bigHeader = dir + "/bigheader.safetensors"
        try putBytes(bigHeader, container([], [], length: UInt64(SafeTensors.maxHeaderBytes + 1)))
        XCTAssertEqual(truncate(bigHeader, off_t(SafeTensors.maxHeaderBytes + 100)), 0)
        expectFormat(bigHeader, ["exceeds the limit"], "a header over 100 MB")

        let past = dir + "/past.safetensors"
        try putBytes(past, container(Array(goodHeader.utf8), twelve, length: UInt64.max))
        expectFormat(past, ["header length"], "header length 2^64 - 1")
    }

    func testEveryTruncationIsRejected() throws {
        let path = dir + "/whole.safetensors"
        try SafeTensors.write(path: path, tensors: sampleTensors(), metadata: sampleMetadata)
        let bytes = try fileBytes(path)
        XCTAssertNoThrow(try SafeTensors.read(path: path), "control: the whole file loads")
        var accepted: [Int] = []
        let cut = dir + "/cut.safetensors"
        for length in 0..<bytes.count {
            try putBytes(cut, Array(bytes.prefix(length)))
            do {
                _ = try SafeTensors.read(path: cut)
                accepted.append(length)
            } catch DDPMError.format {
            } catch {
                XCTFail("length \(length): expected .format, got \(error)")
            }
        }
        XCTAssertEqual(accepted, [], "every truncation of the \(bytes.count)-byte file (inside the prefix, the header, each tensor) is rejected")
    }

    // MARK: - Header validation

    func testHeaderEditsAreRejectedNamingTheTensor() throws {
        let control = dir + "/control.safetensors"
        try putBytes(control, container(goodHeader, twelve))
        let file = try SafeTensors.read(path: control)
        XCTAssertEqual(file.tensors.count, 2, "control: the unedited header loads")

        func entry(_ name: String, _ dtype: String = "\"F32\"", _ shape: String, _ offsets: String) -> String {
            "\"\(name)\":{\"dtype\":\(dtype),\"shape\":\(shape),\"data_offsets\":\(offsets)}"
        }
        let b = entry("b", shape: "[1]", "[8,12]")
        func with(_ a: String, _ rest: String? = nil) -> String { "{\(a),\(rest ?? b)}" }
        func entry(_ name: String, shape: String, _ offsets: String) -> String { entry(name, "\"F32\"", shape, offsets) }

        let cases: [(String, String, [UInt8], [String])] = [
            ("overlap", with(entry("a", shape: "[2]", "[0,8]"), entry("b", shape: "[2]", "[4,12]")), twelve, ["'b'", "overlaps tensor 'a'"]),
            ("gap", with(entry("a", shape: "[1]", "[0,4]")), twelve, ["gap of 4 bytes", "'a'", "'b'"]),
            ("gap at the start", "{" + entry("a", shape: "[1]", "[4,8]") + "}", Array(twelve.prefix(8)), ["gap of 4 bytes before", "'a'"]),
            ("trailing bytes", with(entry("a", shape: "[2]", "[0,8]")), twelve + [0, 0, 0, 0], ["4 trailing bytes", "'b'"]),
            ("data but no tensors", "{}", twelve, ["no tensors"]),
            ("unknown dtype", with(entry("a", "\"F31\"", "[2]", "[0,8]")), twelve, ["'a'", "unknown dtype 'F31'"]),
            ("sub-byte dtype", with(entry("a", "\"F4\"", "[16]", "[0,8]")), twelve, ["'a'", "unknown dtype 'F4'"]),
            ("dtype not a string", with(entry("a", "4", "[2]", "[0,8]")), twelve, ["'a'", "dtype is the number 4"]),
            ("negative shape", with(entry("a", shape: "[-2]", "[0,8]")), twelve, ["'a'", "negative"]),
            ("huge shape", with(entry("a", shape: "[1e30]", "[0,8]")), twelve, ["'a'", "shape[0]", "expected an integer"]),
            ("shape beyond Int64", with(entry("a", shape: "[9223372036854775808]", "[0,8]")), twelve, ["'a'", "expected an integer"]),
            ("fractional shape", with(entry("a", shape: "[2.0]", "[0,8]")), twelve, ["'a'", "expected an integer"]),
            ("shape not an array", with(entry("a", shape: "2", "[0,8]")), twelve, ["'a'", "shape is the number 2"]),
            ("element count overflow", with(entry("a", shape: "[4294967296,4294967296]", "[0,8]")), twelve, ["'a'", "more elements"]),
            ("byte count overflow", with(entry("a", shape: "[2305843009213693952]", "[0,8]")), twelve, ["'a'", "more bytes"]),
            ("zero dim hides an overflow", with(entry("a", shape: "[0,9223372036854775807,4]", "[0,8]")), twelve, ["'a'", "needs 0"]),
            ("shape and bytes disagree", with(entry("a", shape: "[3]", "[0,8]")), twelve, ["'a'", "hold 8 bytes", "needs 12"]),
            ("offsets past the data", with(entry("a", shape: "[2]", "[8,16]"), entry("b", shape: "[1]", "[0,4]")), twelve, ["'a'", "outside the data region"]),
            ("offsets reversed", with(entry("a", shape: "[0]", "[8,0]")), twelve, ["'a'", "outside"]),
            ("negative offset", with(entry("a", shape: "[3]", "[-4,8]")), twelve, ["'a'", "outside"]),
            ("one offset", with(entry("a", shape: "[2]", "[0]")), twelve, ["'a'", "has 1 entries, expected 2"]),
            ("three offsets", with(entry("a", shape: "[2]", "[0,4,8]")), twelve, ["'a'", "has 3 entries"]),
            ("string offsets", with(entry("a", shape: "[2]", "[\"0\",\"8\"]")), twelve, ["'a'", "not both integers"]),
            ("fractional offset", with(entry("a", shape: "[2]", "[0,8.0]")), twelve, ["'a'", "not both integers"]),
            ("offsets not an array", with(entry("a", shape: "[2]", "{}")), twelve, ["'a'", "data_offsets is an object"]),
            ("unknown field", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"extra\":1},\(b)}", twelve, ["'a'", "unknown field 'extra'"]),
            ("missing dtype", "{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]},\(b)}", twelve, ["'a'", "no 'dtype'"]),
            ("missing offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2]},\(b)}", twelve, ["'a'", "no 'data_offsets'"]),
            ("tensor not an object", "{\"a\":5,\(b)}", twelve, ["'a'", "entry is the number 5"]),
            ("duplicate tensor", with(entry("a", shape: "[2]", "[0,8]"), entry("a", shape: "[1]", "[8,12]")), twelve, ["duplicate key \"a\""]),
            ("duplicate field", "{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[0,8]},\(b)}", twelve, ["duplicate key \"dtype\""]),
            ("non-string metadata", with("\"__metadata__\":{\"step\":5}", goodEntries), twelve, ["metadata 'step' is the number 5"]),
            ("nested metadata", with("\"__metadata__\":{\"k\":{\"x\":\"y\"}}", goodEntries), twelve, ["metadata 'k' is an object"]),
            ("metadata not an object", with("\"__metadata__\":\"x\"", goodEntries), twelve, ["'__metadata__' is the string \"x\""]),
            ("bad checksum text", with("\"__metadata__\":{\"data_crc32c\":\"ABCDEF01\"}", goodEntries), twelve, ["'data_crc32c' is not 8 lowercase hex digits"]),
            ("wrong checksum", with("\"__metadata__\":{\"data_crc32c\":\"00000000\"}", goodEntries), twelve, ["corrupted"]),
            ("root an array", "[\(goodHeader)]", twelve, ["does not start with '{'"]),
            ("leading space", " " + goodHeader, twelve, ["does not start with '{'"]),
            ("garbage after the object", goodHeader + "  x", twelve, ["unexpected bytes after the JSON value"]),
            ("newline padding", goodHeader + "\n", twelve, ["unexpected bytes after"]),
            ("unterminated", String(goodHeader.dropLast()), twelve, ["not valid JSON"]),
            ("trailing comma", String(goodHeader.dropLast()) + ",}", twelve, ["expected a key string"]),
            ("deep nesting", "{\"x\":" + String(repeating: "[", count: 200) + String(repeating: "]", count: 200) + "}", [], ["nested deeper"]),
            ("lone surrogate", with(entry("a\\ud800", shape: "[2]", "[0,8]")), twelve, ["lone surrogate"]),
            ("bad escape", with(entry("a\\x", shape: "[2]", "[0,8]")), twelve, ["invalid escape"]),
            ("control character", with(entry("a\u{1}", shape: "[2]", "[0,8]")), twelve, ["control character"]),
            ("number grammar", with(entry("a", shape: "[02]", "[0,8]")), twelve, ["not valid JSON"]),
        ]
        for (k, (what, header, data, mentions)) in cases.enumerated() {
            let path = dir + "/edit\(k).safetensors"
            try putBytes(path, container(header, data))
            expectFormat(path, mentions, what)
        }

        // Raw bytes the String cases cannot hold.
        let invalidUTF8 = dir + "/utf8.safetensors"
        try putBytes(invalidUTF8, container(Array("{\"a\u{FF}".utf8.dropLast(2)) + [0xff] + Array("\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]}}".utf8), twelve))
        expectFormat(invalidUTF8, ["not valid UTF-8"], "invalid UTF-8 in a tensor name")
        let badSequences: [[UInt8]] = [[0xed, 0xa0, 0x80], [0xc0, 0xaf], [0xe2, 0x82]]  // a surrogate, an overlong '/', a cut sequence
        for (k, raw) in badSequences.enumerated() {
            let path = dir + "/utf8-\(k).safetensors"
            let before: [UInt8] = Array("{\"__metadata__\":{\"k\":\"".utf8)
            let after: [UInt8] = Array("\"},\(goodEntries)}".utf8)
            try putBytes(path, container(before + raw + after, twelve))
            expectFormat(path, ["not valid UTF-8"], "invalid UTF-8 \(raw) in a metadata value")
        }
        let nul = dir + "/nul.safetensors"
        try putBytes(nul, container(Array(goodHeader.utf8) + [0], twelve))
        expectFormat(nul, ["unexpected bytes after"], "NUL padding")
    }

    /// Issue 19: a shape of 199999 unit dimensions and an 8 took minutes to parse (the shape
    /// was copied at every dimension). At most `maxRank` dimensions are allowed, and the
    /// parser refuses a longer array when it reaches it. Event, not clock: before the fix
    /// these files were accepted (a 32-byte tensor), now each is refused naming the limit.
    func testShapesOfMoreThanEightDimensionsAreRefused() throws {
        func file(_ shape: [Int]) -> [UInt8] {
            let bytes = 4 * shape.reduce(1, *)
            let header = "{\"x\":{\"dtype\":\"F32\",\"shape\":[\(shape.map(String.init).joined(separator: ","))],\"data_offsets\":[0,\(bytes)]}}"
            return container(header, [UInt8](repeating: 0, count: bytes))
        }
        let path = dir + "/rank.safetensors"
        try putBytes(path, file([1, 1, 1, 1, 1, 1, 1, 8]))
        XCTAssertEqual(try SafeTensors.read(path: path).tensors["x"]?.shape, [1, 1, 1, 1, 1, 1, 1, 8], "control: 8 dimensions load")
        for shape in [[1, 1, 1, 1, 1, 1, 1, 1, 8], [Int](repeating: 1, count: 20_000) + [8]] {
            try putBytes(path, file(shape))
            expectFormat(path, ["more than 8"], "a shape of \(shape.count) dimensions")
        }
        // The writer refuses what the reader would (nothing is created).
        let nine = SafeTensors.Tensor(name: "x", dtype: .u8, shape: [Int](repeating: 1, count: 9), bytes: [1])
        XCTAssertThrowsError(try SafeTensors.write(path: dir + "/nine.safetensors", tensors: [nine], metadata: [:]))
        XCTAssertNil(kindOf(dir + "/nine.safetensors"))
    }

    // MARK: - Saving

    /// Issue 19: a destination name of 234 to 255 bytes could not be saved (the temporary
    /// name ".<name>.tmp-<16 hex>" passed NAME_MAX). The temporary name is now cut to fit,
    /// at a character boundary, and the cleanup of stale files still finds it.
    func testNamesUpTo255BytesAreSaved() throws {
        let names = [String(repeating: "a", count: 233), String(repeating: "b", count: 234), String(repeating: "c", count: 255),
                     String(repeating: "é", count: 127) + "z"]  // 255 bytes: the cut falls inside a character
        for name in names {
            let path = dir + "/" + name
            XCTAssertLessThanOrEqual(name.utf8.count, 255)
            let stale = dir + "/" + SafeTensors.temporaryPrefix(name) + String(repeating: "0", count: SafeTensors.randomDigits)
            XCTAssertLessThanOrEqual(SafeTensors.temporaryPrefix(name).utf8.count + SafeTensors.randomDigits, 255)
            try putBytes(stale, [1, 2, 3])  // as a killed save would leave it
            try SafeTensors.write(path: path, tensors: sampleTensors(), metadata: ["n": name])
            XCTAssertEqual(try SafeTensors.read(path: path).metadata["n"], name, "\(name.utf8.count) bytes")
            XCTAssertNil(kindOf(stale), "the stale temporary file of a \(name.utf8.count)-byte name is removed")
            XCTAssertEqual(try folderEntries(dir).filter { $0.contains(".tmp-") }, [], "no temporary file is left")
        }
    }

    /// Issue 19: saving onto a link to a 0600 file gave a 0644 file. The link is replaced (as
    /// before) by a file no more open than its target, nor than 0644 less the umask.
    func testSavingOverALinkKeepsTheTargetsPrivacy() throws {
        let mask = umask(0o022)
        umask(mask)
        for (targetMode, expected) in [(mode_t(0o600), mode_t(0o600)), (0o640, 0o640 & ~mask), (0o666, 0o644 & ~mask)] {
            let target = dir + "/secret-\(String(targetMode, radix: 8))"
            let link = dir + "/link-\(String(targetMode, radix: 8)).safetensors"
            try putBytes(target, Array("target".utf8))
            XCTAssertEqual(chmod(target, targetMode), 0)
            try symlinkOrFail(target, link)
            try SafeTensors.write(path: link, tensors: sampleTensors(), metadata: [:])
            XCTAssertEqual(kindOf(link), S_IFREG, "the link is replaced by a regular file")
            XCTAssertEqual(modeOf(link), expected, "a link to a \(String(targetMode, radix: 8)) file")
            XCTAssertEqual(try fileBytes(target), Array("target".utf8), "the target is untouched")
            XCTAssertEqual(modeOf(target), targetMode)
        }
        // A dangling link: a new file's mode.
        try symlinkOrFail(dir + "/nothing-here", dir + "/dangling.safetensors")
        try SafeTensors.write(path: dir + "/dangling.safetensors", tensors: [], metadata: [:])
        XCTAssertEqual(modeOf(dir + "/dangling.safetensors"), 0o644 & ~mask)
    }

    func testSymlinkAtTheOldGuessableTempNameIsNotFollowed() throws {
        let path = dir + "/model.safetensors"
        let victim = dir + "/victim.txt"
        try putBytes(victim, Array("precious".utf8))
        try symlinkOrFail(victim, path + ".tmp-\(getpid())")
        try SafeTensors.write(path: path, tensors: sampleTensors(), metadata: ["k": "v"])
        XCTAssertEqual(try fileBytes(victim), Array("precious".utf8), "the link's target is not written")
        XCTAssertEqual(kindOf(path), S_IFREG, "the destination is a regular file")
        XCTAssertEqual(kindOf(path + ".tmp-\(getpid())"), S_IFLNK, "the planted link is neither followed nor replaced")
        XCTAssertEqual(try SafeTensors.read(path: path).metadata, ["k": "v"])
    }

    func testDestinationSymlinkIsReplacedNotWrittenThrough() throws {
        let path = dir + "/model.safetensors"
        let target = dir + "/target.bin"
        try putBytes(target, Array("target bytes".utf8))
        try symlinkOrFail(target, path)
        try SafeTensors.write(path: path, tensors: sampleTensors(), metadata: ["k": "v"])
        XCTAssertEqual(kindOf(path), S_IFREG, "the link is replaced by a regular file")
        XCTAssertEqual(try fileBytes(target), Array("target bytes".utf8), "the old link target is untouched")
        XCTAssertEqual(try SafeTensors.read(path: path).tensors.count, 4)
    }

    func testModeOfTheReplacedFileIsKept() throws {
        let path = dir + "/mode.safetensors"
        let mask = umask(0o022)
        umask(mask)
        try SafeTensors.write(path: path, tensors: [], metadata: [:])
        XCTAssertEqual(modeOf(path), 0o644 & ~mask, "a new file: 0644 less the umask")
        XCTAssertEqual(chmod(path, 0o600), 0)
        try SafeTensors.write(path: path, tensors: sampleTensors(), metadata: [:])
        XCTAssertEqual(modeOf(path), 0o600, "a replaced file keeps its mode")
        XCTAssertEqual(chmod(path, 0o664), 0)
        try SafeTensors.write(path: path, tensors: [], metadata: [:])
        XCTAssertEqual(modeOf(path), 0o664, "exactly, even where the umask would clear bits")
    }

    func testConcurrentSavesAlwaysLeaveOneCompleteFile() throws {
        let path = dir + "/shared.safetensors"
        func contents(_ value: Float) -> [SafeTensors.Tensor] {
            let values = [Float](repeating: value, count: 1 << 14)
            return [values.withUnsafeBufferPointer { SafeTensors.Tensor("w", shape: [1 << 14], floats: $0.baseAddress!, count: 1 << 14) },
                    SafeTensors.Tensor("v", doubles: [Double](repeating: Double(value), count: 1000 + Int(value)))]
        }
        let versions: [Float: [SafeTensors.Tensor]] = [1: contents(1), 2: contents(2)]
        try SafeTensors.write(path: path, tensors: versions[1]!, metadata: ["who": "1"])

        let failures = Locked<[String]>([])
        let writersLeft = Locked(2)
        let reads = Locked(0)
        let group = DispatchGroup()
        for who: Float in [1, 2] {
            group.enter()
            Thread {
                for round in 0..<50 {
                    do { try SafeTensors.write(path: path, tensors: versions[who]!, metadata: ["who": "\(Int(who))"]) } catch {
                        failures.update { $0.append("writer \(who) round \(round): \(error)") }
                    }
                }
                writersLeft.update { $0 -= 1 }
                group.leave()
            }.start()
        }
        group.enter()
        Thread {
            // A reader racing the writers must always find one whole version.
            while writersLeft.get() > 0 {
                reads.update { $0 += 1 }
                do {
                    let file = try SafeTensors.read(path: path)
                    let who = Float(try file.meta("who"))!
                    guard file.rawTensors().map(\.bytes) == versions[who]!.map(\.bytes) else {
                        failures.update { $0.append("read a file that mixes versions") }
                        continue
                    }
                } catch {
                    failures.update { $0.append("read failed: \(error)") }
                }
            }
            group.leave()
        }.start()
        group.wait()
        XCTAssertEqual(failures.get(), [], "every save succeeds and every read (\(reads.get())) sees a complete file")
        let file = try SafeTensors.read(path: path)
        XCTAssertEqual(file.rawTensors().map(\.bytes), versions[Float(try file.meta("who"))!]!.map(\.bytes), "the last rename wins, whole")
        XCTAssertEqual(try folderEntries(dir), ["shared.safetensors"], "no temporary file is left")
    }

    func testStaleTemporaryFilesAreCleanedButLiveOnesKept() throws {
        let path = dir + "/m.safetensors"
        let prefix = dir + "/.m.safetensors.tmp-"
        let stale = prefix + "0123456789abcdef"
        let live = prefix + "fedcba9876543210"
        try putBytes(stale, Array("half a save".utf8))
        try putBytes(live, Array("a save in progress".utf8))
        // Another save holding its lock: a separate open file description, as in another thread.
        let liveFD = open(live, O_RDWR)
        XCTAssertGreaterThanOrEqual(liveFD, 0)
        XCTAssertEqual(flock(liveFD, LOCK_EX), 0)
        var closed = false
        defer { if !closed { close(liveFD) } }

        // Names that are not ours, or files that must not be touched.
        let victim = dir + "/victim.txt"
        try putBytes(victim, Array("precious".utf8))
        let notOurs = [prefix + "0123", prefix + "0123456789ABCDEF", prefix + "0123456789abcdef0",
                       dir + "/m.safetensors.tmp-0123456789abcdef", dir + "/.other.tmp-0123456789abcdef",
                       path + ".tmp-\(getpid())"]
        for name in notOurs { try putBytes(name, [1]) }
        let link = prefix + "1111111111111111"
        try symlinkOrFail(victim, link)
        let fifo = prefix + "2222222222222222"
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        let folder = prefix + "3333333333333333"
        XCTAssertEqual(mkdir(folder, 0o700), 0)
        var kept = notOurs + [link, fifo, folder, live, victim]
        if geteuid() == 0 {  // a file of another user in our pattern (only root can make one)
            let foreign = prefix + "4444444444444444"
            try putBytes(foreign, [1])
            XCTAssertEqual(chown(foreign, 65534, 65534), 0)
            kept.append(foreign)
        }

        try SafeTensors.write(path: path, tensors: sampleTensors(), metadata: [:])
        XCTAssertEqual(kindOf(stale), nil, "an unlocked regular temporary file of ours is removed")
        for name in kept { XCTAssertNotEqual(kindOf(name), nil, "\(name) is kept") }
        XCTAssertEqual(try fileBytes(live), Array("a save in progress".utf8), "a locked one is kept whole")
        XCTAssertEqual(try fileBytes(victim), Array("precious".utf8))
        XCTAssertEqual(kindOf(link), S_IFLNK)

        // Once its writer is gone (the kernel drops the lock), the next save removes it.
        close(liveFD)
        closed = true
        try SafeTensors.write(path: path, tensors: sampleTensors(), metadata: [:])
        XCTAssertEqual(kindOf(live), nil, "the formerly locked file is removed once unlocked")
        XCTAssertEqual(try SafeTensors.read(path: path).tensors.count, 4)
    }

    func testFailedSavesThrowIOAndLeaveNothing() throws {
        let tensors = sampleTensors()
        func expectIO(_ path: String, _ what: String) {
            XCTAssertThrowsError(try SafeTensors.write(path: path, tensors: tensors, metadata: [:]), what) { error in
                guard case DDPMError.io(let message)? = error as? DDPMError else { return XCTFail("\(what): expected .io, got \(error)") }
                XCTAssertTrue(message.contains(path), "\(what): \(message)")
            }
        }
        expectIO(dir + "/missing/x.safetensors", "a missing folder")
        expectIO(dir + "/", "a path naming a folder")

        let readOnly = dir + "/ro"
        XCTAssertEqual(mkdir(readOnly, 0o755), 0)
        if geteuid() != 0 {
            XCTAssertEqual(chmod(readOnly, 0o555), 0)
            expectIO(readOnly + "/x.safetensors", "a read-only folder")
            chmod(readOnly, 0o755)
        } else {
            // root ignores permission bits; sysfs refuses new files even to root.
            #if os(Linux)
            expectIO("/sys/kernel/ddpm-test.safetensors", "a read-only folder")
            XCTAssertEqual(kindOf("/sys/kernel/ddpm-test.safetensors"), nil)
            #endif
        }

        // The rename fails (a non-empty folder in the way): the old content is untouched.
        let blocked = dir + "/blocked"
        XCTAssertEqual(mkdir(blocked, 0o755), 0)
        XCTAssertEqual(mkdir(blocked + "/inner", 0o755), 0)
        expectIO(blocked, "a folder in the way of the rename")

        // Writing fails half-way (the file size limit): the existing file is untouched.
        let path = dir + "/keep.safetensors"
        try SafeTensors.write(path: path, tensors: [], metadata: ["old": "yes"])
        let before = try fileBytes(path)
        let big = [Float](repeating: 1, count: 1 << 16)
        var limit = rlimit()
        getrlimit(RLIMIT_FSIZE_ID, &limit)
        let oldHandler = signal(SIGXFSZ, SIG_IGN)
        var small = limit
        small.rlim_cur = 65536
        XCTAssertEqual(setrlimit(RLIMIT_FSIZE_ID, &small), 0)
        XCTAssertThrowsError(try big.withUnsafeBufferPointer {
            try SafeTensors.write(path: path, tensors: [.init("w", shape: [1 << 16], floats: $0.baseAddress!, count: 1 << 16)], metadata: [:])
        }, "a write that hits the file size limit") { error in
            guard case DDPMError.io? = error as? DDPMError else { return XCTFail("expected .io, got \(error)") }
        }
        setrlimit(RLIMIT_FSIZE_ID, &limit)
        signal(SIGXFSZ, oldHandler)
        XCTAssertEqual(try fileBytes(path), before, "the existing file is untouched")

        let leftovers = try folderEntries(dir).filter { $0.contains(".tmp-") }
        XCTAssertEqual(leftovers, [], "no temporary file is left by any failed save")
        XCTAssertEqual(Set(try folderEntries(dir)), ["ro", "blocked", "keep.safetensors"])
    }

    func testInvalidTensorsAreRefusedBeforeAnyFileIsMade() throws {
        let path = dir + "/bad.safetensors"
        let cases: [(String, [SafeTensors.Tensor])] = [
            ("bytes do not match the shape", [.init(name: "a", dtype: .f32, shape: [2], bytes: [1, 2, 3, 4])]),
            ("negative shape", [.init(name: "a", dtype: .f32, shape: [-1], bytes: [])]),
            ("duplicate name", [.init(name: "a", dtype: .u8, shape: [1], bytes: [1]), .init(name: "a", dtype: .u8, shape: [1], bytes: [2])]),
            ("reserved name", [.init(name: "__metadata__", dtype: .u8, shape: [1], bytes: [1])]),
            ("shape overflow", [.init(name: "a", dtype: .f64, shape: [1 << 62], bytes: [])]),
        ]
        for (what, tensors) in cases {
            XCTAssertThrowsError(try SafeTensors.write(path: path, tensors: tensors, metadata: [:]), what) { error in
                guard case DDPMError.invalidArgument? = error as? DDPMError else { return XCTFail("\(what): expected .invalidArgument, got \(error)") }
            }
        }
        XCTAssertEqual(try folderEntries(dir), [], "nothing was created")
    }
}

// MARK: - Helpers

#if canImport(Glibc)
private let RLIMIT_FSIZE_ID = __rlimit_resource_t(RLIMIT_FSIZE.rawValue)
#else
private let RLIMIT_FSIZE_ID = RLIMIT_FSIZE
#endif

/// A value shared between test threads.
private final class Locked<Value>: @unchecked Sendable {
    private var value: Value
    private let lock = NSLock()
    init(_ value: Value) { self.value = value }
    func get() -> Value { lock.lock(); defer { lock.unlock() }; return value }
    func set(_ v: Value) { update { $0 = v } }
    func update(_ body: (inout Value) -> Void) { lock.lock(); defer { lock.unlock() }; body(&value) }
}

/// CRC-32C one bit at a time, straight from the definition (the oracle for the table version).
private func bitwiseCRC32C(_ bytes: [UInt8]) -> UInt32 {
    var crc: UInt32 = 0xffff_ffff
    for b in bytes {
        crc ^= UInt32(b)
        for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
    }
    return ~crc
}

/// The file type bits of `path` (not following a link), or nil if there is nothing there.
func modeOf(_ path: String) -> mode_t? {
    var st = stat()
    return lstat(path, &st) == 0 ? st.st_mode & 0o7777 : nil
}

func symlinkOrFail(_ target: String, _ link: String) throws {
    guard symlink(target, link) == 0 else { throw DDPMError.io("symlink \(link): \(String(cString: strerror(errno)))") }
}

func fileBytes(_ path: String) throws -> [UInt8] {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { throw DDPMError.io("open \(path): \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
        guard n >= 0 else { throw DDPMError.io("read \(path)") }
        if n == 0 { return out }
        out += chunk[0..<n]
    }
}

func putBytes(_ path: String, _ bytes: [UInt8]) throws {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    guard fd >= 0 else { throw DDPMError.io("create \(path): \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress!, $0.count) }
    guard n == bytes.count || bytes.isEmpty else { throw DDPMError.io("write \(path)") }
}

