// The learned variance Σ_θ: the hybrid loss's variance term against finite differences and
// against the bound's own KL, and a trained head against the exact reverse variance of
// Gaussian data, Var(x_{t−1}|x_t) = V1 − α_t·V1²/V2 with V1 = ᾱ_{t−1}σ² + 1 − ᾱ_{t−1},
// V2 = ᾱ_tσ² + 1 − ᾱ_t.
import XCTest
@testable import DDPM

final class LearnedVarianceTests: XCTestCase {
    let schedule = try! NoiseSchedule.linear(steps: 100, scaleToSteps: true)

    /// ∂(λ·T·L_t)/∂v by central differences, at t = 0 (decoder) and t ≥ 1 (KL), for ε and v targets.
    func testVarianceLossGradient() throws {
        let (B, S) = (3, 4)
        let x0 = normals(B * S, seed: 1), output = normals(B * S, seed: 2), xt = normals(B * S, seed: 3)
        let t: [Int32] = [0, 7, 80]
        for target in [PredictionType.epsilon, .v] {
            let loss = VarianceLoss(schedule: schedule, target: target, lambda: 0.01)
            var v = uniforms(B * S, seed: 4), dvar = v, scratch = v
            _ = try loss.lossAndGradient(dvar: &dvar, v: v, output: output, x0: x0, xt: xt, t: t, batch: B, sampleSize: S, globalBatch: B, x0Hat: &scratch)
            for i in 0..<B * S {
                let h: Float = 1e-2
                var d = dvar
                v[i] += h
                let up = (try loss.lossAndGradient(dvar: &d, v: v, output: output, x0: x0, xt: xt, t: t, batch: B, sampleSize: S, globalBatch: B, x0Hat: &scratch))
                v[i] -= 2 * h
                let down = (try loss.lossAndGradient(dvar: &d, v: v, output: output, x0: x0, xt: xt, t: t, batch: B, sampleSize: S, globalBatch: B, x0Hat: &scratch))
                v[i] += h
                let numeric = (up - down) / (2 * Double(h))
                XCTAssertEqual(Double(dvar[i]), numeric, accuracy: 1e-3 * abs(numeric) + 1e-6, "\(target) [\(i)] t = \(t[i / S])")
            }
        }
    }

    /// With v = −1 (σ² = β̃_t) the variance term is λ·T/ln 2 times the bound's L_{t−1} with the
    /// fixed posterior variance, computed by VariationalBound.swift's own code.
    func testVarianceTermIsTheBoundsTerm() throws {
        let S = 6
        let x0 = normals(S, seed: 5), eps = normals(S, seed: 6), out = normals(S, seed: 7)
        for t in [3, 40, 99] {
            var xt = [Float](repeating: 0, count: S)
            try xt.withUnsafeMutableBufferPointer {
                try schedule.addNoise($0.baseAddress!, x0: x0, noise: eps, t: [Int32(t)], batch: 1, dim: S)
            }
            let loss = VarianceLoss(schedule: schedule, target: .epsilon, lambda: 0.001)
            var dvar = [Float](repeating: 0, count: S), x0Hat = dvar
            let got = (try loss.lossAndGradient(dvar: &dvar, v: [Float](repeating: -1, count: S), output: out, x0: x0,
                                                      xt: xt, t: [Int32(t)], batch: 1, sampleSize: S, globalBatch: 1, x0Hat: &x0Hat))
            var hat = [Float](repeating: 0, count: S)
            try hat.withUnsafeMutableBufferPointer {
                try schedule.convert($0.baseAddress!, output: out, from: .epsilon, to: .x0, x: xt, t: t, count: S)
            }
            let kl = schedule.posteriorKL(x0, x0Hat: hat, t: t, count: S, variance: .posterior, learned: nil)
            XCTAssertEqual(got, 0.001 * 100 / log(2.0) * kl, accuracy: 1e-5 * max(1, got), "t = \(t)")
        }
    }

    /// A model trained with the hybrid loss on Gaussian data learns σ² close to the exact
    /// reverse variance where the interpolation between β̃_t and β_t can reach it (σ < 1).
    func testLearnedHeadRecoversTheReverseVariance() throws {
        let sigma0: Float = 0.5
        var training = TrainingConfig()
        (training.seed, training.learnedVariance, training.vlbLambda) = (3, true, 0.05)
        training.optimizer.learningRate = 3e-3
        let model = try DiffusionModel(schedule: schedule, network: .mlp(.init(dataDim: 2, hidden: 32, depth: 2)), training: training)
        for step in 0..<1500 {
            _ = try model.trainStep(x0: normals(2 * 128, seed: UInt64(100 + step)).map { sigma0 * $0 })
        }
        let denoiser = try model.denoiser(PredictOptions(useEMA: true), cond: .none, batch: 256)
        var rows: [String] = []
        for t in [5, 20, 50, 90] {
            let a = schedule.alphaBar[t], aPrev = schedule.alphaBar[t - 1], alpha = schedule.alphas[t]
            let s2 = Double(sigma0 * sigma0)
            let (v1, v2) = (aPrev * s2 + 1 - aPrev, a * s2 + 1 - a)
            let exact = v1 - alpha * v1 * v1 / v2
            let x = normals(2 * 256, seed: UInt64(t)).map { Float(v2.squareRoot()) * $0 }  // x_t ~ q(x_t)
            var out = [Float](repeating: 0, count: 2 * 256)
            try out.withUnsafeMutableBufferPointer { try denoiser.predict($0.baseAddress!, x: x, t: t, cond: .none, batch: 256) }
            let v = UnsafeBufferPointer(start: denoiser.lastVariance!, count: 2 * 256)
            let learned = v.map { exp(schedule.reverseLogVariance(t, .learned, learned: $0)) }.reduce(0, +) / Double(v.count)
            let (lo, hi) = (schedule.posteriorVariance[t], schedule.betas[t])
            rows.append("t=\(t): β̃ \(lo), exact \(exact), learned \(learned), β \(hi)")
            XCTAssertGreaterThanOrEqual(exact, lo * 0.999)
            XCTAssertLessThanOrEqual(exact, hi * 1.001)
            XCTAssertEqual(learned, exact, accuracy: 0.25 * (hi - lo) + 0.05 * exact, "t = \(t)")
        }
        print("[learned variance] σ = 0.5: " + rows.joined(separator: "; "))
    }
}
