// Flat parameter storage. Every weight of a network lives in one contiguous block, so the
// optimizer, EMA, gradient clipping and checkpoints treat the network as one vector;
// a layer only remembers the offsets of its tensors.
//
//   P = number of parameters (the length of the flat vector).

/// How a tensor is initialised.
public enum Initializer: Sendable {
    case zeros, ones
    /// U(−bound, bound) (PyTorch's default for Linear and Conv: bound = 1/√fan_in).
    case uniform(bound: Float)
    /// N(0, std²).
    case normal(std: Float)
}

/// The tensors of a network, declared while the layers are built.
public struct ParameterLayout {
    public struct Entry: Sendable, Equatable {
        public let name: String
        public let offset: Int
        public let shape: [Int]
        let initializer: Initializer
        public var count: Int { shape.reduce(1, *) }
        public static func == (a: Entry, b: Entry) -> Bool { a.name == b.name && a.offset == b.offset && a.shape == b.shape }
    }
    public private(set) var entries: [Entry] = []
    public private(set) var count = 0

    public init() {}

    /// "'name'[i]" for index `flat` of the flat vector.
    public func describe(_ flat: Int) -> String {
        guard let e = entries.last(where: { $0.offset <= flat }) else { return "parameter [\(flat)]" }
        return "'\(e.name)'[\(flat - e.offset)]"
    }

    /// Declares a tensor and returns its offset in the flat vector.
    public mutating func add(_ name: String, _ shape: [Int], _ initializer: Initializer) -> Int {
        let entry = Entry(name: name, offset: count, shape: shape, initializer: initializer)
        entries.append(entry)
        count += entry.count
        return entry.offset
    }
}

/// Values and gradients of every parameter of a network, both (P,).
public final class ParameterSet {
    public let layout: ParameterLayout
    let values: Buffer<Float>  // (P,)
    private(set) var grads: Buffer<Float>  // (P,); a replica's is empty until it trains (reserveGradients)

    public var count: Int { layout.count }

    /// Allocates and initialises the parameters; `rng` draws the random initial values.
    /// - Throws: if the two (P,) blocks cannot be allocated.
    public init(layout: ParameterLayout, rng: inout Philox) throws {
        self.layout = layout
        values = try Buffer(count: layout.count)
        grads = try Buffer(count: layout.count)
        for entry in layout.entries {
            let p = values.pointer + entry.offset
            switch entry.initializer {
            case .zeros: p.update(repeating: 0, count: entry.count)
            case .ones: p.update(repeating: 1, count: entry.count)
            case .uniform(let bound):
                rng.fillUniform(p, count: entry.count)
                for i in 0..<entry.count { p[i] = (2 * p[i] - 1) * bound }
            case .normal(let std):
                rng.fillNormal(p, count: entry.count)
                for i in 0..<entry.count { p[i] *= std }
            }
        }
    }

    /// The parameters of a replica (Model/ChunkPlan.swift): the values of `other`, shared
    /// (its (P,) block, not a copy), and no gradients until `reserveGradients` (a replica that
    /// only predicts never needs them).
    init(layout: ParameterLayout, sharingValuesOf other: ParameterSet) throws {
        precondition(layout.count == other.count, "a replica has the layout of its original")
        self.layout = layout
        values = other.values
        grads = try Buffer(count: 0)
    }

    /// Allocates the (P,) gradient block if it is not there (a replica's, before it trains).
    /// - Throws: if it cannot be allocated.
    func reserveGradients() throws {
        if grads.count < layout.count { grads = try Buffer(count: layout.count) }
    }

    public func zeroGrads() { grads.fill(0) }

    /// A copy of the current values, (P,).
    public var valuesArray: [Float] { values.array }
    /// A copy of the current gradients, (P,).
    public var gradsArray: [Float] { grads.array }

    /// Overwrites all values from a (P,) array.
    public func setValues(_ new: [Float]) throws {
        guard new.count == count else { throw DDPMError.shapeMismatch("expected \(count) parameters, got \(new.count)") }
        new.withUnsafeBufferPointer { values.pointer.update(from: $0.baseAddress!, count: count) }
    }
}
