// Pinned values: for fixed seeds and settings, the exact bits of losses, samples and
// checkpoint tensors that the engine produced before the ABI 0.2 refactor (issue 7), re-pinned
// once when training draws became keyed by (seed, step, global sample index) (issue 12), and
// once for issue 18's kernels (the engine's own GEMM, Sources/DDPMKernels/ddpm_gemm.h, in
// place of OpenBLAS's; SiLU, GroupNorm, LayerNorm and sums in C; Winograd convolutions; the
// SIMD softmax): their results are the same bits on every CPU and ISA path, so these hashes
// hold on any x86-64 (DDPM_KERNEL_ISA=baseline|avx2|avx512).
// A refactor that is meant to change nothing must leave every hash here unchanged; a
// change of numerics must update them on purpose, saying why in the commit.
//
// Each hash is FNV-1a (64 bit) over the IEEE bit patterns, in order. The first failing
// run prints the new values so that an intended change can be pinned again.
import XCTest
@testable import DDPM

/// FNV-1a over the bit patterns of `values`.
func bitHash<C: Collection>(_ values: C) -> UInt64 where C.Element == Float {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for v in values {
        var bits = v.bitPattern
        for _ in 0..<4 {
            h = (h ^ UInt64(bits & 0xFF)) &* 0x0000_0100_0000_01B3
            bits >>= 8
        }
    }
    return h
}

final class PinnedValuesTests: XCTestCase {
    /// 2-D points in [−1, 1], deterministic.
    func points(_ n: Int, seed: UInt64) -> [Float] { uniforms(2 * n, seed: seed) }

    func mlpModel(numClasses: Int = 0) throws -> DiffusionModel {
        var training = TrainingConfig()
        training.seed = 1234
        training.optimizer.learningRate = 2e-3
        return try DiffusionModel(schedule: try NoiseSchedule.cosine(steps: 50),
                                  network: .mlp(ResidualMLP.Config(dataDim: 2, hidden: 16, depth: 2)),
                                  training: training,
                                  conditioning: numClasses > 0 ? .classes(numClasses) : .none)
    }

    func assertPinned(_ name: String, _ values: [Float], _ expected: UInt64,
                      file: StaticString = #filePath, line: UInt = #line) {
        let h = bitHash(values)
        if h != expected {
            print("[pinned] \(name) = 0x\(String(h, radix: 16)) first values \(values.prefix(4))")
        }
        XCTAssertEqual(h, expected, "\(name): bits changed (hash 0x\(String(h, radix: 16)))", file: file, line: line)
    }

    func testMLPTrainingAndSamplingBitsArePinned() throws {
        let model = try mlpModel()
        var losses: [Float] = []
        for step in 0..<15 { losses.append(try model.trainStep(x0: points(32, seed: UInt64(step)))) }
        assertPinned("mlp losses", losses, 0xc34dfa29_73b93c0e)
        assertPinned("mlp weights", model.network.parameters.valuesArray, 0x1b4c027c_952313f0)
        assertPinned("mlp ema", model.emaValues, 0xee9cadf8_b367fc5f)
        var options = SamplerOptions()
        options.seed = 9
        assertPinned("mlp ddpm samples", try model.sample(count: 8, options: options), 0x30504e33_f66c7a0c)
        options.method = .ddim
        options.steps = 10
        options.eta = 0.5
        options.clipX0 = -1...1
        // Issue 9: DDIM with clipping keeps the model's ε̂ (diffusers' use_clipped_model_output =
        // False); 0.1 re-derived ε̂ from the clipped x̂_0, still available with useClippedModelOutput.
        assertPinned("mlp ddim samples", try model.sample(count: 8, options: options), 0xd7c89822_f91d4dc2)
        options.useClippedModelOutput = true
        assertPinned("mlp ddim samples, clipped model output", try model.sample(count: 8, options: options), 0xfb33f556_0a5077f0)
        options.useClippedModelOutput = false
        options.method = .ddpm
        options.steps = 7
        options.variance = .posterior
        assertPinned("mlp respaced ddpm samples", try model.sample(count: 8, options: options), 0xc0123ca8_b5c01d3e)
    }

    func testGuidedSamplingBitsArePinned() throws {
        let model = try mlpModel(numClasses: 3)
        let labels: [Int32] = [0, 1, 2, 1, 0, 2, 3, 1]
        var losses: [Float] = []
        for step in 0..<10 { losses.append(try model.trainStep(x0: points(8, seed: UInt64(50 + step)), labels: labels)) }
        assertPinned("conditional losses", losses, 0xbb71a8ab_9c4f4adf)
        var options = SamplerOptions()
        options.seed = 3
        options.method = .ddim
        options.steps = 12
        assertPinned("guided ddim samples", try model.sample(count: 8, labels: labels, options: options,
                                                             predict: PredictOptions(guidanceScale: 2.5)), 0xc0f43f4e_1e665d17)
    }

    func testUNetTrainingBitsArePinned() throws {
        let config = UNetConfig(channels: 1, height: 8, width: 8, baseChannels: 8, channelMult: [1, 2], resBlocks: 1,
                                attentionLevels: [1], attentionHeads: 2, groups: 4, dropout: 0.1, timeEmbedDim: 16)
        var training = TrainingConfig()
        training.seed = 77
        let model = try DiffusionModel(schedule: try NoiseSchedule.linear(steps: 40, scaleToSteps: true),
                                       network: .unet(config), training: training, conditioning: .classes(2))
        var losses: [Float] = []
        for step in 0..<4 {
            losses.append(try model.trainStep(x0: uniforms(4 * 64, seed: UInt64(step)), labels: [0, 1, 2, 1]))
        }
        assertPinned("unet losses", losses, 0x9c76b49c_c8e57586)
        assertPinned("unet weights", model.network.parameters.valuesArray, 0x9c6c5efa_5ca4e8e7)
        var options = SamplerOptions()
        options.method = .ddim
        options.steps = 5
        options.seed = 11
        assertPinned("unet guided samples", try model.sample(count: 2, labels: [0, 1], options: options,
                                                             predict: PredictOptions(guidanceScale: 1.5)), 0xa958a6b3_a90ab5e2)
    }

    func testCallbackSamplerBitsArePinned() throws {
        // The exact ε* of N(0.3, 0.5²) data: ε*(x, t) = √(1−ᾱ)(x − √ᾱ μ)/(ᾱσ² + 1 − ᾱ).
        let schedule = try NoiseSchedule.linear(steps: 100, scaleToSteps: true)
        let (mu, var0) = (0.3, 0.25)
        let predictor = ClosureDenoiser(sampleSize: 3) { out, x, t, _, batch in
            let a = schedule.alphaBar[t]
            for i in 0..<batch * 3 {
                out[i] = Float((1 - a).squareRoot() * (Double(x[i]) - a.squareRoot() * mu) / (a * var0 + 1 - a))
            }
        }
        var options = SamplerOptions()
        options.seed = 5
        var out = [Float](repeating: 0, count: 12)
        try out.withUnsafeMutableBufferPointer {
            try schedule.sample(into: $0.baseAddress!, count: 4, denoiser: predictor, options: options)
        }
        assertPinned("callback ddpm samples", out, 0x196aeb35_e1055a0c)
    }

    func testCheckpointTensorsArePinned() throws {
        let model = try mlpModel()
        for step in 0..<5 { _ = try model.trainStep(x0: points(16, seed: UInt64(100 + step))) }
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("pinned-\(getpid()).safetensors").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try model.save(to: path)
        let file = try SafeTensors.read(path: path)
        var all: [Float] = []
        for name in file.tensors.keys.sorted() where file.tensors[name]!.dtype == .f32 {
            all += try file.floats(name, shape: file.tensors[name]!.shape)
        }
        assertPinned("checkpoint f32 tensors", all, 0x858ec929_b84b445b)
        let loaded = try DiffusionModel.load(from: path)
        let next = try loaded.trainStep(x0: points(16, seed: 200))
        assertPinned("loss after reload", [next], 0xa92e7180_595185ca)
    }
}
