// The layer contract.
//
// Stateless layers (Linear, LayerNorm, GroupNorm, SiLU, Conv2d, Embedding, Dropout) are
// llm.c's functions: pointers in, pointers out, `forward(out, inp, params, dims)` and
// `backward(dinp, grads, dout, inp, params, dims)`.
//
// A layer that keeps activations (ResBlock, Attention, Downsample, Upsample) is built for one
// image shape and has
//
//   struct Activations { ...; let out }             views into the network's activation block
//   init(_ layout: inout ParameterLayout, _ name: String, <shape>)
//   func forward(_ a: Activations, _ inp, _ pass)   a.out = layer(inp)
//   func backward(dinp:, dout:, inp:, _ a, _ pass)  dinp = ∂L/∂inp, grads += ∂L/∂θ
//
// where `pass` carries what every call of one forward or backward pass shares: the
// parameters, their gradients, the batch size and the network's scratch. Adding such a
// layer to the UNet is its file, then in UNet+Stages.swift: a stored property and its
// construction, one line for its views, one line in Stage.forward, one in Stage.backward.
// (TimeEmbedding keeps activations too, but it also serves the MLP, which has no scratch:
// it takes params and batch directly.)
//
//   B = batch, N = pixels of the largest activation, C = channels.

/// What every layer call of one forward or backward pass shares.
struct Pass {
    let params: UnsafePointer<Float>  // (P,) parameter values: the live ones or the EMA
    let grads: UnsafeMutablePointer<Float>  // (P,) ∂L/∂θ, accumulated by backward
    let batch: Int  // B, at most the capacity the buffers were sized for
    let training: Bool  // dropout is on (forward only)
    let scratch: Scratch
    /// The convolutions' weights prepared once for every chunk of the call, or nil
    /// (PreparedWeights.swift; a convolution checks that they are for `params`).
    var prepared: PreparedWeights? = nil
}

/// Temporaries of one layer call, shared by every layer of a network; nothing in them
/// outlives the call. `a`, `b`, `probs` and `rows` are sized only once the network has made
/// a training forward (backward uses them, forward does not).
struct Scratch {
    let columns: UnsafeMutablePointer<Float>  // the convolutions' scratch: the most any needs (Conv2d.columnsCount)
    let a, b: UnsafeMutablePointer<Float>  // (C, B, N) each: the largest activation of any layer
    let probs: UnsafeMutablePointer<Float>  // (N, N) ∂L/∂P of the largest attention
    let rows: UnsafeMutablePointer<Float>  // (B, C) per-image channel sums (ResBlock's ∂L/∂timeBias)

    init(_ arena: inout Arena, columns: Int, activation: Int, probs: Int, rows: Int) {
        self.columns = arena.take(columns)
        (a, b) = (arena.take(activation), arena.take(activation))
        self.probs = arena.take(probs)
        self.rows = arena.take(rows)
    }
}
