// Philox 4x32-10: known answers from Random123, an independent reference implementation,
// determinism, and the distributions built on it (normal, uniform, uniform integers).
import XCTest
@testable import DDPM

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

final class PhiloxTests: XCTestCase {
    /// A plain reference Philox4x32-10 over a full 4-word counter and 2-word key, written from
    /// the paper (Salmon et al. 2011): per round, with (hi, lo) = mulhilo32,
    ///   (hi0, lo0) = M0·c0, (hi1, lo1) = M1·c2,
    ///   c ← (hi1 ⊕ c1 ⊕ k0, lo1, hi0 ⊕ c3 ⊕ k1, lo0),  k ← k + (W0, W1).
    static func reference(counter: [UInt32], key: [UInt32]) -> [UInt32] {
        var c = counter, k = key
        for _ in 0..<10 {
            let p0 = UInt64(0xD251_1F53) * UInt64(c[0]), p1 = UInt64(0xCD9E_8D57) * UInt64(c[2])
            c = [UInt32(p1 >> 32) ^ c[1] ^ k[0], UInt32(p1 & 0xFFFF_FFFF), UInt32(p0 >> 32) ^ c[3] ^ k[1], UInt32(p0 & 0xFFFF_FFFF)]
            k = [k[0] &+ 0x9E37_79B9, k[1] &+ 0xBB67_AE85]
        }
        return c
    }

    /// Random123's kat_vectors for philox4x32 with 10 rounds (counter words, key words, output).
    func testReferenceImplementationMatchesRandom123Vectors() {
        let vectors: [([UInt32], [UInt32], [UInt32])] = [
            ([0, 0, 0, 0], [0, 0], [0x6627_E8D5, 0xE169_C58D, 0xBC57_AC4C, 0x9B00_DBD8]),
            ([0xFFFF_FFFF, 0xFFFF_FFFF, 0xFFFF_FFFF, 0xFFFF_FFFF], [0xFFFF_FFFF, 0xFFFF_FFFF],
             [0x408F_276D, 0x41C8_3B0E, 0xA20B_C7C6, 0x6D54_51FD]),
            ([0x243F_6A88, 0x85A3_08D3, 0x1319_8A2E, 0x0370_7344], [0xA409_3822, 0x299F_31D0],
             [0xD16C_FE09, 0x94FD_CCEB, 0x5001_E420, 0x2412_6EA1]),
        ]
        for (counter, key, output) in vectors {
            XCTAssertEqual(Self.reference(counter: counter, key: key), output, "reference Philox on \(counter), \(key)")
        }
    }

    /// The engine's generator on counter = 0, key = 0 gives the published first block.
    func testKnownAnswerZeroCounterZeroKey() {
        var rng = Philox(seed: 0)
        XCTAssertEqual(rng.next4(), SIMD4<UInt32>(0x6627_E8D5, 0xE169_C58D, 0xBC57_AC4C, 0x9B00_DBD8))
        XCTAssertEqual(rng.counter, 1, "one block consumes one counter")
    }

    /// Counter packed as (lo, hi, 0, 0) and key as (seed lo, seed hi): the engine equals the
    /// reference, and equals values computed with a separate Python implementation.
    func testMatchesReferenceForSeedsAndCounters() {
        let seed: UInt64 = 0x0123_4567_89AB_CDEF
        let python: [(UInt64, SIMD4<UInt32>)] = [
            (0, SIMD4(0xB850_222E, 0xC58C_B04B, 0x14A7_A020, 0x7A84_FFF9)),
            (1, SIMD4(0xADCA_1466, 0x523E_0D85, 0x6540_1425, 0xB299_DA3F)),
            (0x1_0000_0005, SIMD4(0xB8B2_43F7, 0xDA8F_B9A8, 0x4600_4299, 0xE54C_389C)),
        ]
        for (counter, want) in python {
            var rng = Philox(seed: seed, counter: counter)
            XCTAssertEqual(rng.next4(), want, "seed \(seed), counter \(counter)")
        }
        for seed: UInt64 in [0, 1, 42, 0xFFFF_FFFF, 0xDEAD_BEEF_0000_0001, .max] {
            for counter: UInt64 in [0, 1, 2, 0xFFFF_FFFF, 0x1_0000_0000, .max] {
                var rng = Philox(seed: seed, counter: counter)
                let want = Self.reference(counter: [UInt32(truncatingIfNeeded: counter), UInt32(truncatingIfNeeded: counter >> 32), 0, 0],
                                          key: [UInt32(truncatingIfNeeded: seed), UInt32(truncatingIfNeeded: seed >> 32)])
                let got = rng.next4()
                XCTAssertEqual([got[0], got[1], got[2], got[3]], want, "seed \(seed), counter \(counter)")
            }
        }
    }

    func testSameSeedSameNumbersDifferentSeedDifferentNumbers() {
        XCTAssertEqual(normals(1000, seed: 7), normals(1000, seed: 7), "same seed, same normals")
        XCTAssertNotEqual(normals(1000, seed: 7), normals(1000, seed: 8), "different seeds differ")
        XCTAssertEqual(uniforms(1000, seed: 9), uniforms(1000, seed: 9))
        // Seeds that differ only in the high word differ too (the key uses all 64 bits).
        XCTAssertNotEqual(normals(100, seed: 1), normals(100, seed: 1 | (1 << 32)))
        // Drawing is a pure function of (seed, counter): restarting at a counter replays the stream.
        var a = Philox(seed: 3)
        _ = a.next4(); _ = a.next4()
        let third = a.next4()
        var b = Philox(seed: 3, counter: 2)
        XCTAssertEqual(b.next4(), third)
    }

    /// The exact mapping from words to numbers (the contract shared with C and Python), from the
    /// reference generator's words: for block j with words (w0, w1, w2, w3),
    ///   normals 4j..4j+3 = Box–Muller(w0, w1), Box–Muller(w2, w3) with u1 = ((w >> 8) + 1)·2⁻²⁴,
    ///   u2 = (w >> 8)·2⁻²⁴, z = √(−2 ln u1)·(cos 2πu2, sin 2πu2);
    ///   uniforms 4j..4j+3 = (w_i >> 8)·2⁻²⁴;  integers below n = (w_i·n) >> 32.
    func testWordsToNumbersMapping() {
        let seed: UInt64 = 0xABCD_0123_4567_0042, blocks = 64
        let words = (0..<blocks).flatMap { j in
            Self.reference(counter: [UInt32(j), 0, 0, 0], key: [UInt32(truncatingIfNeeded: seed), UInt32(truncatingIfNeeded: seed >> 32)])
        }
        var wantNormal: [Double] = []
        for pair in 0..<(2 * blocks) {
            let u1 = Double((words[2 * pair] >> 8) + 1) * 0x1p-24, u2 = Double(words[2 * pair + 1] >> 8) * 0x1p-24
            let r = (-2 * log(u1)).squareRoot()
            wantNormal += [r * cos(2 * Double.pi * u2), r * sin(2 * Double.pi * u2)]
        }
        let gotNormal = normals(4 * blocks, seed: seed)
        // Float Box–Muller: |z| ≤ ~5.6, so 1e-5 absolute is a few ulps of the radius and angle.
        assertClose(gotNormal, wantNormal, abs: 1e-5, "normals from Philox words")

        var rng = Philox(seed: seed)
        var u = [Float](repeating: 0, count: 4 * blocks)
        u.withUnsafeMutableBufferPointer { rng.fillUniform($0.baseAddress!, count: 4 * blocks) }
        XCTAssertEqual(u, words.map { Float($0 >> 8) * 0x1p-24 }, "uniforms from Philox words (exact)")

        for bound in [3, 1000, 1 << 20] {
            var rng = Philox(seed: seed)
            var k = [Int32](repeating: 0, count: 4 * blocks)
            k.withUnsafeMutableBufferPointer { rng.fillUniformInt($0.baseAddress!, count: 4 * blocks, below: bound) }
            XCTAssertEqual(k, words.map { Int32((UInt64($0) * UInt64(bound)) >> 32) }, "integers below \(bound) (exact)")
        }
    }

    /// Box–Muller consumes one block per 4 normals; an odd count leaves the rest of the block unused,
    /// and a prefix of a longer fill equals a shorter fill.
    func testNormalFillPrefixAndCounter() {
        var rng = Philox(seed: 5)
        var out = [Float](repeating: 0, count: 7)
        out.withUnsafeMutableBufferPointer { rng.fillNormal($0.baseAddress!, count: 7) }
        XCTAssertEqual(rng.counter, 2, "7 normals use 2 blocks")
        XCTAssertEqual(Array(normals(8, seed: 5).prefix(7)), out)
    }

    /// N(0, 1): mean within 5 SE (SE = 1/√n), variance within 5·√(2/n), plus skew/kurtosis
    /// and the tail mass beyond ±2 (0.0455).
    func testNormalMoments() {
        let n = 200_000
        let x = normals(n, seed: 2024).map(Double.init)
        XCTAssertTrue(x.allSatisfy { $0.isFinite })
        let mean = x.reduce(0, +) / Double(n)
        let variance = x.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(n - 1)
        let skew = x.reduce(0) { $0 + pow($1 - mean, 3) } / Double(n)
        let kurt = x.reduce(0) { $0 + pow($1 - mean, 4) } / Double(n)
        let se = 1 / Double(n).squareRoot()
        XCTAssertEqual(mean, 0, accuracy: 5 * se, "normal mean \(mean)")
        XCTAssertEqual(variance, 1, accuracy: 5 * (2.0 / Double(n)).squareRoot(), "normal variance \(variance)")
        XCTAssertEqual(skew, 0, accuracy: 5 * (6.0 / Double(n)).squareRoot(), "third moment \(skew)")
        XCTAssertEqual(kurt, 3, accuracy: 5 * (96.0 / Double(n)).squareRoot(), "fourth moment \(kurt)")
        let tail = Double(x.filter { abs($0) > 2 }.count) / Double(n)
        let p = 0.04550026
        XCTAssertEqual(tail, p, accuracy: 5 * (p * (1 - p) / Double(n)).squareRoot(), "P(|z| > 2) = \(tail)")
    }

    /// Uniform floats lie in [0, 1) with mean ½ and variance 1/12.
    func testUniformFloats() {
        let n = 100_000
        var rng = Philox(seed: 77)
        var u = [Float](repeating: 0, count: n)
        u.withUnsafeMutableBufferPointer { rng.fillUniform($0.baseAddress!, count: n) }
        XCTAssertTrue(u.allSatisfy { $0 >= 0 && $0 < 1 }, "in [0, 1)")
        let (m, v) = columnMoments(u, dim: 1)
        XCTAssertEqual(m[0], 0.5, accuracy: 5 * (1.0 / 12 / Double(n)).squareRoot())
        XCTAssertEqual(v[0], 1.0 / 12, accuracy: 5 * (1.0 / 180 / Double(n)).squareRoot())
    }

    /// Uniform integers in 0..<bound, each value's count within a chi-square bound.
    func testUniformIntegers() {
        for bound in [1, 2, 7, 1000] {
            let n = 70_000
            var rng = Philox(seed: UInt64(bound))
            var k = [Int32](repeating: -1, count: n)
            k.withUnsafeMutableBufferPointer { rng.fillUniformInt($0.baseAddress!, count: n, below: bound) }
            XCTAssertTrue(k.allSatisfy { $0 >= 0 && Int($0) < bound }, "bound \(bound): in range")
            var counts = [Int](repeating: 0, count: bound)
            for v in k { counts[Int(v)] += 1 }
            XCTAssertTrue(counts.allSatisfy { $0 > 0 }, "bound \(bound): every value appears")
            if bound > 1 {
                // χ² with (bound − 1) dof: mean bound−1, sd √(2(bound−1)); allow mean + 6 sd.
                let e = Double(n) / Double(bound)
                let chi2 = counts.reduce(0.0) { $0 + (Double($1) - e) * (Double($1) - e) / e }
                let dof = Double(bound - 1)
                XCTAssertLessThan(chi2, dof + 6 * (2 * dof).squareRoot() + 10, "bound \(bound): χ² = \(chi2)")
            }
        }
    }
}
