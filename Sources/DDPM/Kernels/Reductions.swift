// Reductions over float vectors. Swift keeps floating-point order strict, so a plain
// `sum += x[i]` loop never vectorises; these keep eight partial sums in SIMD lanes.

/// Σ x[0..<n], in eight independent lanes so that the loop vectorises.
@inline(__always)
func sumOf(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
    var acc = SIMD8<Float>.zero
    var i = 0
    while i + 8 <= n {
        acc += UnsafeRawPointer(x + i).loadUnaligned(as: SIMD8<Float>.self)
        i += 8
    }
    var sum = acc.sum()
    while i < n { sum += x[i]; i += 1 }
    return sum
}

/// (Σ a, Σ a·b) over [0..<n], in eight lanes.
@inline(__always)
func sumAndDot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> (Float, Float) {
    var sum = SIMD8<Float>.zero, dot = SIMD8<Float>.zero
    var i = 0
    while i + 8 <= n {
        let va = UnsafeRawPointer(a + i).loadUnaligned(as: SIMD8<Float>.self)
        let vb = UnsafeRawPointer(b + i).loadUnaligned(as: SIMD8<Float>.self)
        sum += va
        dot += va * vb
        i += 8
    }
    var (s, d) = (sum.sum(), dot.sum())
    while i < n { s += a[i]; d += a[i] * b[i]; i += 1 }
    return (s, d)
}

/// Σ (x − m)² over x[0..<n], in eight lanes.
@inline(__always)
func squaredDeviations(_ x: UnsafePointer<Float>, _ n: Int, from m: Float) -> Float {
    var acc = SIMD8<Float>.zero
    let mv = SIMD8<Float>(repeating: m)
    var i = 0
    while i + 8 <= n {
        let d = UnsafeRawPointer(x + i).loadUnaligned(as: SIMD8<Float>.self) - mv
        acc += d * d
        i += 8
    }
    var sum = acc.sum()
    while i < n { let d = x[i] - m; sum += d * d; i += 1 }
    return sum
}

/// Σ a·b over [0..<n], in eight lanes.
@inline(__always)
func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
    var acc = SIMD8<Float>.zero
    var i = 0
    while i + 8 <= n {
        acc += UnsafeRawPointer(a + i).loadUnaligned(as: SIMD8<Float>.self)
            * UnsafeRawPointer(b + i).loadUnaligned(as: SIMD8<Float>.self)
        i += 8
    }
    var sum = acc.sum()
    while i < n { sum += a[i] * b[i]; i += 1 }
    return sum
}

/// Σ x² over [0..<n] accumulated in Double across 4096-element chunks (for large vectors:
/// gradient norms, losses).
func sumOfSquares(_ x: UnsafePointer<Float>, _ n: Int) -> Double {
    var total: Double = 0
    var start = 0
    while start < n {
        let len = min(4096, n - start)
        total += Double(dot(x + start, x + start, len))
        start += len
    }
    return total
}
