// ddpm_model_*: create/free, training, prediction, sampling, checkpoints.
import CDDPM
import DDPM

@_cdecl("ddpm_model_params_default")
public func ddpm_model_params_default() -> ddpm_model_params {
    var p = ddpm_model_params()
    p.struct_size = MemoryLayout<ddpm_model_params>.size
    p.network = 0
    p.data_dim = 0; p.hidden = 128; p.depth = 4; p.time_embed_dim = 64
    p.channels = 1; p.height = 0; p.width = 0; p.base_channels = 32; p.num_levels = 3
    p.channel_mult = (1, 2, 2, 2); p.res_blocks = 2; p.attention_levels = 0b100; p.attention_heads = 1
    p.groups = 8; p.dropout = 0
    p.num_classes = 0; p.label_dropout = 0.1
    let t = TrainingConfig()
    p.learning_rate = t.optimizer.learningRate; p.beta1 = t.optimizer.beta1; p.beta2 = t.optimizer.beta2
    p.adam_eps = t.optimizer.epsilon; p.weight_decay = t.optimizer.weightDecay
    p.grad_clip = t.gradClip; p.ema_decay = t.emaDecay; p.seed = t.seed
    return p
}

/// The engine's network and training configuration from a caller's params.
func configs(_ p: ddpm_model_params) throws -> (NetworkConfig, TrainingConfig) {
    var training = TrainingConfig()
    training.optimizer = AdamWConfig(learningRate: p.learning_rate, beta1: p.beta1, beta2: p.beta2,
                                     epsilon: p.adam_eps, weightDecay: p.weight_decay)
    training.gradClip = p.grad_clip
    training.emaDecay = p.ema_decay
    training.labelDropout = p.label_dropout
    training.seed = p.seed
    switch p.network {
    case 0:
        guard p.data_dim >= 1 else { throw DDPMError.invalidArgument("data_dim must be >= 1 for the MLP (got \(p.data_dim))") }
        return (.mlp(.init(dataDim: Int(p.data_dim), hidden: Int(p.hidden), depth: Int(p.depth),
                           timeEmbedDim: Int(p.time_embed_dim), numClasses: Int(p.num_classes))), training)
    case 1:
        return (try unetConfig(p), training)
    default:
        throw DDPMError.invalidArgument("unknown network \(p.network) (0 MLP, 1 UNet)")
    }
}

/// The caller-visible params of a model (inverse of `configs`).
func params(of model: DiffusionModel) -> ddpm_model_params {
    var p = ddpm_model_params_default()
    let t = model.training
    p.learning_rate = t.optimizer.learningRate; p.beta1 = t.optimizer.beta1; p.beta2 = t.optimizer.beta2
    p.adam_eps = t.optimizer.epsilon; p.weight_decay = t.optimizer.weightDecay
    p.grad_clip = t.gradClip; p.ema_decay = t.emaDecay; p.label_dropout = t.labelDropout; p.seed = t.seed
    switch model.network.config {
    case .mlp(let c):
        p.network = 0
        p.data_dim = Int32(c.dataDim); p.hidden = Int32(c.hidden); p.depth = Int32(c.depth)
        p.time_embed_dim = Int32(c.timeEmbedDim); p.num_classes = Int32(c.numClasses)
    default:
        fillUNetParams(&p, model.network.config)
    }
    return p
}

@_cdecl("ddpm_model_create")
public func ddpm_model_create(_ sched: OpaquePointer?, _ params: UnsafePointer<ddpm_model_params>?,
                              _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    guarded("ddpm_model_create") {
        try output(out) {
            let s = try schedule(sched)
            let p = try readParams(params, defaults: ddpm_model_params_default(), "params")
            let (network, training) = try configs(p)
            return ModelHandle(try DiffusionModel(schedule: s, network: network, training: training))
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

@_cdecl("ddpm_model_get_params")
public func ddpm_model_get_params(_ handle: OpaquePointer?, _ out: UnsafeMutablePointer<ddpm_model_params>?) -> Int32 {
    guarded("ddpm_model_get_params") {
        let m = try model(handle)
        let out = try nonNull(out, "params")
        let given = out.pointee.struct_size
        guard given >= MemoryLayout<Int>.size else {
            throw DDPMError.invalidArgument("params->struct_size is \(given); initialise it with ddpm_model_params_default()")
        }
        var p = params(of: m)
        let size = min(given, MemoryLayout<ddpm_model_params>.size)
        p.struct_size = size
        withUnsafeBytes(of: &p) { UnsafeMutableRawPointer(out).copyMemory(from: $0.baseAddress!, byteCount: size) }
    }
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
    _ labels: UnsafePointer<Int32>?, _ lossOut: UnsafeMutablePointer<Float>?
) -> Int32 {
    guarded("ddpm_model_train_step") {
        let m = try model(handle)
        let x0 = try nonNull(x0, "x0")
        _ = try checkCount(count, rows: batch, cols: Int64(m.network.sampleSize), "x0")
        let loss = try m.trainStep(x0: x0, labels: labels, batch: Int(batch))
        lossOut?.pointee = loss
    }
}

@_cdecl("ddpm_model_predict_eps")
public func ddpm_model_predict_eps(
    _ handle: OpaquePointer?, _ xt: UnsafePointer<Float>?, _ batch: Int64, _ t: Int32, _ labels: UnsafePointer<Int32>?,
    _ guidance: Float, _ useEMA: Int32, _ out: UnsafeMutablePointer<Float>?, _ count: Int64
) -> Int32 {
    guarded("ddpm_model_predict_eps") {
        let m = try model(handle)
        let (xt, out) = (try nonNull(xt, "x_t"), try nonNull(out, "eps_out"))
        _ = try checkCount(count, rows: batch, cols: Int64(m.network.sampleSize), "x_t/eps_out")
        try m.predictEpsilon(out, x: xt, t: Int(t), labels: labels, batch: Int(batch), guidanceScale: guidance, useEMA: useEMA != 0)
    }
}

@_cdecl("ddpm_model_sample")
public func ddpm_model_sample(
    _ handle: OpaquePointer?, _ params: UnsafePointer<ddpm_sample_params>?, _ labels: UnsafePointer<Int32>?,
    _ n: Int64, _ out: UnsafeMutablePointer<Float>?, _ count: Int64
) -> Int32 {
    guarded("ddpm_model_sample") {
        let m = try model(handle)
        let options = try samplerOptions(params)
        let out = try nonNull(out, "out")
        let total = try checkCount(count, rows: n, cols: Int64(m.network.sampleSize), "out")
        try m.sample(into: out, count: Int(n), labels: labels, options: options, progress: progressClosure(params, count: total))
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
