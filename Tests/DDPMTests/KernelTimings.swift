// Per-kernel CPU time on the CIFAR UNet's and the MLP configs' shapes (one thread). Not a test:
// it runs only with DDPM_KERNEL_TIMINGS=1 (skipped otherwise), meant for a release build:
//   swift build -c release --build-tests -Xswiftc -enable-testing --build-path .build-timing
//   DDPM_KERNEL_TIMINGS=1 swift test -c release --skip-build -Xswiftc -enable-testing \
//       --build-path .build-timing --filter KernelTimings | grep timing
import XCTest
@testable import DDPM
#if canImport(Glibc)
import Glibc
#endif

final class KernelTimings: XCTestCase {
    @inline(never)
    func cpuSeconds() -> Double {
        var t = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t)
        return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
    }

    /// Best of 7 of `body` repeated until ≥ 20 ms.
    func time(_ name: String, _ body: () -> Void) {
        body()
        var reps = 1
        while true {
            let t0 = cpuSeconds()
            for _ in 0..<reps { body() }
            let dt = cpuSeconds() - t0
            if dt > 0.02 { break }
            if reps > 1 << 20 { print("[timing] \(name): \(dt) s for \(reps) reps: the clock does not move"); return }
            reps *= 2
        }
        var best = Double.infinity
        for _ in 0..<7 { let t0 = cpuSeconds(); for _ in 0..<reps { body() }; best = min(best, (cpuSeconds() - t0) / Double(reps)) }
        print(String(format: "[timing] %-52@ %10.1f µs", name as NSString, best * 1e6))
    }

    func buf(_ n: Int, seed: UInt64) -> Buffer<Float> {
        let b = try! Buffer<Float>(count: n)
        var rng = Philox(seed: seed)
        rng.fillUniform(b.pointer, count: n)
        for i in 0..<n { b.pointer[i] = b.pointer[i] * 4 - 2 }
        return b
    }

    func testTimings() throws {
        guard ProcessInfo.processInfo.environment["DDPM_KERNEL_TIMINGS"] == "1" else {
            throw XCTSkip("timings only: DDPM_KERNEL_TIMINGS=1 in a release build")
        }
        // SiLU and GroupNorm on the largest activation: 64 channels × 32 images × 32×32
        for (C, B, N) in [(64, 32, 1024), (128, 32, 256), (128, 16, 1024)] {
            let n = C * B * N
            let x = buf(n, seed: 1), y = buf(n, seed: 2), d = buf(n, seed: 3)
            time("SiLU forward \(C)x\(B)x\(N)") { SiLU.forward(y.pointer, x.pointer, count: n) }
            time("SiLU backward \(C)x\(B)x\(N)") { SiLU.backward(dinp: y.pointer, dout: d.pointer, inp: x.pointer, count: n) }
            var layout = ParameterLayout()
            let gn = GroupNorm(&layout, "gn", channels: C, groups: 8)
            let p = buf(layout.count, seed: 4), g = buf(layout.count, seed: 5)
            let mean = buf(B * 8, seed: 6), rstd = buf(B * 8, seed: 7)
            time("GroupNorm forward \(C)x\(B)x\(N) G8") { gn.forward(y.pointer, mean: mean.pointer, rstd: rstd.pointer, x.pointer, p.pointer, batch: B, spatial: N) }
            time("GroupNorm forward + SiLU (2 calls) \(C)x\(B)x\(N)") {
                gn.forward(y.pointer, mean: mean.pointer, rstd: rstd.pointer, x.pointer, p.pointer, batch: B, spatial: N)
                SiLU.forward(d.pointer, y.pointer, count: n)
            }
            time("GroupNorm backward \(C)x\(B)x\(N) G8") {
                gn.backward(dinp: y.pointer, g.pointer, dout: d.pointer, inp: x.pointer, mean: mean.pointer, rstd: rstd.pointer, p.pointer,
                            batch: B, spatial: N, accumulate: false)
            }
            let u = buf(n, seed: 8)
            time("GroupNorm+SiLU fused forward \(C)x\(B)x\(N)") {
                gn.forward(y.pointer, mean: mean.pointer, rstd: rstd.pointer, x.pointer, p.pointer, batch: B, spatial: N, fusing: .init(silu: true))
            }
            time("GroupNorm+bias+SiLU+dropout fused forward \(C)x\(B)x\(N)") {
                gn.forward(y.pointer, mean: mean.pointer, rstd: rstd.pointer, x.pointer, p.pointer, batch: B, spatial: N,
                           fusing: .init(bias: UnsafePointer(g.pointer), silu: true, mask: u.pointer, dropout: Dropout(probability: 0.1)))
            }
            // The fused backward overwrites dout with ∂L/∂n: each call starts from a fresh copy (timed alone too).
            let d0 = buf(n, seed: 3)
            time("(copy of dout, \(C)x\(B)x\(N))") { d.pointer.update(from: d0.pointer, count: n) }
            time("GroupNorm+SiLU fused backward + copy \(C)x\(B)x\(N)") {
                d.pointer.update(from: d0.pointer, count: n)
                gn.backward(dinp: y.pointer, g.pointer, dout: d.pointer, dbias: nil, inp: x.pointer, mean: mean.pointer, rstd: rstd.pointer,
                            p.pointer, batch: B, spatial: N, accumulate: false, fusing: .init(silu: true))
            }
            time("GroupNorm+bias+SiLU fused backward (dbias) + copy \(C)x\(B)x\(N)") {
                d.pointer.update(from: d0.pointer, count: n)
                gn.backward(dinp: y.pointer, g.pointer, dout: d.pointer, dbias: u.pointer, inp: x.pointer, mean: mean.pointer,
                            rstd: rstd.pointer, p.pointer, batch: B, spatial: N, accumulate: false,
                            fusing: .init(bias: UnsafePointer(g.pointer), silu: true))
            }
        }
        // ResBlocks of the CIFAR UNet (conv included): 64→64 at 32×32, 128→128 at 16×16; training chunk 16, prediction 32
        for (C, S, B, dropout) in [(64, 32, 16, Float(0)), (64, 32, 32, Float(0)), (128, 16, 16, Float(0)), (64, 32, 16, Float(0.1))] {
            var layout = ParameterLayout()
            let block = ResBlock(&layout, "res", in: C, out: C, timeDim: 256, groups: 8, dropout: dropout, height: S, width: S)
            let a = Held { ResBlock.Activations(block, batch: B, &$0) }
            let scratch = Held { Scratch(&$0, columns: block.columnsCount(batch: B), activation: C * B * S * S, probs: 0, rows: B * C) }
            let p = buf(layout.count, seed: 9), g = buf(layout.count, seed: 10)
            let x = buf(C * B * S * S, seed: 11), dout = buf(C * B * S * S, seed: 12), dx = buf(C * B * S * S, seed: 13)
            let temb = buf(B * 256, seed: 14), dtemb = buf(B * 256, seed: 15)
            let pass = Pass(params: p.pointer, grads: g.pointer, batch: B, training: true, scratch: scratch.views)
            let infer = Pass(params: p.pointer, grads: g.pointer, batch: B, training: false, scratch: scratch.views)
            var rng = Philox(seed: 3)
            time("ResBlock \(C) \(S)x\(S) B\(B) p\(dropout) forward (inference)") { block.forward(a.views, x.pointer, temb: temb.pointer, infer, rng: &rng) }
            time("ResBlock \(C) \(S)x\(S) B\(B) p\(dropout) forward (training)") { block.forward(a.views, x.pointer, temb: temb.pointer, pass, rng: &rng) }
            time("ResBlock \(C) \(S)x\(S) B\(B) p\(dropout) backward") {
                block.backward(dinp: dx.pointer, dtemb: dtemb.pointer, dout: dout.pointer, inp: x.pointer, temb: temb.pointer, a.views, pass, accumulate: false)
            }
        }
        // LayerNorm on the MLP configs' (rows, features): toy2d, signal, large
        for (R, C) in [(256, 128), (128, 256), (512, 512)] {
            var layout = ParameterLayout()
            let ln = LayerNorm(&layout, "ln", features: C)
            let p = buf(layout.count, seed: 4), g = buf(layout.count, seed: 5)
            let x = buf(R * C, seed: 1), y = buf(R * C, seed: 2), d = buf(R * C, seed: 3), t = buf(R * C, seed: 8)
            let mean = buf(R, seed: 6), rstd = buf(R, seed: 7)
            time("LayerNorm forward + add \(R)x\(C)") { ln.forward(y.pointer, mean: mean.pointer, rstd: rstd.pointer, x.pointer, p.pointer, batch: R, adding: t.pointer) }
            time("LayerNorm backward \(R)x\(C)") {
                ln.backward(dinp: y.pointer, g.pointer, dout: d.pointer, inp: x.pointer, mean: mean.pointer, rstd: rstd.pointer, p.pointer, batch: R)
            }
            time("SiLU forward \(R)x\(C)") { SiLU.forward(y.pointer, x.pointer, count: R * C) }
            time("SiLU backward \(R)x\(C)") { SiLU.backward(dinp: y.pointer, dout: d.pointer, inp: x.pointer, count: R * C) }
        }
        // The optimizer on the CIFAR UNet's 6.47 M parameters, in the model's 65536-parameter spans
        let P = 6_470_000
        let params = buf(P, seed: 1), grads = buf(P, seed: 2), ema = buf(P, seed: 3)
        let opt = try AdamW(config: AdamWConfig(weightDecay: 0.01), count: P)
        time("AdamW update + EMA update, P = 6.47 M") {
            let k = opt.nextStep()
            var lo = 0
            while lo < P {
                let hi = min(P, lo + 65536)
                opt.update(params.pointer, grads: grads.pointer, gradScale: 0.5, range: lo..<hi, k)
                EMA.update(ema.pointer + lo, params: params.pointer + lo, count: hi - lo, decay: 0.999)
                lo = hi
            }
        }
        time("AdamW + EMA fused, P = 6.47 M") {
            let k = opt.nextStep()
            var lo = 0
            while lo < P {
                let hi = min(P, lo + 65536)
                opt.update(params.pointer, grads: grads.pointer, gradScale: 0.5, range: lo..<hi, k, ema: ema.pointer, emaDecay: 0.999)
                lo = hi
            }
        }
        time("AdamW firstNonFinite, P = 6.47 M") { _ = opt.firstNonFinite(params.pointer, grads: grads.pointer, gradScale: 0.5, ema: ema.pointer, emaDecay: 0.999) }
        var sink = 0.0
        time("sumOfSquares (gradient norm), P = 6.47 M") { sink += sumOfSquares(grads.pointer, P) }
        print("[timing] (sink \(sink))")
    }
}
