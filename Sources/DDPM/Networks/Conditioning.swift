// What a sample is conditioned on (ddpm_cond_params in C, Conditioning in Python).
// Stored in checkpoints as {"kind": "none"} or {"kind": "classes", "num_classes": K}.

public enum Conditioning: Sendable, Equatable {
    /// Unconditional.
    case none
    /// A class label per sample in 0..<K; label K means "no class" (classifier-free guidance).
    case classes(Int)

    /// K, or 0 when unconditional.
    public var numClasses: Int {
        if case .classes(let k) = self { return k }
        return 0
    }

    func validate() throws {
        if case .classes(let k) = self {
            try require(k >= 1, "num_classes must be >= 1 for class conditioning (got \(k))")
            try Limits.requireField("num_classes", k, cap: Limits.numClasses)
        }
    }
}

extension Conditioning: Codable {
    enum CodingKeys: String, CodingKey { case kind, numClasses = "num_classes" }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        switch try c.decode(String.self, forKey: .kind) {
        case "none": self = .none
        case "classes": self = .classes(try c.decode(Int.self, forKey: .numClasses))
        case let other:
            throw DecodingError.dataCorruptedError(forKey: .kind, in: c, debugDescription: "unknown conditioning '\(other)'")
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        switch self {
        case .none: try c.encode("none", forKey: .kind)
        case .classes(let k): try c.encode("classes", forKey: .kind); try c.encode(k, forKey: .numClasses)
        }
    }
}
