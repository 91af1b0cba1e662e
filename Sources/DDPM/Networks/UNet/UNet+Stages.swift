// The stages of the UNet: each step of the encoder, middle and decoder is a ResBlock with
// optional attention and resampling, or a lone Downsample.
//
//   B = batch, Ci/Co = channels in/out, N = H·W pixels at the stage's input,
//   Cs = channels concatenated from the encoder (decoder stages only).

extension UNet {
    /// One step of the encoder, middle or decoder. A decoder stage's input is concat(h, skip).
    struct Stage {
        var res: ResBlock? = nil
        var attention: Attention? = nil
        var crossAttention: CrossAttention? = nil
        var down: Downsample? = nil
        var up: Upsample? = nil
        var skipChannels = 0  // Cs (decoder only)
        let height: Int, width: Int  // input resolution

        var pixels: Int { height * width }
        var inChannels: Int { res?.inChannels ?? down!.conv.inChannels }
        var outChannels: Int { res?.outChannels ?? down!.conv.outChannels }
        /// Output resolution.
        var outSize: (height: Int, width: Int) {
            if let down { return down.outSize }
            if let up { return up.outSize }
            return (height, width)
        }
        /// The most floats per image of any tensor inside the stage (concat, qkv, upsampled).
        var maxActivation: Int {
            let N = pixels
            return max(max(inChannels, outChannels) * N, attention == nil ? 0 : 3 * outChannels * N,
                       up.map { $0.outSize.height * $0.outSize.width * outChannels } ?? 0, down?.maxActivation ?? 0)
        }

        /// The stage's convolutions with the size of their input images, in the order they run.
        var convolutions: [(conv: Conv2d, height: Int, width: Int)] {
            var list: [(conv: Conv2d, height: Int, width: Int)] = []
            if let res { list += [(res.conv1, height, width)] + (res.skip.map { [($0, height, width)] } ?? []) + [(res.conv2, height, width)] }
            if let attention { list += [(attention.qkv, pixels, 1), (attention.proj, pixels, 1)] }
            if let down { list.append((down.conv, height, width)) }
            if let up { list.append((up.conv, up.outSize.height, up.outSize.width)) }
            return list
        }

        func columnsCount(batch B: Int) -> Int {
            max(res?.columnsCount(batch: B) ?? 0, down?.columnsCount(batch: B) ?? 0, up?.columnsCount(batch: B) ?? 0)
        }

        /// The views of one stage, for `batch` images.
        struct Activations {
            let cat: UnsafeMutablePointer<Float>  // (Ci, B, N) concat(h, skip) for a decoder stage; 0 floats otherwise
            let res: ResBlock.Activations?
            let attention: Attention.Activations?
            let crossAttention: CrossAttention.Activations?
            let down: Downsample.Activations?
            let up: Upsample.Activations?
            /// The stage's result, (Co, B, Ho, Wo): the out of its last layer.
            let out: UnsafeMutablePointer<Float>

            init(_ s: Stage, batch B: Int, _ arena: inout Arena) {
                cat = arena.take(s.skipChannels > 0 ? s.inChannels * B * s.pixels : 0)
                res = s.res.map { ResBlock.Activations($0, batch: B, &arena) }
                attention = s.attention.map { Attention.Activations($0, batch: B, &arena) }
                crossAttention = s.crossAttention.map { CrossAttention.Activations($0, batch: B, &arena) }
                down = s.down.map { Downsample.Activations($0, batch: B, &arena) }
                up = s.up.map { Upsample.Activations($0, batch: B, &arena) }
                out = down?.out ?? up?.out ?? crossAttention?.out ?? attention?.out ?? res!.out
            }
        }

        /// a.out = stage(inp); inp is (Ci, B, N) (already concatenated for a decoder stage).
        func forward(_ a: Activations, _ inp: UnsafePointer<Float>, temb: UnsafePointer<Float>, _ pass: Pass,
                     context: ContextPass?, rng: inout Philox) {
            var h = inp
            if let res, let r = a.res { res.forward(r, h, temb: temb, pass, rng: &rng); h = UnsafePointer(r.out) }
            if let attention, let at = a.attention { attention.forward(at, h, pass); h = UnsafePointer(at.out) }
            if let crossAttention, let ca = a.crossAttention, let context {
                crossAttention.forward(ca, h, context: context.context, pass)
                h = UnsafePointer(ca.out)
            }
            if let down, let d = a.down { down.forward(d, h, pass) }
            if let up, let u = a.up { up.forward(u, h, pass) }
        }

        /// dinp (Ci, B, N) (+)= ∂L/∂inp (overwritten unless `accumulate`), dtemb (B, T) += ∂L/∂SiLU(temb),
        /// given dout = ∂L/∂out, which is consumed (overwritten). dinp and dout are distinct buffers.
        func backward(dinp: UnsafeMutablePointer<Float>, dout: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>,
                      temb: UnsafePointer<Float>, dtemb: UnsafeMutablePointer<Float>, _ a: Activations, _ pass: Pass,
                      context: ContextPass?, accumulate: Bool) {
            if let down, let d = a.down {
                down.backward(dinp: dinp, dout: dout, inp: inp, d, pass, accumulate: accumulate)
                return
            }
            guard let res, let r = a.res else { return }
            if let up, let u = a.up { up.backward(dinp: dout, dout: dout, u, pass) }  // in place: (Co, B, 4N) → (Co, B, N)
            if let crossAttention, let ca = a.crossAttention, let context {
                let inp = UnsafePointer(a.attention?.out ?? r.out)
                crossAttention.backward(dinp: dout, dout: dout, inp: inp, context: context.context, dcontext: context.dcontext,
                                        ca, context.scratch, pass)
            }
            if let attention, let at = a.attention { attention.backward(dinp: dout, dout: dout, inp: r.out, at, pass) }
            res.backward(dinp: dinp, dtemb: dtemb, dout: dout, inp: inp, temb: temb, r, pass, accumulate: accumulate)
        }
    }

    /// What the cross-attention stages share in a pass: the context c̃, its gradient and scratch.
    struct ContextPass {
        let context: CrossAttention.Context
        let dcontext: UnsafeMutablePointer<Float>?  // (B, Lmax, Dc) ∂L/∂c̃ (backward only)
        let scratch: CrossAttention.Scratch
    }

    /// The stages of `config`, their parameters declared in `layout` in order: encoder, middle, decoder.
    static func makeStages(_ config: UNetConfig, _ conditioning: Conditioning,
                           _ layout: inout ParameterLayout) -> (encoder: [Stage], middle: [Stage], decoder: [Stage]) {
        let (c, L, R, T, G) = (config.baseChannels, config.levels, config.resBlocks, config.timeDim, config.groups)
        var ch = c * config.channelMult[0]
        var (h, w) = (config.height, config.width)
        let signal = config.isSignal  // 1-D: height 1, 1×3 kernels, resampling along the width only
        func resBlock(_ name: String, in ci: Int, out co: Int) -> ResBlock {
            ResBlock(&layout, name + ".res", in: ci, out: co, timeDim: T, groups: G, dropout: config.dropout, height: h, width: w,
                     kernelHeight: signal ? 1 : 3, epsilon: config.normEps)
        }
        func attention(_ name: String, _ channels: Int) -> Attention {
            Attention(&layout, name + ".attn", channels: channels, heads: config.heads(channels: channels), groups: G, pixels: h * w,
                      epsilon: config.normEps)
        }
        let (Dc, Lmax) = (conditioning.contextDim, conditioning.maxLength)
        func crossAttention(_ name: String, _ channels: Int, level: Int?) -> CrossAttention? {
            guard Dc > 0, level.map({ config.crossAttentionLevels.contains($0) }) ?? true else { return nil }
            return CrossAttention(&layout, name + ".xattn", channels: channels, heads: config.heads(channels: channels), groups: G,
                                  pixels: h * w, contextDim: Dc, maxLength: Lmax, epsilon: config.normEps,
                                  queryPositions: config.crossAttentionPositions)
        }
        var skipChannels = [ch]
        var encoder: [Stage] = []
        for level in 0..<L {
            let co = c * config.channelMult[level]
            for _ in 0..<R {
                let name = "encoder.\(encoder.count)"
                encoder.append(Stage(res: resBlock(name, in: ch, out: co),
                                     attention: config.attentionLevels.contains(level) ? attention(name, co) : nil,
                                     crossAttention: crossAttention(name, co, level: level),
                                     height: h, width: w))
                ch = co
                skipChannels.append(ch)
            }
            if level < L - 1 {
                let name = "encoder.\(encoder.count)"
                let down = Downsample(&layout, name + ".down", channels: ch, height: h, width: w, signal: signal,
                                      symmetric: config.downsamplePadding == 1)
                encoder.append(Stage(down: down, height: h, width: w))
                skipChannels.append(ch)
                (h, w) = down.outSize
            }
        }
        let middle = [Stage(res: resBlock("middle.0", in: ch, out: ch), attention: config.middleAttention ? attention("middle.0", ch) : nil,
                            crossAttention: crossAttention("middle.0", ch, level: nil), height: h, width: w),
                      Stage(res: resBlock("middle.1", in: ch, out: ch), height: h, width: w)]
        var decoder: [Stage] = []
        for level in (0..<L).reversed() {
            let co = c * config.channelMult[level]
            for i in 0...R {
                let name = "decoder.\(decoder.count)"
                let skip = skipChannels.removeLast()
                decoder.append(Stage(res: resBlock(name, in: ch + skip, out: co),
                                     attention: config.attentionLevels.contains(level) ? attention(name, co) : nil,
                                     crossAttention: crossAttention(name, co, level: level),
                                     up: level > 0 && i == R ? Upsample(&layout, name + ".up", channels: co, height: h, width: w, signal: signal) : nil,
                                     skipChannels: skip, height: h, width: w))
                ch = co
                if let up = decoder.last!.up { (h, w) = up.outSize }
            }
        }
        return (encoder, middle, decoder)
    }
}
