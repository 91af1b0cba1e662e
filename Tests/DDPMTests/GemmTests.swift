// The engine's SGEMM (Kernels/Gemm.swift over Sources/DDPMKernels, ddpm_gemm.h) against two
// independent oracles:
//   - a float64 product, with the error bound of a k-term fma chain (γ_k·Σ|α a||b| + |β c|);
//   - the determinism contract written out in Swift, element by element: acc from β·C, then
//     acc = fma(α·a[i][p], b[p][j], acc) for p ascending. Every ISA path this CPU runs must give
//     exactly its bits, and so must every split of the output into tiles, on the pool or not.
// Matrices are stored with padded rows whose padding is NaN (a read of it would poison a
// result; a write to it shows), and C holds NaN when beta is 0 (it must not be read).
import XCTest
import CBLAS
import DDPMKernels
@testable import DDPM

/// One GEMM problem in padded row-major storage: C (m, n) = alpha·op(A)·op(B) + beta·C.
struct GemmCase: CustomStringConvertible {
    let m: Int, n: Int, k: Int
    let transA: Bool, transB: Bool
    let alpha: Float, beta: Float
    let lda: Int, ldb: Int, ldc: Int
    var a: [Float], b: [Float], c: [Float]  // c: C before the call

    init(_ m: Int, _ n: Int, _ k: Int, transA: Bool = false, transB: Bool = false, alpha: Float = 1, beta: Float = 0,
         pad: Int = 3, seed: UInt64 = 1) {
        (self.m, self.n, self.k, self.transA, self.transB, self.alpha, self.beta) = (m, n, k, transA, transB, alpha, beta)
        let (aRows, aCols) = transA ? (k, m) : (m, k)
        let (bRows, bCols) = transB ? (n, k) : (k, n)
        (lda, ldb, ldc) = (aCols + pad, bCols + pad, n + pad)
        a = GemmCase.padded(uniforms(aRows * aCols, seed: seed), rows: aRows, cols: aCols, stride: aCols + pad)
        b = GemmCase.padded(uniforms(bRows * bCols, seed: seed + 1), rows: bRows, cols: bCols, stride: bCols + pad)
        let c0 = beta == 0 ? [Float](repeating: .nan, count: m * n) : uniforms(m * n, seed: seed + 2)
        c = GemmCase.padded(c0, rows: m, cols: n, stride: n + pad)
    }

    /// rows × cols values laid out with row stride `stride`, the padding NaN.
    static func padded(_ values: [Float], rows: Int, cols: Int, stride: Int) -> [Float] {
        var out = [Float](repeating: .nan, count: max(1, rows * stride))
        for r in 0..<rows { for j in 0..<cols { out[r * stride + j] = values[r * cols + j] } }
        return out
    }

    func opA(_ i: Int, _ p: Int) -> Float { transA ? a[p * lda + i] : a[i * lda + p] }
    func opB(_ p: Int, _ j: Int) -> Float { transB ? b[j * ldb + p] : b[p * ldb + j] }

    var description: String {
        "\(m)×\(n)×\(k) \(transA ? "T" : "N")\(transB ? "T" : "N") alpha \(alpha) beta \(beta)"
    }

    /// The contract of ddpm_gemm.h, element by element (the padding of C unchanged).
    func chain(fused: Bool = true, reversed: Bool = false) -> [Float] {
        var out = c
        for i in 0..<m {
            for j in 0..<n {
                let c0 = c[i * ldc + j]
                var acc: Float = beta == 0 ? 0 : beta == 1 ? c0 : beta * c0
                for step in 0..<k {
                    let p = reversed ? k - 1 - step : step
                    let x = alpha * opA(i, p), y = opB(p, j)
                    acc = fused ? acc.addingProduct(x, y) : acc + x * y
                }
                out[i * ldc + j] = acc
            }
        }
        return out
    }

    /// The product in float64, and per element a bound on a k-term fma chain's error:
    /// (k + 2)·2⁻²⁴·(Σ_p |α a||b| + |β c|) (the +2 for rounding α·a and β·c).
    func reference() -> (value: [Double], bound: [Double]) {
        var value = [Double](repeating: 0, count: m * n), bound = value
        for i in 0..<m {
            for j in 0..<n {
                let c0 = beta == 0 ? 0 : Double(beta) * Double(c[i * ldc + j])
                var sum = c0, magnitude = abs(c0)
                for p in 0..<k {
                    let t = Double(alpha) * Double(opA(i, p)) * Double(opB(p, j))
                    sum += t
                    magnitude += abs(t)
                }
                value[i * n + j] = sum
                bound[i * n + j] = Double(k + 2) * 0x1p-24 * magnitude + Double.leastNormalMagnitude
            }
        }
        return (value, bound)
    }

    /// C after the engine's stridedGemm.
    func run() -> [Float] {
        var out = c
        a.withUnsafeBufferPointer { a in
            b.withUnsafeBufferPointer { b in
                out.withUnsafeMutableBufferPointer { c in
                    stridedGemm(c.baseAddress!, a.baseAddress!, b.baseAddress!, m: m, n: n, k: k, lda: lda, ldb: ldb,
                                ldc: ldc, transA: transA, transB: transB, alpha: alpha, beta: beta)
                }
            }
        }
        return out
    }

    /// The C call for `out`, with pointers valid inside `body`.
    func withCall<R>(_ out: inout [Float], _ body: (inout ddpm_sgemm_call) -> R) -> R {
        a.withUnsafeBufferPointer { a in
            b.withUnsafeBufferPointer { b in
                out.withUnsafeMutableBufferPointer { c in
                    var call = ddpm_sgemm_call(
                        m: m, n: n, k: k, alpha: alpha, beta: beta, a: a.baseAddress, lda: lda, trans_a: transA ? 1 : 0,
                        b: b.baseAddress, ldb: ldb, trans_b: transB ? 1 : 0, pack_b: nil, pack_b_context: nil,
                        packed_a: nil, packed_b: nil, c: c.baseAddress, ldc: ldc, bias: nil, tiles: 1, tile_axis: 0)
                    return body(&call)
                }
            }
        }
    }
}

/// Asserts that two arrays hold the same bit patterns; reports the first difference.
func assertSameBits(_ x: [Float], _ y: [Float], _ what: String, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(x.count, y.count, what, file: file, line: line)
    if let i = firstBitDifference(x, y) {
        XCTFail("\(what): first differing bits at index \(i): \(x[i]) vs \(y[i])", file: file, line: line)
    }
}

func firstBitDifference(_ x: [Float], _ y: [Float]) -> Int? {
    zip(x, y).enumerated().first { $0.element.0.bitPattern != $0.element.1.bitPattern }?.offset
}

final class GemmTests: XCTestCase {
    /// Shapes at and around the paths' micro-tiles (MR 4/6/8, NR 8/16/32) and blocks (KC 256,
    /// MC 64/144/240, NC 1024/2048), primes, vectors, and the engine's own shapes.
    static let shapes: [(Int, Int, Int)] = [
        (1, 1, 1), (2, 3, 5), (7, 13, 17), (31, 37, 41), (1, 100, 50), (100, 1, 50), (5, 17, 2),
        (4, 8, 1), (6, 16, 3), (11, 31, 9), (12, 32, 256), (13, 33, 257), (25, 65, 255), (24, 64, 512),
        (65, 20, 9), (145, 17, 5), (241, 20, 9), (3, 1025, 4), (2, 2049, 3), (19, 40, 513),
        (64, 128, 128), (32, 64, 576),
        // thin: n < NR/2 runs transposed (alpha 1), m < MR runs the short-row kernels
        (128, 2, 128), (300, 7, 20), (70, 12, 31), (64, 15, 513), (3, 200, 64), (2, 128, 256), (7, 100, 30),
    ]

    /// The path in use before a test that switches paths; restored after it.
    var savedISA = KernelISA.current

    override func setUp() { savedISA = KernelISA.current }
    override func tearDown() {
        KernelISA.use(savedISA)
        setWorkPoolSize(BLASThreads.initial)
    }

    /// Every shape with each of the four transpose combinations, beta 0 and 1 alternating.
    static var cases: [GemmCase] {
        var out: [GemmCase] = []
        for (index, (m, n, k)) in shapes.enumerated() {
            for t in 0..<4 {
                out.append(GemmCase(m, n, k, transA: t & 1 != 0, transB: t & 2 != 0, beta: Float((index + t) % 2),
                                    seed: UInt64(10 * index + t)))
            }
        }
        return out
    }

    func checkAgainstFloat64(_ g: GemmCase, _ out: [Float], file: StaticString = #filePath, line: UInt = #line) {
        let (value, bound) = g.reference()
        var worst = (ratio: 0.0, index: 0)
        for i in 0..<g.m {
            for j in 0..<g.n {
                let d = abs(Double(out[i * g.ldc + j]) - value[i * g.n + j]) / bound[i * g.n + j]
                if !(d <= worst.ratio) { worst = (d.isNaN ? .infinity : d, i * g.n + j) }
            }
        }
        XCTAssertLessThanOrEqual(worst.ratio, 1, "\(g): error / bound = \(worst.ratio) at \(worst.index)", file: file, line: line)
        // The padding of C is untouched: still NaN, bit for bit.
        for i in 0..<g.m { for j in g.n..<g.ldc where out[i * g.ldc + j].bitPattern != g.c[i * g.ldc + j].bitPattern {
            XCTFail("\(g): padding of C written at row \(i), column \(j)", file: file, line: line)
            return
        } }
    }

    func testMatchesFloat64ReferenceOnManyShapesAndAllTransposes() {
        for g in GemmTests.cases { checkAgainstFloat64(g, g.run()) }
    }

    func testEveryISAPathComputesTheContractsChainBitForBit() {
        let cases = GemmTests.cases
        let chains = cases.map { $0.chain() }
        var outputs: [KernelISA: [[Float]]] = [:]
        for isa in KernelISA.supported {
            XCTAssertTrue(KernelISA.use(isa))
            outputs[isa] = cases.map { $0.run() }
            for (g, (out, chain)) in zip(cases, zip(outputs[isa]!, chains)) {
                assertSameBits(out, chain, "\(isa.name) path, \(g)")
            }
        }
        // And so the paths agree with each other (explicitly, for the report).
        for isa in KernelISA.supported.dropFirst() {
            for (g, (x, y)) in zip(cases, zip(outputs[isa]!, outputs[.baseline]!)) {
                assertSameBits(x, y, "\(isa.name) vs baseline, \(g)")
            }
        }
        XCTAssertTrue(KernelISA.supported.contains(.baseline))
    }

    func testGeneralAlphaAndBeta() {
        for isa in KernelISA.supported {
            KernelISA.use(isa)
            for (alpha, beta) in [(Float(0.37), Float(-1.5)), (-2, 1), (1, 0.5), (0.125, 0)] {
                for t in 0..<8 {  // 0..<4: a square-ish product; 4..<8: a thin one (transposed when alpha is 1)
                    let (m, n) = t < 4 ? (29, 45) : (90, 3)
                    let g = GemmCase(m, n, 300, transA: t & 1 != 0, transB: t & 2 != 0, alpha: alpha, beta: beta, seed: 7)
                    let out = g.run()
                    checkAgainstFloat64(g, out)
                    assertSameBits(out, g.chain(), "\(isa.name) path, \(g)")
                }
            }
        }
    }

    func testBetaZeroNeverReadsC() {
        // C is NaN everywhere; a single read of it would leave a NaN in the result.
        for isa in KernelISA.supported {
            KernelISA.use(isa)
            let g = GemmCase(37, 70, 20, beta: 0)
            XCTAssertTrue(g.c.contains { $0.isNaN })
            let out = g.run()
            for i in 0..<g.m { for j in 0..<g.n { XCTAssertTrue(out[i * g.ldc + j].isFinite, "\(isa.name): C[\(i)][\(j)] read") } }
        }
    }

    func testEmptyDepthAndZeroAlphaOnlyScaleC() {
        for (k, alpha, beta) in [(0, Float(1), Float(0.5)), (0, 1, 0), (9, 0, 2), (9, 0, 1)] {
            var g = GemmCase(5, 6, k, alpha: alpha, beta: beta)
            if k > 0 { g.a = g.a.map { _ in .infinity } }  // alpha 0: A is not read (∞·0 would be NaN)
            let out = g.run()
            for i in 0..<g.m { for j in 0..<g.n {
                let c0 = g.c[i * g.ldc + j], expected: Float = beta == 0 ? 0 : beta * c0
                XCTAssertEqual(out[i * g.ldc + j].bitPattern, expected.bitPattern, "k \(k) alpha \(alpha) beta \(beta)")
            } }
        }
        // m or n zero: nothing is written.
        let g = GemmCase(0, 4, 3)
        XCTAssertEqual(g.run().map(\.bitPattern), g.c.map(\.bitPattern))
    }

    func testSplittingTheOutputIntoTilesChangesNoBit() {
        for isa in KernelISA.supported {
            KernelISA.use(isa)
            for g in [GemmCase(61, 150, 270, transB: true, beta: 1), GemmCase(130, 47, 33, transA: true)] {
                let whole = g.chain()
                for axis in [0, 1] {
                    for tiles in [2, 3, 7] {
                        var out = g.c
                        g.withCall(&out) { call in
                            (call.tiles, call.tile_axis) = (tiles, Int32(axis))
                            for t in (0..<tiles).reversed() { ddpm_sgemm_tile(&call, t) }
                        }
                        assertSameBits(out, whole, "\(isa.name), \(g), \(tiles) tiles along axis \(axis)")
                    }
                }
            }
        }
    }

    func testPlannedSplitsOnThePoolChangeNoBit() {
        // Large enough to be split (ddpm_sgemm_split plans several tiles for 2 threads).
        let g = GemmCase(96, 400, 200, transB: true, beta: 1)
        var scratch = g.c
        let tiles = g.withCall(&scratch) { call in ddpm_sgemm_split(&call, 2); return call.tiles }
        XCTAssertGreaterThan(tiles, 1, "the test's GEMM is split on 2 threads")
        setWorkPoolSize(1)
        let serial = g.run()
        for threads in [2, 3] {
            setWorkPoolSize(threads)
            assertSameBits(g.run(), serial, "\(threads) threads vs 1")
        }
        // Called from inside a pool job, it runs on its caller: the same bits again.
        setWorkPoolSize(2)
        let results = UnsafeMutablePointer<[Float]>.allocate(capacity: 4)
        results.initialize(repeating: [], count: 4)
        defer { results.deinitialize(count: 4); results.deallocate() }
        WorkPool.shared.parallelFor(chunks: 4) { c, _ in results[c] = g.run() }
        for c in 0..<4 { assertSameBits(results[c], serial, "GEMM inside pool chunk \(c)") }
        assertSameBits(serial, g.chain(), "the split GEMM vs the contract")
    }

    func testPackingCallbackGivesTheBitsOfAStridedB() {
        for isa in KernelISA.supported {
            KernelISA.use(isa)
            for transB in [false, true] {
                let g = GemmCase(23, 300, 270, transB: transB, beta: 1, seed: 5)
                var out = g.c
                g.b.withUnsafeBufferPointer { b in
                    var source = PackSource(b: b.baseAddress!, ldb: g.ldb, transB: transB)
                    g.a.withUnsafeBufferPointer { a in
                        out.withUnsafeMutableBufferPointer { c in
                            packedGemm(c.baseAddress!, a.baseAddress!, packB: packFromSource, context: &source,
                                       m: g.m, n: g.n, k: g.k, lda: g.lda, ldc: g.ldc, beta: g.beta)
                        }
                    }
                }
                assertSameBits(out, g.chain(), "\(isa.name), op(B) from the packing callback, \(g)")
            }
        }
    }

    func testPrePackedOperandsGiveTheBitsOfTheCall() {
        // op(A) and op(B) packed whole beforehand (ddpm_sgemm_pack_a / _b) and handed to calls
        // whose own a and b are NaN (a read of them would show): the contract's bits, on every
        // path, whole and split into tiles. Shapes cross KC (256), MR, NR and the thin and
        // single-panel cases the driver treats apart.
        let cases = [GemmCase(37, 70, 300, alpha: 0.5, beta: 1), GemmCase(61, 150, 270, transA: true, transB: true),
                     GemmCase(5, 33, 40), GemmCase(130, 47, 513, transB: true, beta: 1), GemmCase(8, 64, 20, beta: 1),
                     GemmCase(128, 2, 128), GemmCase(3, 200, 600, transA: true, alpha: -2)]
        for isa in KernelISA.supported {
            KernelISA.use(isa)
            for g in cases {
                let chain = g.chain()
                var packedA = [Float](repeating: .nan, count: ddpm_sgemm_packed_a_floats(g.m, g.k))
                var packedB = [Float](repeating: .nan, count: ddpm_sgemm_packed_b_floats(g.k, g.n))
                var scratch = g.c
                g.withCall(&scratch) { call in
                    ddpm_sgemm_pack_a(&call, &packedA)
                    ddpm_sgemm_pack_b(&call, &packedB)
                }
                let nanA = [Float](repeating: .nan, count: g.a.count), nanB = [Float](repeating: .nan, count: g.b.count)
                for (useA, useB) in [(true, false), (false, true), (true, true)] {
                    var h = g
                    if useA { h.a = nanA }
                    if useB { h.b = nanB }
                    for tiles in [1, 3] {
                        for axis in tiles == 1 ? [0] : [0, 1] {
                            var out = g.c
                            packedA.withUnsafeBufferPointer { pa in
                                packedB.withUnsafeBufferPointer { pb in
                                    h.withCall(&out) { call in
                                        call.packed_a = useA ? pa.baseAddress : nil
                                        call.packed_b = useB ? pb.baseAddress : nil
                                        (call.tiles, call.tile_axis) = (tiles, Int32(axis))
                                        for t in 0..<tiles { ddpm_sgemm_tile(&call, t) }
                                    }
                                }
                            }
                            assertSameBits(out, chain, "\(isa.name), \(g), packed A \(useA) B \(useB), \(tiles) tiles axis \(axis)")
                        }
                    }
                }
            }
        }
        // Negative control: B packed from other values gives other bits.
        let g = GemmCase(37, 70, 300, beta: 1)
        let other = GemmCase(37, 70, 300, beta: 1, seed: 77)
        var packedB = [Float](repeating: 0, count: ddpm_sgemm_packed_b_floats(g.k, g.n))
        var scratch = other.c
        other.withCall(&scratch) { call in ddpm_sgemm_pack_b(&call, &packedB) }
        var out = g.c
        packedB.withUnsafeBufferPointer { pb in g.withCall(&out) { call in call.packed_b = pb.baseAddress; ddpm_sgemm(&call) } }
        XCTAssertNotNil(firstBitDifference(out, g.chain()), "a wrong packed B would be told apart")
    }

    func testOpenBLASAgreesWithinRounding() {
        // OpenBLAS, a separate implementation, as a second oracle (its order of additions
        // differs with its kernels, so only within the float64 bound).
        for g in GemmTests.cases.filter({ $0.m * $0.n * $0.k > 1000 }) {
            var out = g.c
            g.a.withUnsafeBufferPointer { a in g.b.withUnsafeBufferPointer { b in out.withUnsafeMutableBufferPointer { c in
                cblas_sgemm(CblasRowMajor, g.transA ? CblasTrans : CblasNoTrans, g.transB ? CblasTrans : CblasNoTrans,
                            Int32(g.m), Int32(g.n), Int32(g.k), g.alpha, a.baseAddress, Int32(g.lda), b.baseAddress,
                            Int32(g.ldb), g.beta, c.baseAddress, Int32(g.ldc))
            } } }
            let (value, bound) = g.reference()
            for i in 0..<g.m { for j in 0..<g.n {
                XCTAssertLessThanOrEqual(abs(Double(out[i * g.ldc + j]) - value[i * g.n + j]), 2 * bound[i * g.n + j], "OpenBLAS \(g)")
            } }
        }
    }

    func testNegativeControlsShowTheComparisonsCanFail() {
        let g = GemmCase(17, 33, 300, beta: 1)
        let ours = g.run()
        // An unfused chain, or the same chain in the other order over k: other bits somewhere.
        XCTAssertNotNil(firstBitDifference(ours, g.chain(fused: false)), "an unfused chain would be told apart")
        XCTAssertNotNil(firstBitDifference(ours, g.chain(reversed: true)), "a reversed chain would be told apart")
        // Another product (other operands of the same shape) is far outside the float64 bound.
        let (value, bound) = g.reference()
        let out = GemmCase(17, 33, 300, beta: 1, seed: 99).run()
        let ratio = (0..<g.m).flatMap { i in (0..<g.n).map { j in abs(Double(out[i * g.ldc + j]) - value[i * g.n + j]) / bound[i * g.n + j] } }.max()!
        XCTAssertGreaterThan(ratio, 10, "a wrong product is far outside the bound")
    }
}

/// op(B) for the packing callback test: B stored (k, n), or (n, k) when transB.
struct PackSource {
    let b: UnsafePointer<Float>, ldb: Int, transB: Bool
}

/// ddpm_sgemm_pack_b_fn written from its documentation:
/// dst[(q·kc + p)·nr + j] = op(B)[k0 + p][j0 + q·nr + j], 0 past nc.
let packFromSource: ddpm_sgemm_pack_b_fn = { context, dst, k0, kc, j0, nc, nr in
    let s = context!.assumingMemoryBound(to: PackSource.self).pointee
    let panels = (nc + nr - 1) / nr
    for q in 0..<panels {
        for p in 0..<kc {
            for j in 0..<nr {
                let col = q * nr + j
                let row = k0 + p, colB = j0 + col
                dst![(q * kc + p) * nr + j] = col >= nc ? 0 : s.transB ? s.b[colB * s.ldb + row] : s.b[row * s.ldb + colB]
            }
        }
    }
}
