#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension NoiseSchedule {
    /// Cosine schedule (Nichol & Dhariwal 2021):
    /// ᾱ(t) = f(t)/f(0), f(t) = cos²(((t/T + s)/(1 + s))·π/2), β_t = min(1 − ᾱ(t+1)/ᾱ(t), maxBeta).
    public static func cosine(steps: Int = 1000, offset s: Double = 0.008, maxBeta: Double = 0.999) throws -> NoiseSchedule {
        try NoiseSchedule.checkCount(steps)
        try require(s >= 0 && s.isFinite, "cosine offset must be >= 0 (got \(s))")
        try require(maxBeta > 0 && maxBeta < 1, "maxBeta must be in (0, 1) (got \(maxBeta))")
        func f(_ t: Double) -> Double {
            let c = cos((t / Double(steps) + s) / (1 + s) * Double.pi / 2)
            return c * c
        }
        let betas = (0..<steps).map { t in min(1 - f(Double(t + 1)) / f(Double(t)), maxBeta) }
        return try NoiseSchedule(betas: betas, kind: .cosine(offset: s, maxBeta: maxBeta))
    }
}
