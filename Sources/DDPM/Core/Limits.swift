// The ceilings every size is checked against before anything is allocated (the DDPM_MAX_*
// values of ddpm.h). Two kinds:
//
// - field caps (a width, a count, T): generous bounds on each configuration value, so that
//   the exact size arithmetic of a network (parameter layout, activation counts for one or
//   two rows) cannot overflow Int;
// - one byte ceiling per model, `modelBytes` (8 GiB): parameters, gradients, EMA, both AdamW
//   moments and the timestep table, plus the buffers of any one call (a train step, a
//   prediction, a sampling run). A sampler on its own has the same ceiling for its buffers.
//
// A configuration or request beyond them is `.invalidArgument` whose message gives the
// bytes it would need and the limit. Allocation itself (Buffer) reports failure as an error.

public enum Limits {
    /// Bytes one model may hold, its state and one call's buffers together: 8 GiB.
    public static let modelBytes = 1 << 33
    /// Most timesteps T of a schedule: 2^20.
    public static let timesteps = 1 << 20
    /// Most of any width: hidden, time_embed_dim, image channels, base_channels and the
    /// channels of every UNet level (base_channels × channel_mult[l]): 2^16.
    public static let width = 1 << 16
    /// Most floats per sample of the MLP (data_dim) and pixels of a UNet image (height × width;
    /// each side at most `width`): 2^24.
    public static let sampleFloats = 1 << 24
    /// Most residual blocks of the MLP (depth): 2^12.
    public static let depth = 1 << 12
    /// Most ResBlocks per UNet level (res_blocks): 64.
    public static let resBlocks = 64
    /// Most classes K: 2^24.
    public static let numClasses = 1 << 24
    /// Most context positions Lmax of a sequence or token condition: 2^12.
    public static let contextLength = 1 << 12
    /// The smallest ᾱ_t a schedule may reach: 1e-30 (1/√ᾱ stays far from Float's range end).
    public static let minAlphaBar = 1e-30

    /// Throws `.invalidArgument` unless 1 ≤ value ≤ cap (0 ≤ value when `allowZero`).
    static func requireField(_ name: String, _ value: Int, cap: Int, allowZero: Bool = false) throws {
        let low = allowZero ? 0 : 1
        try require(value >= low, "\(name) must be >= \(low) (got \(value))")
        try require(value <= cap, "\(name) must be <= \(cap) (got \(value); DDPM_MAX_* in ddpm.h)")
    }

    /// Throws `.invalidArgument` unless `floats` (an exact count, or an upper estimate) of
    /// 4 bytes fit in `modelBytes`.
    static func requireFloats(_ floats: Double, _ what: @autoclosure () -> String) throws {
        let bytes = floats * 4
        guard bytes <= Double(modelBytes) else {
            throw DDPMError.invalidArgument("\(what()) would need \(describeBytes(bytes)), more than the limit of "
                                            + "\(modelBytes) bytes (8 GiB, DDPM_MAX_MODEL_BYTES)")
        }
    }

    /// "51539607552 bytes (48.0 GiB)".
    static func describeBytes(_ bytes: Double) -> String {
        let exact = bytes < 0x1p63 ? String(Int(bytes)) : "\(bytes)"
        let gib = (bytes / Double(1 << 30) * 10).rounded() / 10
        return "\(exact) bytes (\(gib) GiB)"
    }
}

/// The product of `factors`, or nil if it overflows Int (or a factor is negative).
func checkedProduct(_ factors: Int...) -> Int? {
    var p = 1
    for f in factors {
        guard f >= 0 else { return nil }
        let (q, overflow) = p.multipliedReportingOverflow(by: f)
        if overflow { return nil }
        p = q
    }
    return p
}
