// Changing resolution between UNet levels.  B = batch, C = channels, H×W = input size.
// Images are channel-major (C, B, H, W); see Conv2d.swift.
//
//   Downsample: out (C, B, H/2, W/2) = Conv3×3, stride 2, padding 1 (x)      (DDPM)
//   Upsample:   up  (C, B, 2H, 2W)   = nearest-neighbour ×2 (x)
//               out (C, B, 2H, 2W)   = Conv3×3 (up)

struct Downsample: Sendable {
    let conv: Conv2d
    let height: Int, width: Int  // H×W of the input; both even

    init(_ layout: inout ParameterLayout, _ name: String, channels: Int, height: Int, width: Int) {
        conv = Conv2d(&layout, name + ".conv", in: channels, out: channels, kernel: 3, stride: 2)
        (self.height, self.width) = (height, width)
    }

    struct Activations {
        let out: UnsafeMutablePointer<Float>  // (C, B, H/2, W/2)

        init(_ layer: Downsample, batch B: Int, _ arena: inout Arena) {
            out = arena.take(layer.conv.outChannels * B * (layer.height / 2) * (layer.width / 2))
        }
    }

    func columnsCount(batch B: Int) -> Int { conv.columnsCount(batch: B, height: height, width: width) }

    /// a.out (C, B, H/2, W/2) = strided conv of inp (C, B, H, W).
    func forward(_ a: Activations, _ inp: UnsafePointer<Float>, _ pass: Pass) {
        conv.forward(a.out, inp, pass.params, columns: pass.scratch.columns, batch: pass.batch, height: height, width: width)
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

    init(_ layout: inout ParameterLayout, _ name: String, channels: Int, height: Int, width: Int) {
        conv = Conv2d(&layout, name + ".conv", in: channels, out: channels, kernel: 3)
        (self.height, self.width) = (height, width)
    }

    struct Activations {
        let up: UnsafeMutablePointer<Float>  // (C, B, 2H, 2W) nearest ×2 of the input, kept for the backward pass
        let out: UnsafeMutablePointer<Float>  // (C, B, 2H, 2W)

        init(_ layer: Upsample, batch B: Int, _ arena: inout Arena) {
            let count = layer.conv.outChannels * B * 4 * layer.height * layer.width
            (up, out) = (arena.take(count), arena.take(count))
        }
    }

    func columnsCount(batch B: Int) -> Int { conv.columnsCount(batch: B, height: 2 * height, width: 2 * width) }

    /// a.up (C, B, 2H, 2W) = nearest ×2 of inp (C, B, H, W); a.out (C, B, 2H, 2W) = conv(a.up).
    func forward(_ a: Activations, _ inp: UnsafePointer<Float>, _ pass: Pass) {
        let (B, H, W, W2) = (pass.batch, height, width, 2 * width)
        for plane in 0..<(conv.inChannels * B) {
            let src = inp + plane * H * W, dst = a.up + plane * 4 * H * W
            for y in 0..<H {
                let s = src + y * W, d = dst + 2 * y * W2
                for x in 0..<W { d[2 * x] = s[x]; d[2 * x + 1] = s[x] }
                (d + W2).update(from: d, count: W2)  // row 2y + 1 repeats row 2y
            }
        }
        conv.forward(a.out, a.up, pass.params, columns: pass.scratch.columns, batch: B, height: 2 * H, width: W2)
    }

    /// In the forward pass this was: up[2y + i, 2x + j] = inp[y, x], so dinp[y, x] = Σ_ij dup[2y + i, 2x + j].
    /// dinp (C, B, H, W) is overwritten; it may be the same buffer as dout. Uses scratch.a for dup.
    func backward(dinp: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, _ a: Activations, _ pass: Pass) {
        let (B, H, W, W2) = (pass.batch, height, width, 2 * width)
        let dup = pass.scratch.a  // (C, B, 2H, 2W)
        conv.backward(dinp: dup, pass.grads, dout: dout, inp: a.up, pass.params, columns: pass.scratch.columns, batch: B,
                      height: 2 * H, width: W2)
        for plane in 0..<(conv.inChannels * B) {
            let src = dup + plane * 4 * H * W, dst = dinp + plane * H * W
            for y in 0..<H {
                let r0 = src + 2 * y * W2, r1 = r0 + W2, d = dst + y * W
                for x in 0..<W { d[x] = r0[2 * x] + r0[2 * x + 1] + r1[2 * x] + r1[2 * x + 1] }
            }
        }
    }
}
