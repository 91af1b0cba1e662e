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

/// Throws `.nonFinite` naming the first of the `count` values that is NaN or infinite.
public func requireFinite(_ p: UnsafePointer<Float>, count: Int, _ what: @autoclosure () -> String) throws {
    var allFinite = true
    for i in 0..<count { allFinite = allFinite && p[i].isFinite }  // branch-free, vectorises
    if allFinite { return }
    let i = (0..<count).first { !p[$0].isFinite }!
    throw DDPMError.nonFinite("\(what())[\(i)] is \(p[i])")
}
