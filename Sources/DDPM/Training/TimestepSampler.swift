// Importance sampling of the training timestep (improved-diffusion's LossSecondMomentResampler):
// keep the last 10 losses of every t; once every t has 10, draw t with probability
//   p_t = (1 − u)·√(mean L_t²)/Σ_s √(mean L_s²) + u/T,   u = 0.001,
// and weight that sample's loss by 1/(T·p_t), so that the expected loss is the uniform one.
// Until then t is uniform (weight 1).  T = timesteps, H = 10 losses per t.
//
// The history changes only when a train step is applied (DiffusionModel.applyGradients): a
// refused step leaves it as it was. Every loss in it is finite and at most `maxLoss`, so
// that Σ L² over a row stays finite in Double and p is always a distribution; a checkpoint
// holding anything else is refused.

/// How the training timestep is drawn.
public enum TimestepSampling: Int32, Sendable, CaseIterable {
    case uniform = 0
    /// By the running second moment of each t's loss.
    case importance = 1
}

final class LossSecondMomentResampler {
    static let historyPerTerm = 10
    static let uniformProbability = 0.001
    /// The largest loss the history keeps (H·maxLoss² < Double's range). An applied step's
    /// per-sample loss is below about 1e55 (its weighted mean is a finite Float, and
    /// 1/(T·p_t) ≥ 2^-20), so the clamp in `update` never binds in a real run.
    static let maxLoss = 1e100
    let T: Int
    var history: [Double]  // (T, H) the last H losses of each t, oldest first
    var counts: [Int]  // (T,) losses recorded per t, at most H
    var cumulative: [Double]  // (T,) the CDF of p once warm

    init(timesteps T: Int) {
        self.T = T
        history = [Double](repeating: 0, count: T * Self.historyPerTerm)
        counts = [Int](repeating: 0, count: T)
        cumulative = [Double](repeating: 0, count: T)
    }

    /// Every t has H losses: sampling follows p.
    var isWarm: Bool { counts.allSatisfy { $0 == Self.historyPerTerm } }

    /// p_t (T,), or nil before warm-up.
    func probabilities() -> [Double]? {
        guard isWarm else { return nil }
        let H = Self.historyPerTerm
        let w = (0..<T).map { t in (history[t * H..<(t + 1) * H].map { $0 * $0 }.reduce(0, +) / Double(H)).squareRoot() }
        let total = w.reduce(0, +)
        let u = Self.uniformProbability
        return w.map { (total > 0 ? (1 - u) * $0 / total : (1 - u) / Double(T)) + u / Double(T) }
    }

    /// Recomputes the CDF after the history changed.
    func refresh() {
        guard let p = probabilities() else { return }
        var running = 0.0
        for t in 0..<T { running += p[t]; cumulative[t] = running }
    }

    /// t for a uniform u in [0, 1) by the inverse CDF, and its weight 1/(T·p_t).
    func draw(_ u: Float) -> (t: Int, weight: Float) {
        let target = Double(u) * cumulative[T - 1]
        var (lo, hi) = (0, T - 1)
        while lo < hi {
            let mid = (lo + hi) / 2
            if cumulative[mid] > target { hi = mid } else { lo = mid + 1 }
        }
        let p = cumulative[lo] - (lo > 0 ? cumulative[lo - 1] : 0)
        return (lo, Float(1 / (Double(T) * p)))
    }

    /// Records the losses (B,), finite and ≥ 0, of the sampled t's (B,) of an applied step.
    func update(t: UnsafePointer<Int32>, losses: UnsafePointer<Double>, batch B: Int) {
        let H = Self.historyPerTerm
        for b in 0..<B {
            let ti = Int(t[b]), row = ti * H
            if counts[ti] == H {
                for k in 0..<H - 1 { history[row + k] = history[row + k + 1] }
                history[row + H - 1] = min(losses[b], Self.maxLoss)
            } else {
                history[row + counts[ti]] = min(losses[b], Self.maxLoss)
                counts[ti] += 1
            }
        }
        refresh()
    }
}
