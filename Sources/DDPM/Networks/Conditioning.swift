// What a sample is conditioned on (ddpm_cond_params in C, Conditioning in Python).
// Stored in checkpoints as {"kind": "none"}, {"kind": "classes", "num_classes": K} or
// {"kind": "vector", "dim": Dc}.

public enum Conditioning: Sendable, Equatable {
    /// Unconditional.
    case none
    /// A class label per sample in 0..<K; label K means "no class" (classifier-free guidance).
    case classes(Int)
    /// A vector c ∈ R^Dc per sample (an embedding from the user's encoder, side information),
    /// projected into the time embedding; a learned null vector stands for "no condition".
    case vector(Int)

    /// K, or 0 when not conditioned on classes.
    public var numClasses: Int {
        if case .classes(let k) = self { return k }
        return 0
    }

    /// Dc, or 0 when not conditioned on vectors.
    public var vectorDim: Int {
        if case .vector(let d) = self { return d }
        return 0
    }

    /// Whether the network has a null condition to guide against.
    public var isConditional: Bool { self != .none }

    func validate() throws {
        switch self {
        case .none: break
        case .classes(let k):
            try require(k >= 1, "num_classes must be >= 1 for class conditioning (got \(k))")
            try Limits.requireField("num_classes", k, cap: Limits.numClasses)
        case .vector(let d):
            try require(d >= 1, "dim must be >= 1 for vector conditioning (got \(d))")
            try Limits.requireField("cond dim", d, cap: Limits.width)
        }
    }
}

extension Conditioning: Codable {
    enum CodingKeys: String, CodingKey { case kind, numClasses = "num_classes", dim }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        switch try c.decode(String.self, forKey: .kind) {
        case "none": self = .none
        case "classes": self = .classes(try c.decode(Int.self, forKey: .numClasses))
        case "vector": self = .vector(try c.decode(Int.self, forKey: .dim))
        case let other:
            throw DecodingError.dataCorruptedError(forKey: .kind, in: c, debugDescription: "unknown conditioning '\(other)'")
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        switch self {
        case .none: try c.encode("none", forKey: .kind)
        case .classes(let k): try c.encode("classes", forKey: .kind); try c.encode(k, forKey: .numClasses)
        case .vector(let d): try c.encode("vector", forKey: .kind); try c.encode(d, forKey: .dim)
        }
    }
}
