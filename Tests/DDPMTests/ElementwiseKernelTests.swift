// The C elementwise kernels (Sources/DDPMKernels): each against a float64 transcription of its
// formula (finite differences of that transcription for the backward passes), on lengths with
// and without a tail, and bitwise the same on every ISA path this CPU runs.
import XCTest
import DDPMKernels
@testable import DDPM

/// Runs body once on each ISA path this CPU supports, then restores the path in use.
func onEveryISAPath(_ body: (KernelISA) throws -> Void) rethrows {
    let saved = KernelISA.current
    defer { KernelISA.use(saved) }
    for isa in KernelISA.supported {
        XCTAssertTrue(KernelISA.use(isa), "switch to \(isa.name)")
        try body(isa)
    }
}

/// Bit patterns, for exact comparisons (NaN included).
func bits(_ x: [Float]) -> [UInt32] { x.map(\.bitPattern) }

final class ElementwiseKernelTests: XCTestCase {
    /// Lengths around the 16-float block and the vector widths: empty, tails only, blocks and tails.
    let lengths = [0, 1, 3, 4, 7, 8, 15, 16, 17, 31, 33, 50, 100, 1000, 4097]

    // MARK: - exp and SiLU

    /// ddpm_exp is FastMath's fastExp bit for bit on every path, and within 2e-7 of exp in Double on [−87, 88].
    func testExpIsFastExpAndAccurate() {
        var x = uniforms(20_011, seed: 1, in: -87...88) + (-87...88).map { Float($0) } + [0, -0.0, 1e-30, -1e-30, 88.5, -87.5, 1000, -1000]
        x += [.infinity, -.infinity]
        var y = [Float](repeating: 0, count: x.count)
        onEveryISAPath { isa in
            ddpm_exp(&y, x, Int64(x.count))
            var worst = 0.0
            for i in x.indices {
                XCTAssertEqual(y[i].bitPattern, fastExp(x[i]).bitPattern, "\(isa.name): exp(\(x[i]))")
                if abs(x[i]) <= 87 { worst = max(worst, abs(Double(y[i]) - exp(Double(x[i]))) / exp(Double(x[i]))) }
            }
            XCTAssertLessThan(worst, 2e-7, "\(isa.name): max relative error of e^x")
        }
        var nan: [Float] = [.nan]
        ddpm_exp(&nan, nan, 1)
        XCTAssert(nan[0].isNaN, "e^NaN is NaN")
    }

    /// SiLU and its gradient against Double: y = x/(1 + e^{−x}), dx = dy·σ·(1 + x·(1 − σ)).
    func testSiLUAgainstDouble() {
        for n in lengths {
            let x = normals(n, seed: UInt64(n)).map { $0 * 4 } + [0, -0.0, 20, -20, 90, -90].prefix(n > 6 ? 6 : 0)
            let dy = normals(x.count, seed: UInt64(n) + 7)
            var y = [Float](repeating: 0, count: x.count), dx = y
            var first: (y: [UInt32], dx: [UInt32])?
            onEveryISAPath { isa in
                ddpm_silu_forward(&y, x, Int64(x.count))
                ddpm_silu_backward(&dx, dy, x, Int64(x.count))
                for i in x.indices {
                    let xd = Double(x[i]), s = 1 / (1 + exp(-xd))
                    let want = xd * s, wantDx = Double(dy[i]) * s * (1 + xd * (1 - s))
                    // Below −87 e^{−x} is clamped (FastMath): SiLU(x) ≈ x·e^x < 1e-35 there, not to 5e-7.
                    let floor = xd < -87 ? 1e-35 : 1e-38
                    XCTAssertEqual(Double(y[i]), want, accuracy: 5e-7 * abs(want) + floor, "\(isa.name): SiLU(\(x[i]))")
                    // Bounded by the terms σ and x·σ·(1 − σ) before they cancel.
                    let scale = abs(Double(dy[i])) * s * (1 + abs(xd) * (1 - s))
                    XCTAssertEqual(Double(dx[i]), wantDx, accuracy: 1e-6 * scale + floor, "\(isa.name): SiLU'(\(x[i]))")
                }
                if let first {
                    XCTAssertEqual(bits(y), first.y, "\(isa.name): SiLU bits, n = \(n)")
                    XCTAssertEqual(bits(dx), first.dx, "\(isa.name): SiLU' bits, n = \(n)")
                } else {
                    first = (bits(y), bits(dx))
                }
            }
        }
    }

    // MARK: - Reductions

    /// Sums within the bound of 16 partial sums, (n/16 + 4)·2⁻²⁴·Σ|terms|, of the Double sums;
    /// bitwise the same on every path.
    func testReductionsAgainstDouble() {
        for n in lengths {
            let a = normals(n, seed: 10 + UInt64(n)).map { $0 + 0.3 }, b = normals(n, seed: 20 + UInt64(n))
            let m: Float = 0.25
            var first: [UInt32]?
            onEveryISAPath { isa in
                let (s, d) = sumAndDot(a, b, n)
                let results = [sumOf(a, n), s, d, dot(a, b, n), squaredDeviations(a, n, from: m)]
                let terms: [[Double]] = [a.map { Double($0) }, a.map { Double($0) }, zip(a, b).map { Double($0) * Double($1) },
                                         zip(a, b).map { Double($0) * Double($1) }, a.map { (Double($0) - Double(m)) * (Double($0) - Double(m)) }]
                for (k, (got, t)) in zip(results, terms).enumerated() {
                    let bound = (Double(n) / 16 + 4) * 0x1p-24 * t.reduce(0) { $0 + abs($1) } + 1e-30
                    XCTAssertEqual(Double(got), t.reduce(0, +), accuracy: bound, "\(isa.name): reduction \(k), n = \(n)")
                }
                if let first { XCTAssertEqual(bits(results), first, "\(isa.name): n = \(n)") } else { first = bits(results) }
            }
        }
    }

    /// Σx² accumulates in Double: on 200 000 values the relative error stays near 2⁻⁵³·n/16, where
    /// float partial sums (the old 4096-value blocks) were off by about 1e-7.
    func testSumOfSquaresIsDoublePrecision() {
        let n = 3 * sumOfSquaresBlock + 3393
        let x = uniforms(n, seed: 5, in: 0.5...1.5)
        let want = x.reduce(0.0) { $0 + Double($1) * Double($1) }
        var first: UInt64?
        onEveryISAPath { isa in
            let got = sumOfSquares(x, n)
            XCTAssertEqual(got, want, accuracy: want * 1e-12, "\(isa.name): Σx² in double")
            if let first { XCTAssertEqual(got.bitPattern, first, isa.name) } else { first = got.bitPattern }
        }
        // Negative control: the same sum in float partials misses the bound.
        var floatSum: Float = 0
        for v in x { floatSum += v * v }
        XCTAssertGreaterThan(abs(Double(floatSum) - want), want * 1e-12, "float accumulation would fail this test")
    }

    // MARK: - GroupNorm

    struct GroupNormCase {
        let C, G, B, N: Int
        let bias, silu: Bool
        let dropout: Float  // 0: none
    }

    let groupNormCases = [
        GroupNormCase(C: 6, G: 2, B: 2, N: 7, bias: true, silu: true, dropout: 0.3),
        GroupNormCase(C: 4, G: 4, B: 3, N: 50, bias: false, silu: false, dropout: 0),
        GroupNormCase(C: 8, G: 2, B: 1, N: 16, bias: true, silu: true, dropout: 0),
        GroupNormCase(C: 6, G: 3, B: 2, N: 33, bias: false, silu: true, dropout: 0.5),
        GroupNormCase(C: 4, G: 2, B: 2, N: 4, bias: true, silu: false, dropout: 0),
        // images of 1, 2, 4 and 8 pixels that go several at a time (16/N), and some left over
        GroupNormCase(C: 4, G: 2, B: 9, N: 4, bias: true, silu: true, dropout: 0.3),
        GroupNormCase(C: 6, G: 3, B: 18, N: 1, bias: true, silu: true, dropout: 0),
        GroupNormCase(C: 4, G: 1, B: 5, N: 8, bias: false, silu: true, dropout: 0),
        GroupNormCase(C: 4, G: 2, B: 8, N: 2, bias: true, silu: false, dropout: 0.2),
    ]

    /// y (C, B, N) of the fused GroupNorm in Double: x = inp + bias_bc; n = (x − μ)/√(σ² + ε)·γ + β;
    /// y = SiLU(n)·[u ≥ p]/(1 − p).
    static func groupNormReference(_ k: GroupNormCase, inp: [Double], gamma: [Double], beta: [Double], bias: [Double],
                                   u: [Float]) -> [Double] {
        let (C, G, B, N) = (k.C, k.G, k.B, k.N), Cg = C / G
        var y = [Double](repeating: 0, count: C * B * N)
        for b in 0..<B {
            for g in 0..<G {
                let chans = g * Cg..<(g + 1) * Cg
                func x(_ c: Int, _ i: Int) -> Double { inp[(c * B + b) * N + i] + (k.bias ? bias[b * C + c] : 0) }
                let values = chans.flatMap { c in (0..<N).map { x(c, $0) } }
                let mean = values.reduce(0, +) / Double(values.count)
                let variance = values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(values.count)
                for c in chans {
                    for i in 0..<N {
                        var v = (x(c, i) - mean) / (variance + 1e-5).squareRoot() * gamma[c] + beta[c]
                        if k.silu { v = v / (1 + exp(-v)) }
                        if k.dropout > 0 { v *= u[(c * B + b) * N + i] < k.dropout ? 0 : 1 / (1 - Double(k.dropout)) }
                        y[(c * B + b) * N + i] = v
                    }
                }
            }
        }
        return y
    }

    /// The layer, its parameters (γ around 1, β around 0), a bias and the uniforms of a case.
    func groupNormSetup(_ k: GroupNormCase, seed: UInt64) -> (GroupNorm, [Float], [Float], [Float], [Float]) {
        var layout = ParameterLayout()
        let gn = GroupNorm(&layout, "gn", channels: k.C, groups: k.G)
        var params = [Float](repeating: 0, count: layout.count)
        let noise = normals(2 * k.C, seed: seed)
        for c in 0..<k.C { (params[gn.gamma + c], params[gn.beta + c]) = (1 + 0.3 * noise[c], 0.2 * noise[k.C + c]) }
        let inp = normals(k.C * k.B * k.N, seed: seed + 1).map { $0 * 2 + 0.5 }
        return (gn, params, inp, normals(k.B * k.C, seed: seed + 2), uniforms(k.C * k.B * k.N, seed: seed + 3, in: 0...1))
    }

    func fusion(_ k: GroupNormCase, bias: UnsafePointer<Float>, mask: UnsafeMutablePointer<Float>) -> GroupNorm.Fusion {
        GroupNorm.Fusion(bias: k.bias ? bias : nil, silu: k.silu, mask: k.dropout > 0 ? mask : nil,
                         dropout: k.dropout > 0 ? Dropout(probability: k.dropout) : nil)
    }

    /// The fused forward against Double, and the mask it leaves: exactly [u ≥ p]·Float(1/(1 − p)).
    func testGroupNormForwardAgainstDouble() {
        for (n, k) in groupNormCases.enumerated() {
            let (gn, params, inp, bias, u) = groupNormSetup(k, seed: 100 + UInt64(n))
            let count = k.C * k.B * k.N
            let want = Self.groupNormReference(k, inp: inp.map { Double($0) }, gamma: (0..<k.C).map { Double(params[gn.gamma + $0]) },
                                               beta: (0..<k.C).map { Double(params[gn.beta + $0]) }, bias: bias.map { Double($0) }, u: u)
            var first: [UInt32]?
            onEveryISAPath { isa in
                var (y, mask) = ([Float](repeating: 0, count: count), u)
                var (mean, rstd) = ([Float](repeating: 0, count: k.B * k.G), [Float](repeating: 0, count: k.B * k.G))
                bias.withUnsafeBufferPointer { bp in
                    mask.withUnsafeMutableBufferPointer { mp in
                        gn.forward(&y, mean: &mean, rstd: &rstd, inp, params, batch: k.B, spatial: k.N,
                                   fusing: fusion(k, bias: bp.baseAddress!, mask: mp.baseAddress!))
                    }
                }
                for i in 0..<count {
                    XCTAssertEqual(Double(y[i]), want[i], accuracy: 3e-6 * max(1, abs(want[i])), "\(isa.name) case \(n): y[\(i)]")
                }
                if k.dropout > 0 {
                    let keep = 1 / (1 - k.dropout)
                    XCTAssertEqual(mask, u.map { $0 < k.dropout ? 0 : keep }, "\(isa.name) case \(n): the mask")
                }
                if let first { XCTAssertEqual(bits(y + mean + rstd), first, "\(isa.name) case \(n)") } else { first = bits(y + mean + rstd) }
            }
        }
    }

    /// The fused backward against central differences of the Double forward, for L = Σ w·y:
    /// ∂L/∂inp, ∂L/∂γ, ∂L/∂β and ∂L/∂bias; dout left holding ∂L/∂n; accumulation into dinp.
    func testGroupNormBackwardAgainstDoubleDifferences() {
        for (n, k) in groupNormCases.enumerated() {
            let (gn, params, inp, bias, u) = groupNormSetup(k, seed: 200 + UInt64(n))
            let count = k.C * k.B * k.N
            let w = normals(count, seed: 300 + UInt64(n))
            let gamma = (0..<k.C).map { Double(params[gn.gamma + $0]) }, beta = (0..<k.C).map { Double(params[gn.beta + $0]) }
            let (inpD, biasD) = (inp.map { Double($0) }, bias.map { Double($0) })
            func loss(_ inp: [Double], _ gamma: [Double], _ beta: [Double], _ bias: [Double]) -> Double {
                zip(Self.groupNormReference(k, inp: inp, gamma: gamma, beta: beta, bias: bias, u: u), w).reduce(0) { $0 + $1.0 * Double($1.1) }
            }
            func derivative(_ v: [Double], _ i: Int, _ f: ([Double]) -> Double) -> Double {
                let h = 1e-6 * max(1, abs(v[i]))
                var (p, m) = (v, v)
                p[i] += h
                m[i] -= h
                return (f(p) - f(m)) / (2 * h)
            }
            let wantDx = (0..<count).map { i in derivative(inpD, i) { loss($0, gamma, beta, biasD) } }
            let wantDg = (0..<k.C).map { i in derivative(gamma, i) { loss(inpD, $0, beta, biasD) } }
            let wantDb = (0..<k.C).map { i in derivative(beta, i) { loss(inpD, gamma, $0, biasD) } }
            let wantDbias = k.bias ? (0..<k.B * k.C).map { i in derivative(biasD, i) { loss(inpD, gamma, beta, $0) } } : []
            let prior = normals(count, seed: 400 + UInt64(n))
            var first: [UInt32]?
            onEveryISAPath { isa in
                var (y, mask) = ([Float](repeating: 0, count: count), u)
                var (mean, rstd) = ([Float](repeating: 0, count: k.B * k.G), [Float](repeating: 0, count: k.B * k.G))
                var grads = [Float](repeating: 0, count: params.count), dbias = [Float](repeating: 0, count: k.B * k.C)
                var (dinp, dout) = (prior, w)
                bias.withUnsafeBufferPointer { bp in
                    mask.withUnsafeMutableBufferPointer { mp in
                        let f = fusion(k, bias: bp.baseAddress!, mask: mp.baseAddress!)
                        gn.forward(&y, mean: &mean, rstd: &rstd, inp, params, batch: k.B, spatial: k.N, fusing: f)
                        dbias.withUnsafeMutableBufferPointer { db in
                            gn.backward(dinp: &dinp, &grads, dout: &dout, dbias: k.bias ? db.baseAddress! : nil, inp: inp, mean: mean,
                                        rstd: rstd, params, batch: k.B, spatial: k.N, accumulate: true, fusing: f)
                        }
                    }
                }
                func check(_ got: [Float], _ want: [Double], _ what: String) {
                    for i in want.indices {
                        XCTAssertEqual(Double(got[i]), want[i], accuracy: 2e-4 * max(1, abs(want[i])), "\(isa.name) case \(n): \(what)[\(i)]")
                    }
                }
                check(zip(dinp, prior).map { $0 - $1 }, wantDx, "dinp − its prior value")
                check((0..<k.C).map { grads[gn.gamma + $0] }, wantDg, "dγ")
                check((0..<k.C).map { grads[gn.beta + $0] }, wantDb, "dβ")
                if k.bias { check(dbias, wantDbias, "dbias") }
                if k.silu || k.dropout > 0 {
                    // dout now holds ∂L/∂n = w·mask·SiLU'(n), n recomputed in Double from the kept statistics
                    for i in 0..<count {
                        let (c, b) = (i / (k.B * k.N), i / k.N % k.B), g = c / (k.C / k.G)
                        let x = inpD[i] + (k.bias ? biasD[b * k.C + c] : 0)
                        let nv = (x - Double(mean[b * k.G + g])) * Double(rstd[b * k.G + g]) * gamma[c] + beta[c]
                        let s = 1 / (1 + exp(-nv))
                        var dn = Double(w[i]) * (k.dropout > 0 ? Double(mask[i]) : 1)
                        if k.silu { dn *= s * (1 + nv * (1 - s)) }
                        XCTAssertEqual(Double(dout[i]), dn, accuracy: 2e-5 * max(1, abs(dn)), "\(isa.name) case \(n): ∂L/∂n[\(i)]")
                    }
                }
                let all = dinp + grads + dbias + dout
                if let first { XCTAssertEqual(bits(all), first, "\(isa.name) case \(n)") } else { first = bits(all) }
            }
        }
    }

    /// The fused forward and backward of a batch give every image the bits of the same call on
    /// that image alone (B = 1), and dγ, dβ the bits of those calls made image after image: the
    /// path that takes small images 16/N at a time (N = 1, 2, 4, 8) against the image-by-image
    /// path, with leftover images, around the 16-float block (N = 15, 16, 17, 64 and 3 take the
    /// image path in both) and with every fusion, on every ISA path.
    func testGroupNormBatchGivesEachImageTheBitsOfItsOwnCall() {
        var cases = 0
        for N in [1, 2, 3, 4, 8, 15, 16, 17, 64] {
            for (bias, silu, dropout) in [(true, true, Float(0.3)), (false, false, 0), (true, false, 0), (false, true, 0.5)] {
                let k = GroupNormCase(C: 6, G: 2, B: N == 1 ? 37 : 11, N: N, bias: bias, silu: silu, dropout: dropout)
                let one = GroupNormCase(C: k.C, G: k.G, B: 1, N: N, bias: bias, silu: silu, dropout: dropout)
                let (gn, params, inp, biases, u) = groupNormSetup(k, seed: 600 + UInt64(N))
                let (B, C, G, count) = (k.B, k.C, k.G, k.C * k.B * k.N)
                let w = normals(count, seed: 700 + UInt64(N)), prior = normals(count, seed: 800 + UInt64(N))
                /// y, mask, mean, rstd, dinp, dout, dbias and the gradients of a call on `c`'s images.
                func run(_ c: GroupNormCase, _ inp: [Float], _ bias: [Float], _ u: [Float], _ w: [Float], _ prior: [Float],
                         grads: inout [Float]) -> [[Float]] {
                    let count = c.C * c.B * c.N
                    var (y, mask) = ([Float](repeating: 0, count: count), u)
                    var (mean, rstd) = ([Float](repeating: 0, count: c.B * c.G), [Float](repeating: 0, count: c.B * c.G))
                    var (dinp, dout, dbias) = (prior, w, [Float](repeating: 0, count: c.B * c.C))
                    bias.withUnsafeBufferPointer { bp in
                        mask.withUnsafeMutableBufferPointer { mp in
                            dbias.withUnsafeMutableBufferPointer { db in
                                let f = fusion(c, bias: bp.baseAddress!, mask: mp.baseAddress!)
                                gn.forward(&y, mean: &mean, rstd: &rstd, inp, params, batch: c.B, spatial: c.N, fusing: f)
                                gn.backward(dinp: &dinp, &grads, dout: &dout, dbias: c.bias ? db.baseAddress! : nil, inp: inp,
                                            mean: mean, rstd: rstd, params, batch: c.B, spatial: c.N, accumulate: true, fusing: f)
                            }
                        }
                    }
                    return [y, mask, mean, rstd, dinp, dout, dbias]
                }
                /// Image b of a (C, B, N) tensor as a (C, 1, N) one.
                func image(_ t: [Float], _ b: Int) -> [Float] {
                    var out = [Float]()
                    for c in 0..<C {
                        let start: Int = (c * B + b) * N
                        out += t[start..<start + N]
                    }
                    return out
                }
                onEveryISAPath { isa in
                    var grads = [Float](repeating: 0, count: params.count), gradsOne = grads
                    let all = run(k, inp, biases, u, w, prior, grads: &grads)
                    for b in 0..<B {
                        let got = run(one, image(inp, b), Array(biases[b * C..<(b + 1) * C]), image(u, b), image(w, b),
                                      image(prior, b), grads: &gradsOne)
                        let what = "\(isa.name) N \(N) bias \(bias) silu \(silu) dropout \(dropout) image \(b)"
                        for (t, name) in [(0, "y"), (1, "mask"), (4, "dinp"), (5, "dout")] {
                            XCTAssertEqual(bits(image(all[t], b)), bits(got[t]), "\(what): \(name)")
                        }
                        XCTAssertEqual(bits((0..<G).map { all[2][b * G + $0] }), bits(got[2]), "\(what): mean")
                        XCTAssertEqual(bits((0..<G).map { all[3][b * G + $0] }), bits(got[3]), "\(what): rstd")
                        XCTAssertEqual(bits(Array(all[6][b * C..<(b + 1) * C])), bits(got[6]), "\(what): dbias")
                    }
                    XCTAssertEqual(bits(grads), bits(gradsOne), "\(isa.name) N \(N): dγ, dβ")
                    cases += 1
                }
            }
        }
        XCTAssertGreaterThanOrEqual(cases, 36, "every case ran")
    }

    // MARK: - LayerNorm

    /// y = (x − μ)/√(σ² + ε)·γ + β (+ add) in Double, and its backward against central
    /// differences of that, with dinp accumulating and dγ, dβ summed over the rows.
    func testLayerNormAgainstDouble() {
        for (R, C) in [(3, 7), (2, 16), (4, 37), (2, 128)] {
            var layout = ParameterLayout()
            let ln = LayerNorm(&layout, "ln", features: C)
            var params = [Float](repeating: 0, count: layout.count)
            let noise = normals(2 * C, seed: UInt64(C))
            for i in 0..<C { (params[ln.gamma + i], params[ln.beta + i]) = (1 + 0.3 * noise[i], 0.2 * noise[C + i]) }
            let inp = normals(R * C, seed: 1 + UInt64(C)).map { $0 * 3 - 1 }, add = normals(R * C, seed: 2 + UInt64(C))
            let w = normals(R * C, seed: 3 + UInt64(C)), prior = normals(R * C, seed: 4 + UInt64(C))
            let gamma = (0..<C).map { Double(params[ln.gamma + $0]) }, beta = (0..<C).map { Double(params[ln.beta + $0]) }
            func reference(_ x: [Double], _ gamma: [Double], _ beta: [Double]) -> [Double] {
                (0..<R).flatMap { r -> [Double] in
                    let row = x[r * C..<(r + 1) * C]
                    let mean = row.reduce(0, +) / Double(C)
                    let variance = row.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(C)
                    return row.indices.map { (x[$0] - mean) / (variance + 1e-5).squareRoot() * gamma[$0 - r * C] + beta[$0 - r * C] }
                }
            }
            func loss(_ x: [Double], _ g: [Double], _ b: [Double]) -> Double { zip(reference(x, g, b), w).reduce(0) { $0 + $1.0 * Double($1.1) } }
            func derivative(_ v: [Double], _ i: Int, _ f: ([Double]) -> Double) -> Double {
                let h = 1e-6 * max(1, abs(v[i]))
                var (p, m) = (v, v)
                (p[i], m[i]) = (v[i] + h, v[i] - h)
                return (f(p) - f(m)) / (2 * h)
            }
            let inpD = inp.map { Double($0) }
            let want = zip(reference(inpD, gamma, beta), add).map { $0 + Double($1) }
            let wantDx = (0..<R * C).map { i in derivative(inpD, i) { loss($0, gamma, beta) } }
            let wantDg = (0..<C).map { i in derivative(gamma, i) { loss(inpD, $0, beta) } }
            let wantDb = (0..<C).map { i in derivative(beta, i) { loss(inpD, gamma, $0) } }
            var first: [UInt32]?
            onEveryISAPath { isa in
                var y = [Float](repeating: 0, count: R * C), mean = [Float](repeating: 0, count: R), rstd = mean
                var grads = [Float](repeating: 0, count: layout.count), dinp = prior
                ln.forward(&y, mean: &mean, rstd: &rstd, inp, params, batch: R, adding: add)
                ln.backward(dinp: &dinp, &grads, dout: w, inp: inp, mean: mean, rstd: rstd, params, batch: R)
                for i in 0..<R * C {
                    XCTAssertEqual(Double(y[i]), want[i], accuracy: 2e-6 * max(1, abs(want[i])), "\(isa.name) \(R)×\(C): y[\(i)]")
                    XCTAssertEqual(Double(dinp[i] - prior[i]), wantDx[i], accuracy: 2e-4 * max(1, abs(wantDx[i])), "\(isa.name): dx[\(i)]")
                }
                for i in 0..<C {
                    XCTAssertEqual(Double(grads[ln.gamma + i]), wantDg[i], accuracy: 2e-4 * max(1, abs(wantDg[i])), "\(isa.name): dγ[\(i)]")
                    XCTAssertEqual(Double(grads[ln.beta + i]), wantDb[i], accuracy: 2e-4 * max(1, abs(wantDb[i])), "\(isa.name): dβ[\(i)]")
                }
                let all = y + mean + rstd + dinp + grads
                if let first { XCTAssertEqual(bits(all), first, "\(isa.name) \(R)×\(C)") } else { first = bits(all) }
            }
        }
    }

    // MARK: - AdamW and the EMA

    /// One AdamW step with the EMA in its pass against the Double formula, the same bits as the
    /// update then EMA.update in two passes, and on every path.
    func testAdamWWithEMAAgainstDouble() throws {
        let P = 1000 + 13
        let config = AdamWConfig(learningRate: 1e-2, beta1: 0.8, beta2: 0.95, epsilon: 1e-6, weightDecay: 0.1)
        let (p0, g0, e0) = (normals(P, seed: 1), normals(P, seed: 2), normals(P, seed: 3))
        let (m0, v0) = (normals(P, seed: 4).map { $0 * 0.1 }, uniforms(P, seed: 5, in: 0...0.2))
        let (scale, decay): (Float, Float) = (0.7, 0.9)
        var first: [UInt32]?
        try onEveryISAPath { isa in
            var results: [[Float]] = []
            for fused in [true, false] {
                let opt = try AdamW(config: config, count: P)
                opt.m.pointer.update(from: m0, count: P)
                opt.v.pointer.update(from: v0, count: P)
                opt.step = 2  // the third update: bias corrections 1 − β^3
                var (p, e) = (p0, e0)
                let k = opt.nextStep()
                if fused {
                    p.withUnsafeMutableBufferPointer { pp in
                        e.withUnsafeMutableBufferPointer { ep in
                            opt.update(pp.baseAddress!, grads: g0, gradScale: scale, range: 0..<P, k, ema: ep.baseAddress!, emaDecay: decay)
                        }
                    }
                } else {
                    opt.update(&p, grads: g0, gradScale: scale, range: 0..<P, k)
                    EMA.update(&e, params: p, count: P, decay: decay)
                }
                results.append(p + e + Array(UnsafeBufferPointer(start: opt.m.pointer, count: P))
                               + Array(UnsafeBufferPointer(start: opt.v.pointer, count: P)))
            }
            XCTAssertEqual(bits(results[0]), bits(results[1]), "\(isa.name): the fused EMA step gives the two passes' bits")
            let (b1, b2, lr, wd) = (Double(config.beta1), Double(config.beta2), Double(config.learningRate), Double(config.weightDecay))
            for i in 0..<P {
                let g = Double(g0[i]) * Double(scale)
                let m = b1 * Double(m0[i]) + (1 - b1) * g, v = b2 * Double(v0[i]) + (1 - b2) * g * g
                let p = Double(p0[i]) * (1 - lr * wd) - lr * (m / (1 - pow(b1, 3))) / ((v / (1 - pow(b2, 3))).squareRoot() + 1e-6)
                let e = Double(e0[i]) + (1 - Double(decay)) * (p - Double(e0[i]))
                XCTAssertEqual(Double(results[0][i]), p, accuracy: 1e-6 * max(1, abs(p)), "\(isa.name): θ[\(i)]")
                XCTAssertEqual(Double(results[0][P + i]), e, accuracy: 1e-6 * max(1, abs(e)), "\(isa.name): EMA[\(i)]")
            }
            if let first { XCTAssertEqual(bits(results[0]), first, isa.name) } else { first = bits(results[0]) }
        }
    }

    /// firstNonFinite names the first index and the value a step would break, in the vector
    /// body and in the tail, and nil when every value stays finite.
    func testAdamWFindsTheFirstNonFiniteValue() throws {
        let P = 37
        let opt = try AdamW(config: AdamWConfig(), count: P)
        let params = normals(P, seed: 1), ema = normals(P, seed: 2)
        onEveryISAPath { isa in
            for (index, bad) in [(5, Float.infinity), (35, Float.nan), (17, -Float.infinity)] {
                var grads = normals(P, seed: 3)
                grads[index] = bad
                grads[index + 1] = .nan  // a later one is not reported
                let found = opt.firstNonFinite(params, grads: grads, gradScale: 1, ema: ema, emaDecay: 0.9)
                XCTAssertEqual(found?.index, index, "\(isa.name): the first bad gradient")
                XCTAssert(found?.value.hasPrefix("the first moment exp_avg") ?? false, "\(isa.name): \(found?.value ?? "nil")")
            }
            // θ' stays finite, but θ' − θ_ema overflows
            var (huge, far) = (params, ema)
            (huge[30], far[30]) = (.greatestFiniteMagnitude, -.greatestFiniteMagnitude)
            let ema30 = opt.firstNonFinite(huge, grads: normals(P, seed: 3), gradScale: 1, ema: far, emaDecay: 0.5)
            XCTAssertEqual(ema30?.index, 30, "\(isa.name): an EMA value that overflows")
            XCTAssert(ema30?.value.hasPrefix("the EMA weight") ?? false, "\(isa.name): \(ema30?.value ?? "nil")")
            XCTAssertNil(opt.firstNonFinite(params, grads: normals(P, seed: 3), gradScale: 1, ema: ema, emaDecay: 0.9), isa.name)
        }
    }

    // MARK: - Passes cut on the pool

    /// A pass large enough to be cut (KernelSplit) gives the same bits on 1, 2 and 3 threads:
    /// the fused GroupNorm forward and backward and SiLU, on every ISA path.
    func testPassesCutOnThePoolGiveTheSameBits() {
        defer { setWorkPoolSize(BLASThreads.initial) }
        let k = GroupNormCase(C: 16, G: 8, B: 4, N: 1030, bias: true, silu: true, dropout: 0.2)
        XCTAssertGreaterThanOrEqual(k.C * k.B * k.N, KernelSplit.minimumFloats, "large enough to be cut")
        let (gn, params, inp, bias, u) = groupNormSetup(k, seed: 500)
        let count = k.C * k.B * k.N
        let w = normals(count, seed: 501)
        func run() -> [UInt32] {
            var (y, mask) = ([Float](repeating: 0, count: count), u)
            var (mean, rstd) = ([Float](repeating: 0, count: k.B * k.G), [Float](repeating: 0, count: k.B * k.G))
            var grads = [Float](repeating: 0, count: params.count), dbias = [Float](repeating: 0, count: k.B * k.C)
            var (dinp, dout, s, ds) = ([Float](repeating: 0, count: count), w, [Float](repeating: 0, count: count), w)
            bias.withUnsafeBufferPointer { bp in
                mask.withUnsafeMutableBufferPointer { mp in
                    dbias.withUnsafeMutableBufferPointer { db in
                        let f = fusion(k, bias: bp.baseAddress!, mask: mp.baseAddress!)
                        gn.forward(&y, mean: &mean, rstd: &rstd, inp, params, batch: k.B, spatial: k.N, fusing: f)
                        gn.backward(dinp: &dinp, &grads, dout: &dout, dbias: db.baseAddress!, inp: inp, mean: mean, rstd: rstd,
                                    params, batch: k.B, spatial: k.N, accumulate: false, fusing: f)
                    }
                }
            }
            SiLU.forward(&s, inp, count: count)
            SiLU.backward(dinp: &ds, dout: ds, inp: inp, count: count)
            return bits(y + mask + mean + rstd + grads + dbias + dinp + dout + s + ds)
        }
        onEveryISAPath { isa in
            setWorkPoolSize(1)
            let one = run()
            for threads in [2, 3] {
                setWorkPoolSize(threads)
                let before = KernelSplit.passesOnPool
                XCTAssertEqual(run(), one, "\(isa.name): \(threads) threads")
                if workPoolSize() > 1 { XCTAssertEqual(KernelSplit.passesOnPool - before, 4, "\(isa.name): 4 passes cut on the pool") }
            }
        }
    }
}
