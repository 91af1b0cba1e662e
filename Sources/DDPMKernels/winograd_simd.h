// The vector vocabulary of the Winograd kernels (private to DDPMKernels; winograd.inc).
//
// A per-path file defines WINO_VW (floats a vector: 16 for AVX-512, 8 for AVX2, 4 for the
// baseline) and includes this inside its target region. `wf` is a vector of WINO_VW floats
// (clang's ext_vector_type): +, − and × act lane by lane with IEEE rounding, and wfma is one
// fused multiply-add a lane (an fmaf call per lane on the baseline, which has no FMA
// instruction), so a lane's result has the same bits whatever the width. `wd` holds as many
// doubles (the filter transforms run in double).
//
// wtranspose transposes WINO_VW vectors of WINO_VW lanes in registers (pure data movement):
// AVX-512 and AVX2 shuffles, SSE's 4 × 4, or a copy through memory elsewhere.
#ifndef DDPM_WINOGRAD_SIMD_H
#define DDPM_WINOGRAD_SIMD_H

#include <string.h>

#ifndef WINO_VW
#error "define WINO_VW (floats a vector) before including winograd_simd.h"
#endif

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

typedef float wf __attribute__((ext_vector_type(WINO_VW)));
typedef double wd __attribute__((ext_vector_type(WINO_VW)));

static inline wf wload(const float *p) { wf v; memcpy(&v, p, sizeof v); return v; }
static inline void wstore(float *p, wf v) { memcpy(p, &v, sizeof v); }
static inline wf wsplat(float x) { wf v = x; return v; }
/// a·b + c, rounded once.
static inline wf wfma(float a, wf b, wf c) { return __builtin_elementwise_fma(wsplat(a), b, c); }

#if WINO_VW == 16
static inline void wtranspose(wf r[16]) {
    __m512 t[16], s[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps((__m512)r[2 * i], (__m512)r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps((__m512)r[2 * i], (__m512)r[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++) {  // groups of 4 rows: (t0 t2)(t1 t3) of each
        s[4 * i + 0] = _mm512_shuffle_ps(t[4 * i + 0], t[4 * i + 2], 0x44);
        s[4 * i + 1] = _mm512_shuffle_ps(t[4 * i + 0], t[4 * i + 2], 0xEE);
        s[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
        s[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
    }
    for (int i = 0; i < 4; i++) {  // 128-bit lanes: rows 0-3 with 4-7, 8-11 with 12-15
        t[i] = _mm512_shuffle_f32x4(s[i], s[i + 4], 0x88);
        t[i + 4] = _mm512_shuffle_f32x4(s[i], s[i + 4], 0xDD);
        t[i + 8] = _mm512_shuffle_f32x4(s[i + 8], s[i + 12], 0x88);
        t[i + 12] = _mm512_shuffle_f32x4(s[i + 8], s[i + 12], 0xDD);
    }
    for (int i = 0; i < 8; i++) {
        r[i] = (wf)_mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
        r[i + 8] = (wf)_mm512_shuffle_f32x4(t[i], t[i + 8], 0xDD);
    }
}
#elif WINO_VW == 8
static inline void wtranspose(wf r[8]) {
    __m256 t[8], s[8];
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_ps((__m256)r[2 * i], (__m256)r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps((__m256)r[2 * i], (__m256)r[2 * i + 1]);
    }
    for (int i = 0; i < 2; i++) {
        s[4 * i + 0] = _mm256_shuffle_ps(t[4 * i + 0], t[4 * i + 2], 0x44);
        s[4 * i + 1] = _mm256_shuffle_ps(t[4 * i + 0], t[4 * i + 2], 0xEE);
        s[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
        s[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
    }
    for (int i = 0; i < 4; i++) {
        r[i] = (wf)_mm256_permute2f128_ps(s[i], s[i + 4], 0x20);
        r[i + 4] = (wf)_mm256_permute2f128_ps(s[i], s[i + 4], 0x31);
    }
}
#elif WINO_VW == 4 && (defined(__x86_64__) || defined(__i386__))
static inline void wtranspose(wf r[4]) {
    __m128 a = (__m128)r[0], b = (__m128)r[1], c = (__m128)r[2], d = (__m128)r[3];
    _MM_TRANSPOSE4_PS(a, b, c, d);
    r[0] = (wf)a, r[1] = (wf)b, r[2] = (wf)c, r[3] = (wf)d;
}
#else
static inline void wtranspose(wf r[WINO_VW]) {
    float m[WINO_VW][WINO_VW];
    for (int i = 0; i < WINO_VW; i++)
        for (int j = 0; j < WINO_VW; j++) m[j][i] = r[i][j];
    for (int i = 0; i < WINO_VW; i++) r[i] = wload(m[i]);
}
#endif

#endif
