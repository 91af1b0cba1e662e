// The cross-attention layer (Layers/CrossAttention.swift): finite-difference gradients of
// its parameters, the image and the context together, masking by length (positions past a
// row's length neither change the output nor get a gradient), and the zero-initialised
// output projection (a fresh layer is the identity); the learned query positions (their
// finite-difference gradient, and that they let pixels of one colour attend differently).
import XCTest
@testable import DDPM

final class CrossAttentionTests: XCTestCase {
    let (C, G, B, Dc, L) = (4, 2, 3, 3, 4)
    let lengths: [Int32] = [4, 1, 2]

    func make(heads: Int, pixels N: Int, maxLength: Int? = nil, positions: Bool = false) -> (CrossAttention, ParameterLayout) {
        var layout = ParameterLayout()
        let layer = CrossAttention(&layout, "xattn", channels: C, heads: heads, groups: G, pixels: N, contextDim: Dc,
                                   maxLength: maxLength ?? L, queryPositions: positions)
        return (layer, layout)
    }

    func testCrossAttentionGradients() {
        checkGradients(configs: [(1, 4), (2, 6)], maxLength: L, lengths: lengths)
    }

    /// Contexts of 9 and 10 positions: the softmax rows run through its 8-lane body and its tail.
    func testCrossAttentionGradientsOverLongContexts() {
        checkGradients(configs: [(2, 4)], maxLength: 10, lengths: [10, 1, 9])
    }

    /// P (C, N) added to the queries' input: its gradient with the others'.
    func testCrossAttentionGradientsWithQueryPositions() {
        checkGradients(configs: [(1, 4), (2, 6)], maxLength: L, lengths: lengths, positions: true)
    }

    func checkGradients(configs: [(heads: Int, pixels: Int)], maxLength L: Int, lengths: [Int32], positions: Bool = false) {
        for (heads, N) in configs {
            let (layer, layout) = make(heads: heads, pixels: N, maxLength: L, positions: positions)
            XCTAssertEqual(layer.positions >= 0, positions)
            let a = Held { CrossAttention.Activations(layer, batch: B, &$0) }
            let s = Held { CrossAttention.Scratch(layer, batch: B, &$0) }
            let scratch = Held { Scratch(&$0, columns: 0, activation: 0, probs: 0, rows: 0) }
            let unused = try! Buffer<Float>(count: layout.count)
            let (xCount, cCount) = (C * B * N, B * L * Dc)
            // The layer's input is [x (C, B, N); context (B, Lmax, Dc)], so that one check covers both gradients.
            UNetGradientCheck.checkLayer("cross-attention, \(heads) heads, N = \(N)\(positions ? ", positions" : "")", layout: layout, inputCount: xCount + cCount,
                                         outputCount: xCount, seed: 60, inputSamples: 40) { out, inp, p in
                lengths.withUnsafeBufferPointer { l in
                    layer.forward(a.views, inp, context: .init(values: inp + xCount, lengths: l.baseAddress!),
                                  testPass(p, unused.pointer, batch: B, scratch: scratch))
                }
                out.update(from: a.views.out, count: xCount)
            } backward: { dinp, g, dout, inp, p in
                (dinp + xCount).update(repeating: 0, count: cCount)
                lengths.withUnsafeBufferPointer { l in
                    layer.backward(dinp: dinp, dout: dout, inp: inp, context: .init(values: inp + xCount, lengths: l.baseAddress!),
                                   dcontext: dinp + xCount, a.views, s.views, testPass(p, g, batch: B, scratch: scratch))
                }
            }
        }
    }

    /// Context positions at j ≥ ℓ_b: changing them changes nothing, and their gradient is zero.
    func testMaskingByLength() {
        let N = 4
        let (layer, layout) = make(heads: 2, pixels: N)
        let params = UNetGradientCheck.randomParameters(layout, seed: 7)  // proj no longer zero
        let a = Held { CrossAttention.Activations(layer, batch: B, &$0) }
        let s = Held { CrossAttention.Scratch(layer, batch: B, &$0) }
        let scratch = Held { Scratch(&$0, columns: 0, activation: 0, probs: 0, rows: 0) }
        let grads = try! Buffer<Float>(count: layout.count, zero: 0)
        let x = UNetGradientCheck.normals(C * B * N, seed: 8)
        let context = UNetGradientCheck.normals(B * L * Dc, seed: 9)
        func run(_ c: [Float]) -> [Float] {
            lengths.withUnsafeBufferPointer { l in
                layer.forward(a.views, x, context: .init(values: c, lengths: l.baseAddress!),
                              testPass(params, grads.pointer, batch: B, scratch: scratch))
            }
            return Array(UnsafeBufferPointer(start: a.views.out, count: C * B * N))
        }
        var padded = context
        for b in 0..<B {
            for j in Int(lengths[b])..<L { for i in 0..<Dc { padded[(b * L + j) * Dc + i] = 100 } }
        }
        let before = run(context)
        XCTAssertEqual(run(padded), before, "positions past the length are not read")
        XCTAssertNotEqual(before, x, "the layer does something")
        var dcontext = [Float](repeating: 0, count: B * L * Dc), dx = [Float](repeating: 0, count: C * B * N)
        let w = UNetGradientCheck.normals(C * B * N, seed: 10)
        lengths.withUnsafeBufferPointer { l in
            layer.backward(dinp: &dx, dout: w, inp: x, context: .init(values: padded, lengths: l.baseAddress!), dcontext: &dcontext,
                           a.views, s.views, testPass(params, grads.pointer, batch: B, scratch: scratch))
        }
        for b in 0..<B {
            let row = dcontext[(b * L * Dc)..<((b + 1) * L * Dc)]
            XCTAssertTrue(row.dropFirst(Int(lengths[b]) * Dc).allSatisfy { $0 == 0 }, "row \(b): zero gradient past the length")
            XCTAssertTrue(row.prefix(Int(lengths[b]) * Dc).contains { $0 != 0 }, "row \(b): gradient inside the length")
        }
    }

    /// A fresh layer (W_o = 0, b_o = 0) is the identity on x.
    func testFreshLayerIsTheIdentity() throws {
        let N = 4
        let (layer, layout) = make(heads: 1, pixels: N)
        var rng = Philox(seed: 1)
        let params = try ParameterSet(layout: layout, rng: &rng)
        let a = Held { CrossAttention.Activations(layer, batch: B, &$0) }
        let scratch = Held { Scratch(&$0, columns: 0, activation: 0, probs: 0, rows: 0) }
        let x = UNetGradientCheck.normals(C * B * N, seed: 2)
        let context = UNetGradientCheck.normals(B * L * Dc, seed: 3)
        lengths.withUnsafeBufferPointer { l in
            layer.forward(a.views, x, context: .init(values: context, lengths: l.baseAddress!),
                          testPass(params.values.pointer, params.grads.pointer, batch: B, scratch: scratch))
        }
        XCTAssertEqual(Array(UnsafeBufferPointer(start: a.views.out, count: C * B * N)), x)
    }

    /// An image whose pixels are all alike: without positions every pixel's attention is the
    /// same (nothing tells them apart), with them the pixels attend differently; and a layer
    /// without positions has the parameters it always had (P comes last, only when on).
    func testQueryPositionsTellPixelsApart() {
        let N = 4
        func attention(positions: Bool) -> [[Float]] {
            let (layer, layout) = make(heads: 1, pixels: N, positions: positions)
            let params = UNetGradientCheck.randomParameters(layout, seed: 11)
            let a = Held { CrossAttention.Activations(layer, batch: B, &$0) }
            let scratch = Held { Scratch(&$0, columns: 0, activation: 0, probs: 0, rows: 0) }
            let unused = try! Buffer<Float>(count: layout.count)
            var x = [Float](repeating: 0, count: C * B * N)  // x[c, b, i] depends on c and b only
            for c in 0..<C { for b in 0..<B { for i in 0..<N { x[(c * B + b) * N + i] = Float(c + 1) * (b == 1 ? -1 : 0.5) } } }
            let context = UNetGradientCheck.normals(B * L * Dc, seed: 12)
            lengths.withUnsafeBufferPointer { l in
                layer.forward(a.views, x, context: .init(values: context, lengths: l.baseAddress!),
                              testPass(params, unused.pointer, batch: B, scratch: scratch))
            }
            let l0 = Int(lengths[0])  // image 0's rows of P (N, ℓ_0)
            return (0..<N).map { i in Array(UnsafeBufferPointer(start: a.views.probs + i * l0, count: l0)) }
        }
        let plain = attention(positions: false), placed = attention(positions: true)
        XCTAssertTrue(plain.allSatisfy { $0 == plain[0] }, "without positions alike pixels attend alike")
        XCTAssertFalse(placed.allSatisfy { $0 == placed[0] }, "with positions they do not")
        let (without, _) = make(heads: 1, pixels: N), (with, withLayout) = make(heads: 1, pixels: N, positions: true)
        XCTAssertEqual(without.positions, -1)
        XCTAssertEqual(with.positions, withLayout.count - C * N, "P is the last parameter")
    }
}
