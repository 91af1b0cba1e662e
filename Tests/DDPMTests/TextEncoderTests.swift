// The text encoder's layers (Layers/SequenceAttention.swift, TransformerBlock.swift,
// TextEncoder.swift): the masked self-attention against its definition in Double, finite-
// difference gradients of every layer (parameters and input, rows of every length, null rows),
// masking by length (what lies past a row's length changes nothing and gets no gradient),
// and a fresh encoder (zero-initialised residual branches) as a LayerNorm of its input.
import XCTest
@testable import DDPM

final class TextEncoderTests: XCTestCase {
    let (B, L, D) = (3, 4, 6)
    let lengths: [Int32] = [4, 1, 2]

    /// out with positions i ≥ ℓ_b set to zero: what the encoder's readers see of a layer's output.
    func masked(_ x: UnsafePointer<Float>, lengths: [Int32]) -> [Float] {
        var y = Array(UnsafeBufferPointer(start: x, count: B * L * D))
        for b in 0..<B { for i in Int(lengths[b])..<L { for k in 0..<D { y[(b * L + i) * D + k] = 0 } } }
        return y
    }

    /// softmax_{j<ℓ}(q_i·k_j/√d) v_j per row and head, then W_o·a + b_o, in Double, at i < ℓ_b.
    func testSequenceAttentionAgainstDefinition() {
        for heads in [1, 2, 3] {
            var layout = ParameterLayout()
            let layer = SequenceAttention(&layout, "attn", dim: D, heads: heads, maxLength: L)
            let p = UNetGradientCheck.randomParameters(layout, seed: 40)  // W_o no longer zero
            let x = UNetGradientCheck.normals(B * L * D, seed: 41)
            let a = Held { SequenceAttention.Activations(layer, batch: B, &$0) }
            var out = [Float](repeating: .nan, count: B * L * D)
            lengths.withUnsafeBufferPointer { layer.forward(&out, a.views, x, lengths: $0.baseAddress!, p, batch: B, accumulate: false) }
            func linear(_ l: Linear, _ v: [Double], _ o: Int) -> Double {
                Double(p[l.bias + o]) + (0..<l.inFeatures).reduce(0) { $0 + Double(p[l.weight + o * l.inFeatures + $1]) * v[$1] }
            }
            let d = D / heads
            for b in 0..<B {
                let l = Int(lengths[b])
                let qkv = (0..<l).map { i in (0..<3 * D).map { linear(layer.qkv, (0..<D).map { Double(x[(b * L + i) * D + $0]) }, $0) } }
                for i in 0..<l {
                    var att = [Double](repeating: 0, count: D)
                    for h in 0..<heads {
                        let s = (0..<l).map { j in (0..<d).reduce(0.0) { $0 + qkv[i][h * d + $1] * qkv[j][D + h * d + $1] } / Double(d).squareRoot() }
                        let m = s.max()!, e = s.map { Foundation.exp($0 - m) }, z = e.reduce(0, +)
                        for j in 0..<l { for k in 0..<d { att[h * d + k] += e[j] / z * qkv[j][2 * D + h * d + k] } }
                    }
                    for o in 0..<D {
                        XCTAssertEqual(Double(out[(b * L + i) * D + o]), linear(layer.proj, att, o), accuracy: 1e-5,
                                       "\(heads) heads: out[\(b), \(i), \(o)]")
                    }
                }
            }
        }
    }

    func testSequenceAttentionGradients() {
        for heads in [1, 2] {
            var layout = ParameterLayout()
            let layer = SequenceAttention(&layout, "attn", dim: D, heads: heads, maxLength: L)
            let a = Held { SequenceAttention.Activations(layer, batch: B, &$0) }
            let s = Held { SequenceAttention.Scratch(dim: D, maxLength: L, batch: B, &$0) }
            let n = B * L * D
            UNetGradientCheck.checkLayer("sequence attention, \(heads) heads", layout: layout, inputCount: n, outputCount: n,
                                         seed: 42, inputSamples: 40) { out, inp, p in
                lengths.withUnsafeBufferPointer { layer.forward(out, a.views, inp, lengths: $0.baseAddress!, p, batch: B, accumulate: false) }
                out.update(from: masked(out, lengths: lengths), count: n)
            } backward: { dinp, g, dout, inp, p in
                let dy = masked(dout, lengths: lengths)
                lengths.withUnsafeBufferPointer {
                    layer.backward(dinp: dinp, dout: dy, inp: inp, lengths: $0.baseAddress!, a.views, s.views, g, p, batch: B)
                }
            }
        }
    }

    func testTransformerBlockGradients() {
        var layout = ParameterLayout()
        let block = TransformerBlock(&layout, "block", dim: D, heads: 2, maxLength: L)
        let a = Held { TransformerBlock.Activations(block, batch: B, &$0) }
        let s = Held { TransformerBlock.Scratch(dim: D, maxLength: L, batch: B, &$0) }
        let n = B * L * D
        UNetGradientCheck.checkLayer("transformer block", layout: layout, inputCount: n, outputCount: n, seed: 43,
                                     inputSamples: 40) { out, inp, p in
            lengths.withUnsafeBufferPointer { block.forward(a.views, inp, lengths: $0.baseAddress!, p, batch: B) }
            out.update(from: masked(a.views.out, lengths: lengths), count: n)
        } backward: { dinp, g, dout, inp, p in
            dinp.update(from: masked(dout, lengths: lengths), count: n)  // in place: ∂L/∂out in, ∂L/∂x out
            lengths.withUnsafeBufferPointer { block.backward(dinp, inp: inp, lengths: $0.baseAddress!, a.views, s.views, g, p, batch: B) }
        }
    }

    /// Two blocks and the final LayerNorm; row 1 is null (its context is its input as it stands).
    func testTextEncoderGradients() {
        var layout = ParameterLayout()
        let encoder = TextEncoder(&layout, "encoder", dim: D, maxLength: L, shape: .init(layers: 2, heads: 3))
        let a = Held { TextEncoder.Activations(encoder, batch: B, &$0) }
        let w = Held { TextEncoder.Workspace(encoder, batch: B, &$0) }
        let isNull: [Float] = [0, 1, 0]
        let n = B * L * D
        UNetGradientCheck.checkLayer("text encoder", layout: layout, inputCount: n, outputCount: n, seed: 44,
                                     inputSamples: 40) { out, inp, p in
            a.views.embedded.update(from: inp, count: n)
            lengths.withUnsafeBufferPointer { encoder.forward(out, a.views, lengths: $0.baseAddress!, isNull: isNull, p, batch: B) }
        } backward: { dinp, g, dout, inp, p in
            let dx = lengths.withUnsafeBufferPointer {
                encoder.backward(dout: dout, a.views, w.views, lengths: $0.baseAddress!, isNull: isNull, g, p, batch: B)
            }
            dinp.update(from: dx, count: n)
        }
    }

    /// Past a row's length: other values there change nothing at i < ℓ_b, the output there is
    /// zero, and the input there gets no gradient; a null row's context is its input, unchanged.
    func testEncoderMasksByLength() {
        var layout = ParameterLayout()
        let encoder = TextEncoder(&layout, "encoder", dim: D, maxLength: L, shape: .init(layers: 2, heads: 2))
        let p = UNetGradientCheck.randomParameters(layout, seed: 45)
        let a = Held { TextEncoder.Activations(encoder, batch: B, &$0) }
        let w = Held { TextEncoder.Workspace(encoder, batch: B, &$0) }
        let isNull: [Float] = [0, 0, 1]
        let x = UNetGradientCheck.normals(B * L * D, seed: 46)
        func run(_ input: [Float]) -> [Float] {
            var out = [Float](repeating: .nan, count: B * L * D)
            a.views.embedded.update(from: input, count: input.count)
            lengths.withUnsafeBufferPointer { encoder.forward(&out, a.views, lengths: $0.baseAddress!, isNull: isNull, p, batch: B) }
            return out
        }
        var padded = x
        for b in 0..<B { for i in Int(lengths[b])..<L { for k in 0..<D { padded[(b * L + i) * D + k] = 50 } } }
        let before = run(x)
        XCTAssertEqual(run(padded).prefix(2 * L * D), before.prefix(2 * L * D), "positions past the length are not read")
        XCTAssertEqual(Array(before[(2 * L * D)...]), Array(x[(2 * L * D)...]), "a null row's context is its input")
        for b in 0..<2 {
            XCTAssertTrue(before[((b * L + Int(lengths[b])) * D)..<((b + 1) * L * D)].allSatisfy { $0 == 0 }, "row \(b): zero past ℓ")
        }
        var g = [Float](repeating: 0, count: layout.count)
        let dout = UNetGradientCheck.normals(B * L * D, seed: 47)
        let dx = Array(UnsafeBufferPointer(start: lengths.withUnsafeBufferPointer {
            encoder.backward(dout: dout, a.views, w.views, lengths: $0.baseAddress!, isNull: isNull, &g, p, batch: B)
        }, count: B * L * D))
        for b in 0..<2 {
            let row = dx[(b * L * D)..<((b + 1) * L * D)], l = Int(lengths[b])
            XCTAssertTrue(row.dropFirst(l * D).allSatisfy { $0 == 0 }, "row \(b): no gradient past ℓ")
            XCTAssertTrue(row.prefix(l * D).contains { $0 != 0 }, "row \(b): a gradient inside ℓ")
        }
        XCTAssertEqual(Array(dx[(2 * L * D)...]), Array(dout[(2 * L * D)...]), "a null row passes its gradient on")
    }

    /// At initialisation (W_o, b_o, W_2, b_2 = 0, γ = 1, β = 0) every block is the identity, so
    /// c̃ is the LayerNorm of x_0 (computed here in Double) at i < ℓ_b.
    func testFreshEncoderIsALayerNormOfItsInput() throws {
        var layout = ParameterLayout()
        let encoder = TextEncoder(&layout, "encoder", dim: D, maxLength: L, shape: .init(layers: 3, heads: 2))
        var rng = Philox(seed: 3)
        let params = try ParameterSet(layout: layout, rng: &rng)
        let a = Held { TextEncoder.Activations(encoder, batch: B, &$0) }
        let x = UNetGradientCheck.normals(B * L * D, seed: 48)
        a.views.embedded.update(from: x, count: x.count)
        var out = [Float](repeating: .nan, count: B * L * D)
        lengths.withUnsafeBufferPointer {
            encoder.forward(&out, a.views, lengths: $0.baseAddress!, isNull: [0, 0, 0], params.values.pointer, batch: B)
        }
        for b in 0..<B {
            for i in 0..<L {
                let row = (0..<D).map { Double(x[(b * L + i) * D + $0]) }
                let mean = row.reduce(0, +) / Double(D)
                let variance = row.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(D)
                for k in 0..<D {
                    let want = i < Int(lengths[b]) ? (row[k] - mean) / (variance + 1e-5).squareRoot() : 0
                    XCTAssertEqual(Double(out[(b * L + i) * D + k]), want, accuracy: 1e-5, "c̃[\(b), \(i), \(k)]")
                }
            }
        }
    }

    /// The shape is checked: heads divide dim, no heads without layers; checkpoints name the
    /// encoder's tensors after the position table and before the pooled projection.
    func testShapeValidationAndParameterNames() throws {
        assertInvalidArgument("heads not dividing dim") {
            try Conditioning.tokens(vocabulary: 5, maxLength: 3, dim: 6, encoder: .init(layers: 1, heads: 4)).validate()
        }
        assertInvalidArgument("heads 0 with layers") {
            try Conditioning.tokens(vocabulary: 5, maxLength: 3, dim: 6, encoder: .init(layers: 1, heads: 0)).validate()
        }
        assertInvalidArgument("heads without layers") {
            try Conditioning.tokens(vocabulary: 5, maxLength: 3, dim: 6, encoder: .init(layers: 0, heads: 2)).validate()
        }
        var layout = ParameterLayout()
        _ = ConditionEncoder(&layout, .tokens(vocabulary: 5, maxLength: 3, dim: 6, encoder: .init(layers: 1, heads: 2)), width: 4)
        XCTAssertEqual(layout.entries.map { "\($0.name) \($0.shape)" }, [
            "context.null [6]", "context.tokens [5, 6]", "context.positions [3, 6]",
            "context.encoder.0.norm1.weight [6]", "context.encoder.0.norm1.bias [6]",
            "context.encoder.0.attn.qkv.weight [18, 6]", "context.encoder.0.attn.qkv.bias [18]",
            "context.encoder.0.attn.proj.weight [6, 6]", "context.encoder.0.attn.proj.bias [6]",
            "context.encoder.0.norm2.weight [6]", "context.encoder.0.norm2.bias [6]",
            "context.encoder.0.mlp.fc1.weight [24, 6]", "context.encoder.0.mlp.fc1.bias [24]",
            "context.encoder.0.mlp.fc2.weight [6, 24]", "context.encoder.0.mlp.fc2.bias [6]",
            "context.encoder.norm.weight [6]", "context.encoder.norm.bias [6]",
            "context_pool.weight [4, 6]", "context_pool.bias [4]",
        ])
    }
}
