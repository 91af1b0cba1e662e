// Data-parallel training and sharded sampling: the gradient-reduction seam
// (compute / the gradient buffer / apply), parameter read-back and hash, and sampling one
// shard of a global batch. The transport (MPI, ...) is the caller's; nothing here knows it.
import CDDPM
import DDPM

@_cdecl("ddpm_model_compute_gradients")
public func ddpm_model_compute_gradients(
    _ handle: OpaquePointer?, _ x0: UnsafePointer<Float>?, _ batch: Int64, _ count: Int64,
    _ cond: UnsafePointer<ddpm_cond_batch>?, _ sampleOffset: Int64, _ globalBatch: Int64, _ lossOut: UnsafeMutablePointer<Float>?
) -> Int32 {
    guarded("ddpm_model_compute_gradients") {
        let m = try model(handle)
        let x0 = try nonNull(x0, "x0")
        _ = try checkCount(count, rows: batch, cols: Int64(m.network.sampleSize), "x0")
        guard sampleOffset >= 0, globalBatch >= 0, globalBatch <= Int64(UInt32.max) else {
            throw DDPMError.invalidArgument("sample_offset (\(sampleOffset)) and global_batch (\(globalBatch)) must be in 0..<2^32")
        }
        let cond = try conditionBatch(cond, rows: batch, m.conditioning)
        let loss = try m.computeGradients(x0: x0, cond: cond, batch: Int(batch), sampleOffset: Int(sampleOffset),
                                          globalBatch: globalBatch == 0 ? nil : Int(globalBatch))
        lossOut?.pointee = loss
    }
}

@_cdecl("ddpm_model_gradients")
public func ddpm_model_gradients(
    _ handle: OpaquePointer?, _ gradsOut: UnsafeMutablePointer<UnsafeMutablePointer<Float>?>?,
    _ countOut: UnsafeMutablePointer<Int64>?
) -> Int32 {
    guarded("ddpm_model_gradients") {
        let m = try model(handle)
        let gradsOut = try nonNull(gradsOut, "grads_out")
        let grads = m.gradients
        gradsOut.pointee = grads.baseAddress
        countOut?.pointee = Int64(grads.count)
    }
}

@_cdecl("ddpm_model_apply_gradients")
public func ddpm_model_apply_gradients(_ handle: OpaquePointer?) -> Int32 {
    guarded("ddpm_model_apply_gradients") { try model(handle).applyGradients() }
}

@_cdecl("ddpm_model_get_parameters")
public func ddpm_model_get_parameters(_ handle: OpaquePointer?, _ ema: Int32, _ out: UnsafeMutablePointer<Float>?,
                                      _ count: Int64) -> Int32 {
    guarded("ddpm_model_get_parameters") {
        let m = try model(handle)
        let out = try nonNull(out, "out")
        let P = m.network.parameters.count
        guard count == Int64(P) else { throw DDPMError.shapeMismatch("out: count is \(count), expected \(P) parameters") }
        let values = ema != 0 ? m.emaValues : m.network.parameters.valuesArray
        values.withUnsafeBufferPointer { out.update(from: $0.baseAddress!, count: P) }
    }
}

@_cdecl("ddpm_model_parameter_hash")
public func ddpm_model_parameter_hash(_ handle: OpaquePointer?, _ out: UnsafeMutablePointer<UInt64>?) -> Int32 {
    guarded("ddpm_model_parameter_hash") {
        let m = try model(handle)
        try nonNull(out, "hash_out").pointee = m.parameterHash
    }
}

@_cdecl("ddpm_model_sample_shard")
public func ddpm_model_sample_shard(
    _ handle: OpaquePointer?, _ params: UnsafePointer<ddpm_sample_params>?, _ predict: UnsafePointer<ddpm_predict_params>?,
    _ cond: UnsafePointer<ddpm_cond_batch>?, _ n: Int64, _ sampleOffset: Int64, _ globalN: Int64,
    _ out: UnsafeMutablePointer<Float>?, _ count: Int64
) -> Int32 {
    guarded("ddpm_model_sample_shard") {
        let m = try model(handle)
        var options = try samplerOptions(params)
        guard options.predictionType == .epsilon else {
            throw DDPMError.invalidArgument("params->prediction_type is for callbacks and samplers; a model knows its own (leave it EPS)")
        }
        guard sampleOffset >= 0, globalN >= 1, n <= globalN, sampleOffset <= globalN - n else {
            throw DDPMError.invalidArgument("samples \(sampleOffset)..<\(sampleOffset + n) are not inside the global \(globalN)")
        }
        (options.sampleOffset, options.globalBatch) = (Int(sampleOffset), Int(globalN))
        let predictOptions = try predictOptions(predict)
        let out = try nonNull(out, "out")
        let total = try checkCount(count, rows: n, cols: Int64(m.network.sampleSize), "out")
        let cond = try conditionBatch(cond, rows: n, m.conditioning)
        try m.sample(into: out, count: Int(n), cond: cond, options: options, predict: predictOptions,
                     progress: progressClosure(params, count: total))
    }
}
