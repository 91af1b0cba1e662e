/// Every failure the engine reports. Library code throws these and never traps on
/// anything a caller can pass; the C layer maps each case to a status code.
public enum DDPMError: Error, Equatable, CustomStringConvertible {
    case invalidArgument(String)
    case shapeMismatch(String)
    case nonFinite(String)
    case io(String)
    case format(String)
    case cancelled(String)

    public var description: String {
        switch self {
        case .invalidArgument(let m), .shapeMismatch(let m), .nonFinite(let m),
             .io(let m), .format(let m), .cancelled(let m):
            return m
        }
    }
}

@inline(__always)
func require(_ condition: Bool, _ message: @autoclosure () -> String) throws {
    if !condition { throw DDPMError.invalidArgument(message()) }
}

/// Throws `.nonFinite` if any of the `count` values is NaN or infinite.
func requireFinite(_ p: UnsafePointer<Float>, count: Int, _ what: @autoclosure () -> String) throws {
    var bad = false
    for i in 0..<count where !p[i].isFinite { bad = true; break }
    if bad { throw DDPMError.nonFinite("\(what()) contains NaN or infinite values") }
}
