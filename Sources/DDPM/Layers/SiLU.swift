// SiLU (swish): y = x·σ(x), σ(x) = 1/(1 + e^{−x}) with FastMath's e^x.  N = number of elements.
// The loops are C kernels (Sources/DDPMKernels/activation.inc), vectorised per ISA path, cut
// into ranges on the WorkPool when it is free (KernelSplit).
import DDPMKernels

enum SiLU {
    /// out (N,) = inp·σ(inp); `out` may alias `inp` only if the backward pass is not needed.
    static func forward(_ out: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>, count: Int) {
        KernelSplit.run(.siluForward(out: out, inp: inp), units: count, floatsPerUnit: 1)
    }

    /// In the forward pass this was: y = x·σ(x), so dx = dy·σ(x)·(1 + x·(1 − σ(x))).
    /// `dinp` is overwritten; it may alias `dout`.
    static func backward(dinp: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, inp: UnsafePointer<Float>, count: Int) {
        KernelSplit.run(.siluBackward(dinp: dinp, dout: dout, inp: inp), units: count, floatsPerUnit: 1)
    }
}
