// Winograd convolutions (Conv2d+Winograd.swift) against a direct convolution in Double:
// forward, backward-data and backward-weights, for F(4×4, 3×3) and F(2×2, 3×3), on shapes
// whose sides are not multiples of the tile, 1×1 images and batch 1; finite-difference
// gradient checks; the same bits on every ISA path of the C kernels.
//
// The accuracy bound. Each computed value's error is divided by the sum of the magnitudes of
// the terms of its exact value (Σ|w||x| + |b| for an output, Σ|w||dout| for ∂inp,
// Σ|dout||x| for ∂W, the largest of a kernel's 9 taps: Winograd computes the 9 together from
// their α² transformed values, so a tap with few terms — an edge tap on a 1×1 image has none —
// gets the rounding of its neighbours'): a float32 computation of that sum rounds each term and each partial sum
// by at most u = 2^-24, so its error is a small multiple of u on random data (the im2col path
// measures about 2–4 u) and bounded by K·u in the worst case. Winograd's transforms add a few
// roundings of values larger than the terms; the tests require, per tensor,
//   F(2×2, 3×3): max error ≤ 4 × the im2col path's max error on the same data (and ≤ 16 u),
//   F(4×4, 3×3): max error ≤ 64 u = 2^-18,
// which is far inside the worst-case bound of a direct float32 sum of K = 9·Ci terms.
import XCTest
@testable import DDPM
import DDPMKernels

final class WinogradTests: XCTestCase {
    static let u = 1.0 / Double(1 << 24)

    /// The convolution of `conv`'s shape forcing `algorithm`.
    static func conv(_ layout: inout ParameterLayout, in Ci: Int, out Co: Int, _ algorithm: Conv2d.Algorithm) -> Conv2d {
        Conv2d(&layout, "conv", in: Ci, out: Co, kernel: 3, algorithm: algorithm)
    }

    /// Exact (Double) forward and gradients of a 3×3, stride-1, padding-1 convolution, with the
    /// sums of magnitudes of their terms.
    struct Direct {
        var out: [Double], outScale: [Double]  // (Co, B, H, W)
        var dinp: [Double], dinpScale: [Double]  // (Ci, B, H, W)
        var dW: [Double], dWScale: [Double]  // (Co, Ci, 3, 3)
        var db: [Double]

        init(inp: [Float], dout: [Float], params: [Float], _ conv: Conv2d, batch B: Int, height H: Int, width W: Int) {
            let (Ci, Co) = (conv.inChannels, conv.outChannels)
            out = .init(repeating: 0, count: Co * B * H * W); outScale = out
            dinp = .init(repeating: 0, count: Ci * B * H * W); dinpScale = dinp
            dW = .init(repeating: 0, count: Co * Ci * 9); dWScale = dW
            db = .init(repeating: 0, count: Co)
            for o in 0..<Co {
                let bias = Double(params[conv.bias + o])
                for b in 0..<B {
                    for y in 0..<H {
                        for x in 0..<W {
                            let oi = ((o * B + b) * H + y) * W + x
                            let g = Double(dout[oi])
                            out[oi] = bias; outScale[oi] = abs(bias)
                            db[o] += g
                            for ci in 0..<Ci {
                                for ky in 0..<3 {
                                    let iy = y + ky - 1
                                    guard iy >= 0 && iy < H else { continue }
                                    for kx in 0..<3 {
                                        let ix = x + kx - 1
                                        guard ix >= 0 && ix < W else { continue }
                                        let wi = ((o * Ci + ci) * 3 + ky) * 3 + kx, ii = ((ci * B + b) * H + iy) * W + ix
                                        let (w, v) = (Double(params[conv.weight + wi]), Double(inp[ii]))
                                        out[oi] += w * v; outScale[oi] += abs(w * v)
                                        dinp[ii] += w * g; dinpScale[ii] += abs(w * g)
                                        dW[wi] += g * v; dWScale[wi] += abs(g * v)
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// max_i |got_i − exact_i| / scale_i
    static func relativeError(_ got: [Float], _ exact: [Double], _ scale: [Double]) -> Double {
        zip(got, zip(exact, scale)).map { abs(Double($0) - $1.0) / max($1.1, 1e-30) }.max() ?? 0
    }

    /// Each of the 9 taps of a kernel gets the largest scale of the 9.
    static func largestOfEachKernel(_ scale: [Double]) -> [Double] {
        (0..<scale.count).map { i in scale[(i / 9 * 9)..<(i / 9 * 9 + 9)].max()! }
    }

    /// Forward, ∂inp, ∂W and ∂b of one algorithm on one shape; errors relative to the exact values.
    static func errors(_ algorithm: Conv2d.Algorithm, in Ci: Int, out Co: Int, batch B: Int, height H: Int, width W: Int,
                       seed: UInt64, accumulate: Bool = false)
        -> (out: Double, dinp: Double, dW: Double, db: Double) {
        var layout = ParameterLayout()
        let conv = Self.conv(&layout, in: Ci, out: Co, algorithm)
        XCTAssertEqual(conv.algorithm(batch: B, height: H, width: W), algorithm, "the path taken")
        let params = UNetGradientCheck.randomParameters(layout, seed: seed)
        let inp = UNetGradientCheck.normals(Ci * B * H * W, seed: seed &+ 1)
        let dout = UNetGradientCheck.normals(Co * B * H * W, seed: seed &+ 2)
        let exact = Direct(inp: inp, dout: dout, params: params, conv, batch: B, height: H, width: W)
        let scratch = try! Buffer<Float>(count: conv.columnsCount(batch: B, height: H, width: W))
        scratch.fill(.nan)  // every float read must have been written
        // out = conv(x), or out = base + conv(x) when accumulating onto base
        let base = UNetGradientCheck.normals(Co * B * H * W, seed: seed &+ 3)
        var out = accumulate ? base : [Float](repeating: .nan, count: Co * B * H * W)
        conv.forward(&out, inp, params, columns: scratch.pointer, batch: B, height: H, width: W, accumulate: accumulate)
        if accumulate { out = zip(out, base).map { $0 - $1 } }
        var grads = [Float](repeating: 0, count: layout.count)
        let dinpBase = UNetGradientCheck.normals(Ci * B * H * W, seed: seed &+ 4)
        var dinp = accumulate ? dinpBase : [Float](repeating: .nan, count: Ci * B * H * W)
        conv.backward(dinp: &dinp, &grads, dout: dout, inp: inp, params, columns: scratch.pointer, batch: B, height: H,
                      width: W, accumulate: accumulate)
        if accumulate { dinp = zip(dinp, dinpBase).map { $0 - $1 } }
        let dW = Array(grads[conv.weight..<conv.weight + Co * Ci * 9]), db = Array(grads[conv.bias..<conv.bias + Co])
        return (relativeError(out, exact.out, exact.outScale), relativeError(dinp, exact.dinp, exact.dinpScale),
                relativeError(dW, exact.dW, Self.largestOfEachKernel(exact.dWScale)),
                zip(db, exact.db).map { abs(Double($0) - $1) / max(abs($1), 1) }.max()!)
    }

    static let shapes: [(Ci: Int, Co: Int, B: Int, H: Int, W: Int)] = [
        (64, 64, 2, 16, 16), (32, 48, 3, 9, 7), (16, 24, 1, 5, 13), (20, 17, 2, 1, 1), (128, 96, 1, 8, 8), (8, 40, 2, 6, 2),
    ]

    func testWinogradStaysWithinFloatRoundingOfTheDirectConvolution() {
        for (n, s) in Self.shapes.enumerated() {
            let seed = UInt64(100 + 10 * n)
            let reference = Self.errors(.im2col, in: s.Ci, out: s.Co, batch: s.B, height: s.H, width: s.W, seed: seed)
            for m in [4, 2] {
                for accumulate in [false, true] {
                    let e = Self.errors(.winograd(tile: m), in: s.Ci, out: s.Co, batch: s.B, height: s.H, width: s.W,
                                        seed: seed, accumulate: accumulate)
                    let what = "F(\(m)×\(m), 3×3) \(s) accumulate \(accumulate)"
                    print(String(format: "%@: max error / Σ|terms| in u = 2^-24: out %.1f (im2col %.1f), dinp %.1f (%.1f), dW %.1f (%.1f)",
                                 what, e.out / Self.u, reference.out / Self.u, e.dinp / Self.u, reference.dinp / Self.u,
                                 e.dW / Self.u, reference.dW / Self.u))
                    // accumulate adds a rounding of (base + conv) − base: compare without it
                    if accumulate { continue }
                    for (name, got, ref) in [("out", e.out, reference.out), ("dinp", e.dinp, reference.dinp),
                                             ("dW", e.dW, reference.dW)] {
                        if m == 2 {
                            XCTAssertLessThanOrEqual(got, max(4 * ref, 2 * Self.u), "\(what) \(name) against 4 × im2col's")
                            XCTAssertLessThanOrEqual(got, 16 * Self.u, "\(what) \(name)")
                        } else {
                            XCTAssertLessThanOrEqual(got, 64 * Self.u, "\(what) \(name)")
                        }
                    }
                    XCTAssertLessThanOrEqual(e.db, 1e-5, "\(what) db")
                }
            }
        }
    }

    func testWinogradGradients() {
        let cases: [(Ci: Int, Co: Int, B: Int, H: Int, W: Int)] = [(3, 4, 2, 5, 6), (4, 3, 1, 1, 1), (2, 5, 3, 9, 4), (5, 2, 1, 4, 3)]
        for (n, c) in cases.enumerated() {
            for m in [4, 2] {
                for accumulate in [false, true] {
                    var layout = ParameterLayout()
                    let conv = Self.conv(&layout, in: c.Ci, out: c.Co, .winograd(tile: m))
                    let (B, H, W) = (c.B, c.H, c.W)
                    let scratch = try! Buffer<Float>(count: conv.columnsCount(batch: B, height: H, width: W))
                    UNetGradientCheck.checkLayer("F(\(m)×\(m), 3×3) \(c) accumulate \(accumulate)", layout: layout,
                                                 inputCount: c.Ci * B * H * W, outputCount: c.Co * B * H * W,
                                                 seed: UInt64(200 + n)) { out, inp, p in
                        conv.forward(out, inp, p, columns: scratch.pointer, batch: B, height: H, width: W)
                    } backward: { dinp, g, dout, inp, p in
                        let count = c.Ci * B * H * W
                        if accumulate { for i in 0..<count { dinp[i] = 0 } } else { for i in 0..<count { dinp[i] = .nan } }
                        conv.backward(dinp: dinp, g, dout: dout, inp: inp, p, columns: scratch.pointer, batch: B, height: H,
                                      width: W, accumulate: accumulate)
                    }
                }
            }
        }
    }

    /// Blocks of one tile row, so that the batch runs in several blocks that split images: the
    /// same results as one block for the whole batch (up to the GEMM's rounding: OpenBLAS picks
    /// its kernels by the size of the product).
    func testBlocksThatSplitImages() {
        let saved = WinogradPlan.blockTarget
        defer { WinogradPlan.blockTarget = saved }
        let (Ci, Co, B, H, W) = (16, 16, 3, 11, 9)
        func run() -> (outputs: [Float], grads: [Float]) {
            var layout = ParameterLayout()
            let conv = Self.conv(&layout, in: Ci, out: Co, .winograd(tile: 4))
            let params = UNetGradientCheck.randomParameters(layout, seed: 7)
            let inp = UNetGradientCheck.normals(Ci * B * H * W, seed: 8), dout = UNetGradientCheck.normals(Co * B * H * W, seed: 9)
            let scratch = try! Buffer<Float>(count: conv.columnsCount(batch: B, height: H, width: W))
            var out = [Float](repeating: 0, count: Co * B * H * W), dinp = [Float](repeating: 0, count: Ci * B * H * W)
            var grads = [Float](repeating: 0, count: layout.count)
            conv.forward(&out, inp, params, columns: scratch.pointer, batch: B, height: H, width: W)
            conv.backward(dinp: &dinp, &grads, dout: dout, inp: inp, params, columns: scratch.pointer, batch: B, height: H, width: W)
            return (out + dinp, grads)
        }
        WinogradPlan.blockTarget = 1 << 20  // the whole batch in one block
        let whole = run()
        WinogradPlan.blockTarget = 4  // one tile row (3 tiles) a block: 9 blocks, every image in 3
        var layout = ParameterLayout()
        let conv = Self.conv(&layout, in: Ci, out: Co, .winograd(tile: 4))
        XCTAssertEqual(WinogradPlan(conv, tile: 4, batch: B, height: H, width: W).rowsPerBlock, 1)
        let split = run()
        assertRelClose(split.outputs, whole.outputs, rel: 1e-4, floor: 1, "forward and backward-data by blocks")
        // ∂W sums the blocks' products in another grouping: each entry, a sum of B·H·W = 297
        // products of N(0, 1) values, may move by tens of u of Σ|terms| ≈ 240
        assertRelClose(split.grads, whole.grads, rel: 2e-4, floor: 1, "backward-weights by blocks")
    }

    func testEveryISAPathGivesTheSameBits() throws {
        try XCTSkipIf(KernelISA.supported.count < 2, "this CPU has one ISA path only: nothing to compare")
        let saved = KernelISA.current
        defer { KernelISA.use(saved) }
        let (Ci, Co, B, H, W) = (24, 40, 2, 10, 7)
        var first: [Int: [Float]] = [:]  // tile → forward, ∂inp and gradients on the first path
        for isa in KernelISA.supported {
            XCTAssertTrue(KernelISA.use(isa))
            for m in [4, 2] {
                var layout = ParameterLayout()
                let conv = Self.conv(&layout, in: Ci, out: Co, .winograd(tile: m))
                let params = UNetGradientCheck.randomParameters(layout, seed: 3)
                let inp = UNetGradientCheck.normals(Ci * B * H * W, seed: 4), dout = UNetGradientCheck.normals(Co * B * H * W, seed: 5)
                let scratch = try Buffer<Float>(count: conv.columnsCount(batch: B, height: H, width: W))
                var out = [Float](repeating: 0, count: Co * B * H * W), dinp = [Float](repeating: 0, count: Ci * B * H * W)
                var grads = [Float](repeating: 0, count: layout.count)
                conv.forward(&out, inp, params, columns: scratch.pointer, batch: B, height: H, width: W)
                conv.backward(dinp: &dinp, &grads, dout: dout, inp: inp, params, columns: scratch.pointer, batch: B,
                              height: H, width: W)
                let result = out + dinp + grads
                if let expected = first[m] {
                    XCTAssertEqual(result, expected, "F(\(m)×\(m)) on \(isa.name) vs \(KernelISA.supported[0].name)")
                } else {
                    first[m] = result
                }
            }
        }
    }

    /// The automatic choice on the shapes its documentation names, and scratch for any batch
    /// up to the one a workspace was sized for, whichever algorithm each takes.
    func testAutomaticChoiceAndItsScratch() {
        func conv(_ Ci: Int, _ Co: Int, kernel: Int = 3, stride: Int = 1) -> Conv2d {
            var layout = ParameterLayout()
            return Conv2d(&layout, "c", in: Ci, out: Co, kernel: kernel, stride: stride)
        }
        XCTAssertEqual(conv(64, 64).algorithm(batch: 1, height: 32, width: 32), .winograd(tile: 4))
        XCTAssertEqual(conv(256, 256).algorithm(batch: 8, height: 8, width: 8), .winograd(tile: 2))
        XCTAssertEqual(conv(128, 128).algorithm(batch: 1, height: 8, width: 8), .im2col)
        XCTAssertEqual(conv(128, 128).algorithm(batch: 16, height: 8, width: 8), .winograd(tile: 4))
        XCTAssertEqual(conv(3, 64).algorithm(batch: 32, height: 32, width: 32), .im2col, "few channels")
        XCTAssertEqual(conv(64, 64).algorithm(batch: 32, height: 2, width: 2), .im2col, "tiny images")
        XCTAssertEqual(conv(64, 64, stride: 2).algorithm(batch: 32, height: 32, width: 32), .im2col, "stride 2")
        XCTAssertEqual(conv(64, 64, kernel: 1).algorithm(batch: 32, height: 32, width: 32), .im2col, "1×1")
        for (Ci, Co, H) in [(128, 128, 8), (256, 256, 4), (64, 64, 32), (32, 96, 16)] {
            let c = conv(Ci, Co), capacity = 32
            let scratch = c.columnsCount(batch: capacity, height: H, width: H)
            for B in 1...capacity {
                let need: Int
                if case .winograd(let m) = c.algorithm(batch: B, height: H, width: H) {
                    need = WinogradPlan(c, tile: m, batch: B, height: H, width: H).scratchCount
                } else {
                    need = c.im2colScratchCount(batch: B, height: H, width: H)
                }
                XCTAssertLessThanOrEqual(need, scratch, "\(Ci)→\(Co) at \(H)×\(H), batch \(B) of \(capacity)")
            }
        }
    }
}
