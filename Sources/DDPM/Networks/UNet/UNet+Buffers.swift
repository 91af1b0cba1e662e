// The UNet's two allocations: the activation block (what a forward pass keeps for the
// backward pass) and the workspace (the scratch arena: the layers' temporaries and the
// gradients flowing back). Each is one block of views; see Kernels/Arena.swift.
//
//   B = capacity (images), C = image channels, H×W = image size, N = H·W, c_0 = channels of
//   level 0, E = timestep-encoding size, T = time-embedding width, G = groups,
//   M = the most floats per image of any activation (UNet.maxActivation).

extension UNet {
    /// Every tensor of a forward pass, for `capacity` images.
    struct Activations {
        let block: Buffer<Float>?  // the arena's block: keeps the views alive
        let capacity: Int
        let time: TimeEmbedding.Activations  // e (B, E), ..., out = temb (B, T)
        let tembAct: UnsafeMutablePointer<Float>  // (B, T) SiLU(temb)
        let condition: ConditionEncoder.Activations  // resolved labels, vectors, context c̃ (B, Lmax, Dc), ...
        let x: UnsafeMutablePointer<Float>  // (C, B, H, W) the input, channel-major
        let h0: UnsafeMutablePointer<Float>  // (c_0, B, H, W) inConv(x), the first skip
        let encoder, middle, decoder: [Stage.Activations]
        let outNormed, outAct: UnsafeMutablePointer<Float>  // (c_0, B, H, W)
        let outMean, outRstd: UnsafeMutablePointer<Float>  // (B, G)
        let out: UnsafeMutablePointer<Float>  // (C', B, H, W) the output (and variance), channel-major

        init(_ net: UNet, batch B: Int, _ arena: inout Arena) throws {
            (block, capacity) = (arena.block, B)
            let c = net.settings
            let (T, N, c0) = (c.timeDim, c.height * c.width, net.inConv.outChannels)
            time = TimeEmbedding.Activations(net.time, batch: B, &arena)
            tembAct = arena.take(B * T)
            condition = try ConditionEncoder.Activations(net.condition, batch: B, &arena)
            x = arena.take(c.channels * B * N)
            h0 = arena.take(c0 * B * N)
            encoder = net.encoder.map { Stage.Activations($0, batch: B, &arena) }
            middle = net.middle.map { Stage.Activations($0, batch: B, &arena) }
            decoder = net.decoder.map { Stage.Activations($0, batch: B, &arena) }
            (outNormed, outAct) = (arena.take(c0 * B * N), arena.take(c0 * B * N))
            (outMean, outRstd) = (arena.take(B * c.groups), arena.take(B * c.groups))
            out = arena.take(net.outputChannels * B * N)
        }

        /// The skips: h0, then every encoder stage's output.  skip(k) is (C_k, B, N_k).
        func skip(_ k: Int) -> UnsafeMutablePointer<Float> { k == 0 ? h0 : encoder[k - 1].out }
    }

    /// The scratch arena for `capacity` images. Sampling needs only the convolutions' scratch
    /// (`columns`: im2col's columns, or Winograd's transformed weights, tiles and staged
    /// images; Conv2d.columnsCount); the rest (`backward`) is sized on the first training forward.
    struct Workspace {
        let block: Buffer<Float>?  // the arena's block: keeps the views alive
        let capacity: Int
        let backward: Bool  // everything but scratch.columns is sized (else 0 floats)
        let scratch: Scratch  // columns; a, b (M·B,) each; probs (N², largest attention); rows (B, most ResBlock channels)
        let dskips: [UnsafeMutablePointer<Float>]  // like Activations.skip(k): ∂L/∂skip_k, (C_k, B, N_k)
        let streamA, streamB: UnsafeMutablePointer<Float>  // (M·B,) ∂L/∂h along the decoder, ping-pong
        let dtemb, dtembAct, dtimeHidden: UnsafeMutablePointer<Float>  // (B, T) ∂L/∂temb, ∂L/∂SiLU(temb), TimeEmbedding's scratch
        let condition: ConditionEncoder.Workspace  // the condition embeddings' backward scratch, ∂L/∂c̃ (B, Lmax, Dc)
        let cross: CrossAttention.Scratch  // the cross-attention stages' backward temporaries

        init(_ net: UNet, batch B: Int, backward: Bool, _ arena: inout Arena) {
            (block, capacity, self.backward) = (arena.block, B, backward)
            let (n, T) = (backward ? B : 0, net.settings.timeDim)
            scratch = Scratch(&arena, columns: net.columnsCount(batch: B), activation: net.maxActivation * n,
                              probs: backward ? net.maxAttention : 0, rows: n * net.maxChannels)
            dskips = net.skipFloats.map { arena.take($0 * n) }
            (streamA, streamB) = (arena.take(net.maxActivation * n), arena.take(net.maxActivation * n))
            (dtemb, dtembAct, dtimeHidden) = (arena.take(n * T), arena.take(n * T), arena.take(n * T))
            condition = ConditionEncoder.Workspace(net.condition, batch: n, &arena)
            let k = net.conditioning
            let crossStages = (net.encoder + net.middle + net.decoder).compactMap(\.crossAttention)
            cross = CrossAttention.Scratch(&arena, activation: n * (crossStages.map { $0.channels * $0.pixels }.max() ?? 0),
                                           keyValues: n * 2 * k.maxLength * (crossStages.map(\.channels).max() ?? 0),
                                           probs: backward ? k.maxLength * (crossStages.map(\.pixels).max() ?? 0) : 0)
        }
    }
}
