// Per-layer CPU time of the convolution paths on the CIFAR UNets' shapes (issue 18): not a
// test; it runs only with DDPM_CONV_BENCH=1, and is meant for a release build with testing
// enabled, e.g.
//
//   swift build -c release --build-tests -Xswiftc -enable-testing --scratch-path .build-perf
//   DDPM_CONV_BENCH=1 swift test -c release -Xswiftc -enable-testing --scratch-path .build-perf \
//       --skip-build --filter ConvBenchmark
//
// DDPM_CONV_SHAPES="Ci,Co,B,H;..." and DDPM_CONV_ALGORITHMS="im2col,winograd4,winograd2" choose what
// runs, DDPM_CONV_BLOCK the tiles of a Winograd block. Each figure is the best of several runs of the calling thread's CPU time (one thread).
import XCTest
#if canImport(Glibc)
import Glibc
#endif
@testable import DDPM

final class ConvBenchmark: XCTestCase {
    static func threadSeconds() -> Double {
        var t = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t)
        return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
    }

    /// Best CPU time of `body` over `repeats` runs (after one warm-up run), in ms.
    static func best(_ repeats: Int, _ body: () -> Void) -> Double {
        body()
        var best = Double.infinity
        for _ in 0..<repeats {
            let t0 = threadSeconds()
            body()
            best = min(best, threadSeconds() - t0)
        }
        return best * 1e3
    }

    func testConvolutionTimes() throws {
        try XCTSkipUnless(ProcessInfo.processInfo.environment["DDPM_CONV_BENCH"] == "1", "set DDPM_CONV_BENCH=1 to run")
        let threads = blasThreads()
        setBLASThreads(1)  // every GEMM on this thread: its CPU time is the layer's
        defer { setBLASThreads(threads) }
        let shapes: [(Ci: Int, Co: Int, B: Int, H: Int)] = (ProcessInfo.processInfo.environment["DDPM_CONV_SHAPES"] ?? "")
            .split(separator: ";").map { s in
                let v = s.split(separator: ",").map { Int($0)! }
                return (v[0], v[1], v[2], v[3])
            }
        let only = ProcessInfo.processInfo.environment["DDPM_CONV_ALGORITHMS"]?.split(separator: ",").map(String.init)
        let algorithms: [(String, Conv2d.Algorithm)] = [("im2col", .im2col), ("winograd4", .winograd(tile: 4)),
                                                        ("winograd2", .winograd(tile: 2))].filter { only?.contains($0.0) ?? true }
        if let target = ProcessInfo.processInfo.environment["DDPM_CONV_BLOCK"].flatMap({ Int($0) }) {
            WinogradPlan.blockTarget = target
        }
        let repeats = Int(ProcessInfo.processInfo.environment["DDPM_CONV_REPEATS"] ?? "") ?? 5
        for s in shapes.isEmpty ? [(64, 64, 32, 32), (128, 128, 32, 16), (128, 128, 32, 8), (256, 256, 32, 8)] : shapes {
            let (Ci, Co, B, H) = s
            let W = H
            let flops = 2.0 * Double(Ci * Co * 9 * B * H * W)  // direct-convolution FLOPs of one pass
            for (name, algorithm) in algorithms {
                var layout = ParameterLayout()
                let conv = Conv2d(&layout, "conv", in: Ci, out: Co, kernel: 3, algorithm: algorithm)
                let params = UNetGradientCheck.randomParameters(layout, seed: 1)
                let inp = UNetGradientCheck.normals(Ci * B * H * W, seed: 2), dout = UNetGradientCheck.normals(Co * B * H * W, seed: 3)
                let scratch = try Buffer<Float>(count: conv.columnsCount(batch: B, height: H, width: W))
                var out = [Float](repeating: 0, count: Co * B * H * W), dinp = [Float](repeating: 0, count: Ci * B * H * W)
                var grads = [Float](repeating: 0, count: layout.count)
                let forward = Self.best(repeats) {
                    conv.forward(&out, inp, params, columns: scratch.pointer, batch: B, height: H, width: W)
                }
                let weights = Self.best(repeats) {
                    conv.backward(dinp: nil, &grads, dout: dout, inp: inp, params, columns: scratch.pointer, batch: B,
                                  height: H, width: W)
                }
                let both = Self.best(repeats) {
                    conv.backward(dinp: &dinp, &grads, dout: dout, inp: inp, params, columns: scratch.pointer, batch: B,
                                  height: H, width: W)
                }
                print(String(format: "conv %3d→%3d %2d×%-2d B%-3d %-9@: forward %7.2f ms (%5.1f GFLOP/s)  dW %7.2f ms  dW+dinp %7.2f ms  scratch %.1f MB",
                             Ci, Co, H, W, B, name, forward, flops / forward / 1e6, weights, both,
                             Double(scratch.count) * 4 / 1e6))
            }
        }
    }
}
