// The elementwise kernels, one row each, for the per-path declarations and the dispatchers of
// elementwise.c: K(return type, name, (parameters), (arguments)). Private to DDPMKernels.
#ifndef DDPM_ELEMENTWISE_KERNELS_H
#define DDPM_ELEMENTWISE_KERNELS_H

#define DDPM_ELEMENTWISE_KERNELS(K)                                                                                     \
    K(void, ddpm_exp, (float *out, const float *inp, int64_t n), (out, inp, n))                                        \
    K(void, ddpm_silu_forward, (float *out, const float *inp, int64_t n), (out, inp, n))                               \
    K(void, ddpm_silu_backward, (float *dinp, const float *dout, const float *inp, int64_t n), (dinp, dout, inp, n))   \
    K(void, ddpm_add_inplace, (float *out, const float *a, int64_t n), (out, a, n))                                    \
    K(float, ddpm_sum, (const float *x, int64_t n), (x, n))                                                            \
    K(void, ddpm_sum_dot, (const float *a, const float *b, int64_t n, float *sum, float *dot), (a, b, n, sum, dot))    \
    K(float, ddpm_dot, (const float *a, const float *b, int64_t n), (a, b, n))                                         \
    K(float, ddpm_squared_deviations, (const float *x, int64_t n, float m), (x, n, m))                                 \
    K(double, ddpm_sum_squares_f64, (const float *x, int64_t n), (x, n))                                               \
    K(void, ddpm_groupnorm_forward,                                                                                     \
      (const ddpm_groupnorm_params *p, float *out, float *mean, float *rstd, const float *inp, int64_t g0, int64_t g1), \
      (p, out, mean, rstd, inp, g0, g1))                                                                                \
    K(void, ddpm_groupnorm_backward,                                                                                    \
      (const ddpm_groupnorm_params *p, float *dinp, int accumulate, float *dgamma, float *dbeta, float *dbias,         \
       float *dout, const float *inp, const float *mean, const float *rstd, int64_t g0, int64_t g1),                    \
      (p, dinp, accumulate, dgamma, dbeta, dbias, dout, inp, mean, rstd, g0, g1))                                       \
    K(void, ddpm_layernorm_forward,                                                                                     \
      (float *out, float *mean, float *rstd, const float *inp, const float *gamma, const float *beta, const float *add, \
       int64_t C, float epsilon, int64_t r0, int64_t r1),                                                               \
      (out, mean, rstd, inp, gamma, beta, add, C, epsilon, r0, r1))                                                     \
    K(void, ddpm_layernorm_backward,                                                                                    \
      (float *dinp, float *dgamma, float *dbeta, const float *dout, const float *inp, const float *mean,               \
       const float *rstd, const float *gamma, int64_t C, int64_t r0, int64_t r1),                                       \
      (dinp, dgamma, dbeta, dout, inp, mean, rstd, gamma, C, r0, r1))                                                   \
    K(void, ddpm_adamw_update,                                                                                          \
      (const ddpm_adamw_step *k, float *params, float *m, float *v, const float *grads, float *ema, int64_t n),        \
      (k, params, m, v, grads, ema, n))                                                                                 \
    K(void, ddpm_ema_update, (float *ema, const float *params, float keep, int64_t n), (ema, params, keep, n))         \
    K(void, ddpm_philox_normal, (float *out, int64_t count, uint64_t seed, uint64_t counter, uint64_t high),            \
      (out, count, seed, counter, high))                                                                               \
    K(int64_t, ddpm_adamw_first_nonfinite,                                                                              \
      (const ddpm_adamw_step *k, const float *params, const float *m, const float *v, const float *grads,              \
       const float *ema, int64_t n, int32_t *which, float *value, double *sizes),                                       \
      (k, params, m, v, grads, ema, n, which, value, sizes))                                                           \
    K(void, ddpm_im2col_s1,                                                                                             \
      (float *columns, const float *inp, int64_t channels, int64_t channel_stride, int64_t total, int64_t kh,          \
       int64_t kw, int64_t py, int64_t px, int64_t W, const float *keep, int64_t run),                                  \
      (columns, inp, channels, channel_stride, total, kh, kw, py, px, W, keep, run))                                    \
    K(void, ddpm_col2im_s1,                                                                                             \
      (float *dinp, const float *columns, int64_t channels, int64_t channel_stride, int64_t total, int64_t kh,         \
       int64_t kw, int64_t py, int64_t px, int64_t W, const float *keep, int64_t run, int overwrite),                   \
      (dinp, columns, channels, channel_stride, total, kh, kw, py, px, W, keep, run, overwrite))

#endif
