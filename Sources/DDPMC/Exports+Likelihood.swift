// The variational bound through the C ABI: ddpm_vlb_params, ddpm_schedule_vlb (a caller's
// model) and ddpm_model_nll.
import CDDPM
import DDPM

@_cdecl("ddpm_vlb_params_default")
public func ddpm_vlb_params_default() -> ddpm_vlb_params {
    ddpm_vlb_params(struct_size: MemoryLayout<ddpm_vlb_params>.size, variance: Int32(DDPM_VARIANCE_BETA.rawValue),
                    decoder: Int32(DDPM_DECODER_CONTINUOUS.rawValue), bits: 8, seed: 0,
                    prediction_type: Int32(DDPM_OUTPUT_EPS.rawValue))
}

/// The engine's options and the callbacks' prediction type from a caller's params (NULL = defaults).
func vlbOptions(_ params: UnsafePointer<ddpm_vlb_params>?) throws -> (VLBOptions, PredictionType) {
    let p = params == nil ? ddpm_vlb_params_default() : try readParams(params, defaults: ddpm_vlb_params_default(), "params")
    var o = VLBOptions()
    o.variance = try reverseVariance(p.variance)
    switch ddpm_decoder(rawValue: UInt32(bitPattern: p.decoder)) {
    case DDPM_DECODER_CONTINUOUS: o.decoder = .continuous
    case DDPM_DECODER_DISCRETIZED: o.decoder = .discretized(bits: Int(p.bits))
    default: throw DDPMError.invalidArgument("unknown decoder \(p.decoder) (0 continuous, 1 discretized)")
    }
    o.seed = p.seed
    return (o, try predictionType(p.prediction_type, "prediction_type"))
}

/// Copies a result into the caller's buffers (each may be NULL but total).
func store(_ r: VLBResult, total: UnsafeMutablePointer<Float>?, prior: UnsafeMutablePointer<Float>?,
           terms: UnsafeMutablePointer<Float>?) throws {
    let total = try nonNull(total, "total_out")
    for (i, v) in r.total.enumerated() { total[i] = Float(v) }
    if let prior { for (i, v) in r.prior.enumerated() { prior[i] = Float(v) } }
    if let terms { for (i, v) in r.terms.enumerated() { terms[i] = Float(v) } }
}

@_cdecl("ddpm_schedule_vlb")
public func ddpm_schedule_vlb(
    _ handle: OpaquePointer?, _ params: UnsafePointer<ddpm_vlb_params>?, _ modelFn: ddpm_model_fn?,
    _ user: UnsafeMutableRawPointer?, _ labels: UnsafePointer<Int32>?, _ x0: UnsafePointer<Float>?, _ n: Int64,
    _ dim: Int64, _ totalOut: UnsafeMutablePointer<Float>?, _ priorOut: UnsafeMutablePointer<Float>?,
    _ termsOut: UnsafeMutablePointer<Float>?, _ count: Int64
) -> Int32 {
    // A ddpm_cond_model_fn that passes the labels on (Exports+CallerCondition.swift).
    guard let modelFn else {
        return ddpm_schedule_vlb_cond(handle, params, nil, user, nil, x0, n, dim, totalOut, priorOut, termsOut, count)
    }
    return withLabelsOnly(modelFn, user) { fn, callback in
        withLabelsBatch(labels) {
            ddpm_schedule_vlb_cond(handle, params, fn, callback, $0, x0, n, dim, totalOut, priorOut, termsOut, count)
        }
    }
}

@_cdecl("ddpm_model_nll")
public func ddpm_model_nll(
    _ handle: OpaquePointer?, _ params: UnsafePointer<ddpm_vlb_params>?, _ predict: UnsafePointer<ddpm_predict_params>?,
    _ cond: UnsafePointer<ddpm_cond_batch>?, _ x0: UnsafePointer<Float>?, _ n: Int64, _ totalOut: UnsafeMutablePointer<Float>?,
    _ priorOut: UnsafeMutablePointer<Float>?, _ termsOut: UnsafeMutablePointer<Float>?, _ count: Int64
) -> Int32 {
    guarded("ddpm_model_nll") {
        let m = try model(handle)
        let (options, type) = try vlbOptions(params)
        guard type == .epsilon else {
            throw DDPMError.invalidArgument("params->prediction_type is for callbacks; a model knows its own (leave it EPS)")
        }
        let x0 = try nonNull(x0, "x0")
        _ = try checkCount(count, rows: n, cols: Int64(m.network.sampleSize), "x0")
        let cond = try conditionBatch(cond, rows: n, m.conditioning)
        let result = try m.negativeLogLikelihood(x0: x0, batch: Int(n), cond: cond, options: options,
                                                 predict: try predictOptions(predict))
        try store(result, total: totalOut, prior: priorOut, terms: termsOut)
    }
}
