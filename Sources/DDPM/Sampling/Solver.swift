// A reverse-process update rule: x_t → x_prev given (x̂_0, ε̂) from Prediction.swift.
// A solver may keep state between the steps of one trajectory (a multistep method
// remembers earlier x̂_0); the Sampler owns one solver per trajectory.
//
// N = number of floats in x (batch × dims); every buffer is (N,).

protocol Solver {
    /// Whether ε̂ is recomputed from a clipped x̂_0 before `step` (DDIM) or not.
    var rederivesEpsilon: Bool { get }
    /// Whether the step from t to prevT adds noise, and so needs z ~ N(0, I).
    func needsNoise(t: Int, prevT: Int) -> Bool
    /// x (N,) from x_t at timestep t to x_prev at prevT (−1 means x_0). `noise` is given
    /// exactly when `needsNoise(t:prevT:)`.
    mutating func step(_ x: UnsafeMutablePointer<Float>, denoised: Denoised, t: Int, prevT: Int,
                       noise: UnsafePointer<Float>?, count: Int)
}

extension SamplerOptions {
    /// The solver these options describe, over `schedule`.
    func makeSolver(_ schedule: NoiseSchedule) -> any Solver {
        switch method {
        case .ddpm: return DDPMSolver(schedule: schedule, variance: variance, clipped: clipX0 != nil)
        case .ddim: return DDIMSolver(schedule: schedule, eta: eta)
        }
    }
}
