// 2-D convolution with zero padding kh/2 × kw/2 and stride 1 or 2, by im2col + GEMM.
//
//   B = batch, Ci = in channels, Co = out channels, kh×kw = kernel size (odd; k×k, or 1×k
//   for 1-D signals stored as height-1 images), s = stride,
//   H×W = input size, Ho×Wo = output size (H×W for s = 1, ⌈H/2⌉×⌈W/2⌉ for s = 2; a height
//   of 1 stays 1 under a 1×k kernel), P = Ho·Wo, K = Ci·kh·kw (one column of the unrolled
//   input), M = B·P.
//
// Layout. Images inside the UNet are stored channel-major, (C, B, H, W): channel c of
// image b is the plane at offset (c·B + b)·H·W. For B = 1 this is NCHW. With it the
// convolution of a run of images b0..<b1 is one GEMM into a column block of the output:
//
//   out[:, b0·P..<b1·P] (Co, nb·P) = W (Co, K) · columns (K, nb·P) + b,
//
// where row (ci, ky, kx) of columns = im2col(inp) is channel ci shifted by (ky − kh/2, kx − kw/2),
// zero outside the image. The batch is processed in such runs ("chunks") sized so that the
// unrolled columns (kh·kw times the input) stay in cache between im2col and the GEMM; the
// backward pass recomputes them chunk by chunk rather than keeping one copy per layer.
// `columns` is caller-provided scratch of `columnsCount(...)` floats. 1×1 convolutions with
// stride 1 need no im2col: the input is its own column matrix, one GEMM for the batch.
import CBLAS

public struct Conv2d: Sendable {
    public let inChannels: Int, outChannels: Int, stride: Int
    /// kh × kw, both odd.
    public let kernelHeight: Int, kernelWidth: Int
    let weight: Int  // offset of W, (Co, Ci, kh, kw)
    let bias: Int  // offset of b, (Co,)
    /// Floats of unrolled columns per chunk of images. The default, 2^17 (512 KiB), was among the
    /// fastest of 2^15...2^21 for a UNet on 8×8 images at batch 128 (the whole batch in one
    /// chunk was about 20% slower: its columns no longer stay in cache).
    let columnsTarget: Int

    /// Declares W and b, initialised U(±1/√(Ci·kh·kw)) (PyTorch's default), or zero when
    /// `zeroInit` (the last convolution of a residual branch, as in DDPM). The kernel is
    /// kernel × kernel, or kernelHeight × kernel when kernelHeight is given (1 for signals).
    public init(_ layout: inout ParameterLayout, _ name: String, in inChannels: Int, out outChannels: Int,
                kernel: Int, kernelHeight: Int? = nil, stride: Int = 1, zeroInit: Bool = false,
                columnsTarget: Int = 1 << 17) {
        (self.inChannels, self.outChannels, self.stride) = (inChannels, outChannels, stride)
        (self.kernelHeight, self.kernelWidth) = (kernelHeight ?? kernel, kernel)
        self.columnsTarget = columnsTarget
        let bound = 1 / Float(inChannels * self.kernelHeight * kernel).squareRoot()
        let initializer: Initializer = zeroInit ? .zeros : .uniform(bound: bound)
        weight = layout.add(name + ".weight", [outChannels, inChannels, self.kernelHeight, kernel], initializer)
        bias = layout.add(name + ".bias", [outChannels], initializer)
    }

    /// Padding above/below (kh/2) and left/right (kw/2).
    var padY: Int { kernelHeight / 2 }
    var padX: Int { kernelWidth / 2 }
    /// Taps per input channel, kh·kw.
    var taps: Int { kernelHeight * kernelWidth }
    /// 1×1 with stride 1: the input is its own column matrix.
    var isPointwise: Bool { taps == 1 && stride == 1 }

    /// Ho × Wo for an H × W input.
    func outputSize(height: Int, width: Int) -> (height: Int, width: Int) {
        ((height + 2 * padY - kernelHeight) / stride + 1, (width + 2 * padX - kernelWidth) / stride + 1)
    }

    /// Images per im2col chunk: the convolution runs over chunks of the batch whose unrolled
    /// columns (about `columnsTarget` floats) stay in cache between im2col and the GEMM.
    func imagesPerChunk(batch B: Int, height H: Int, width W: Int) -> Int {
        let (Ho, Wo) = outputSize(height: H, width: W)
        return max(1, min(B, columnsTarget / (inChannels * taps * Ho * Wo)))
    }

    /// Floats of `columns` scratch that forward and backward need: K·(images per chunk)·Ho·Wo,
    /// plus kh·kw·H·W for the padding masks of a stride-1 conv; 0 for a pointwise convolution.
    func columnsCount(batch B: Int, height H: Int, width W: Int) -> Int {
        if isPointwise { return 0 }
        let (Ho, Wo) = outputSize(height: H, width: W)
        let masks = stride == 1 ? taps * H * W : 0  // tap masks after the columns (stride 1)
        return inChannels * taps * imagesPerChunk(batch: B, height: H, width: W) * Ho * Wo + masks
    }

    /// out (Co, B, Ho, Wo) = conv(inp (Ci, B, H, W)) + b, or out += … when `accumulate`.
    /// `columns` is scratch of `columnsCount` floats (unused by a pointwise convolution).
    func forward(_ out: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>, _ params: UnsafePointer<Float>,
                 columns: UnsafeMutablePointer<Float>, batch B: Int, height H: Int, width W: Int,
                 accumulate: Bool = false) {
        let (Ho, Wo) = outputSize(height: H, width: W)
        let (P, Co, K) = (Ho * Wo, outChannels, inChannels * taps)
        let M = B * P
        let b = params + bias
        for o in 0..<Co {
            let row = out + o * M, bo = b[o]
            if accumulate { for i in 0..<M { row[i] += bo } } else { row.update(repeating: bo, count: M) }
        }
        if isPointwise {
            gemm(out, params + weight, inp, m: Co, n: M, k: K, beta: 1)
            return
        }
        // out[:, b0..<b1] (Co, nb·P; row stride M) += W (Co, K) · columns (K, nb·P)
        let chunk = imagesPerChunk(batch: B, height: H, width: W)
        for b0 in Swift.stride(from: 0, to: B, by: chunk) {
            let nb = min(chunk, B - b0)
            im2col(columns, inp, images: b0..<b0 + nb, batch: B, height: H, width: W)
            stridedGemm(out + b0 * P, params + weight, columns, m: Co, n: nb * P, k: K, lda: K, ldb: nb * P, ldc: M, beta: 1)
        }
    }

    /// In the forward pass this was: out = W·columns + b, columns = im2col(inp), so
    /// dW (Co, K) += dout·columnsᵀ,  db (Co,) += Σ_M dout,  dcolumns (K, M) = Wᵀ·dout,
    /// dinp (Ci, B, H, W) (+)= col2im(dcolumns)   (all chunk by chunk, as in the forward pass).
    /// `dinp` may be nil when the input needs no gradient; it is overwritten unless `accumulate`.
    /// `dinp` must not alias `dout` or `inp`.
    func backward(dinp: UnsafeMutablePointer<Float>?, _ grads: UnsafeMutablePointer<Float>,
                  dout: UnsafePointer<Float>, inp: UnsafePointer<Float>, _ params: UnsafePointer<Float>,
                  columns: UnsafeMutablePointer<Float>, batch B: Int, height H: Int, width W: Int,
                  accumulate: Bool = false) {
        let (Ho, Wo) = outputSize(height: H, width: W)
        let (P, Co, K) = (Ho * Wo, outChannels, inChannels * taps)
        let M = B * P
        let (db, dW, w) = (grads + bias, grads + weight, params + weight)
        for o in 0..<Co { db[o] += sumOf(dout + o * M, M) }
        if isPointwise {
            gemm(dW, dout, inp, m: Co, n: K, k: M, transB: true, beta: 1)
            if let dinp { gemm(dinp, w, dout, m: K, n: M, k: Co, transA: true, beta: accumulate ? 1 : 0) }
            return
        }
        // A stride-1 col2im can overwrite dinp (its centre tap reaches every pixel); stride 2 adds.
        if let dinp, !accumulate, stride != 1 { dinp.update(repeating: 0, count: inChannels * B * H * W) }
        let chunk = imagesPerChunk(batch: B, height: H, width: W)
        for b0 in Swift.stride(from: 0, to: B, by: chunk) {
            let nb = min(chunk, B - b0)
            let doutChunk = dout + b0 * P  // (Co, nb·P), row stride M
            im2col(columns, inp, images: b0..<b0 + nb, batch: B, height: H, width: W)
            stridedGemm(dW, doutChunk, columns, m: Co, n: K, k: nb * P, lda: M, ldb: nb * P, ldc: K, transB: true, beta: 1)
            guard let dinp else { continue }
            // dcolumns (K, nb·P) = Wᵀ·dout, over the columns just used
            stridedGemm(columns, w, doutChunk, m: K, n: nb * P, k: Co, lda: K, ldb: M, ldc: nb * P, transA: true)
            col2im(dinp, columns, images: b0..<b0 + nb, batch: B, height: H, width: W, overwrite: !accumulate && stride == 1)
        }
    }

    // MARK: - im2col / col2im

    /// columns (K, nb, Ho, Wo) for the images b0..<b1 (nb = b1 − b0) of inp (Ci, B, H, W):
    /// row (ci, ky, kx) at (b, oy, ox) = inp[ci, b0 + b, oy·s + ky − py, ox·s + kx − px], 0 outside.
    func im2col(_ columns: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>, images: Range<Int>,
                batch B: Int, height H: Int, width W: Int) {
        let (kh, kw, py, px, nb) = (kernelHeight, kernelWidth, padY, padX, images.count)
        if stride == 1 {
            // Row (ci, ky, kx) is channel ci's run of nb·H·W floats read at the flat offset
            // dy·W + dx, with the entries whose source pixel is outside the image set to 0.
            let (HW, total) = (H * W, nb * H * W)
            let keep = tapMasks(after: columns, batch: B, height: H, width: W)
            for ci in 0..<inChannels {
                let src = inp + (ci * B + images.lowerBound) * HW
                for tap in 0..<taps {
                    let offset = (tap / kw - py) * W + (tap % kw - px)
                    let dst = columns + (ci * taps + tap) * total, mask = keep + tap * HW
                    let lo = min(max(0, -offset), total), hi = max(min(total, total - offset), lo)
                    for plane in 0..<nb {
                        let (d, s) = (dst + plane * HW, src + plane * HW + offset)
                        let jlo = min(max(lo - plane * HW, 0), HW), jhi = max(min(hi - plane * HW, HW), jlo)
                        for j in 0..<jlo { d[j] = 0 }
                        for j in jlo..<jhi { d[j] = Float(bitPattern: s[j].bitPattern & mask[j].bitPattern) }  // s or 0
                        for j in jhi..<HW { d[j] = 0 }
                    }
                }
            }
            return
        }
        let (Ho, Wo) = outputSize(height: H, width: W)
        let s = stride
        for ci in 0..<inChannels {
            for ky in 0..<kh {
                for kx in 0..<kw {
                    let row = columns + ((ci * kh + ky) * kw + kx) * nb * Ho * Wo
                    for (j, b) in images.enumerated() {
                        let src = inp + (ci * B + b) * H * W, dst = row + j * Ho * Wo
                        for oy in 0..<Ho {
                            let iy = oy * s + ky - py, d = dst + oy * Wo
                            guard iy >= 0 && iy < H else { for ox in 0..<Wo { d[ox] = 0 }; continue }
                            let srcRow = src + iy * W
                            for ox in 0..<Wo {
                                let ix = ox * s + kx - px
                                d[ox] = ix >= 0 && ix < W ? srcRow[ix] : 0
                            }
                        }
                    }
                }
            }
        }
    }

    /// In im2col this was: columns[ci, ky, kx][b, oy, ox] = inp[ci, b0 + b, oy·s + ky − py, ox·s + kx − px],
    /// so dinp[ci, b0 + b, iy, ix] += dcolumns[…] for every in-image source pixel.
    /// With `overwrite` (stride 1 only) the images' dinp is assigned rather than added to:
    /// the centre tap, which reaches every pixel, goes first and assigns.
    func col2im(_ dinp: UnsafeMutablePointer<Float>, _ columns: UnsafeMutablePointer<Float>, images: Range<Int>,
                batch B: Int, height H: Int, width W: Int, overwrite: Bool = false) {
        let (kh, kw, py, px, nb) = (kernelHeight, kernelWidth, padY, padX, images.count)
        if stride == 1 {
            let (HW, total) = (H * W, nb * H * W)
            let centre = py * kw + px
            let keep = tapMasks(after: columns, batch: B, height: H, width: W)
            for ci in 0..<inChannels {
                let dst = dinp + (ci * B + images.lowerBound) * HW
                let first = columns + (ci * taps + centre) * total
                if overwrite { dst.update(from: first, count: total) } else { for i in 0..<total { dst[i] += first[i] } }
                for tap in 0..<taps where tap != centre {
                    let offset = (tap / kw - py) * W + (tap % kw - px)
                    let src = columns + (ci * taps + tap) * total, mask = keep + tap * HW
                    let lo = min(max(0, -offset), total), hi = max(min(total, total - offset), lo)
                    for plane in 0..<nb {
                        let (d, s) = (dst + plane * HW + offset, src + plane * HW)
                        let jlo = min(max(lo - plane * HW, 0), HW), jhi = max(min(hi - plane * HW, HW), jlo)
                        for j in jlo..<jhi { d[j] += Float(bitPattern: s[j].bitPattern & mask[j].bitPattern) }
                    }
                }
            }
            return
        }
        let (Ho, Wo) = outputSize(height: H, width: W)
        let s = stride
        for ci in 0..<inChannels {
            for ky in 0..<kh {
                for kx in 0..<kw {
                    let row = columns + ((ci * kh + ky) * kw + kx) * nb * Ho * Wo
                    for (j, b) in images.enumerated() {
                        let dst = dinp + (ci * B + b) * H * W, src = row + j * Ho * Wo
                        for oy in 0..<Ho {
                            let iy = oy * s + ky - py
                            guard iy >= 0 && iy < H else { continue }
                            let dstRow = dst + iy * W, srcRow = src + oy * Wo
                            for ox in 0..<Wo {
                                let ix = ox * s + kx - px
                                if ix >= 0 && ix < W { dstRow[ix] += srcRow[ox] }
                            }
                        }
                    }
                }
            }
        }
    }

    /// keep (kh·kw, H·W), stored in the scratch right after the columns of a full chunk:
    /// keep[tap][y·W + x] has all bits set when pixel (y, x) shifted by tap (ky − py, kx − px) is
    /// still inside the image, else 0 — a bit mask, so that `value & keep` selects without a
    /// branch and the loops vectorise. Rewritten by every call (kh·kw·H·W stores, no allocation).
    private func tapMasks(after columns: UnsafeMutablePointer<Float>, batch B: Int, height H: Int, width W: Int) -> UnsafePointer<Float> {
        let m = columns + inChannels * taps * imagesPerChunk(batch: B, height: H, width: W) * H * W
        for tap in 0..<taps {
            let (dy, dx) = (tap / kernelWidth - padY, tap % kernelWidth - padX)
            for y in 0..<H {
                for x in 0..<W {
                    let inside = y + dy >= 0 && y + dy < H && x + dx >= 0 && x + dx < W
                    m[(tap * H + y) * W + x] = Float(bitPattern: inside ? ~0 : 0)
                }
            }
        }
        return UnsafePointer(m)
    }
}
