// The one place where a C kernel's pass is cut into ranges of independent work (groups of a
// GroupNorm, rows of a LayerNorm): a kernel gives the same bits for any cut, because each
// range's outputs are computed on their own with a fixed order inside.
//
// Today every pass runs as one range on the calling thread. When the WorkPool can run a job
// "on the pool if it is free, else inline" (the GEMM's entry), this is where a large pass
// called outside the train step's chunk jobs (a prediction of one chunk) gets split.
enum KernelSplit {
    /// body(lo, hi) over ranges covering 0..<count in order; `grain` is the least work unit a
    /// range should hold.
    @inline(__always)
    static func run(_ count: Int, grain: Int = 1, _ body: (_ lo: Int, _ hi: Int) -> Void) {
        guard count > 0 else { return }
        body(0, count)
    }
}
