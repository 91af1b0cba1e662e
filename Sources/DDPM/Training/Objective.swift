// The training objective: what the network predicts (ε, x_0 or v) and how each sample's
// squared error is weighted, as a loss over the batch and its gradient.
//
//   target y_b:  ε                        (DDPM's L_simple)
//                x_0
//                v = √ᾱ_t·ε − √(1−ᾱ_t)·x_0   (Salimans & Ho 2022)
//   L = (1/(B·S)) Σ_b w(t_b) Σ_i (out_bi − y_bi)²,   ∂L/∂out_bi = 2·w(t_b)·(out_bi − y_bi)/(B·S)
// (B the global batch: a data-parallel shard computes its share of the batch's mean)
//
// Weightings w(t), with SNR_t = ᾱ_t/(1−ᾱ_t) (Hang et al. 2023 for min-SNR; each target's
// error is a multiple of the ε error: ‖ε − ε̂‖² = SNR·‖x_0 − x̂_0‖² = ᾱ_t·‖v − v̂‖²):
//   uniform       1
//   min-SNR-γ     ε: min(SNR, γ)/SNR     x_0: min(SNR, γ)     v: min(SNR, γ)/(SNR + 1)
//   vlb           the weight that makes the ε error the bound's term L_{t−1} (Ho et al. eq. 12):
//                 β_t²/(2σ_t²·α_t·(1−ᾱ_t)), σ_t² = β̃_t (β̃_1 at t = 0, as the clipped log
//                 variance), times the target's factor above (1, SNR, ᾱ_t); per dimension.
//
// B = batch, S = floats per sample; buffers are (B, S) unless said.

/// How each sample's error is weighted in the training loss.
public enum LossWeighting: Int32, Sendable, CaseIterable {
    case uniform = 0
    case minSNR = 1
    case vlb = 2
}

struct Objective {
    let schedule: NoiseSchedule
    let target: PredictionType
    let weighting: LossWeighting
    let gamma: Double

    /// w(t) for this target (see the file header).
    func weight(_ t: Int) -> Double {
        let a = schedule.alphaBar[t]
        let snr = a / (1 - a)
        // The factor that turns the ε error into this target's error.
        let factor: Double
        switch target {
        case .epsilon: factor = 1
        case .x0: factor = snr
        case .v: factor = a
        }
        switch weighting {
        case .uniform:
            return 1
        case .minSNR:
            return min(snr, gamma) / snr * factor
        case .vlb:
            let variance = schedule.posteriorVariance[t == 0 && schedule.count > 1 ? 1 : t]
            let sigma2 = variance > 0 ? variance : schedule.betas[t]
            let beta = schedule.betas[t]
            return beta * beta / (2 * sigma2 * schedule.alphas[t] * (1 - a)) * factor
        }
    }

    /// Writes ∂L/∂out to `dout` and returns L. `targetScratch` holds v when the target is v.
    /// - Parameters:
    ///   - sampleWeights: (B,) extra weights of the samples (importance sampling's 1/(T·p_t)), or nil.
    ///   - perSample: receives (B,) each sample's w(t)·mean squared error (without `sampleWeights`), or nil.
    func lossAndGradient(dout: UnsafeMutablePointer<Float>, output: UnsafePointer<Float>, x0: UnsafePointer<Float>,
                         eps: UnsafePointer<Float>, t: UnsafePointer<Int32>, batch B: Int, sampleSize S: Int,
                         globalBatch: Int, targetScratch: UnsafeMutablePointer<Float>,
                         sampleWeights: UnsafePointer<Float>? = nil, perSample: UnsafeMutablePointer<Double>? = nil) -> Float {
        // 1. The target.
        let y: UnsafePointer<Float>
        switch target {
        case .epsilon: y = eps
        case .x0: y = x0
        case .v:
            for b in 0..<B {
                schedule.velocity(targetScratch + b * S, eps: eps + b * S, x0: x0 + b * S, t: Int(t[b]), count: S)
            }
            y = UnsafePointer(targetScratch)
        }
        // 2. L_simple, unweighted: DDPM's loss exactly (the uniform-ε path is L_simple itself).
        guard weighting != .uniform || sampleWeights != nil || perSample != nil else {
            return SimpleLoss.forwardBackward(dout: dout, predicted: output, target: y, count: B * S, meanOver: globalBatch * S)
        }
        // 3. Weighted per sample.
        var loss = 0.0
        let scale = 2 / Double(globalBatch * S)
        for b in 0..<B {
            let w0 = weight(Int(t[b]))
            let row = b * S
            for i in row..<row + S { dout[i] = output[i] - y[i] }
            let squares = sumOfSquares(dout + row, S)
            perSample?[b] = w0 * squares / Double(S)
            let w = w0 * Double(sampleWeights?[b] ?? 1)
            loss += w * squares
            let g = Float(scale * w)
            for i in row..<row + S { dout[i] *= g }
        }
        return Float(loss / Double(globalBatch * S))
    }
}
