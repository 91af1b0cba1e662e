// Annealed Langevin dynamics (NCSN, Song & Ermon 2019) as a solver: at each timestep (noise
// level, noisiest first) K Langevin steps with the score −ε̂/√(1−ᾱ_t) and the annealed step
// size δ_t = ε·(1−ᾱ_t)/(1−ᾱ_last) (Langevin.swift). It only corrects: x never moves between
// levels by a solver step, the next level's steps start where these end, and the sample is
// x after the last level's.
//
//   plan at each timestep: [corrector × K]
//
// B = batch, S = floats per sample, N = B·S; every buffer is (N,).

struct LangevinSolver: Solver {
    let langevin: LangevinStep
    let stepsPerLevel: Int  // K
    let batch: Int, sampleSize: Int

    init(schedule: NoiseSchedule, options: SamplerOptions, timesteps: [Int], batch: Int, sampleSize: Int) {
        let lastNoise = 1 - schedule.alphaBar[timesteps.last!]  // 1−ᾱ_last, the least noisy level visited
        langevin = LangevinStep(schedule: schedule, rule: .annealed(epsilon: Double(options.langevinStepSize), lastNoise: lastNoise))
        stepsPerLevel = options.correctorSteps
        (self.batch, self.sampleSize) = (batch, sampleSize)
    }

    var updatesPerTimestep: [SolverUpdate] { Array(repeating: .corrector, count: stepsPerLevel) }

    func addsNoise(_ step: Sampler.Step) -> Bool { true }

    /// x + (δ_t/2)·s + √δ_t·z at level t = step.t.
    func update(_ x: UnsafeMutablePointer<Float>, denoised: Denoised, _ step: Sampler.Step, noise: UnsafePointer<Float>?) {
        langevin.step(x, eps: denoised.eps, t: step.t, noise: noise!, batch: batch, sampleSize: sampleSize)
    }
}
