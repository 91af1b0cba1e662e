// Changing resolution between UNet levels.  B = batch, C = channels, H×W = input size.
// Images are channel-major (C, B, H, W); see Conv2d.swift.
//
//   Downsample: out (C, B, H/2, W/2) = Conv3×3, stride 2, padding 1 (x)      (DDPM)
//   Upsample:   up  (C, B, 2H, 2W)   = nearest-neighbour ×2 (x)
//               out (C, B, 2H, 2W)   = Conv3×3 (up)
//
// For 1-D signals (images of height 1, `signal`) only the width changes and the kernels are
// 1×3: Downsample (C, B, 1, W) → (C, B, 1, W/2), Upsample (C, B, 1, W) → (C, B, 1, 2W).

struct Downsample: Sendable {
    let conv: Conv2d
    let height: Int, width: Int  // H×W of the input; both even (W only for a signal)
    let signal: Bool  // 1-D: H = 1, only the width halves

    init(_ layout: inout ParameterLayout, _ name: String, channels: Int, height: Int, width: Int, signal: Bool = false) {
        conv = Conv2d(&layout, name + ".conv", in: channels, out: channels, kernel: 3, kernelHeight: signal ? 1 : 3, stride: 2)
        (self.height, self.width, self.signal) = (height, width, signal)
    }

    /// Ho × Wo: H/2 × W/2, or 1 × W/2 for a signal.
    var outSize: (height: Int, width: Int) { (signal ? height : height / 2, width / 2) }

    struct Activations {
        let out: UnsafeMutablePointer<Float>  // (C, B, Ho, Wo)

        init(_ layer: Downsample, batch B: Int, _ arena: inout Arena) {
            out = arena.take(layer.conv.outChannels * B * layer.outSize.height * layer.outSize.width)
        }
    }

    func columnsCount(batch B: Int) -> Int { conv.columnsCount(batch: B, height: height, width: width) }

    /// a.out (C, B, H/2, W/2) = strided conv of inp (C, B, H, W).
    func forward(_ a: Activations, _ inp: UnsafePointer<Float>, _ pass: Pass) {
        conv.forward(a.out, inp, pass.params, columns: pass.scratch.columns, batch: pass.batch, height: height, width: width,
                     prepared: pass.prepared)
    }

    /// dinp (C, B, H, W) (+)= ∂L/∂inp, overwritten unless `accumulate`.
    func backward(dinp: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, inp: UnsafePointer<Float>,
                  _ a: Activations, _ pass: Pass, accumulate: Bool) {
        conv.backward(dinp: dinp, pass.grads, dout: dout, inp: inp, pass.params, columns: pass.scratch.columns,
                      batch: pass.batch, height: height, width: width, accumulate: accumulate)
    }
}

struct Upsample: Sendable {
    let conv: Conv2d
    let height: Int, width: Int  // H×W of the input
    let signal: Bool  // 1-D: H = 1, only the width doubles

    init(_ layout: inout ParameterLayout, _ name: String, channels: Int, height: Int, width: Int, signal: Bool = false) {
        conv = Conv2d(&layout, name + ".conv", in: channels, out: channels, kernel: 3, kernelHeight: signal ? 1 : 3)
        (self.height, self.width, self.signal) = (height, width, signal)
    }

    /// r, the vertical factor: 2, or 1 for a signal. The output is rH × 2W.
    var rows: Int { signal ? 1 : 2 }
    var outSize: (height: Int, width: Int) { (rows * height, 2 * width) }

    struct Activations {
        let up: UnsafeMutablePointer<Float>  // (C, B, rH, 2W) nearest ×2 of the input, kept for the backward pass
        let out: UnsafeMutablePointer<Float>  // (C, B, rH, 2W)

        init(_ layer: Upsample, batch B: Int, _ arena: inout Arena) {
            let count = layer.conv.outChannels * B * 2 * layer.rows * layer.height * layer.width
            (up, out) = (arena.take(count), arena.take(count))
        }
    }

    func columnsCount(batch B: Int) -> Int { conv.columnsCount(batch: B, height: outSize.height, width: outSize.width) }

    /// a.up (C, B, rH, 2W) = nearest ×2 of inp (C, B, H, W); a.out (C, B, rH, 2W) = conv(a.up).
    func forward(_ a: Activations, _ inp: UnsafePointer<Float>, _ pass: Pass) {
        let (B, H, W, W2, r) = (pass.batch, height, width, 2 * width, rows)
        for plane in 0..<(conv.inChannels * B) {
            let src = inp + plane * H * W, dst = a.up + plane * r * H * W2
            for y in 0..<H {
                let s = src + y * W, d = dst + r * y * W2
                for x in 0..<W { d[2 * x] = s[x]; d[2 * x + 1] = s[x] }
                if r == 2 { (d + W2).update(from: d, count: W2) }  // row 2y + 1 repeats row 2y
            }
        }
        conv.forward(a.out, a.up, pass.params, columns: pass.scratch.columns, batch: B, height: r * H, width: W2,
                     prepared: pass.prepared)
    }

    /// In the forward pass this was: up[r·y + i, 2x + j] = inp[y, x], so dinp[y, x] = Σ_ij dup[r·y + i, 2x + j].
    /// dinp (C, B, H, W) is overwritten; it may be the same buffer as dout. Uses scratch.a for dup.
    func backward(dinp: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, _ a: Activations, _ pass: Pass) {
        let (B, H, W, W2, r) = (pass.batch, height, width, 2 * width, rows)
        let dup = pass.scratch.a  // (C, B, rH, 2W)
        conv.backward(dinp: dup, pass.grads, dout: dout, inp: a.up, pass.params, columns: pass.scratch.columns, batch: B,
                      height: r * H, width: W2)
        for plane in 0..<(conv.inChannels * B) {
            let src = dup + plane * r * H * W2, dst = dinp + plane * H * W
            for y in 0..<H {
                let r0 = src + r * y * W2, d = dst + y * W
                if r == 2 {
                    let r1 = r0 + W2
                    for x in 0..<W { d[x] = r0[2 * x] + r0[2 * x + 1] + r1[2 * x] + r1[2 * x + 1] }
                } else {
                    for x in 0..<W { d[x] = r0[2 * x] + r0[2 * x + 1] }
                }
            }
        }
    }
}
