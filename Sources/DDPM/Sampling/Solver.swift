// A reverse-process update rule: x_t → x_prev given (x̂_0, ε̂) from Prediction.swift.
// A solver may keep state between the steps of one trajectory (DPM-Solver++ remembers
// earlier x̂_0); the Sampler owns one solver per trajectory.
//
// N = number of floats in x (batch × dims); every buffer is (N,).

protocol Solver {
    /// Whether the step from t to prevT adds noise, and so needs z ~ N(0, I).
    func needsNoise(t: Int, prevT: Int) -> Bool
    /// x (N,) from x_t at timestep t to x_prev at prevT (−1 means x_0). `noise` is given
    /// exactly when `needsNoise(t:prevT:)`.
    mutating func step(_ x: UnsafeMutablePointer<Float>, denoised: Denoised, t: Int, prevT: Int,
                       noise: UnsafePointer<Float>?, count: Int)
}

extension SamplerOptions {
    /// The predictor these options describe over `schedule` and `timesteps` (nil for annealed
    /// Langevin, which only corrects).
    func makeSolver(_ schedule: NoiseSchedule, timesteps: [Int], count: Int) throws -> (any Solver)? {
        switch method {
        case .ddpm, .predictorCorrector:
            return DDPMSolver(schedule: schedule, variance: variance, clipped: clipX0 != nil || thresholdQuantile != nil)
        case .ddim:
            return DDIMSolver(schedule: schedule, eta: eta)
        case .dpmSolverPP, .sdeDPMSolverPP:
            return try DPMSolverPP(schedule: schedule, order: solverOrder, stochastic: method == .sdeDPMSolverPP,
                               timesteps: timesteps, lowerOrderFinal: lowerOrderFinal, count: count)
        case .langevin:
            return nil
        }
    }

    /// How x̂_0 is limited for these options.
    var x0Limit: X0Limit {
        X0Limit(clip: clipX0, thresholdQuantile: thresholdQuantile, thresholdMax: thresholdMax,
                rederiveEpsilon: method == .ddim && useClippedModelOutput)
    }
}
