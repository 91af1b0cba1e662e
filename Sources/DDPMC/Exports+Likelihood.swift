// The variational bound through the C ABI: ddpm_vlb_params, ddpm_schedule_vlb (a caller's
// model) and ddpm_model_nll.
import CDDPM
import DDPM

/// ddpm_vlb_params as the engine sees them: the bound's options, and what a caller's model returns.
struct VLBParams {
    var options = VLBOptions()
    var predictionType = PredictionType.epsilon
}

/// ddpm_vlb_params ↔ VLBParams.
private let vlbTable = ParamsTable(defaults: VLBParams(), blank: ddpm_vlb_params(), [
    .choice("variance", \.variance, \.options.variance),
    decoderRow,
    .value("seed", \.seed, \.options.seed),
    .choice("prediction_type", \.prediction_type, \.predictionType),
])

/// decoder, bits ↔ the DataDecoder (bits kept at its default 8 for CONTINUOUS).
private let decoderRow = ParamRow<ddpm_vlb_params, VLBParams>(
    field: "decoder, bits",
    write: { v, p in
        switch v.options.decoder {
        case .continuous: (p.decoder, p.bits) = (Int32(DDPM_DECODER_CONTINUOUS.rawValue), 8)
        case .discretized(let bits): (p.decoder, p.bits) = (Int32(DDPM_DECODER_DISCRETIZED.rawValue), Int32(clamping: bits))
        }
    },
    read: { p, v in
        switch ddpm_decoder(rawValue: UInt32(bitPattern: p.decoder)) {
        case DDPM_DECODER_CONTINUOUS: v.options.decoder = .continuous
        case DDPM_DECODER_DISCRETIZED: v.options.decoder = .discretized(bits: Int(p.bits))
        default: throw DDPMError.invalidArgument("unknown decoder \(p.decoder) (0 continuous, 1 discretized)")
        }
    })

@_cdecl("ddpm_vlb_params_default")
public func ddpm_vlb_params_default() -> ddpm_vlb_params { vlbTable.cDefaults }

/// The engine's options and the callbacks' prediction type from a caller's params (NULL = defaults).
func vlbOptions(_ params: UnsafePointer<ddpm_vlb_params>?) throws -> (VLBOptions, PredictionType) {
    let v = try vlbTable.read(params, "params")
    return (v.options, v.predictionType)
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
