// The GEMM's bias row (ddpm_gemm.h): each column's chain starts from bias[j] (beta 0) or from
// β·C + bias[j], one rounded add, then continues as the contract says. The oracle is that
// contract written out in Swift element by element; every ISA path, every shape of GemmTests
// (thin products that run transposed, short rows, K past one block, edges), every split of the
// output into tiles, pre-packed operands, and k = 0 / alpha = 0 must give exactly its bits. With
// beta 0, C is NaN and must not be read; a negative control shows a missing bias is caught.
import XCTest
import DDPMKernels
@testable import DDPM

extension GemmCase {
    /// The contract with a bias row, element by element (the padding of C unchanged).
    func chain(bias: [Float]) -> [Float] {
        var out = c
        for i in 0..<m {
            for j in 0..<n {
                let c0 = c[i * ldc + j]
                var acc: Float = beta == 0 ? bias[j] : (beta == 1 ? c0 : beta * c0) + bias[j]
                if alpha != 0 { for p in 0..<k { acc = acc.addingProduct(alpha * opA(i, p), opB(p, j)) } }
                out[i * ldc + j] = acc
            }
        }
        return out
    }

    /// C after ddpm_sgemm with `bias` (in `tiles` tiles when more than one, optionally with op(B) pre-packed).
    func run(bias: [Float], tiles: Int = 1, prepackB: Bool = false) -> [Float] {
        var out = c
        var packed = [Float](repeating: .nan, count: ddpm_sgemm_packed_b_floats(k, n) + 1)
        bias.withUnsafeBufferPointer { bias in
            packed.withUnsafeMutableBufferPointer { packed in
                withCall(&out) { call in
                    call.bias = bias.baseAddress
                    if prepackB {
                        ddpm_sgemm_pack_b(&call, packed.baseAddress!)
                        call.packed_b = UnsafePointer(packed.baseAddress!)
                    }
                    if tiles > 1 {
                        ddpm_sgemm_split(&call, tiles)
                        for t in 0..<call.tiles { ddpm_sgemm_tile(&call, t) }
                    } else {
                        ddpm_sgemm(&call)
                    }
                }
            }
        }
        return out
    }
}

final class GemmBiasTests: XCTestCase {
    var savedISA = KernelISA.current
    override func setUp() { savedISA = KernelISA.current }
    override func tearDown() { KernelISA.use(savedISA) }

    /// GemmTests' cases with beta 0, 1 and 0.75 in turn, and alpha −0.5 on every fifth.
    static var cases: [GemmCase] {
        GemmTests.cases.enumerated().map { index, g in
            GemmCase(g.m, g.n, g.k, transA: g.transA, transB: g.transB, alpha: index % 5 == 4 ? -0.5 : 1,
                     beta: [0, 1, 0.75][index % 3], seed: UInt64(index))
        }
    }

    static func bias(_ n: Int, seed: UInt64) -> [Float] {
        // −0 among them: beta 0 must start from it exactly (not from 0 + (−0) = +0)
        uniforms(n, seed: seed).enumerated().map { $0.offset % 7 == 3 ? -0.0 : $0.element }
    }

    func testEveryPathStartsEachChainFromTheBiasRow() {
        let cases = Self.cases
        let biases = cases.enumerated().map { Self.bias($0.element.n, seed: UInt64(100 + $0.offset)) }
        let chains = zip(cases, biases).map { $0.chain(bias: $1) }
        for isa in KernelISA.supported {
            XCTAssertTrue(KernelISA.use(isa))
            for (g, (bias, chain)) in zip(cases, zip(biases, chains)) {
                assertSameBits(g.run(bias: bias), chain, "\(isa.name), \(g), bias")
                assertSameBits(g.run(bias: bias, tiles: 3), chain, "\(isa.name), \(g), bias, split for 3 threads")
            }
        }
    }

    func testPrePackedOperandsEmptyDepthAndZeroAlphaWithABiasRow() {
        for isa in KernelISA.supported {
            XCTAssertTrue(KernelISA.use(isa))
            for g in [GemmCase(128, 64, 128, transB: true), GemmCase(37, 70, 300, transB: true, beta: 1),
                      GemmCase(9, 50, 256, transB: true, beta: 0.75)] {
                let bias = Self.bias(g.n, seed: 3)
                assertSameBits(g.run(bias: bias, prepackB: true), g.chain(bias: bias), "\(isa.name), \(g), packed B")
            }
            for (k, alpha) in [(0, Float(1)), (5, 0)] {
                for beta: Float in [0, 1, 0.75] {
                    let g = GemmCase(5, 6, k, alpha: alpha, beta: beta)
                    let bias = Self.bias(6, seed: 4)
                    assertSameBits(g.run(bias: bias), g.chain(bias: bias), "\(isa.name), k \(k), alpha \(alpha), beta \(beta)")
                }
            }
        }
    }

    func testNegativeControlAMissingOrShiftedBiasIsCaught() {
        let g = GemmCase(20, 40, 30, beta: 1)
        let bias = Self.bias(g.n, seed: 5)
        XCTAssertNotNil(firstBitDifference(g.run(bias: bias), g.chain()), "the bias changes the result")
        XCTAssertNotNil(firstBitDifference(g.run(bias: bias), g.chain(bias: Array(bias.reversed()))), "its order matters")
    }
}
