// The residual block of the UNet (DDPM / improved DDPM), conditioned on the timestep.
//
//   B = batch, Ci/Co = in/out channels, N = H·W pixels, T = time-embedding width (4·base),
//   G = GroupNorm groups. Images are channel-major (C, B, N); see Conv2d.swift.
//
//   n1 = GroupNorm1(x); s1 = SiLU(n1)                                 (Ci, B, N)
//   h1 = Conv3×3_1(s1) + W_t·SiLU(temb)_b + b_t   (per channel)       (Co, B, N)
//   n2 = GroupNorm2(h1); s2 = SiLU(n2); d2 = Dropout(s2)             (Co, B, N)
//   out = skip(x) + Conv3×3_2(d2)   (Conv_2 starts at zero)           (Co, B, N)
// skip is the identity when Ci = Co, else a 1×1 convolution.
// The caller passes SiLU(temb) (B, T), shared by every block, and gets its gradient back.

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
         timeDim: Int, groups: Int, dropout: Float, height: Int, width: Int, kernelHeight: Int = 3) {
        (self.inChannels, self.outChannels, self.height, self.width) = (inChannels, outChannels, height, width)
        norm1 = GroupNorm(&layout, name + ".norm1", channels: inChannels, groups: groups)
        conv1 = Conv2d(&layout, name + ".conv1", in: inChannels, out: outChannels, kernel: 3, kernelHeight: kernelHeight)
        timeProj = Linear(&layout, name + ".time_proj", in: timeDim, out: outChannels)
        norm2 = GroupNorm(&layout, name + ".norm2", channels: outChannels, groups: groups)
        self.dropout = dropout > 0 ? Dropout(probability: dropout) : nil
        conv2 = Conv2d(&layout, name + ".conv2", in: outChannels, out: outChannels, kernel: 3, kernelHeight: kernelHeight,
                       zeroInit: true)
        skip = inChannels == outChannels ? nil
            : Conv2d(&layout, name + ".skip", in: inChannels, out: outChannels, kernel: 1)
    }

    var pixels: Int { height * width }

    /// The views of one forward pass, for `batch` images.
    struct Activations {
        let n1, s1: UnsafeMutablePointer<Float>  // (Ci, B, N)
        let mean1, rstd1: UnsafeMutablePointer<Float>  // (B, G)
        let timeBias: UnsafeMutablePointer<Float>  // (B, Co) timeProj(SiLU(temb))
        let h1, n2, s2: UnsafeMutablePointer<Float>  // (Co, B, N)
        let mean2, rstd2: UnsafeMutablePointer<Float>  // (B, G)
        let mask, d2: UnsafeMutablePointer<Float>  // (Co, B, N) dropout mask and output; 0 floats without dropout
        let out: UnsafeMutablePointer<Float>  // (Co, B, N)

        init(_ block: ResBlock, batch B: Int, _ arena: inout Arena) {
            let (Ci, Co, G, N) = (block.inChannels, block.outChannels, block.norm1.groups, block.pixels)
            (n1, s1) = (arena.take(Ci * B * N), arena.take(Ci * B * N))
            (mean1, rstd1) = (arena.take(B * G), arena.take(B * G))
            timeBias = arena.take(B * Co)
            (h1, n2, s2) = (arena.take(Co * B * N), arena.take(Co * B * N), arena.take(Co * B * N))
            (mean2, rstd2) = (arena.take(B * G), arena.take(B * G))
            let dropped = block.dropout == nil ? 0 : Co * B * N
            (mask, d2) = (arena.take(dropped), arena.take(dropped))
            out = arena.take(Co * B * N)
        }
    }

    /// Floats of `columns` scratch for a batch of B.
    func columnsCount(batch B: Int) -> Int {
        max(conv1.columnsCount(batch: B, height: height, width: width), conv2.columnsCount(batch: B, height: height, width: width))
    }

    /// a.out (Co, B, N) = block(x = inp (Ci, B, N), SiLU(temb) = temb (B, T)).
    /// Dropout draws from `rng` when `pass.training`.
    func forward(_ a: Activations, _ inp: UnsafePointer<Float>, temb: UnsafePointer<Float>, _ pass: Pass, rng: inout Philox) {
        let (B, N, Ci, Co, H, W) = (pass.batch, pixels, inChannels, outChannels, height, width)
        let (params, columns) = (pass.params, pass.scratch.columns)
        norm1.forward(a.n1, mean: a.mean1, rstd: a.rstd1, inp, params, batch: B, spatial: N)
        SiLU.forward(a.s1, a.n1, count: Ci * B * N)
        // h1 = conv1(s1) + timeProj(SiLU(temb)): the time term is written first, conv1 accumulates.
        timeProj.forward(a.timeBias, temb, params, batch: B)
        for c in 0..<Co {
            for b in 0..<B { (a.h1 + (c * B + b) * N).update(repeating: a.timeBias[b * Co + c], count: N) }
        }
        conv1.forward(a.h1, a.s1, params, columns: columns, batch: B, height: H, width: W, accumulate: true)
        norm2.forward(a.n2, mean: a.mean2, rstd: a.rstd2, a.h1, params, batch: B, spatial: N)
        SiLU.forward(a.s2, a.n2, count: Co * B * N)
        var d2 = UnsafePointer(a.s2)
        if let dropout, pass.training {
            dropout.forward(a.d2, mask: a.mask, a.s2, channels: Co, batch: B, pixels: N, rng: &rng)
            d2 = UnsafePointer(a.d2)
        }
        // out = skip(x) + conv2(d2)
        if let skip {
            skip.forward(a.out, inp, params, columns: columns, batch: B, height: H, width: W)
        } else {
            a.out.update(from: inp, count: Ci * B * N)
        }
        conv2.forward(a.out, d2, params, columns: columns, batch: B, height: H, width: W, accumulate: true)
    }

    /// Backward of the last training forward, for x = inp. Accumulates parameter gradients
    /// and dtemb (B, T) += ∂L/∂SiLU(temb); dinp (Ci, B, N) (+)= ∂L/∂x (overwritten unless
    /// `accumulate`). dinp must not alias dout. Uses scratch.a, scratch.b and scratch.rows.
    func backward(dinp: UnsafeMutablePointer<Float>, dtemb: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>,
                  inp: UnsafePointer<Float>, temb: UnsafePointer<Float>, _ a: Activations, _ pass: Pass, accumulate: Bool) {
        let (B, N, Ci, Co, H, W) = (pass.batch, pixels, inChannels, outChannels, height, width)
        let (params, grads, columns) = (pass.params, pass.grads, pass.scratch.columns)
        let d2 = UnsafePointer(dropout == nil ? a.s2 : a.d2)
        // out = skip(x) + conv2(d2)
        let dd2 = pass.scratch.a  // (Co, B, N)
        conv2.backward(dinp: dd2, grads, dout: dout, inp: d2, params, columns: columns, batch: B, height: H, width: W)
        if let skip {
            skip.backward(dinp: dinp, grads, dout: dout, inp: inp, params, columns: columns, batch: B, height: H, width: W,
                          accumulate: accumulate)
        } else if accumulate {
            for i in 0..<Ci * B * N { dinp[i] += dout[i] }
        } else {
            dinp.update(from: dout, count: Ci * B * N)
        }
        // d2 = Dropout(s2); s2 = SiLU(n2); n2 = GroupNorm2(h1)
        if let dropout { dropout.backward(dinp: dd2, dout: dd2, mask: a.mask, count: Co * B * N) }
        SiLU.backward(dinp: dd2, dout: dd2, inp: a.n2, count: Co * B * N)
        let dh1 = pass.scratch.b  // (Co, B, N)
        norm2.backward(dinp: dh1, grads, dout: dd2, inp: a.h1, mean: a.mean2, rstd: a.rstd2, params, batch: B, spatial: N,
                       accumulate: false)
        // h1 = conv1(s1) + timeProj(SiLU(temb))_b:  dtimeBias (B, Co) = Σ_N dh1
        let dtimeBias = pass.scratch.rows
        for c in 0..<Co {
            for b in 0..<B { dtimeBias[b * Co + c] = sumOf(dh1 + (c * B + b) * N, N) }
        }
        timeProj.backward(dinp: dtemb, grads, dout: dtimeBias, inp: temb, params, batch: B, accumulate: true)
        let ds1 = pass.scratch.a  // (Ci, B, N)
        conv1.backward(dinp: ds1, grads, dout: dh1, inp: a.s1, params, columns: columns, batch: B, height: H, width: W)
        // s1 = SiLU(n1); n1 = GroupNorm1(x)
        SiLU.backward(dinp: ds1, dout: ds1, inp: a.n1, count: Ci * B * N)
        norm1.backward(dinp: dinp, grads, dout: ds1, inp: inp, mean: a.mean1, rstd: a.rstd1, params, batch: B, spatial: N,
                       accumulate: true)
    }
}
