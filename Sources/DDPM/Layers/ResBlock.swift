// The residual block of the UNet (DDPM / improved DDPM), conditioned on the timestep.
//
//   B = batch, Ci/Co = in/out channels, N = H·W pixels, T = time-embedding width (4·base).
//   Images are channel-major (C, B, N); see Conv2d.swift.
//
//   n1 = GroupNorm1(x); s1 = SiLU(n1)                                 (Ci, B, N)
//   h1 = Conv3×3_1(s1) + W_t·SiLU(temb)_b + b_t   (per channel)       (Co, B, N)
//   n2 = GroupNorm2(h1); s2 = SiLU(n2); d2 = Dropout(s2)             (Co, B, N)
//   out = skip(x) + Conv3×3_2(d2)   (Conv_2 starts at zero)           (Co, B, N)
// skip is the identity when Ci = Co, else a 1×1 convolution.
// The caller passes SiLU(temb) (B, T), shared by every block, and gets its gradient back.

struct ResBlock: Sendable {
    let inChannels: Int, outChannels: Int
    let norm1: GroupNorm
    let conv1: Conv2d  // 3×3, Ci → Co
    let timeProj: Linear  // T → Co
    let norm2: GroupNorm
    let dropout: Dropout?
    let conv2: Conv2d  // 3×3, Co → Co, zero-initialised
    let skip: Conv2d?  // 1×1, Ci → Co, when Ci ≠ Co

    init(_ layout: inout ParameterLayout, _ name: String, in inChannels: Int, out outChannels: Int,
         timeDim: Int, groups: Int, dropout: Float) {
        (self.inChannels, self.outChannels) = (inChannels, outChannels)
        norm1 = GroupNorm(&layout, name + ".norm1", channels: inChannels, groups: groups)
        conv1 = Conv2d(&layout, name + ".conv1", in: inChannels, out: outChannels, kernel: 3)
        timeProj = Linear(&layout, name + ".time_proj", in: timeDim, out: outChannels)
        norm2 = GroupNorm(&layout, name + ".norm2", channels: outChannels, groups: groups)
        self.dropout = dropout > 0 ? Dropout(probability: dropout) : nil
        conv2 = Conv2d(&layout, name + ".conv2", in: outChannels, out: outChannels, kernel: 3, zeroInit: true)
        skip = inChannels == outChannels ? nil
            : Conv2d(&layout, name + ".skip", in: inChannels, out: outChannels, kernel: 1)
    }

    /// The buffers of one forward pass, sized for `batch` images of N pixels.
    final class Activations {
        let n1, s1: Buffer<Float>  // (Ci, B, N)
        let mean1, rstd1: Buffer<Float>  // (B, G)
        let timeBias: Buffer<Float>  // (B, Co) timeProj(SiLU(temb))
        let h1, n2, s2: Buffer<Float>  // (Co, B, N)
        let mean2, rstd2: Buffer<Float>  // (B, G)
        let mask, d2: Buffer<Float>  // (Co, B, N) dropout mask and output; empty without dropout
        let out: Buffer<Float>  // (Co, B, N)

        init(_ block: ResBlock, batch B: Int, spatial N: Int) {
            let (Ci, Co, G) = (block.inChannels, block.outChannels, block.norm1.groups)
            n1 = Buffer(count: Ci * B * N); s1 = Buffer(count: Ci * B * N)
            mean1 = Buffer(count: B * G); rstd1 = Buffer(count: B * G)
            timeBias = Buffer(count: B * Co)
            h1 = Buffer(count: Co * B * N); n2 = Buffer(count: Co * B * N); s2 = Buffer(count: Co * B * N)
            mean2 = Buffer(count: B * G); rstd2 = Buffer(count: B * G)
            let dropped = block.dropout == nil ? 0 : Co * B * N
            mask = Buffer(count: dropped); d2 = Buffer(count: dropped)
            out = Buffer(count: Co * B * N)
        }

        var floatCount: Int { [n1, s1, mean1, rstd1, timeBias, h1, n2, s2, mean2, rstd2, mask, d2, out].reduce(0) { $0 + $1.count } }
    }

    /// Floats of conv `columns` scratch for N = H·W pixels.
    func columnsCount(batch B: Int, height H: Int, width W: Int) -> Int {
        max(conv1.columnsCount(batch: B, height: H, width: W), conv2.columnsCount(batch: B, height: H, width: W))
    }

    /// a.out (Co, B, N) = block(x = inp (Ci, B, N), SiLU(temb) = tembAct (B, T)).
    /// Dropout draws from `rng` when `training`.
    func forward(_ a: Activations, _ inp: UnsafePointer<Float>, tembAct: UnsafePointer<Float>,
                 _ params: UnsafePointer<Float>, columns: UnsafeMutablePointer<Float>,
                 batch B: Int, height H: Int, width W: Int, training: Bool, rng: inout Philox) {
        let (N, Ci, Co) = (H * W, inChannels, outChannels)
        norm1.forward(a.n1.pointer, mean: a.mean1.pointer, rstd: a.rstd1.pointer, inp, params, batch: B, spatial: N)
        SiLU.forward(a.s1.pointer, a.n1.pointer, count: Ci * B * N)
        // h1 = conv1(s1) + timeProj(SiLU(temb)): the time term is written first, conv1 accumulates.
        timeProj.forward(a.timeBias.pointer, tembAct, params, batch: B)
        for c in 0..<Co {
            for b in 0..<B { (a.h1.pointer + (c * B + b) * N).update(repeating: a.timeBias.pointer[b * Co + c], count: N) }
        }
        conv1.forward(a.h1.pointer, a.s1.pointer, params, columns: columns, batch: B, height: H, width: W, accumulate: true)
        norm2.forward(a.n2.pointer, mean: a.mean2.pointer, rstd: a.rstd2.pointer, a.h1.pointer, params, batch: B, spatial: N)
        SiLU.forward(a.s2.pointer, a.n2.pointer, count: Co * B * N)
        var d2 = UnsafePointer(a.s2.pointer)
        if let dropout, training {
            dropout.forward(a.d2.pointer, mask: a.mask.pointer, a.s2.pointer, count: Co * B * N, rng: &rng)
            d2 = UnsafePointer(a.d2.pointer)
        }
        // out = skip(x) + conv2(d2)
        if let skip {
            skip.forward(a.out.pointer, inp, params, columns: columns, batch: B, height: H, width: W)
        } else {
            a.out.pointer.update(from: inp, count: Ci * B * N)
        }
        conv2.forward(a.out.pointer, d2, params, columns: columns, batch: B, height: H, width: W, accumulate: true)
    }

    /// Backward of the last `training` forward, for x = inp. Accumulates parameter gradients,
    /// dtembAct (B, T) += ∂L/∂SiLU(temb), and dinp (Ci, B, N) (+)= ∂L/∂x (overwritten unless
    /// `accumulate`). dinp must not alias dout. scratch1, scratch2: max(Ci, Co)·B·N floats each;
    /// dtime: B·Co floats.
    func backward(dinp: UnsafeMutablePointer<Float>, dtembAct: UnsafeMutablePointer<Float>,
                  _ grads: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, inp: UnsafePointer<Float>,
                  tembAct: UnsafePointer<Float>, _ a: Activations, _ params: UnsafePointer<Float>,
                  scratch1: UnsafeMutablePointer<Float>, scratch2: UnsafeMutablePointer<Float>,
                  dtime: UnsafeMutablePointer<Float>, columns: UnsafeMutablePointer<Float>,
                  batch B: Int, height H: Int, width W: Int, accumulate: Bool) {
        let (N, Ci, Co) = (H * W, inChannels, outChannels)
        let d2: UnsafePointer<Float> = dropout == nil ? UnsafePointer(a.s2.pointer) : UnsafePointer(a.d2.pointer)
        // out = skip(x) + conv2(d2)
        let dd2 = scratch1  // (Co, B, N)
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
        if let dropout { dropout.backward(dinp: dd2, dout: dd2, mask: a.mask.pointer, count: Co * B * N) }
        SiLU.backward(dinp: dd2, dout: dd2, inp: a.n2.pointer, count: Co * B * N)
        let dh1 = scratch2  // (Co, B, N)
        norm2.backward(dinp: dh1, grads, dout: dd2, inp: a.h1.pointer, mean: a.mean2.pointer, rstd: a.rstd2.pointer,
                       params, batch: B, spatial: N, accumulate: false)
        // h1 = conv1(s1) + timeProj(SiLU(temb))_b:  dtime (B, Co) = Σ_N dh1
        for c in 0..<Co {
            for b in 0..<B { dtime[b * Co + c] = sumOf(dh1 + (c * B + b) * N, N) }
        }
        timeProj.backward(dinp: dtembAct, grads, dout: dtime, inp: tembAct, params, batch: B, accumulate: true)
        let ds1 = scratch1  // (Ci, B, N)
        conv1.backward(dinp: ds1, grads, dout: dh1, inp: a.s1.pointer, params, columns: columns, batch: B, height: H, width: W)
        // s1 = SiLU(n1); n1 = GroupNorm1(x)
        SiLU.backward(dinp: ds1, dout: ds1, inp: a.n1.pointer, count: Ci * B * N)
        norm1.backward(dinp: dinp, grads, dout: ds1, inp: inp, mean: a.mean1.pointer, rstd: a.rstd1.pointer, params,
                       batch: B, spatial: N, accumulate: true)
    }
}
