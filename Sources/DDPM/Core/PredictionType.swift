// What a model output is: the one vocabulary that training (the target a network learns,
// Training/Objective.swift) and sampling (the conversion to (x̂_0, ε̂), Sampling/Prediction.swift)
// share. The raw values are ddpm_output's in ddpm.h.

/// What a network (or a caller's model) outputs.
public enum PredictionType: Int32, Sendable, CaseIterable {
    /// ε̂, the noise that was added.
    case epsilon = 0
    /// x̂_0, the clean sample.
    case x0 = 1
    /// v̂ = √ᾱ_t·ε̂ − √(1−ᾱ_t)·x̂_0, the velocity.
    case v = 2
}
