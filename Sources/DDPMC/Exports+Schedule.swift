// ddpm_schedule_*: creation, reading the parameters back, tables, q(x_t|x_0), the posterior.
import CDDPM
import DDPM

/// ddpm_schedule_params as flat fields (the engine's NoiseSchedule.Kind carries them in its
/// cases); the defaults are the linear schedule's, T = 1000, and the other kinds' own.
struct ScheduleFields {
    var kind = Int32(DDPM_SCHEDULE_LINEAR.rawValue)
    var timesteps = 1000
    var betaStart = 1e-4, betaEnd = 0.02, scaleToSteps = false
    var cosineS = 0.008, maxBeta = 0.999
    var sigmoidStart = -6.0, sigmoidEnd = 6.0

    init() {}

    /// How `s` was made: its kind, T and that kind's parameters (a linear schedule made with
    /// scale_to_steps as its scaled ends).
    init(_ s: NoiseSchedule) {
        timesteps = s.count
        switch s.kind {
        case .linear(let a, let b): (kind, betaStart, betaEnd) = (Int32(DDPM_SCHEDULE_LINEAR.rawValue), a, b)
        case .scaledLinear(let a, let b): (kind, betaStart, betaEnd) = (Int32(DDPM_SCHEDULE_SCALED_LINEAR.rawValue), a, b)
        case .cosine(let offset, let m): (kind, cosineS, maxBeta) = (Int32(DDPM_SCHEDULE_COSINE.rawValue), offset, m)
        case .sigmoid(let lo, let hi, let start, let end):
            (kind, betaStart, betaEnd, sigmoidStart, sigmoidEnd) = (Int32(DDPM_SCHEDULE_SIGMOID.rawValue), lo, hi, start, end)
        case .custom: kind = Int32(DDPM_SCHEDULE_CUSTOM.rawValue)
        }
    }

    /// The schedule these fields describe.
    func schedule() throws -> NoiseSchedule {
        let T = timesteps
        switch ddpm_schedule_kind(rawValue: UInt32(bitPattern: kind)) {
        case DDPM_SCHEDULE_LINEAR: return try .linear(steps: T, betaStart: betaStart, betaEnd: betaEnd, scaleToSteps: scaleToSteps)
        case DDPM_SCHEDULE_SCALED_LINEAR: return try .scaledLinear(steps: T, betaStart: betaStart, betaEnd: betaEnd)
        case DDPM_SCHEDULE_COSINE: return try .cosine(steps: T, offset: cosineS, maxBeta: maxBeta)
        case DDPM_SCHEDULE_SIGMOID: return try .sigmoid(steps: T, betaMin: betaStart, betaMax: betaEnd, start: sigmoidStart, end: sigmoidEnd)
        default: throw DDPMError.invalidArgument("unknown schedule kind \(kind) (0 linear, 1 cosine, 2 sigmoid, 4 scaled_linear; custom betas go through ddpm_schedule_create_custom)")
        }
    }
}

/// ddpm_schedule_params ↔ ScheduleFields.
private let scheduleTable = ParamsTable(defaults: ScheduleFields(), blank: ddpm_schedule_params(), [
    .value("kind", \.kind, \.kind),
    .int("num_timesteps", \.num_timesteps, \.timesteps),
    .value("beta_start", \.beta_start, \.betaStart),
    .value("beta_end", \.beta_end, \.betaEnd),
    .flag("scale_to_steps", \.scale_to_steps, \.scaleToSteps),
    .value("cosine_s", \.cosine_s, \.cosineS),
    .value("max_beta", \.max_beta, \.maxBeta),
    .value("sigmoid_start", \.sigmoid_start, \.sigmoidStart),
    .value("sigmoid_end", \.sigmoid_end, \.sigmoidEnd),
])

@_cdecl("ddpm_schedule_params_default")
public func ddpm_schedule_params_default() -> ddpm_schedule_params { scheduleTable.cDefaults }

@_cdecl("ddpm_schedule_create")
public func ddpm_schedule_create(_ params: UnsafePointer<ddpm_schedule_params>?, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    guarded("ddpm_schedule_create") {
        try output(out) {
            ScheduleHandle(try scheduleTable.read(try nonNull(params, "params"), "params").schedule())
        }
    }
}

@_cdecl("ddpm_schedule_create_custom")
public func ddpm_schedule_create_custom(_ betas: UnsafePointer<Double>?, _ count: Int64, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    guarded("ddpm_schedule_create_custom") {
        try output(out) {
            let b = try nonNull(betas, "betas")
            guard count >= 1, count <= Int64(Limits.timesteps) else {
                throw DDPMError.invalidArgument("num_timesteps must be in 1...\(Limits.timesteps) (got \(count); DDPM_MAX_TIMESTEPS)")
            }
            return ScheduleHandle(try NoiseSchedule(betas: Array(UnsafeBufferPointer(start: b, count: Int(count)))))
        }
    }
}

@_cdecl("ddpm_schedule_get_params")
public func ddpm_schedule_get_params(_ handle: OpaquePointer?, _ out: UnsafeMutablePointer<ddpm_schedule_params>?) -> Int32 {
    guarded("ddpm_schedule_get_params") {
        let s = try schedule(handle)
        try writeStruct(scheduleTable.write(ScheduleFields(s)), to: out, "params")
    }
}

@_cdecl("ddpm_schedule_free")
public func ddpm_schedule_free(_ handle: OpaquePointer?) { release(handle) }

@_cdecl("ddpm_schedule_num_timesteps")
public func ddpm_schedule_num_timesteps(_ handle: OpaquePointer?) -> Int64 {
    guard let s = try? schedule(handle) else { return -1 }
    return Int64(s.count)
}

@_cdecl("ddpm_schedule_table")
public func ddpm_schedule_table(_ handle: OpaquePointer?, _ table: Int32, _ out: UnsafeMutablePointer<Double>?, _ count: Int64) -> Int32 {
    guarded("ddpm_schedule_table") {
        let s = try schedule(handle)
        let out = try nonNull(out, "out")
        let tables: [[Double]] = [s.betas, s.alphas, s.alphaBar, s.alphaBarPrev, s.sqrtAlphaBar, s.sqrtOneMinusAlphaBar,
                                  s.sqrtRecipAlpha, s.posteriorVariance, s.posteriorLogVarianceClipped,
                                  s.posteriorMeanCoefX0, s.posteriorMeanCoefXt]
        guard table >= 0 && Int(table) < tables.count else {
            throw DDPMError.invalidArgument("unknown table \(table) (0...\(tables.count - 1))")
        }
        guard count == Int64(s.count) else { throw DDPMError.shapeMismatch("count is \(count), the schedule has T = \(s.count)") }
        tables[Int(table)].withUnsafeBufferPointer { out.update(from: $0.baseAddress!, count: s.count) }
    }
}

@_cdecl("ddpm_schedule_add_noise")
public func ddpm_schedule_add_noise(
    _ handle: OpaquePointer?, _ x0: UnsafePointer<Float>?, _ noise: UnsafePointer<Float>?, _ t: UnsafePointer<Int32>?,
    _ batch: Int64, _ dim: Int64, _ out: UnsafeMutablePointer<Float>?, _ count: Int64
) -> Int32 {
    guarded("ddpm_schedule_add_noise") {
        let s = try schedule(handle)
        let (x0, noise, t, out) = (try nonNull(x0, "x0"), try nonNull(noise, "noise"), try nonNull(t, "t"), try nonNull(out, "out"))
        let n = try checkCount(count, rows: batch, cols: dim, "x0/noise/out")
        try requireFinite(x0, count: n, "x0")
        try requireFinite(noise, count: n, "noise")
        try s.addNoise(out, x0: x0, noise: noise, t: t, batch: Int(batch), dim: Int(dim))
    }
}

@_cdecl("ddpm_schedule_posterior")
public func ddpm_schedule_posterior(
    _ handle: OpaquePointer?, _ x0: UnsafePointer<Float>?, _ xt: UnsafePointer<Float>?, _ t: UnsafePointer<Int32>?,
    _ batch: Int64, _ dim: Int64, _ mean: UnsafeMutablePointer<Float>?, _ variance: UnsafeMutablePointer<Float>?, _ count: Int64
) -> Int32 {
    guarded("ddpm_schedule_posterior") {
        let s = try schedule(handle)
        let (x0, xt, t) = (try nonNull(x0, "x0"), try nonNull(xt, "x_t"), try nonNull(t, "t"))
        let (mean, variance) = (try nonNull(mean, "mean_out"), try nonNull(variance, "variance_out"))
        let n = try checkCount(count, rows: batch, cols: dim, "x0/x_t/mean_out")
        try requireFinite(x0, count: n, "x0")
        try requireFinite(xt, count: n, "x_t")
        try s.posterior(mean: mean, variance: variance, x0: x0, xt: xt, t: t, batch: Int(batch), dim: Int(dim))
    }
}
