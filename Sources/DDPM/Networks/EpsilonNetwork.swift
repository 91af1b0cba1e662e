// The contract between ε-networks (ResidualMLP, UNet) and training/sampling.
//
// S = floats per sample (D for vectors, C·H·W for images), B = batch,
// K = number of classes (0 = unconditional); label K is the null ("no class") label.

public protocol EpsilonNetwork: AnyObject {
    /// Parameters and their gradients, one flat vector.
    var parameters: ParameterSet { get }
    /// The shape of one sample: [D] or [C, H, W].
    var sampleShape: [Int] { get }
    /// S, floats per sample (the product of `sampleShape`; no array is built: hot paths call it).
    var sampleSize: Int { get }
    /// K; labels are in 0...K where K means "no class". 0 for an unconditional network.
    var numClasses: Int { get }
    /// Everything needed to rebuild the network (stored in checkpoints).
    var config: NetworkConfig { get }

    /// ε̂ (B, S) = ε_θ(x (B, S), t (B,), labels (B,)) with parameters `params` (the live ones or the EMA).
    /// Labels nil means the null label for every row. Activations are kept for `backward`
    /// when `training`; `rng` drives dropout while training.
    func forward(_ out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, t: UnsafePointer<Int32>,
                 labels: UnsafePointer<Int32>?, batch: Int, params: UnsafePointer<Float>,
                 training: Bool, rng: inout Philox)

    /// Accumulates ∂L/∂θ into `parameters.grads`, given dout = ∂L/∂ε̂ (B, S) for the last
    /// forward call made with `training: true` and the live parameters.
    func backward(dout: UnsafePointer<Float>, batch: Int)
}

/// The configuration of any of our networks; Codable for checkpoints.
public enum NetworkConfig: Codable, Sendable, Equatable {
    case mlp(ResidualMLP.Config)
    case unet(UNetConfig)

    /// Builds the network with freshly initialised parameters.
    public func makeNetwork(timesteps: Int, rng: inout Philox) throws -> EpsilonNetwork {
        switch self {
        case .mlp(let c): return try ResidualMLP(c, timesteps: timesteps, rng: &rng)
        case .unet(let c): return try makeUNet(c, timesteps: timesteps, rng: &rng)
        }
    }
}
