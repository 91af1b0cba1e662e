// A train step's work on the WorkPool (Model/ChunkPlan.swift): the batch in fixed chunks,
// chunk c on replica c of the network (chunk 0 on the network itself) with its own
// activations and gradients; then the gradients summed in chunk order.
//
// The jobs are closures made once with the model and kept, so a step allocates nothing
// (WorkPool.swift); the arguments of the step being computed are in `TrainChunks.call`.
//
//   B = batch, S = floats per sample, O = outputSize (S, or 2S with a learned variance), P = parameters.

/// The arguments of the train step in progress, for its chunk jobs.
struct TrainCall {
    let x0: UnsafePointer<Float>  // (B, S)
    let cond: ConditionBatch  // the batch's conditioning after condition dropout
    let plan: ChunkPlan
    let sampleOffset: Int, globalBatch: Int
    /// ∂L/∂out (B, O) of the backward pass.
    var dout: UnsafePointer<Float>?
}

/// The constants of the parameter update in progress.
struct ParameterUpdate {
    let adam: AdamW.Coefficients
    let gradScale: Float
    let emaDecay: Float
}

/// The chunk jobs of a model's train step and the call they serve.
struct TrainChunks {
    var call: TrainCall?
    var update: ParameterUpdate?
    /// Forward and loss of chunk c: its loss to chunkLoss[c] (or its error to chunkErrors[c]).
    private(set) var forwardJob: (Int, Int) -> Void = { _, _ in }
    /// Backward of chunk c into its replica's gradients.
    private(set) var backwardJob: (Int, Int) -> Void = { _, _ in }
    /// Parameters [r·span, (r+1)·span) of the chunks' gradients summed into the network's.
    private(set) var reduceJob: (Int, Int) -> Void = { _, _ in }
    /// AdamW and the EMA on parameters [r·span, (r+1)·span).
    private(set) var updateJob: (Int, Int) -> Void = { _, _ in }
    /// Parameters per reduction or update job.
    static let span = 1 << 16

    mutating func makeJobs(_ model: DiffusionModel) {
        forwardJob = { [unowned model] c, _ in model.forwardAndLoss(chunk: c) }
        backwardJob = { [unowned model] c, _ in model.backward(chunk: c) }
        reduceJob = { [unowned model] r, _ in model.reduceGradients(span: r) }
        updateJob = { [unowned model] r, _ in model.updateParameters(span: r) }
    }
}

extension DiffusionModel {
    /// Forward pass and loss of chunk c of the current call.
    func forwardAndLoss(chunk c: Int) {
        let call = chunks.call!
        let buf = buffers
        let (S, O) = (network.sampleSize, network.outputSize)
        let (r0, rows) = call.plan.range(c)
        let (net, x) = (replicas[c], r0 * S)
        let learned = network.learnsVariance
        let importance = resampler != nil
        // Dropout of sample i from its own stream (Layers/Dropout.swift), as in one pass over the batch.
        var dropoutKey = Philox.keyed(seed: rng.seed, step: step, sample: call.sampleOffset + r0, stream: 3)
        net.forward(learned ? buf.full.pointer + r0 * O : buf.output.pointer + x, x: buf.xt.pointer + x, t: buf.t.pointer + r0,
                    cond: call.cond.rows(from: r0, count: rows), batch: rows, params: network.parameters.values.pointer,
                    training: true, rng: &dropoutKey)
        if learned { split(buf.full.pointer + r0 * O, into: buf.output.pointer + x, buf.variance.pointer + x, batch: rows, sampleSize: S) }
        // L = Σ w(t)·‖out − target‖²/(B_global·S) (Objective.swift; L_simple for ε with uniform weights)
        var loss = objective.lossAndGradient(dout: buf.dout.pointer + x, output: buf.output.pointer + x, x0: call.x0 + x,
                                             eps: buf.eps.pointer + x, t: buf.t.pointer + r0, batch: rows, sampleSize: S,
                                             globalBatch: call.globalBatch,
                                             targetScratch: buf.target.pointer + (buf.target.count > 0 ? x : 0),
                                             sampleWeights: importance ? UnsafePointer(buf.importance.pointer + r0) : nil,
                                             perSample: importance ? buf.perSample.pointer + r0 : nil)
        if learned {
            // + λ·T·L_t for the variance, the mean stopped (VarianceLoss.swift)
            do {
                loss += Float(try varianceLoss.lossAndGradient(dvar: buf.dvariance.pointer + x, v: buf.variance.pointer + x,
                                                               output: buf.output.pointer + x, x0: call.x0 + x, xt: buf.xt.pointer + x,
                                                               t: buf.t.pointer + r0, batch: rows, sampleSize: S,
                                                               globalBatch: call.globalBatch, x0Hat: buf.x0Hat.pointer + x))
            } catch { chunkErrors[c] = error }
            merge(buf.dout.pointer + x, buf.dvariance.pointer + x, into: buf.dfull.pointer + r0 * O, batch: rows, sampleSize: S)
        }
        chunkLoss.pointer[c] = loss
    }

    /// Floats of the networks' buffers for a train step by `plan`: each chunk's activations and,
    /// for every chunk but the first, a replica's gradients (P) and timestep table.
    func trainingFloats(_ plan: ChunkPlan) -> Double {
        var floats = 0.0
        for c in 0..<plan.count { floats += network.activationFloats(batch: plan.range(c).rows, training: true) }
        return floats + Double(plan.count - 1) * (Double(network.parameters.count) + Double(schedule.count) * Double(network.config.timeEmbedDim))
    }

    /// ∂L/∂θ into `network.parameters.grads` from dout = ∂L/∂out (B, O) of the last training
    /// forward: each chunk's backward on its replica into its own gradients, then
    /// g = ((g_0 + g_1) + g_2) + … element by element, in chunk order whatever the threads.
    func backwardChunks(dout: UnsafePointer<Float>, batch B: Int) {
        chunks.call!.dout = dout
        let plan = chunks.call!.plan
        precondition(plan.batch == B, "the backward pass follows the forward pass of the same batch")
        WorkPool.shared.parallelFor(chunks: plan.count, chunks.backwardJob)
        guard plan.count > 1 else { return }
        let P = network.parameters.count
        WorkPool.shared.parallelFor(chunks: (P + TrainChunks.span - 1) / TrainChunks.span, chunks.reduceJob)
    }

    /// Backward pass of chunk c of the current call.
    func backward(chunk c: Int) {
        let call = chunks.call!
        let (r0, rows) = call.plan.range(c)
        let net = replicas[c]
        net.parameters.zeroGrads()
        net.backward(dout: call.dout! + r0 * network.outputSize, batch: rows)
    }

    /// Sums the chunks' gradients of parameters [r·span, (r+1)·span) into the network's, in chunk order.
    func reduceGradients(span r: Int) {
        let plan = chunks.call!.plan
        let P = network.parameters.count
        let (lo, hi) = (r * TrainChunks.span, min(P, (r + 1) * TrainChunks.span))
        let g = network.parameters.grads.pointer
        for c in 1..<plan.count {
            let gc = replicas[c].parameters.grads.pointer
            for k in lo..<hi { g[k] += gc[k] }
        }
    }

    /// AdamW, then the EMA step, of parameters [r·span, (r+1)·span), in one pass: elementwise,
    /// so every value is what one pass over all of them (and EMA.update after it) gives.
    func updateParameters(span r: Int) {
        let u = chunks.update!
        let params = network.parameters
        let (lo, hi) = (r * TrainChunks.span, min(params.count, (r + 1) * TrainChunks.span))
        optimizer.update(params.values.pointer, grads: params.grads.pointer, gradScale: u.gradScale, range: lo..<hi, u.adam,
                         ema: ema.pointer, emaDecay: u.emaDecay)
    }
}
