// Counter-based random numbers: Philox 4x32-10 (Salmon et al., SC'11) and Box–Muller.
//
// The stream is a pure function of (seed, counter): the same seed gives the same numbers
// in Swift, C and Python, whatever the thread count. One `next4()` consumes one counter.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import DDPMKernels

public struct Philox: Sendable, Equatable {
    /// The key: the seed, never changed by drawing.
    public let seed: UInt64
    /// Blocks of four 32-bit words drawn so far (counter words 0 and 1).
    public var counter: UInt64
    /// Counter words 2 and 3, fixed while drawing: 0 for a plain stream; a keyed stream
    /// puts (stream << 32 | global sample index) here (see `keyed`).
    public var high: UInt64

    public init(seed: UInt64, counter: UInt64 = 0, high: UInt64 = 0) {
        self.seed = seed
        self.counter = counter
        self.high = high
    }

    /// The stream of draws that belongs to one sample at one train step, a pure function of
    /// (seed, step, sample, stream): counter words (block, step mod 2³², sample mod 2³², stream).
    /// A batch split over workers draws, for its global sample indices, exactly what one
    /// process draws for the whole batch.
    @inline(__always)
    public static func keyed(seed: UInt64, step: Int, sample: Int, stream: UInt32) -> Philox {
        Philox(seed: seed, counter: UInt64(UInt32(truncatingIfNeeded: step)) << 32,
               high: UInt64(stream) << 32 | UInt64(UInt32(truncatingIfNeeded: sample)))
    }

    /// Four fresh 32-bit words.
    @inline(__always)
    public mutating func next4() -> SIMD4<UInt32> {
        var c = SIMD4<UInt32>(UInt32(truncatingIfNeeded: counter), UInt32(truncatingIfNeeded: counter >> 32),
                              UInt32(truncatingIfNeeded: high), UInt32(truncatingIfNeeded: high >> 32))
        var k0 = UInt32(truncatingIfNeeded: seed), k1 = UInt32(truncatingIfNeeded: seed >> 32)
        counter &+= 1
        for _ in 0..<10 {
            let p0 = UInt64(0xD251_1F53) &* UInt64(c[0])
            let p1 = UInt64(0xCD9E_8D57) &* UInt64(c[2])
            c = SIMD4(UInt32(truncatingIfNeeded: p1 >> 32) ^ c[1] ^ k0, UInt32(truncatingIfNeeded: p1),
                      UInt32(truncatingIfNeeded: p0 >> 32) ^ c[3] ^ k1, UInt32(truncatingIfNeeded: p0))
            k0 &+= 0x9E37_79B9
            k1 &+= 0xBB67_AE85
        }
        return c
    }

    /// Uniform in [0, 1) with 24 random bits.
    @inline(__always)
    static func unit(_ u: UInt32) -> Float { Float(u >> 8) * 0x1p-24 }

    /// Fills `out` with `count` independent N(0, 1) draws (Box–Muller on pairs): for each block
    /// r = next4() and each pair (r[0], r[1]), (r[2], r[3]):
    ///   u1 = ((r[0] >> 8) + 1)·2⁻²⁴ ∈ (0, 1] (so that log u1 is finite), u2 = unit(r[1]),
    ///   radius = √(−2·logf(u1)), angle = (2·Float.pi)·u2, out: radius·cosf(angle), radius·sinf(angle).
    /// It runs as the C kernel ddpm_philox_normal (16 blocks' rounds at once; the same bits:
    /// PhiloxNormalKernelTests checks it against this definition written out in Swift).
    public mutating func fillNormal(_ out: UnsafeMutablePointer<Float>, count: Int) {
        guard count > 0 else { return }
        ddpm_philox_normal(out, Int64(count), seed, counter, high)
        counter &+= UInt64((count + 3) / 4)
    }

    /// Fills `out` with `count` uniform integers in 0..<bound (multiply-shift, bias < bound/2³²).
    public mutating func fillUniformInt(_ out: UnsafeMutablePointer<Int32>, count: Int, below bound: Int) {
        var i = 0
        while i < count {
            let r = next4()
            for lane in 0..<4 where i < count {
                out[i] = Int32(truncatingIfNeeded: (UInt64(r[lane]) &* UInt64(bound)) >> 32)
                i += 1
            }
        }
    }

    /// Fills `out` with `count` uniform floats in [0, 1).
    public mutating func fillUniform(_ out: UnsafeMutablePointer<Float>, count: Int) {
        var i = 0
        while i < count {
            let r = next4()
            for lane in 0..<4 where i < count { out[i] = Philox.unit(r[lane]); i += 1 }
        }
    }

    /// Writes the normals at positions first..<first+count of the plain stream that
    /// `Philox(seed: seed, counter: base).fillNormal` would write from position 0: the same
    /// bits, so that a slice of a batch can draw its own part of the batch's noise.
    public static func fillNormal(_ out: UnsafeMutablePointer<Float>, count: Int, seed: UInt64, base: UInt64,
                                  from first: Int) {
        var rng = Philox(seed: seed, counter: base &+ UInt64(first / 4))
        let skip = first % 4
        var i = 0
        if skip > 0 {  // the first block is shared with the positions before `first`
            var head = SIMD4<Float>(repeating: 0)
            withUnsafeMutablePointer(to: &head) {
                $0.withMemoryRebound(to: Float.self, capacity: 4) { rng.fillNormal($0, count: 4) }
            }
            while i < count && skip + i < 4 { out[i] = head[skip + i]; i += 1 }
        }
        if i < count { rng.fillNormal(out + i, count: count - i) }
    }
}
