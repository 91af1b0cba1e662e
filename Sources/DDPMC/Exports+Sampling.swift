// Sampling options from ddpm_sample_params, and sampling with a caller's ε callback.
import CDDPM
import DDPM

@_cdecl("ddpm_sample_params_default")
public func ddpm_sample_params_default() -> ddpm_sample_params {
    ddpm_sample_params(
        struct_size: MemoryLayout<ddpm_sample_params>.size, method: 0, steps: 0, eta: 0, variance: 0,
        clip_x0: 0, clip_min: -1, clip_max: 1, seed: 0, guidance_scale: 1, use_ema: 1,
        progress: nil, progress_user_data: nil)
}

/// Validated engine options from a caller's params (NULL means the defaults).
func samplerOptions(_ params: UnsafePointer<ddpm_sample_params>?) throws -> SamplerOptions {
    let p = params == nil ? ddpm_sample_params_default() : try readParams(params, defaults: ddpm_sample_params_default(), "params")
    var o = SamplerOptions()
    guard let method = SamplingMethod(rawValue: p.method) else {
        throw DDPMError.invalidArgument("unknown method \(p.method) (0 DDPM, 1 DDIM)")
    }
    guard let variance = ReverseVariance(rawValue: p.variance) else {
        throw DDPMError.invalidArgument("unknown variance \(p.variance) (0 beta, 1 posterior)")
    }
    guard p.steps >= 0 else { throw DDPMError.invalidArgument("steps must be >= 0 (got \(p.steps))") }
    guard p.eta.isFinite && p.eta >= 0 && p.eta <= 1 else { throw DDPMError.invalidArgument("eta must be in [0, 1] (got \(p.eta))") }
    guard p.guidance_scale.isFinite else { throw DDPMError.invalidArgument("guidance_scale must be finite") }
    if p.clip_x0 != 0 {
        guard p.clip_min.isFinite, p.clip_max.isFinite, p.clip_min < p.clip_max else {
            throw DDPMError.invalidArgument("clip range [\(p.clip_min), \(p.clip_max)] is empty or not finite")
        }
        o.step.clipX0 = p.clip_min...p.clip_max
    }
    o.method = method
    o.steps = Int(p.steps)
    o.step.variance = variance
    o.step.eta = p.eta
    o.seed = p.seed
    o.guidanceScale = p.guidance_scale
    o.useEMA = p.use_ema != 0
    return o
}

/// The caller's progress callback as the engine's closure (nil when none).
func progressClosure(_ params: UnsafePointer<ddpm_sample_params>?, count: Int) -> SamplingProgress? {
    guard let params, params.pointee.struct_size >= MemoryLayout<ddpm_sample_params>.size,
          let fn = params.pointee.progress else { return nil }
    let user = params.pointee.progress_user_data
    return { step, total, t, x in fn(user, Int32(step), Int32(total), Int32(t), x, Int64(count)) == 0 }
}

@_cdecl("ddpm_schedule_sample")
public func ddpm_schedule_sample(
    _ handle: OpaquePointer?, _ params: UnsafePointer<ddpm_sample_params>?, _ epsFn: ddpm_eps_fn?,
    _ user: UnsafeMutableRawPointer?, _ labels: UnsafePointer<Int32>?, _ n: Int64, _ dim: Int64,
    _ out: UnsafeMutablePointer<Float>?, _ count: Int64
) -> Int32 {
    guarded("ddpm_schedule_sample") {
        let s = try schedule(handle)
        let options = try samplerOptions(params)
        let fn = try nonNull(epsFn, "eps_fn")
        let out = try nonNull(out, "out")
        let total = try checkCount(count, rows: n, cols: dim, "out")
        let predictor = ClosurePredictor(sampleSize: Int(dim)) { eps, x, t, labels, batch in
            let status = fn(user, eps, x, Int64(batch), dim, Int32(t), labels)
            if status != 0 { throw DDPMError.cancelled("the eps callback returned \(status) at t = \(t)") }
        }
        try s.sample(into: out, count: Int(n), predictor: predictor, labels: labels, options: options,
                     progress: progressClosure(params, count: total))
    }
}
