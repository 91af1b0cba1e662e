// Convolution weights prepared once per call (Layers/Conv2d+Prepared.swift): a convolution that
// reads them computes the bits it computes when it prepares its own weights, for every algorithm
// (im2col, 1×1, stride 2, F(4×4), F(2×2)) on every ISA path; the prepared Winograd filters are
// exactly the per-call transform packed as the GEMM packs it (padding lanes 0); lookups fail
// for other parameters, another algorithm, another path and after `release`; and a whole UNet
// predicts the same bits with and without them (the predictions prepare; a direct forward does not).
import XCTest
@testable import DDPM
import DDPMKernels

final class PreparedConvolutionTests: XCTestCase {
    var savedISA = KernelISA.current
    override func setUp() { savedISA = KernelISA.current }
    override func tearDown() { KernelISA.use(savedISA) }

    /// (conv, H, W, B): every kind of call the UNet makes, channels that are and are not multiples
    /// of the paths' panels (NR 8, 16, 32).
    static func layers() -> (layout: ParameterLayout, list: [(conv: Conv2d, height: Int, width: Int, batch: Int)]) {
        var layout = ParameterLayout()
        let list: [(Conv2d, Int, Int, Int)] = [
            (Conv2d(&layout, "f4", in: 24, out: 40, kernel: 3, algorithm: .winograd(tile: 4)), 10, 7, 2),
            (Conv2d(&layout, "f4b", in: 32, out: 17, kernel: 3, algorithm: .winograd(tile: 4)), 8, 8, 3),
            (Conv2d(&layout, "f2", in: 20, out: 48, kernel: 3, algorithm: .winograd(tile: 2)), 5, 9, 2),
            (Conv2d(&layout, "im2col", in: 12, out: 33, kernel: 3, algorithm: .im2col), 6, 6, 2),
            (Conv2d(&layout, "pointwise", in: 40, out: 24, kernel: 1), 9, 1, 3),
            (Conv2d(&layout, "stride2", in: 16, out: 16, kernel: 3, stride: 2), 8, 6, 2),
            (Conv2d(&layout, "signal", in: 8, out: 12, kernel: 3, kernelHeight: 1), 1, 11, 2),
        ]
        return (layout, list)
    }

    /// out of conv.forward with or without `prepared`.
    static func forward(_ c: (conv: Conv2d, height: Int, width: Int, batch: Int), _ params: [Float],
                        prepared: PreparedWeights?) throws -> [Float] {
        let (conv, H, W, B) = c
        let (Ho, Wo) = conv.outputSize(height: H, width: W)
        let inp = UNetGradientCheck.normals(conv.inChannels * B * H * W, seed: 9)
        let scratch = try Buffer<Float>(count: max(1, conv.columnsCount(batch: B, height: H, width: W)))
        scratch.fill(.nan)
        var out = [Float](repeating: .nan, count: conv.outChannels * B * Ho * Wo)
        params.withUnsafeBufferPointer { p in
            conv.forward(&out, inp, p.baseAddress!, columns: scratch.pointer, batch: B, height: H, width: W, prepared: prepared)
        }
        return out
    }

    func testPreparedWeightsGiveTheSameBitsOnEveryPath() throws {
        let (layout, list) = Self.layers()
        let params = UNetGradientCheck.randomParameters(layout, seed: 5)
        for isa in KernelISA.supported {
            XCTAssertTrue(KernelISA.use(isa))
            for c in list {
                let prepared = PreparedWeights(convolutions: [(c.conv, c.height, c.width)])
                try params.withUnsafeBufferPointer { p in try prepared.prepare(p.baseAddress!, batch: c.batch, chunks: 1) }
                let algorithm = c.conv.algorithm(batch: c.batch, height: c.height, width: c.width)
                let held = params.withUnsafeBufferPointer { p in prepared.weights(c.conv, algorithm, params: p.baseAddress!) }
                XCTAssertNotNil(held, "\(isa.name): \(c.conv.weight) has prepared weights")
                let own = try Self.forward(c, params, prepared: nil)
                assertSameBits(try Self.forward(c, params, prepared: prepared), own, "\(isa.name), \(algorithm), prepared vs own")
                prepared.release()
                XCTAssertNil(params.withUnsafeBufferPointer { p in prepared.weights(c.conv, algorithm, params: p.baseAddress!) },
                             "released")
            }
        }
    }

    func testLookupsOnlyMatchTheParametersAlgorithmAndPathPrepared() throws {
        let (layout, list) = Self.layers()
        let c = list[0]  // F(4×4)
        let params = UNetGradientCheck.randomParameters(layout, seed: 5), other = params.map { $0 + 1 }
        let prepared = PreparedWeights(convolutions: [(c.conv, c.height, c.width)])
        try params.withUnsafeBufferPointer { p in try prepared.prepare(p.baseAddress!, batch: c.batch, chunks: 1) }
        params.withUnsafeBufferPointer { p in
            XCTAssertNotNil(prepared.weights(c.conv, .winograd(tile: 4), params: p.baseAddress!))
            XCTAssertNil(prepared.weights(c.conv, .winograd(tile: 2), params: p.baseAddress!), "another algorithm")
            XCTAssertNil(prepared.weights(list[1].conv, .winograd(tile: 4), params: p.baseAddress!), "a convolution not listed")
        }
        other.withUnsafeBufferPointer { p in
            XCTAssertNil(prepared.weights(c.conv, .winograd(tile: 4), params: p.baseAddress!), "other parameters")
        }
        // Forwarding with other parameters does not read the prepared weights: their own result.
        assertSameBits(try Self.forward(c, other, prepared: prepared), try Self.forward(c, other, prepared: nil), "other parameters")
        // Negative control: weights prepared from values since overwritten in place (the same
        // pointer, as a train step leaves them) are stale, and a forward that read them would
        // give other bits: what `release` after every prediction prevents.
        var live = other
        try live.withUnsafeMutableBufferPointer { p in
            let forged = PreparedWeights(convolutions: [(c.conv, c.height, c.width)])
            try forged.prepare(p.baseAddress!, batch: c.batch, chunks: 1)
            for i in p.indices { p[i] = params[i] }
            let (H, W, B) = (c.height, c.width, c.batch)
            let inp = UNetGradientCheck.normals(c.conv.inChannels * B * H * W, seed: 9)
            let scratch = try Buffer<Float>(count: c.conv.columnsCount(batch: B, height: H, width: W))
            var stale = [Float](repeating: 0, count: c.conv.outChannels * B * H * W)
            c.conv.forward(&stale, inp, p.baseAddress!, columns: scratch.pointer, batch: B, height: H, width: W, prepared: forged)
            XCTAssertNotNil(firstBitDifference(stale, try Self.forward(c, params, prepared: nil)), "stale weights would be told apart")
        }
        if KernelISA.supported.count > 1 {
            let here = KernelISA.current
            KernelISA.use(KernelISA.supported.first { $0 != here }!)
            params.withUnsafeBufferPointer { p in
                XCTAssertNil(prepared.weights(c.conv, .winograd(tile: 4), params: p.baseAddress!), "another ISA path")
            }
        }
    }

    func testPackedFiltersAreTheTransformPackedAsTheGemmPacksIt() {
        for isa in KernelISA.supported {
            XCTAssertTrue(KernelISA.use(isa))
            for (m, Ci, Co) in [(4, 24, 40), (4, 32, 17), (2, 20, 48), (4, 300, 9)] {  // 300 rows: two K blocks
                var layout = ParameterLayout()
                let conv = Conv2d(&layout, "c", in: Ci, out: Co, kernel: 3, algorithm: .winograd(tile: m))
                let params = UNetGradientCheck.randomParameters(layout, seed: 11)
                let X = (m + 2) * (m + 2), ld = Ci * Co
                var plain = [Float](repeating: .nan, count: X * ld)
                params.withUnsafeBufferPointer { p in
                    ddpm_wino_filter(Int32(m), &plain, ld, Co, p.baseAddress! + conv.weight, Ci, 9, Co, 9 * Ci, 0)
                }
                let stride = ddpm_sgemm_packed_b_floats(Ci, Co)
                var expected = [Float](repeating: .nan, count: X * stride), packed = expected
                for xi in 0..<X {
                    plain.withUnsafeBufferPointer { u in
                        var call = ddpm_sgemm_call(m: 1, n: Co, k: Ci, alpha: 1, beta: 0, a: nil, lda: 0, trans_a: 0,
                                                   b: u.baseAddress! + xi * ld, ldb: Co, trans_b: 0, pack_b: nil,
                                                   pack_b_context: nil, packed_a: nil, packed_b: nil, c: nil, ldc: 0, bias: nil,
                                                   tiles: 1, tile_axis: 0)
                        expected.withUnsafeMutableBufferPointer { e in ddpm_sgemm_pack_b(&call, e.baseAddress! + xi * stride) }
                    }
                }
                params.withUnsafeBufferPointer { p in
                    ddpm_wino_filter_packed(Int32(m), &packed, stride, p.baseAddress! + conv.weight, Ci, 9, Co, 9 * Ci, 0,
                                            ddpm_sgemm_nr(), ddpm_sgemm_kc())
                }
                assertSameBits(packed, expected, "\(isa.name), F(\(m)×\(m)) \(Ci)→\(Co)")
            }
        }
    }

    /// The filter transform against U = G g Gᵀ computed here in Double from the paper's G
    /// (Barabasz et al.'s points 0, −1, 1, 1/2, −2 for m = 4): within a float rounding.
    func testFilterTransformMatchesItsDefinition() {
        let third = 1.0 / 3, fifteenth = 1.0 / 15
        let g4: [[Double]] = [[1, 0, 0], [-third, third, -third], [third, third, third],
                              [-16 * fifteenth, -8 * fifteenth, -4 * fifteenth], [fifteenth, -2 * fifteenth, 4 * fifteenth], [0, 0, 1]]
        let g2: [[Double]] = [[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]]
        for isa in KernelISA.supported {
            XCTAssertTrue(KernelISA.use(isa))
            for (m, G) in [(4, g4), (2, g2)] {
                let (Ci, Co, a) = (19, 37, m + 2)
                let w = UNetGradientCheck.normals(Co * Ci * 9, seed: 3)
                var u = [Float](repeating: .nan, count: a * a * Ci * Co)
                ddpm_wino_filter(Int32(m), &u, Ci * Co, Co, w, Ci, 9, Co, 9 * Ci, 0)
                var worst = 0.0
                for co in 0..<Co {
                    for ci in 0..<Ci {
                        let k = (0..<9).map { Double(w[(co * Ci + ci) * 9 + $0]) }
                        for i in 0..<a {
                            for j in 0..<a {
                                var v = 0.0, scale = 0.0
                                for ky in 0..<3 { for kx in 0..<3 {
                                    v += G[i][ky] * k[ky * 3 + kx] * G[j][kx]; scale += abs(G[i][ky] * k[ky * 3 + kx] * G[j][kx])
                                } }
                                let got = Double(u[(i * a + j) * Ci * Co + ci * Co + co])
                                worst = max(worst, abs(got - v) / max(scale, 1e-30))
                            }
                        }
                    }
                }
                XCTAssertLessThan(worst, 0x1p-23, "\(isa.name), F(\(m)×\(m)): error relative to Σ|terms|")
            }
        }
    }

    func testUNetPredictionsWithPreparedWeightsAreTheDirectForwardsBits() throws {
        // The model's prediction prepares its convolutions' weights; the network's own forward
        // (no preparation) must give the same bits, on every path.
        let config = UNetConfig(channels: 3, height: 8, width: 8, baseChannels: 16, channelMult: [1, 2], resBlocks: 1,
                                attentionLevels: [1], groups: 4)
        // and diffusers' options: the bottom-right padded Downsample (its convolution on the padded image), normEps
        var diffusers = config
        (diffusers.downsamplePadding, diffusers.normEps, diffusers.middleAttention) = (0, 1e-6, false)
        for (isa, config) in KernelISA.supported.map({ ($0, config) }) + [(KernelISA.current, diffusers)] {
            XCTAssertTrue(KernelISA.use(isa))
            let model = try DiffusionModel(schedule: try .linear(steps: 50), network: .unet(config))
            // random weights everywhere (the last convolutions start at zero)
            try model.network.parameters.setValues(UNetGradientCheck.normals(model.network.parameters.count, seed: 20).map { 0.2 * $0 })
            let B = 3, S = 3 * 8 * 8
            let x = UNetGradientCheck.normals(B * S, seed: 21)
            var predicted = [Float](repeating: .nan, count: B * S)
            try model.predict(&predicted, x: x, t: 17, labels: nil, batch: B, options: PredictOptions(useEMA: false))
            var direct = [Float](repeating: .nan, count: B * S)
            let t = [Int32](repeating: 17, count: B)
            var rng = Philox(seed: 0)
            model.network.forward(&direct, x: x, t: t, labels: nil, batch: B, params: model.network.parameters.values.pointer,
                                  training: false, rng: &rng)
            assertSameBits(predicted, direct, "\(isa.name): prediction (prepared) vs forward (not)")
            XCTAssertNil(model.network.preparedWeights?.source, "released after the prediction")
        }
    }

    func testPredictionsFollowTheWeightsThroughTrainStepsSetValuesAndLoads() throws {
        // The prepared weights are the weights of the prediction that prepared them only: after a
        // train step (values and EMA changed in place), setValues and a checkpoint load, every
        // prediction must give the bits of the network's own forward (which prepares nothing)
        // with the weights of the moment. A cache kept across the change would give the old bits
        // (the negative control in testLookupsOnlyMatchTheParametersAlgorithmAndPathPrepared).
        let config = UNetConfig(channels: 3, height: 8, width: 8, baseChannels: 16, channelMult: [1, 2], resBlocks: 1,
                                attentionLevels: [1], groups: 4)
        var training = TrainingConfig()
        training.emaDecay = 0.5
        let model = try DiffusionModel(schedule: try .linear(steps: 50), network: .unet(config), training: training)
        try model.network.parameters.setValues(UNetGradientCheck.normals(model.network.parameters.count, seed: 30).map { 0.2 * $0 })
        let B = 3, S = 3 * 8 * 8
        let x = UNetGradientCheck.normals(B * S, seed: 31)
        func predicted(_ m: DiffusionModel, ema: Bool) throws -> [Float] {
            var out = [Float](repeating: .nan, count: B * S)
            try m.predict(&out, x: x, t: 17, labels: nil, batch: B, options: PredictOptions(useEMA: ema))
            return out
        }
        // The oracle: the network's forward on a copy of the weights (another address, which no
        // prepared weights are for: it transforms its own).
        func direct(_ m: DiffusionModel, ema: Bool) -> [Float] {
            var out = [Float](repeating: .nan, count: B * S)
            var rng = Philox(seed: 0)
            let weights = ema ? m.emaValues : m.network.parameters.values.array
            weights.withUnsafeBufferPointer { w in
                m.network.forward(&out, x: x, t: [Int32](repeating: 17, count: B), labels: nil, batch: B,
                                  params: w.baseAddress!, training: false, rng: &rng)
            }
            return out
        }
        // (values, EMA) predictions, in `order`: each check starts with the weights the last one
        // ended with, so that a cache kept from that prediction would be read.
        func check(_ m: DiffusionModel, _ when: String, order: [Bool]) throws -> (values: [Float], ema: [Float]) {
            var got: [Bool: [Float]] = [:]
            for ema in order {
                let p = try predicted(m, ema: ema)
                assertSameBits(p, direct(m, ema: ema), "\(when), EMA \(ema): prediction vs forward")
                got[ema] = p
            }
            return (got[false]!, got[true]!)
        }
        let initial = try check(model, "initial", order: [true, false])
        _ = try model.trainStep(x0: UNetGradientCheck.normals(B * S, seed: 32))
        let stepped = try check(model, "after a train step", order: [false, true])
        _ = try model.trainStep(x0: UNetGradientCheck.normals(B * S, seed: 34))
        let stepped2 = try check(model, "after a second train step", order: [true, false])
        try model.network.parameters.setValues(UNetGradientCheck.normals(model.network.parameters.count, seed: 33).map { 0.1 * $0 })
        let set = try check(model, "after setValues", order: [false, true])
        let path = NSTemporaryDirectory() + "prepared-\(UInt64.random(in: 0 ... .max)).safetensors"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try model.save(to: path)
        let loaded = try DiffusionModel.load(from: path)
        let reloaded = try check(loaded, "loaded", order: [false, true])
        assertSameBits(reloaded.values, set.values, "the loaded model predicts what the saved one did")
        // Each change changed the predictions (the checks above compare something that moved).
        XCTAssertNotNil(firstBitDifference(initial.values, stepped.values), "a train step changes the values' prediction")
        XCTAssertNotNil(firstBitDifference(stepped.ema, stepped2.ema), "a train step changes the EMA's prediction")
        XCTAssertNotNil(firstBitDifference(stepped2.values, set.values), "setValues changes the prediction")
    }
}
