// Finite-difference gradient checks for the image layers and the UNet.
//
// L = Σ w⊙f(θ, x) with fixed random w; the analytic ∂L/∂θ and ∂L/∂x (backward with dout = w)
// are compared with central differences (L(v + h) − L(v − h))/2h at sampled indices:
// the first, the last and a few random entries of every parameter tensor, and of the input.
import XCTest
@testable import DDPM

enum UNetGradientCheck {
    /// A deterministic stream of test numbers.
    static func normals(_ n: Int, seed: UInt64, std: Float = 1) -> [Float] {
        var rng = Philox(seed: seed)
        var out = [Float](repeating: 0, count: n)
        out.withUnsafeMutableBufferPointer { rng.fillNormal($0.baseAddress!, count: n) }
        return out.map { $0 * std }
    }

    /// Initial parameters of `layout` plus N(0, 0.2²) noise, so that zero-initialised
    /// tensors (residual convs, attention proj) and γ = 1, β = 0 are exercised too.
    static func randomParameters(_ layout: ParameterLayout, seed: UInt64) -> [Float] {
        var rng = Philox(seed: seed)
        let initial = try! ParameterSet(layout: layout, rng: &rng).valuesArray
        return zip(initial, normals(layout.count, seed: seed &+ 1, std: 0.2)).map { $0 + $1 }
    }

    /// Indices to probe in a tensor at `offset` with `count` entries: `random` random ones,
    /// plus the first and the last unless `endpoints` is false.
    static func sampleIndices(offset: Int, count: Int, random: Int, endpoints: Bool = true, rng: inout Philox) -> [Int] {
        var picks: Set<Int> = endpoints ? [offset, offset + count - 1] : []
        var draws = [Int32](repeating: 0, count: random)
        draws.withUnsafeMutableBufferPointer { rng.fillUniformInt($0.baseAddress!, count: random, below: count) }
        for d in draws { picks.insert(offset + Int(d)) }
        return picks.sorted()
    }

    /// Σ w⊙out in Double.
    static func weightedSum(_ out: [Float], _ w: [Float]) -> Double {
        zip(out, w).reduce(0) { $0 + Double($1.0) * Double($1.1) }
    }

    struct Mismatch: CustomStringConvertible {
        let name: String, index: Int, analytic: Double, numeric: Double
        var description: String { "\(name): analytic \(analytic), numeric \(numeric)" }
    }

    /// Perturbs values[i] for each index, evaluates `loss`, and compares with `analytic[i]`.
    /// Passes when |numeric − analytic| ≤ atol + rtol·max(|numeric|, |analytic|).
    /// - Returns: the mismatches and the largest |analytic| seen (to check the test is not vacuous).
    static func compare(_ name: (Int) -> String, values: inout [Float], analytic: [Float], indices: [Int],
                        step: Float, atol: Double, rtol: Double, loss: ([Float]) -> Double) -> ([Mismatch], Double) {
        var mismatches: [Mismatch] = []
        var largest = 0.0
        for i in indices {
            let v = values[i]
            values[i] = v + step
            let up = loss(values)
            values[i] = v - step
            let down = loss(values)
            values[i] = v
            // The step actually taken in Float, not the nominal one.
            let h = Double(v + step) - Double(v - step)
            let numeric = (up - down) / h, a = Double(analytic[i])
            largest = max(largest, abs(a))
            if !(abs(numeric - a) <= atol + rtol * max(abs(numeric), abs(a))) {
                mismatches.append(Mismatch(name: name(i), index: i, analytic: a, numeric: numeric))
            }
        }
        return (mismatches, largest)
    }

    /// For each tensor of `layout`, the derivative of `loss` along a random unit direction v
    /// inside that tensor, (L(θ + h·v) − L(θ − h·v))/2h, against Σ ∂L/∂θ_i·v_i. Two loss
    /// evaluations check every entry of a tensor at once (a wrong entry shows unless its
    /// error happens to be orthogonal to v).
    static func compareDirectional(_ layout: ParameterLayout, values: inout [Float], analytic: [Float], seed: UInt64,
                                   step: Float, atol: Double, rtol: Double, loss: ([Float]) -> Double) -> ([Mismatch], Double) {
        var mismatches: [Mismatch] = []
        var largest = 0.0
        for (n, e) in layout.entries.enumerated() {
            var v = normals(e.count, seed: seed &+ UInt64(n))
            let norm = v.reduce(0) { $0 + Double($1) * Double($1) }.squareRoot()
            v = v.map { Float(Double($0) / norm) }
            let saved = Array(values[e.offset..<e.offset + e.count])
            for i in 0..<e.count { values[e.offset + i] = saved[i] + step * v[i] }
            let up = loss(values)
            for i in 0..<e.count { values[e.offset + i] = saved[i] - step * v[i] }
            let down = loss(values)
            values.replaceSubrange(e.offset..<e.offset + e.count, with: saved)
            let numeric = (up - down) / (2 * Double(step))
            let a = (0..<e.count).reduce(0.0) { $0 + Double(analytic[e.offset + $1]) * Double(v[$1]) }
            largest = max(largest, abs(a))
            if !(abs(numeric - a) <= atol + rtol * max(abs(numeric), abs(a))) {
                mismatches.append(Mismatch(name: "\(e.name)·v", index: e.offset, analytic: a, numeric: numeric))
            }
        }
        return (mismatches, largest)
    }

    /// Name of the parameter tensor holding flat index i.
    static func entryName(_ layout: ParameterLayout, _ i: Int) -> String {
        let e = layout.entries.last { $0.offset <= i }!
        return "\(e.name)[\(i - e.offset)]"
    }

    /// Checks a layer y = f(θ, x): ∂L/∂θ at sampled indices of every tensor of `layout`, and ∂L/∂x.
    /// `backward` must accumulate dθ into `grads` and write (or add to a zeroed) `dinp`.
    static func checkLayer(
        _ what: String, layout: ParameterLayout, inputCount: Int, outputCount: Int, seed: UInt64,
        step: Float = 1e-2, atol: Double = 2e-3, rtol: Double = 2e-2, samplesPerTensor: Int = 3, inputSamples: Int = 10,
        forward: (_ out: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>, _ params: UnsafePointer<Float>) -> Void,
        backward: (_ dinp: UnsafeMutablePointer<Float>, _ grads: UnsafeMutablePointer<Float>, _ dout: UnsafePointer<Float>,
                   _ inp: UnsafePointer<Float>, _ params: UnsafePointer<Float>) -> Void,
        file: StaticString = #filePath, line: UInt = #line
    ) {
        var params = randomParameters(layout, seed: seed)
        var input = normals(inputCount, seed: seed &+ 2)
        let w = normals(outputCount, seed: seed &+ 3)
        func loss(params: [Float], input: [Float]) -> Double {
            var out = [Float](repeating: 0, count: outputCount)
            out.withUnsafeMutableBufferPointer { forward($0.baseAddress!, input, params) }
            return weightedSum(out, w)
        }
        _ = loss(params: params, input: input)  // the forward pass whose activations backward reads
        var grads = [Float](repeating: 0, count: layout.count)
        var dinp = [Float](repeating: 0, count: inputCount)
        grads.withUnsafeMutableBufferPointer { g in
            dinp.withUnsafeMutableBufferPointer { backward($0.baseAddress!, g.baseAddress!, w, input, params) }
        }
        var rng = Philox(seed: seed &+ 4)
        var paramIndices: [Int] = []
        for e in layout.entries {
            paramIndices += sampleIndices(offset: e.offset, count: e.count, random: samplesPerTensor, rng: &rng)
        }
        let fixedInput = input
        let (badParams, largestParam) = compare({ entryName(layout, $0) }, values: &params, analytic: grads,
                                                indices: paramIndices, step: step, atol: atol, rtol: rtol) {
            loss(params: $0, input: fixedInput)
        }
        let fixedParams = params
        let (badInput, largestInput) = compare({ "input[\($0)]" }, values: &input, analytic: dinp,
                                               indices: sampleIndices(offset: 0, count: inputCount, random: inputSamples, rng: &rng),
                                               step: step, atol: atol, rtol: rtol) {
            loss(params: fixedParams, input: $0)
        }
        XCTAssert(badParams.isEmpty, "\(what): \(badParams.count) of \(paramIndices.count) parameter gradients differ: \(badParams.prefix(8))",
                  file: file, line: line)
        XCTAssert(badInput.isEmpty, "\(what): input gradients differ: \(badInput.prefix(8))", file: file, line: line)
        XCTAssertGreaterThan(largestParam, 1e-3, "\(what): all sampled parameter gradients vanish", file: file, line: line)
        XCTAssertGreaterThan(largestInput, 1e-3, "\(what): all sampled input gradients vanish", file: file, line: line)
    }
}
