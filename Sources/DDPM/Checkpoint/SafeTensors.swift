// The safetensors container (https://huggingface.co/docs/safetensors):
//   u64 little-endian N | N bytes of JSON header | tensor bytes
// The header maps each tensor name to {"dtype", "shape", "data_offsets": [begin, end]}
// (offsets into the tensor bytes) and may hold "__metadata__": {string: string}.
// Files are written to a temporary name in the same folder, flushed, then renamed, so a
// crash or a full disk never leaves a half-written file under the final name.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

enum SafeTensors {
    enum DType: String, Codable {
        case f32 = "F32", f64 = "F64"
        var size: Int { self == .f32 ? 4 : 8 }
    }

    struct TensorInfo: Codable, Equatable {
        var dtype: DType
        var shape: [Int]
        var data_offsets: [Int]
    }

    /// One header entry: the metadata table or a tensor.
    enum HeaderEntry: Codable {
        case metadata([String: String])
        case tensor(TensorInfo)
        init(from decoder: Decoder) throws {
            if let t = try? TensorInfo(from: decoder) { self = .tensor(t); return }
            self = .metadata(try [String: String](from: decoder))
        }
        func encode(to encoder: Encoder) throws {
            switch self {
            case .metadata(let m): try m.encode(to: encoder)
            case .tensor(let t): try t.encode(to: encoder)
            }
        }
    }

    /// A tensor to write: its bytes are little-endian floats (the host order on our targets).
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
    }

    /// A file read back: metadata, tensor table and the raw tensor bytes.
    struct File {
        var metadata: [String: String]
        var tensors: [String: TensorInfo]
        var data: [UInt8]

        /// The named F32 tensor; throws `.format` if it is missing or has another shape.
        func floats(_ name: String, shape: [Int]) throws -> [Float] {
            guard let info = tensors[name] else { throw DDPMError.format("checkpoint has no tensor '\(name)'") }
            guard info.dtype == .f32, info.shape == shape else {
                throw DDPMError.format("tensor '\(name)' is \(info.dtype.rawValue) \(info.shape), expected F32 \(shape)")
            }
            return data[info.data_offsets[0]..<info.data_offsets[1]].withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        }

        func doubles(_ name: String) throws -> [Double] {
            guard let info = tensors[name], info.dtype == .f64, info.shape.count == 1 else {
                throw DDPMError.format("checkpoint has no F64 vector '\(name)'")
            }
            return data[info.data_offsets[0]..<info.data_offsets[1]].withUnsafeBytes { Array($0.bindMemory(to: Double.self)) }
        }

        func meta(_ key: String) throws -> String {
            guard let v = metadata[key] else { throw DDPMError.format("checkpoint metadata has no '\(key)'") }
            return v
        }
    }

    static func write(path: String, tensors: [Tensor], metadata: [String: String]) throws {
        var header: [String: HeaderEntry] = ["__metadata__": .metadata(metadata)]
        var offset = 0
        for t in tensors {
            header[t.name] = .tensor(TensorInfo(dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.bytes.count]))
            offset += t.bytes.count
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        var json = Array(try encoder.encode(header))
        while json.count % 8 != 0 { json.append(0x20) }  // pad with spaces so the data is 8-byte aligned
        var prefix = [UInt8](repeating: 0, count: 8)
        for i in 0..<8 { prefix[i] = UInt8(truncatingIfNeeded: UInt64(json.count) >> (8 * UInt64(i))) }

        let temp = path + ".tmp-\(getpid())"
        guard let f = fopen(temp, "wb") else { throw DDPMError.io("cannot create '\(temp)': \(String(cString: strerror(errno)))") }
        var ok = fwrite(prefix, 1, 8, f) == 8 && fwrite(json, 1, json.count, f) == json.count
        for t in tensors where ok { ok = t.bytes.isEmpty || fwrite(t.bytes, 1, t.bytes.count, f) == t.bytes.count }
        ok = ok && fflush(f) == 0 && fsync(fileno(f)) == 0
        let message = String(cString: strerror(errno))
        fclose(f)
        guard ok else { unlink(temp); throw DDPMError.io("writing '\(temp)' failed: \(message)") }
        guard rename(temp, path) == 0 else {
            let m = String(cString: strerror(errno))
            unlink(temp)
            throw DDPMError.io("cannot rename '\(temp)' to '\(path)': \(m)")
        }
    }

    static func read(path: String) throws -> File {
        guard let f = fopen(path, "rb") else { throw DDPMError.io("cannot open '\(path)': \(String(cString: strerror(errno)))") }
        defer { fclose(f) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = fread(&chunk, 1, chunk.count, f)
            if n > 0 { bytes.append(contentsOf: chunk[0..<n]) }
            if n < chunk.count { break }
        }
        guard ferror(f) == 0 else { throw DDPMError.io("reading '\(path)' failed") }
        guard bytes.count >= 8 else { throw DDPMError.format("'\(path)' is too short to be a safetensors file") }
        var n: UInt64 = 0
        for i in 0..<8 { n |= UInt64(bytes[i]) << (8 * UInt64(i)) }
        guard n <= UInt64(bytes.count - 8) else { throw DDPMError.format("'\(path)': header size \(n) exceeds the file") }
        let headerEnd = 8 + Int(n)
        let header: [String: HeaderEntry]
        do { header = try JSONDecoder().decode([String: HeaderEntry].self, from: Data(bytes[8..<headerEnd])) } catch {
            throw DDPMError.format("'\(path)' has no valid safetensors JSON header")
        }
        var file = File(metadata: [:], tensors: [:], data: Array(bytes[headerEnd...]))
        for (name, entry) in header {
            switch entry {
            case .metadata(let m) where name == "__metadata__": file.metadata = m
            case .metadata: throw DDPMError.format("'\(path)': entry '\(name)' is not a tensor")
            case .tensor(let t):
                let count = t.shape.reduce(1) { $0 &* $1 }
                guard t.data_offsets.count == 2, t.shape.allSatisfy({ $0 >= 0 }),
                      t.data_offsets[0] >= 0, t.data_offsets[0] <= t.data_offsets[1], t.data_offsets[1] <= file.data.count,
                      t.data_offsets[1] - t.data_offsets[0] == count &* t.dtype.size
                else { throw DDPMError.format("'\(path)': tensor '\(name)' has inconsistent offsets or shape") }
                file.tensors[name] = t
            }
        }
        return file
    }
}
