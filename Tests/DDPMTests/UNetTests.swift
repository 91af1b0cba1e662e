// The UNet ε-network: whole-network finite-difference gradients, invariants of the forward
// pass (zero output at initialisation, rows independent of each other, nil labels = null
// label), config validation, and training through DiffusionModel.
import XCTest
@testable import DDPM

final class UNetTests: XCTestCase {
    /// C = 1, 8×8, base 8, 2 levels (8×8, 4×4), attention at level 1 with 2 heads, 4 groups, 3 classes.
    static let tiny = UNetConfig(channels: 1, height: 8, width: 8, baseChannels: 8, channelMult: [1, 2], resBlocks: 1,
                                 attentionLevels: [1], attentionHeads: 2, groups: 4, timeEmbedDim: 8)
    static let tinyClasses = Conditioning.classes(3)
    static let timesteps = 10

    static func makeTiny(_ config: UNetConfig = tiny, conditioning: Conditioning = tinyClasses, learnsVariance: Bool = false,
                         seed: UInt64 = 1) throws -> UNet {
        var rng = Philox(seed: seed)
        return try UNet(config, conditioning: conditioning, learnsVariance: learnsVariance, timesteps: timesteps, rng: &rng)
    }

    /// ε̂ for the given parameters (inference: no dropout).
    static func predict(_ net: UNet, params: [Float], x: [Float], t: [Int32], labels: [Int32]?) -> [Float] {
        let B = t.count
        var out = [Float](repeating: .nan, count: B * net.outputSize)
        var rng = Philox(seed: 0)
        withOptionalPointer(labels) { l in
            net.forward(&out, x: x, t: t, labels: l, batch: B, params: params, training: false, rng: &rng)
        }
        return out
    }

    /// ∂(Σ w⊙ε̂)/∂θ from backward vs central differences: one random entry of every tensor,
    /// or (`directional`) every tensor along a random direction.
    func checkNetworkGradients(_ config: UNetConfig, conditioning: Conditioning = tinyClasses, labels: [Int32]?,
                               seed: UInt64, directional: Bool, learnsVariance: Bool = false,
                               file: StaticString = #filePath, line: UInt = #line) throws {
        let net = try Self.makeTiny(config, conditioning: conditioning, learnsVariance: learnsVariance, seed: seed)
        let layout = net.parameters.layout
        var params = UNetGradientCheck.randomParameters(layout, seed: seed)
        try net.parameters.setValues(params)
        let B = 2
        let x = UNetGradientCheck.normals(B * net.sampleSize, seed: seed &+ 5)
        let t: [Int32] = [0, Int32(Self.timesteps - 1)]
        let w = UNetGradientCheck.normals(B * net.outputSize, seed: seed &+ 6)
        // One training forward and backward with dout = w gives ∂(Σ w⊙ε̂)/∂θ.
        var out = [Float](repeating: 0, count: B * net.outputSize)
        var rng = Philox(seed: 0)
        withOptionalPointer(labels) { l in
            net.forward(&out, x: x, t: t, labels: l, batch: B, params: params, training: true, rng: &rng)
        }
        net.parameters.zeroGrads()
        net.backward(dout: w, batch: B)
        let grads = net.parameters.gradsArray
        let loss = { (p: [Float]) in UNetGradientCheck.weightedSum(Self.predict(net, params: p, x: x, t: t, labels: labels), w) }
        let (bad, largest): ([UNetGradientCheck.Mismatch], Double)
        if directional {
            (bad, largest) = UNetGradientCheck.compareDirectional(layout, values: &params, analytic: grads, seed: seed &+ 7,
                                                                  step: 1e-2, atol: 2e-3, rtol: 2e-2, loss: loss)
        } else {
            var sampler = Philox(seed: seed &+ 7)
            var indices: [Int] = []
            for e in layout.entries {
                indices += UNetGradientCheck.sampleIndices(offset: e.offset, count: e.count, random: 1, endpoints: false, rng: &sampler)
            }
            (bad, largest) = UNetGradientCheck.compare({ UNetGradientCheck.entryName(layout, $0) }, values: &params, analytic: grads,
                                                       indices: indices, step: 1e-2, atol: 2e-3, rtol: 2e-2, loss: loss)
        }
        XCTAssert(bad.isEmpty, "\(bad.count) of \(layout.entries.count) UNet parameter tensors have wrong gradients: \(bad.prefix(10))",
                  file: file, line: line)
        XCTAssertGreaterThan(largest, 1e-2, "UNet gradients vanish", file: file, line: line)
    }

    func testUNetGradientsConditional() throws {
        try checkNetworkGradients(Self.tiny, labels: [1, 3], seed: 100, directional: false)  // 3 = the null label
    }

    /// The variance head: the output convolution doubled to [mean; v] channels.
    func testUNetGradientsWithLearnedVariance() throws {
        try checkNetworkGradients(Self.tiny, labels: [2, 3], seed: 300, directional: true, learnsVariance: true)
    }

    func testUNetGradientsUnconditionalThreeLevels() throws {
        var c = Self.tiny
        (c.channelMult, c.attentionLevels, c.attentionHeads, c.resBlocks) = ([1, 1, 2], [0], 1, 1)
        try checkNetworkGradients(c, conditioning: .none, labels: nil, seed: 200, directional: true)
    }

    /// A 1-D UNet over 2-channel signals of length 12 (height 1): 1×3 kernels, widths 12, 6, 3.
    func testUNetGradientsSignal() throws {
        let c = UNetConfig(channels: 2, height: 1, width: 12, baseChannels: 8, channelMult: [1, 2, 2], resBlocks: 1,
                           attentionLevels: [1], attentionHeads: 2, groups: 4, timeEmbedDim: 8)
        let net = try Self.makeTiny(c, conditioning: .none)
        XCTAssertEqual(net.inConv.kernelHeight, 1)
        XCTAssertEqual(net.sampleShape, [2, 1, 12])
        try checkNetworkGradients(c, conditioning: .none, labels: nil, seed: 400, directional: false)
        try checkNetworkGradients(c, conditioning: .none, labels: nil, seed: 401, directional: true)
    }

    /// Signals need only the width divisible by 2^(L−1): length 50 takes 2 levels, not 3.
    func testSignalConfigValidation() throws {
        var c = UNetConfig(channels: 1, height: 1, width: 50, baseChannels: 8, channelMult: [1, 2], attentionLevels: [1], groups: 4)
        XCTAssertNoThrow(try c.validate())
        c.channelMult = [1, 2, 2]
        XCTAssertThrowsError(try c.validate())
        c = UNetConfig(channels: 1, height: 2, width: 8, baseChannels: 8, channelMult: [1, 2, 2], attentionLevels: [1], groups: 4)
        XCTAssertThrowsError(try c.validate())  // a 2-D image still needs H divisible
    }

    /// With the output convolution initialised to zero, a fresh network predicts ε̂ = 0.
    func testFreshNetworkPredictsZero() throws {
        let net = try Self.makeTiny()
        let x = UNetGradientCheck.normals(3 * 64, seed: 1)
        let out = Self.predict(net, params: net.parameters.valuesArray, x: x, t: [0, 5, 9], labels: [0, 1, 2])
        XCTAssertEqual(out, [Float](repeating: 0, count: 3 * 64))
    }

    /// Every row's ε̂ depends only on that row: a batch of 3 equals three batches of 1,
    /// whatever order the activation buffers were sized in.
    func testRowsAreIndependentOfTheBatch() throws {
        let net = try Self.makeTiny()
        let params = UNetGradientCheck.randomParameters(net.parameters.layout, seed: 3)
        let x = UNetGradientCheck.normals(3 * 64, seed: 4)
        let t: [Int32] = [2, 7, 0], labels: [Int32] = [0, 3, 2]
        let single0 = Self.predict(net, params: params, x: Array(x[0..<64]), t: [t[0]], labels: [labels[0]])
        let batch = Self.predict(net, params: params, x: x, t: t, labels: labels)
        XCTAssert(batch.contains { $0 != 0 }, "randomised network predicts something")
        assertClose(batch[0..<64], single0, abs: 1e-5, "row 0 in a batch of 3 vs alone (sized for 1 first)")
        for b in 1..<3 {
            let single = Self.predict(net, params: params, x: Array(x[b * 64..<(b + 1) * 64]), t: [t[b]], labels: [labels[b]])
            assertClose(batch[b * 64..<(b + 1) * 64], single, abs: 1e-5, "row \(b) in a batch of 3 vs alone")
        }
    }

    /// An inference batch larger than `inferenceRows` runs in several passes with the same result;
    /// a batch large enough to split the convolutions into several im2col chunks too.
    func testLargeBatchesMatchSmallOnes() throws {
        let net = try Self.makeTiny()
        let params = UNetGradientCheck.randomParameters(net.parameters.layout, seed: 12)
        let B = 40
        let x = UNetGradientCheck.normals(B * 64, seed: 13)
        let t = (0..<B).map { Int32($0 % Self.timesteps) }, labels = (0..<B).map { Int32($0 % 4) }
        let conv = net.decoder.last!.res!.conv1  // 24 → 8 channels at 8×8
        XCTAssertLessThan(conv.imagesPerChunk(batch: B, height: 8, width: 8), B, "the last ResBlock's conv runs in chunks")
        let whole = Self.predict(net, params: params, x: x, t: t, labels: labels)
        net.inferenceRows = 3
        let passes = Self.predict(net, params: params, x: x, t: t, labels: labels)
        assertClose(passes, whole, abs: 1e-5, "passes of 3 rows vs one pass of 40")
        let last = Self.predict(net, params: params, x: Array(x[(B - 1) * 64..<B * 64]), t: [t[B - 1]], labels: [labels[B - 1]])
        assertClose(whole[(B - 1) * 64..<B * 64], last, abs: 1e-5, "row 39 of 40 vs alone")
        let nilPasses = Self.predict(net, params: params, x: x, t: t, labels: nil)
        net.inferenceRows = 256
        assertClose(nilPasses, Self.predict(net, params: params, x: x, t: t, labels: nil), abs: 1e-5, "nil labels in passes")
    }

    func testNilLabelsMeanTheNullLabel() throws {
        let net = try Self.makeTiny()
        let params = UNetGradientCheck.randomParameters(net.parameters.layout, seed: 5)
        let x = UNetGradientCheck.normals(2 * 64, seed: 6)
        let none = Self.predict(net, params: params, x: x, t: [1, 4], labels: nil)
        let null = Self.predict(net, params: params, x: x, t: [1, 4], labels: [3, 3])
        let some = Self.predict(net, params: params, x: x, t: [1, 4], labels: [0, 1])
        XCTAssertEqual(none, null)
        XCTAssertGreaterThan(maxAbsDiff(some, null).value, 1e-4, "the class embedding changes the prediction")
    }

    func testConfigValidation() {
        func expectInvalid(_ edit: (inout UNetConfig) -> Void, mentions: String, line: UInt = #line) {
            var c = Self.tiny
            edit(&c)
            do {
                _ = try Self.makeTiny(c)
                XCTFail("expected an invalid-argument error mentioning \"\(mentions)\"", line: line)
            } catch let DDPMError.invalidArgument(message) {
                XCTAssert(message.contains(mentions), "message \"\(message)\" should mention \"\(mentions)\"", line: line)
            } catch {
                XCTFail("expected DDPMError.invalidArgument, got \(error)", line: line)
            }
        }
        expectInvalid({ $0.height = 6; $0.channelMult = [1, 2, 2] }, mentions: "height 6 is not divisible by 2^(levels-1) = 4")
        expectInvalid({ $0.width = 7 }, mentions: "width 7 is not divisible")
        expectInvalid({ $0.channelMult = [] }, mentions: "must be in 1...8 (got 0)")
        expectInvalid({ $0.channelMult = [Int](repeating: 1, count: 9); $0.height = 256; $0.width = 256 }, mentions: "must be in 1...8 (got 9)")
        expectInvalid({ $0.channelMult = [1, 0] }, mentions: "channel_mult[1] must be >= 1")
        expectInvalid({ $0.groups = 3 }, mentions: "groups (3) must divide the 8 channels of level 0")
        expectInvalid({ $0.baseChannels = 6; $0.groups = 4 }, mentions: "groups (4) must divide the 6 channels")
        expectInvalid({ $0.attentionLevels = [2] }, mentions: "attention level 2 is outside 0..<2")
        expectInvalid({ $0.attentionHeads = 3 }, mentions: "attention_heads (3) must divide the 16 channels")
        expectInvalid({ $0.attentionLevels = []; $0.attentionHeads = 32 }, mentions: "middle attention")
        expectInvalid({ $0.resBlocks = 0 }, mentions: "res_blocks must be >= 1")
        expectInvalid({ $0.dropout = 1 }, mentions: "dropout must be in [0, 1)")
        expectInvalid({ $0.timeEmbedDim = 7 }, mentions: "time_embed_dim must be even")
        expectInvalid({ $0.channels = 0 }, mentions: "channels must be >= 1")
        expectInvalid({ $0.baseChannels = 0 }, mentions: "base_channels must be >= 1")
        var rng = Philox(seed: 0)
        XCTAssertThrowsError(try UNet(Self.tiny, timesteps: 0, rng: &rng), "timesteps 0")
        for k in [0, -1] {
            assertInvalidArgument("num_classes \(k)") { try Self.makeTiny(conditioning: .classes(k)) }
        }
        XCTAssertNoThrow(try Self.makeTiny(), "the tiny config is valid")
    }

    func testAttentionLevelMask() {
        var c = Self.tiny
        c.attentionLevelMask = 0b101
        XCTAssertEqual(c.attentionLevels, [0, 2])
        XCTAssertEqual(c.attentionLevelMask, 0b101)
        c.attentionLevels = [1]
        XCTAssertEqual(c.attentionLevelMask, 0b10)
        c.attentionLevelMask = 0
        XCTAssertEqual(c.attentionLevels, [])
    }

    func testNetworkConfigBuildsAndRoundTrips() throws {
        let config = NetworkConfig.unet(Self.tiny)
        let decoded = try NetworkJSON.decode(try NetworkJSON.encode(config))
        XCTAssertEqual(decoded, config)
        var rng = Philox(seed: 9)
        let net = try config.makeNetwork(conditioning: Self.tinyClasses, timesteps: 10, rng: &rng)
        XCTAssert(net is UNet)
        XCTAssertEqual(net.sampleShape, [1, 8, 8])
        XCTAssertEqual(net.numClasses, 3)
        XCTAssertEqual(net.config, config)
        let names = net.parameters.layout.entries.map(\.name)
        XCTAssertEqual(Set(names).count, names.count, "parameter names are unique")
    }

    /// A few AdamW steps on one batch through DiffusionModel: finite, and the loss falls
    /// from ≈ 1 (ε̂ = 0 at initialisation).
    func testTrainingLowersTheLoss() throws {
        var c = Self.tiny
        c.dropout = 0.1
        var training = TrainingConfig()
        training.optimizer.learningRate = 3e-3
        training.seed = 11
        let model = try DiffusionModel(schedule: try NoiseSchedule.linear(steps: 50, scaleToSteps: true), network: .unet(c),
                                       training: training, conditioning: Self.tinyClasses)
        // Smooth images: a blob whose centre depends on the label.
        let B = 8
        var x0 = [Float](repeating: 0, count: B * 64), labels = [Int32](repeating: 0, count: B)
        for b in 0..<B {
            labels[b] = Int32(b % 3)
            for y in 0..<8 { for x in 0..<8 {
                let (cy, cx) = (2.0 + 2.0 * Double(b % 3), 3.5)
                x0[b * 64 + y * 8 + x] = Float(2 * exp(-((Double(y) - cy) * (Double(y) - cy) + (Double(x) - cx) * (Double(x) - cx)) / 4) - 1)
            } }
        }
        var losses: [Float] = []
        for _ in 0..<20 { losses.append(try model.trainStep(x0: x0, labels: labels)) }
        XCTAssert(losses.allSatisfy(\.isFinite), "losses \(losses)")
        let first = losses.prefix(5).reduce(0, +) / 5, last = losses.suffix(5).reduce(0, +) / 5
        XCTAssertLessThan(last, 0.8 * first, "losses \(losses)")
    }
}
