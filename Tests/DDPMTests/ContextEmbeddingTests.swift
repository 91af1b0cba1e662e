// The context of a sequence condition (Layers/ContextEmbedding.swift): the token and
// position embeddings and the learned null context, against their definition and by
// finite differences, and the masked mean (pool) with its backward.
import XCTest
@testable import DDPM

final class ContextEmbeddingTests: XCTestCase {
    let (B, L, D, V) = (4, 3, 2, 5)
    // Row 0 full, row 1 length 2, row 2 length 0 (null), row 3 dropped by the null mask.
    let ids: [Int32] = [1, 4, 0, 2, 2, 0, 3, 3, 3, 4, 1, 0]
    let lengths: [Int32] = [3, 2, 0, 2]
    let mask: [UInt8] = [0, 0, 0, 1]

    /// [c̃ (B, L, D); pooled (B, D)] of the token embedding with parameters p.
    func run(_ e: ContextEmbedding, _ p: UnsafePointer<Float>, resolved: inout [Int32], isNull: inout [Float]) -> [Float] {
        var out = [Float](repeating: .nan, count: B * L * D), pooled = [Float](repeating: .nan, count: B * D)
        ids.withUnsafeBufferPointer { t in
            lengths.withUnsafeBufferPointer { l in
                mask.withUnsafeBufferPointer { m in
                    var cond = ConditionBatch(null: m.baseAddress!)
                    (cond.tokens, cond.lengths, cond.maxLength, cond.contextDim) = (t.baseAddress!, l.baseAddress!, L, D)
                    e.forward(&out, lengths: &resolved, isNull: &isNull, cond, p, batch: B)
                }
            }
        }
        e.pool(&pooled, out, lengths: resolved, batch: B)
        return out + pooled
    }

    func testTokenEmbeddingForwardAndGradients() throws {
        var layout = ParameterLayout()
        let e = ContextEmbedding(&layout, "ctx", dim: D, maxLength: L, vocabulary: V)
        let params = buffer(uniforms(layout.count, seed: 1))
        let p = params.pointer
        var resolved = [Int32](repeating: 0, count: B), isNull = [Float](repeating: 0, count: B)
        let y = run(e, p, resolved: &resolved, isNull: &isNull)
        XCTAssertEqual(resolved, [3, 2, 1, 1])
        XCTAssertEqual(isNull, [0, 0, 1, 1])
        // Against the definition: c̃_b[i] = E_tok[id] + E_pos[i] inside the length, n for null rows, 0 elsewhere.
        for b in 0..<B {
            for i in 0..<L {
                for k in 0..<D {
                    let got = y[(b * L + i) * D + k]
                    let want: Float = isNull[b] != 0 ? (i == 0 ? p[e.null + k] : 0)
                        : i < Int(lengths[b]) ? p[e.tokens + Int(ids[b * L + i]) * D + k] + p[e.positions + i * D + k] : 0
                    XCTAssertEqual(got, want, accuracy: 1e-6, "c̃[\(b), \(i), \(k)]")
                }
            }
        }
        // Gradients of L = Σ w ⊙ [c̃; pooled]: pool's backward folds dpooled into dc̃.
        let w = uniforms(B * L * D + B * D, seed: 2)
        var dcontext = Array(w[0..<B * L * D])
        Array(w[(B * L * D)...]).withUnsafeBufferPointer { dp in
            e.poolBackward(&dcontext, dpooled: dp.baseAddress!, lengths: resolved, batch: B)
        }
        var grads = [Float](repeating: 0, count: layout.count)
        e.backward(&grads, dout: dcontext, lengths: resolved, isNull: isNull, tokens: ids, batch: B)
        XCTAssertTrue(grads[e.tokens..<e.tokens + D].contains { $0 != 0 }, "token 0 (used) has a gradient")
        let loss = { () -> Double in
            var r = [Int32](repeating: 0, count: self.B), n = [Float](repeating: 0, count: self.B)
            return weightedSum(self.run(e, p, resolved: &r, isNull: &n), w)
        }
        checkGradient("ContextEmbedding dn, dE_tok, dE_pos", values: p, analytic: grads, indices: Array(0..<layout.count), loss: loss)
    }

    /// Vectors as the context: copied inside the length, null context for null rows, and the
    /// pool's backward against finite differences on the context itself.
    func testVectorContextAndPoolGradient() {
        var layout = ParameterLayout()
        let e = ContextEmbedding(&layout, "ctx", dim: D, maxLength: L)
        XCTAssertEqual(layout.entries.map(\.name), ["ctx.null"])
        let params = buffer(uniforms(layout.count, seed: 3))
        let context = buffer(uniforms(B * L * D, seed: 4))
        let w = uniforms(B * D, seed: 5)
        func pooled() -> [Float] {
            var out = [Float](repeating: 0, count: B * L * D), r = [Int32](repeating: 0, count: B)
            var n = [Float](repeating: 0, count: B), y = [Float](repeating: 0, count: B * D)
            lengths.withUnsafeBufferPointer { l in
                var cond = ConditionBatch()
                (cond.context, cond.lengths, cond.maxLength, cond.contextDim) = (UnsafePointer(context.pointer), l.baseAddress!, L, D)
                e.forward(&out, lengths: &r, isNull: &n, cond, params.pointer, batch: B)
            }
            e.pool(&y, out, lengths: r, batch: B)
            return y
        }
        let y = pooled()
        // Row 1: the mean of its first two vectors; row 2 (length 0): the null vector.
        for k in 0..<D {
            XCTAssertEqual(y[1 * D + k], (context.pointer[(1 * L) * D + k] + context.pointer[(1 * L + 1) * D + k]) / 2, accuracy: 1e-6)
            XCTAssertEqual(y[2 * D + k], params.pointer[e.null + k])
        }
        var dcontext = [Float](repeating: 0, count: B * L * D)
        let resolved: [Int32] = [3, 2, 1, 2]
        e.poolBackward(&dcontext, dpooled: w, lengths: resolved, batch: B)
        dcontext.replaceSubrange((2 * L * D)..<(3 * L * D), with: [Float](repeating: 0, count: L * D))  // the null row reads no context
        checkGradient("pool dcontext", values: context.pointer, analytic: dcontext, indices: Array(0..<B * L * D)) {
            weightedSum(pooled(), w)
        }
    }
}
