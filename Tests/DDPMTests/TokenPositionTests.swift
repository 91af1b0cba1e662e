// Every position of a token caption counts the same (issue 23's probe: in a trained model,
// swapping the last word of a full-length caption barely changed ε̂). With all rows of the
// position table equal, a network conditioned on tokens sees its caption as a set: masks,
// lengths, the cross-attention, the text encoder's self-attention and the masked mean are
// all symmetric in the positions i < ℓ. So
//   1. ε̂ is the same (up to rounding) for any order of a full-length caption's words, and
//   2. over a batch of the caption's L rotations (same x and t), the gradient reaching each
//      row of the position table is the same: the last row gets what every other row gets.
// A last position that is masked out, cut by an off-by-one length, left out of the mean or of
// the position table's gradient breaks one or the other. Negative controls: with distinct
// position rows, order matters; with lengths of L − 1, a swap of the first and last words does.
import XCTest
@testable import DDPM

final class TokenPositionTests: XCTestCase {
    let (V, L, Dc, T) = (9, 5, 4, 10)
    let caption: [Int32] = [3, 7, 1, 8, 5]  // full length: no padding

    /// The networks: a UNet cross-attending at 8×8, 4×4 and the middle, and the MLP (mean only),
    /// each without and with a text encoder.
    func networks() throws -> [(String, DenoisingNetwork)] {
        var unet = UNetTests.tiny
        unet.crossAttentionLevels = [0, 1]
        var result: [(String, DenoisingNetwork)] = []
        for encoder in [TextEncoderShape.none, .init(layers: 2, heads: 2)] {
            let c = Conditioning.tokens(vocabulary: V, maxLength: L, dim: Dc, encoder: encoder)
            var rng = Philox(seed: 5)
            result.append(("UNet, \(encoder.layers) encoder layers", try UNet(unet, conditioning: c, timesteps: T, rng: &rng)))
            result.append(("MLP, \(encoder.layers) encoder layers",
                           try ResidualMLP(.init(dataDim: 3, hidden: 16, depth: 2, timeEmbedDim: 6), conditioning: c, timesteps: T, rng: &rng)))
        }
        return result
    }

    /// Random parameters (every zero-initialised projection live), with every position row
    /// equal to row 0 unless `distinctPositions`.
    func parameters(_ net: DenoisingNetwork, distinctPositions: Bool = false) -> [Float] {
        let layout = net.parameters.layout
        var p = UNetGradientCheck.randomParameters(layout, seed: 6)
        let positions = layout.entries.first { $0.name == "context.positions" }!
        if !distinctPositions {
            for i in 1..<L { for k in 0..<Dc { p[positions.offset + i * Dc + k] = p[positions.offset + k] } }
        }
        return p
    }

    /// ε̂ (B, S) of x (the same for every row) at t = 7 for the captions (B, L) and lengths (B,).
    func predict(_ net: DenoisingNetwork, _ p: [Float], captions: [Int32], lengths: [Int32], training: Bool = false) -> [Float] {
        let B = lengths.count, S = net.sampleSize
        let x = (0..<B).flatMap { _ in UNetGradientCheck.normals(S, seed: 8) }
        let t = [Int32](repeating: 7, count: B)
        var out = [Float](repeating: .nan, count: B * net.outputSize)
        var rng = Philox(seed: 0)
        captions.withUnsafeBufferPointer { ids in
            lengths.withUnsafeBufferPointer { l in
                var c = ConditionBatch()
                (c.tokens, c.lengths, c.maxLength, c.contextDim) = (ids.baseAddress!, l.baseAddress!, L, Dc)
                net.forward(&out, x: x, t: t, cond: c, batch: B, params: p, training: training, rng: &rng)
            }
        }
        return out
    }

    func testEpsilonDoesNotDependOnWordOrderWhenPositionsAreEqual() throws {
        let reversed = Array(caption.reversed())
        var swapped = caption
        swapped.swapAt(0, L - 1)
        let full: [Int32] = [Int32(L)]
        for (name, net) in try networks() {
            let p = parameters(net)
            let base = predict(net, p, captions: caption, lengths: full)
            let scale = base.reduce(0) { max($0, abs(Double($1))) }
            XCTAssertGreaterThan(scale, 1e-2, "\(name): ε̂ is not trivially zero")
            for (what, order) in [("reversed", reversed), ("first and last swapped", swapped)] {
                XCTAssertLessThan(maxAbsDiff(predict(net, p, captions: order, lengths: full), base).value, 1e-5 * max(1, scale),
                                  "\(name): \(what)")
            }
            // The words matter: another word in the last position changes ε̂.
            var other = caption
            other[L - 1] = 2
            XCTAssertGreaterThan(maxAbsDiff(predict(net, p, captions: other, lengths: full), base).value, 1e-4 * scale,
                                 "\(name): the last word is read")
            // Negative controls: distinct positions make order matter (not to the MLP without an
            // encoder: the mean of E_tok + E_pos is the same in any order, only an attention reads
            // the order); a length of L − 1 (the last word dropped, as a masking bug would) makes
            // the first-and-last swap matter.
            let distinct = parameters(net, distinctPositions: true)
            let orderEffect = maxAbsDiff(predict(net, distinct, captions: swapped, lengths: full),
                                         predict(net, distinct, captions: caption, lengths: full)).value
            if net is ResidualMLP && net.conditioning.textEncoder.layers == 0 {
                XCTAssertLessThan(orderEffect, 1e-5 * max(1, scale), "\(name): the mean is order-free")
            } else {
                XCTAssertGreaterThan(orderEffect, 1e-4 * scale, "\(name): positions are read")
            }
            let short: [Int32] = [Int32(L - 1)]
            XCTAssertGreaterThan(maxAbsDiff(predict(net, p, captions: swapped, lengths: short),
                                            predict(net, p, captions: caption, lengths: short)).value, 1e-4 * scale,
                                 "\(name): a dropped last word would show")
        }
    }

    func testEveryPositionRowGetsTheSameGradientOverRotations() throws {
        // Row r is the caption rotated by r: position i holds word (i + r) mod L.
        let rotations = (0..<L).flatMap { r in (0..<L).map { caption[($0 + r) % L] } }
        let full = [Int32](repeating: Int32(L), count: L)
        for (name, net) in try networks() {
            let p = parameters(net)
            try net.parameters.setValues(p)
            let out = predict(net, p, captions: rotations, lengths: full, training: true)
            net.parameters.zeroGrads()
            let w = (0..<L).flatMap { _ in UNetGradientCheck.normals(out.count / L, seed: 9) }  // the same for every row
            net.backward(dout: w, batch: L)
            let g = net.parameters.gradsArray
            let positions = net.parameters.layout.entries.first { $0.name == "context.positions" }!
            let rows = (0..<L).map { i in Array(g[(positions.offset + i * Dc)..<(positions.offset + (i + 1) * Dc)]) }
            let norm = rows[0].reduce(0) { $0 + Double($1) * Double($1) }.squareRoot()
            XCTAssertGreaterThan(norm, 1e-4, "\(name): the position table learns")
            for i in 1..<L {
                XCTAssertLessThan(maxAbsDiff(rows[i], rows[0]).value, 1e-4 * norm, "\(name): position \(i) against position 0")
            }
        }
    }
}
