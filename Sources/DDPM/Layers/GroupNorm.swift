// Group normalisation (Wu & He 2018) over channel-major images.
//
//   B = batch, C = channels, G = groups, Cg = C/G channels per group, N = H·W pixels.
//   Statistics are per (image b, group g), over the Cg·N values of that group:
//   y = (x − μ_bg)·rstd_bg·γ_c + β_c,  rstd = 1/√(σ² + ε).
// Images are (C, B, N): channel c of image b is the run of N floats at (c·B + b)·N.
//
// The loops are one C kernel (Sources/DDPMKernels/groupnorm.inc) that can also take what a
// ResBlock does around the normalisation into the same pass (`Fusion`): a per-(image, channel)
// bias added to x first, SiLU and dropout after. The pass goes group by group, so the group's
// values are read from memory once and stay in cache for the statistics and the output; ranges
// of groups go to the WorkPool when it is free (KernelSplit).
import DDPMKernels

public struct GroupNorm: Sendable {
    public let channels: Int, groups: Int
    public let epsilon: Float  // ε, 1e-5 unless the network says otherwise (UNetConfig.normEps)
    let gamma: Int  // offset of γ, (C,)
    let beta: Int  // offset of β, (C,)

    /// `groups` must divide `channels` (checked by the network's config).
    public init(_ layout: inout ParameterLayout, _ name: String, channels: Int, groups: Int, epsilon: Float = 1e-5) {
        (self.channels, self.groups, self.epsilon) = (channels, groups, epsilon)
        gamma = layout.add(name + ".weight", [channels], .ones)
        beta = layout.add(name + ".bias", [channels], .zeros)
    }

    /// What the pass does beside the normalisation:
    ///   x = inp + bias_bc;  n = GroupNorm(x);  y = SiLU(n) when `silu`;  y ·= mask when `dropout`.
    /// The backward pass recomputes n (and SiLU'(n)) from x and the kept statistics: n is never stored.
    struct Fusion {
        var bias: UnsafePointer<Float>? = nil  // (B, C)
        var silu = false
        /// (C, B, N): uniforms in, the mask [u ≥ p]/(1 − p) out (forward); the mask (backward).
        var mask: UnsafeMutablePointer<Float>? = nil
        var dropout: Dropout? = nil  // p of the mask

        static var none: Fusion { Fusion() }
    }

    /// The kernel's description of this layer for a batch of B images of N pixels.
    private func kernel(_ params: UnsafePointer<Float>, batch B: Int, spatial N: Int, _ f: Fusion) -> ddpm_groupnorm_params {
        ddpm_groupnorm_params(channels: Int64(channels), batch: Int64(B), pixels: Int64(N), groups: Int64(groups),
                              epsilon: epsilon, gamma: params + gamma, beta: params + beta, bias: f.bias,
                              silu: f.silu ? 1 : 0, mask: f.dropout == nil ? nil : f.mask,
                              drop_probability: f.dropout?.probability ?? 0, drop_keep: f.dropout?.keep ?? 1)
    }

    /// out (C, B, N); mean, rstd (B, G) are kept for the backward pass. out must not alias inp.
    func forward(_ out: UnsafeMutablePointer<Float>, mean: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>,
                 _ inp: UnsafePointer<Float>, _ params: UnsafePointer<Float>, batch B: Int, spatial N: Int,
                 fusing fusion: Fusion = .none) {
        KernelSplit.run(.groupNormForward(kernel(params, batch: B, spatial: N, fusion), out: out, mean: mean, rstd: rstd, inp: inp),
                        units: groups, floatsPerUnit: channels / groups * B * N)
    }

    /// In the forward pass this was: y = x̂·γ + β with x̂ = (x − μ)·rstd, so
    /// dγ += Σ dy·x̂,  dβ += Σ dy,  dx (+)= rstd·(dy·γ − mean(dy·γ) − x̂·mean(dy·γ·x̂)),
    /// means over the group. `dinp` is overwritten unless `accumulate`; it must not alias `dout`.
    func backward(dinp: UnsafeMutablePointer<Float>, _ grads: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>,
                  inp: UnsafePointer<Float>, mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>,
                  _ params: UnsafePointer<Float>, batch B: Int, spatial N: Int, accumulate: Bool) {
        // Without SiLU or dropout the kernel only reads dout.
        backward(dinp: dinp, grads, dout: UnsafeMutablePointer(mutating: dout), dbias: nil, inp: inp, mean: mean, rstd: rstd,
                 params, batch: B, spatial: N, accumulate: accumulate, fusing: .none)
    }

    /// The backward pass of a fused forward (`fusion` as it was then, inp the same x before the
    /// bias): dout = ∂L/∂y is overwritten with ∂L/∂n when the fusion has SiLU or dropout;
    /// dbias (B, C) = Σ_N ∂L/∂x when not nil (this call's dx, before accumulation).
    func backward(dinp: UnsafeMutablePointer<Float>, _ grads: UnsafeMutablePointer<Float>, dout: UnsafeMutablePointer<Float>,
                  dbias: UnsafeMutablePointer<Float>?, inp: UnsafePointer<Float>, mean: UnsafePointer<Float>,
                  rstd: UnsafePointer<Float>, _ params: UnsafePointer<Float>, batch B: Int, spatial N: Int,
                  accumulate: Bool, fusing fusion: Fusion) {
        KernelSplit.run(.groupNormBackward(kernel(params, batch: B, spatial: N, fusion), dinp: dinp, accumulate: accumulate,
                                           dgamma: grads + gamma, dbeta: grads + beta, dbias: dbias, dout: dout, inp: inp,
                                           mean: mean, rstd: rstd),
                        units: groups, floatsPerUnit: channels / groups * B * N)
    }
}
