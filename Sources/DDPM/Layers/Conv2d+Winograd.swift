// Conv2d by Winograd's minimal filtering, F(m×m, 3×3) with m = 4 (or 2): 3×3 kernels, stride 1,
// padding 1. See Conv2d.swift for the layout and the dimension legend.
//
//   α = m + 2, ξ = one of the α² frequencies, a tile = an m × m block of output pixels
//   (⌈H/m⌉ × ⌈W/m⌉ tiles an image, B·⌈H/m⌉ rows of tiles the batch), T = tiles of a block.
//
// Each output tile is Aᵀ [Σ_ci U[co, ci] ⊙ V[ci]] A, with the transformed kernel
// U = G w Gᵀ (α × α) and the transformed input patch V = Bᵀ d B (the α × α pixels around the
// tile); so per frequency ξ the sum over ci is one GEMM over the tiles of a block:
//
//   forward:          M[ξ] (T, Co) = V[ξ] (T, Ci) · U[ξ] (Ci, Co);   out tile = Aᵀ M A + b
//   backward-data:    the same convolution of dout with the kernel rotated by 180° and Ci, Co
//                     swapped: U'[ξ] (Co, Ci) from w[co, ci, 2 − ky, 2 − kx]
//   backward-weights: the exact gradient of the forward above:
//                     dU[ξ] (Co, Ci) = Σ_blocks Z[ξ]ᵀ (Co, T) · V[ξ] (T, Ci),  Z = A dout Aᵀ,
//                     dW += Gᵀ dU G
//
// m·m outputs cost α² products a channel pair instead of 9·m² (4× fewer for m = 4). The
// transforms and the staging of images into pixel-major segments are the C kernels of
// ddpm_winograd.h; the per-frequency products are GEMMs. The batch runs block by block (a
// block = a fixed number of rows of tiles, whatever the thread count), so that a block's
// transformed tiles stay in cache between transform and GEMM. dU sums the blocks in order.
//
// Accuracy (WinogradTests): the error of the float32 result relative to Σ|w||x| of an output
// stays below 2^-18 for m = 4 (a few ulps of that sum; the im2col path's is near 2^-23), and
// near the im2col path's for m = 2. The filter transforms run in double.
import DDPMKernels

/// The shape of one Winograd call: tiles, blocks, and the layout of its scratch.
struct WinogradPlan {
    let m: Int, alpha: Int, frequencies: Int  // m, α = m + 2, α²
    let batch: Int, height: Int, width: Int  // B, H, W
    let tilesY: Int, tilesX: Int  // ⌈H/m⌉, ⌈W/m⌉
    let rowsPerBlock: Int  // rows of tiles a block (the last block may have fewer)
    let blockTiles: Int  // T of a full block: rowsPerBlock·tilesX
    let inChannels: Int, outChannels: Int  // Ci, Co
    let inPadded: Int, outPadded: Int  // Ci, Co rounded up to 16 (a staged pixel; the matrices' row stride)
    let stageRows: Int, stageColumns: Int  // a staged segment with its border: m·(rows of tiles) + 2, m·tilesX + 2
    /// Floats from one frequency's matrix to the next: U (Ci × Co) and dU; a block's (T × Ci) and
    /// (T × Co). Each is padded by one cache line (16 floats): at a power-of-two stride the α²
    /// matrices of a tile would fall into the same cache sets.
    let filterStride: Int, inStride: Int, outStride: Int
    /// Offsets into the scratch, in floats: the transformed kernels (U, or U' in backward),
    /// dU (backward), three per-block matrix sets (T rows a frequency) and the staged segment.
    let filters: Int, filterGrads: Int, blockA: Int, blockB: Int, blockC: Int, stage: Int
    let scratchCount: Int

    /// Tiles a block aims at: rows of tiles are added while the block holds fewer.
    nonisolated(unsafe) static var blockTarget = 64

    init(_ conv: Conv2d, tile m: Int, batch B: Int, height H: Int, width W: Int) {
        (self.m, alpha, frequencies) = (m, m + 2, (m + 2) * (m + 2))
        (batch, height, width) = (B, H, W)
        (tilesY, tilesX) = ((H + m - 1) / m, (W + m - 1) / m)
        rowsPerBlock = max(1, min(B * tilesY, Self.blockTarget / tilesX))
        blockTiles = rowsPerBlock * tilesX
        (inChannels, outChannels) = (conv.inChannels, conv.outChannels)
        (inPadded, outPadded) = ((inChannels + 15) / 16 * 16, (outChannels + 15) / 16 * 16)
        stageRows = m * min(rowsPerBlock, tilesY) + 2
        stageColumns = m * tilesX + 2
        let wide = max(inPadded, outPadded)
        filterStride = inPadded * outPadded + 16
        (inStride, outStride) = (blockTiles * inPadded + 16, blockTiles * outPadded + 16)
        filters = 0
        filterGrads = filters + frequencies * filterStride
        blockA = filterGrads + frequencies * filterStride
        blockB = blockA + frequencies * max(inStride, outStride)
        blockC = blockB + frequencies * outStride
        stage = blockC + frequencies * outStride
        scratchCount = stage + stageRows * stageColumns * wide + 16  // + 16: room to align the start
    }

    /// The start of the plan's scratch inside `scratch`: the first 64-byte boundary, so that
    /// every matrix row and staged pixel (all multiples of 16 floats) starts a cache line.
    func aligned(_ scratch: UnsafeMutablePointer<Float>) -> UnsafeMutablePointer<Float> {
        let address = UInt(bitPattern: scratch)
        return scratch + Int(((address + 63) & ~63) - address) / MemoryLayout<Float>.stride
    }

    /// Rows of tiles of the batch: row g is image g / tilesY, tile row g % tilesY.
    var tileRows: Int { batch * tilesY }

    /// Calls body(rows, tiles) for each block in order: its rows of tiles and their tile count.
    func forEachBlock(_ body: (_ rows: Range<Int>, _ tiles: Int) -> Void) {
        for g0 in Swift.stride(from: 0, to: tileRows, by: rowsPerBlock) {
            let rows = g0..<min(g0 + rowsPerBlock, tileRows)
            body(rows, rows.count * tilesX)
        }
    }

    /// Calls body(image, first tile row, tile rows, first tile of the block) for each image's
    /// part of the block of tile rows `rows`, in order.
    func forEachSegment(_ rows: Range<Int>, _ body: (_ image: Int, _ ty0: Int, _ count: Int, _ tile: Int) -> Void) {
        var g = rows.lowerBound
        while g < rows.upperBound {
            let (image, ty0) = (g / tilesY, g % tilesY)
            let count = min(tilesY - ty0, rows.upperBound - g)
            body(image, ty0, count, (g - rows.lowerBound) * tilesX)
            g += count
        }
    }

    /// Stages image b's rows of tiles ty0 ..< ty0 + count of `images` (C, B, H, W), with their
    /// one-pixel border, pixel-major (cp floats a pixel) into `stage`.
    func stage(_ stage: UnsafeMutablePointer<Float>, _ images: UnsafePointer<Float>, channels C: Int, padded cp: Int,
               image b: Int, ty0: Int, count: Int) {
        ddpm_wino_stage_in(stage, cp, m * count + 2, stageColumns, images + b * height * width, C,
                           batch * height * width, height, width, m * ty0 - 1)
    }

    /// Image b's output tiles of rows ty0 ..< ty0 + count, Aᵀ M A with M[ξ] at products + ξ·ld
    /// (cp floats a tile), into `out` (C, B, H, W): assigned, or added when `accumulate`, with
    /// `bias` added when given. `stage` holds them pixel-major on the way.
    func writeTiles(_ out: UnsafeMutablePointer<Float>, channels C: Int, padded cp: Int, products: UnsafePointer<Float>,
                    ld: Int, image b: Int, ty0: Int, count: Int, stage: UnsafeMutablePointer<Float>,
                    bias: UnsafePointer<Float>?, accumulate: Bool) {
        let (wq, y0) = (m * tilesX, m * ty0)
        ddpm_wino_output(Int32(m), stage, cp, wq, products, ld, count, tilesX)
        ddpm_wino_stage_out(out + (b * height + y0) * width, C, batch * height * width, width, stage, cp, wq,
                            min(m * (ty0 + count), height) - y0, bias, accumulate ? 1 : 0)
    }
}

extension Conv2d {
    /// Conv2d.forward by Winograd; `scratch` holds `plan.scratchCount` floats.
    func forwardWinograd(_ out: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>, _ params: UnsafePointer<Float>,
                         scratch: UnsafeMutablePointer<Float>, _ plan: WinogradPlan, accumulate: Bool) {
        let (m, X) = (Int32(plan.m), plan.frequencies)
        let (Ci, Co, cip, cop) = (plan.inChannels, plan.outChannels, plan.inPadded, plan.outPadded)
        let (ldu, ldi, ldo) = (plan.filterStride, plan.inStride, plan.outStride)
        let scratch = plan.aligned(scratch)
        let (u, v, mm, stage) = (scratch + plan.filters, scratch + plan.blockA, scratch + plan.blockB, scratch + plan.stage)
        // U[ξ] (Ci, Co; row stride cop) = G w[co, ci] Gᵀ
        ddpm_wino_filter(m, u, ldu, cop, params + weight, Ci, 9, Co, 9 * Ci, 0)
        plan.forEachBlock { rows, tiles in
            // V[ξ] (tiles, Ci) = Bᵀ d B of every tile's patch
            plan.forEachSegment(rows) { b, ty0, count, t in
                plan.stage(stage, inp, channels: Ci, padded: cip, image: b, ty0: ty0, count: count)
                ddpm_wino_input(m, v + t * cip, ldi, stage, cip, plan.stageColumns, count, plan.tilesX)
            }
            // M[ξ] (tiles, Co) = V[ξ] · U[ξ]
            for xi in 0..<X {
                stridedGemm(mm + xi * ldo, v + xi * ldi, u + xi * ldu, m: tiles, n: Co, k: Ci,
                            lda: cip, ldb: cop, ldc: cop)
            }
            // out tile = Aᵀ M A + b
            plan.forEachSegment(rows) { b, ty0, count, t in
                plan.writeTiles(out, channels: Co, padded: cop, products: mm + t * cop, ld: ldo, image: b, ty0: ty0,
                                count: count, stage: stage, bias: params + bias, accumulate: accumulate)
            }
        }
    }

    /// Conv2d.backward by Winograd (see the file's header); `scratch` holds `plan.scratchCount` floats.
    func backwardWinograd(dinp: UnsafeMutablePointer<Float>?, _ grads: UnsafeMutablePointer<Float>,
                          dout: UnsafePointer<Float>, inp: UnsafePointer<Float>, _ params: UnsafePointer<Float>,
                          scratch: UnsafeMutablePointer<Float>, _ plan: WinogradPlan, accumulate: Bool) {
        let (m, X) = (Int32(plan.m), plan.frequencies)
        let (Ci, Co, cip, cop) = (plan.inChannels, plan.outChannels, plan.inPadded, plan.outPadded)
        let (ldu, ldi, ldo) = (plan.filterStride, plan.inStride, plan.outStride)
        let M = plan.batch * plan.height * plan.width
        let (db, dW) = (grads + bias, grads + weight)
        for o in 0..<Co { db[o] += sumOf(dout + o * M, M) }
        let scratch = plan.aligned(scratch)
        let (uFlipped, du) = (scratch + plan.filters, scratch + plan.filterGrads)
        let (v, z, vOut, stage) = (scratch + plan.blockA, scratch + plan.blockB, scratch + plan.blockC, scratch + plan.stage)
        let mIn = v  // (tiles, Ci) products of the backward-data convolution, once V is used
        // U'[ξ] (Co, Ci; row stride cip) = G w[co, ci, 2 − ky, 2 − kx] Gᵀ
        if dinp != nil { ddpm_wino_filter(m, uFlipped, ldu, cip, params + weight, Co, 9 * Ci, Ci, 9, 1) }
        plan.forEachBlock { rows, tiles in
            plan.forEachSegment(rows) { b, ty0, count, t in
                // V[ξ] (tiles, Ci) = Bᵀ d B of the input's patches
                plan.stage(stage, inp, channels: Ci, padded: cip, image: b, ty0: ty0, count: count)
                ddpm_wino_input(m, v + t * cip, ldi, stage, cip, plan.stageColumns, count, plan.tilesX)
                // Z[ξ] (tiles, Co) = A dout Aᵀ of the output tiles; V'[ξ] (tiles, Co) = Bᵀ dout B of its patches
                plan.stage(stage, dout, channels: Co, padded: cop, image: b, ty0: ty0, count: count)
                ddpm_wino_grad_output(m, z + t * cop, ldo, stage, cop, plan.stageColumns, count, plan.tilesX)
                if dinp != nil { ddpm_wino_input(m, vOut + t * cop, ldo, stage, cop, plan.stageColumns, count, plan.tilesX) }
            }
            // dU[ξ] (Co, Ci) (+)= Z[ξ]ᵀ · V[ξ]   (the first block assigns)
            for xi in 0..<X {
                stridedGemm(du + xi * ldu, z + xi * ldo, v + xi * ldi, m: Co, n: Ci, k: tiles,
                            lda: cop, ldb: cip, ldc: cip, transA: true, beta: rows.lowerBound == 0 ? 0 : 1)
            }
            guard let dinp else { return }
            // M'[ξ] (tiles, Ci) = V'[ξ] · U'[ξ];  dinp tile = Aᵀ M' A
            for xi in 0..<X {
                stridedGemm(mIn + xi * ldi, vOut + xi * ldo, uFlipped + xi * ldu, m: tiles, n: Ci, k: Co,
                            lda: cop, ldb: cip, ldc: cip)
            }
            plan.forEachSegment(rows) { b, ty0, count, t in
                plan.writeTiles(dinp, channels: Ci, padded: cip, products: mIn + t * cip, ld: ldi, image: b, ty0: ty0,
                                count: count, stage: stage, bias: nil, accumulate: accumulate)
            }
        }
        // dW[co, ci] += Gᵀ dU[co, ci] G
        ddpm_wino_filter_grad(m, dW, Co, Ci, du, ldu, cip)
    }
}
