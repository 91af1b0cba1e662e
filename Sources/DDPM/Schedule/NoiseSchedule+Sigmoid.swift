#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension NoiseSchedule {
    /// β_t = β_min + (β_max − β_min)·sigmoid(linspace(start, end, T)[t]).
    /// The 50-dim signal recipe: T = 100, β_min = 0, β_max = 0.1.
    public static func sigmoid(
        steps: Int = 100, betaMin: Double = 0, betaMax: Double = 0.1, start: Double = -6, end: Double = 6
    ) throws -> NoiseSchedule {
        try NoiseSchedule.checkCount(steps)
        try require(start.isFinite && end.isFinite, "sigmoid range must be finite")
        let betas = (0..<steps).map { t -> Double in
            let x = steps == 1 ? start : start + (end - start) * Double(t) / Double(steps - 1)
            return betaMin + (betaMax - betaMin) / (1 + exp(-x))
        }
        return try NoiseSchedule(betas: betas, kind: .sigmoid(betaMin: betaMin, betaMax: betaMax, start: start, end: end))
    }
}
