// The plan of a reverse process: every model evaluation its solver asks for, in order, made
// once when a Sampler is made. Each is the model output at (x, t), fed to one update:
//
//   predictor  the solver's step from t to the next timestep (−1 = x_0): DDPM, DDIM, DPM-Solver++
//   corrector  a Langevin step at level t; x stays at t (annealed Langevin, PC's corrector)
//
// A solver names the updates of one timestep (DDPM: [predictor]; PC: [corrector × K, predictor];
// annealed Langevin: [corrector × K]); the plan repeats them at each timestep, noisiest first.
//
// Sized before it is allocated: count = timesteps × updates per timestep, overflow-checked, at
// most Int32.max (the C progress callback counts in int32), and its bytes (`stepBytes` a step)
// counted with the sampler's buffers against DDPM_MAX_MODEL_BYTES (Limits.swift): 2^20
// timesteps × 10001 updates would be 251 GB.

/// What the model output of one planned evaluation is fed to.
public enum SolverUpdate: UInt8, Sendable {
    /// The solver's step from t to the next timestep (−1 = x_0).
    case predictor
    /// One Langevin step at level t: x stays at t.
    case corrector
}

extension Sampler {
    /// One model evaluation at `t` and the update after it.
    public struct Step: Equatable, Sendable {
        public let t: Int
        /// The timestep of x after the update: the next timestep (−1 = x_0) after a predictor,
        /// t after a corrector.
        public let prevT: Int
        public let update: SolverUpdate
    }

    /// Bytes the plan holds per model evaluation.
    static let stepBytes = MemoryLayout<Step>.stride

    /// The plan over `timesteps` (noisiest first) with `updates` at each one, after checking
    /// that it and `heldFloats` more fit the memory bound.
    /// - Throws: `.invalidArgument` (naming the bytes) when it would not.
    static func plan(_ timesteps: [Int], updates: [SolverUpdate], heldFloats: Double,
                     _ what: @autoclosure () -> String) throws -> [Step] {
        // 1. Size it: count = timesteps × updates, checked.
        try require(!updates.isEmpty, "a solver must evaluate the model at least once per timestep")
        guard let count = checkedProduct(timesteps.count, updates.count) else {
            throw DDPMError.invalidArgument("\(what()): \(timesteps.count) timesteps × \(updates.count) model evaluations overflow")
        }
        // 2. Bound it, with the sampler's buffers.
        try Limits.requireFloats(heldFloats + Double(count) * Double(stepBytes) / 4,
                                 "\(what()) with a plan of \(count) model evaluations (\(timesteps.count) timesteps × \(updates.count))")
        try require(count <= Int(Int32.max), "\(what()): a plan of \(count) model evaluations is more than \(Int32.max)")
        // 3. Write it: at each timestep its updates, x going to the next after a predictor.
        var plan: [Step] = []
        plan.reserveCapacity(count)
        for (i, t) in timesteps.enumerated() {
            let next = i + 1 < timesteps.count ? timesteps[i + 1] : -1
            for update in updates { plan.append(Step(t: t, prevT: update == .predictor ? next : t, update: update)) }
        }
        return plan
    }
}
