// DDPMKernels: the engine's hot loops in C, compiled once per instruction set and chosen at
// run time (issue 18). The shipped library runs on any x86-64: nothing here is built with
// -march=native; each ISA path is a set of functions compiled with a target attribute
// (see isa.h), and the path is picked once from the CPU's feature flags.
//
// Paths: BASELINE (any x86-64, or another architecture), AVX2 (+FMA), AVX512 (F, BW, DQ, VL).
// Every kernel gives bitwise the same results on every path: products are added with an
// explicit fused multiply-add in the same order on each path (fmaf on BASELINE), vector
// widths only change how many independent outputs run at once, and a reduction keeps the
// same 16 partial sums whatever the vector width. So a seed gives the same bits on any
// machine, the pinned-values test holds on each path, and tests can compare the paths on
// one machine (ddpm_kernels_set_isa).
//
// The engine (Swift) calls these through the module DDPMKernels; they are not part of the
// public C API (include/ddpm.h).
#ifndef DDPM_KERNELS_H
#define DDPM_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    DDPM_ISA_BASELINE = 0,
    DDPM_ISA_AVX2 = 1,    /* AVX2 + FMA */
    DDPM_ISA_AVX512 = 2,  /* AVX-512 F, BW, DQ, VL */
} ddpm_isa;

/// The path the kernels use now: the best the CPU supports, unless DDPM_KERNEL_ISA
/// (baseline | avx2 | avx512) asked for a lower one at the first call, or
/// ddpm_kernels_set_isa changed it.
ddpm_isa ddpm_kernels_isa(void);

/// The best path this CPU supports.
ddpm_isa ddpm_kernels_best_isa(void);

/// Uses `isa` from now on (tests compare the paths). Returns 0, or -1 when the CPU lacks it
/// (nothing changes then). Not to be called while kernels run on other threads.
int ddpm_kernels_set_isa(ddpm_isa isa);

/// "baseline", "avx2" or "avx512".
const char *ddpm_isa_name(ddpm_isa isa);

// ---- Elementwise and normalisation kernels (activation.inc, reduce.inc, groupnorm.inc,
// layernorm.inc, optimizer.inc). Floats are (count) runs; outputs may alias inputs of the same
// index only where a kernel says so. Reductions keep 16 partial sums combined in a fixed tree.

/// out = e^inp (FastMath.swift's fastExp, the same bits). out may alias inp.
void ddpm_exp(float *out, const float *inp, int64_t n);
/// out = inp·σ(inp). out may alias inp.
void ddpm_silu_forward(float *out, const float *inp, int64_t n);
/// dinp = dout·σ(x)·(1 + x·(1 − σ(x))), x = inp. dinp may alias dout.
void ddpm_silu_backward(float *dinp, const float *dout, const float *inp, int64_t n);
/// out += a.
void ddpm_add_inplace(float *out, const float *a, int64_t n);
/// The `count` N(0, 1) draws of Philox(seed, counter, high).fillNormal (Sources/DDPM/Kernels/
/// Philox.swift): Philox 4x32-10 blocks from `counter` on, Box–Muller on pairs; the same bits.
void ddpm_philox_normal(float *out, int64_t count, uint64_t seed, uint64_t counter, uint64_t high);

/// Σ x
float ddpm_sum(const float *x, int64_t n);
/// *sum = Σ a, *dot = Σ a·b
void ddpm_sum_dot(const float *a, const float *b, int64_t n, float *sum, float *dot);
/// Σ a·b
float ddpm_dot(const float *a, const float *b, int64_t n);
/// Σ (x − m)²
float ddpm_squared_deviations(const float *x, int64_t n, float m);
/// Σ x², each square and the 16 partial sums in double.
double ddpm_sum_squares_f64(const float *x, int64_t n);

/// A group normalisation over channel-major images (C, B, N), and what a ResBlock fuses into
/// its pass: x = inp + bias_bc;  n = (x − μ_bg)·rstd_bg·γ_c + β_c;  y = SiLU(n) when silu;
/// y ·= mask when mask (dropout).
typedef struct {
    int64_t channels, batch, pixels, groups;  // C, B, N, G (G divides C)
    float epsilon;
    const float *gamma, *beta;  // (C,)
    const float *bias;  // (B, C) added to every pixel of (image b, channel c) first; NULL: none
    int32_t silu;  // nonzero: y = SiLU(n)
    /// (C, B, N) dropout after SiLU, or NULL: forward reads uniforms u here and leaves the mask
    /// [u ≥ p]·keep; backward reads the mask.
    float *mask;
    float drop_probability, drop_keep;  // p and 1/(1 − p)
} ddpm_groupnorm_params;

/// out (C, B, N) = y, mean and rstd (B, G) of groups [g0, g1) of every image. out must not
/// alias inp.
void ddpm_groupnorm_forward(const ddpm_groupnorm_params *p, float *out, float *mean, float *rstd, const float *inp,
                            int64_t g0, int64_t g1);
/// Backward of groups [g0, g1) from dout = ∂L/∂y (C, B, N): dinp = ∂L/∂inp (+= when
/// accumulate), dgamma, dbeta (C,) +=, dbias (B, C) = Σ_N ∂L/∂x when not NULL. When silu or
/// mask, dout is overwritten with ∂L/∂n. dinp must not alias dout or inp.
void ddpm_groupnorm_backward(const ddpm_groupnorm_params *p, float *dinp, int accumulate, float *dgamma, float *dbeta,
                             float *dbias, float *dout, const float *inp, const float *mean, const float *rstd,
                             int64_t g0, int64_t g1);

/// Rows [r0, r1) of out (R, C) = (x − μ)·rstd·γ + β (+ add (R, C) when not NULL); mean, rstd (R,).
void ddpm_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *gamma, const float *beta,
                            const float *add, int64_t C, float epsilon, int64_t r0, int64_t r1);
/// Rows [r0, r1): dinp (R, C) += ∂L/∂inp; dgamma, dbeta (C,) += (rows in order).
void ddpm_layernorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout, const float *inp,
                             const float *mean, const float *rstd, const float *gamma, int64_t C, int64_t r0, int64_t r1);

/// The constants of one AdamW update (Training/AdamW.swift) and of the EMA step after it.
typedef struct {
    float step_size;  // lr/(1 − β1ⁿ)
    float decay;  // 1 − lr·λ
    float rbias2;  // 1/√(1 − β2ⁿ)
    float beta1, beta2, one_minus_beta1, one_minus_beta2, epsilon;
    float grad_scale;  // gradient clipping's factor
    float ema_keep;  // 1 − the EMA's decay
} ddpm_adamw_step;

/// AdamW on n parameters (m, v: the moments), then the EMA step on ema when not NULL.
void ddpm_adamw_update(const ddpm_adamw_step *k, float *params, float *m, float *v, const float *grads, float *ema,
                       int64_t n);
/// ema += keep·(params − ema)
void ddpm_ema_update(float *ema, const float *params, float keep, int64_t n);
/// The first index whose updated moment, parameter or EMA value (ema not NULL) would not be
/// finite, with which (0 m, 1 v, 2 θ, 3 EMA) and that value; −1 when all are. When every value
/// is finite, sizes[0] = Σ(θ' − θ)² and sizes[1] = Σθ² (each lane summed in float: they only
/// size the update against the weights, issue 19). Writes nothing else.
int64_t ddpm_adamw_first_nonfinite(const ddpm_adamw_step *k, const float *params, const float *m, const float *v,
                                   const float *grads, const float *ema, int64_t n, int32_t *which, float *value,
                                   double *sizes);

/// The stride-1 im2col of a kh × kw convolution (padding py, px) over a chunk of images of
/// width W read as one run of `total` floats a channel (channel ci at inp + ci·channel_stride):
/// columns (channels·kh·kw, total), row (ci, tap) = the run shifted by the tap's flat offset,
/// its bits kept where keep (kh·kw, run) is all ones (keep repeats every `run` floats, a multiple
/// of the image's H·W, from the run's start) and 0 elsewhere, and 0 where the source is past the run.
void ddpm_im2col_s1(float *columns, const float *inp, int64_t channels, int64_t channel_stride, int64_t total,
                    int64_t kh, int64_t kw, int64_t py, int64_t px, int64_t W, const float *keep, int64_t run);
/// Its col2im: dinp's runs (+)= each row masked as above, shifted back, taps in order after the
/// centre tap (which assigns when `overwrite`).
void ddpm_col2im_s1(float *dinp, const float *columns, int64_t channels, int64_t channel_stride, int64_t total,
                    int64_t kh, int64_t kw, int64_t py, int64_t px, int64_t W, const float *keep, int64_t run,
                    int overwrite);

#ifdef __cplusplus
}
#endif

#endif
