// Changing resolution between UNet levels.  B = batch, C = channels, H×W = input size.
// Images are channel-major (C, B, H, W); see Conv2d.swift.
//
//   Downsample: out (C, B, H/2, W/2) = Conv3×3, stride 2, padding 1 (x)      (DDPM)
//   Upsample:   up  (C, B, 2H, 2W)   = nearest-neighbour ×2 (x)
//               out (C, B, 2H, 2W)   = Conv3×3 (up)

struct Downsample: Sendable {
    let conv: Conv2d

    init(_ layout: inout ParameterLayout, _ name: String, channels: Int) {
        conv = Conv2d(&layout, name + ".conv", in: channels, out: channels, kernel: 3, stride: 2)
    }

    func columnsCount(batch: Int, height: Int, width: Int) -> Int {
        conv.columnsCount(batch: batch, height: height, width: width)
    }

    /// out (C, B, H/2, W/2) = strided conv of inp (C, B, H, W); H and W even.
    func forward(_ out: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>, _ params: UnsafePointer<Float>,
                 columns: UnsafeMutablePointer<Float>, batch B: Int, height H: Int, width W: Int) {
        conv.forward(out, inp, params, columns: columns, batch: B, height: H, width: W)
    }

    /// dinp (C, B, H, W) (+)= ∂L/∂inp, overwritten unless `accumulate`.
    func backward(dinp: UnsafeMutablePointer<Float>, _ grads: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>,
                  inp: UnsafePointer<Float>, _ params: UnsafePointer<Float>, columns: UnsafeMutablePointer<Float>,
                  batch B: Int, height H: Int, width W: Int, accumulate: Bool) {
        conv.backward(dinp: dinp, grads, dout: dout, inp: inp, params, columns: columns, batch: B, height: H, width: W,
                      accumulate: accumulate)
    }
}

struct Upsample: Sendable {
    let conv: Conv2d

    init(_ layout: inout ParameterLayout, _ name: String, channels: Int) {
        conv = Conv2d(&layout, name + ".conv", in: channels, out: channels, kernel: 3)
    }

    func columnsCount(batch: Int, height: Int, width: Int) -> Int {
        conv.columnsCount(batch: batch, height: 2 * height, width: 2 * width)
    }

    /// up (C, B, 2H, 2W) = nearest ×2 of inp (C, B, H, W), kept for the backward pass;
    /// out (C, B, 2H, 2W) = conv(up).
    func forward(_ out: UnsafeMutablePointer<Float>, up: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>,
                 _ params: UnsafePointer<Float>, columns: UnsafeMutablePointer<Float>, batch B: Int, height H: Int, width W: Int) {
        let W2 = 2 * W
        for plane in 0..<(conv.inChannels * B) {
            let src = inp + plane * H * W, dst = up + plane * 4 * H * W
            for y in 0..<H {
                let s = src + y * W, d = dst + 2 * y * W2
                for x in 0..<W { d[2 * x] = s[x]; d[2 * x + 1] = s[x] }
                (d + W2).update(from: d, count: W2)  // row 2y + 1 repeats row 2y
            }
        }
        conv.forward(out, up, params, columns: columns, batch: B, height: 2 * H, width: W2)
    }

    /// In the forward pass this was: up[2y + i, 2x + j] = inp[y, x], so dinp[y, x] (+)= Σ_ij dup[2y + i, 2x + j].
    /// `dup` (C, B, 2H, 2W) is scratch; dinp (C, B, H, W) is overwritten unless `accumulate`.
    func backward(dinp: UnsafeMutablePointer<Float>, _ grads: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>,
                  up: UnsafePointer<Float>, _ params: UnsafePointer<Float>, dup: UnsafeMutablePointer<Float>,
                  columns: UnsafeMutablePointer<Float>, batch B: Int, height H: Int, width W: Int, accumulate: Bool) {
        let W2 = 2 * W
        conv.backward(dinp: dup, grads, dout: dout, inp: up, params, columns: columns, batch: B, height: 2 * H, width: W2)
        for plane in 0..<(conv.inChannels * B) {
            let src = dup + plane * 4 * H * W, dst = dinp + plane * H * W
            for y in 0..<H {
                let r0 = src + 2 * y * W2, r1 = r0 + W2, d = dst + y * W
                for x in 0..<W {
                    let sum = r0[2 * x] + r0[2 * x + 1] + r1[2 * x] + r1[2 * x + 1]
                    if accumulate { d[x] += sum } else { d[x] = sum }
                }
            }
        }
    }
}
