// The one place where a C elementwise pass is cut into pieces for the WorkPool: SiLU by
// ranges of elements, GroupNorm by ranges of groups (a range of groups owns its channels' dγ,
// dβ and its images' statistics). Every element's operations and every reduction's order are
// the same whatever the cut, so the bits do not depend on the number of pieces or threads.
//
// A pass is cut only when the pool is free (a prediction of one chunk; not inside the train
// step's chunk jobs, which already hold both cores) and it is large enough to pay for waking
// the workers. The pass being run is written, while the pool is held, into `call`, which the
// stored job reads: running one allocates nothing (WorkPool.parallelForIfFree).
import DDPMKernels

enum KernelSplit {
    enum Pass {
        case siluForward(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>)
        case siluBackward(dinp: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, inp: UnsafePointer<Float>)
        case groupNormForward(ddpm_groupnorm_params, out: UnsafeMutablePointer<Float>, mean: UnsafeMutablePointer<Float>,
                              rstd: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>)
        case groupNormBackward(ddpm_groupnorm_params, dinp: UnsafeMutablePointer<Float>, accumulate: Bool,
                               dgamma: UnsafeMutablePointer<Float>, dbeta: UnsafeMutablePointer<Float>,
                               dbias: UnsafeMutablePointer<Float>?, dout: UnsafeMutablePointer<Float>,
                               inp: UnsafePointer<Float>, mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>)
    }

    /// A pass, its units (elements or groups) and the pieces they are cut into.
    struct Call {
        var pass: Pass
        var units: Int, pieces: Int
    }

    /// Floats a pass must touch before it is cut (waking the workers costs microseconds).
    static let minimumFloats = 1 << 16

    /// The call in progress on the pool, written by the caller that holds it.
    nonisolated(unsafe) private static let call: UnsafeMutablePointer<Call> = {
        let p = UnsafeMutablePointer<Call>.allocate(capacity: 1)
        p.initialize(to: Call(pass: .siluForward(out: .init(bitPattern: 1)!, inp: .init(bitPattern: 1)!), units: 0, pieces: 1))
        return p
    }()
    nonisolated(unsafe) private static let job: (Int, Int) -> Void = { piece, _ in run(call.pointee, piece: piece) }
    /// Passes run in pieces on the pool so far (tests look).
    nonisolated(unsafe) private(set) static var passesOnPool = 0

    /// Runs `pass` over `units` units (elements or groups) of `floatsPerUnit` floats each: in
    /// pieces on the pool when it is free and the pass is large, else whole on this thread.
    static func run(_ pass: Pass, units: Int, floatsPerUnit: Int) {
        let pool = WorkPool.shared
        let pieces = min(pool.threads, units)
        if pieces > 1 && units * floatsPerUnit >= minimumFloats {
            let started = pool.parallelForIfFree(chunks: pieces, prepare: {
                call.pointee = Call(pass: pass, units: units, pieces: pieces)
                passesOnPool += 1
            }, job)
            if started { return }
        }
        run(Call(pass: pass, units: units, pieces: 1), piece: 0)
    }

    /// Piece `piece` of `c`: units [piece·units/pieces, (piece+1)·units/pieces).
    private static func run(_ c: Call, piece: Int) {
        let (lo, hi) = (Int64(piece * c.units / c.pieces), Int64((piece + 1) * c.units / c.pieces))
        switch c.pass {
        case .siluForward(let out, let inp):
            ddpm_silu_forward(out + Int(lo), inp + Int(lo), hi - lo)
        case .siluBackward(let dinp, let dout, let inp):
            ddpm_silu_backward(dinp + Int(lo), dout + Int(lo), inp + Int(lo), hi - lo)
        case .groupNormForward(var p, let out, let mean, let rstd, let inp):
            ddpm_groupnorm_forward(&p, out, mean, rstd, inp, lo, hi)
        case .groupNormBackward(var p, let dinp, let accumulate, let dgamma, let dbeta, let dbias, let dout, let inp, let mean,
                                let rstd):
            ddpm_groupnorm_backward(&p, dinp, accumulate ? 1 : 0, dgamma, dbeta, dbias, dout, inp, mean, rstd, lo, hi)
        }
    }
}
