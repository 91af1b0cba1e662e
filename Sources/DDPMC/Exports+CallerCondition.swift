// A caller's model that sees the whole condition of its rows (ddpm_cond_model_fn):
// ddpm_schedule_sample_cond and ddpm_schedule_vlb_cond, and the labels-only ddpm_model_fn of
// ddpm_schedule_sample / ddpm_schedule_vlb on the same path.
//
// The library does not know what a caller's model reads, so the condition is taken as given:
// per-row sizes come from the counts (vectors_count / n floats, tokens_count / n ids a row),
// and the callback gets, for the rows it is called on, a ddpm_cond_batch pointing into them.
import CDDPM
import DDPM

/// The caller's condition of `rows` rows (NULL: none), for a caller's model: counts must be
/// multiples of the rows, lengths in 0...(ids a row) with tokens, >= 0 without.
func callerConditionBatch(_ params: UnsafePointer<ddpm_cond_batch>?, rows: Int64) throws -> ConditionBatch {
    guard let params else { return .none }
    try checkCondBatchSize(params, .none)  // struct_size on a field boundary
    let p = try readParams(params, defaults: ddpm_cond_batch_default(), "cond")
    func perRow(_ count: Int64, _ given: Bool, _ name: String) throws -> Int {
        guard given else {
            guard count == 0 else { throw DDPMError.invalidArgument("cond->\(name) is NULL but \(name)_count is \(count)") }
            return 0
        }
        guard count >= rows, count % rows == 0 else {
            throw DDPMError.shapeMismatch("cond->\(name)_count is \(count), not a multiple of the \(rows) rows")
        }
        return Int(count / rows)
    }
    var batch = ConditionBatch(labels: p.labels, vectors: p.vectors, vectorDim: try perRow(p.vectors_count, p.vectors != nil, "vectors"))
    (batch.tokens, batch.maxLength) = (p.tokens, try perRow(p.tokens_count, p.tokens != nil, "tokens"))
    batch.lengths = p.lengths
    if let lengths = p.lengths {
        for b in 0..<Int(rows) where lengths[b] < 0 || (p.tokens != nil && Int(lengths[b]) > batch.maxLength) {
            throw DDPMError.invalidArgument("cond->lengths[\(b)] = \(lengths[b]) is outside 0...\(p.tokens != nil ? batch.maxLength : Int(Int32.max))")
        }
    }
    return batch
}

/// The caller's model as a Denoiser: model_fn is called with the ddpm_cond_batch of the rows it
/// predicts (NULL when `given` is false); a nonzero return cancels.
func callerDenoiser(sampleSize dim: Int64, _ type: PredictionType, given: Bool, _ fn: @escaping ddpm_cond_model_fn,
                    _ user: UnsafeMutableRawPointer?) -> ClosureDenoiser {
    ClosureDenoiser(sampleSize: Int(dim), predictionType: type) { o, x, t, cond, batch in
        var c = ddpm_cond_batch_default()
        (c.labels, c.vectors, c.tokens, c.lengths) = (cond.labels, cond.vectors, cond.tokens, cond.lengths)
        (c.vectors_count, c.tokens_count) = (cond.vectors == nil ? 0 : Int64(batch * cond.vectorDim),
                                             cond.tokens == nil ? 0 : Int64(batch * cond.maxLength))
        let status = given ? fn(user, o, x, Int64(batch), dim, Int32(t), &c) : fn(user, o, x, Int64(batch), dim, Int32(t), nil)
        if status != 0 { throw DDPMError.cancelled("the model callback returned \(status) at t = \(t)") }
    }
}

/// What ddpm_schedule_sample and ddpm_schedule_vlb call: the labels of a ddpm_cond_model_fn's batch.
struct LabelsOnlyCallback {
    let fn: ddpm_model_fn
    let user: UnsafeMutableRawPointer?
}

/// A ddpm_model_fn (labels only) as a ddpm_cond_model_fn: user_data is a LabelsOnlyCallback.
let labelsOnly: ddpm_cond_model_fn = { user, out, x, batch, dim, t, cond in
    let callback = user!.assumingMemoryBound(to: LabelsOnlyCallback.self).pointee
    return callback.fn(callback.user, out, x, batch, dim, t, cond?.pointee.labels)
}

/// Runs `body` with (model_fn, user_data) of a ddpm_cond_model_fn calling `fn` with the labels.
func withLabelsOnly<R>(_ fn: ddpm_model_fn, _ user: UnsafeMutableRawPointer?,
                       _ body: (ddpm_cond_model_fn, UnsafeMutableRawPointer) throws -> R) rethrows -> R {
    var callback = LabelsOnlyCallback(fn: fn, user: user)
    return try withUnsafeMutablePointer(to: &callback) { try body(labelsOnly, UnsafeMutableRawPointer($0)) }
}

/// ddpm_cond_batch of labels alone (what the labels-only entry points were given), or NULL.
func withLabelsBatch<R>(_ labels: UnsafePointer<Int32>?, _ body: (UnsafePointer<ddpm_cond_batch>?) throws -> R) rethrows -> R {
    guard let labels else { return try body(nil) }
    var c = ddpm_cond_batch_default()
    c.labels = labels
    return try withUnsafePointer(to: &c) { try body($0) }
}

@_cdecl("ddpm_schedule_sample_cond")
public func ddpm_schedule_sample_cond(
    _ handle: OpaquePointer?, _ params: UnsafePointer<ddpm_sample_params>?, _ modelFn: ddpm_cond_model_fn?,
    _ user: UnsafeMutableRawPointer?, _ cond: UnsafePointer<ddpm_cond_batch>?, _ n: Int64, _ dim: Int64,
    _ out: UnsafeMutablePointer<Float>?, _ count: Int64
) -> Int32 {
    guarded("ddpm_schedule_sample") {
        let s = try schedule(handle)
        let options = try samplerOptions(params)
        try requireCallerVariance(options)
        let fn = try nonNull(modelFn, "model_fn")
        let out = try nonNull(out, "out")
        let total = try checkCount(count, rows: n, cols: dim, "out")
        let batch = try callerConditionBatch(cond, rows: n)
        let denoiser = callerDenoiser(sampleSize: dim, options.predictionType, given: cond != nil, fn, user)
        try s.sample(into: out, count: Int(n), denoiser: denoiser, cond: batch, options: options,
                     progress: progressClosure(params, count: total))
    }
}

@_cdecl("ddpm_schedule_vlb_cond")
public func ddpm_schedule_vlb_cond(
    _ handle: OpaquePointer?, _ params: UnsafePointer<ddpm_vlb_params>?, _ modelFn: ddpm_cond_model_fn?,
    _ user: UnsafeMutableRawPointer?, _ cond: UnsafePointer<ddpm_cond_batch>?, _ x0: UnsafePointer<Float>?, _ n: Int64,
    _ dim: Int64, _ totalOut: UnsafeMutablePointer<Float>?, _ priorOut: UnsafeMutablePointer<Float>?,
    _ termsOut: UnsafeMutablePointer<Float>?, _ count: Int64
) -> Int32 {
    guarded("ddpm_schedule_vlb") {
        let s = try schedule(handle)
        let (options, type) = try vlbOptions(params)
        let fn = try nonNull(modelFn, "model_fn")
        let x0 = try nonNull(x0, "x0")
        _ = try checkCount(count, rows: n, cols: dim, "x0")
        let batch = try callerConditionBatch(cond, rows: n)
        let denoiser = callerDenoiser(sampleSize: dim, type, given: cond != nil, fn, user)
        let result = try s.variationalBound(x0: x0, batch: Int(n), denoiser: denoiser, cond: batch, options: options)
        try store(result, total: totalOut, prior: priorOut, terms: termsOut)
    }
}
