// Which timesteps a reverse process visits: S of the T training steps, noisiest first.
// The step after the last one goes to x_0. diffusers' names and definitions, plus ours:
//
//   default       τ_i = ⌊(S−i)·T/S⌋ − 1              evenly spaced, ending at T−1 (S = T: every step)
//   trailing      τ_i = round(T − i·T/S) − 1          diffusers "trailing" (= default when S divides T)
//   leading       τ_i = (S−1−i)·⌊T/S⌋ + steps_offset  diffusers "leading" (DDIM's original spacing)
//   linspace      τ_i = round((S−1−i)·(T−1)/(S−1))    diffusers "linspace" (from T−1 down to 0)
//   dpm_leading   τ_i = (S−i)·⌊T/(S+1)⌋ + steps_offset   DPMSolverMultistepScheduler's "leading" and
//   dpm_linspace  τ_i = round((S−i)·(T−1)/S)              "linspace": S + 1 points laid out as above,
//                 the one at or nearest 0 dropped (10 of 1000: [900, 810, …, 90] and [999, 899, …, 100])
//   karras        τ_i = the t whose σ_t = √((1−ᾱ_t)/ᾱ_t) is nearest (in log σ) to Karras et al.'s
//                 σ_i = (σ_max^{1/ρ} + i/(S−1)·(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ, ρ = 7, between the
//                 schedule's own σ_max = σ_{T−1} and σ_min = σ_0; repeats are dropped, so fewer
//                 than S steps can come out. (diffusers then uses the Karras σ themselves; we use
//                 the schedule's σ at the chosen t, so that the model and the solver agree.)
// The real-valued ones are computed in Double with numpy's own arithmetic, so that they round
// as diffusers' do (half to even, as np.round): np.linspace(0, stop, n) is k·(stop/(n−1)) with the
// last point exactly stop, and np.arange(T, 0, −T/S) is T + i·Δ with Δ = (T − T/S) − T. (Where
// numpy's arange gives S + 1 points, diffusers' trailing ends at timestep −1; we keep the first
// S. For S = 1, diffusers' linspace is [0]; ours stays [T−1], where sampling can start.)
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

public enum TimestepSpacing: Int32, Sendable, CaseIterable {
    case `default` = 0
    case leading = 1
    case trailing = 2
    case linspace = 3
    case karras = 4
    case dpmLeading = 5
    case dpmLinspace = 6
}

extension NoiseSchedule {
    /// S timesteps with `spacing`, strictly decreasing, in 0..<T.
    /// - Throws: `.invalidArgument` unless 1 ≤ S ≤ T and the result is valid (leading with an
    ///   offset that leaves 0..<T).
    public func timesteps(_ S: Int, spacing: TimestepSpacing = .default, stepsOffset: Int = 0) throws -> [Int] {
        let T = count
        try require(S >= 1 && S <= T, "steps must be in 1...\(T) (got \(S))")
        try require(stepsOffset >= 0 && stepsOffset < T, "steps_offset must be in 0..<\(T) (got \(stepsOffset))")
        let ts: [Int]
        switch spacing {
        case .default:
            ts = (0..<S).map { (S - $0) * T / S - 1 }
        case .trailing:
            ts = numpyArange(from: Double(T), step: -Double(T) / Double(S), count: S).map { roundHalfEven($0) - 1 }
        case .leading:
            ts = (0..<S).map { (S - 1 - $0) * (T / S) + stepsOffset }
        case .linspace:
            ts = S == 1 ? [T - 1] : numpyLinspace(to: Double(T - 1), count: S).reversed().map(roundHalfEven)
        case .dpmLeading:
            ts = (0..<S).map { (S - $0) * (T / (S + 1)) + stepsOffset }
        case .dpmLinspace:
            ts = numpyLinspace(to: Double(T - 1), count: S + 1).dropFirst().reversed().map(roundHalfEven)
        case .karras:
            ts = karrasTimesteps(S)
        }
        for (i, t) in ts.enumerated() {
            try require(t >= 0 && t < T, "\(spacing) spacing gives timestep \(t) outside 0..<\(T) (steps_offset too large?)")
            try require(i == 0 || t < ts[i - 1], "\(spacing) spacing gives repeated timesteps for \(S) steps of \(T)")
        }
        return ts
    }

    /// np.linspace(0, stop, count): k·(stop/(count−1)), the last point exactly `stop` (count ≥ 2).
    func numpyLinspace(to stop: Double, count: Int) -> [Double] {
        let step = stop / Double(count - 1)
        return (0..<count).map { $0 == count - 1 ? stop : Double($0) * step }
    }

    /// The first `count` values of np.arange(start, ·, step): start, start + step, then start + i·Δ
    /// with Δ = (start + step) − start, as numpy's fill writes them.
    func numpyArange(from start: Double, step: Double, count: Int) -> [Double] {
        let second = start + step
        let delta = second - start
        return (0..<count).map { $0 == 0 ? start : ($0 == 1 ? second : start + Double($0) * delta) }
    }

    func roundHalfEven(_ x: Double) -> Int { Int(x.rounded(.toNearestOrEven)) }

    /// Karras et al. (2022) σ spacing mapped to the nearest timesteps (see the file header).
    func karrasTimesteps(_ S: Int) -> [Int] {
        let logSigma = alphaBar.map { 0.5 * log((1 - $0) / $0) }  // increasing in t
        let (lo, hi) = (logSigma[0], logSigma[count - 1])
        let rho = 7.0
        let (a, b) = (exp(hi / rho), exp(lo / rho))  // σ_max^{1/ρ}, σ_min^{1/ρ}
        var out: [Int] = []
        for i in 0..<S {
            let sigma = pow(a + (S == 1 ? 0 : Double(i) / Double(S - 1)) * (b - a), rho)
            let target = log(sigma)
            // Nearest t in log σ (binary search on the increasing table).
            var (l, r) = (0, count - 1)
            while l < r {
                let m = (l + r) / 2
                if logSigma[m] < target { l = m + 1 } else { r = m }
            }
            let t = l > 0 && abs(logSigma[l - 1] - target) <= abs(logSigma[l] - target) ? l - 1 : l
            if out.last != t { out.append(t) }
        }
        return out
    }
}
