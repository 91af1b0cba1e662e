// Finite-difference gradient checks for every layer and for the whole ResidualMLP, plus
// reference-value checks of the small kernels they rest on (fastExp, gemm, sinusoid).
//
// Method: a fixed random weighting w gives the scalar loss L = Σ w ⊙ out (so dout = w); the
// analytic gradient from `backward` is compared with the central difference
// (L(θ + h) − L(θ − h))/2h, where the Float forward pass is re-run and L is summed in Double.
// A component passes when |fd − analytic| ≤ rtol·max(|fd|, |analytic|) + atol.
import XCTest
@testable import DDPM

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Compares analytic gradients with central differences at the given indices of `values`.
/// - Parameters:
///   - values: the flat vector being perturbed (restored afterwards).
///   - loss: recomputes L from the current `values` (Float forward, Double sum).
/// - Returns: the worst |fd − analytic|/(rtol·max + atol) (≤ 1 passes), for reporting.
@discardableResult
func checkGradient(_ what: String, values: UnsafeMutablePointer<Float>, analytic: [Float], indices: [Int],
                   h: Float = 1e-2, rtol: Double = 1e-2, atol: Double = 2e-4, loss: () -> Double,
                   file: StaticString = #filePath, line: UInt = #line) -> Double {
    var worst = 0.0
    var failures: [String] = []
    for i in indices {
        let saved = values[i]
        values[i] = saved + h
        let plus = loss()
        values[i] = saved - h
        let minus = loss()
        values[i] = saved
        // The actual step taken in Float, so that rounding of θ ± h does not bias the quotient.
        let step = Double(saved + h) - Double(saved - h)
        let fd = (plus - minus) / step
        let an = Double(analytic[i])
        let ratio = abs(fd - an) / (rtol * max(abs(fd), abs(an)) + atol)
        worst = max(worst, ratio)
        if !(ratio <= 1) { failures.append("[\(i)] analytic \(an) vs finite difference \(fd)") }
    }
    XCTAssertEqual(failures, [], "\(what): gradient mismatch (worst ratio \(worst))", file: file, line: line)
    return worst
}

/// A few indices of a tensor at `offset` with `count` elements: first, last and random ones.
func sampleIndices(offset: Int, count: Int, n: Int, seed: UInt64) -> [Int] {
    var rng = Philox(seed: seed)
    var picks = Set([offset, offset + count - 1])
    var r = [Int32](repeating: 0, count: n)
    r.withUnsafeMutableBufferPointer { rng.fillUniformInt($0.baseAddress!, count: n, below: count) }
    for k in r { picks.insert(offset + Int(k)) }
    return picks.sorted()
}

/// A heap copy of `a` whose pointer stays valid (perturbed in place by the checks).
func buffer(_ a: [Float]) -> Buffer<Float> {
    let b = try! Buffer<Float>(count: a.count)
    a.withUnsafeBufferPointer { b.pointer.update(from: $0.baseAddress!, count: a.count) }
    return b
}

/// Σ w_i·out_i in Double.
func weightedSum(_ out: UnsafePointer<Float>, _ w: [Float]) -> Double {
    var s = 0.0
    for i in 0..<w.count { s += Double(w[i]) * Double(out[i]) }
    return s
}

final class GradientCheckTests: XCTestCase {
    /// Fresh parameters with every value overwritten by U(−scale, scale) (norm weights around 1),
    /// so that no gradient is trivially zero or one.
    func randomParameters(_ layout: ParameterLayout, seed: UInt64, scale: Float = 0.5) -> ParameterSet {
        var rng = Philox(seed: seed)
        let params = try! ParameterSet(layout: layout, rng: &rng)
        var v = uniforms(layout.count, seed: seed &+ 1, in: -scale...scale)
        for e in layout.entries where e.name.hasSuffix("norm.weight") {
            for i in e.offset..<e.offset + e.count { v[i] += 1 }
        }
        try! params.setValues(v)
        return params
    }

    // MARK: - Linear

    func testLinearGradients() {
        let (B, I, O) = (3, 5, 4)
        var layout = ParameterLayout()
        let fc = Linear(&layout, "fc", in: I, out: O)
        let params = randomParameters(layout, seed: 1)
        let xs = buffer(uniforms(B * I, seed: 2)), x = xs.pointer
        var out = [Float](repeating: 0, count: B * O)
        let w = uniforms(B * O, seed: 3)
        let p = params.values.pointer

        // Forward against the definition out[b, o] = Σ_i x[b, i]·W[o, i] + b[o].
        fc.forward(&out, x, p, batch: B)
        var want: [Double] = []
        for b in 0..<B {
            for o in 0..<O {
                var s = Double(p[fc.bias + o])
                for i in 0..<I { s += Double(x[b * I + i]) * Double(p[fc.weight + o * I + i]) }
                want.append(s)
            }
        }
        assertClose(out, want, abs: 1e-6, "Linear forward")

        params.zeroGrads()
        var dx = [Float](repeating: 0, count: B * I)
        fc.backward(dinp: &dx, params.grads.pointer, dout: w, inp: x, p, batch: B)
        let grads = params.gradsArray
        let loss = { () -> Double in
            var y = [Float](repeating: 0, count: B * O)
            fc.forward(&y, x, p, batch: B)
            return weightedSum(y, w)
        }
        checkGradient("Linear dW, db", values: p, analytic: grads, indices: Array(0..<layout.count), loss: loss)
        checkGradient("Linear dx", values: x, analytic: dx, indices: Array(0..<B * I), loss: loss)

        // Parameter gradients accumulate; dinp is overwritten unless `accumulate`.
        var dx2 = [Float](repeating: 100, count: B * I)
        fc.backward(dinp: &dx2, params.grads.pointer, dout: w, inp: x, p, batch: B)
        assertClose(params.gradsArray, grads.map { 2 * $0 }, abs: 1e-5, "Linear grads accumulate")
        assertClose(dx2, dx, abs: 1e-6, "Linear dinp overwritten")
        fc.backward(dinp: &dx2, params.grads.pointer, dout: w, inp: x, p, batch: B, accumulate: true)
        assertClose(dx2, dx.map { 2 * $0 }, abs: 1e-5, "Linear dinp accumulates when asked")

        // Forward with accumulate adds to what is there.
        var acc = [Float](repeating: 1, count: B * O)
        fc.forward(&acc, x, p, batch: B, accumulate: true)
        assertClose(acc, out.map { $0 + 1 }, abs: 1e-6, "Linear forward accumulate")
    }

    // MARK: - LayerNorm

    func testLayerNormGradients() {
        let (B, C) = (4, 6)
        var layout = ParameterLayout()
        let ln = LayerNorm(&layout, "norm", features: C)
        let params = randomParameters(layout, seed: 4)
        let xs = buffer(uniforms(B * C, seed: 5, in: -2...2)), x = xs.pointer
        let w = uniforms(B * C, seed: 6)
        let p = params.values.pointer
        var out = [Float](repeating: 0, count: B * C), mean = [Float](repeating: 0, count: B), rstd = mean
        ln.forward(&out, mean: &mean, rstd: &rstd, x, p, batch: B)

        // Forward against the definition in Double (biased variance, ε = 1e-5).
        var want: [Double] = []
        for b in 0..<B {
            let row = (0..<C).map { Double(x[b * C + $0]) }
            let m = row.reduce(0, +) / Double(C)
            let v = row.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(C)
            XCTAssertEqual(Double(mean[b]), m, accuracy: 1e-6)
            XCTAssertEqual(Double(rstd[b]), 1 / (v + 1e-5).squareRoot(), accuracy: 1e-5)
            for i in 0..<C { want.append((row[i] - m) / (v + 1e-5).squareRoot() * Double(p[ln.gamma + i]) + Double(p[ln.beta + i])) }
        }
        assertClose(out, want, abs: 2e-6, "LayerNorm forward")

        params.zeroGrads()
        // dinp accumulates: start from a known value and subtract it.
        var dx = [Float](repeating: 0.25, count: B * C)
        ln.backward(dinp: &dx, params.grads.pointer, dout: w, inp: x, mean: mean, rstd: rstd, p, batch: B)
        dx = dx.map { $0 - 0.25 }
        let loss = { () -> Double in
            var y = [Float](repeating: 0, count: B * C), m = [Float](repeating: 0, count: B), r = m
            ln.forward(&y, mean: &m, rstd: &r, x, p, batch: B)
            return weightedSum(y, w)
        }
        checkGradient("LayerNorm dγ, dβ", values: p, analytic: params.gradsArray, indices: Array(0..<layout.count), loss: loss)
        checkGradient("LayerNorm dx", values: x, analytic: dx, indices: Array(0..<B * C), h: 3e-3, loss: loss)
    }

    // MARK: - SiLU

    func testSiLUForwardAndGradient() {
        let n = 41
        let xs = buffer((0..<n).map { Float($0 - 20) * 0.4 }), x = xs.pointer  // −8 … 8, 0 included
        let w = uniforms(n, seed: 7)
        var y = [Float](repeating: 0, count: n), dx = y
        SiLU.forward(&y, x, count: n)
        assertRelClose(y, xs.array.map { Double($0) / (1 + exp(-Double($0))) }, rel: 1e-6, floor: 1e-6, "SiLU forward vs x·σ(x)")
        SiLU.backward(dinp: &dx, dout: w, inp: x, count: n)
        // Closed form: d/dx x·σ(x) = σ(x)·(1 + x·(1 − σ(x))).
        let closed = (0..<n).map { i -> Double in
            let (xi, s) = (Double(x[i]), 1 / (1 + exp(-Double(x[i]))))
            return Double(w[i]) * s * (1 + xi * (1 - s))
        }
        assertClose(dx, closed, abs: 1e-6, "SiLU backward vs closed form")
        let loss = { () -> Double in
            var out = [Float](repeating: 0, count: n)
            SiLU.forward(&out, x, count: n)
            return weightedSum(out, w)
        }
        checkGradient("SiLU dx", values: x, analytic: dx, indices: Array(0..<n), h: 1e-2, loss: loss)
        // In-place backward (dinp aliasing dout), as the networks use it.
        var inPlace = w
        inPlace.withUnsafeMutableBufferPointer { d in SiLU.backward(dinp: d.baseAddress!, dout: d.baseAddress!, inp: x, count: n) }
        XCTAssertEqual(inPlace, dx)
    }

    // MARK: - Embedding

    func testEmbeddingGradients() {
        let (K, C, B) = (4, 5, 6)
        var layout = ParameterLayout()
        let emb = Embedding(&layout, "emb", rows: K, features: C)
        let params = randomParameters(layout, seed: 8)
        let ids: [Int32] = [0, 3, 3, 1, 0, 3]  // row 2 unused, row 3 three times
        let w = uniforms(B * C, seed: 9)
        let base = uniforms(B * C, seed: 10)
        let p = params.values.pointer
        var out = base
        emb.forward(accumulateInto: &out, ids: ids, p, batch: B)
        let want = (0..<B * C).map { Double(base[$0]) + Double(p[emb.table + Int(ids[$0 / C]) * C + $0 % C]) }
        assertClose(out, want, abs: 1e-6, "Embedding forward adds the looked-up rows")

        params.zeroGrads()
        emb.backward(params.grads.pointer, dout: w, ids: ids, batch: B)
        let grads = params.gradsArray
        XCTAssertTrue(grads[(2 * C)..<(3 * C)].allSatisfy { $0 == 0 }, "unused row has zero gradient")
        let loss = { () -> Double in
            var y = base
            emb.forward(accumulateInto: &y, ids: ids, p, batch: B)
            return weightedSum(y, w)
        }
        checkGradient("Embedding dtable", values: p, analytic: grads, indices: Array(0..<layout.count), loss: loss)
    }

    // MARK: - Whole network

    /// Every parameter tensor of a ResidualMLP, sampled at a few indices each.
    func checkResidualMLP(numClasses K: Int, depth: Int, seed: UInt64, learnsVariance: Bool = false) throws {
        let (D, H, E, B, T) = (3, 8, 6, 5, 50)
        var rng = Philox(seed: seed)
        let net = try ResidualMLP(.init(dataDim: D, hidden: H, depth: depth, timeEmbedDim: E),
                                  conditioning: K > 0 ? .classes(K) : .none, learnsVariance: learnsVariance, timesteps: T, rng: &rng)
        let O = net.outputSize / D  // 2 with the variance head: every output float has a gradient
        var v = uniforms(net.parameters.count, seed: seed + 1, in: -0.5...0.5)
        for e in net.parameters.layout.entries where e.name.hasSuffix("norm.weight") {
            for i in e.offset..<e.offset + e.count { v[i] += 1 }
        }
        try net.parameters.setValues(v)
        let x = uniforms(B * D, seed: seed + 2, in: -2...2)
        let t: [Int32] = [0, 7, 49, 25, 3]
        let labels: [Int32]? = K > 0 ? [0, 1, 2, Int32(K), 1] : nil  // every class and the null label
        let w = uniforms(B * D * O, seed: seed + 3)
        var out = [Float](repeating: 0, count: B * D * O)
        var dropRNG = Philox(seed: 0)
        withOptionalPointer(labels) { l in
            net.forward(&out, x: x, t: t, labels: l, batch: B, params: net.parameters.values.pointer, training: true, rng: &dropRNG)
        }
        net.parameters.zeroGrads()
        net.backward(dout: w, batch: B)
        let grads = net.parameters.gradsArray
        XCTAssertTrue(grads.allSatisfy { $0.isFinite })

        // Perturb a copy, so that the live values (and the stored activations) stay as they were.
        let values = buffer(net.parameters.valuesArray)
        let loss = { () -> Double in
            var y = [Float](repeating: 0, count: B * D * O)
            var r = Philox(seed: 0)
            withOptionalPointer(labels) { l in
                net.forward(&y, x: x, t: t, labels: l, batch: B, params: values.pointer, training: false, rng: &r)
            }
            return weightedSum(y, w)
        }
        XCTAssertEqual(loss(), weightedSum(out, w), accuracy: 1e-5, "inference forward equals training forward")
        var worst: [(String, Double)] = []
        for (k, entry) in net.parameters.layout.entries.enumerated() {
            let idx = sampleIndices(offset: entry.offset, count: entry.count, n: 4, seed: UInt64(k))
            let r = checkGradient("ResidualMLP(K=\(K), L=\(depth)) \(entry.name)", values: values.pointer, analytic: grads,
                                  indices: idx, h: 3e-3, rtol: 2e-2, atol: 5e-4, loss: loss)
            worst.append((entry.name, r))
        }
        let names = net.parameters.layout.entries.map(\.name)
        XCTAssertEqual(Set(names).count, names.count, "parameter names are unique")
        XCTAssertEqual(names.contains("class_embedding.weight"), K > 0)
        print("[gradcheck] ResidualMLP K=\(K) L=\(depth): worst ratio \(worst.map(\.1).max() ?? 0) over \(worst.count) tensors")
    }

    func testResidualMLPGradientsUnconditional() throws {
        try checkResidualMLP(numClasses: 0, depth: 2, seed: 100)
    }

    func testResidualMLPGradientsConditional() throws {
        try checkResidualMLP(numClasses: 3, depth: 2, seed: 200)
    }

    func testResidualMLPGradientsNoBlocks() throws {
        try checkResidualMLP(numClasses: 0, depth: 0, seed: 300)
    }

    /// The variance head: the output layer doubled to [mean; v], both halves with gradients.
    func testResidualMLPGradientsWithLearnedVariance() throws {
        try checkResidualMLP(numClasses: 2, depth: 1, seed: 400, learnsVariance: true)
    }

    // MARK: - Kernels

    /// fastExp vs exp in Double on [−80, 80]: relative error < 1e-6 everywhere.
    func testFastExpRelativeError() {
        var worst = (err: 0.0, x: Float(0))
        func probe(_ x: Float) {
            let want = exp(Double(x))
            let err = abs(Double(fastExp(x)) - want) / want
            if !(err <= worst.err) { worst = (err, x) }
        }
        let n = 400_000
        for i in 0...n { probe(-80 + 160 * Float(i) / Float(n)) }
        for x in uniforms(100_000, seed: 11, in: -80...80) { probe(x) }
        for k in -80...80 { probe(Float(k)); probe(Float(k) + 0.5); probe(Float(k) * Float(M_LN2)) }
        XCTAssertLessThan(worst.err, 1e-6, "fastExp max relative error \(worst.err) at x = \(worst.x)")
        XCTAssertEqual(fastExp(0), 1)
        // Outside [−87, 88] the input is clamped: finite and positive.
        XCTAssertEqual(Double(fastExp(1000)), exp(88.0), accuracy: exp(88.0) * 1e-6)
        XCTAssertEqual(Double(fastExp(-1000)), exp(-87.0), accuracy: exp(-87.0) * 1e-6)
        XCTAssertEqual(Double(sigmoid(2)), 1 / (1 + exp(-2.0)), accuracy: 1e-7)
        print("[fastExp] max relative error \(worst.err) at x = \(worst.x)")
    }

    /// gemm against a naive triple loop for every transpose combination.
    func testGemmAllTransposes() {
        let (m, n, k) = (5, 4, 3)
        let A = uniforms(m * k, seed: 12), B = uniforms(k * n, seed: 13), C0 = uniforms(m * n, seed: 14)
        for transA in [false, true] {
            for transB in [false, true] {
                var C = C0
                gemm(&C, A, B, m: m, n: n, k: k, transA: transA, transB: transB, alpha: 0.5, beta: 2)
                var want: [Double] = []
                for i in 0..<m {
                    for j in 0..<n {
                        var s = 0.0
                        for l in 0..<k {
                            let a = transA ? A[l * m + i] : A[i * k + l]  // A stored (k, m) when transposed
                            let b = transB ? B[j * k + l] : B[l * n + j]  // B stored (n, k) when transposed
                            s += Double(a) * Double(b)
                        }
                        want.append(0.5 * s + 2 * Double(C0[i * n + j]))
                    }
                }
                assertClose(C, want, abs: 1e-5, "gemm transA \(transA) transB \(transB)")
            }
        }
    }

    /// emb[t, i] = sin(t·ω_i), emb[t, E/2 + i] = cos(t·ω_i), ω_i = 10000^(−i/(E/2)).
    func testSinusoidalEmbedding() {
        let (E, T) = (8, 1000)
        let s = try! SinusoidalEmbedding(dim: E, timesteps: T)
        let t: [Int32] = [0, 1, 999, 500]
        var out = [Float](repeating: .nan, count: t.count * E)
        s.forward(&out, t: t, batch: t.count)
        var want: [Double] = []
        for step in t {
            for i in 0..<E {
                let j = i % (E / 2)
                let omega = pow(10000.0, -Double(j) / Double(E / 2))
                want.append(i < E / 2 ? sin(Double(step) * omega) : cos(Double(step) * omega))
            }
        }
        assertClose(out, want, abs: 1e-6, "sinusoidal embedding")
    }
}
