// The timestep embedding of our networks.  B = batch, E = encoding size (even),
// T = embedding width, S = timesteps.
//
//   e    = sinusoid(t)              (B, E)
//   temb = W_2·SiLU(W_1·e + b_1) + b_2   (B, T)
//
// Sinusoidal encoding (Vaswani et al.; DDPM): for i < E/2,
//   e[i] = sin(t·ω_i),  e[E/2 + i] = cos(t·ω_i),  ω_i = 10000^(−i/(E/2 − s)),
// with s = 0 by default; diffusers' Timesteps names s freq_shift (DDPM's code: s = 1), and its
// flip_sin_to_cos swaps the halves: e[i] = cos(t·ω_i), e[E/2 + i] = sin(t·ω_i).
// No parameters. The table for every t in 0..<S is computed once; a lookup is a row copy.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

final class SinusoidalEmbedding {
    let dim: Int  // E (even)
    let table: Buffer<Float>  // (S, E)

    /// - Throws: if the (S, E) table is over the size limit or cannot be allocated.
    init(dim: Int, timesteps: Int, flipSinToCos: Bool = false, freqShift: Float = 0) throws {
        self.dim = dim
        try Limits.requireFloats(Double(timesteps) * Double(dim), "the timestep table (T = \(timesteps) × E = \(dim))")
        table = try Buffer(count: timesteps * dim)
        let half = dim / 2
        let (sinAt, cosAt) = flipSinToCos ? (half, 0) : (0, half)  // where each half goes in a row
        for t in 0..<timesteps {
            for i in 0..<half {
                let omega = exp(-log(10000.0) * Double(i) / (Double(half) - Double(freqShift)))
                table.pointer[t * dim + sinAt + i] = Float(sin(Double(t) * omega))
                table.pointer[t * dim + cosAt + i] = Float(cos(Double(t) * omega))
            }
        }
    }

    /// out (B, E) = table[t_b] for each row.
    func forward(_ out: UnsafeMutablePointer<Float>, t: UnsafePointer<Int32>, batch: Int) {
        for b in 0..<batch { (out + b * dim).update(from: table.pointer + Int(t[b]) * dim, count: dim) }
    }
}

struct TimeEmbedding {
    let sinusoid: SinusoidalEmbedding
    let fc1: Linear  // E → T
    let fc2: Linear  // T → T

    init(_ layout: inout ParameterLayout, _ name: String, encoding E: Int, width T: Int, timesteps: Int,
         flipSinToCos: Bool = false, freqShift: Float = 0) throws {
        fc1 = Linear(&layout, name + ".fc1", in: E, out: T)
        fc2 = Linear(&layout, name + ".fc2", in: T, out: T)
        sinusoid = try SinusoidalEmbedding(dim: E, timesteps: timesteps, flipSinToCos: flipSinToCos, freqShift: freqShift)
    }

    /// The views of one forward pass, for `batch` rows.
    struct Activations {
        let e: UnsafeMutablePointer<Float>  // (B, E) sinusoid(t)
        let hidden, act: UnsafeMutablePointer<Float>  // (B, T) W_1·e + b_1, SiLU of it
        let out: UnsafeMutablePointer<Float>  // (B, T) temb

        init(_ layer: TimeEmbedding, batch B: Int, _ arena: inout Arena) {
            let T = layer.fc2.outFeatures
            e = arena.take(B * layer.sinusoid.dim)
            (hidden, act, out) = (arena.take(B * T), arena.take(B * T), arena.take(B * T))
        }
    }

    /// a.out (B, T) = temb(t (B,)). With `sharedT` (every row has t[0], as while sampling) one row
    /// is computed and copied to the others. `prepared`: the linear layers' weights prepared for
    /// every chunk of the call, or nil (Linear+Prepared.swift).
    func forward(_ a: Activations, t: UnsafePointer<Int32>, _ params: UnsafePointer<Float>, batch B: Int, sharedT: Bool = false,
                 prepared: PreparedWeights? = nil) {
        let (T, rows) = (fc2.outFeatures, sharedT ? 1 : B)
        sinusoid.forward(a.e, t: t, batch: rows)
        fc1.forward(a.hidden, a.e, params, batch: rows, prepared: prepared)
        SiLU.forward(a.act, a.hidden, count: rows * T)
        fc2.forward(a.out, a.act, params, batch: rows, prepared: prepared)
        for b in 1..<max(B / rows, 1) { (a.out + b * T).update(from: a.out, count: T) }
    }

    /// In the forward pass this was: temb = W_2·SiLU(W_1·e + b_1) + b_2, so the gradients of
    /// W_2, b_2, W_1, b_1 accumulate from dout = ∂L/∂temb (B, T). dhidden (B, T) is scratch.
    func backward(dout: UnsafePointer<Float>, _ a: Activations, dhidden: UnsafeMutablePointer<Float>,
                  _ grads: UnsafeMutablePointer<Float>, _ params: UnsafePointer<Float>, batch B: Int) {
        fc2.backward(dinp: dhidden, grads, dout: dout, inp: a.act, params, batch: B)
        SiLU.backward(dinp: dhidden, dout: dhidden, inp: a.hidden, count: B * fc2.outFeatures)
        fc1.backward(dinp: nil, grads, dout: dhidden, inp: a.e, params, batch: B)
    }
}
