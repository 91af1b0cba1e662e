// The safetensors container (https://huggingface.co/docs/safetensors):
//
//   u64 little-endian N | N bytes of JSON header | data region (the tensor bytes)
//
// The header is one JSON object. "__metadata__" (optional) maps strings to strings; every
// other key names a tensor: {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]},
// offsets relative to the start of the data region. Tensor bytes are little-endian (the
// host order on every target we build for).
//
// Reading (SafeTensors+Read.swift) trusts nothing in the file:
// - only a regular file is read: open(O_RDONLY | O_NONBLOCK | O_CLOEXEC), then fstat; a
//   FIFO, a device (/dev/zero), a socket or a folder is refused with `.io` before any read,
//   so nothing blocks and nothing is read without end;
// - the file must be at most `maxFileBytes` (64 GiB) and the header at most
//   `maxHeaderBytes` (100 MB, the reference implementation's limit), checked before
//   anything is allocated; exactly st_size bytes are read;
// - the whole header is validated before the data region is allocated: strict JSON (no
//   duplicate keys, valid UTF-8, integers exact), metadata string → string only, every
//   tensor with exactly dtype, shape (at most `maxRank` dimensions; the parser refuses a
//   longer array when it reaches it, so a header of many unit dimensions costs linear time
//   and little memory) and data_offsets, a known dtype, shape entries ≥ 0,
//   element and byte counts computed with overflow checks, data_offsets two integers with
//   end − begin = bytes, and the tensors, sorted by offset, tile the data region exactly:
//   no overlap, no gap, nothing after the last tensor;
// - if the metadata holds `checksumKey` ("data_crc32c"), the CRC-32C of the data region
//   must match it (files written before the checksum existed have no key and still load);
//   the key belongs to the container: `File.metadata` does not show it, `File.checksum` does.
// Every rejection is `DDPMError.format` (or `.io` for the file system, `.invalidArgument`
// for a path with a NUL byte), and its message names the file and, where there is one,
// the tensor.
//
// Writing (SafeTensors+Write.swift) replaces the destination atomically and safely:
//   1. stale temporary files of ours beside the destination are removed (see below);
//   2. a temporary file ".<name>.tmp-<16 random hex digits>" is created in the
//      destination's folder with open(O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC),
//      the random part from the system's secure generator, so its name cannot be guessed
//      and a file or link planted at any name is never opened; its mode is the existing
//      destination's permission bits (a regular file, not a link; set-id bits, owner and
//      group are not carried over) or 0644 masked by the umask;
//   3. the writer takes flock(LOCK_EX) on it and keeps it until the file is renamed;
//   4. header and tensors are written with write(2) loops, then fsync;
//   5. rename over the destination (a symlink there is replaced, never written through),
//      then fsync of the folder;
//   6. on any failure the temporary file is removed and `.io` thrown; the destination is
//      untouched.
// Concurrent saves to one path (threads or processes) each write their own temporary
// file, so each rename installs one complete file; the last rename wins.
// A save killed before its rename leaves its temporary file behind, unlocked (the kernel
// drops the lock with the process). The next save to the same destination removes such a
// file when it matches our exact name pattern, opens with O_NOFOLLOW | O_NONBLOCK, is a
// regular file owned by our effective user, and can be locked with LOCK_EX | LOCK_NB; a
// file still being written by another save is locked, so it is kept. flock locks belong
// to an open file description, which is what makes this safe between threads of one
// process as well (POSIX fcntl locks are per process and would not be).
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

enum SafeTensors {
    /// The largest file `read` accepts and `write` produces: 64 GiB.
    static let maxFileBytes = 1 << 36
    /// The largest JSON header accepted (the limit of the reference implementation).
    static let maxHeaderBytes = 100_000_000
    /// The most dimensions a tensor may have (a checkpoint's have at most 4: convolution
    /// weights). The bound keeps every shape small, so that a header of many unit dimensions
    /// is refused at once rather than carried through every check.
    static let maxRank = 8  // also the longest JSON array of a header (≥ 2: data_offsets)
    /// The metadata key reserved for the CRC-32C of the data region, as 8 lowercase hex
    /// digits. `write` sets it; `read` verifies it and removes it from `File.metadata`.
    static let checksumKey = "data_crc32c"

    /// The element types a file may hold. Only F32 and F64 are used by checkpoints; the
    /// other byte-sized safetensors types are readable as raw bytes; anything else
    /// (unknown names, sub-byte types) is rejected.
    enum DType: String, Codable, CaseIterable {
        case f32 = "F32", f64 = "F64"
        case f16 = "F16", bf16 = "BF16", f8e4m3 = "F8_E4M3", f8e5m2 = "F8_E5M2"
        case i8 = "I8", i16 = "I16", i32 = "I32", i64 = "I64"
        case u8 = "U8", u16 = "U16", u32 = "U32", u64 = "U64", bool = "BOOL"

        /// Bytes per element.
        var size: Int {
            switch self {
            case .f64, .i64, .u64: return 8
            case .f32, .i32, .u32: return 4
            case .f16, .bf16, .i16, .u16: return 2
            case .f8e4m3, .f8e5m2, .i8, .u8, .bool: return 1
            }
        }
    }

    /// One tensor entry of a header; `data_offsets` = [begin, end) in the data region.
    struct TensorInfo: Codable, Equatable {
        var dtype: DType
        var shape: [Int]
        var data_offsets: [Int]
    }

    /// A tensor to write: its bytes are little-endian (the host order on our targets).
    struct Tensor {
        var name: String
        var dtype: DType
        var shape: [Int]
        var bytes: [UInt8]
        init(_ name: String, shape: [Int], floats p: UnsafePointer<Float>, count: Int) {
            (self.name, dtype, self.shape) = (name, .f32, shape)
            bytes = Array(UnsafeRawBufferPointer(start: p, count: count * 4))
        }
        init(_ name: String, doubles: [Double]) {
            (self.name, dtype, shape) = (name, .f64, [doubles.count])
            bytes = doubles.withUnsafeBytes { Array($0) }
        }
        /// Any tensor, bytes as they go into the file (e.g. one read back by `File.tensor`).
        init(name: String, dtype: DType, shape: [Int], bytes: [UInt8]) {
            (self.name, self.dtype, self.shape, self.bytes) = (name, dtype, shape, bytes)
        }
    }

    /// The data region of a file read back, in one heap block. Allocation failure is an
    /// error here, not an abort.
    final class DataRegion {
        let base: UnsafeMutableRawPointer
        let count: Int
        init(count: Int, _ what: @autoclosure () -> String) throws {
            guard let p = malloc(max(count, 1)) else {
                throw DDPMError.io("cannot allocate \(count) bytes to read \(what())")
            }
            (base, self.count) = (p, count)
        }
        deinit { free(base) }
        var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }
    }

    /// A file read back and validated: metadata, tensor table and the data region.
    struct File {
        /// The path it was read from (for messages).
        var path: String
        /// The "__metadata__" table, without the reserved `checksumKey`.
        var metadata: [String: String]
        var tensors: [String: TensorInfo]
        /// The verified CRC-32C of the data region; nil for a file written without one.
        var checksum: UInt32?
        var data: DataRegion

        /// The raw bytes of a tensor listed in `tensors`.
        func bytes(_ info: TensorInfo) -> UnsafeRawBufferPointer {
            UnsafeRawBufferPointer(rebasing: data.bytes[info.data_offsets[0]..<info.data_offsets[1]])
        }

        /// The named F32 tensor; throws `.format` if it is missing or has another shape.
        func floats(_ name: String, shape: [Int]) throws -> [Float] {
            guard let info = tensors[name] else { throw DDPMError.format("'\(path)' has no tensor '\(name)'") }
            guard info.dtype == .f32, info.shape == shape else {
                throw DDPMError.format("'\(path)': tensor '\(name)' is \(info.dtype.rawValue) \(info.shape), expected F32 \(shape)")
            }
            return copy(bytes(info), as: Float.self)
        }

        /// The named F64 vector; throws `.format` if it is missing or not a vector.
        func doubles(_ name: String) throws -> [Double] {
            guard let info = tensors[name], info.dtype == .f64, info.shape.count == 1 else {
                throw DDPMError.format("'\(path)' has no F64 vector '\(name)'")
            }
            return copy(bytes(info), as: Double.self)
        }

        /// The metadata value under `key`; throws `.format` if there is none.
        func meta(_ key: String) throws -> String {
            guard let v = metadata[key] else { throw DDPMError.format("'\(path)': metadata has no '\(key)'") }
            return v
        }

        /// Every tensor in file order, ready to be written again (e.g. after an edit).
        func rawTensors() -> [Tensor] {
            tensors.sorted { ($0.value.data_offsets[0], $0.value.data_offsets[1], $0.key) < ($1.value.data_offsets[0], $1.value.data_offsets[1], $1.key) }
                .map { Tensor(name: $0.key, dtype: $0.value.dtype, shape: $0.value.shape, bytes: Array(bytes($0.value))) }
        }
    }
}

/// Copies raw bytes (any alignment) into an array of `T`.
private func copy<T>(_ raw: UnsafeRawBufferPointer, as: T.Type) -> [T] {
    let count = raw.count / MemoryLayout<T>.stride
    return [T](unsafeUninitializedCapacity: count) { out, initialized in
        if count > 0 { UnsafeMutableRawBufferPointer(out).copyMemory(from: UnsafeRawBufferPointer(rebasing: raw.prefix(count * MemoryLayout<T>.stride))) }
        initialized = count
    }
}

// MARK: - CRC-32C

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78, as in iSCSI, ext4 and Btrfs):
/// it detects every single-bit error and every burst of up to 32 bits at any length, every
/// error of up to 3 bits in up to 2^31 bits (256 MiB) of data, and other corruption with
/// probability 1 − 2^−32. It guards against accidents, not tampering: whoever edits a file
/// can recompute it. (Chosen over CRC-32 for its larger Hamming distances at these lengths
/// and its hardware instruction on x86 and ARM, should speed ever need it.)
/// Slicing-by-8: eight 256-entry tables, one 8-byte word per iteration.
enum CRC32C {
    /// table[k·256 + b] = CRC of byte b followed by k zero bytes.
    static let table: [UInt32] = {
        var t = [UInt32](repeating: 0, count: 8 * 256)
        for b in 0..<256 {
            var c = UInt32(b)
            for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
            t[b] = c
        }
        for k in 1..<8 {
            for b in 0..<256 {
                let prev = t[(k - 1) * 256 + b]
                t[k * 256 + b] = (prev >> 8) ^ t[Int(prev & 0xff)]
            }
        }
        return t
    }()

    /// Continues a CRC over `bytes`; start with `crc = 0`.
    static func update(_ crc: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
        var c = ~crc
        table.withUnsafeBufferPointer { t in
            var i = 0
            let n = bytes.count
            while n - i >= 8 {
                let lo = c ^ bytes.loadUnaligned(fromByteOffset: i, as: UInt32.self).littleEndian
                let hi = bytes.loadUnaligned(fromByteOffset: i + 4, as: UInt32.self).littleEndian
                c = t[7 * 256 + Int(lo & 0xff)] ^ t[6 * 256 + Int((lo >> 8) & 0xff)]
                  ^ t[5 * 256 + Int((lo >> 16) & 0xff)] ^ t[4 * 256 + Int(lo >> 24)]
                  ^ t[3 * 256 + Int(hi & 0xff)] ^ t[2 * 256 + Int((hi >> 8) & 0xff)]
                  ^ t[1 * 256 + Int((hi >> 16) & 0xff)] ^ t[Int(hi >> 24)]
                i += 8
            }
            while i < n {
                c = t[Int((c ^ UInt32(bytes[i])) & 0xff)] ^ (c >> 8)
                i += 1
            }
        }
        return ~c
    }

    static func checksum(_ bytes: [UInt8]) -> UInt32 { bytes.withUnsafeBytes { update(0, $0) } }

    /// 8 lowercase hex digits, as stored under `SafeTensors.checksumKey`.
    static func hex(_ crc: UInt32) -> String {
        let s = String(crc, radix: 16)
        return String(repeating: "0", count: 8 - s.count) + s
    }

    /// Parses exactly 8 lowercase hex digits.
    static func parseHex(_ s: String) -> UInt32? {
        guard s.utf8.count == 8, s.utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }) else { return nil }
        return UInt32(s, radix: 16)
    }
}
