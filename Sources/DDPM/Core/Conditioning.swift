// What a sample is conditioned on (ddpm_cond_params in C, Conditioning in Python).
// Stored in checkpoints as {"kind": "none"}, {"kind": "classes", "num_classes": K} or
// {"kind": "vector", "dim": Dc}, {"kind": "sequence", "dim": Dc, "max_length": Lmax} or
// {"kind": "tokens", "vocab_size": V, "max_length": Lmax, "dim": Dc}, the last with
// "encoder_layers" and "encoder_heads" when it has a text encoder (absent: none, as before 0.3).

public enum Conditioning: Sendable, Equatable {
    /// Unconditional.
    case none
    /// A class label per sample in 0..<K; label K means "no class" (classifier-free guidance).
    case classes(Int)
    /// A vector c ∈ R^Dc per sample (an embedding from the user's encoder, side information),
    /// projected into the time embedding; a learned null vector stands for "no condition".
    case vector(Int)
    /// A sequence of up to `maxLength` vectors of `dim` floats per sample (a text encoder's
    /// output), with a length per sample; 0 = no condition (the learned null context).
    /// The UNet reads it through cross-attention and its masked mean; the MLP through the mean only.
    case sequence(dim: Int, maxLength: Int)
    /// Up to `maxLength` token ids in 0..<vocabulary per sample, embedded by a learned token
    /// and position table of `dim` features, then (with `encoder.layers` > 0) a transformer
    /// over the tokens (Layers/TextEncoder.swift), trained with the model; then as `sequence`.
    case tokens(vocabulary: Int, maxLength: Int, dim: Int, encoder: TextEncoderShape = .none)

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

    /// Dc of a sequence or token context (0 otherwise).
    public var contextDim: Int {
        switch self {
        case .sequence(let d, _), .tokens(_, _, let d, _): return d
        default: return 0
        }
    }

    /// Lmax of a sequence or token context (0 otherwise).
    public var maxLength: Int {
        switch self {
        case .sequence(_, let l), .tokens(_, let l, _, _): return l
        default: return 0
        }
    }

    /// V of a token context (0 otherwise).
    public var vocabulary: Int {
        if case .tokens(let v, _, _, _) = self { return v }
        return 0
    }

    /// The text encoder over a token context (`.none`, no layers, otherwise).
    public var textEncoder: TextEncoderShape {
        if case .tokens(_, _, _, let e) = self { return e }
        return .none
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
        case .sequence(let d, let l):
            try Limits.requireField("cond dim", d, cap: Limits.width)
            try Limits.requireField("max_length", l, cap: Limits.contextLength)
        case .tokens(let v, let l, let d, let e):
            try Limits.requireField("vocab_size", v, cap: Limits.numClasses)
            try Limits.requireField("max_length", l, cap: Limits.contextLength)
            try Limits.requireField("cond dim", d, cap: Limits.width)
            try e.validate(dim: d)
        }
    }
}

extension Conditioning: Codable {
    enum CodingKeys: String, CodingKey {
        case kind, numClasses = "num_classes", dim, maxLength = "max_length", vocabulary = "vocab_size"
        case encoderLayers = "encoder_layers", encoderHeads = "encoder_heads"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        switch try c.decode(String.self, forKey: .kind) {
        case "none": self = .none
        case "classes": self = .classes(try c.decode(Int.self, forKey: .numClasses))
        case "vector": self = .vector(try c.decode(Int.self, forKey: .dim))
        case "sequence": self = .sequence(dim: try c.decode(Int.self, forKey: .dim), maxLength: try c.decode(Int.self, forKey: .maxLength))
        case "tokens":
            let layers = try c.decodeIfPresent(Int.self, forKey: .encoderLayers) ?? 0
            let heads = layers > 0 ? try c.decode(Int.self, forKey: .encoderHeads) : 0
            self = .tokens(vocabulary: try c.decode(Int.self, forKey: .vocabulary), maxLength: try c.decode(Int.self, forKey: .maxLength),
                           dim: try c.decode(Int.self, forKey: .dim), encoder: TextEncoderShape(layers: layers, heads: heads))
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
        case .sequence(let d, let l):
            try c.encode("sequence", forKey: .kind); try c.encode(d, forKey: .dim); try c.encode(l, forKey: .maxLength)
        case .tokens(let v, let l, let d, let e):
            try c.encode("tokens", forKey: .kind); try c.encode(v, forKey: .vocabulary)
            try c.encode(l, forKey: .maxLength); try c.encode(d, forKey: .dim)
            if e.layers > 0 { try c.encode(e.layers, forKey: .encoderLayers); try c.encode(e.heads, forKey: .encoderHeads) }
        }
    }
}

/// The shape of the transformer over a token context (Layers/TextEncoder.swift): `layers`
/// pre-LayerNorm blocks of `heads`-head self-attention and a 4×-wide MLP. No layers (the
/// default, and every model before 0.3) is the token + position embedding alone.
public struct TextEncoderShape: Sendable, Equatable {
    public var layers: Int
    public var heads: Int

    /// No encoder: layers and heads 0.
    public static let none = TextEncoderShape(layers: 0, heads: 0)

    public init(layers: Int, heads: Int) { (self.layers, self.heads) = (layers, heads) }

    func validate(dim d: Int) throws {
        if layers == 0 {
            try require(heads == 0, "encoder_heads is \(heads) but encoder_layers is 0 (no text encoder); leave it 0")
            return
        }
        try Limits.requireField("encoder_layers", layers, cap: Limits.depth)
        try require(heads >= 1 && d % heads == 0, "encoder_heads must be >= 1 and divide dim \(d) (got \(heads))")
    }
}
