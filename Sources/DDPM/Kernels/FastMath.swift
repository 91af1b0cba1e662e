// Scalar maths written so that LLVM vectorises the loops that call it.
// (Glibc's expf is a call per element and does not vectorise.)

/// e^x with relative error below 2e-7 on [−87, 88]; inputs outside are clamped.
/// exp(x) = 2^n·2^r with n = round(x·log2 e), r in [−½, ½], 2^r by a degree-6 polynomial.
@inline(__always)
func fastExp(_ x: Float) -> Float {
    let x = x < -87 ? -87 : (x > 88 ? 88 : x)
    let y = x * 1.442_695_04  // x·log2(e)
    let magic: Float = 12_582_912  // 1.5·2^23: adding it rounds y to an integer in the low mantissa bits
    let k = y + magic
    let n = k - magic
    let r = y - n
    // 2^r = e^(r ln2), Taylor to degree 6
    var p: Float = 1.540_353_0e-4
    p = p * r + 1.333_355_8e-3
    p = p * r + 9.618_129_1e-3
    p = p * r + 5.550_410_9e-2
    p = p * r + 2.402_265_1e-1
    p = p * r + 6.931_471_8e-1
    p = p * r + 1
    // Add n to the exponent field of p.
    return Float(bitPattern: p.bitPattern &+ ((k.bitPattern &- magic.bitPattern) &<< 23))
}

/// σ(x) = 1/(1 + e^{−x})
@inline(__always)
func sigmoid(_ x: Float) -> Float { 1 / (1 + fastExp(-x)) }
