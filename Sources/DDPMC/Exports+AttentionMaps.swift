// ddpm_model_cross_attention*: the UNet's cross-attention maps (Model/DiffusionModel+AttentionMaps.swift).
import CDDPM
import DDPM

@_cdecl("ddpm_model_cross_attention_layers")
public func ddpm_model_cross_attention_layers(_ handle: OpaquePointer?, _ heights: UnsafeMutablePointer<Int32>?,
                                              _ widths: UnsafeMutablePointer<Int32>?, _ count: Int64) -> Int32 {
    guard let m = try? model(handle) else { return -1 }
    let sizes = m.crossAttentionSizes
    for (k, size) in sizes.prefix(Int(max(0, min(count, Int64(sizes.count))))).enumerated() {
        heights?[k] = Int32(size.height)
        widths?[k] = Int32(size.width)
    }
    return Int32(sizes.count)
}

@_cdecl("ddpm_model_cross_attention")
public func ddpm_model_cross_attention(
    _ handle: OpaquePointer?, _ params: UnsafePointer<ddpm_predict_params>?, _ layer: Int32,
    _ xt: UnsafePointer<Float>?, _ batch: Int64, _ t: Int32, _ cond: UnsafePointer<ddpm_cond_batch>?,
    _ out: UnsafeMutablePointer<Float>?, _ count: Int64
) -> Int32 {
    guarded("ddpm_model_cross_attention") {
        let m = try model(handle)
        let options = try predictOptions(params)
        let (xt, out) = (try nonNull(xt, "x_t"), try nonNull(out, "out"))
        let sizes = m.crossAttentionSizes
        guard sizes.indices.contains(Int(layer)) else {
            throw DDPMError.invalidArgument("layer must be in 0..<\(sizes.count), the model's cross-attention layers (got \(layer))")
        }
        _ = try checkCount(count, rows: batch, cols: Int64(sizes[Int(layer)].height * sizes[Int(layer)].width * m.conditioning.maxLength),
                           "out (batch × height·width × max_length)")
        let cond = try conditionBatch(cond, rows: batch, m.conditioning)
        try m.crossAttentionMaps(out, layer: Int(layer), x: xt, t: Int(t), cond: cond, batch: Int(batch), useEMA: options.useEMA)
    }
}
