// The UNet options of diffusers' UNet2DModel (issue 21): the bottom-right padded Downsample
// against a direct convolution and by finite differences, the sinusoid's flip and shift against
// their closed form, GroupNorm's ε, a whole UNet with every option by finite differences, and the
// config's checkpoint JSON (the options written only when changed) and validation. Parity with
// diffusers itself is python/tests/test_diffusers_unet.py.
import Foundation
import XCTest
@testable import DDPM

final class DiffusersOptionsTests: XCTestCase {
    func checkBottomRightDownsample(height H: Int, width W: Int, signal: Bool, seed: UInt64) {
        let (C, B) = (3, 2)
        var layout = ParameterLayout()
        let down = Downsample(&layout, "down", channels: C, height: H, width: W, signal: signal, symmetric: false)
        let (Ho, Wo) = down.outSize
        let a = Held { Downsample.Activations(down, batch: B, &$0) }
        let scratch = Held { Scratch(&$0, columns: down.columnsCount(batch: B), activation: B * down.maxActivation, probs: 0, rows: 0) }
        let unused = try! Buffer<Float>(count: layout.count)
        // forward against the direct convolution (and unlike the symmetric one: the padding matters)
        let params = UNetGradientCheck.randomParameters(layout, seed: seed)
        let inp = UNetGradientCheck.normals(C * B * H * W, seed: seed &+ 1)
        down.forward(a.views, inp, testPass(params, unused.pointer, batch: B, scratch: scratch))
        let ours = Array(UnsafeBufferPointer(start: a.views.out, count: C * B * Ho * Wo))
        // out[y, x] = bias + Σ W·inp[2y + ky, 2x + kx], zero past the bottom and right edges
        let expected = ImageLayerTests.directConvolution(inp, params, down.conv, batch: B, height: H, width: W, bottomRight: true)
        assertClose(ours, expected, abs: 1e-5, "bottom-right padded downsample")
        let symmetric = ImageLayerTests.directConvolution(inp, params, down.conv, batch: B, height: H, width: W)
        XCTAssertGreaterThan(zip(symmetric, expected).map { abs($0 - $1) }.max()!, 1e-2, "the two paddings differ")
        // gradients by finite differences (backward adds into a zeroed dinp: accumulate)
        UNetGradientCheck.checkLayer("bottom-right downsample", layout: layout, inputCount: C * B * H * W,
                                     outputCount: C * B * Ho * Wo, seed: seed &+ 2) { out, inp, p in
            down.forward(a.views, inp, testPass(p, unused.pointer, batch: B, scratch: scratch))
            out.update(from: a.views.out, count: C * B * Ho * Wo)
        } backward: { dinp, g, dout, inp, p in
            down.backward(dinp: dinp, dout: dout, inp: inp, a.views, testPass(p, g, batch: B, scratch: scratch), accumulate: true)
        }
        // and overwriting (accumulate: false) writes the same gradient over garbage
        var first = [Float](repeating: 0, count: C * B * H * W), second = [Float](repeating: 7, count: C * B * H * W)
        let dout = UNetGradientCheck.normals(C * B * Ho * Wo, seed: seed &+ 3)
        var grads = [Float](repeating: 0, count: layout.count)
        down.forward(a.views, inp, testPass(params, unused.pointer, batch: B, scratch: scratch))
        down.backward(dinp: &first, dout: dout, inp: inp, a.views, testPass(params, &grads, batch: B, scratch: scratch), accumulate: true)
        down.backward(dinp: &second, dout: dout, inp: inp, a.views, testPass(params, &grads, batch: B, scratch: scratch), accumulate: false)
        XCTAssertEqual(first, second)
    }

    func testBottomRightDownsample() {
        checkBottomRightDownsample(height: 4, width: 6, signal: false, seed: 80)
        checkBottomRightDownsample(height: 2, width: 2, signal: false, seed: 81)
    }

    func testBottomRightSignalDownsample() {
        checkBottomRightDownsample(height: 1, width: 10, signal: true, seed: 82)
    }

    /// e = [sin(t·ω), cos(t·ω)] or, flipped, [cos, sin], ω_i = 10000^(−i/(E/2 − s)); the default
    /// table is today's, bit for bit (s = 0 and no flip take the same path).
    func testSinusoidFlipAndShift() throws {
        let (E, T) = (8, 50)
        let plain = try SinusoidalEmbedding(dim: E, timesteps: T)
        let flipped = try SinusoidalEmbedding(dim: E, timesteps: T, flipSinToCos: true, freqShift: 1)
        for t in [0, 1, 7, 49] {
            for i in 0..<E / 2 {
                let omega0 = pow(10000.0, -Double(i) / 4), omega1 = pow(10000.0, -Double(i) / 3)
                XCTAssertEqual(Double(plain.table.pointer[t * E + i]), sin(Double(t) * omega0), accuracy: 1e-6)
                XCTAssertEqual(Double(plain.table.pointer[t * E + 4 + i]), cos(Double(t) * omega0), accuracy: 1e-6)
                XCTAssertEqual(Double(flipped.table.pointer[t * E + i]), cos(Double(t) * omega1), accuracy: 1e-6)
                XCTAssertEqual(Double(flipped.table.pointer[t * E + 4 + i]), sin(Double(t) * omega1), accuracy: 1e-6)
            }
        }
    }

    /// y = (x − μ)/√(σ² + ε) with γ = 1, β = 0: a large ε shows.
    func testGroupNormEpsilon() {
        var layout = ParameterLayout()
        let norm = GroupNorm(&layout, "n", channels: 2, groups: 1, epsilon: 0.5)
        var params = [Float](repeating: 0, count: layout.count)
        for c in 0..<2 { params[norm.gamma + c] = 1 }
        let x: [Float] = [1, 2, 3, 4]  // (C 2, B 1, N 2): μ = 2.5, σ² = 1.25
        var y = [Float](repeating: 0, count: 4), mean = [Float](repeating: 0, count: 1), rstd = mean
        norm.forward(&y, mean: &mean, rstd: &rstd, x, params, batch: 1, spatial: 2)
        for i in 0..<4 { XCTAssertEqual(Double(y[i]), (Double(x[i]) - 2.5) / (1.25 + 0.5).squareRoot(), accuracy: 1e-6) }
    }

    static let options: UNetConfig = {
        var c = UNetConfig(channels: 1, height: 8, width: 8, baseChannels: 8, channelMult: [1, 2], resBlocks: 1,
                           attentionLevels: [0, 1], attentionHeads: 1, groups: 4, timeEmbedDim: 8)
        (c.flipSinToCos, c.freqShift, c.normEps, c.downsamplePadding, c.attentionHeadDim, c.middleAttention) =
            (true, 1, 1e-3, 0, 4, false)
        return c
    }()

    /// Checkpoint JSON: a default config writes none of the options (the file it always wrote);
    /// changed ones are written and read back.
    func testOptionsAreWrittenOnlyWhenChanged() throws {
        let plain = try JSONSerialization.jsonObject(with: JSONEncoder().encode(UNetTests.tiny)) as! [String: Any]
        for key in ["flip_sin_to_cos", "freq_shift", "norm_eps", "downsample_padding", "attention_head_dim", "middle_attention"] {
            XCTAssertNil(plain[key], key)
        }
        let data = try JSONEncoder().encode(Self.options)
        let written = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        XCTAssertEqual(written["downsample_padding"] as? Int, 0)
        XCTAssertEqual(written["middle_attention"] as? Bool, false)
        XCTAssertEqual(try JSONDecoder().decode(UNetConfig.self, from: data), Self.options)
    }

    func testOptionsAreValidated() {
        func refused(_ change: (inout UNetConfig) -> Void, _ words: String, line: UInt = #line) {
            var c = Self.options
            change(&c)
            XCTAssertThrowsError(try c.validate(), line: line) { XCTAssert("\($0)".contains(words), "\($0)", line: line) }
        }
        refused({ $0.freqShift = 4 }, "freq_shift")  // E/2 = 4: ω divides by zero
        refused({ $0.normEps = 0 }, "norm_eps")
        refused({ $0.downsamplePadding = 2 }, "downsample_padding")
        refused({ $0.attentionHeadDim = 3 }, "attention_head_dim (3) must divide the 8 channels")
        refused({ $0.attentionHeadDim = -1 }, "attention_head_dim")
        XCTAssertNoThrow(try Self.options.validate())
    }
}

extension UNetTests {
    /// The whole UNet with every option changed, by finite differences.
    func testUNetGradientsWithDiffusersOptions() throws {
        let net = try Self.makeTiny(DiffusersOptionsTests.options)
        XCTAssertNil(net.middle[0].attention)
        XCTAssertEqual(net.encoder[0].attention?.heads, 2)  // 8 channels / 4
        XCTAssertEqual(net.encoder.compactMap(\.down).first?.symmetric, false)
        try checkNetworkGradients(DiffusersOptionsTests.options, labels: [1, 3], seed: 500, directional: false)
    }
}
