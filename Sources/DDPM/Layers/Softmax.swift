// The softmax of the attention layers, row by row, forward and backward, in eight SIMD lanes.
//
//   p_j  = e^{x_j − m} / Σ_k e^{x_k − m},   m = max_k x_k          (a row of n scores)
//   dx_j = p_j·(dp_j − Σ_k p_k·dp_k)                                 (backward, given dp = ∂L/∂p)
//
// Swift keeps floating-point order strict, so a scalar loop with a running max or sum never
// vectorises (it was 40% of an attention layer's forward at 256 tokens). Here the max, the
// exponentials and the sums run in eight lanes (SIMD8: two SSE registers on baseline x86-64),
// the lanes are combined in a fixed order, and the tail (n mod 8) is scalar: a row's result
// depends only on the row.

typealias FloatLanes = SIMD8<Float>

/// fastExp (Kernels/FastMath.swift) on eight lanes: the same operations in the same order, so
/// every lane is bitwise the scalar function's result.
@inline(__always)
func fastExp(_ x: FloatLanes) -> FloatLanes {
    var x = x
    x.replace(with: -87, where: x .< -87)
    x.replace(with: 88, where: x .> 88)
    let magic = FloatLanes(repeating: 12_582_912)  // 1.5·2^23
    let k = x * 1.442_695_04 + magic
    let n = k - magic
    let r = (x - n * 0.693_359_375) - n * -2.121_944_4e-4  // ln 2 = ln2Hi + ln2Lo
    var p = FloatLanes(repeating: 1.987_569_15e-4)
    p = p * r + 1.398_199_95e-3
    p = p * r + 8.333_451_9e-3
    p = p * r + 4.166_579_59e-2
    p = p * r + 1.666_666_55e-1
    p = p * r + 5.000_000_12e-1
    p = p * (r * r) + r + 1
    let shift = (unsafeBitCast(k, to: SIMD8<UInt32>.self) &- unsafeBitCast(magic, to: SIMD8<UInt32>.self)) &<< 23
    return unsafeBitCast(unsafeBitCast(p, to: SIMD8<UInt32>.self) &+ shift, to: FloatLanes.self)
}

@inline(__always)
private func load(_ p: UnsafePointer<Float>) -> FloatLanes { UnsafeRawPointer(p).loadUnaligned(as: FloatLanes.self) }

@inline(__always)
private func store(_ v: FloatLanes, _ p: UnsafeMutablePointer<Float>) { UnsafeMutableRawPointer(p).storeBytes(of: v, as: FloatLanes.self) }

/// Each row of x (rows, columns) becomes softmax(row), in place.
func softmaxRows(_ x: UnsafeMutablePointer<Float>, rows: Int, columns n: Int) {
    let vectorEnd = n & ~7
    for r in 0..<rows {
        let row = x + r * n
        // m = max_j x_j
        var lanes = FloatLanes(repeating: -.infinity)
        for j in Swift.stride(from: 0, to: vectorEnd, by: 8) {
            let v = load(row + j)
            lanes.replace(with: v, where: v .> lanes)
        }
        var m = -Float.infinity
        for l in 0..<8 { m = max(m, lanes[l]) }
        for j in vectorEnd..<n { m = max(m, row[j]) }
        // e_j = e^{x_j − m}, Σ_j e_j
        let mv = FloatLanes(repeating: m)
        var sums = FloatLanes.zero
        for j in Swift.stride(from: 0, to: vectorEnd, by: 8) {
            let e = fastExp(load(row + j) - mv)
            store(e, row + j)
            sums += e
        }
        var sum = sums.sum()
        for j in vectorEnd..<n { let e = fastExp(row[j] - m); row[j] = e; sum += e }
        // p_j = e_j / Σ
        let inv = 1 / sum
        for j in 0..<n { row[j] *= inv }
    }
}

/// Backward of softmaxRows: given p (rows, n) and dp = ∂L/∂p, dp becomes ∂L/∂x in place:
/// dx_j = p_j·(dp_j − Σ_k p_k·dp_k).
func softmaxRowsBackward(_ dp: UnsafeMutablePointer<Float>, probs p: UnsafePointer<Float>, rows: Int, columns n: Int) {
    for r in 0..<rows {
        let (pr, dr) = (p + r * n, dp + r * n)
        let s = dot(pr, UnsafePointer(dr), n)
        for j in 0..<n { dr[j] = pr[j] * (dr[j] - s) }
    }
}
