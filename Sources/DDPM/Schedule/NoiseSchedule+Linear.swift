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
}
