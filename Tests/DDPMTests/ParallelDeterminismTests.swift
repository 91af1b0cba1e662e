// The work split over threads (Parallel/): a seed gives bitwise the same losses, weights,
// EMA and samples on 1, 2 and 3 threads (fixed chunks, fixed reduction order), for the MLP
// and the UNet, with and without a learned variance; and the chunks add up to the batch. Also
// the same bits on every ISA path of the C kernels.
import XCTest
@testable import DDPM

final class ParallelDeterminismTests: XCTestCase {
    override func tearDown() {
        setWorkPoolSize(BLASThreads.initial)
        super.tearDown()
    }

    /// Everything a short run produces, as bit hashes: losses, weights, EMA, DDPM samples
    /// (guided when conditional) and DDIM samples.
    func run(threads: Int, network: NetworkConfig, training: TrainingConfig, classes: Int, batch B: Int,
             steps: Int, samples n: Int) throws -> [String: UInt64] {
        setWorkPoolSize(threads)
        XCTAssertEqual(workPoolSize(), threads)
        let model = try DiffusionModel(schedule: try NoiseSchedule.cosine(steps: 30), network: network, training: training,
                                       conditioning: classes > 0 ? .classes(classes) : .none)
        let S = model.network.sampleSize
        var losses: [Float] = []
        for step in 0..<steps {
            let labels = classes > 0 ? (0..<B).map { Int32(($0 + step) % classes) } : nil
            losses.append(try model.trainStep(x0: uniforms(B * S, seed: UInt64(step)), labels: labels))
        }
        var options = SamplerOptions()
        options.seed = 5
        options.steps = 6
        let labels = classes > 0 ? (0..<n).map { Int32($0 % classes) } : nil
        let ddpm = try model.sample(count: n, labels: labels, options: options, predict: PredictOptions(guidanceScale: 2))
        options.method = .ddim
        let ddim = try model.sample(count: n, labels: labels, options: options, predict: PredictOptions(useEMA: false))
        return ["losses": bitHash(losses), "weights": bitHash(model.network.parameters.valuesArray),
                "ema": bitHash(model.emaValues), "ddpm": bitHash(ddpm), "ddim": bitHash(ddim)]
    }

    func assertSameOnEveryThreadCount(network: NetworkConfig, training: TrainingConfig, classes: Int = 0, batch: Int,
                                      steps: Int = 3, samples: Int, file: StaticString = #filePath, line: UInt = #line) throws {
        let one = try run(threads: 1, network: network, training: training, classes: classes, batch: batch,
                          steps: steps, samples: samples)
        for threads in [2, 3] {
            let other = try run(threads: threads, network: network, training: training, classes: classes, batch: batch,
                                steps: steps, samples: samples)
            for (name, hash) in one {
                XCTAssertEqual(other[name], hash, "\(name) differs between 1 and \(threads) threads", file: file, line: line)
            }
        }
    }

    /// A batch of 550 or 600 is 3 chunks of this MLP (at least 256 rows each).
    let mlp = NetworkConfig.mlp(ResidualMLP.Config(dataDim: 3, hidden: 32, depth: 2, timeEmbedDim: 16))
    let unet = NetworkConfig.unet(UNetConfig(channels: 1, height: 8, width: 8, baseChannels: 8, channelMult: [1, 2], resBlocks: 1,
                                             attentionLevels: [1], attentionHeads: 2, groups: 4, dropout: 0.1, timeEmbedDim: 16))
    /// The CIFAR-size UNet of issue 18 (6.47 M parameters).
    let cifar = NetworkConfig.unet(UNetConfig(channels: 3, height: 32, width: 32, baseChannels: 64, attentionLevels: [1]))

    func testChunkPlansDependOnlyOnBatchAndNetwork() {
        func rows(_ plan: ChunkPlan) -> [Int] { (0..<plan.count).map { plan.range($0).rows } }
        let P = 100_000  // few parameters: up to 4 training chunks
        // 550 rows of the narrow MLP: 3 chunks, the last shorter; 200 rows: 1 chunk (at least 256 rows a chunk at H = 32).
        XCTAssertEqual(rows(ChunkPlan.training(batch: 550, mlp, parameters: P)), [184, 184, 182])
        XCTAssertEqual(ChunkPlan.training(batch: 200, mlp, parameters: P).count, 1)
        // A wide MLP (H = 512, at least 32 rows): 2 chunks up to 512 rows, then chunks of about 256, at most 4.
        let wide = NetworkConfig.mlp(ResidualMLP.Config(dataDim: 2, hidden: 512))
        XCTAssertEqual(rows(ChunkPlan.training(batch: 100, wide, parameters: P)), [50, 50])
        XCTAssertEqual(ChunkPlan.training(batch: 512, wide, parameters: P).count, 2)
        XCTAssertEqual(ChunkPlan.training(batch: 768, wide, parameters: P).count, 3)
        XCTAssertEqual(ChunkPlan.training(batch: 4096, wide, parameters: P).range(0).rows, 1024)
        XCTAssertEqual(ChunkPlan.training(batch: 40, wide, parameters: P).count, 2)
        XCTAssertEqual(ChunkPlan.training(batch: 63, wide, parameters: P).count, 2)
        XCTAssertEqual(ChunkPlan.training(batch: 32, wide, parameters: P).count, 1)
        // The 8×8 UNet (at least 16 rows): 70 rows in 2 chunks of 35; inference in chunks of 32 (2048 pixels).
        XCTAssertEqual(rows(ChunkPlan.training(batch: 70, unet, parameters: P)), [35, 35])
        XCTAssertEqual(ChunkPlan.training(batch: 16, unet, parameters: P).count, 1)
        XCTAssertEqual(unet.inferenceRows, 32)
        // 32×32 images: work is rows × pixels, so one image is a chunk's least, 16 rows its most
        // before a batch is cut in more than two; two images an inference chunk.
        XCTAssertEqual(rows(ChunkPlan.training(batch: 2, cifar, parameters: P)), [1, 1])
        XCTAssertEqual(rows(ChunkPlan.training(batch: 8, cifar, parameters: P)), [4, 4])
        XCTAssertEqual(rows(ChunkPlan.training(batch: 7, cifar, parameters: P)), [4, 3])
        XCTAssertEqual(rows(ChunkPlan.training(batch: 32, cifar, parameters: P)), [16, 16])
        XCTAssertEqual(rows(ChunkPlan.training(batch: 64, cifar, parameters: P)), [16, 16, 16, 16])
        XCTAssertEqual(ChunkPlan.training(batch: 1, cifar, parameters: P).count, 1)
        XCTAssertEqual(cifar.inferenceRows, 2)
        XCTAssertEqual(rows(ChunkPlan.inference(batch: 4, cifar)), [2, 2])
        XCTAssertEqual(rows(ChunkPlan.inference(batch: 5, cifar)), [2, 2, 1])
        // The replicas' gradients are bounded: Ho et al.'s 35.7 M parameters get one replica (2
        // chunks), a 6.5 M network three (4 chunks), 30 M two.
        XCTAssertEqual(ChunkPlan.maxTrainingChunks(parameters: 35_713_539), 2)
        XCTAssertEqual(ChunkPlan.maxTrainingChunks(parameters: 6_472_195), 4)
        XCTAssertEqual(ChunkPlan.maxTrainingChunks(parameters: 30_000_000), 3)
        XCTAssertEqual(ChunkPlan.maxTrainingChunks(parameters: 1 << 27), 1)
        XCTAssertEqual(rows(ChunkPlan.training(batch: 64, cifar, parameters: 35_713_539)), [32, 32])
        // Inference rows divide predictionChunk: 4×4 images take 64 a chunk, 16×16 eight.
        let small = NetworkConfig.unet(UNetConfig(channels: 1, height: 4, width: 4))
        let mid = NetworkConfig.unet(UNetConfig(channels: 1, height: 16, width: 16))
        XCTAssertEqual([small.inferenceRows, mid.inferenceRows], [64, 8])
        for config in [mlp, wide, unet, cifar, small, mid] { XCTAssertEqual(predictionChunk % config.inferenceRows, 0) }
    }

    /// A replica that only predicts holds no gradient block (P floats: 143 MB for Ho et al.'s
    /// network); one that trains a chunk gets it.
    func testPredictingReplicasHoldNoGradients() throws {
        setWorkPoolSize(2)
        let network = NetworkConfig.unet(UNetConfig(channels: 1, height: 32, width: 32, baseChannels: 4, channelMult: [1, 2],
                                                    resBlocks: 1, attentionLevels: [], groups: 2, timeEmbedDim: 8))
        let model = try DiffusionModel(schedule: try NoiseSchedule.cosine(steps: 30), network: network, training: TrainingConfig())
        let (S, P) = (model.network.sampleSize, model.network.parameters.count)
        var out = [Float](repeating: 0, count: 3 * S)
        try uniforms(3 * S, seed: 3).withUnsafeBufferPointer { x in
            try out.withUnsafeMutableBufferPointer {
                try model.predict($0.baseAddress!, x: x.baseAddress!, t: 5, labels: nil, batch: 3)
            }
        }
        XCTAssertEqual(model.replicas.copies.count, 1, "3 one-image chunks on 2 workers: one replica")
        XCTAssertEqual(model.replicas[1].parameters.grads.count, 0)
        _ = try model.trainStep(x0: uniforms(3 * S, seed: 4), labels: nil)  // 2 chunks
        XCTAssertEqual(model.replicas[1].parameters.grads.count, P)
        XCTAssertEqual(model.network.parameters.grads.count, P)
    }

    /// A UNet on 32×32 images: a batch of 3 trains in 2 chunks and samples in 3.
    func testLargeImageUNetSplitsSmallBatchesBitwiseTheSame() throws {
        var training = TrainingConfig()
        training.seed = 36
        let small = NetworkConfig.unet(UNetConfig(channels: 2, height: 32, width: 32, baseChannels: 4, channelMult: [1, 2],
                                                  resBlocks: 1, attentionLevels: [1], attentionHeads: 2, groups: 2,
                                                  dropout: 0.1, timeEmbedDim: 8))
        XCTAssertEqual(ChunkPlan.training(batch: 3, small, parameters: 1000).count, 2)
        try assertSameOnEveryThreadCount(network: small, training: training, classes: 2, batch: 3, steps: 2, samples: 3)
    }

    func testMLPIsBitwiseTheSameOnOneTwoAndThreeThreads() throws {
        var training = TrainingConfig()
        training.seed = 31
        try assertSameOnEveryThreadCount(network: mlp, training: training, batch: 600, samples: 300)
    }

    func testConditionalMLPWithLearnedVarianceAndImportanceSamplingIsBitwiseTheSame() throws {
        var training = TrainingConfig()
        training.seed = 32
        training.learnedVariance = true
        training.timestepSampling = .importance
        training.labelDropout = 0.2
        try assertSameOnEveryThreadCount(network: mlp, training: training, classes: 3, batch: 550, steps: 4, samples: 260)
    }

    func testUNetIsBitwiseTheSameOnOneTwoAndThreeThreads() throws {
        var training = TrainingConfig()
        training.seed = 33
        try assertSameOnEveryThreadCount(network: unet, training: training, classes: 2, batch: 40, steps: 2, samples: 70)
    }

    func testUNetWithLearnedVarianceIsBitwiseTheSame() throws {
        var training = TrainingConfig()
        training.seed = 34
        training.learnedVariance = true
        try assertSameOnEveryThreadCount(network: unet, training: training, batch: 36, steps: 2, samples: 66)
    }

    /// A UNet cross-attending at both levels to token captions read by a text encoder (two
    /// blocks), with condition dropout and guidance: the same bits on 1, 2 and 3 threads.
    func testTokenConditionedUNetWithTextEncoderIsBitwiseTheSame() throws {
        var config = UNetConfig(channels: 1, height: 8, width: 8, baseChannels: 8, channelMult: [1, 2], resBlocks: 1,
                                attentionLevels: [], attentionHeads: 2, groups: 4, timeEmbedDim: 16)
        config.crossAttentionLevels = [0, 1]
        let (V, L, B, n) = (7, 4, 40, 70)
        let conditioning = Conditioning.tokens(vocabulary: V, maxLength: L, dim: 8, encoder: .init(layers: 2, heads: 2))
        var training = TrainingConfig()
        training.seed = 37
        training.conditionDropout = 0.2
        // Captions of every length 0...L (0: the null condition), ids from a fixed stream.
        func captions(_ rows: Int, seed: Int) -> (ids: [Int32], lengths: [Int32]) {
            let lengths = (0..<rows).map { Int32(($0 + seed) % (L + 1)) }
            let ids = (0..<rows * L).map { i in i % L < Int(lengths[i / L]) ? Int32(1 + (i * 7 + seed) % (V - 1)) : 0 }
            return (ids, lengths)
        }
        func run(threads: Int) throws -> [String: UInt64] {
            setBLASThreads(threads)
            let model = try DiffusionModel(schedule: try NoiseSchedule.cosine(steps: 30), network: .unet(config), training: training,
                                           conditioning: conditioning)
            let S = model.network.sampleSize
            func withCaptions<R>(_ c: (ids: [Int32], lengths: [Int32]), _ body: (ConditionBatch) throws -> R) rethrows -> R {
                try c.ids.withUnsafeBufferPointer { i in
                    try c.lengths.withUnsafeBufferPointer { l in
                        var cond = ConditionBatch()
                        (cond.tokens, cond.lengths, cond.maxLength, cond.contextDim) = (i.baseAddress!, l.baseAddress!, L, 8)
                        return try body(cond)
                    }
                }
            }
            var losses: [Float] = []
            for step in 0..<2 {
                let x0 = uniforms(B * S, seed: UInt64(step))
                losses.append(try withCaptions(captions(B, seed: step)) { c in
                    try x0.withUnsafeBufferPointer { try model.trainStep(x0: $0.baseAddress!, cond: c, batch: B) }
                })
            }
            var options = SamplerOptions()
            (options.seed, options.steps) = (5, 6)
            var samples = [Float](repeating: 0, count: n * S)
            try withCaptions(captions(n, seed: 3)) { c in
                try samples.withUnsafeMutableBufferPointer {
                    try model.sample(into: $0.baseAddress!, count: n, cond: c, options: options, predict: PredictOptions(guidanceScale: 2))
                }
            }
            return ["losses": bitHash(losses), "weights": bitHash(model.network.parameters.valuesArray),
                    "ema": bitHash(model.emaValues), "guided samples": bitHash(samples)]
        }
        let one = try run(threads: 1)
        for threads in [2, 3] {
            let other = try run(threads: threads)
            for (name, hash) in one { XCTAssertEqual(other[name], hash, "\(name) differs between 1 and \(threads) threads") }
        }
    }

    /// Every ISA path of the C kernels (KernelISA: baseline, AVX2, AVX-512 where the CPU has
    /// them) gives the same bits: the UNet with dropout (GroupNorm, SiLU, reductions, AdamW, EMA)
    /// and the MLP (LayerNorm), trained and sampled.
    func testEveryKernelISAPathGivesTheSameBits() throws {
        var training = TrainingConfig()
        training.seed = 35
        var reference: [String: [String: UInt64]] = [:]
        try onEveryISAPath { isa in
            let runs = ["unet": try run(threads: 1, network: unet, training: training, classes: 2, batch: 20, steps: 2, samples: 6),
                        "mlp": try run(threads: 1, network: mlp, training: training, classes: 0, batch: 100, steps: 2, samples: 50)]
            for (net, hashes) in runs {
                guard let first = reference[net] else { reference[net] = hashes; continue }
                for (name, hash) in hashes { XCTAssertEqual(first[name], hash, "\(net) \(name) on \(isa.name)") }
            }
        }
        if KernelISA.supported.count < 2 { print("[isa] only \(KernelISA.best.name) on this CPU: nothing to compare") }
    }

    /// The chunks' gradients add up to the batch's: two data-parallel shards of 300 (2 chunks
    /// each) summed give the gradients of the batch of 600 (3 chunks), up to rounding.
    func testChunkedGradientsAddUpToTheBatch() throws {
        setWorkPoolSize(2)
        var training = TrainingConfig()
        training.seed = 35
        training.learnedVariance = true
        func model() throws -> DiffusionModel {
            try DiffusionModel(schedule: try NoiseSchedule.cosine(steps: 30), network: mlp, training: training)
        }
        let x0 = uniforms(600 * 3, seed: 1)
        let whole = try model()
        let loss = try x0.withUnsafeBufferPointer { try whole.computeGradients(x0: $0.baseAddress!, labels: nil, batch: 600) }
        let sharded = try model()
        var shardLoss: Float = 0
        var sum = [Float](repeating: 0, count: whole.gradients.count)
        for offset in [0, 300] {
            shardLoss += try x0.withUnsafeBufferPointer {
                try sharded.computeGradients(x0: $0.baseAddress! + offset * 3, labels: nil, batch: 300,
                                             sampleOffset: offset, globalBatch: 600)
            }
            for k in sum.indices { sum[k] += sharded.gradients[k] }
        }
        XCTAssertEqual(loss, shardLoss, accuracy: 1e-5 * abs(loss))
        var (diff, norm) = (0.0, 0.0)
        for k in sum.indices {
            diff += Double(sum[k] - whole.gradients[k]) * Double(sum[k] - whole.gradients[k])
            norm += Double(whole.gradients[k]) * Double(whole.gradients[k])
        }
        XCTAssertGreaterThan(norm, 0)
        XCTAssertLessThan(diff.squareRoot(), 1e-5 * norm.squareRoot())
    }

    /// The sampler's noise draw, cut into chunks of Sampler.noiseChunk floats on the pool, writes
    /// the bits of one pass over the stream on 1, 2 and 3 threads, also for a shard that starts
    /// inside a Philox block (offset 3 samples of 7 floats) and a last chunk that is short.
    func testChunkedNoiseDrawIsOnePassOfTheStream() throws {
        let (B, S, offset, global) = (2_500, 7, 3, 2_600)  // N = 17 500: three chunks
        XCTAssertGreaterThan(B * S, 2 * Sampler.noiseChunk)
        var options = SamplerOptions()
        options.seed = 77
        options.sampleOffset = offset
        options.globalBatch = global
        let schedule = try NoiseSchedule.cosine(steps: 30)
        let blocks = UInt64((global * S + 3) / 4)
        var expected = [Float](repeating: 0, count: B * S)
        Philox.fillNormal(&expected, count: B * S, seed: 77, base: blocks, from: offset * S)  // the first z after x_T
        for threads in [1, 2, 3] {
            setWorkPoolSize(threads)
            let sampler = try Sampler(schedule: schedule, options: options, batch: B, sampleSize: S)
            var z = [Float](repeating: .nan, count: B * S)
            z.withUnsafeMutableBufferPointer { sampler.drawNoise($0.baseAddress!) }
            XCTAssertEqual(z.map(\.bitPattern), expected.map(\.bitPattern), "\(threads) threads")
            XCTAssertEqual(sampler.rng.counter, 2 * blocks)
        }
    }
}
