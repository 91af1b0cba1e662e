// The conditioning front end that both networks hold (Networks/ConditionEncoder.swift): its
// parameter names and order (checkpoints name them), the same front end in the MLP and the
// UNet, its forward against the definition of each kind in Double, and its backward by
// finite differences, through the time embedding and through a reader of the context.
import XCTest
@testable import DDPM

final class ConditionEncoderTests: XCTestCase {
    let (B, W, K, Dc, L, Dx, V) = (4, 3, 3, 5, 3, 2, 6)
    var kinds: [Conditioning] {
        [.classes(K), .vector(Dc), .sequence(dim: Dx, maxLength: L), .tokens(vocabulary: V, maxLength: L, dim: Dx)]
    }
    // Row 0 full, row 1 shorter, row 2 length 0 (the null context), row 3 flagged null.
    let labels: [Int32] = [2, 0, 3, 1]  // 3 = K, the null label
    let null: [UInt8] = [0, 0, 0, 1]
    let lengths: [Int32] = [3, 2, 0, 2]
    let ids: [Int32] = [1, 5, 2, 4, 3, 0, 0, 0, 0, 2, 2, 0]
    lazy var vectors = uniforms(B * Dc, seed: 21)
    lazy var context = uniforms(B * L * Dx, seed: 22)
    var blocks: [Buffer<Float>?] = []  // the arena blocks of `make`'s views

    /// The names and shapes a checkpoint stores for each kind, written out by hand (formats 1 and 2).
    func expectedEntries(_ k: Conditioning, width W: Int) -> [String] {
        switch k {
        case .none: return []
        case .classes: return ["class_embedding.weight [\(K + 1), \(W)]"]
        case .vector: return ["cond_vector.null [\(Dc)]", "cond_vector.proj.weight [\(W), \(Dc)]", "cond_vector.proj.bias [\(W)]"]
        case .sequence: return ["context.null [\(Dx)]", "context_pool.weight [\(W), \(Dx)]", "context_pool.bias [\(W)]"]
        case .tokens:
            return ["context.null [\(Dx)]", "context.tokens [\(V), \(Dx)]", "context.positions [\(L), \(Dx)]",
                    "context_pool.weight [\(W), \(Dx)]", "context_pool.bias [\(W)]"]
        }
    }

    func describe(_ entries: some Sequence<ParameterLayout.Entry>) -> [String] { entries.map { "\($0.name) \($0.shape)" } }

    /// Each network declares its time embedding, then exactly the encoder's entries, named and
    /// shaped as checkpoints have them.
    func testBothNetworksHoldTheSameFrontEndInCheckpointOrder() throws {
        let unet = UNetConfig(channels: 1, height: 4, width: 4, baseChannels: 4, channelMult: [1], resBlocks: 1,
                              attentionLevels: [], groups: 2, timeEmbedDim: 4)
        for k in kinds + [.none] {
            var layout = ParameterLayout()
            _ = ConditionEncoder(&layout, k, width: W)
            XCTAssertEqual(describe(layout.entries), expectedEntries(k, width: W), "\(k)")
            for (net, width) in [(NetworkConfig.mlp(.init(dataDim: 2, hidden: 16, depth: 1, timeEmbedDim: 4)), 16),
                                 (.unet(unet), unet.timeDim)] {
                var rng = Philox(seed: 1)
                let entries = try net.makeNetwork(conditioning: k, timesteps: 10, rng: &rng).parameters.layout.entries
                let front = entries.drop { $0.name.hasPrefix("time.") }.prefix(expectedEntries(k, width: width).count)
                XCTAssertEqual(entries.prefix(4).map(\.name), ["time.fc1.weight", "time.fc1.bias", "time.fc2.weight", "time.fc2.bias"])
                XCTAssertEqual(describe(front), expectedEntries(k, width: width), "\(k) in \(net)")
            }
        }
    }

    /// Runs `body` with this test's condition batch for kind k.
    func withBatch<R>(_ k: Conditioning, _ body: (ConditionBatch) -> R) -> R {
        labels.withUnsafeBufferPointer { lb in vectors.withUnsafeBufferPointer { vb in context.withUnsafeBufferPointer { cb in
            ids.withUnsafeBufferPointer { tb in lengths.withUnsafeBufferPointer { lnb in null.withUnsafeBufferPointer { nb in
                var c = ConditionBatch(null: nb.baseAddress!)
                switch k {
                case .classes: c.labels = lb.baseAddress!
                case .vector: (c.vectors, c.vectorDim) = (vb.baseAddress!, Dc)
                case .sequence: (c.context, c.lengths, c.maxLength, c.contextDim) = (cb.baseAddress!, lnb.baseAddress!, L, Dx)
                case .tokens: (c.tokens, c.lengths, c.maxLength, c.contextDim) = (tb.baseAddress!, lnb.baseAddress!, L, Dx)
                case .none: break
                }
                return body(c)
            }}}
        }}}
    }

    /// The encoder of kind k, its parameters (uniform, no zeros) and its views.
    func make(_ k: Conditioning) throws -> (ConditionEncoder, Buffer<Float>, ConditionEncoder.Activations, ConditionEncoder.Workspace) {
        var layout = ParameterLayout()
        let e = ConditionEncoder(&layout, k, width: W)
        let params = buffer(uniforms(layout.count, seed: 23))  // (P,), the encoder's parameters only
        // The views do not hold their block (the network's Activations and Workspace do): keep it here.
        let (aBlock, a) = try Arena.allocate { ($0.block, try ConditionEncoder.Activations(e, batch: B, &$0)) }
        let (wBlock, w) = try Arena.allocate { ($0.block, ConditionEncoder.Workspace(e, batch: B, &$0)) }
        blocks += [aBlock, wBlock]
        return (e, params, a, w)
    }

    /// (temb after the forward pass, c̃ (B, Lmax, Dx) or [], ℓ or []) from temb's start `base`.
    func run(_ e: ConditionEncoder, _ p: UnsafePointer<Float>, _ a: ConditionEncoder.Activations, base: [Float],
             training: Bool = true) -> ([Float], [Float], [Int32]) {
        var temb = base
        let ctx = withBatch(e.conditioning) { e.forward(accumulateInto: &temb, a, $0, p, batch: B, training: training) }
        guard let ctx else { return (temb, [], []) }
        XCTAssertEqual(ctx.values, UnsafePointer(a.context), "the context is the encoder's c̃")
        return (temb, Array(UnsafeBufferPointer(start: ctx.values, count: B * L * Dx)),
                Array(UnsafeBufferPointer(start: ctx.lengths, count: B)))
    }

    /// temb_b += the kind's embedding, computed from the parameters by its definition in Double.
    func testForwardAgainstDefinition() throws {
        let base = uniforms(B * W, seed: 24)
        for k in kinds {
            let (e, params, a, _) = try make(k)
            let p = params.pointer
            let (temb, ctx, ell) = run(e, p, a, base: base)
            func linear(_ weight: Int, _ bias: Int, _ x: [Double], _ o: Int) -> Double {
                Double(p[bias + o]) + x.indices.reduce(0) { $0 + Double(p[weight + o * x.count + $1]) * x[$1] }
            }
            for b in 0..<B {
                var want = [Double](repeating: 0, count: W)
                switch k {
                case .classes:
                    // (labels are read as given: the model resolves a dropped row into label K)
                    for o in 0..<W { want[o] = Double(p[e.classEmbedding!.table + Int(labels[b]) * W + o]) }
                case .vector:
                    let v = e.vectorEmbedding!
                    let c = (0..<Dc).map { null[b] != 0 ? Double(p[v.null + $0]) : Double(vectors[b * Dc + $0]) }
                    for o in 0..<W { want[o] = linear(v.proj.weight, v.proj.bias, c, o) }
                case .sequence, .tokens:
                    let ce = e.contextEmbedding!, isNull = null[b] != 0 || lengths[b] == 0
                    let l = isNull ? 1 : Int(lengths[b])
                    XCTAssertEqual(ell[b], Int32(l), "ℓ[\(b)]")
                    var mean = [Double](repeating: 0, count: Dx)
                    for i in 0..<l {
                        for d in 0..<Dx {
                            let x: Double = isNull ? Double(p[ce.null + d])
                                : k.vocabulary > 0 ? Double(p[ce.tokens + Int(ids[b * L + i]) * Dx + d]) + Double(p[ce.positions + i * Dx + d])
                                : Double(context[(b * L + i) * Dx + d])
                            XCTAssertEqual(Double(ctx[(b * L + i) * Dx + d]), x, accuracy: 1e-6, "c̃[\(b), \(i), \(d)] \(k)")
                            mean[d] += x / Double(l)
                        }
                    }
                    for o in 0..<W { want[o] = linear(e.pooledProj!.weight, e.pooledProj!.bias, mean, o) }
                case .none: break
                }
                for o in 0..<W {
                    XCTAssertEqual(Double(temb[b * W + o]), Double(base[b * W + o]) + want[o], accuracy: 1e-5, "temb[\(b), \(o)] \(k)")
                }
            }
            // Inference keeps no token ids but adds the same embedding.
            XCTAssertEqual(run(e, p, a, base: base, training: false).0, temb, "\(k): inference adds the same")
        }
    }

    /// L = Σ u ⊙ temb + Σ v ⊙ c̃ (v: the gradient a cross-attention would send back), against
    /// finite differences on every parameter; and with no reader of c̃ (dcontext nil), L = Σ u ⊙ temb.
    /// Also with a text encoder over the tokens (its forward has its own tests: TextEncoderTests).
    func testBackwardByFiniteDifferences() throws {
        let u = uniforms(B * W, seed: 25), v = uniforms(B * L * Dx, seed: 26), base = [Float](repeating: 0, count: B * W)
        let encoded = Conditioning.tokens(vocabulary: V, maxLength: L, dim: Dx, encoder: .init(layers: 2, heads: 2))
        for k in kinds + [encoded] {
            for contextIsRead in k.contextDim > 0 ? [true, false] : [false] {
                let (e, params, a, w) = try make(k)
                let p = params.pointer
                _ = run(e, p, a, base: base)
                var grads = [Float](repeating: 0, count: params.count)
                let dcontext = contextIsRead ? e.zeroedContextGradient(w, batch: B) : nil
                if let dcontext { for i in 0..<v.count { dcontext[i] += v[i] } }
                grads.withUnsafeMutableBufferPointer { g in
                    e.backward(dtemb: u, dcontext: dcontext, a, w, g.baseAddress!, p, batch: B)
                }
                XCTAssertTrue(grads.contains { $0 != 0 }, "\(k): some gradient")
                let loss = { () -> Double in
                    let (temb, ctx, _) = self.run(e, p, a, base: base)
                    return zip(temb, u).reduce(0) { $0 + Double($1.0) * Double($1.1) }
                        + (contextIsRead ? zip(ctx, v).reduce(0) { $0 + Double($1.0) * Double($1.1) } : 0)
                }
                checkGradient("ConditionEncoder \(k) (context read: \(contextIsRead))", values: p, analytic: grads,
                              indices: Array(0..<params.count), loss: loss)
            }
        }
    }
}
