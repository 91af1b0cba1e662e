// 2-D convolution with zero padding kh/2 × kw/2 and stride 1 or 2.
//
//   B = batch, Ci = in channels, Co = out channels, kh×kw = kernel size (odd; k×k, or 1×k
//   for 1-D signals stored as height-1 images), s = stride,
//   H×W = input size, Ho×Wo = output size (H×W for s = 1, ⌈H/2⌉×⌈W/2⌉ for s = 2; a height
//   of 1 stays 1 under a 1×k kernel), P = Ho·Wo, K = Ci·kh·kw (one column of the unrolled
//   input), M = B·P.
//
//   out[o, b, y, x] = b[o] + Σ_{ci, ky, kx} W[o, ci, ky, kx] · inp[ci, b, y·s + ky − kh/2, x·s + kx − kw/2]
//
// Layout. Images inside the UNet are stored channel-major, (C, B, H, W): channel c of
// image b is the plane at offset (c·B + b)·H·W. For B = 1 this is NCHW. With it the
// convolution of a run of images is one GEMM into a column block of the output, and
// concatenating along channels is placing two blocks one after the other.
//
// Two algorithms (`Algorithm`), chosen per call from the shape and the batch (`algorithm`):
//   - Winograd (Conv2d+Winograd.swift) for 3×3 kernels with stride 1: F(4×4, 3×3) (2.25
//     multiplications an output instead of 9) or F(2×2, 3×3) (4), forward, backward-data and
//     backward-weights; the weights' transform (α²·Ci·Co floats) is made by each call in
//     training, and once per prediction for all its chunks (Conv2d+Prepared.swift); either
//     way it is read per block of tiles, which a call with few tiles does not repay;
//   - im2col + GEMM (Conv2d+Im2col.swift) for everything else (stride 2, 1×1, 1×k) and for
//     calls too small for Winograd's fixed cost.
// The choice depends on the shape and the batch of the call only (never on the thread count,
// the timing of a run, or whether the weights came prepared), so a chunk of a batch computes
// the same bits every time. In inference a row's result does not depend on the other rows of
// its chunk either: every reduction runs within an image (or a tile), so only the chunk's
// batch, through the choice, matters. `columns` is caller-provided scratch of
// `columnsCount(...)` floats, for any of them: im2col's columns, or Winograd's transformed
// weights, tiles and staged images.
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
    /// The algorithm asked for: `.automatic` picks per call (see `algorithm(batch:height:width:)`).
    let requested: Algorithm

    enum Algorithm: Hashable, Sendable {
        case automatic
        case im2col
        /// Winograd F(m×m, 3×3), m = 4 or 2 (3×3 kernels, stride 1).
        case winograd(tile: Int)
    }

    /// The fewest input and output channels for which `.automatic` takes Winograd.
    static let winogradMinChannels = 8

    /// Declares W and b, initialised U(±1/√(Ci·kh·kw)) (PyTorch's default), or zero when
    /// `zeroInit` (the last convolution of a residual branch, as in DDPM). The kernel is
    /// kernel × kernel, or kernelHeight × kernel when kernelHeight is given (1 for signals).
    public init(_ layout: inout ParameterLayout, _ name: String, in inChannels: Int, out outChannels: Int,
                kernel: Int, kernelHeight: Int? = nil, stride: Int = 1, zeroInit: Bool = false,
                columnsTarget: Int = 1 << 17) {
        self.init(&layout, name, in: inChannels, out: outChannels, kernel: kernel, kernelHeight: kernelHeight,
                  stride: stride, zeroInit: zeroInit, columnsTarget: columnsTarget, algorithm: .automatic)
    }

    init(_ layout: inout ParameterLayout, _ name: String, in inChannels: Int, out outChannels: Int,
         kernel: Int, kernelHeight: Int? = nil, stride: Int = 1, zeroInit: Bool = false,
         columnsTarget: Int = 1 << 17, algorithm: Algorithm) {
        (self.inChannels, self.outChannels, self.stride) = (inChannels, outChannels, stride)
        (self.kernelHeight, self.kernelWidth) = (kernelHeight ?? kernel, kernel)
        self.columnsTarget = columnsTarget
        requested = algorithm
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
    /// A 3×3 kernel with stride 1: Winograd can compute it.
    var isWinogradShape: Bool { kernelHeight == 3 && kernelWidth == 3 && stride == 1 }

    /// Ho × Wo for an H × W input.
    func outputSize(height: Int, width: Int) -> (height: Int, width: Int) {
        ((height + 2 * padY - kernelHeight) / stride + 1, (width + 2 * padX - kernelWidth) / stride + 1)
    }

    /// The algorithms `.automatic` may take for H × W images: im2col, and Winograd F(4×4, 3×3)
    /// and F(2×2, 3×3) for a 3×3 kernel with stride 1 on images of at least 4×4 with at least
    /// `winogradMinChannels` channels in and out.
    func candidates(height H: Int, width W: Int) -> [Algorithm] {
        switch requested {
        case .winograd where isWinogradShape: return [requested]
        case .automatic where isWinogradShape && min(H, W) >= 4 && min(inChannels, outChannels) >= Self.winogradMinChannels:
            return [.im2col, .winograd(tile: 4), .winograd(tile: 2)]
        default: return [.im2col]
        }
    }

    /// The algorithm a call on a batch of B H × W images takes: the requested one, or for
    /// `.automatic` the candidate of least estimated cost.
    func algorithm(batch B: Int, height H: Int, width W: Int) -> Algorithm {
        candidates(height: H, width: W).min {
            estimatedCost($0, batch: B, height: H, width: W) < estimatedCost($1, batch: B, height: H, width: W)
        }!
    }

    /// A call's CPU time in ns per (input, output) channel pair, as measured on one core (AMD
    /// EPYC, AVX-512, issue 18) for 8 to 256 channels, 4×4 to 32×32 images and batches 1 to 32:
    ///   im2col: P·(0.1 + 2/Co), P = B·H·W pixels (GEMM, and im2col's copy of each input pixel)
    ///   F(m×m): f + T·(g + t·(Ci + Co)/(Ci·Co)), T = B·⌈H/m⌉·⌈W/m⌉ tiles:
    ///     f = the weight transform (10 ns for m = 4 while the α²·Ci·Co transformed weights
    ///         fit in 2.5 MiB, 35 beyond; 6 for m = 2), g = the GEMM per tile (0.2; 0.09),
    ///     t = the data transforms per tile and channel (10; 5).
    /// Only the order of the estimates matters; they decide, e.g., F(4×4) for 64 channels at
    /// 32×32 from one image on, F(2×2) for 256 channels at 8×8 × 8 images, im2col for 128
    /// channels at 8×8 × 1 image. With the weights prepared once per prediction, f is instead
    /// the reading of the transformed weights from memory per block of tiles (about 144 and 64
    /// bytes a channel pair: the same order of magnitude), and the same estimates hold: on
    /// chunks of two 32×32 images, Ho et al.'s network took 0.43 s per prediction of 8 with
    /// their choice (F(4×4) at 32×32, F(2×2) at 16×16 and 8×8, im2col at 4×4), 0.45–0.48 s with
    /// F(4×4) at 16×16 or im2col at 8×8, 0.75–0.92 s with F(4×4) below.
    func estimatedCost(_ algorithm: Algorithm, batch B: Int, height H: Int, width W: Int) -> Double {
        let (ci, co) = (Double(inChannels), Double(outChannels))
        let perChannel = (ci + co) / (ci * co)
        switch algorithm {
        case .winograd(let m):
            let tiles = Double(B * ((H + m - 1) / m) * ((W + m - 1) / m))
            let filterBytes = (m + 2) * (m + 2) * inChannels * outChannels * 4
            let f = m == 2 ? 6.0 : filterBytes <= 5 << 19 ? 10.0 : 35.0
            let (g, t) = m == 2 ? (0.09, 5.0) : (0.2, 10.0)
            return f + tiles * (g + t * perChannel)
        default:
            return Double(B * H * W) * (0.1 + 2 / co)
        }
    }

    /// Floats of `columns` scratch that forward and backward need for a batch of B H × W images:
    /// the most any candidate algorithm needs (so that any smaller batch fits too, whichever
    /// algorithm it takes).
    func columnsCount(batch B: Int, height H: Int, width W: Int) -> Int {
        candidates(height: H, width: W).map { algorithm in
            if case .winograd(let m) = algorithm {
                return [false, true].map {
                    WinogradPlan(self, tile: m, batch: B, height: H, width: W, preparedFilters: $0).scratchCount
                }.max()!
            }
            return im2colScratchCount(batch: B, height: H, width: W)
        }.max()!
    }

    /// out (Co, B, Ho, Wo) = conv(inp (Ci, B, H, W)) + b, or out += … when `accumulate`.
    /// `columns` is scratch of `columnsCount` floats. The weights come from `prepared` when it
    /// holds them for this call's algorithm and `params` (Conv2d+Prepared.swift): the same bits.
    func forward(_ out: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>, _ params: UnsafePointer<Float>,
                 columns: UnsafeMutablePointer<Float>, batch B: Int, height H: Int, width W: Int,
                 accumulate: Bool = false, prepared: PreparedWeights? = nil) {
        let algorithm = algorithm(batch: B, height: H, width: W)
        let weights = prepared?.weights(self, algorithm, params: params)
        if case .winograd(let m) = algorithm {
            let plan = WinogradPlan(self, tile: m, batch: B, height: H, width: W, preparedFilters: weights != nil)
            forwardWinograd(out, inp, params, scratch: columns, plan, accumulate: accumulate, filters: weights)
        } else {
            forwardIm2col(out, inp, params, columns: columns, batch: B, height: H, width: W, accumulate: accumulate,
                          packedWeights: weights?.pointer)
        }
    }

    /// In the forward pass this was: out = conv(inp) + b, so
    /// dW (Co, Ci, kh, kw) += Σ dout ⋆ inp,  db (Co,) += Σ_M dout,  dinp (Ci, B, H, W) (+)= convᵀ(dout)
    /// (the convolution's transpose: for stride 1, the convolution of dout with the kernel
    /// rotated by 180° and Ci, Co swapped).
    /// `dinp` may be nil when the input needs no gradient; it is overwritten unless `accumulate`.
    /// `dinp` must not alias `dout` or `inp`.
    func backward(dinp: UnsafeMutablePointer<Float>?, _ grads: UnsafeMutablePointer<Float>,
                  dout: UnsafePointer<Float>, inp: UnsafePointer<Float>, _ params: UnsafePointer<Float>,
                  columns: UnsafeMutablePointer<Float>, batch B: Int, height H: Int, width W: Int,
                  accumulate: Bool = false) {
        if case .winograd(let m) = algorithm(batch: B, height: H, width: W) {
            let plan = WinogradPlan(self, tile: m, batch: B, height: H, width: W)
            backwardWinograd(dinp: dinp, grads, dout: dout, inp: inp, params, scratch: columns, plan, accumulate: accumulate)
        } else {
            backwardIm2col(dinp: dinp, grads, dout: dout, inp: inp, params, columns: columns, batch: B, height: H, width: W,
                           accumulate: accumulate)
        }
    }
}
