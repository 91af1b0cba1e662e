// One allocation carved into named views, as llm.c's ActivationTensors.
//
// A network lists its buffers once, in an initialiser that takes each view from an Arena:
//
//   struct Activations {
//       let block: Buffer<Float>?  // keeps the views alive
//       let h1, h2: UnsafeMutablePointer<Float>  // (B, H) each
//       init(batch B: Int, _ arena: inout Arena) {
//           block = arena.block
//           (h1, h2) = (arena.take(B * H), arena.take(B * H))
//       }
//   }
//   let acts = try Arena.allocate { try Activations(batch: B, &$0) }
//
// `allocate` runs the initialiser twice: first on a counting arena (no block; every view is
// a placeholder that must not be used), then on one zeroed block of exactly the floats taken.
// An initialiser that needs a side buffer of its own (labels) allocates it only when
// `!arena.isCounting`. Callers bound the batch first (see Limits.swift), so the counts fit.

struct Arena {
    /// The block the views point into; nil while counting.
    let block: Buffer<Float>?
    /// Floats taken so far.
    private(set) var count = 0

    /// Where every view of a counting arena points (never read or written).
    nonisolated(unsafe) private static let placeholder = UnsafeMutablePointer<Float>.allocate(capacity: 1)

    private init(block: Buffer<Float>?) { self.block = block }

    /// True on the counting run of `allocate`.
    var isCounting: Bool { block == nil }

    /// The next n floats of the block, (n,).
    mutating func take(_ n: Int) -> UnsafeMutablePointer<Float> {
        defer { count += n }
        return block.map { $0.pointer + count } ?? Arena.placeholder
    }

    /// The floats `make` takes.
    static func floats<Views>(_ make: (inout Arena) throws -> Views) rethrows -> Int {
        var counting = Arena(block: nil)
        _ = try make(&counting)
        return counting.count
    }

    /// `make`'s views over one zeroed block sized for them; `make` must take the same
    /// sizes on both runs, and its views keep `arena.block` alive.
    /// - Throws: if the block (or a side buffer of `make`) cannot be allocated.
    static func allocate<Views>(_ make: (inout Arena) throws -> Views) throws -> Views {
        var arena = Arena(block: try Buffer(count: floats(make)))
        return try make(&arena)
    }
}
