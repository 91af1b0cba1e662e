// Sampling options from ddpm_sample_params, sampling with a caller's model callback, and
// the ddpm_sampler handle that a caller steps from outside.
import CDDPM
import DDPM

/// ddpm_sample_params ↔ SamplerOptions. progress and progress_user_data are the call's, not
/// options (progressClosure).
private let sampleTable = ParamsTable(defaults: SamplerOptions(), blank: ddpm_sample_params(), [
    .choice("method", \.method, \.method),
    .int("steps", \.steps, \.steps),
    .value("eta", \.eta, \.eta),
    .choice("variance", \.variance, \.variance),
    clipRow,
    .value("seed", \.seed, \.seed),
    .choice("prediction_type", \.prediction_type, \.predictionType),
    timestepsRow,
    .choice("spacing", \.spacing, \.spacing),
    .int("steps_offset", \.steps_offset, \.stepsOffset),
    .flag("use_clipped_model_output", \.use_clipped_model_output, \.useClippedModelOutput),
    thresholdingRow,
    .value("threshold_max", \.threshold_max, \.thresholdMax),
    .int("solver_order", \.solver_order, \.solverOrder),
    .flag("lower_order_final", \.lower_order_final, \.lowerOrderFinal),
    .int("corrector_steps", \.corrector_steps, \.correctorSteps),
    .value("snr", \.snr, \.snr),
    .value("langevin_step_size", \.langevin_step_size, \.langevinStepSize),
    .flag("set_alpha_to_one", \.set_alpha_to_one, \.setAlphaToOne),
])

/// clip_x0, clip_min, clip_max ↔ clipX0 (nil: off, the range kept at its default -1...1).
private let clipRow = ParamRow<ddpm_sample_params, SamplerOptions>(
    field: "clip_x0, clip_min, clip_max",
    write: { o, p in (p.clip_x0, p.clip_min, p.clip_max) = (o.clipX0 == nil ? 0 : 1, o.clipX0?.lowerBound ?? -1, o.clipX0?.upperBound ?? 1) },
    read: { p, o in
        guard p.clip_x0 != 0 else { return }
        guard p.clip_min.isFinite, p.clip_max.isFinite, p.clip_min < p.clip_max else {  // a ClosedRange must not be empty
            throw DDPMError.invalidArgument("clip range [\(p.clip_min), \(p.clip_max)] is empty or not finite")
        }
        o.clipX0 = p.clip_min...p.clip_max
    })

/// thresholding, threshold_quantile ↔ thresholdQuantile (nil: off, the quantile kept at its default 0.995).
private let thresholdingRow = ParamRow<ddpm_sample_params, SamplerOptions>(
    field: "thresholding, threshold_quantile",
    write: { o, p in (p.thresholding, p.threshold_quantile) = (o.thresholdQuantile == nil ? 0 : 1, o.thresholdQuantile ?? 0.995) },
    read: { p, o in o.thresholdQuantile = p.thresholding != 0 ? p.threshold_quantile : nil })

/// timesteps, num_timesteps → timesteps, read during the call (a caller's array: written back
/// as none, which only the default is).
private let timestepsRow = ParamRow<ddpm_sample_params, SamplerOptions>(
    field: "timesteps, num_timesteps",
    write: { _, p in (p.timesteps, p.num_timesteps) = (nil, 0) },
    read: { p, o in
        guard p.num_timesteps != 0 || p.timesteps != nil else { return }
        let ts = try nonNull(p.timesteps, "params->timesteps (num_timesteps = \(p.num_timesteps))")
        guard p.num_timesteps >= 1 && p.num_timesteps <= 1 << 24 else {
            throw DDPMError.invalidArgument("num_timesteps must be in 1...2^24 (got \(p.num_timesteps))")
        }
        o.timesteps = UnsafeBufferPointer(start: ts, count: Int(p.num_timesteps)).map { Int($0) }
    })

@_cdecl("ddpm_sample_params_default")
public func ddpm_sample_params_default() -> ddpm_sample_params { sampleTable.cDefaults }

/// The engine's options from a caller's params (NULL means the defaults). Only what C can
/// get wrong is checked here; the Sampler validates the values once.
func samplerOptions(_ params: UnsafePointer<ddpm_sample_params>?) throws -> SamplerOptions {
    try sampleTable.read(params, "params")
}

/// A caller's model (a callback, or outputs fed to a ddpm_sampler) gives no learned variance:
/// refuse LEARNED when the sampler is made rather than fail at its first step.
func requireCallerVariance(_ o: SamplerOptions) throws {
    guard o.variance != .learned else {
        throw DDPMError.invalidArgument("variance LEARNED needs a model that outputs its variance (a ddpm_model trained with "
                                        + "learned_variance); a caller's model output has none: use BETA or POSTERIOR")
    }
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
    _ handle: OpaquePointer?, _ params: UnsafePointer<ddpm_sample_params>?, _ modelFn: ddpm_model_fn?,
    _ user: UnsafeMutableRawPointer?, _ labels: UnsafePointer<Int32>?, _ n: Int64, _ dim: Int64,
    _ out: UnsafeMutablePointer<Float>?, _ count: Int64
) -> Int32 {
    // A ddpm_cond_model_fn that passes the labels on (Exports+CallerCondition.swift).
    guard let modelFn else { return ddpm_schedule_sample_cond(handle, params, nil, user, nil, n, dim, out, count) }
    return withLabelsOnly(modelFn, user) { fn, callback in
        withLabelsBatch(labels) { ddpm_schedule_sample_cond(handle, params, fn, callback, $0, n, dim, out, count) }
    }
}

// ---- ddpm_sampler ----------------------------------------------------------------------

@_cdecl("ddpm_sampler_create")
public func ddpm_sampler_create(
    _ sched: OpaquePointer?, _ params: UnsafePointer<ddpm_sample_params>?, _ n: Int64, _ dim: Int64,
    _ out: UnsafeMutablePointer<OpaquePointer?>?
) -> Int32 {
    guarded("ddpm_sampler_create") {
        try output(out) {
            let s = try schedule(sched)
            let options = try samplerOptions(params)
            try requireCallerVariance(options)
            let total = try checkCount(Int64(n) &* Int64(dim), rows: n, cols: dim, "n × dim")
            return SamplerHandle(try Sampler(schedule: s, options: options, batch: Int(n), sampleSize: total / Int(n)))
        }
    }
}

@_cdecl("ddpm_sampler_free")
public func ddpm_sampler_free(_ handle: OpaquePointer?) { release(handle) }

@_cdecl("ddpm_sampler_num_steps")
public func ddpm_sampler_num_steps(_ handle: OpaquePointer?) -> Int64 {
    guard let s = try? sampler(handle) else { return -1 }
    return Int64(s.plan.count)
}

@_cdecl("ddpm_sampler_timesteps")
public func ddpm_sampler_timesteps(_ handle: OpaquePointer?, _ out: UnsafeMutablePointer<Int32>?, _ count: Int64) -> Int32 {
    guarded("ddpm_sampler_timesteps") {
        let s = try sampler(handle)
        let out = try nonNull(out, "out")
        guard count == Int64(s.plan.count) else {
            throw DDPMError.shapeMismatch("count is \(count), the sampler has \(s.plan.count) steps")
        }
        for (i, step) in s.plan.enumerated() { out[i] = Int32(step.t) }
    }
}

@_cdecl("ddpm_sampler_timestep")
public func ddpm_sampler_timestep(_ handle: OpaquePointer?) -> Int32 {
    guard let s = try? sampler(handle) else { return -1 }
    return Int32(s.timestep)
}

@_cdecl("ddpm_sampler_step_adds_noise")
public func ddpm_sampler_step_adds_noise(_ handle: OpaquePointer?) -> Int32 {
    guard let s = try? sampler(handle), let adds = s.nextStepAddsNoise else { return -1 }
    return adds ? 1 : 0
}

@_cdecl("ddpm_sampler_init_noise")
public func ddpm_sampler_init_noise(_ handle: OpaquePointer?, _ x: UnsafeMutablePointer<Float>?, _ count: Int64) -> Int32 {
    guarded("ddpm_sampler_init_noise") {
        let s = try sampler(handle)
        let x = try nonNull(x, "x")
        _ = try checkCount(count, rows: Int64(s.batch), cols: Int64(s.sampleSize), "x")
        s.initNoise(x)
    }
}

@_cdecl("ddpm_sampler_step")
public func ddpm_sampler_step(
    _ handle: OpaquePointer?, _ output: UnsafePointer<Float>?, _ x: UnsafeMutablePointer<Float>?,
    _ noise: UnsafePointer<Float>?, _ x0Out: UnsafeMutablePointer<Float>?, _ count: Int64
) -> Int32 {
    guarded("ddpm_sampler_step") {
        let s = try sampler(handle)
        let (output, x) = (try nonNull(output, "model_output"), try nonNull(x, "x"))
        let n = try checkCount(count, rows: Int64(s.batch), cols: Int64(s.sampleSize), "model_output/x")
        try requireFinite(x, count: n, "x")
        if let noise { try requireFinite(noise, count: n, "noise") }
        try s.step(output: output, x: x, noise: noise, x0Out: x0Out)
    }
}
