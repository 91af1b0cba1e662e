// The Winograd kernels' entry points (ddpm_winograd.h): each calls its ISA path's version
// (winograd_<path>.c, all compiled from winograd.inc).
#include <stddef.h>

#include "isa.h"
#include "ddpm_winograd.h"

#define WINO_PATHS(name, params)                      \
    void name##_baseline params;                      \
    void name##_avx2 params;                          \
    void name##_avx512 params;

WINO_PATHS(ddpm_wino_stage_in, (float *, size_t, size_t, size_t, const float *, size_t, size_t, size_t, size_t, ptrdiff_t))
WINO_PATHS(ddpm_wino_stage_out, (float *, size_t, size_t, size_t, const float *, size_t, size_t, size_t, const float *, int))
WINO_PATHS(ddpm_wino_input, (int, float *, size_t, const float *, size_t, size_t, size_t, size_t))
WINO_PATHS(ddpm_wino_output, (int, float *, size_t, size_t, const float *, size_t, size_t, size_t))
WINO_PATHS(ddpm_wino_grad_output, (int, float *, size_t, const float *, size_t, size_t, size_t, size_t))
WINO_PATHS(ddpm_wino_filter, (int, float *, size_t, size_t, const float *, size_t, size_t, size_t, size_t, int))
WINO_PATHS(ddpm_wino_filter_grad, (int, float *, size_t, size_t, const float *, size_t, size_t))

#if DDPM_X86
#define WINO_CALL(name, args)                                   \
    switch (ddpm_kernels_isa()) {                               \
    case DDPM_ISA_AVX512: name##_avx512 args; return;           \
    case DDPM_ISA_AVX2: name##_avx2 args; return;               \
    default: name##_baseline args; return;                      \
    }
#else
#define WINO_CALL(name, args) name##_baseline args;
#endif

void ddpm_wino_stage_in(float *stage, size_t cp, size_t rows, size_t wp, const float *img, size_t channels,
                        size_t plane, size_t height, size_t width, ptrdiff_t y0) {
    WINO_CALL(ddpm_wino_stage_in, (stage, cp, rows, wp, img, channels, plane, height, width, y0))
}

void ddpm_wino_stage_out(float *img, size_t channels, size_t plane, size_t width, const float *stage, size_t cp,
                         size_t wq, size_t rows, const float *bias, int accumulate) {
    WINO_CALL(ddpm_wino_stage_out, (img, channels, plane, width, stage, cp, wq, rows, bias, accumulate))
}

void ddpm_wino_input(int m, float *v, size_t ldxi, const float *stage, size_t cp, size_t wp, size_t tiles_y,
                     size_t tiles_x) {
    WINO_CALL(ddpm_wino_input, (m, v, ldxi, stage, cp, wp, tiles_y, tiles_x))
}

void ddpm_wino_output(int m, float *stage, size_t cp, size_t wq, const float *mm, size_t ldxi, size_t tiles_y,
                      size_t tiles_x) {
    WINO_CALL(ddpm_wino_output, (m, stage, cp, wq, mm, ldxi, tiles_y, tiles_x))
}

void ddpm_wino_grad_output(int m, float *z, size_t ldxi, const float *stage, size_t cp, size_t wp, size_t tiles_y,
                           size_t tiles_x) {
    WINO_CALL(ddpm_wino_grad_output, (m, z, ldxi, stage, cp, wp, tiles_y, tiles_x))
}

void ddpm_wino_filter(int m, float *u, size_t ldxi, size_t ldr, const float *w, size_t rows, size_t w_row,
                      size_t lanes, size_t w_lane, int flip) {
    WINO_CALL(ddpm_wino_filter, (m, u, ldxi, ldr, w, rows, w_row, lanes, w_lane, flip))
}

void ddpm_wino_filter_grad(int m, float *w, size_t rows, size_t lanes, const float *du, size_t ldxi, size_t ldr) {
    WINO_CALL(ddpm_wino_filter_grad, (m, w, rows, lanes, du, ldxi, ldr))
}
