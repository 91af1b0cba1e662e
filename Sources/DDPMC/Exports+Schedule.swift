// ddpm_schedule_*: creation, reading the parameters back, tables, q(x_t|x_0), the posterior.
import CDDPM
import DDPM

@_cdecl("ddpm_schedule_params_default")
public func ddpm_schedule_params_default() -> ddpm_schedule_params {
    ddpm_schedule_params(
        struct_size: MemoryLayout<ddpm_schedule_params>.size, kind: 0, num_timesteps: 1000,
        beta_start: 1e-4, beta_end: 0.02, scale_to_steps: 0, cosine_s: 0.008, max_beta: 0.999,
        sigmoid_start: -6, sigmoid_end: 6)
}

@_cdecl("ddpm_schedule_create")
public func ddpm_schedule_create(_ params: UnsafePointer<ddpm_schedule_params>?, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    guarded("ddpm_schedule_create") {
        try output(out) {
            let p = try readParams(params, defaults: ddpm_schedule_params_default(), "params")
            let T = Int(p.num_timesteps)
            switch ddpm_schedule_kind(rawValue: UInt32(bitPattern: p.kind)) {
            case DDPM_SCHEDULE_LINEAR: return ScheduleHandle(try .linear(steps: T, betaStart: p.beta_start, betaEnd: p.beta_end, scaleToSteps: p.scale_to_steps != 0))
            case DDPM_SCHEDULE_SCALED_LINEAR: return ScheduleHandle(try .scaledLinear(steps: T, betaStart: p.beta_start, betaEnd: p.beta_end))
            case DDPM_SCHEDULE_COSINE: return ScheduleHandle(try .cosine(steps: T, offset: p.cosine_s, maxBeta: p.max_beta))
            case DDPM_SCHEDULE_SIGMOID: return ScheduleHandle(try .sigmoid(steps: T, betaMin: p.beta_start, betaMax: p.beta_end,
                                                       start: p.sigmoid_start, end: p.sigmoid_end))
            default: throw DDPMError.invalidArgument("unknown schedule kind \(p.kind) (0 linear, 1 cosine, 2 sigmoid, 4 scaled_linear; custom betas go through ddpm_schedule_create_custom)")
            }
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
        var p = ddpm_schedule_params_default()
        p.num_timesteps = Int32(clamping: s.count)
        switch s.kind {
        case .linear(let a, let b):
            (p.kind, p.beta_start, p.beta_end) = (Int32(DDPM_SCHEDULE_LINEAR.rawValue), a, b)
        case .scaledLinear(let a, let b):
            (p.kind, p.beta_start, p.beta_end) = (Int32(DDPM_SCHEDULE_SCALED_LINEAR.rawValue), a, b)
        case .cosine(let offset, let maxBeta):
            (p.kind, p.cosine_s, p.max_beta) = (Int32(DDPM_SCHEDULE_COSINE.rawValue), offset, maxBeta)
        case .sigmoid(let lo, let hi, let start, let end):
            (p.kind, p.beta_start, p.beta_end) = (Int32(DDPM_SCHEDULE_SIGMOID.rawValue), lo, hi)
            (p.sigmoid_start, p.sigmoid_end) = (start, end)
        case .custom:
            p.kind = Int32(DDPM_SCHEDULE_CUSTOM.rawValue)
        }
        try writeStruct(p, to: out, "params")
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
