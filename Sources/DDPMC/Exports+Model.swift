// ddpm_model_*: create/free, reading the configuration back, training, prediction, sampling,
// checkpoints.
import CDDPM
import DDPM

@_cdecl("ddpm_model_create")
public func ddpm_model_create(_ sched: OpaquePointer?, _ network: UnsafePointer<ddpm_network_params>?,
                              _ train: UnsafePointer<ddpm_train_params>?, _ cond: UnsafePointer<ddpm_cond_params>?,
                              _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    guarded("ddpm_model_create") {
        try output(out) {
            let s = try schedule(sched)
            return ModelHandle(try DiffusionModel(schedule: s, network: try networkConfig(network),
                                                  training: try trainingConfig(train), conditioning: try conditioning(cond)))
        }
    }
}

@_cdecl("ddpm_model_free")
public func ddpm_model_free(_ handle: OpaquePointer?) { release(handle) }

@_cdecl("ddpm_model_sample_size")
public func ddpm_model_sample_size(_ handle: OpaquePointer?) -> Int64 {
    guard let m = try? model(handle) else { return -1 }
    return Int64(m.network.sampleSize)
}

@_cdecl("ddpm_model_num_parameters")
public func ddpm_model_num_parameters(_ handle: OpaquePointer?) -> Int64 {
    guard let m = try? model(handle) else { return -1 }
    return Int64(m.network.parameters.count)
}

@_cdecl("ddpm_model_step")
public func ddpm_model_step(_ handle: OpaquePointer?) -> Int64 {
    guard let m = try? model(handle) else { return -1 }
    return Int64(m.step)
}

@_cdecl("ddpm_model_network_kind")
public func ddpm_model_network_kind(_ handle: OpaquePointer?) -> Int32 {
    guard let m = try? model(handle) else { return -1 }
    switch m.network.config {
    case .mlp: return Int32(DDPM_NETWORK_MLP.rawValue)
    case .unet: return Int32(DDPM_NETWORK_UNET.rawValue)
    }
}

@_cdecl("ddpm_model_get_network")
public func ddpm_model_get_network(_ handle: OpaquePointer?, _ out: UnsafeMutablePointer<ddpm_network_params>?) -> Int32 {
    guarded("ddpm_model_get_network") { try writeNetwork(try model(handle).network.config, to: out) }
}

@_cdecl("ddpm_model_get_train_params")
public func ddpm_model_get_train_params(_ handle: OpaquePointer?, _ out: UnsafeMutablePointer<ddpm_train_params>?) -> Int32 {
    guarded("ddpm_model_get_train_params") { try writeStruct(trainParams(try model(handle).training), to: out, "train") }
}

@_cdecl("ddpm_model_get_cond_params")
public func ddpm_model_get_cond_params(_ handle: OpaquePointer?, _ out: UnsafeMutablePointer<ddpm_cond_params>?) -> Int32 {
    guarded("ddpm_model_get_cond_params") { try writeStruct(condParams(try model(handle).conditioning), to: out, "cond") }
}

@_cdecl("ddpm_model_get_schedule")
public func ddpm_model_get_schedule(_ handle: OpaquePointer?, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    guarded("ddpm_model_get_schedule") {
        try output(out) { ScheduleHandle(try model(handle).schedule) }
    }
}

@_cdecl("ddpm_model_set_learning_rate")
public func ddpm_model_set_learning_rate(_ handle: OpaquePointer?, _ lr: Float) -> Int32 {
    guarded("ddpm_model_set_learning_rate") { try model(handle).setLearningRate(lr) }
}

@_cdecl("ddpm_model_train_step")
public func ddpm_model_train_step(
    _ handle: OpaquePointer?, _ x0: UnsafePointer<Float>?, _ batch: Int64, _ count: Int64,
    _ cond: UnsafePointer<ddpm_cond_batch>?, _ lossOut: UnsafeMutablePointer<Float>?
) -> Int32 {
    guarded("ddpm_model_train_step") {
        let m = try model(handle)
        let x0 = try nonNull(x0, "x0")
        _ = try checkCount(count, rows: batch, cols: Int64(m.network.sampleSize), "x0")
        let cond = try conditionBatch(cond, rows: batch, m.conditioning)
        let loss = try m.trainStep(x0: x0, cond: cond, batch: Int(batch))
        lossOut?.pointee = loss
    }
}

@_cdecl("ddpm_model_predict")
public func ddpm_model_predict(
    _ handle: OpaquePointer?, _ params: UnsafePointer<ddpm_predict_params>?, _ output: Int32,
    _ xt: UnsafePointer<Float>?, _ batch: Int64, _ t: Int32, _ cond: UnsafePointer<ddpm_cond_batch>?,
    _ out: UnsafeMutablePointer<Float>?, _ count: Int64
) -> Int32 {
    guarded("ddpm_model_predict") {
        let m = try model(handle)
        let options = try predictOptions(params)
        let type = try PredictOutput(checked: output, "output")
        let (xt, out) = (try nonNull(xt, "x_t"), try nonNull(out, "out"))
        _ = try checkCount(count, rows: batch, cols: Int64(m.network.sampleSize), "x_t/out")
        let cond = try conditionBatch(cond, rows: batch, m.conditioning)
        try m.predict(out, output: type, x: xt, t: Int(t), cond: cond, batch: Int(batch), options: options)
    }
}

@_cdecl("ddpm_model_sample")
public func ddpm_model_sample(
    _ handle: OpaquePointer?, _ params: UnsafePointer<ddpm_sample_params>?, _ predict: UnsafePointer<ddpm_predict_params>?,
    _ cond: UnsafePointer<ddpm_cond_batch>?, _ n: Int64, _ out: UnsafeMutablePointer<Float>?, _ count: Int64
) -> Int32 {
    guarded("ddpm_model_sample") {
        let m = try model(handle)
        let options = try samplerOptions(params)
        guard options.predictionType == .epsilon else {
            throw DDPMError.invalidArgument("params->prediction_type is for callbacks and samplers; a model knows its own (leave it EPS)")
        }
        let predictOptions = try predictOptions(predict)
        let out = try nonNull(out, "out")
        let total = try checkCount(count, rows: n, cols: Int64(m.network.sampleSize), "out")
        let cond = try conditionBatch(cond, rows: n, m.conditioning)
        try m.sample(into: out, count: Int(n), cond: cond, options: options, predict: predictOptions,
                     progress: progressClosure(params, count: total))
    }
}

@_cdecl("ddpm_model_save")
public func ddpm_model_save(_ handle: OpaquePointer?, _ path: UnsafePointer<CChar>?) -> Int32 {
    guarded("ddpm_model_save") {
        let m = try model(handle)
        let path = String(cString: try nonNull(path, "path"))
        guard !path.isEmpty else { throw DDPMError.invalidArgument("path is empty") }
        try m.save(to: path)
    }
}

@_cdecl("ddpm_model_load")
public func ddpm_model_load(_ path: UnsafePointer<CChar>?, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    guarded("ddpm_model_load") {
        try output(out) {
            let path = String(cString: try nonNull(path, "path"))
            return ModelHandle(try DiffusionModel.load(from: path))
        }
    }
}
