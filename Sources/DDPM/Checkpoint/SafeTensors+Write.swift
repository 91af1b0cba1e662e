// Writing a safetensors file: a private, locked temporary file in the destination's
// folder, fsync, rename, fsync of the folder; stale temporary files of killed saves are
// removed by the next save. The scheme, and why it is safe, is described at the top of
// SafeTensors.swift.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension SafeTensors {
    /// Writes `tensors` (in this order) and `metadata` to `path`, replacing any file there
    /// atomically; `metadata` gains `checksumKey` (a value given for it is replaced).
    /// - Throws: `.invalidArgument` for tensors that cannot form a valid file (duplicate or
    ///   reserved names, byte counts that do not match the shape, sizes over the limits);
    ///   `.io` if the file cannot be written — then no temporary file is left behind and
    ///   an existing file at `path` is untouched.
    static func write(path: String, tensors: [Tensor], metadata: [String: String]) throws {
        let prefixAndHeader = try encode(tensors: tensors, metadata: metadata)
        let (folder, name) = try splitPath(path)

        var dirFD: Int32
        repeat { dirFD = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC) } while dirFD < 0 && errno == EINTR
        guard dirFD >= 0 else { throw DDPMError.io("cannot create '\(path)': cannot open its folder '\(folder)': \(errnoText())") }
        defer { close(dirFD) }

        removeStaleTemporaries(dirFD, name)
        let temp = try TemporaryFile(dirFD, name, path)
        do {
            try temp.write(prefixAndHeader)
            for t in tensors { try temp.write(t.bytes) }
            guard fsync(temp.fd) == 0 else { throw DDPMError.io("cannot create '\(path)': fsync failed: \(errnoText())") }
            guard renameat(dirFD, temp.name, dirFD, name) == 0 else {
                throw DDPMError.io("cannot create '\(path)': cannot rename the temporary file over it: \(errnoText())")
            }
        } catch {
            temp.remove()
            throw error
        }
        temp.closeAfterRename()
        // The rename is durable once the folder is: fsync it (EINVAL: the file system cannot).
        if fsync(dirFD) != 0 && errno != EINVAL {
            throw DDPMError.io("created '\(path)', but syncing its folder failed: \(errnoText())")
        }
    }

    /// The 8-byte prefix and the JSON header (padded with spaces so the data region starts
    /// 8-byte aligned), after checking the tensors.
    private static func encode(tensors: [Tensor], metadata: [String: String]) throws -> [UInt8] {
        var infos: [String: TensorInfo] = [:]
        var offset = 0
        var crc: UInt32 = 0
        for t in tensors {
            try require(t.name != "__metadata__", "'__metadata__' is not a valid tensor name")
            try require(infos[t.name] == nil, "tensor name '\(t.name)' is used twice")
            try require(t.shape.count <= maxRank, "tensor '\(t.name)' has \(t.shape.count) dimensions, more than the limit of \(maxRank)")
            var count = 1
            for d in t.shape {
                let (p, overflow) = count.multipliedReportingOverflow(by: d)
                try require(d >= 0 && !overflow, "tensor '\(t.name)' has an invalid shape \(t.shape)")
                count = p
            }
            let (size, overflow) = count.multipliedReportingOverflow(by: t.dtype.size)
            try require(!overflow && size == t.bytes.count,
                        "tensor '\(t.name)': \(t.bytes.count) bytes given, \(t.dtype.rawValue) \(t.shape) needs \(overflow ? "more than Int.max" : String(size))")
            try require(size <= maxFileBytes - offset, "the tensors exceed the file size limit of \(maxFileBytes) bytes")
            infos[t.name] = TensorInfo(dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + size])
            offset += size
            crc = t.bytes.withUnsafeBytes { CRC32C.update(crc, $0) }
        }
        var meta = metadata
        meta[checksumKey] = CRC32C.hex(crc)

        // {"__metadata__":{"k":"v",...},"name":{"data_offsets":[b,e],"dtype":"F32","shape":[...]},...}
        var json: [UInt8] = Array("{\"__metadata__\":{".utf8)
        for (k, (key, value)) in byteOrdered(meta).enumerated() {
            if k > 0 { json.append(0x2c) }
            appendJSONString(key, to: &json)
            json.append(0x3a)
            appendJSONString(value, to: &json)
        }
        json.append(0x7d)
        for (name, info) in byteOrdered(infos) {
            json.append(0x2c)
            appendJSONString(name, to: &json)
            json += Array(":{\"data_offsets\":[\(info.data_offsets[0]),\(info.data_offsets[1])],\"dtype\":\"\(info.dtype.rawValue)\",\"shape\":[".utf8)
            json += Array(info.shape.map(String.init).joined(separator: ",").utf8)
            json += Array("]}".utf8)
        }
        json.append(0x7d)
        while json.count % 8 != 0 { json.append(0x20) }
        try require(json.count <= maxHeaderBytes, "the header would be \(json.count) bytes, over the limit of \(maxHeaderBytes)")
        try require(offset <= maxFileBytes - 8 - json.count, "the file would exceed the size limit of \(maxFileBytes) bytes")

        var out = [UInt8](repeating: 0, count: 8)
        for i in 0..<8 { out[i] = UInt8(truncatingIfNeeded: UInt64(json.count) >> (8 * UInt64(i))) }
        return out + json
    }

    /// The folder (for openat/renameat) and the file name of a destination path.
    private static func splitPath(_ path: String) throws -> (folder: String, name: String) {
        guard !path.utf8.contains(0) else { throw DDPMError.invalidArgument("path contains a NUL byte: '\(path)'") }
        let bytes = Array(path.utf8)
        let slash = bytes.lastIndex(of: 0x2f)
        let name = String(decoding: bytes[(slash.map { $0 + 1 } ?? 0)...], as: UTF8.self)
        let folder = slash.map { $0 == 0 ? "/" : String(decoding: bytes[..<$0], as: UTF8.self) } ?? "."
        guard !name.isEmpty, name != ".", name != ".." else { throw DDPMError.io("cannot create '\(path)': the path does not name a file") }
        return (folder, name)
    }

    /// ".<name>.tmp-" — followed by exactly `randomDigits` lowercase hex digits. A name too
    /// long for that to fit in `maxNameBytes` is cut (at a character boundary) to what fits,
    /// so that every name a folder can hold can be saved to; two long names that share their
    /// first 233 bytes then share the prefix, and a save may remove the other's stale
    /// temporary files (never a live one: those are locked).
    static func temporaryPrefix(_ name: String) -> String {
        let room = maxNameBytes - 1 - ".tmp-".utf8.count - randomDigits
        var kept = Array(name.utf8.prefix(room))
        if kept.count < name.utf8.count {
            while let last = kept.last, last & 0xC0 == 0x80 { kept.removeLast() }  // continuation bytes
            if let last = kept.last, last >= 0xC0 { kept.removeLast() }  // a lead byte whose tail was cut
        }
        return "." + String(decoding: kept, as: UTF8.self) + ".tmp-"
    }
    static let randomDigits = 16
    /// NAME_MAX of Linux and macOS file systems: the longest name of a folder entry, in bytes.
    static let maxNameBytes = 255

    /// Whether `candidate` is one of our temporary names for the destination `name`.
    static func isTemporaryName(_ candidate: [UInt8], for name: String) -> Bool {
        let prefix = Array(temporaryPrefix(name).utf8)
        guard candidate.count == prefix.count + randomDigits, candidate.starts(with: prefix) else { return false }
        return candidate[prefix.count...].allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }

    /// Removes temporary files left beside `name` by saves that were killed: only names of
    /// our exact pattern, opened without following links or blocking, regular files owned
    /// by our effective user, and only those no live save holds locked. Best effort: a
    /// file that cannot be checked is left alone.
    static func removeStaleTemporaries(_ dirFD: Int32, _ name: String) {
        let listFD = dup(dirFD)
        guard listFD >= 0, let dir = fdopendir(listFD) else {
            if listFD >= 0 { close(listFD) }
            return
        }
        defer { closedir(dir) }
        var candidates: [[UInt8]] = []
        while let entry = readdir(dir) {
            let entryName = withUnsafeBytes(of: entry.pointee.d_name) { Array($0.prefix { $0 != 0 }) }
            if isTemporaryName(entryName, for: name) { candidates.append(entryName) }
        }
        for candidate in candidates {
            (candidate + [0]).withUnsafeBufferPointer { cName in
                let cName = UnsafeRawPointer(cName.baseAddress!).assumingMemoryBound(to: CChar.self)
                let fd = openat(dirFD, cName, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY)
                guard fd >= 0 else { return }
                defer { close(fd) }
                var st = stat(), now = stat()
                guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG, st.st_uid == geteuid(),
                      flock(fd, LOCK_EX | LOCK_NB) == 0,
                      // still the file under that name (not renamed away and replaced meanwhile)
                      fstatat(dirFD, cName, &now, AT_SYMLINK_NOFOLLOW) == 0, now.st_dev == st.st_dev, now.st_ino == st.st_ino
                else { return }
                unlinkat(dirFD, cName, 0)
            }
        }
    }

    /// Our temporary file: created exclusively under an unguessable name and locked
    /// (LOCK_EX) for as long as it exists under that name.
    private final class TemporaryFile {
        let dirFD: Int32
        let name: String
        let path: String  // the destination, for messages
        let fd: Int32

        init(_ dirFD: Int32, _ destination: String, _ path: String) throws {
            (self.dirFD, self.path) = (dirFD, path)
            // The mode of the file being replaced (a regular file, not a link), else 0644 & ~umask;
            // for a link to a regular file, no more than its target allows (a link to a 0600
            // file gives 0600: the link is replaced, the target's privacy is kept).
            var st = stat()
            let keepMode: mode_t? = fstatat(dirFD, destination, &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_mode & S_IFMT == S_IFREG
                ? st.st_mode & 0o777 : nil
            var target = stat()
            let linkTargetMode: mode_t? = keepMode == nil && st.st_mode & S_IFMT == S_IFLNK
                && fstatat(dirFD, destination, &target, 0) == 0 && target.st_mode & S_IFMT == S_IFREG ? target.st_mode & 0o777 : nil
            var generator = SystemRandomNumberGenerator()  // getrandom(2) / arc4random: unpredictable
            for _ in 0..<64 {
                let digits = String(generator.next() as UInt64, radix: 16)
                let candidate = temporaryPrefix(destination) + String(repeating: "0", count: randomDigits - digits.count) + digits
                var fd: Int32
                repeat {
                    fd = openat(dirFD, candidate, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, keepMode ?? 0o644)
                } while fd < 0 && errno == EINTR
                if fd < 0 && errno == EEXIST { continue }
                guard fd >= 0 else { throw DDPMError.io("cannot create '\(path)': cannot create a temporary file in its folder: \(errnoText())") }
                // Lock it, then make sure a concurrent cleaner did not remove it before we
                // held the lock (flock fails only where the file system has no locks; then
                // no cleaner can lock it either, and it is safe to go on unlocked).
                var r: Int32
                repeat { r = flock(fd, LOCK_EX) } while r != 0 && errno == EINTR
                var mine = stat(), named = stat()
                guard fstat(fd, &mine) == 0, fstatat(dirFD, candidate, &named, AT_SYMLINK_NOFOLLOW) == 0,
                      mine.st_dev == named.st_dev, mine.st_ino == named.st_ino
                else { close(fd); continue }
                (self.fd, name) = (fd, candidate)
                let mode = keepMode ?? linkTargetMode.map { $0 & mine.st_mode & 0o777 }  // mine: 0644 & ~umask
                if let mode, fchmod(fd, mode) != 0 {
                    let message = errnoText()
                    remove()
                    throw DDPMError.io("cannot create '\(path)': cannot set the mode of the temporary file: \(message)")
                }
                return
            }
            throw DDPMError.io("cannot create '\(path)': no free temporary name in its folder")
        }

        /// write(2) until every byte is written, retrying after EINTR and short writes.
        func write(_ bytes: [UInt8]) throws {
            try bytes.withUnsafeBytes { buffer in
                var done = 0
                while done < buffer.count {
                    let n = systemWrite(fd, buffer.baseAddress! + done, min(buffer.count - done, 1 << 30))
                    if n < 0 && errno == EINTR { continue }
                    guard n > 0 else { throw DDPMError.io("cannot create '\(path)': writing failed: \(n < 0 ? errnoText() : "no progress")") }
                    done += n
                }
            }
        }

        /// Unlinks the file while still holding the lock, then closes it.
        func remove() {
            unlinkat(dirFD, name, 0)
            close(fd)
        }

        /// After the rename the file is the destination; closing releases the lock.
        func closeAfterRename() { close(fd) }
    }
}

/// write(2) (the name `write` inside SafeTensors means `SafeTensors.write`).
private func systemWrite(_ fd: Int32, _ p: UnsafeRawPointer, _ count: Int) -> Int { write(fd, p, count) }
