// The attention layers' softmax (Layers/Softmax.swift): the eight-lane fastExp against the
// scalar one bit for bit; softmax rows against a float64 softmax; the backward against the
// float64 Jacobian and against finite differences, for row lengths around the lane width
// (the vector body, the scalar tail, both).
import XCTest
@testable import DDPM

final class SoftmaxTests: XCTestCase {
    /// Row lengths: tail only, exactly one or several vectors, vectors and a tail; 256 tokens.
    let lengths = [1, 3, 7, 8, 9, 16, 23, 64, 256, 257]

    func testLaneExpIsTheScalarExpBitForBit() {
        var inputs = uniforms(40_000, seed: 61, in: -100...100) + uniforms(8_000, seed: 62, in: -1...1)
        inputs += [-1000, -88, -87.5, -87, -86.9, 0, -0.0, 1e-30, 87.9, 88, 88.1, 1000, .infinity, -.infinity]
        while inputs.count % 8 != 0 { inputs.append(0.5) }
        var mismatches = 0
        for i in Swift.stride(from: 0, to: inputs.count, by: 8) {
            let v = fastExp(FloatLanes(inputs[i..<i + 8]))
            for l in 0..<8 where v[l].bitPattern != fastExp(inputs[i + l]).bitPattern { mismatches += 1 }
        }
        XCTAssertEqual(mismatches, 0, "lanes differing from the scalar fastExp")
    }

    func softmax64(_ x: ArraySlice<Float>) -> [Double] {
        let m = Double(x.max()!)
        let e = x.map { exp(Double($0) - m) }
        let s = e.reduce(0, +)
        return e.map { $0 / s }
    }

    func testRowsMatchAFloat64Softmax() {
        for (k, n) in lengths.enumerated() {
            let rows = 3
            // Scores of different ranges per row: small, moderate, and some far below the max (e^{-80}).
            var x = uniforms(rows * n, seed: UInt64(70 + k), in: -4...4)
            for j in 0..<n { x[n + j] *= 5; x[2 * n + j] = j % 3 == 0 ? -80 : x[2 * n + j] }
            let want = (0..<rows).flatMap { softmax64(x[$0 * n..<($0 + 1) * n]) }
            // float32 rounds x_j − m (to 2^-24 relative), which e^{x_j − m} turns into a relative
            // error of |x_j − m|·2^-24: the bound is fastExp's 1e-6, the sum's and that.
            let m = (0..<rows).flatMap { r in [Float](repeating: x[r * n..<(r + 1) * n].max()!, count: n) }
            let bound = zip(x, m).map { 2e-6 + Double(abs($0 - $1)) * 0x1p-23 }
            x.withUnsafeMutableBufferPointer { softmaxRows($0.baseAddress!, rows: rows, columns: n) }
            let errors = zip(x, want).map { abs(Double($0) - $1) / $1 }
            let worst = zip(errors, bound).map { $0 / $1 }.enumerated().max { $0.element < $1.element }!
            XCTAssertLessThan(worst.element, 1, "n = \(n): relative error \(errors[worst.offset]) at \(worst.offset) "
                              + "(bound \(bound[worst.offset]))")
            for r in 0..<rows {
                XCTAssertEqual(x[r * n..<(r + 1) * n].reduce(0, +), 1, accuracy: 1e-5, "row \(r) sums to 1 (n = \(n))")
            }
        }
    }

    /// A constant row is uniform; a row with one huge entry is one-hot (no overflow, no NaN).
    func testEdgeRows() {
        var flat = [Float](repeating: 3, count: 13)
        flat.withUnsafeMutableBufferPointer { softmaxRows($0.baseAddress!, rows: 1, columns: 13) }
        assertClose(flat, [Float](repeating: 1 / 13, count: 13), abs: 1e-7, "uniform row")
        var spike = [Float](repeating: -50, count: 17)
        spike[11] = 1e30
        spike.withUnsafeMutableBufferPointer { softmaxRows($0.baseAddress!, rows: 1, columns: 17) }
        XCTAssertEqual(spike[11], 1)
        XCTAssertEqual(spike.reduce(0, +), 1)
    }

    /// dx = Jᵀ·dp with J_ij = ∂p_i/∂x_j = p_i(δ_ij − p_j), in float64 from the softmax's definition.
    func testBackwardMatchesTheFloat64Jacobian() {
        for (k, n) in lengths.enumerated() {
            let x = uniforms(n, seed: UInt64(90 + k), in: -3...3), dp = uniforms(n, seed: UInt64(110 + k))
            let p64 = softmax64(x[...])
            var want = [Double](repeating: 0, count: n)
            for j in 0..<n {
                for i in 0..<n { want[j] += Double(dp[i]) * p64[i] * ((i == j ? 1 : 0) - p64[j]) }
            }
            var p = x
            p.withUnsafeMutableBufferPointer { softmaxRows($0.baseAddress!, rows: 1, columns: n) }
            var d = dp
            d.withUnsafeMutableBufferPointer { softmaxRowsBackward($0.baseAddress!, probs: p, rows: 1, columns: n) }
            assertClose(d, want, abs: 1e-6, "dx for n = \(n)")
        }
    }

    /// L = Σ_j w_j·softmax(x)_j: the backward's dx against central differences of L (in float64
    /// from float32 softmax evaluations).
    func testBackwardMatchesFiniteDifferences() {
        let n = 23
        let x = uniforms(n, seed: 130, in: -2...2), w = uniforms(n, seed: 131)
        func loss(_ x: [Float]) -> Double {
            var p = x
            p.withUnsafeMutableBufferPointer { softmaxRows($0.baseAddress!, rows: 1, columns: n) }
            return zip(p, w).reduce(0) { $0 + Double($1.0) * Double($1.1) }
        }
        var p = x
        p.withUnsafeMutableBufferPointer { softmaxRows($0.baseAddress!, rows: 1, columns: n) }
        var d = w
        d.withUnsafeMutableBufferPointer { softmaxRowsBackward($0.baseAddress!, probs: p, rows: 1, columns: n) }
        let h: Float = 1e-2
        for j in 0..<n {
            var up = x, down = x
            up[j] += h
            down[j] -= h
            let numeric = (loss(up) - loss(down)) / Double(2 * h)
            XCTAssertEqual(Double(d[j]), numeric, accuracy: 2e-4, "dx[\(j)]")
        }
    }
}
