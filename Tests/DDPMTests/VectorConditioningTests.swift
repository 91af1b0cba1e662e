// Conditioning on vectors (Conditioning.vector(Dc)): the projection layer with its learned
// null vector (finite-difference gradients), whole-network gradient checks of the MLP and
// the UNet with some rows null, guidance against the null vector, condition dropout,
// checkpoints, and refused inputs.
import XCTest
@testable import DDPM

final class VectorConditioningTests: XCTestCase {
    /// Σ_b over rows: row b null iff mask[b] != 0.
    let mask: [UInt8] = [0, 1, 0, 1, 0]

    // MARK: - The layer

    func testVectorEmbeddingGradients() throws {
        let (B, Dc, W) = (5, 4, 6)
        var layout = ParameterLayout()
        let emb = VectorEmbedding(&layout, "cond", dim: Dc, features: W)
        var rng = Philox(seed: 3)
        let params = try ParameterSet(layout: layout, rng: &rng)
        try params.setValues(uniforms(layout.count, seed: 4, in: -0.7...0.7))  // the null vector too (it starts at zero)
        let p = params.values.pointer
        let vectors = uniforms(B * Dc, seed: 5, in: -2...2)
        let w = uniforms(B * W, seed: 6)
        let base = uniforms(B * W, seed: 7)
        var inp = [Float](repeating: 0, count: B * Dc), isNull = [Float](repeating: 0, count: B)
        var out = base
        vectors.withUnsafeBufferPointer { v in
            mask.withUnsafeBufferPointer { m in
                let cond = ConditionBatch(vectors: v.baseAddress!, vectorDim: Dc, null: m.baseAddress!)
                emb.forward(accumulateInto: &out, inp: &inp, isNull: &isNull, cond, p, batch: B)
            }
        }
        // Forward against the definition: c̃_b = c_b or n, out_b = base_b + W·c̃_b + b.
        var want: [Double] = []
        for b in 0..<B {
            let c = (0..<Dc).map { Double(mask[b] != 0 ? p[emb.null + $0] : vectors[b * Dc + $0]) }
            for o in 0..<W {
                var s = Double(base[b * W + o]) + Double(p[emb.proj.bias + o])
                for i in 0..<Dc { s += c[i] * Double(p[emb.proj.weight + o * Dc + i]) }
                want.append(s)
            }
        }
        assertClose(out, want, abs: 1e-5, "VectorEmbedding forward")
        XCTAssertEqual(isNull, mask.map { Float($0) })

        params.zeroGrads()
        var dinp = [Float](repeating: 0, count: B * Dc)
        emb.backward(params.grads.pointer, dout: w, inp: inp, dinp: &dinp, isNull: isNull, p, batch: B)
        let grads = params.gradsArray
        XCTAssertGreaterThan(grads[emb.null..<emb.null + Dc].map { abs($0) }.max()!, 1e-3, "the null vector gets a gradient")
        let loss = { () -> Double in
            var y = base, i2 = inp, n2 = isNull
            vectors.withUnsafeBufferPointer { v in
                self.mask.withUnsafeBufferPointer { m in
                    emb.forward(accumulateInto: &y, inp: &i2, isNull: &n2,
                                ConditionBatch(vectors: v.baseAddress!, vectorDim: Dc, null: m.baseAddress!), p, batch: B)
                }
            }
            return weightedSum(y, w)
        }
        checkGradient("VectorEmbedding dn, dW, db", values: p, analytic: grads, indices: Array(0..<layout.count), loss: loss)

        // No null row: the null vector gets nothing.
        params.zeroGrads()
        let none = [Float](repeating: 0, count: B)
        emb.backward(params.grads.pointer, dout: w, inp: inp, dinp: &dinp, isNull: none, p, batch: B)
        XCTAssertTrue(params.gradsArray[emb.null..<emb.null + Dc].allSatisfy { $0 == 0 })
    }

    // MARK: - Whole networks

    /// ∂(Σ w⊙out)/∂θ of a network conditioned on vectors (rows 1 and 3 null) against central differences.
    func checkNetwork(_ net: DenoisingNetwork, seed: UInt64, directional: Bool) throws {
        let Dc = net.conditioning.vectorDim
        let B = mask.count
        let layout = net.parameters.layout
        var params = UNetGradientCheck.randomParameters(layout, seed: seed)
        for e in layout.entries where e.name.hasSuffix("norm.weight") && net is ResidualMLP {
            for i in e.offset..<e.offset + e.count { params[i] += 1 }
        }
        try net.parameters.setValues(params)
        let x = UNetGradientCheck.normals(B * net.sampleSize, seed: seed &+ 1)
        let vectors = UNetGradientCheck.normals(B * Dc, seed: seed &+ 2)
        let t: [Int32] = [0, 3, 9, 5, 1]
        let w = UNetGradientCheck.normals(B * net.outputSize, seed: seed &+ 3)
        func run(_ p: UnsafePointer<Float>, training: Bool) -> [Float] {
            var out = [Float](repeating: 0, count: B * net.outputSize)
            var rng = Philox(seed: 0)
            vectors.withUnsafeBufferPointer { v in
                mask.withUnsafeBufferPointer { m in
                    net.forward(&out, x: x, t: t, cond: ConditionBatch(vectors: v.baseAddress!, vectorDim: Dc, null: m.baseAddress!),
                                batch: B, params: p, training: training, rng: &rng)
                }
            }
            return out
        }
        _ = run(params, training: true)
        net.parameters.zeroGrads()
        net.backward(dout: w, batch: B)
        let grads = net.parameters.gradsArray
        let loss = { (p: [Float]) in UNetGradientCheck.weightedSum(run(p, training: false), w) }
        let (bad, largest): ([UNetGradientCheck.Mismatch], Double)
        if directional {
            (bad, largest) = UNetGradientCheck.compareDirectional(layout, values: &params, analytic: grads, seed: seed &+ 7,
                                                                  step: 1e-2, atol: 2e-3, rtol: 2e-2, loss: loss)
        } else {
            var sampler = Philox(seed: seed &+ 7)
            var indices: [Int] = []
            for e in layout.entries {
                indices += UNetGradientCheck.sampleIndices(offset: e.offset, count: e.count, random: 2, rng: &sampler)
            }
            (bad, largest) = UNetGradientCheck.compare({ UNetGradientCheck.entryName(layout, $0) }, values: &params, analytic: grads,
                                                       indices: indices, step: 3e-3, atol: 1e-3, rtol: 2e-2, loss: loss)
        }
        XCTAssert(bad.isEmpty, "wrong gradients: \(bad.prefix(10))")
        XCTAssertGreaterThan(largest, 1e-2, "gradients vanish")
        let names = layout.entries.map(\.name)
        XCTAssert(names.contains("cond_vector.null") && names.contains("cond_vector.proj.weight"), "\(names)")
        // The null rows do not read their vectors; the others do.
        var moved = vectors
        for i in 0..<Dc { moved[1 * Dc + i] += 5; moved[2 * Dc + i] += 5 }
        let before = run(params, training: false)
        var after = [Float](repeating: 0, count: B * net.outputSize)
        var rng = Philox(seed: 0)
        moved.withUnsafeBufferPointer { v in
            mask.withUnsafeBufferPointer { m in
                net.forward(&after, x: x, t: t, cond: ConditionBatch(vectors: v.baseAddress!, vectorDim: Dc, null: m.baseAddress!),
                            batch: B, params: params, training: false, rng: &rng)
            }
        }
        let O = net.outputSize
        XCTAssertEqual(Array(before[O..<2 * O]), Array(after[O..<2 * O]), "a null row ignores its vector")
        XCTAssertNotEqual(Array(before[2 * O..<3 * O]), Array(after[2 * O..<3 * O]), "a conditioned row reads its vector")
    }

    func testResidualMLPGradientsWithVectors() throws {
        var rng = Philox(seed: 11)
        let net = try ResidualMLP(.init(dataDim: 3, hidden: 8, depth: 2, timeEmbedDim: 6), conditioning: .vector(4),
                                  timesteps: 10, rng: &rng)
        try checkNetwork(net, seed: 12, directional: false)
    }

    func testUNetGradientsWithVectors() throws {
        let net = try UNetTests.makeTiny(conditioning: .vector(3), seed: 13)
        try checkNetwork(net, seed: 14, directional: true)
    }

    // MARK: - Model: guidance, dropout, checkpoints, refusals

    let (B, D, Dc) = (4, 3, 5)

    func makeModel(dropout: Float = 0.1, network: NetworkConfig? = nil) throws -> DiffusionModel {
        var training = TrainingConfig()
        training.labelDropout = dropout
        let model = try DiffusionModel(schedule: try NoiseSchedule.linear(steps: 50, scaleToSteps: true),
                                       network: network ?? .mlp(ResidualMLP.Config(dataDim: D, hidden: 16, depth: 2)),
                                       training: training, conditioning: .vector(Dc))
        let params = model.network.parameters
        var v = uniforms(params.count, seed: 9, in: -0.4...0.4)
        for e in params.layout.entries where e.name.hasSuffix("norm.weight") {
            for i in e.offset..<e.offset + e.count { v[i] += 1 }
        }
        try params.setValues(v)
        return model
    }

    func predict(_ model: DiffusionModel, x: [Float], t: Int, vectors: [Float]?, w: Float) throws -> [Float] {
        var out = [Float](repeating: .nan, count: x.count)
        try model.withConditionArrays(labels: nil, vectors: vectors, batch: x.count / D) { cond in
            try model.predict(&out, x: x, t: t, cond: cond, batch: x.count / D, options: PredictOptions(guidanceScale: w, useEMA: false))
        }
        return out
    }

    func testGuidanceAgainstTheNullVector() throws {
        let model = try makeModel()
        let x = uniforms(B * D, seed: 1, in: -2...2)
        let vectors = uniforms(B * Dc, seed: 2, in: -2...2)
        for t in [0, 20, 49] {
            let cond = try predict(model, x: x, t: t, vectors: vectors, w: 1)
            let uncond = try predict(model, x: x, t: t, vectors: nil, w: 1)
            XCTAssertGreaterThan(maxAbsDiff(cond, uncond).value, 0.05, "t = \(t): conditional and unconditional differ")
            // w = 0 is the unconditional branch: the learned null vector for every row.
            assertClose(try predict(model, x: x, t: t, vectors: vectors, w: 0), uncond, abs: 1e-6, "t = \(t): w = 0")
            for w: Float in [2.5, -0.5] {
                let guided = try predict(model, x: x, t: t, vectors: vectors, w: w)
                let want = (0..<cond.count).map { Double(uncond[$0]) + Double(w) * Double(cond[$0] - uncond[$0]) }
                assertClose(guided, want, abs: 1e-4, "t = \(t), w = \(w)")
            }
        }
        // Sampling with guidance runs and stays finite; a fixed seed repeats.
        let a = try model.sample(count: B, vectors: vectors, predict: PredictOptions(guidanceScale: 3))
        let b = try model.sample(count: B, vectors: vectors, predict: PredictOptions(guidanceScale: 3))
        XCTAssertTrue(a.allSatisfy(\.isFinite))
        XCTAssertEqual(a, b)
    }

    /// With dropout 1 every row takes the null vector: the loss does not depend on the
    /// vectors, and the null vector learns; with dropout 0 it never does.
    func testConditionDropoutUsesTheNullVector() throws {
        let x0 = uniforms(B * D, seed: 3)
        let (v1, v2) = (uniforms(B * Dc, seed: 4), uniforms(B * Dc, seed: 5))
        let nullRange: Range<Int> = {
            let e = try! makeModel().network.parameters.layout.entries.first { $0.name == "cond_vector.null" }!
            return e.offset..<e.offset + e.count
        }()
        let (m1, m2) = (try makeModel(dropout: 1), try makeModel(dropout: 1))
        XCTAssertEqual(try m1.trainStep(x0: x0, vectors: v1), try m2.trainStep(x0: x0, vectors: v2))
        XCTAssertTrue(m1.network.parameters.gradsArray[nullRange].contains { $0 != 0 })
        let m3 = try makeModel(dropout: 0)
        _ = try m3.trainStep(x0: x0, vectors: v1)
        XCTAssertTrue(m3.network.parameters.gradsArray[nullRange].allSatisfy { $0 == 0 })
    }

    func testCheckpointRoundTripWithVectors() throws {
        for network in [NetworkConfig.mlp(ResidualMLP.Config(dataDim: D, hidden: 16, depth: 1)),
                        .unet(UNetConfig(channels: 1, height: 4, width: 4, baseChannels: 8, channelMult: [1], resBlocks: 1,
                                         attentionLevels: [], attentionHeads: 1, groups: 4, timeEmbedDim: 8))] {
            let model = try makeModel(network: network)
            let S = model.network.sampleSize
            _ = try model.trainStep(x0: uniforms(B * S, seed: 6), vectors: uniforms(B * Dc, seed: 7))
            let path = NSTemporaryDirectory() + "vector-cond-\(S).safetensors"
            defer { try? FileManager.default.removeItem(atPath: path) }
            try model.save(to: path)
            let loaded = try DiffusionModel.load(from: path)
            XCTAssertEqual(loaded.conditioning, .vector(Dc))
            XCTAssertEqual(loaded.parameterHash, model.parameterHash)
            let x = uniforms(B * S, seed: 8)
            let vectors = uniforms(B * Dc, seed: 9)
            var (a, b) = ([Float](repeating: 0, count: B * S), [Float](repeating: 0, count: B * S))
            for (m, o) in [(model, 0), (loaded, 1)] {
                try m.withConditionArrays(labels: nil, vectors: vectors, batch: B) { cond in
                    if o == 0 { try m.predict(&a, x: x, t: 7, cond: cond, batch: B, options: PredictOptions(guidanceScale: 2)) }
                    else { try m.predict(&b, x: x, t: 7, cond: cond, batch: B, options: PredictOptions(guidanceScale: 2)) }
                }
            }
            XCTAssertEqual(a, b, "the loaded model predicts what the saved one did")
        }
    }

    func testCodableConditioning() throws {
        let data = try JSONEncoder().encode(Conditioning.vector(7))
        XCTAssertEqual(String(decoding: data, as: UTF8.self).contains("\"vector\""), true)
        XCTAssertEqual(try JSONDecoder().decode(Conditioning.self, from: data), .vector(7))
    }

    func testBadInputsAreRefused() throws {
        let model = try makeModel()
        let x0 = uniforms(B * D, seed: 1)
        assertInvalidArgument("wrong vector count") { try model.trainStep(x0: x0, vectors: uniforms(B * Dc - 1, seed: 2)) }
        var nan = uniforms(B * Dc, seed: 2)
        nan[3] = .nan
        assertNonFinite("non-finite vector") { try model.trainStep(x0: x0, vectors: nan) }
        assertInvalidArgument("labels to a vector model") { try model.trainStep(x0: x0, labels: [0, 0, 0, 0]) }
        assertInvalidArgument("dim 0") {
            try DiffusionModel(schedule: try NoiseSchedule.linear(steps: 10), network: .mlp(.init(dataDim: 2)), conditioning: .vector(0))
        }
        assertInvalidArgument("dim over the cap") {
            try DiffusionModel(schedule: try NoiseSchedule.linear(steps: 10), network: .mlp(.init(dataDim: 2)),
                               conditioning: .vector(Limits.width + 1))
        }
        let classes = try DiffusionModel(schedule: try NoiseSchedule.linear(steps: 10), network: .mlp(.init(dataDim: D)),
                                         conditioning: .classes(2))
        assertInvalidArgument("vectors to a class model") { try classes.trainStep(x0: x0, vectors: uniforms(B * Dc, seed: 2)) }
        // The pointer form: a batch whose vector size is not the model's.
        try uniforms(B * 2, seed: 3).withUnsafeBufferPointer { v in
            assertInvalidArgument("vectorDim mismatch") {
                try x0.withUnsafeBufferPointer { x in
                    try model.trainStep(x0: x.baseAddress!, cond: ConditionBatch(vectors: v.baseAddress!, vectorDim: 2), batch: B)
                }
            }
        }
    }
}

/// Sequence and token conditioning of the MLP (through the context's masked mean): whole-network
/// gradient checks (parameters, token and position tables, the null context), guidance
/// against the null context, refused inputs.
final class SequenceConditioningTests: XCTestCase {
    let (B, D, L, Dc, V) = (4, 3, 3, 2, 5)
    let ids: [Int32] = [1, 4, 0, 2, 2, 0, 3, 3, 3, 4, 1, 0]
    let lengths: [Int32] = [3, 2, 0, 1]  // row 2: no condition
    let mask: [UInt8] = [0, 0, 0, 1]  // row 3: dropped

    func makeNet(_ conditioning: Conditioning, seed: UInt64) throws -> ResidualMLP {
        var rng = Philox(seed: seed)
        return try ResidualMLP(.init(dataDim: D, hidden: 8, depth: 1, timeEmbedDim: 6), conditioning: conditioning,
                               timesteps: 10, rng: &rng)
    }

    func condition(_ tokens: UnsafePointer<Int32>?, _ context: UnsafePointer<Float>?, _ l: UnsafePointer<Int32>,
                   _ m: UnsafePointer<UInt8>?) -> ConditionBatch {
        var c = ConditionBatch(null: m)
        (c.tokens, c.context, c.lengths, c.maxLength, c.contextDim) = (tokens, context, l, L, Dc)
        return c
    }

    func check(_ conditioning: Conditioning, seed: UInt64) throws {
        let net = try makeNet(conditioning, seed: seed)
        let layout = net.parameters.layout
        var params = UNetGradientCheck.randomParameters(layout, seed: seed)
        for e in layout.entries where e.name.hasSuffix("norm.weight") { for i in e.offset..<e.offset + e.count { params[i] += 1 } }
        try net.parameters.setValues(params)
        let x = UNetGradientCheck.normals(B * D, seed: seed &+ 1)
        let context = UNetGradientCheck.normals(B * L * Dc, seed: seed &+ 2)
        let t: [Int32] = [0, 3, 9, 5]
        let w = UNetGradientCheck.normals(B * D, seed: seed &+ 3)
        let tokens = conditioning.vocabulary > 0
        func run(_ p: UnsafePointer<Float>, training: Bool) -> [Float] {
            var out = [Float](repeating: 0, count: B * D)
            var rng = Philox(seed: 0)
            ids.withUnsafeBufferPointer { i in
                context.withUnsafeBufferPointer { c in
                    lengths.withUnsafeBufferPointer { l in
                        mask.withUnsafeBufferPointer { m in
                            net.forward(&out, x: x, t: t, cond: condition(tokens ? i.baseAddress : nil, tokens ? nil : c.baseAddress,
                                                                          l.baseAddress!, m.baseAddress!),
                                        batch: B, params: p, training: training, rng: &rng)
                        }
                    }
                }
            }
            return out
        }
        _ = run(params, training: true)
        net.parameters.zeroGrads()
        net.backward(dout: w, batch: B)
        let grads = net.parameters.gradsArray
        var sampler = Philox(seed: seed &+ 7)
        var indices: [Int] = []
        for e in layout.entries { indices += UNetGradientCheck.sampleIndices(offset: e.offset, count: e.count, random: 3, rng: &sampler) }
        let (bad, largest) = UNetGradientCheck.compare({ UNetGradientCheck.entryName(layout, $0) }, values: &params, analytic: grads,
                                                       indices: indices, step: 3e-3, atol: 1e-3, rtol: 2e-2) {
            UNetGradientCheck.weightedSum(run($0, training: false), w)
        }
        XCTAssert(bad.isEmpty, "\(conditioning): wrong gradients: \(bad.prefix(10))")
        XCTAssertGreaterThan(largest, 1e-2)
        let nullEntry = layout.entries.first { $0.name == "context.null" }!
        XCTAssertTrue(grads[nullEntry.offset..<nullEntry.offset + nullEntry.count].contains { $0 != 0 }, "the null context learns")
    }

    /// The UNet: cross-attention at level 0 and in the middle, and the pooled context, every
    /// tensor along a random direction; rows with and without the null context.
    func checkUNet(_ conditioning: Conditioning, seed: UInt64) throws {
        var config = UNetTests.tiny
        config.crossAttentionLevels = [0]
        let net = try UNetTests.makeTiny(config, conditioning: conditioning, seed: seed)
        let layout = net.parameters.layout
        let names = layout.entries.map(\.name)
        XCTAssertTrue(names.contains("encoder.0.xattn.kv.weight") && names.contains("middle.0.xattn.q.weight")
                      && !names.contains("encoder.2.xattn.q.weight"), "\(names)")
        var params = UNetGradientCheck.randomParameters(layout, seed: seed)
        try net.parameters.setValues(params)
        let x = UNetGradientCheck.normals(B * net.sampleSize, seed: seed &+ 1)
        let context = UNetGradientCheck.normals(B * L * Dc, seed: seed &+ 2)
        let t: [Int32] = [0, 3, 9, 5]
        let w = UNetGradientCheck.normals(B * net.outputSize, seed: seed &+ 3)
        let tokens = conditioning.vocabulary > 0
        func run(_ p: UnsafePointer<Float>, training: Bool) -> [Float] {
            var out = [Float](repeating: 0, count: B * net.outputSize)
            var rng = Philox(seed: 0)
            ids.withUnsafeBufferPointer { i in
                context.withUnsafeBufferPointer { c in
                    lengths.withUnsafeBufferPointer { l in
                        mask.withUnsafeBufferPointer { m in
                            net.forward(&out, x: x, t: t, cond: condition(tokens ? i.baseAddress : nil, tokens ? nil : c.baseAddress,
                                                                          l.baseAddress!, m.baseAddress!),
                                        batch: B, params: p, training: training, rng: &rng)
                        }
                    }
                }
            }
            return out
        }
        _ = run(params, training: true)
        net.parameters.zeroGrads()
        net.backward(dout: w, batch: B)
        let grads = net.parameters.gradsArray
        let (bad, largest) = UNetGradientCheck.compareDirectional(layout, values: &params, analytic: grads, seed: seed &+ 7,
                                                                  step: 1e-2, atol: 2e-3, rtol: 2e-2) {
            UNetGradientCheck.weightedSum(run($0, training: false), w)
        }
        XCTAssert(bad.isEmpty, "\(conditioning): wrong UNet gradients: \(bad.prefix(10))")
        XCTAssertGreaterThan(largest, 1e-2)
    }

    func testUNetGradientsWithTokens() throws { try checkUNet(.tokens(vocabulary: V, maxLength: L, dim: Dc), seed: 31) }

    func testUNetGradientsWithSequences() throws { try checkUNet(.sequence(dim: Dc, maxLength: L), seed: 32) }

    func testMLPGradientsWithTokens() throws { try check(.tokens(vocabulary: V, maxLength: L, dim: Dc), seed: 21) }

    func testUNetGradientsWithTokensAndTextEncoder() throws {
        try checkUNet(.tokens(vocabulary: V, maxLength: L, dim: Dc, encoder: .init(layers: 2, heads: 2)), seed: 33)
    }

    func testMLPGradientsWithTokensAndTextEncoder() throws {
        try check(.tokens(vocabulary: V, maxLength: L, dim: Dc, encoder: .init(layers: 2, heads: 1)), seed: 23)
    }

    func testMLPGradientsWithSequences() throws { try check(.sequence(dim: Dc, maxLength: L), seed: 22) }

    func testGuidanceAgainstTheNullContextAndRefusals() throws {
        var training = TrainingConfig()
        training.labelDropout = 0.2
        let model = try DiffusionModel(schedule: try NoiseSchedule.linear(steps: 50, scaleToSteps: true),
                                       network: .mlp(.init(dataDim: D, hidden: 16, depth: 1)), training: training,
                                       conditioning: .tokens(vocabulary: V, maxLength: L, dim: Dc))
        try model.network.parameters.setValues(uniforms(model.network.parameters.count, seed: 3, in: -0.5...0.5))
        let x = uniforms(B * D, seed: 4, in: -2...2)
        func predict(_ c: ConditionBatch, _ w: Float) throws -> [Float] {
            var out = [Float](repeating: .nan, count: B * D)
            try model.predict(&out, x: x, t: 20, cond: c, batch: B, options: PredictOptions(guidanceScale: w, useEMA: false))
            return out
        }
        let full = [Int32](repeating: Int32(L), count: B)
        try ids.withUnsafeBufferPointer { i in
            try full.withUnsafeBufferPointer { l in
                let c = condition(i.baseAddress!, nil, l.baseAddress!, nil)
                let cond = try predict(c, 1), uncond = try predict(.none, 1)
                XCTAssertGreaterThan(maxAbsDiff(cond, uncond).value, 1e-3)
                let guided = try predict(c, 3)
                assertClose(guided, (0..<cond.count).map { Double(uncond[$0]) + 3 * Double(cond[$0] - uncond[$0]) }, abs: 1e-4,
                            "ε̂_uncond + w·(ε̂_cond − ε̂_uncond)")
                // Length 0 is the null condition.
                let zero = [Int32](repeating: 0, count: B)
                try zero.withUnsafeBufferPointer { z in
                    assertClose(try predict(condition(i.baseAddress!, nil, z.baseAddress!, nil), 1), uncond, abs: 1e-6, "length 0 = null")
                }
                _ = try x.withUnsafeBufferPointer { try model.trainStep(x0: $0.baseAddress!, cond: c, batch: B) }
            }
        }
        var bad = ids
        bad[5] = Int32(V)
        let tooLong = [Int32](repeating: Int32(L + 1), count: B)
        try bad.withUnsafeBufferPointer { i in
            try full.withUnsafeBufferPointer { l in
                assertInvalidArgument("token = V") { try predict(condition(i.baseAddress!, nil, l.baseAddress!, nil), 1) }
            }
            try tooLong.withUnsafeBufferPointer { l in
                assertInvalidArgument("length > Lmax") { try predict(condition(i.baseAddress!, nil, l.baseAddress!, nil), 1) }
            }
        }
        var badLevels = UNetTests.tiny
        badLevels.crossAttentionLevels = [2]
        assertInvalidArgument("a cross-attention level past the last") {
            try DiffusionModel(schedule: try NoiseSchedule.linear(steps: 10), network: .unet(badLevels),
                               conditioning: .sequence(dim: 2, maxLength: 3))
        }
        // Checkpoints carry the kind.
        let path = NSTemporaryDirectory() + "tokens-cond.safetensors"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try model.save(to: path)
        XCTAssertEqual(try DiffusionModel.load(from: path).conditioning, .tokens(vocabulary: V, maxLength: L, dim: Dc))
    }
}
