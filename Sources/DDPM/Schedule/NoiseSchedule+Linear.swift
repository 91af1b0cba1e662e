extension NoiseSchedule {
    /// β linear from `betaStart` to `betaEnd` (DDPM: 1e-4..0.02 with T = 1000).
    /// - Parameter scaleToSteps: multiply both ends by 1000/T so that a schedule with
    ///   another T keeps the same total noise (Nichol & Dhariwal's rescaling).
    public static func linear(
        steps: Int = 1000, betaStart: Double = 1e-4, betaEnd: Double = 0.02, scaleToSteps: Bool = false
    ) throws -> NoiseSchedule {
        try NoiseSchedule.checkCount(steps)
        let scale = scaleToSteps ? 1000 / Double(steps) : 1
        let (a, b) = (betaStart * scale, betaEnd * scale)
        let betas = (0..<steps).map { steps == 1 ? a : a + (b - a) * Double($0) / Double(steps - 1) }
        return try NoiseSchedule(betas: betas, kind: .linear(betaStart: a, betaEnd: b))
    }

    /// √β linear from √betaStart to √betaEnd (diffusers' "scaled_linear", the latent-diffusion
    /// schedule: 0.00085..0.012 with T = 1000): β_t = (√β_start + (√β_end − √β_start)·t/(T−1))².
    public static func scaledLinear(steps: Int = 1000, betaStart: Double = 0.00085, betaEnd: Double = 0.012) throws -> NoiseSchedule {
        try NoiseSchedule.checkCount(steps)
        try require(betaStart >= 0 && betaEnd >= 0, "scaled_linear needs beta_start, beta_end >= 0 (got \(betaStart), \(betaEnd))")
        let (a, b) = (betaStart.squareRoot(), betaEnd.squareRoot())
        let betas = (0..<steps).map { t -> Double in
            let root = steps == 1 ? a : a + (b - a) * Double(t) / Double(steps - 1)
            return root * root
        }
        return try NoiseSchedule(betas: betas, kind: .scaledLinear(betaStart: betaStart, betaEnd: betaEnd))
    }
}
