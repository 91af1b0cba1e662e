// The residual block of the UNet (DDPM / improved DDPM), conditioned on the timestep.
//
//   B = batch, Ci/Co = in/out channels, N = H·W pixels, T = time-embedding width (4·base),
//   G = GroupNorm groups. Images are channel-major (C, B, N); see Conv2d.swift.
//
//   s1 = SiLU(GroupNorm1(x))                                          (Ci, B, N)
//   h1 = Conv3×3_1(s1) + W_t·SiLU(temb)_b + b_t   (per channel)       (Co, B, N)
//   s2 = Dropout(SiLU(GroupNorm2(h1)))                                 (Co, B, N)
//   out = skip(x) + Conv3×3_2(s2)   (Conv_2 starts at zero)           (Co, B, N)
// skip is the identity when Ci = Co, else a 1×1 convolution.
// The caller passes SiLU(temb) (B, T), shared by every block, and gets its gradient back.
//
// Each line "s = [Dropout](SiLU(GroupNorm(·)))" is one pass of the GroupNorm kernel
// (GroupNorm.Fusion), which keeps only s: its backward recomputes the normalised values from
// the input and the kept statistics. The time term is that pass's bias: conv1 writes
// h1' = Conv3×3_1(s1) and GroupNorm2 reads h1' + timeBias_bc, so h1 is never written whole.

import DDPMKernels

struct ResBlock: Sendable {
    let inChannels: Int, outChannels: Int
    let height: Int, width: Int  // H×W of the input and the output
    let norm1: GroupNorm
    let conv1: Conv2d  // 3×3 (kernelHeight × 3; 1×3 for signals), Ci → Co
    let timeProj: Linear  // T → Co
    let norm2: GroupNorm
    let dropout: Dropout?
    let conv2: Conv2d  // 3×3 (kernelHeight × 3), Co → Co, zero-initialised
    let skip: Conv2d?  // 1×1, Ci → Co, when Ci ≠ Co

    init(_ layout: inout ParameterLayout, _ name: String, in inChannels: Int, out outChannels: Int,
         timeDim: Int, groups: Int, dropout: Float, height: Int, width: Int, kernelHeight: Int = 3, epsilon: Float = 1e-5) {
        (self.inChannels, self.outChannels, self.height, self.width) = (inChannels, outChannels, height, width)
        norm1 = GroupNorm(&layout, name + ".norm1", channels: inChannels, groups: groups, epsilon: epsilon)
        conv1 = Conv2d(&layout, name + ".conv1", in: inChannels, out: outChannels, kernel: 3, kernelHeight: kernelHeight)
        timeProj = Linear(&layout, name + ".time_proj", in: timeDim, out: outChannels)
        norm2 = GroupNorm(&layout, name + ".norm2", channels: outChannels, groups: groups, epsilon: epsilon)
        self.dropout = dropout > 0 ? Dropout(probability: dropout) : nil
        conv2 = Conv2d(&layout, name + ".conv2", in: outChannels, out: outChannels, kernel: 3, kernelHeight: kernelHeight,
                       zeroInit: true)
        skip = inChannels == outChannels ? nil
            : Conv2d(&layout, name + ".skip", in: inChannels, out: outChannels, kernel: 1)
    }

    var pixels: Int { height * width }

    /// The views of one forward pass, for `batch` images.
    struct Activations {
        let s1: UnsafeMutablePointer<Float>  // (Ci, B, N) SiLU(GroupNorm1(x))
        let mean1, rstd1: UnsafeMutablePointer<Float>  // (B, G)
        let timeBias: UnsafeMutablePointer<Float>  // (B, Co) timeProj(SiLU(temb))
        let h1: UnsafeMutablePointer<Float>  // (Co, B, N) Conv3×3_1(s1), without the time term
        let s2: UnsafeMutablePointer<Float>  // (Co, B, N) Dropout(SiLU(GroupNorm2(h1 + timeBias)))
        let mean2, rstd2: UnsafeMutablePointer<Float>  // (B, G)
        let mask: UnsafeMutablePointer<Float>  // (Co, B, N) the dropout mask; 0 floats without dropout
        let out: UnsafeMutablePointer<Float>  // (Co, B, N)

        init(_ block: ResBlock, batch B: Int, _ arena: inout Arena) {
            let (Ci, Co, G, N) = (block.inChannels, block.outChannels, block.norm1.groups, block.pixels)
            s1 = arena.take(Ci * B * N)
            (mean1, rstd1) = (arena.take(B * G), arena.take(B * G))
            timeBias = arena.take(B * Co)
            (h1, s2) = (arena.take(Co * B * N), arena.take(Co * B * N))
            (mean2, rstd2) = (arena.take(B * G), arena.take(B * G))
            mask = arena.take(block.dropout == nil ? 0 : Co * B * N)
            out = arena.take(Co * B * N)
        }
    }

    /// Floats of `columns` scratch for a batch of B.
    func columnsCount(batch B: Int) -> Int {
        max(conv1.columnsCount(batch: B, height: height, width: width), conv2.columnsCount(batch: B, height: height, width: width))
    }

    /// The fusions of the two GroupNorm passes: s1 = SiLU(GN1(x)); s2 = [Dropout](SiLU(GN2(h1' + timeBias))).
    private var fusion1: GroupNorm.Fusion { GroupNorm.Fusion(silu: true) }
    private func fusion2(_ a: Activations, dropping: Bool) -> GroupNorm.Fusion {
        GroupNorm.Fusion(bias: UnsafePointer(a.timeBias), silu: true, mask: dropping ? a.mask : nil,
                         dropout: dropping ? dropout : nil)
    }

    /// a.out (Co, B, N) = block(x = inp (Ci, B, N), SiLU(temb) = temb (B, T)).
    /// Dropout draws from `rng` when `pass.training`.
    func forward(_ a: Activations, _ inp: UnsafePointer<Float>, temb: UnsafePointer<Float>, _ pass: Pass, rng: inout Philox) {
        let (B, N, Ci, Co, H, W) = (pass.batch, pixels, inChannels, outChannels, height, width)
        let (params, columns) = (pass.params, pass.scratch.columns)
        norm1.forward(a.s1, mean: a.mean1, rstd: a.rstd1, inp, params, batch: B, spatial: N, fusing: fusion1)
        // h1 = conv1(s1) + timeProj(SiLU(temb)): conv1 writes h1', the time term is GroupNorm2's bias.
        timeProj.forward(a.timeBias, temb, params, batch: B)
        conv1.forward(a.h1, a.s1, params, columns: columns, batch: B, height: H, width: W)
        let dropping = dropout != nil && pass.training
        if let dropout, dropping { dropout.drawUniforms(a.mask, channels: Co, batch: B, pixels: N, rng: &rng) }
        norm2.forward(a.s2, mean: a.mean2, rstd: a.rstd2, a.h1, params, batch: B, spatial: N,
                      fusing: fusion2(a, dropping: dropping))
        // out = skip(x) + conv2(s2)
        if let skip {
            skip.forward(a.out, inp, params, columns: columns, batch: B, height: H, width: W)
        } else {
            a.out.update(from: inp, count: Ci * B * N)
        }
        conv2.forward(a.out, a.s2, params, columns: columns, batch: B, height: H, width: W, accumulate: true)
    }

    /// Backward of the last training forward, for x = inp. Accumulates parameter gradients
    /// and dtemb (B, T) += ∂L/∂SiLU(temb); dinp (Ci, B, N) (+)= ∂L/∂x (overwritten unless
    /// `accumulate`). dinp must not alias dout. Uses scratch.a, scratch.b and scratch.rows.
    func backward(dinp: UnsafeMutablePointer<Float>, dtemb: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>,
                  inp: UnsafePointer<Float>, temb: UnsafePointer<Float>, _ a: Activations, _ pass: Pass, accumulate: Bool) {
        let (B, N, Ci, H, W) = (pass.batch, pixels, inChannels, height, width)
        let (params, grads, columns) = (pass.params, pass.grads, pass.scratch.columns)
        // out = skip(x) + conv2(s2)
        let ds2 = pass.scratch.a  // (Co, B, N)
        conv2.backward(dinp: ds2, grads, dout: dout, inp: a.s2, params, columns: columns, batch: B, height: H, width: W)
        if let skip {
            skip.backward(dinp: dinp, grads, dout: dout, inp: inp, params, columns: columns, batch: B, height: H, width: W,
                          accumulate: accumulate)
        } else if accumulate {
            ddpm_add_inplace(dinp, dout, Int64(Ci * B * N))
        } else {
            dinp.update(from: dout, count: Ci * B * N)
        }
        // s2 = Dropout(SiLU(GroupNorm2(h1' + timeBias))): dh1 = ∂L/∂h1, and
        // dtimeBias (B, Co) = Σ_N dh1 for timeProj (ds2 is left holding ∂L/∂n2)
        let (dh1, dtimeBias) = (pass.scratch.b, pass.scratch.rows)  // (Co, B, N), (B, Co)
        norm2.backward(dinp: dh1, grads, dout: ds2, dbias: dtimeBias, inp: a.h1, mean: a.mean2, rstd: a.rstd2, params,
                       batch: B, spatial: N, accumulate: false, fusing: fusion2(a, dropping: dropout != nil))
        timeProj.backward(dinp: dtemb, grads, dout: dtimeBias, inp: temb, params, batch: B, accumulate: true)
        let ds1 = pass.scratch.a  // (Ci, B, N)
        conv1.backward(dinp: ds1, grads, dout: dh1, inp: a.s1, params, columns: columns, batch: B, height: H, width: W)
        // s1 = SiLU(GroupNorm1(x)) (ds1 is left holding ∂L/∂n1)
        norm1.backward(dinp: dinp, grads, dout: ds1, dbias: nil, inp: inp, mean: a.mean1, rstd: a.rstd1, params, batch: B,
                       spatial: N, accumulate: true, fusing: fusion1)
    }
}
