// ddpm_winograd.h — the Winograd convolution's transforms and data movement (F(4×4, 3×3) and
// F(2×2, 3×3)); the engine's Conv2d+Winograd.swift drives them around batched GEMMs.
//
//   m = 4 or 2 (the output tile), α = m + 2, ξ = i·α + j in 0 ..< α² (a frequency)
//   cp = channels padded with zeros to a multiple of 16 (floats a staged pixel, and the row
//        stride of the per-frequency matrices)
//
// A segment of an image (channel-major planes, `plane` floats apart) is staged pixel-major:
// stage[(r·wp + c)·cp + ch]. The input transform reads α × α patches of it with stride m
// (the staging has a one-pixel zero border: the convolution's padding), the output transform
// writes m × m tiles of the result, staged likewise (no border), and stage_out transposes them
// back into the planes. Per-frequency matrices are (tiles × cp) row-major, `ldxi` floats apart.
//
// Every function gives the same bits on every ISA path (see ddpm_kernels.h): lanes are
// channels and every lane does the same operations in the same order; fused multiply-adds
// are explicit; the filter transforms compute in double and round once.
#ifndef DDPM_WINOGRAD_H
#define DDPM_WINOGRAD_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/// stage[(r·wp + c)·cp + ch] = img[ch·plane + (y0 + r)·width + c − 1] for r < rows, c < wp,
/// ch < channels where that pixel is inside the image (height × width), else 0 (and 0 for
/// ch ≥ channels). `img` points at the image's first row; y0 may be −1. wp ≥ width + 2.
void ddpm_wino_stage_in(float *stage, size_t cp, size_t rows, size_t wp, const float *img, size_t channels,
                        size_t plane, size_t height, size_t width, ptrdiff_t y0);

/// img[ch·plane + r·width + x] = t, or += t when `accumulate`, with t = stage[(r·wq + x)·cp + ch]
/// (+ bias[ch] when bias is not NULL), for r < rows, x < width, ch < channels.
void ddpm_wino_stage_out(float *img, size_t channels, size_t plane, size_t width, const float *stage, size_t cp,
                         size_t wq, size_t rows, const float *bias, int accumulate);

/// Input transform of tiles_y × tiles_x tiles: tile t = ty·tiles_x + tx reads the α × α patch
/// at staged pixel (m·ty, m·tx) and writes v[ξ·ldxi + t·cp + ch] = (Bᵀ d B)[ξ].
void ddpm_wino_input(int m, float *v, size_t ldxi, const float *stage, size_t cp, size_t wp, size_t tiles_y,
                     size_t tiles_x);

/// Output transform: the m × m tile at staged pixel (m·ty, m·tx) (row stride wq pixels) =
/// Aᵀ M A, M[ξ] at mm[ξ·ldxi + t·cp + ch].
void ddpm_wino_output(int m, float *stage, size_t cp, size_t wq, const float *mm, size_t ldxi, size_t tiles_y,
                      size_t tiles_x);

/// The output gradient's transform (the adjoint of ddpm_wino_output): z[ξ·ldxi + t·cp + ch] =
/// (A dy Aᵀ)[ξ], dy the m × m tile at staged pixel (m·ty + 1, m·tx + 1) of a segment staged
/// with its border (ddpm_wino_stage_in).
void ddpm_wino_grad_output(int m, float *z, size_t ldxi, const float *stage, size_t cp, size_t wp, size_t tiles_y,
                           size_t tiles_x);

/// Filter transform: u[ξ·ldxi + r·ldr + l] = (G g Gᵀ)[ξ] for r < rows, l < lanes, with the
/// 3 × 3 kernel g[tap] = w[r·w_row + l·w_lane + tap] (tap = ky·3 + kx), or w[… + 8 − tap] when
/// `flip` (the kernel rotated by 180°: the backward-data convolution). For a convolution's
/// weights (Co, Ci, 3, 3): rows = Ci (w_row 9), lanes = Co (w_lane 9·Ci) give U[ξ] (Ci × Co);
/// rows = Co (w_row 9·Ci), lanes = Ci (w_lane 9) give (Co × Ci).
void ddpm_wino_filter(int m, float *u, size_t ldxi, size_t ldr, const float *w, size_t rows, size_t w_row,
                      size_t lanes, size_t w_lane, int flip);

/// The filter transform's adjoint for dU[ξ] (Co × Ci) at du[ξ·ldxi + r·ldr + l]:
/// w[(r·lanes + l)·9 + tap] += (Gᵀ dU G)[tap] for r < rows (Co), l < lanes (Ci).
void ddpm_wino_filter_grad(int m, float *w, size_t rows, size_t lanes, const float *du, size_t ldxi, size_t ldr);

#ifdef __cplusplus
}
#endif

#endif
