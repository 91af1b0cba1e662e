// Reading a safetensors file: regular files only, sizes bounded before allocation, the
// whole header validated before the data region is read, the checksum verified last.
// The rules are listed at the top of SafeTensors.swift.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension SafeTensors {
    /// Reads and validates the whole file at `path`.
    /// - Throws: `.io` if the file cannot be opened or read, or is not a regular file (a FIFO,
    ///   a device, a folder); `.format` if anything in it breaks the rules above, with a
    ///   message naming the file and the tensor.
    static func read(path: String) throws -> File {
        let (fd, size) = try openRegularFile(path)
        defer { close(fd) }
        guard size <= maxFileBytes else {
            throw DDPMError.format("'\(path)' is \(size) bytes, larger than the limit of \(maxFileBytes) bytes")
        }
        guard size >= 8 else { throw DDPMError.format("'\(path)' is \(size) bytes, too short to be a safetensors file") }

        // u64 little-endian header length N.
        var prefix = [UInt8](repeating: 0, count: 8)
        try prefix.withUnsafeMutableBytes { try readExactly(fd, $0, path) }
        let n = prefix.enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
        guard n <= UInt64(maxHeaderBytes) else {
            throw DDPMError.format("'\(path)': header length \(n) exceeds the limit of \(maxHeaderBytes) bytes")
        }
        guard n <= UInt64(size - 8) else {
            throw DDPMError.format("'\(path)': header length \(n) runs past the end of the file (\(size) bytes)")
        }
        let headerLength = Int(n)
        let dataLength = size - 8 - headerLength

        var header = [UInt8](repeating: 0, count: headerLength)
        try header.withUnsafeMutableBytes { try readExactly(fd, $0, path) }
        let parsed = try header.withUnsafeBytes { try parseHeader($0, dataLength: dataLength, path: path) }
        var metadata = parsed.metadata

        let data = try DataRegion(count: dataLength, "the data of '\(path)'")
        try readExactly(fd, UnsafeMutableRawBufferPointer(start: data.base, count: dataLength), path)
        // Exactly st_size bytes: a file that grew while we read it is not the one we checked.
        var extra: UInt8 = 0
        guard try readSome(fd, &extra, 1, path) == 0 else {
            throw DDPMError.io("'\(path)' changed while it was being read (longer than its size \(size))")
        }

        var checksum: UInt32?
        if let stored = metadata.removeValue(forKey: checksumKey) {
            guard let expected = CRC32C.parseHex(stored) else {
                throw DDPMError.format("'\(path)': metadata '\(checksumKey)' is not 8 lowercase hex digits")
            }
            let actual = CRC32C.update(0, data.bytes)
            guard actual == expected else {
                throw DDPMError.format("'\(path)': the tensor data is corrupted: CRC-32C is \(CRC32C.hex(actual)), the file records \(stored)")
            }
            checksum = actual
        }
        return File(path: path, metadata: metadata, tensors: parsed.tensors, checksum: checksum, data: data)
    }

    /// Opens `path` for reading if it is a regular file, and returns its size. O_NONBLOCK
    /// makes open return at once on a FIFO without a writer; fstat then refuses everything
    /// but a regular file.
    private static func openRegularFile(_ path: String) throws -> (fd: Int32, size: Int) {
        guard !path.utf8.contains(0) else { throw DDPMError.invalidArgument("path contains a NUL byte: '\(path)'") }
        var fd: Int32
        repeat { fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY) } while fd < 0 && errno == EINTR
        guard fd >= 0 else { throw DDPMError.io("cannot open '\(path)': \(errnoText())") }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let m = errnoText()
            close(fd)
            throw DDPMError.io("cannot stat '\(path)': \(m)")
        }
        guard st.st_mode & S_IFMT == S_IFREG else {
            close(fd)
            throw DDPMError.io("'\(path)' is not a regular file (it is \(fileKind(st.st_mode)))")
        }
        // Back to blocking reads: O_NONBLOCK was only for the open.
        let flags = fcntl(fd, F_GETFL)
        if flags >= 0 { _ = fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) }
        return (fd, Int(st.st_size))
    }

    /// Fills `buffer` from `fd` with read(2), retrying after EINTR and short reads.
    /// - Throws: `.io` if the file ends first (it was truncated while being read).
    private static func readExactly(_ fd: Int32, _ buffer: UnsafeMutableRawBufferPointer, _ path: String) throws {
        var done = 0
        while done < buffer.count {
            let n = try readSome(fd, buffer.baseAddress! + done, buffer.count - done, path)
            guard n > 0 else { throw DDPMError.io("'\(path)' ended early: it changed while it was being read") }
            done += n
        }
    }

    /// One read(2) of at most `count` bytes (at most 1 GiB per call), retrying after EINTR.
    private static func readSome(_ fd: Int32, _ p: UnsafeMutableRawPointer, _ count: Int, _ path: String) throws -> Int {
        while true {
            let n = systemRead(fd, p, min(count, 1 << 30))
            if n >= 0 { return n }
            if errno == EINTR { continue }
            throw DDPMError.io("reading '\(path)' failed: \(errnoText())")
        }
    }

    /// Validates the header JSON against a data region of `dataLength` bytes and returns the
    /// metadata and the tensor table. Every rule of the format is checked here, before the
    /// data region is allocated.
    static func parseHeader(_ header: UnsafeRawBufferPointer, dataLength: Int, path: String) throws
        -> (metadata: [String: String], tensors: [String: TensorInfo])
    {
        func bad(_ message: String) -> DDPMError { .format("'\(path)': \(message)") }
        guard header.first == 0x7b else { throw bad("the header does not start with '{'") }
        let root: JSON
        do { root = try parseJSON(header, maxArrayCount: maxRank) } catch {
            throw bad(error.tooLong ? "the header has \(error.message) (a shape has at most \(maxRank) dimensions)"
                                    : "the header is not valid JSON: \(error.message)")
        }
        guard case .object(let entries) = root else { throw bad("the header is not a JSON object") }

        var metadata: [String: String] = [:]
        var tensors: [String: TensorInfo] = [:]
        for (name, entry) in entries {
            if name == "__metadata__" {
                guard case .object(let pairs) = entry else { throw bad("'__metadata__' is \(entry.summary), expected an object of strings") }
                for (key, value) in pairs {
                    guard case .string(let s) = value else { throw bad("metadata '\(key)' is \(value.summary), expected a string") }
                    metadata[key] = s
                }
            } else {
                tensors[name] = try tensorInfo(entry, dataLength: dataLength) { bad("tensor '\(name)': \($0)") }
            }
        }

        // The tensors, sorted by offset, must tile the data region exactly.
        let ordered = tensors.sorted { ($0.value.data_offsets[0], $0.value.data_offsets[1], $0.key) < ($1.value.data_offsets[0], $1.value.data_offsets[1], $1.key) }
        var end = 0
        var previous: String?
        for (name, info) in ordered {
            let (b, e) = (info.data_offsets[0], info.data_offsets[1])
            if b < end { throw bad("tensor '\(name)' [\(b), \(e)) overlaps tensor '\(previous!)' (which ends at \(end))") }
            if b > end {
                throw bad(previous.map { "gap of \(b - end) bytes between tensor '\($0)' (ends at \(end)) and tensor '\(name)' (starts at \(b))" }
                    ?? "gap of \(b) bytes before the first tensor '\(name)'")
            }
            (end, previous) = (e, name)
        }
        if end != dataLength {
            throw bad(previous.map { "\(dataLength - end) trailing bytes after the last tensor '\($0)'" }
                ?? "\(dataLength) bytes of data but no tensors")
        }
        return (metadata, tensors)
    }

    /// One tensor entry: exactly dtype, shape and data_offsets, consistent with each other
    /// and inside the data region.
    private static func tensorInfo(_ entry: JSON, dataLength: Int, _ bad: (String) -> DDPMError) throws -> TensorInfo {
        guard case .object(let fields) = entry else { throw bad("entry is \(entry.summary), expected an object") }
        var dtypeValue: JSON?, shapeValue: JSON?, offsetsValue: JSON?
        for (key, value) in fields {
            switch key {
            case "dtype": dtypeValue = value
            case "shape": shapeValue = value
            case "data_offsets": offsetsValue = value
            default: throw bad("unknown field '\(key)'")
            }
        }
        guard let dtypeValue else { throw bad("no 'dtype'") }
        guard let shapeValue else { throw bad("no 'shape'") }
        guard let offsetsValue else { throw bad("no 'data_offsets'") }

        guard case .string(let dtypeName) = dtypeValue else { throw bad("dtype is \(dtypeValue.summary), expected a string") }
        guard let dtype = DType(rawValue: dtypeName) else {
            throw bad("unknown dtype '\(dtypeName)' (known: \(DType.allCases.map(\.rawValue).joined(separator: ", ")))")
        }

        guard case .array(let dims) = shapeValue else { throw bad("shape is \(shapeValue.summary), expected an array of integers") }
        guard dims.count <= maxRank else { throw bad("shape has \(dims.count) dimensions, more than the limit of \(maxRank)") }
        var shape: [Int] = []
        shape.reserveCapacity(dims.count)
        var count = 1
        for (k, d) in dims.enumerated() {
            guard let n = d.integer else { throw bad("shape[\(k)] is \(d.summary), expected an integer in 0...\(Int.max)") }
            guard n >= 0 else { throw bad("shape[\(k)] is negative (\(n))") }
            let (product, overflow) = count.multipliedReportingOverflow(by: n)
            guard !overflow else { throw bad("shape \(dims.map { $0.integer ?? -1 }) has more elements than Int can count") }
            count = product
            shape.append(n)
        }
        let (bytes, overflow) = count.multipliedReportingOverflow(by: dtype.size)
        guard !overflow else { throw bad("shape \(shape) of \(dtype.rawValue) needs more bytes than Int can count") }

        guard case .array(let offsets) = offsetsValue else { throw bad("data_offsets is \(offsetsValue.summary), expected [begin, end]") }
        guard offsets.count == 2 else { throw bad("data_offsets has \(offsets.count) entries, expected 2") }
        guard let begin = offsets[0].integer, let end = offsets[1].integer else {
            throw bad("data_offsets [\(offsets[0].summary), \(offsets[1].summary)] are not both integers")
        }
        guard begin >= 0, begin <= end, end <= dataLength else {
            throw bad("data_offsets [\(begin), \(end)] are outside the data region [0, \(dataLength)]")
        }
        guard end - begin == bytes else {
            throw bad("data_offsets [\(begin), \(end)] hold \(end - begin) bytes, but \(dtype.rawValue) \(shape) needs \(bytes)")
        }
        return TensorInfo(dtype: dtype, shape: shape, data_offsets: [begin, end])
    }
}

/// read(2) (the name `read` inside SafeTensors means `SafeTensors.read`).
private func systemRead(_ fd: Int32, _ p: UnsafeMutableRawPointer, _ count: Int) -> Int { read(fd, p, count) }

extension SafeTensors {
    /// strerror(errno), for messages.
    static func errnoText() -> String { String(cString: strerror(errno)) }

    /// What kind of file system object a mode describes, for messages.
    static func fileKind(_ mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFREG: return "a regular file"
        case S_IFDIR: return "a folder"
        case S_IFIFO: return "a FIFO"
        case S_IFCHR: return "a character device"
        case S_IFBLK: return "a block device"
        case S_IFSOCK: return "a socket"
        case S_IFLNK: return "a symbolic link"
        default: return "an unknown kind of file"
        }
    }
}
