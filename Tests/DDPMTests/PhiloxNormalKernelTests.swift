// Philox.fillNormal runs as the C kernel ddpm_philox_normal (Sources/DDPMKernels/random.inc): it
// must write the bits of the definition in Philox.swift written out here in Swift, one block at
// a time through next4(), on every ISA path, for every count (partial blocks and batches of 16
// blocks), for keyed streams and counters that carry into the high word, and advance the counter
// by the blocks it used. Seeds must keep giving the same samples (PinnedValuesTests).
import XCTest
@testable import DDPM
#if canImport(Glibc)
import Glibc
#endif

final class PhiloxNormalKernelTests: XCTestCase {
    var savedISA = KernelISA.current
    override func setUp() { savedISA = KernelISA.current }
    override func tearDown() { KernelISA.use(savedISA) }

    /// The definition: Box–Muller on each pair of words of next4(), in Swift.
    static func reference(_ rng: inout Philox, count: Int) -> [Float] {
        var out: [Float] = []
        while out.count < count {
            let r = rng.next4()
            for pair in 0..<2 {
                let u1 = Float((r[2 * pair] >> 8) + 1) * 0x1p-24
                let u2 = Philox.unit(r[2 * pair + 1])
                let radius = (-2 * logf(u1)).squareRoot()
                let angle = 2 * Float.pi * u2
                out.append(radius * cosf(angle))
                out.append(radius * sinf(angle))
            }
        }
        return Array(out.prefix(count))
    }

    func testKernelWritesTheDefinitionsBitsOnEveryPath() {
        let streams = [Philox(seed: 0), Philox(seed: 0x1234_5678_9abc_def0, counter: 77),
                       Philox(seed: 42, counter: 0xffff_ffff - 3),  // the counter carries into its high word
                       Philox.keyed(seed: 7, step: 123_456, sample: 99, stream: 1)]
        for isa in KernelISA.supported {
            XCTAssertTrue(KernelISA.use(isa))
            for start in streams {
                for count in Array(0...70) + [255, 256, 257, 1000] {
                    var expectedRNG = start, rng = start
                    let expected = Self.reference(&expectedRNG, count: count)
                    var got = [Float](repeating: .nan, count: count + 1)
                    got.withUnsafeMutableBufferPointer { rng.fillNormal($0.baseAddress!, count: count) }
                    assertSameBits(Array(got.prefix(count)), expected, "\(isa.name), \(start), \(count) draws")
                    XCTAssertTrue(got[count].isNaN, "\(isa.name): nothing written past \(count)")
                    XCTAssertEqual(rng.counter, start.counter &+ UInt64((count + 3) / 4), "\(isa.name): the counter advanced by the blocks used")
                }
            }
        }
    }

    func testNegativeControlAnotherStreamIsToldApart() {
        var a = Philox(seed: 1), b = Philox(seed: 1, counter: 1)
        var x = [Float](repeating: 0, count: 40), y = x
        x.withUnsafeMutableBufferPointer { a.fillNormal($0.baseAddress!, count: 40) }
        y.withUnsafeMutableBufferPointer { b.fillNormal($0.baseAddress!, count: 40) }
        XCTAssertNotNil(firstBitDifference(x, y))
    }
}
