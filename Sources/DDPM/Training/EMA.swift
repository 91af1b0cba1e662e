// Exponential moving average of the weights, used for sampling:
//   θ_ema ← d·θ_ema + (1 − d)·θ       P = number of parameters.

enum EMA {
    static func update(_ ema: UnsafeMutablePointer<Float>, params: UnsafePointer<Float>, count: Int, decay: Float) {
        let keep = 1 - decay
        for i in 0..<count { ema[i] += keep * (params[i] - ema[i]) }
    }
}
