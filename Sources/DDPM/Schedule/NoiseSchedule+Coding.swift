// The schedule's kind as checkpoint JSON, named as ddpm_schedule_params' fields:
//   {"kind": "linear", "beta_start": 1e-4, "beta_end": 0.02}
//   {"kind": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}
//   {"kind": "cosine", "cosine_s": 0.008, "max_beta": 0.999}
//   {"kind": "sigmoid", "beta_start": 0, "beta_end": 0.1, "sigmoid_start": -6, "sigmoid_end": 6}
//   {"kind": "custom"}
// (T and the β themselves are stored as the tensor schedule.betas.)

extension NoiseSchedule.Kind: Codable {
    enum CodingKeys: String, CodingKey {
        case kind, betaStart = "beta_start", betaEnd = "beta_end", cosineS = "cosine_s", maxBeta = "max_beta"
        case sigmoidStart = "sigmoid_start", sigmoidEnd = "sigmoid_end"
    }

    /// The name in "kind", as in Python's NoiseSchedule constructors.
    public var name: String {
        switch self {
        case .linear: return "linear"
        case .scaledLinear: return "scaled_linear"
        case .cosine: return "cosine"
        case .sigmoid: return "sigmoid"
        case .custom: return "custom"
        }
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        func d(_ key: CodingKeys) throws -> Double { try c.decode(Double.self, forKey: key) }
        switch try c.decode(String.self, forKey: .kind) {
        case "linear": self = .linear(betaStart: try d(.betaStart), betaEnd: try d(.betaEnd))
        case "scaled_linear": self = .scaledLinear(betaStart: try d(.betaStart), betaEnd: try d(.betaEnd))
        case "cosine": self = .cosine(offset: try d(.cosineS), maxBeta: try d(.maxBeta))
        case "sigmoid": self = .sigmoid(betaMin: try d(.betaStart), betaMax: try d(.betaEnd),
                                        start: try d(.sigmoidStart), end: try d(.sigmoidEnd))
        case "custom": self = .custom
        case let other:
            throw DecodingError.dataCorruptedError(forKey: .kind, in: c, debugDescription: "unknown schedule kind '\(other)'")
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .kind)
        switch self {
        case .linear(let a, let b), .scaledLinear(let a, let b):
            try c.encode(a, forKey: .betaStart); try c.encode(b, forKey: .betaEnd)
        case .cosine(let s, let m):
            try c.encode(s, forKey: .cosineS); try c.encode(m, forKey: .maxBeta)
        case .sigmoid(let lo, let hi, let start, let end):
            try c.encode(lo, forKey: .betaStart); try c.encode(hi, forKey: .betaEnd)
            try c.encode(start, forKey: .sigmoidStart); try c.encode(end, forKey: .sigmoidEnd)
        case .custom:
            break
        }
    }
}
