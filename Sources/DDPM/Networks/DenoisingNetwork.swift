// The contract between the denoising networks (ResidualMLP, UNet) and training/sampling.
// A network maps (x_t, t, condition) to one output per float of x_t: ε̂ for now (the model's
// prediction target says what the output means; see Sampling/Prediction.swift).
//
// S = floats per sample (D for vectors, C·H·W for images), B = batch,
// K = number of classes (0 = unconditional); label K is the null ("no class") label,
// Dc = conditioning-vector size. The condition of each row comes in a `ConditionBatch`.

public protocol DenoisingNetwork: AnyObject {
    /// Parameters and their gradients, one flat vector.
    var parameters: ParameterSet { get }
    /// The shape of one sample: [D] or [C, H, W].
    var sampleShape: [Int] { get }
    /// S, floats per sample (the product of `sampleShape`; no array is built: hot paths call it).
    var sampleSize: Int { get }
    /// Whether the output carries a second S floats per sample: v ∈ [−1, 1] (roughly) of the
    /// learned variance, log σ² = ((v+1)/2)·log β + (1 − (v+1)/2)·log β̃ (Nichol & Dhariwal).
    var learnsVariance: Bool { get }
    /// What the network is conditioned on (its class embedding has K + 1 rows).
    var conditioning: Conditioning { get }
    /// Everything needed to rebuild the network, conditioning apart (stored in checkpoints).
    var config: NetworkConfig { get }

    /// out (B, outputSize) = f_θ(x (B, S), t (B,), c) with parameters `params` (the live
    /// ones or the EMA): per sample S floats of the model output, then S of the variance when learned.
    /// c is the row's condition in `cond` (labels (B,) or vectors (B, Dc), as `conditioning`
    /// says); a field left nil, or a row flagged in `cond.null`, takes the null condition.
    /// Activations are kept for `backward` when `training`; `rng` drives dropout while training.
    func forward(_ out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, t: UnsafePointer<Int32>,
                 cond: ConditionBatch, batch: Int, params: UnsafePointer<Float>,
                 training: Bool, rng: inout Philox)

    /// An upper bound of the floats `reserve` holds for `batch` rows (in Double: it never overflows).
    func activationFloats(batch: Int, training: Bool) -> Double

    /// Sizes the activation block and workspace for `batch` rows, so that `forward` and
    /// `backward` allocate nothing. The model reserves before every call (after checking
    /// `activationFloats` against the limit); `forward` grows the buffers itself for a
    /// caller that did not, and traps if that allocation fails.
    /// - Throws: if the buffers cannot be allocated.
    func reserve(batch: Int, training: Bool) throws

    /// Accumulates ∂L/∂θ into `parameters.grads`, given dout = ∂L/∂out (B, outputSize) for the last
    /// forward call made with `training: true` and the live parameters.
    func backward(dout: UnsafePointer<Float>, batch: Int)

    /// Its layers' weights prepared once per call for every chunk (Layers/PreparedWeights.swift):
    /// one instance shared by the network and its replicas, or nil.
    var preparedWeights: PreparedWeights? { get }

    /// A network of the same configuration whose parameter values are this network's (the same
    /// block, not a copy), with gradients and activations of its own: what one chunk of a
    /// batch runs on (Model/ChunkPlan.swift). Its `backward` accumulates into its own gradients.
    /// - Throws: if its gradients or tables cannot be allocated.
    func replica() throws -> DenoisingNetwork
}

extension DenoisingNetwork {
    /// `forward` conditioned on labels (B,) only (nil = the null label).
    public func forward(_ out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, t: UnsafePointer<Int32>,
                        labels: UnsafePointer<Int32>?, batch: Int, params: UnsafePointer<Float>,
                        training: Bool, rng: inout Philox) {
        forward(out, x: x, t: t, cond: ConditionBatch(labels: labels), batch: batch, params: params, training: training, rng: &rng)
    }
    public var preparedWeights: PreparedWeights? { nil }
    /// K; labels are in 0...K where K means "no class". 0 for an unconditional network.
    public var numClasses: Int { conditioning.numClasses }
    /// Floats per sample of the output: S, or 2·S with a learned variance.
    public var outputSize: Int { learnsVariance ? 2 * sampleSize : sampleSize }
}

/// The architecture of any of our networks (ddpm_mlp_params / ddpm_unet_params in C).
public enum NetworkConfig: Sendable, Equatable {
    case mlp(ResidualMLP.Config)
    case unet(UNetConfig)

    /// Builds the network with freshly initialised parameters (drawn from `rng`).
    /// - Parameter checkLayout: runs on the parameter layout before the parameters are allocated.
    public func makeNetwork(conditioning: Conditioning, learnsVariance: Bool = false, timesteps: Int, rng: inout Philox,
                            checkLayout: (ParameterLayout) throws -> Void = { _ in }) throws -> DenoisingNetwork {
        switch self {
        case .mlp(let c):
            return try ResidualMLP(c, conditioning: conditioning, learnsVariance: learnsVariance, timesteps: timesteps,
                                   rng: &rng, checkLayout: checkLayout)
        case .unet(let c):
            return try UNet(c, conditioning: conditioning, learnsVariance: learnsVariance, timesteps: timesteps,
                            rng: &rng, checkLayout: checkLayout)
        }
    }

    /// The size of the timestep-encoding table of the network, E (floats per timestep).
    var timeEmbedDim: Int {
        switch self {
        case .mlp(let c): return c.timeEmbedDim
        case .unet(let c): return c.timeEmbedDim
        }
    }
}
