// The training objectives: ε / x_0 / v targets, min-SNR-γ and VLB weightings, against
// direct formulas and independent computations, and training with each target.
import XCTest
@testable import DDPM

final class ObjectiveTests: XCTestCase {
    let schedule = try! NoiseSchedule.cosine(steps: 200)

    func objective(_ target: PredictionType, _ weighting: LossWeighting, gamma: Double = 5) -> Objective {
        Objective(schedule: schedule, target: target, weighting: weighting, gamma: gamma)
    }

    /// min-SNR-γ against the formula written per target (Hang et al.; peers have shipped the v
    /// weight as min(SNR, γ)/SNR, which this would catch).
    func testMinSNRWeightsPerTarget() {
        for t in [0, 1, 20, 100, 150, 199] {
            let a = schedule.alphaBar[t], snr = a / (1 - a), g = 5.0
            XCTAssertEqual(objective(.epsilon, .minSNR).weight(t), min(snr, g) / snr, accuracy: 1e-12 * max(1, snr))
            XCTAssertEqual(objective(.x0, .minSNR).weight(t), min(snr, g), accuracy: 1e-12 * max(1, snr))
            XCTAssertEqual(objective(.v, .minSNR).weight(t), min(snr, g) / (snr + 1), accuracy: 1e-12)
            XCTAssertEqual(objective(.v, .uniform).weight(t), 1)
        }
    }

    /// The VLB weight makes the ε error the bound's term: with σ_t² = β̃_t,
    /// L_{t−1} = KL(q(x_{t−1}|x_t, x_0) ‖ N(μ_θ, β̃_t)) = ‖μ̃ − μ_θ‖²/(2β̃_t), with μ_θ the posterior
    /// mean at x̂_0(ε̂); computed here from the posterior tables, per dimension.
    func testVLBWeightEqualsThePosteriorKL() {
        let x0 = normals(8, seed: 1), eps = normals(8, seed: 2), epsHat = normals(8, seed: 3)
        for t in [1, 5, 50, 199] {
            let (a, s) = (schedule.sqrtAlphaBar[t], schedule.sqrtOneMinusAlphaBar[t])
            var kl = 0.0, err = 0.0
            for i in 0..<8 {
                let xt = a * Double(x0[i]) + s * Double(eps[i])
                let x0Hat = (xt - s * Double(epsHat[i])) / a
                let muQ = schedule.posteriorMeanCoefX0[t] * Double(x0[i]) + schedule.posteriorMeanCoefXt[t] * xt
                let muP = schedule.posteriorMeanCoefX0[t] * x0Hat + schedule.posteriorMeanCoefXt[t] * xt
                kl += (muQ - muP) * (muQ - muP) / (2 * schedule.posteriorVariance[t])
                err += (Double(eps[i]) - Double(epsHat[i])) * (Double(eps[i]) - Double(epsHat[i]))
            }
            XCTAssertEqual(objective(.epsilon, .vlb).weight(t) * err, kl, accuracy: 1e-9 * max(1, kl), "t = \(t)")
        }
    }

    /// The same prediction expressed as ε̂, x̂_0 or v̂ has the same weighted loss under min-SNR and
    /// VLB weighting (each target's weight carries its factor), and different under uniform.
    func testWeightedLossIsTheSameForEveryTarget() throws {
        let (B, S) = (6, 5)
        let x0 = normals(B * S, seed: 4), eps = normals(B * S, seed: 5), guess = normals(B * S, seed: 6)
        let t: [Int32] = [0, 3, 40, 100, 170, 199]
        var xt = [Float](repeating: 0, count: B * S)
        try xt.withUnsafeMutableBufferPointer { try schedule.addNoise($0.baseAddress!, x0: x0, noise: eps, t: t, batch: B, dim: S) }
        func loss(_ target: PredictionType, _ weighting: LossWeighting) throws -> Double {
            var out = [Float](repeating: 0, count: B * S), dout = out, scratch = out
            for b in 0..<B {
                let r = b * S..<(b + 1) * S
                var row = [Float](repeating: 0, count: S)
                try row.withUnsafeMutableBufferPointer {
                    try schedule.convert($0.baseAddress!, output: Array(guess[r]), from: .epsilon,
                                         to: PredictOutput(rawValue: target.rawValue)!, x: Array(xt[r]), t: Int(t[b]), count: S)
                }
                out.replaceSubrange(r, with: row)
            }
            return Double(objective(target, weighting).lossAndGradient(
                dout: &dout, output: out, x0: x0, eps: eps, t: t, batch: B, sampleSize: S, globalBatch: B, targetScratch: &scratch))
        }
        for weighting in [LossWeighting.minSNR, .vlb] {
            let e = try loss(.epsilon, weighting)
            XCTAssertEqual(try loss(.x0, weighting), e, accuracy: 1e-4 * e, "\(weighting): x0 vs ε")
            XCTAssertEqual(try loss(.v, weighting), e, accuracy: 1e-4 * e, "\(weighting): v vs ε")
        }
        XCTAssertGreaterThan(abs(try loss(.x0, .uniform) - loss(.epsilon, .uniform)), 1e-3, "negative control")
    }

    /// ∂L/∂out by central differences, for each target and weighting.
    func testLossGradient() {
        let (B, S) = (3, 4)
        let x0 = normals(B * S, seed: 7), eps = normals(B * S, seed: 8)
        let t: [Int32] = [2, 90, 180]
        for target in PredictionType.allCases {
            for weighting in LossWeighting.allCases {
                let o = objective(target, weighting)
                var out = normals(B * S, seed: 9), dout = out, scratch = out
                _ = o.lossAndGradient(dout: &dout, output: out, x0: x0, eps: eps, t: t, batch: B, sampleSize: S, globalBatch: B, targetScratch: &scratch)
                for i in [0, 5, 11] {
                    var d = dout
                    let h: Float = 1e-2
                    out[i] += h
                    let up = Double(o.lossAndGradient(dout: &d, output: out, x0: x0, eps: eps, t: t, batch: B, sampleSize: S, globalBatch: B, targetScratch: &scratch))
                    out[i] -= 2 * h
                    let down = Double(o.lossAndGradient(dout: &d, output: out, x0: x0, eps: eps, t: t, batch: B, sampleSize: S, globalBatch: B, targetScratch: &scratch))
                    out[i] += h
                    let numeric = (up - down) / (2 * Double(h))
                    XCTAssertEqual(Double(dout[i]), numeric, accuracy: 1e-3 * max(1, abs(numeric)), "\(target) \(weighting) [\(i)]")
                }
            }
        }
    }

    /// Trains the four-blob problem and returns how many of 400 DDIM-25 samples land farther
    /// than 0.5 from every blob centre, and the losses.
    func farSamples(_ schedule: NoiseSchedule, _ target: PredictionType, _ weighting: LossWeighting) throws -> (Int, [Float]) {
        let centres: [(Float, Float)] = [(-1.5, -1.5), (1.5, -1.5), (-1.5, 1.5), (1.5, 1.5)]
        var training = TrainingConfig()
        (training.seed, training.target, training.lossWeighting) = (5, target, weighting)
        training.optimizer.learningRate = 3e-3
        let model = try DiffusionModel(schedule: schedule, network: .mlp(.init(dataDim: 2, hidden: 48, depth: 2)), training: training)
        var losses: [Float] = []
        for step in 0..<500 {
            let z = normals(256, seed: UInt64(9000 + step))
            let x = (0..<256).map { i -> Float in
                let c = centres[(i / 2) % 4]
                return (i % 2 == 0 ? c.0 : c.1) + 0.1 * z[i]
            }
            losses.append(try model.trainStep(x0: x))
        }
        var o = SamplerOptions()
        (o.method, o.steps, o.seed) = (.ddim, 25, 3)
        let x = try model.sample(count: 400, options: o)
        var far = 0
        for i in 0..<400 {
            let d = centres.map { ((x[2 * i] - $0.0) * (x[2 * i] - $0.0) + (x[2 * i + 1] - $0.1) * (x[2 * i + 1] - $0.1)).squareRoot() }
            if d.min()! > 0.5 || !x[2 * i].isFinite { far += 1 }
        }
        print("[objectives] \(target) \(weighting): loss \(losses.prefix(50).reduce(0, +) / 50) -> "
              + "\(losses.suffix(50).reduce(0, +) / 50), \(far)/400 samples > 0.5 from a blob")
        return (far, losses)
    }

    /// Each target, with min-SNR-5 weighting, trains the four-blob problem to samples at the
    /// blobs as well as ε with L_simple does (same budget, linear schedule): at most
    /// max(40, 2×) ε's count of stray samples. (VLB weighting, made for likelihood, samples
    /// worse, as Ho et al. found: 120 of 400 stray in this setting.)
    func testEveryTargetTrainsLikeEpsilon() throws {
        let linear = try NoiseSchedule.linear(steps: 100, scaleToSteps: true)
        let (epsFar, _) = try farSamples(linear, .epsilon, .uniform)
        XCTAssertLessThan(epsFar, 40, "ε, uniform: samples land on the blobs")
        for (target, weighting) in [(PredictionType.x0, LossWeighting.minSNR), (.v, .minSNR)] {
            let (far, losses) = try farSamples(linear, target, weighting)
            XCTAssertTrue(losses.allSatisfy(\.isFinite), "\(target) \(weighting): finite losses")
            XCTAssertLessThanOrEqual(far, max(40, 2 * epsFar), "\(target) \(weighting) vs ε's \(epsFar)")
        }
    }

    /// On the cosine schedule (ᾱ_{T−1} ≈ 0: almost zero terminal SNR) v-prediction stays finite
    /// and samples well, where ε-prediction's x̂_0 = (x − √(1−ᾱ)ε̂)/√ᾱ amplifies its error at t = T−1.
    func testVPredictionIsStableOnTheCosineSchedule() throws {
        let cosine = try NoiseSchedule.cosine(steps: 100)
        let (far, losses) = try farSamples(cosine, .v, .minSNR)
        XCTAssertTrue(losses.allSatisfy(\.isFinite))
        XCTAssertLessThan(far, 40)
        let (epsFar, _) = try farSamples(cosine, .epsilon, .uniform)
        print("[objectives] cosine T = 100, ᾱ_99 = \(cosine.alphaBar[99]): v stray \(far), ε stray \(epsFar) of 400")
    }

    /// predict(output:) gives v̂ and the score from the model's ε̂ by the closed forms.
    func testPredictOutputsVAndScore() throws {
        let model = try DiffusionModel(schedule: schedule, network: .mlp(.init(dataDim: 3, hidden: 8, depth: 1)))
        _ = try model.trainStep(x0: normals(12, seed: 1))
        let x = normals(6, seed: 2)
        let t = 77
        func predict(_ output: PredictOutput) throws -> [Float] {
            var out = [Float](repeating: 0, count: 6)
            try model.predict(&out, output: output, x: x, t: t, labels: nil, batch: 2)
            return out
        }
        let (eps, x0, v, score) = (try predict(.epsilon), try predict(.x0), try predict(.v), try predict(.score))
        let (a, s) = (schedule.sqrtAlphaBar[t], schedule.sqrtOneMinusAlphaBar[t])
        assertClose(v, (0..<6).map { a * Double(eps[$0]) - s * Double(x0[$0]) }, abs: 1e-5, "v = √ᾱ ε − √(1−ᾱ) x0")
        assertClose(score, eps.map { -Double($0) / s }, abs: 1e-5, "s = −ε/√(1−ᾱ)")
    }
}
