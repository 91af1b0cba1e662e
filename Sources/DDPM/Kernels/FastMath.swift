// Scalar maths written so that LLVM vectorises the loops that call it.
// (Glibc's expf is a call per element and does not vectorise.) The C kernels' vexp
// (Sources/DDPMKernels/activation.inc, ddpm_exp) is this algorithm operation for operation:
// the same bits (GradientCheckTests checks it).

/// e^x with relative error below 2e-7 on [−87, 88]; inputs outside are clamped.
/// exp(x) = 2^n·e^r with n = round(x·log2 e) and r = x − n·ln 2 in [−½ln 2, ½ln 2], r formed in
/// two parts (Cody–Waite: n·ln2Hi is exact) so that the rounding of x·log2 e does not reach the
/// result; e^r by Cephes' degree-7 polynomial (expf.c).
@inline(__always)
func fastExp(_ x: Float) -> Float {
    let x = x < -87 ? -87 : (x > 88 ? 88 : x)
    let magic: Float = 12_582_912  // 1.5·2^23: adding it rounds to an integer in the low mantissa bits
    let k = x * 1.442_695_04 + magic  // x·log2(e) + magic
    let n = k - magic
    let ln2Hi: Float = 0.693_359_375, ln2Lo: Float = -2.121_944_4e-4  // ln 2 = ln2Hi + ln2Lo
    let r = (x - n * ln2Hi) - n * ln2Lo
    // e^r = 1 + r + r²·P(r)
    var p: Float = 1.987_569_15e-4
    p = p * r + 1.398_199_95e-3
    p = p * r + 8.333_451_9e-3
    p = p * r + 4.166_579_59e-2
    p = p * r + 1.666_666_55e-1
    p = p * r + 5.000_000_12e-1
    p = p * (r * r) + r + 1
    // Add n to the exponent field of p.
    return Float(bitPattern: p.bitPattern &+ ((k.bitPattern &- magic.bitPattern) &<< 23))
}

/// σ(x) = 1/(1 + e^{−x}), as the C kernels' SiLU computes it.
@inline(__always)
func sigmoid(_ x: Float) -> Float { 1 / (1 + fastExp(-x)) }
