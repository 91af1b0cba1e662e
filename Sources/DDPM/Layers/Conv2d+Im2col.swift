// Conv2d by im2col + GEMM: the general path (any odd kernel, stride 1 or 2), and the one
// Winograd does not cover. See Conv2d.swift for the layout and the dimension legend.
//
//   out[:, b0·P..<b1·P] (Co, nb·P) = W (Co, K) · columns (K, nb·P) + b,
//
// where row (ci, ky, kx) of columns = im2col(inp) is channel ci shifted by (ky − kh/2, kx − kw/2),
// zero outside the image. The batch is processed in such runs ("chunks") sized so that the
// unrolled columns (kh·kw times the input) stay in cache between im2col and the GEMM; the
// backward pass recomputes them chunk by chunk rather than keeping one copy per layer.
// 1×1 convolutions with stride 1 need no im2col: the input is its own column matrix, one
// GEMM for the batch.

import DDPMKernels

extension Conv2d {
    /// Images per im2col chunk: the convolution runs over chunks of the batch whose unrolled
    /// columns (about `columnsTarget` floats) stay in cache between im2col and the GEMM.
    func imagesPerChunk(batch B: Int, height H: Int, width W: Int) -> Int {
        let (Ho, Wo) = outputSize(height: H, width: W)
        return max(1, min(B, columnsTarget / (inChannels * taps * Ho * Wo)))
    }

    /// Floats of scratch the im2col path needs: K·(images per chunk)·Ho·Wo, plus kh·kw·R·H·W for
    /// the padding masks of a stride-1 conv (R = maskPlanes); 0 for a pointwise convolution.
    func im2colScratchCount(batch B: Int, height H: Int, width W: Int) -> Int {
        if isPointwise { return 0 }
        let (Ho, Wo) = outputSize(height: H, width: W)
        let masks = stride == 1 ? taps * Self.maskPlanes(pixels: H * W) * H * W : 0  // tap masks after the columns (stride 1)
        return inChannels * taps * imagesPerChunk(batch: B, height: H, width: W) * Ho * Wo + masks
    }

    /// Planes the tap masks repeat over: enough for runs of at least 64 floats, so that small
    /// images (2×2, 4×4) are masked in long vectorised runs rather than plane by plane.
    static func maskPlanes(pixels HW: Int) -> Int { (64 + HW - 1) / HW }

    /// Conv2d.forward by im2col + GEMM. `columns` is scratch of `im2colScratchCount` floats
    /// (unused by a pointwise convolution). `packedWeights`: W packed as the GEMM's A beforehand
    /// (Conv2d+Prepared.swift), or nil to pack it in each GEMM.
    func forwardIm2col(_ out: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>, _ params: UnsafePointer<Float>,
                       columns: UnsafeMutablePointer<Float>, batch B: Int, height H: Int, width W: Int,
                       accumulate: Bool, packedWeights: UnsafePointer<Float>? = nil) {
        let (Ho, Wo) = outputSize(height: H, width: W)
        let (P, Co, K) = (Ho * Wo, outChannels, inChannels * taps)
        let M = B * P
        let b = params + bias
        for o in 0..<Co {
            let row = out + o * M, bo = b[o]
            if accumulate { for i in 0..<M { row[i] += bo } } else { row.update(repeating: bo, count: M) }
        }
        if isPointwise {
            gemm(out, params + weight, inp, m: Co, n: M, k: K, beta: 1, packedA: packedWeights)
            return
        }
        // out[:, b0..<b1] (Co, nb·P; row stride M) += W (Co, K) · columns (K, nb·P)
        let chunk = imagesPerChunk(batch: B, height: H, width: W)
        for b0 in Swift.stride(from: 0, to: B, by: chunk) {
            let nb = min(chunk, B - b0)
            im2col(columns, inp, images: b0..<b0 + nb, batch: B, height: H, width: W)
            stridedGemm(out + b0 * P, params + weight, columns, m: Co, n: nb * P, k: K, lda: K, ldb: nb * P, ldc: M, beta: 1,
                        packedA: packedWeights)
        }
    }

    /// In the forward pass this was: out = W·columns + b, columns = im2col(inp), so
    /// dW (Co, K) += dout·columnsᵀ,  db (Co,) += Σ_M dout,  dcolumns (K, M) = Wᵀ·dout,
    /// dinp (Ci, B, H, W) (+)= col2im(dcolumns)   (all chunk by chunk, as in the forward pass).
    func backwardIm2col(dinp: UnsafeMutablePointer<Float>?, _ grads: UnsafeMutablePointer<Float>,
                        dout: UnsafePointer<Float>, inp: UnsafePointer<Float>, _ params: UnsafePointer<Float>,
                        columns: UnsafeMutablePointer<Float>, batch B: Int, height H: Int, width W: Int,
                        accumulate: Bool) {
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
            // dy·W + dx, with the entries whose source pixel is outside the image set to 0
            // (Sources/DDPMKernels/im2col.inc).
            let (HW, total) = (H * W, nb * H * W)
            let (keep, run) = tapMasks(after: columns, batch: B, height: H, width: W)
            ddpm_im2col_s1(columns, inp + images.lowerBound * HW, Int64(inChannels), Int64(B * HW), Int64(total),
                           Int64(kh), Int64(kw), Int64(py), Int64(px), Int64(W), keep, Int64(run))
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
            let (keep, run) = tapMasks(after: columns, batch: B, height: H, width: W)
            ddpm_col2im_s1(dinp + images.lowerBound * HW, columns, Int64(inChannels), Int64(B * HW), Int64(total),
                           Int64(kh), Int64(kw), Int64(py), Int64(px), Int64(W), keep, Int64(run), overwrite ? 1 : 0)
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

    /// keep[tap][r·H·W + y·W + x] (kh·kw, R·H·W, R = maskPlanes) has all bits set when pixel
    /// (y, x) shifted by tap (ky − py, kx − px) is still inside the image, else 0 — a bit mask, so
    /// that `value & keep` selects without a branch and the loops vectorise; it repeats over R
    /// planes. Stored in the scratch right after the columns of a full chunk and rewritten by
    /// every call (kh·kw·R·H·W stores, no allocation). Returns the masks and their run, R·H·W.
    private func tapMasks(after columns: UnsafeMutablePointer<Float>, batch B: Int, height H: Int,
                          width W: Int) -> (UnsafePointer<Float>, Int) {
        let m = columns + inChannels * taps * imagesPerChunk(batch: B, height: H, width: W) * H * W
        let run = Self.maskPlanes(pixels: H * W) * H * W
        for tap in 0..<taps {
            let (dy, dx) = (tap / kernelWidth - padY, tap % kernelWidth - padX)
            let plane = m + tap * run
            for y in 0..<H {
                for x in 0..<W {
                    let inside = y + dy >= 0 && y + dy < H && x + dx >= 0 && x + dx < W
                    plane[y * W + x] = Float(bitPattern: inside ? ~0 : 0)
                }
            }
            for r in 1..<run / (H * W) { (plane + r * H * W).update(from: plane, count: H * W) }  // the other planes: copies
        }
        return (UnsafePointer(m), run)
    }
}
