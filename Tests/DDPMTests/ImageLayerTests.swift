// The UNet's layers: Conv2d against a direct convolution, and finite-difference gradient
// checks of Conv2d (3×3, 1×1, 3×3 stride 2, 1×3 and 1×5 on height-1 signals), GroupNorm, Attention, Downsample, Upsample,
// ResBlock (with and without dropout). Images are channel-major (C, B, H, W).
import XCTest
@testable import DDPM

/// Views on a block of their own, kept alive with it (a network builds them in its activation
/// block or workspace instead).
final class Held<Views> {
    let views: Views
    private let block: Buffer<Float>?
    init(_ make: (inout Arena) -> Views) { (block, views) = try! Arena.allocate { ($0.block, make(&$0)) } }
}

/// What a layer test passes to one layer call: parameters, gradients, batch and a scratch whose
/// `a` and `b` hold `activation` floats each.
func testPass(_ params: UnsafePointer<Float>, _ grads: UnsafeMutablePointer<Float>, batch: Int,
              scratch: Held<Scratch>) -> Pass {
    Pass(params: params, grads: grads, batch: batch, training: true, scratch: scratch.views)
}

final class ImageLayerTests: XCTestCase {
    /// out[o, b, y, x] = bias[o] + Σ W[o, ci, ky, kx]·inp[ci, b, y·s + ky − p, x·s + kx − p], in Double,
    /// zero padded by p = k/2 on every side; or, `bottomRight`, by one zero row (k > 1) and
    /// column below and right only (p = 0: the original DDPM's Downsample).
    static func directConvolution(_ inp: [Float], _ params: [Float], _ conv: Conv2d, batch B: Int, height H: Int, width W: Int,
                                  bottomRight: Bool = false) -> [Float] {
        let (Ci, Co, kh, kw, s) = (conv.inChannels, conv.outChannels, conv.kernelHeight, conv.kernelWidth, conv.stride)
        let (py, px) = bottomRight ? (0, 0) : (kh / 2, kw / 2)
        let padding = bottomRight ? (kh > 1 ? 1 : 0, kw > 1 ? 1 : 0) : (2 * py, 2 * px)  // rows, columns in all
        let (Ho, Wo) = ((H + padding.0 - kh) / s + 1, (W + padding.1 - kw) / s + 1)
        var out = [Float](repeating: 0, count: Co * B * Ho * Wo)
        for o in 0..<Co {
            for b in 0..<B {
                for y in 0..<Ho {
                    for x in 0..<Wo {
                        var acc = Double(params[conv.bias + o])
                        for ci in 0..<Ci {
                            for ky in 0..<kh {
                                for kx in 0..<kw {
                                    let (iy, ix) = (y * s + ky - py, x * s + kx - px)
                                    guard iy >= 0, iy < H, ix >= 0, ix < W else { continue }
                                    let wv = params[conv.weight + ((o * Ci + ci) * kh + ky) * kw + kx]
                                    acc += Double(wv) * Double(inp[((ci * B + b) * H + iy) * W + ix])
                                }
                            }
                        }
                        out[((o * B + b) * Ho + y) * Wo + x] = Float(acc)
                    }
                }
            }
        }
        return out
    }

    /// kernelHeight nil = square kernel; 1 = a 1×k kernel over height-1 signals.
    static let convCases: [(kernel: Int, stride: Int, height: Int, width: Int, kernelHeight: Int?)] = [
        (3, 1, 5, 4, nil), (1, 1, 5, 4, nil), (3, 2, 6, 4, nil), (3, 2, 5, 3, nil), (3, 1, 1, 1, nil), (3, 1, 2, 7, nil),
        (3, 1, 1, 10, 1), (5, 1, 1, 9, 1), (3, 2, 1, 10, 1), (3, 2, 1, 7, 1), (5, 1, 3, 6, 1),
    ]

    /// Conv2d with the default chunking (the whole batch in one chunk here) or chunks of 2 images
    /// out of 3 (the last chunk shorter), so that both paths are checked.
    static func makeConv(_ layout: inout ParameterLayout, in Ci: Int, out Co: Int, kernel k: Int, kernelHeight: Int? = nil,
                         stride s: Int, height H: Int, width W: Int, chunked: Bool) -> Conv2d {
        let (Ho, Wo) = ((H - 1) / s + 1, (W - 1) / s + 1)
        return Conv2d(&layout, "conv", in: Ci, out: Co, kernel: k, kernelHeight: kernelHeight, stride: s,
                      columnsTarget: chunked ? Ci * (kernelHeight ?? k) * k * Ho * Wo * 2 : 1 << 17)
    }

    func testConv2dMatchesDirectConvolution() {
        for (n, c) in Self.convCases.enumerated() {
            for chunked in [false, true] {
                let (Ci, Co, B) = (3, 4, 3)
                var layout = ParameterLayout()
                let conv = Self.makeConv(&layout, in: Ci, out: Co, kernel: c.kernel, kernelHeight: c.kernelHeight,
                                         stride: c.stride, height: c.height, width: c.width, chunked: chunked)
                let params = UNetGradientCheck.randomParameters(layout, seed: UInt64(10 + n))
                let inp = UNetGradientCheck.normals(Ci * B * c.height * c.width, seed: UInt64(20 + n))
                let (Ho, Wo) = conv.outputSize(height: c.height, width: c.width)
                XCTAssertEqual(Ho, (c.height - 1) / c.stride + 1, "output height, case \(c)")
                XCTAssertEqual(Wo, (c.width - 1) / c.stride + 1, "output width, case \(c)")
                if chunked && !conv.isPointwise {
                    XCTAssertEqual(conv.imagesPerChunk(batch: B, height: c.height, width: c.width), 2, "chunk of case \(c)")
                }
                var out = [Float](repeating: .nan, count: Co * B * Ho * Wo)
                let columns = try! Buffer<Float>(count: conv.columnsCount(batch: B, height: c.height, width: c.width))
                columns.fill(.nan)  // im2col must write every entry it uses
                conv.forward(&out, inp, params, columns: columns.pointer, batch: B, height: c.height, width: c.width)
                let expected = Self.directConvolution(inp, params, conv, batch: B, height: c.height, width: c.width)
                assertClose(out, expected, abs: 1e-5, "conv \(c) chunked \(chunked) vs direct convolution")
                // accumulate: out += conv(x)
                conv.forward(&out, inp, params, columns: columns.pointer, batch: B, height: c.height, width: c.width,
                             accumulate: true)
                assertClose(out, expected.map { 2 * $0 }, abs: 2e-5, "conv \(c) chunked \(chunked) accumulating")
            }
        }
    }

    /// The stride-1 im2col (Sources/DDPMKernels/im2col.inc) against its definition, bit for bit,
    /// and its col2im against the adjoint identity ⟨im2col(x), c⟩ = ⟨x, col2im(c)⟩ in Double,
    /// assigning and accumulating, on every ISA path: small images whose tap masks repeat over
    /// several planes (2×2, 4×4, 1×3), a plane of 64 and one of 15 pixels, chunks that start
    /// inside the batch and end before it.
    func testStrideOneIm2colMatchesItsDefinitionOnEveryPath() {
        var checked = 0
        for (H, W, k, B) in [(2, 2, 3, 37), (4, 4, 3, 9), (1, 3, 3, 40), (8, 8, 3, 3), (3, 5, 5, 7)] {
            let Ci = 3
            var layout = ParameterLayout()
            let conv = Conv2d(&layout, "conv", in: Ci, out: 2, kernel: k, stride: 1, columnsTarget: Ci * k * k * H * W * (B / 2),
                              algorithm: .im2col)
            let (HW, taps) = (H * W, k * k)
            let chunk = conv.imagesPerChunk(batch: B, height: H, width: W)
            let images = (B > chunk ? 1 : 0)..<min(B, (B > chunk ? 1 : 0) + chunk)  // a chunk that starts inside the batch
            let inp = UNetGradientCheck.normals(Ci * B * HW, seed: UInt64(H * 100 + W))
            let columns = try! Buffer<Float>(count: conv.im2colScratchCount(batch: B, height: H, width: W))
            let total = images.count * HW
            let c = UNetGradientCheck.normals(Ci * taps * total, seed: UInt64(H * 100 + W + 1))
            let prior = UNetGradientCheck.normals(Ci * B * HW, seed: UInt64(H * 100 + W + 2))
            /// body(entry of the columns, pixel of inp) for every entry that reads an in-image pixel:
            /// row (ci, ky, kx) at (b, y, x) reads inp[ci, b, y + ky − k/2, x + kx − k/2].
            func forEachRead(_ body: (Int, Int) -> Void) {
                for ci in 0..<Ci {
                    for tap in 0..<taps {
                        for (j, b) in images.enumerated() {
                            for y in 0..<H {
                                for x in 0..<W {
                                    let (iy, ix) = (y + tap / k - k / 2, x + tap % k - k / 2)
                                    guard iy >= 0, iy < H, ix >= 0, ix < W else { continue }
                                    body((ci * taps + tap) * total + j * HW + y * W + x, (ci * B + b) * HW + iy * W + ix)
                                }
                            }
                        }
                    }
                }
            }
            // the definition (0 where nothing is read), and the adjoint: ⟨im2col(x), c⟩ for every x
            // is ⟨x, col2im(c)⟩, col2im(c)[pixel] = Σ c over the entries that read the pixel
            var want = [Float](repeating: 0, count: Ci * taps * total)
            forEachRead { entry, pixel in want[entry] = inp[pixel] }
            var adjoint = [Double](repeating: 0, count: Ci * B * HW)
            forEachRead { entry, pixel in adjoint[pixel] += Double(c[entry]) }
            onEveryISAPath { isa in
                columns.fill(.nan)  // im2col must write every entry
                conv.im2col(columns.pointer, inp, images: images, batch: B, height: H, width: W)
                let got = Array(UnsafeBufferPointer(start: columns.pointer, count: want.count))
                XCTAssertEqual(bits(got), bits(want), "\(isa.name) \(H)×\(W) kernel \(k): im2col")
                for overwrite in [true, false] {
                    var dinp = overwrite ? [Float](repeating: .nan, count: prior.count) : prior
                    columns.pointer.update(from: c, count: c.count)
                    conv.col2im(&dinp, columns.pointer, images: images, batch: B, height: H, width: W, overwrite: overwrite)
                    for i in 0..<dinp.count {
                        let what = "\(isa.name) \(H)×\(W) kernel \(k) overwrite \(overwrite): col2im[\(i)]"
                        guard images.contains(i / HW % B) else {  // images outside the chunk are not touched
                            XCTAssertEqual(dinp[i].bitPattern, overwrite ? Float.nan.bitPattern : prior[i].bitPattern, what)
                            continue
                        }
                        let expected = (overwrite ? 0 : Double(prior[i])) + adjoint[i]
                        XCTAssertEqual(Double(dinp[i]), expected, accuracy: 1e-5 * max(1, abs(expected)), what)
                    }
                }
                checked += 1
            }
        }
        XCTAssertGreaterThanOrEqual(checked, 6, "every case ran")
    }

    func testConv2dGradients() {
        for (n, c) in Self.convCases.enumerated() {
            for (chunked, accumulate) in [(false, false), (false, true), (true, false), (true, true)] {
                let (Ci, Co, B, H, W) = (3, 4, 3, c.height, c.width)
                var layout = ParameterLayout()
                let conv = Self.makeConv(&layout, in: Ci, out: Co, kernel: c.kernel, kernelHeight: c.kernelHeight,
                                         stride: c.stride, height: H, width: W, chunked: chunked)
                let (Ho, Wo) = conv.outputSize(height: H, width: W)
                let columns = try! Buffer<Float>(count: conv.columnsCount(batch: B, height: H, width: W))
                UNetGradientCheck.checkLayer("conv \(c) chunked \(chunked) accumulate \(accumulate)", layout: layout,
                                             inputCount: Ci * B * H * W, outputCount: Co * B * Ho * Wo, seed: UInt64(30 + n)) { out, inp, p in
                    conv.forward(out, inp, p, columns: columns.pointer, batch: B, height: H, width: W)
                } backward: { dinp, g, dout, inp, p in
                    if accumulate { for i in 0..<Ci * B * H * W { dinp[i] = 0 } } else { for i in 0..<Ci * B * H * W { dinp[i] = .nan } }
                    conv.backward(dinp: dinp, g, dout: dout, inp: inp, p, columns: columns.pointer, batch: B, height: H, width: W,
                                  accumulate: accumulate)
                }
            }
        }
    }

    func testGroupNormGradients() {
        let (C, G, B, N) = (6, 3, 2, 5)
        var layout = ParameterLayout()
        let norm = GroupNorm(&layout, "norm", channels: C, groups: G)
        let stats = try! Buffer<Float>(count: 2 * B * G)  // mean, rstd (B, G) each
        let s = stats.pointer
        UNetGradientCheck.checkLayer("group norm", layout: layout, inputCount: C * B * N, outputCount: C * B * N, seed: 40) { out, inp, p in
            norm.forward(out, mean: s, rstd: s + B * G, inp, p, batch: B, spatial: N)
        } backward: { dinp, g, dout, inp, p in
            norm.backward(dinp: dinp, g, dout: dout, inp: inp, mean: s, rstd: s + B * G, p, batch: B, spatial: N, accumulate: true)
        }
    }

    func testGroupNormNormalisesEachImageAndGroup() {
        let (C, G, B, N) = (4, 2, 3, 7)
        var layout = ParameterLayout()
        let norm = GroupNorm(&layout, "norm", channels: C, groups: G)
        var rng = Philox(seed: 1)
        let params = try! ParameterSet(layout: layout, rng: &rng).valuesArray  // γ = 1, β = 0
        let inp = UNetGradientCheck.normals(C * B * N, seed: 41).enumerated().map { $1 * 3 + Float($0 % 5) }
        var out = [Float](repeating: 0, count: C * B * N), mean = [Float](repeating: 0, count: B * G), rstd = mean
        norm.forward(&out, mean: &mean, rstd: &rstd, inp, params, batch: B, spatial: N)
        for b in 0..<B {
            for g in 0..<G {
                let values = (g * C / G..<(g + 1) * C / G).flatMap { c in (0..<N).map { Double(out[(c * B + b) * N + $0]) } }
                let m = values.reduce(0, +) / Double(values.count)
                let v = values.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(values.count)
                XCTAssertEqual(m, 0, accuracy: 1e-5, "mean of image \(b), group \(g)")
                XCTAssertEqual(v, 1, accuracy: 1e-3, "variance of image \(b), group \(g)")
            }
        }
    }

    func testAttentionGradients() {
        // 4 and 6 pixels: the softmax's scalar tail only; 16: two 8-lane vectors; 15: a vector and a tail.
        for (heads, H, W) in [(1, 2, 2), (2, 3, 2), (1, 4, 4), (2, 3, 5)] {
            let (C, G, B, N) = (4, 2, 2, H * W)
            var layout = ParameterLayout()
            let attention = Attention(&layout, "attn", channels: C, heads: heads, groups: G, pixels: N)
            let a = Held { Attention.Activations(attention, batch: B, &$0) }
            let scratch = Held { Scratch(&$0, columns: 0, activation: 3 * C * B * N, probs: N * N, rows: 0) }
            let unused = try! Buffer<Float>(count: layout.count)  // gradients a forward pass never writes
            UNetGradientCheck.checkLayer("attention, \(heads) heads, \(H)×\(W)", layout: layout, inputCount: C * B * N,
                                     outputCount: C * B * N, seed: 50) { out, inp, p in
                attention.forward(a.views, inp, testPass(p, unused.pointer, batch: B, scratch: scratch))
                out.update(from: a.views.out, count: C * B * N)
            } backward: { dinp, g, dout, inp, p in
                attention.backward(dinp: dinp, dout: dout, inp: inp, a.views, testPass(p, g, batch: B, scratch: scratch))
            }
        }
    }

    /// In place (dinp == dout) gives the same gradient as separate buffers.
    func testAttentionBackwardInPlace() {
        let (C, G, B, N, heads) = (4, 2, 2, 4, 2)
        var layout = ParameterLayout()
        let attention = Attention(&layout, "attn", channels: C, heads: heads, groups: G, pixels: N)
        let a = Held { Attention.Activations(attention, batch: B, &$0) }
        let scratch = Held { Scratch(&$0, columns: 0, activation: 3 * C * B * N, probs: N * N, rows: 0) }
        let p = buffer(UNetGradientCheck.randomParameters(layout, seed: 51))
        let x = UNetGradientCheck.normals(C * B * N, seed: 52), w = UNetGradientCheck.normals(C * B * N, seed: 53)
        let g1 = try! Buffer<Float>(count: layout.count), g2 = try! Buffer<Float>(count: layout.count)
        attention.forward(a.views, x, testPass(p.pointer, g1.pointer, batch: B, scratch: scratch))
        var separate = [Float](repeating: 0, count: C * B * N)
        attention.backward(dinp: &separate, dout: w, inp: x, a.views, testPass(p.pointer, g1.pointer, batch: B, scratch: scratch))
        var inPlace = w
        inPlace.withUnsafeMutableBufferPointer { d in
            attention.backward(dinp: d.baseAddress!, dout: d.baseAddress!, inp: x, a.views,
                               testPass(p.pointer, g2.pointer, batch: B, scratch: scratch))
        }
        assertClose(inPlace, separate, abs: 1e-6, "in-place dx")
        assertClose(g2.array, g1.array, abs: 1e-6, "parameter gradients")
    }

    func testDownsampleGradients() {
        let (C, B, H, W) = (3, 2, 4, 6)
        var layout = ParameterLayout()
        let down = Downsample(&layout, "down", channels: C, height: H, width: W)
        let a = Held { Downsample.Activations(down, batch: B, &$0) }
        let scratch = Held { Scratch(&$0, columns: down.columnsCount(batch: B), activation: 0, probs: 0, rows: 0) }
        let unused = try! Buffer<Float>(count: layout.count)
        UNetGradientCheck.checkLayer("downsample", layout: layout, inputCount: C * B * H * W, outputCount: C * B * H * W / 4,
                                 seed: 60) { out, inp, p in
            down.forward(a.views, inp, testPass(p, unused.pointer, batch: B, scratch: scratch))
            out.update(from: a.views.out, count: C * B * H * W / 4)
        } backward: { dinp, g, dout, inp, p in
            down.backward(dinp: dinp, dout: dout, inp: inp, a.views, testPass(p, g, batch: B, scratch: scratch), accumulate: true)
        }
    }

    func testUpsampleGradients() {
        let (C, B, H, W) = (3, 2, 2, 3)
        var layout = ParameterLayout()
        let upsample = Upsample(&layout, "up", channels: C, height: H, width: W)
        let a = Held { Upsample.Activations(upsample, batch: B, &$0) }
        let scratch = Held { Scratch(&$0, columns: upsample.columnsCount(batch: B), activation: C * B * 4 * H * W, probs: 0, rows: 0) }
        let unused = try! Buffer<Float>(count: layout.count)
        UNetGradientCheck.checkLayer("upsample", layout: layout, inputCount: C * B * H * W, outputCount: C * B * 4 * H * W,
                                 seed: 70) { out, inp, p in
            upsample.forward(a.views, inp, testPass(p, unused.pointer, batch: B, scratch: scratch))
            out.update(from: a.views.out, count: C * B * 4 * H * W)
        } backward: { dinp, g, dout, inp, p in
            upsample.backward(dinp: dinp, dout: dout, a.views, testPass(p, g, batch: B, scratch: scratch))
        }
    }

    /// The 1-D resampling of a signal UNet: 1×3 kernels, only the width halves or doubles.
    func testSignalResampleGradients() {
        let (C, B, W) = (3, 2, 10)
        var layout = ParameterLayout()
        let down = Downsample(&layout, "down", channels: C, height: 1, width: W, signal: true)
        XCTAssertEqual(down.outSize.height, 1)
        XCTAssertEqual(down.outSize.width, W / 2)
        XCTAssertEqual(down.conv.kernelHeight, 1)
        let a = Held { Downsample.Activations(down, batch: B, &$0) }
        let scratch = Held { Scratch(&$0, columns: down.columnsCount(batch: B), activation: 0, probs: 0, rows: 0) }
        let unused = try! Buffer<Float>(count: layout.count)
        UNetGradientCheck.checkLayer("signal downsample", layout: layout, inputCount: C * B * W, outputCount: C * B * W / 2,
                                     seed: 61) { out, inp, p in
            down.forward(a.views, inp, testPass(p, unused.pointer, batch: B, scratch: scratch))
            out.update(from: a.views.out, count: C * B * W / 2)
        } backward: { dinp, g, dout, inp, p in
            down.backward(dinp: dinp, dout: dout, inp: inp, a.views, testPass(p, g, batch: B, scratch: scratch), accumulate: true)
        }

        var upLayout = ParameterLayout()
        let up = Upsample(&upLayout, "up", channels: C, height: 1, width: W / 2, signal: true)
        XCTAssertEqual(up.outSize.height, 1)
        XCTAssertEqual(up.outSize.width, W)
        let ua = Held { Upsample.Activations(up, batch: B, &$0) }
        let uscratch = Held { Scratch(&$0, columns: up.columnsCount(batch: B), activation: C * B * W, probs: 0, rows: 0) }
        let uunused = try! Buffer<Float>(count: upLayout.count)
        UNetGradientCheck.checkLayer("signal upsample", layout: upLayout, inputCount: C * B * W / 2, outputCount: C * B * W,
                                     seed: 71) { out, inp, p in
            up.forward(ua.views, inp, testPass(p, uunused.pointer, batch: B, scratch: uscratch))
            out.update(from: ua.views.out, count: C * B * W)
        } backward: { dinp, g, dout, inp, p in
            up.backward(dinp: dinp, dout: dout, ua.views, testPass(p, g, batch: B, scratch: uscratch))
        }
        // nearest ×2 along the width only
        let p = try! Buffer<Float>(count: upLayout.count)
        var one = ParameterLayout()
        let up1 = Upsample(&one, "up", channels: 1, height: 1, width: 3, signal: true)
        let a1 = Held { Upsample.Activations(up1, batch: 1, &$0) }
        let s1 = Held { Scratch(&$0, columns: up1.columnsCount(batch: 1), activation: 0, probs: 0, rows: 0) }
        up1.forward(a1.views, [1, 2, 3], testPass(p.pointer, uunused.pointer, batch: 1, scratch: s1))
        XCTAssertEqual(Array(UnsafeBufferPointer(start: a1.views.up, count: 6)), [1, 1, 2, 2, 3, 3])
    }

    func testUpsampleIsNearestNeighbour() {
        let (C, B, H, W) = (1, 1, 2, 2)
        var layout = ParameterLayout()
        let upsample = Upsample(&layout, "up", channels: C, height: H, width: W)
        let a = Held { Upsample.Activations(upsample, batch: B, &$0) }
        let scratch = Held { Scratch(&$0, columns: upsample.columnsCount(batch: B), activation: 0, probs: 0, rows: 0) }
        let p = try! Buffer<Float>(count: layout.count), unused = try! Buffer<Float>(count: layout.count)  // W = 0, b = 0
        upsample.forward(a.views, [1, 2, 3, 4], testPass(p.pointer, unused.pointer, batch: B, scratch: scratch))
        XCTAssertEqual(Array(UnsafeBufferPointer(start: a.views.up, count: 16)), [1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4])
    }

    /// Arena: the counting run and the allocating run take the same floats; views follow each
    /// other in the order taken (a 0-float view sits where the next begins); the block starts zeroed.
    func testArenaLaysOutViewsInOrder() {
        struct Views {
            let block: Buffer<Float>?
            let a, empty, b: UnsafeMutablePointer<Float>
            init(_ arena: inout Arena) { (block, a, empty, b) = (arena.block, arena.take(3), arena.take(0), arena.take(5)) }
        }
        XCTAssertEqual(Arena.floats { Views(&$0) }, 8)
        let v = try! Arena.allocate { Views(&$0) }
        XCTAssertEqual(v.block?.count, 8)
        XCTAssertEqual(v.a, v.block?.pointer)
        XCTAssertEqual(v.empty, v.a + 3)
        XCTAssertEqual(v.b, v.a + 3)
        XCTAssertEqual(Array(UnsafeBufferPointer(start: v.a, count: 8)), [Float](repeating: 0, count: 8))
    }

    /// ResBlock as a function of x, with SiLU(temb) fixed; with a channel change (1×1 skip)
    /// and without, and with dropout (the mask is held fixed by reusing one RNG state).
    func testResBlockGradients() {
        for (Ci, Co, dropout) in [(4, 6, Float(0)), (4, 4, Float(0)), (4, 4, Float(0.3))] {
            let (B, H, W, T, G) = (2, 3, 3, 5, 2)
            var layout = ParameterLayout()
            let block = ResBlock(&layout, "res", in: Ci, out: Co, timeDim: T, groups: G, dropout: dropout, height: H, width: W)
            let a = Held { ResBlock.Activations(block, batch: B, &$0) }
            let tembAct = buffer(UNetGradientCheck.normals(B * T, seed: 80))
            let scratch = Held { Scratch(&$0, columns: block.columnsCount(batch: B), activation: max(Ci, Co) * B * H * W,
                                         probs: 0, rows: B * Co) }
            let dtemb = try! Buffer<Float>(count: B * T), unused = try! Buffer<Float>(count: layout.count)
            let fixedRNG = Philox(seed: 81)
            UNetGradientCheck.checkLayer("res block \(Ci)→\(Co), dropout \(dropout)", layout: layout, inputCount: Ci * B * H * W,
                                     outputCount: Co * B * H * W, seed: 82) { out, inp, p in
                var rng = fixedRNG
                block.forward(a.views, inp, temb: tembAct.pointer, testPass(p, unused.pointer, batch: B, scratch: scratch), rng: &rng)
                out.update(from: a.views.out, count: Co * B * H * W)
            } backward: { dinp, g, dout, inp, p in
                block.backward(dinp: dinp, dtemb: dtemb.pointer, dout: dout, inp: inp, temb: tembAct.pointer, a.views,
                               testPass(p, g, batch: B, scratch: scratch), accumulate: false)
            }
            if dropout > 0 {
                let mask = Array(UnsafeBufferPointer(start: a.views.mask, count: Co * B * H * W))
                let dropped = mask.filter { $0 == 0 }.count
                XCTAssert(dropped > 0 && dropped < mask.count, "dropout zeroes some but not all of \(mask.count) values")
            }
        }
    }
}
