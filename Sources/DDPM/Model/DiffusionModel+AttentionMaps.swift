// The cross-attention maps of a UNet conditioned on a sequence or tokens, for looking at what
// each word is attended from (Networks/UNet/UNet+AttentionMaps.swift).
//   B = batch, S = floats per sample, N = pixels of the layer, Lmax = the longest context.

extension DiffusionModel {
    /// (height, width) of each cross-attention layer in forward order (encoder, middle,
    /// decoder); empty for a network without one.
    public var crossAttentionSizes: [(height: Int, width: Int)] { (network as? UNet)?.crossAttentionSizes ?? [] }

    /// out (B, N, Lmax): for each image of x (B, S) at timestep t, conditioned on `cond` (no
    /// guidance), the weights that cross-attention layer `layer` gives each context position
    /// from each of its N pixels, averaged over heads (rows sum to 1 over j < ℓ_b, 0 after).
    public func crossAttentionMaps(_ out: UnsafeMutablePointer<Float>, layer: Int, x: UnsafePointer<Float>, t: Int,
                                   cond: ConditionBatch, batch: Int, useEMA: Bool = true) throws {
        let sizes = crossAttentionSizes
        guard let unet = network as? UNet, !sizes.isEmpty else {
            throw DDPMError.invalidArgument("the model has no cross-attention layer (a UNet conditioned on sequences or tokens has)")
        }
        try require(layer >= 0 && layer < sizes.count, "layer must be in 0..<\(sizes.count) (got \(layer))")
        try require(batch >= 1, "batch must be >= 1 (got \(batch))")
        try schedule.check(t: t)
        try requireFinite(x, count: batch * network.sampleSize, "x")
        try validate(cond: cond, batch: batch)
        let rows = min(batch, network.config.inferenceRows)
        try requireMemory("attention maps for a batch of \(batch)",
                          floats: network.activationFloats(batch: rows, training: false) + Double(rows * (network.outputSize + 1)))
        try network.reserve(batch: rows, training: false)
        let ts = try Buffer(count: batch, zero: Int32(0))
        ts.fill(Int32(t))
        let scratch = try Buffer<Float>(count: rows * network.outputSize)
        unet.crossAttentionMaps(out, layer: layer, x: x, t: ts.pointer, cond: cond, batch: batch,
                                params: useEMA ? ema.pointer : network.parameters.values.pointer, scratch: scratch.pointer)
    }
}
