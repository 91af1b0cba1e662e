// Predictor–corrector sampling (Song et al. 2021, PC sampling, with the DDPM ancestral step
// as predictor): at each timestep K Langevin corrector steps at level t with the
// signal-to-noise step size 2α_t(r‖z‖/‖s‖)² (Langevin.swift), then the DDPM predictor step
// t → next (Solver+DDPM.swift). Corrector first, as score_sde's pc_sampler orders them.
//
//   plan at each timestep: [corrector × K, predictor]
//
// B = batch, S = floats per sample, N = B·S; every buffer is (N,).

struct PredictorCorrectorSolver: Solver {
    var predictor: DDPMSolver
    let corrector: LangevinStep
    let correctorSteps: Int  // K
    let batch: Int, sampleSize: Int

    init(schedule: NoiseSchedule, options: SamplerOptions, batch: Int, sampleSize: Int) {
        predictor = DDPMSolver(schedule: schedule, options: options, count: batch * sampleSize)
        corrector = LangevinStep(schedule: schedule, rule: .signalToNoise(Double(options.snr)))
        correctorSteps = options.correctorSteps
        (self.batch, self.sampleSize) = (batch, sampleSize)
    }

    var updatesPerTimestep: [SolverUpdate] { Array(repeating: .corrector, count: correctorSteps) + [.predictor] }

    func addsNoise(_ step: Sampler.Step) -> Bool { step.update == .corrector || predictor.addsNoise(step) }

    func update(_ x: UnsafeMutablePointer<Float>, denoised: Denoised, _ step: Sampler.Step, noise: UnsafePointer<Float>?) {
        switch step.update {
        case .corrector: corrector.step(x, eps: denoised.eps, t: step.t, noise: noise!, batch: batch, sampleSize: sampleSize)
        case .predictor: predictor.update(x, denoised: denoised, step, noise: noise)
        }
    }
}
