// Status codes, the thread-local last-error message, and the guard every export runs in:
// Swift errors become a status and a message; nothing traps on caller input.
import CDDPM
import DDPM
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The header's status codes as Int32 (the exports' return type).
enum Status {
    static let ok = Int32(DDPM_OK), invalidArgument = Int32(DDPM_ERR_INVALID_ARGUMENT), shape = Int32(DDPM_ERR_SHAPE),
               nonFinite = Int32(DDPM_ERR_NON_FINITE), io = Int32(DDPM_ERR_IO), format = Int32(DDPM_ERR_FORMAT),
               cancelled = Int32(DDPM_ERR_CANCELLED), internalError = Int32(DDPM_ERR_INTERNAL)
}

/// One key per process; each thread's value is a malloc'ed C string freed with the thread.
private let lastErrorKey: pthread_key_t = {
    var key = pthread_key_t()
    pthread_key_create(&key) { free($0) }
    return key
}()

func setLastError(_ message: String) {
    free(pthread_getspecific(lastErrorKey))
    pthread_setspecific(lastErrorKey, strdup(message))
}

/// Runs an export's body, mapping a thrown error to its status and message.
func guarded(_ function: String, _ body: () throws -> Void) -> Int32 {
    do {
        try body()
        return Status.ok
    } catch let error as DDPMError {
        setLastError("\(function): \(error.description)")
        switch error {
        case .invalidArgument: return Status.invalidArgument
        case .shapeMismatch: return Status.shape
        case .nonFinite: return Status.nonFinite
        case .io: return Status.io
        case .format: return Status.format
        case .cancelled: return Status.cancelled
        }
    } catch {
        setLastError("\(function): internal error: \(error)")
        return Status.internalError
    }
}

/// Throws `.invalidArgument` naming the NULL pointer.
@inline(__always)
func nonNull<T>(_ p: T?, _ name: String) throws -> T {
    guard let p else { throw DDPMError.invalidArgument("\(name) is NULL") }
    return p
}

/// Checks `count` against rows × cols (with overflow and positivity checks) and returns it as Int.
func checkCount(_ count: Int64, rows: Int64, cols: Int64, _ what: String) throws -> Int {
    guard rows >= 1 else { throw DDPMError.invalidArgument("\(what): batch must be >= 1 (got \(rows))") }
    guard cols >= 1 else { throw DDPMError.invalidArgument("\(what): dim must be >= 1 (got \(cols))") }
    let (n, overflow) = rows.multipliedReportingOverflow(by: cols)
    guard !overflow, n < Int64(Int32.max) * 64 else { throw DDPMError.invalidArgument("\(what): \(rows) × \(cols) is too large") }
    guard count == n else { throw DDPMError.shapeMismatch("\(what): count is \(count), expected \(rows) × \(cols) = \(n)") }
    return Int(n)
}

/// A pointer to a static, NUL-terminated string.
func cString(_ s: StaticString) -> UnsafePointer<CChar> {
    UnsafeRawPointer(s.utf8Start).assumingMemoryBound(to: CChar.self)
}

@_cdecl("ddpm_status_string")
public func ddpm_status_string(_ status: Int32) -> UnsafePointer<CChar> {
    switch status {
    case Status.ok: return cString("ok")
    case Status.invalidArgument: return cString("invalid argument")
    case Status.shape: return cString("shape mismatch")
    case Status.nonFinite: return cString("non-finite value")
    case Status.io: return cString("I/O error")
    case Status.format: return cString("invalid file format")
    case Status.cancelled: return cString("cancelled")
    case Status.internalError: return cString("internal error")
    default: return cString("unknown status")
    }
}

@_cdecl("ddpm_last_error")
public func ddpm_last_error() -> UnsafePointer<CChar> {
    if let p = pthread_getspecific(lastErrorKey) { return UnsafePointer(p.assumingMemoryBound(to: CChar.self)) }
    return cString("")
}

@_cdecl("ddpm_version_number")
public func ddpm_version_number() -> Int32 { Int32(libraryVersionNumber) }

@_cdecl("ddpm_version_string")
public func ddpm_version_string() -> UnsafePointer<CChar> { versionString }

/// "MAJOR.MINOR.PATCH" (from ddpm_version.h, through the engine), allocated once and never freed.
nonisolated(unsafe) private let versionString: UnsafePointer<CChar> = UnsafePointer(strdup(libraryVersion)!)

/// The engine's thread count (its WorkPool, Parallel/); results do not depend on it.
@_cdecl("ddpm_set_num_threads")
public func ddpm_set_num_threads(_ n: Int32) -> Int32 {
    guarded("ddpm_set_num_threads") {
        guard n >= 1 && n <= 1024 else { throw DDPMError.invalidArgument("thread count must be in 1...1024 (got \(n))") }
        setWorkPoolSize(Int(n))
    }
}

@_cdecl("ddpm_get_num_threads")
public func ddpm_get_num_threads() -> Int32 { Int32(workPoolSize()) }
