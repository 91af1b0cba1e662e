// Changing resolution between UNet levels.  B = batch, C = channels, H×W = input size.
// Images are channel-major (C, B, H, W); see Conv2d.swift.
//
//   Downsample: out (C, B, H/2, W/2) = Conv3×3, stride 2, padding 1 (x)      (DDPM)
//     or, not `symmetric` (the original DDPM's code; diffusers' downsample_padding = 0): x is
//     padded by one zero row below and one zero column to the right, and the 3×3 stride-2
//     convolution has no padding: out[y, x] reads x[2y..2y+2, 2x..2x+2]. It runs as the padded
//     convolution on xp (C, B, H+1, W+1), x moved one row down and one column right (zeros
//     above and left): its output (C, B, H/2+1, W/2+1) without the first row and column is out.
//   Upsample:   up  (C, B, 2H, 2W)   = nearest-neighbour ×2 (x)
//               out (C, B, 2H, 2W)   = Conv3×3 (up)
//
// For 1-D signals (images of height 1, `signal`) only the width changes and the kernels are
// 1×3: Downsample (C, B, 1, W) → (C, B, 1, W/2), Upsample (C, B, 1, W) → (C, B, 1, 2W).

struct Downsample: Sendable {
    let conv: Conv2d
    let height: Int, width: Int  // H×W of the input; both even (W only for a signal)
    let signal: Bool  // 1-D: H = 1, only the width halves
    let symmetric: Bool  // padding 1 on every side; else one zero row and column at the bottom and right

    init(_ layout: inout ParameterLayout, _ name: String, channels: Int, height: Int, width: Int, signal: Bool = false,
         symmetric: Bool = true) {
        conv = Conv2d(&layout, name + ".conv", in: channels, out: channels, kernel: 3, kernelHeight: signal ? 1 : 3, stride: 2)
        (self.height, self.width, self.signal, self.symmetric) = (height, width, signal, symmetric)
    }

    /// Ho × Wo: H/2 × W/2, or 1 × W/2 for a signal.
    var outSize: (height: Int, width: Int) { (signal ? height : height / 2, width / 2) }
    /// The shift of x inside xp, and of out inside the convolution's output: 1 (0 vertically
    /// for a signal) when not symmetric, else 0.
    var shift: (y: Int, x: Int) { symmetric ? (0, 0) : (signal ? 0 : 1, 1) }
    /// What the convolution reads (H+1 × W+1 when not symmetric) and writes (Ho+1 × Wo+1).
    var convInSize: (height: Int, width: Int) { (height + shift.y, width + shift.x) }
    var convOutSize: (height: Int, width: Int) { (outSize.height + shift.y, outSize.width + shift.x) }

    struct Activations {
        let padded: UnsafeMutablePointer<Float>  // (C, B, H+1, W+1) xp; 0 floats when symmetric
        let full: UnsafeMutablePointer<Float>  // (C, B, Ho+1, Wo+1) conv(xp); 0 floats when symmetric
        let out: UnsafeMutablePointer<Float>  // (C, B, Ho, Wo)

        init(_ layer: Downsample, batch B: Int, _ arena: inout Arena) {
            let (C, i, o) = (layer.conv.outChannels, layer.convInSize, layer.convOutSize)
            padded = arena.take(layer.symmetric ? 0 : C * B * i.height * i.width)
            full = arena.take(layer.symmetric ? 0 : C * B * o.height * o.width)
            out = arena.take(C * B * layer.outSize.height * layer.outSize.width)
        }
    }

    /// Floats per image of the largest tensor (xp when not symmetric).
    var maxActivation: Int { conv.inChannels * convInSize.height * convInSize.width }

    func columnsCount(batch B: Int) -> Int { conv.columnsCount(batch: B, height: convInSize.height, width: convInSize.width) }

    /// a.out (C, B, H/2, W/2) = strided conv of inp (C, B, H, W).
    func forward(_ a: Activations, _ inp: UnsafePointer<Float>, _ pass: Pass) {
        let (B, params, columns) = (pass.batch, pass.params, pass.scratch.columns)
        guard !symmetric else {
            conv.forward(a.out, inp, params, columns: columns, batch: B, height: height, width: width)
            return
        }
        let (i, o, planes) = (convInSize, convOutSize, conv.inChannels * B)
        // xp[y + sy, x + sx] = inp[y, x], zero in the first row (sy = 1) and column
        place(a.padded, rows: i.height, cols: i.width, from: inp, rows: height, cols: width, planes: planes)
        conv.forward(a.full, a.padded, params, columns: columns, batch: B, height: i.height, width: i.width)
        // out[y, x] = full[y + sy, x + sx]
        crop(a.out, rows: outSize.height, cols: outSize.width, from: a.full, rows: o.height, cols: o.width, planes: planes,
             accumulate: false)
    }

    /// dinp (C, B, H, W) (+)= ∂L/∂inp, overwritten unless `accumulate`. Not symmetric, it uses
    /// scratch.a for ∂L/∂full and scratch.b for ∂L/∂xp.
    func backward(dinp: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, inp: UnsafePointer<Float>,
                  _ a: Activations, _ pass: Pass, accumulate: Bool) {
        let (B, columns) = (pass.batch, pass.scratch.columns)
        guard !symmetric else {
            conv.backward(dinp: dinp, pass.grads, dout: dout, inp: inp, pass.params, columns: columns,
                          batch: B, height: height, width: width, accumulate: accumulate)
            return
        }
        let (i, o, planes) = (convInSize, convOutSize, conv.inChannels * B)
        let (dfull, dpadded) = (pass.scratch.a, pass.scratch.b)  // (C, B, Ho+1, Wo+1), (C, B, H+1, W+1)
        // In the forward pass out was full cropped, so ∂L/∂full is dout placed back (zero in the cut row and column)
        place(dfull, rows: o.height, cols: o.width, from: dout, rows: outSize.height, cols: outSize.width, planes: planes)
        conv.backward(dinp: dpadded, pass.grads, dout: dfull, inp: a.padded, pass.params, columns: columns,
                      batch: B, height: i.height, width: i.width, accumulate: false)
        // and xp was inp placed, so ∂L/∂inp is ∂L/∂xp cropped
        crop(dinp, rows: height, cols: width, from: dpadded, rows: i.height, cols: i.width, planes: planes, accumulate: accumulate)
    }

    /// big (planes, R, Cc)[y + sy, x + sx] = small (planes, r, c)[y, x]; the first sy rows and sx columns zero.
    private func place(_ big: UnsafeMutablePointer<Float>, rows R: Int, cols Cc: Int, from small: UnsafePointer<Float>,
                       rows r: Int, cols c: Int, planes: Int) {
        let (sy, sx) = shift
        for p in 0..<planes {
            let dst = big + p * R * Cc, src = small + p * r * c
            dst.update(repeating: 0, count: sy * Cc)
            for y in 0..<r {
                let row = dst + (y + sy) * Cc
                row.update(repeating: 0, count: sx)
                (row + sx).update(from: src + y * c, count: c)
            }
        }
    }

    /// small (planes, r, c)[y, x] (+)= big (planes, R, Cc)[y + sy, x + sx].
    private func crop(_ small: UnsafeMutablePointer<Float>, rows r: Int, cols c: Int, from big: UnsafePointer<Float>,
                      rows R: Int, cols Cc: Int, planes: Int, accumulate: Bool) {
        let (sy, sx) = shift
        for p in 0..<planes {
            let dst = small + p * r * c, src = big + p * R * Cc
            for y in 0..<r {
                let row = src + (y + sy) * Cc + sx, out = dst + y * c
                if accumulate { for x in 0..<c { out[x] += row[x] } } else { out.update(from: row, count: c) }
            }
        }
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
        conv.forward(a.out, a.up, pass.params, columns: pass.scratch.columns, batch: B, height: r * H, width: W2)
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
