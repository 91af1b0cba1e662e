// Sinusoidal timestep encoding (Vaswani et al.; DDPM): for i < E/2,
//   emb[i] = sin(t·ω_i),  emb[E/2 + i] = cos(t·ω_i),  ω_i = 10000^(−i/(E/2)).
// No parameters. The table for every t in 0..<T is computed once; a lookup is a row copy.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

final class SinusoidalEmbedding {
    let dim: Int  // E (even)
    let table: Buffer<Float>  // (T, E)

    init(dim: Int, timesteps: Int) {
        self.dim = dim
        table = Buffer(count: timesteps * dim)
        let half = dim / 2
        for t in 0..<timesteps {
            for i in 0..<half {
                let omega = exp(-log(10000.0) * Double(i) / Double(half))
                table.pointer[t * dim + i] = Float(sin(Double(t) * omega))
                table.pointer[t * dim + half + i] = Float(cos(Double(t) * omega))
            }
        }
    }

    /// out (B, E) = table[t_b] for each row.
    func forward(_ out: UnsafeMutablePointer<Float>, t: UnsafePointer<Int32>, batch: Int) {
        for b in 0..<batch { (out + b * dim).update(from: table.pointer + Int(t[b]) * dim, count: dim) }
    }
}
