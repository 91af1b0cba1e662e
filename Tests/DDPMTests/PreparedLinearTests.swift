// Linear weights prepared once per prediction (Layers/Linear+Prepared.swift, PreparedWeights.swift):
// a linear layer that reads them computes the bits it computes when its GEMMs pack the weights
// themselves, on every ISA path; lookups fail for other parameters, a thin product, a call of one
// chunk, another path and after `release`; weights overwritten in place after preparing would be
// told apart (the negative control); and the MLP's predictions release them before they return,
// so that predictions follow the weights through train steps (the pinned values check the bits).
import XCTest
@testable import DDPM
import DDPMKernels

final class PreparedLinearTests: XCTestCase {
    var savedISA = KernelISA.current
    override func setUp() { savedISA = KernelISA.current }
    override func tearDown() { KernelISA.use(savedISA) }

    /// (layer, B): widths that are and are not multiples of the paths' panels (NR 8, 16, 32),
    /// a thin readout (O = 2) and a thin input (I = 2); batches of one row, one panel and more.
    static func layers() -> (layout: ParameterLayout, list: [(linear: Linear, batch: Int)]) {
        var layout = ParameterLayout()
        let list: [(Linear, Int)] = [
            (Linear(&layout, "square", in: 64, out: 64), 37),
            (Linear(&layout, "odd", in: 50, out: 71), 9),
            (Linear(&layout, "deep", in: 300, out: 40), 16),  // k past one KC block (256)
            (Linear(&layout, "readout", in: 48, out: 2), 21),
            (Linear(&layout, "input", in: 2, out: 48), 21),
            (Linear(&layout, "row", in: 33, out: 20), 1),
        ]
        return (layout, list)
    }

    /// (forward out, forward out accumulated onto `base`, backward dinp, dinp accumulated, gradients)
    /// with or without `prepared` (the backward reads no prepared weights: the forward's bits matter).
    static func run(_ c: (linear: Linear, batch: Int), _ params: [Float], prepared: PreparedWeights?) -> [[Float]] {
        let (lin, B) = c
        let (I, O) = (lin.inFeatures, lin.outFeatures)
        let inp = UNetGradientCheck.normals(B * I, seed: 11), base = UNetGradientCheck.normals(B * O, seed: 12)
        let dout = UNetGradientCheck.normals(B * O, seed: 13), dbase = UNetGradientCheck.normals(B * I, seed: 14)
        var out = [Float](repeating: .nan, count: B * O), acc = base
        var dinp = [Float](repeating: .nan, count: B * I), dacc = dbase
        var grads = [Float](repeating: 0, count: params.count)
        params.withUnsafeBufferPointer { p in
            lin.forward(&out, inp, p.baseAddress!, batch: B, prepared: prepared)
            lin.forward(&acc, inp, p.baseAddress!, batch: B, accumulate: true, prepared: prepared)
            lin.backward(dinp: &dinp, &grads, dout: dout, inp: inp, p.baseAddress!, batch: B)
            lin.backward(dinp: &dacc, &grads, dout: dout, inp: inp, p.baseAddress!, batch: B, accumulate: true)
        }
        return [out, acc, dinp, dacc, grads]
    }

    func testPreparedWeightsGiveTheSameBitsOnEveryPath() throws {
        let (layout, list) = Self.layers()
        let params = UNetGradientCheck.randomParameters(layout, seed: 5)
        for isa in KernelISA.supported {
            XCTAssertTrue(KernelISA.use(isa))
            for c in list {
                let prepared = PreparedWeights([c.linear])
                try params.withUnsafeBufferPointer { p in try prepared.prepare(p.baseAddress!, batch: c.batch, chunks: 2) }
                let held = params.withUnsafeBufferPointer { p in prepared.weights(c.linear.weight, .linearForward, params: p.baseAddress!) }
                // prepared unless the product is thin (fewer than NR/2 columns: the GEMM runs it transposed)
                XCTAssertEqual(held != nil, 2 * c.linear.outFeatures >= ddpm_sgemm_nr(), "\(isa.name): \(c.linear.weight) prepared")
                let own = Self.run(c, params, prepared: nil), got = Self.run(c, params, prepared: prepared)
                for (i, what) in ["forward", "forward accumulated", "dinp", "dinp accumulated", "gradients"].enumerated() {
                    assertSameBits(got[i], own[i], "\(isa.name), \(c.linear.inFeatures)→\(c.linear.outFeatures): \(what), prepared vs own")
                }
            }
        }
    }

    func testLookupsOnlyMatchTheParametersFormAndPathPrepared() throws {
        let (layout, list) = Self.layers()
        let c = list[1]
        let params = UNetGradientCheck.randomParameters(layout, seed: 6)
        let other = params.map { $0 * 0.5 }
        let prepared = PreparedWeights([c.linear])
        try params.withUnsafeBufferPointer { p in try prepared.prepare(p.baseAddress!, batch: c.batch, chunks: 2) }
        params.withUnsafeBufferPointer { p in
            XCTAssertNotNil(prepared.weights(c.linear.weight, .linearForward, params: p.baseAddress!))
            XCTAssertNil(prepared.weights(list[0].linear.weight, .linearForward, params: p.baseAddress!), "a layer not listed")
        }
        other.withUnsafeBufferPointer { p in
            XCTAssertNil(prepared.weights(c.linear.weight, .linearForward, params: p.baseAddress!), "other parameters")
        }
        // Running with other parameters does not read the prepared weights: their own result.
        let withOther = Self.run(c, other, prepared: prepared), ownOther = Self.run(c, other, prepared: nil)
        for i in withOther.indices { assertSameBits(withOther[i], ownOther[i], "other parameters, output \(i)") }
        // Negative control: weights prepared from values since overwritten in place (the same
        // address: what a cache kept across a train step would see) give other bits, so the tests
        // comparing with the layer's own packing would catch a stale cache.
        var changing = params
        let staleOut = try changing.withUnsafeMutableBufferPointer { p -> [Float] in
            let forged = PreparedWeights([c.linear])
            try forged.prepare(p.baseAddress!, batch: c.batch, chunks: 2)
            for i in 0..<c.linear.inFeatures * c.linear.outFeatures { p[c.linear.weight + i] *= 0.5 }
            return runInPlace(c, p, prepared: forged)
        }
        XCTAssertNotNil(firstBitDifference(staleOut, Self.run(c, changing, prepared: nil)[0]), "stale weights would be told apart")
        // A call of one chunk prepares no linear weights (its GEMMs pack each once anyway).
        try params.withUnsafeBufferPointer { p in
            try prepared.prepare(p.baseAddress!, batch: c.batch, chunks: 1)
            XCTAssertNil(prepared.weights(c.linear.weight, .linearForward, params: p.baseAddress!), "one chunk")
            try prepared.prepare(p.baseAddress!, batch: c.batch, chunks: 2)
        }
        // After release, and on another path, nothing is found.
        let preparedOn = KernelISA.current
        for isa in KernelISA.supported where isa != preparedOn {
            XCTAssertTrue(KernelISA.use(isa))
            params.withUnsafeBufferPointer { p in
                XCTAssertNil(prepared.weights(c.linear.weight, .linearForward, params: p.baseAddress!), "another ISA path")
            }
        }
        KernelISA.use(savedISA)
        prepared.release()
        params.withUnsafeBufferPointer { p in
            XCTAssertNil(prepared.weights(c.linear.weight, .linearForward, params: p.baseAddress!), "after release")
        }
    }

    /// The forward of `run` on parameters at a fixed address (the prepared weights' source).
    func runInPlace(_ c: (linear: Linear, batch: Int), _ p: UnsafeMutableBufferPointer<Float>,
                    prepared: PreparedWeights) -> [Float] {
        let (lin, B) = c
        let inp = UNetGradientCheck.normals(B * lin.inFeatures, seed: 11)
        var out = [Float](repeating: .nan, count: B * lin.outFeatures)
        lin.forward(&out, inp, p.baseAddress!, batch: B, prepared: prepared)
        return out
    }

    func testMLPPredictionsFollowTheWeightsThroughTrainSteps() throws {
        // A prediction prepares the MLP's weights and releases them before it returns; every prediction must give the bits of the network's own forward on a copy of
        // the weights of the moment (another address: nothing prepared is for it).
        var training = TrainingConfig()
        training.emaDecay = 0.5
        let config = ResidualMLP.Config(dataDim: 5, hidden: 48, depth: 2, timeEmbedDim: 16)
        for isa in KernelISA.supported {
            XCTAssertTrue(KernelISA.use(isa))
            let model = try DiffusionModel(schedule: try .linear(steps: 50), network: .mlp(config), training: training)
            try model.network.parameters.setValues(UNetGradientCheck.normals(model.network.parameters.count, seed: 40).map { 0.2 * $0 })
            let B = 300, S = config.dataDim  // more than one chunk of rows
            let x = UNetGradientCheck.normals(B * S, seed: 41)
            func check(_ when: String) throws -> [Float] {
                var predicted = [Float](repeating: .nan, count: B * S), direct = predicted
                try model.predict(&predicted, x: x, t: 17, labels: nil, batch: B, options: PredictOptions(useEMA: false))
                XCTAssertNil(model.network.preparedWeights?.source, "\(isa.name), \(when): released after the prediction")
                XCTAssertGreaterThan(model.network.preparedWeights?.heldFloats ?? 0, 0, "\(isa.name): the prediction prepared")
                var rng = Philox(seed: 0)
                model.network.parameters.values.array.withUnsafeBufferPointer { w in
                    model.network.forward(&direct, x: x, t: [Int32](repeating: 17, count: B), labels: nil, batch: B,
                                          params: w.baseAddress!, training: false, rng: &rng)
                }
                assertSameBits(predicted, direct, "\(isa.name), \(when): prediction vs forward")
                return predicted
            }
            let initial = try check("initial")
            _ = try model.trainStep(x0: UNetGradientCheck.normals(B * S, seed: 42))
            XCTAssertNil(model.network.preparedWeights?.source, "\(isa.name): nothing valid after the train step")
            let stepped = try check("after a train step")
            XCTAssertNotNil(firstBitDifference(initial, stepped), "a train step changes the prediction")
        }
    }
}
