// A reverse-process solver: which model evaluations it asks for at each timestep (its plan,
// SamplingPlan.swift), and the update each one's (x̂_0, ε̂) feeds (Prediction.swift). A solver
// may keep state between the steps of one trajectory (DPM-Solver++ remembers earlier x̂_0);
// the Sampler owns one solver per trajectory and knows no solver by name.
//
//   DDPM, DDIM, DPM-Solver++   [predictor] at each timestep          Solver+DDPM/DDIM/DPMSolver.swift
//   annealed Langevin          [corrector × K]                       Solver+Langevin.swift
//   predictor–corrector        [corrector × K, predictor]            Solver+PC.swift
//
// B = batch, S = floats per sample, N = B·S; every buffer is (N,).

protocol Solver {
    /// The updates at each timestep, in order, one model evaluation each.
    var updatesPerTimestep: [SolverUpdate] { get }
    /// Whether `step`'s update adds noise, and so needs z ~ N(0, I).
    func addsNoise(_ step: Sampler.Step) -> Bool
    /// x (N,) after the update of `step` (at `step.t`, to `step.prevT`; −1 means x_0), given
    /// (x̂_0, ε̂) at (x, step.t). `noise` is given exactly when `addsNoise(step)`.
    mutating func update(_ x: UnsafeMutablePointer<Float>, denoised: Denoised, _ step: Sampler.Step,
                         noise: UnsafePointer<Float>?)
}

extension Solver {
    var updatesPerTimestep: [SolverUpdate] { [.predictor] }
}

extension SamplerOptions {
    /// The solver these options describe over `schedule` and `timesteps`, for B samples of S floats.
    func makeSolver(_ schedule: NoiseSchedule, timesteps: [Int], batch: Int, sampleSize: Int) throws -> any Solver {
        let count = batch * sampleSize
        switch method {
        case .ddpm:
            return DDPMSolver(schedule: schedule, options: self, count: count)
        case .ddim:
            return DDIMSolver(schedule: schedule, eta: eta, setAlphaToOne: setAlphaToOne, count: count)
        case .dpmSolverPP, .sdeDPMSolverPP:
            return try DPMSolverPP(schedule: schedule, order: solverOrder, stochastic: method == .sdeDPMSolverPP,
                                   timesteps: timesteps, lowerOrderFinal: lowerOrderFinal, setAlphaToOne: setAlphaToOne,
                                   count: count)
        case .langevin:
            return LangevinSolver(schedule: schedule, options: self, timesteps: timesteps, batch: batch, sampleSize: sampleSize)
        case .predictorCorrector:
            return PredictorCorrectorSolver(schedule: schedule, options: self, batch: batch, sampleSize: sampleSize)
        }
    }

    /// How x̂_0 is limited for these options.
    var x0Limit: X0Limit {
        X0Limit(clip: clipX0, thresholdQuantile: thresholdQuantile, thresholdMax: thresholdMax,
                rederiveEpsilon: method == .ddim && useClippedModelOutput)
    }
}
