// The vector vocabulary the elementwise kernels are written in (private to DDPMKernels).
//
// A per-path file defines DDPM_VW (floats a vector: 16 for AVX-512, 8 for AVX2, 4 for the
// baseline's SSE2 or NEON) and includes this after DDPM_TARGET_BEGIN, then the kernels' *.inc
// files. `vf` is a vector of DDPM_VW floats (clang's ext_vector_type): +, −, ×, ÷ and √ act
// lane by lane with IEEE rounding, so an elementwise kernel gives every element the same bits
// whatever the width; the width only says how many elements go at once.
//
// Reductions keep 16 partial sums whatever the width: element i of a run adds into partial
// i mod 16 (NV = 16/DDPM_VW vectors of partials), and the 16 are combined in one fixed tree
// (tree16). A run whose length is not a multiple of 16 ends with one zero-padded block whose
// padding lanes add exactly 0 (kernels that transform before adding mask them first).
#ifndef DDPM_SIMD_H
#define DDPM_SIMD_H

#include <stdint.h>
#include <string.h>

#ifndef DDPM_VW
#error "define DDPM_VW (floats a vector) before including simd.h"
/// Copies the first r (< 16) floats of src (if any) into a zeroed 16-float block: the last,
/// partial block of a reduction's run.
static inline void pad16(float *block, const float *src, int64_t r) {
    memset(block, 0, sizeof(float) * 16);
    if (src) memcpy(block, src, sizeof(float) * (size_t)r);
}

#endif

typedef float vf __attribute__((ext_vector_type(DDPM_VW)));
typedef int32_t vi __attribute__((ext_vector_type(DDPM_VW)));  // comparisons' masks (−1 or 0)
typedef uint32_t vu __attribute__((ext_vector_type(DDPM_VW)));  // bit patterns (wrapping arithmetic)
/// Half a vector of floats, and as many doubles (for double-precision sums).
typedef float vfh __attribute__((ext_vector_type(DDPM_VW / 2)));
typedef double vdh __attribute__((ext_vector_type(DDPM_VW / 2)));

/// Vectors of a 16-float block.
#define NV (16 / DDPM_VW)
/// Vectors of doubles of a 16-value block.
#define NVD (32 / DDPM_VW)

static inline vf vload(const float *p) { vf v; memcpy(&v, p, sizeof v); return v; }
static inline void vstore(float *p, vf v) { memcpy(p, &v, sizeof v); }
static inline vf vsplat(float x) { vf v = x; return v; }
static inline vfh vloadh(const float *p) { vfh v; memcpy(&v, p, sizeof v); return v; }
/// a where m, else b.
static inline vf vsel(vi m, vf a, vf b) { return m ? a : b; }
static inline vf vsqrt(vf x) { return __builtin_elementwise_sqrt(x); }

/// Lanes of the 16-float block's vector j that hold one of the first r elements.
static inline vi vtail(int64_t j, int64_t r) {
    vi lane;
    for (int k = 0; k < DDPM_VW; k++) lane[k] = (int32_t)(j * DDPM_VW + k);
    return lane < (vi)(int32_t)r;
}

/// Lane indices of the 16-float block's vector j: j·DDPM_VW + k.
static inline vi vlanes(int64_t j) {
    vi lane;
    for (int k = 0; k < DDPM_VW; k++) lane[k] = (int32_t)(j * DDPM_VW + k);
    return lane;
}

/// Lane k of the result = lane k ^ w of v (w = 1, 2, 4 or 8, below DDPM_VW): swaps neighbouring runs of w lanes.
#if DDPM_VW == 16
#define VXOR_(v, w) __builtin_shufflevector(v, v, 0 ^ (w), 1 ^ (w), 2 ^ (w), 3 ^ (w), 4 ^ (w), 5 ^ (w), 6 ^ (w), 7 ^ (w), \
                                            8 ^ (w), 9 ^ (w), 10 ^ (w), 11 ^ (w), 12 ^ (w), 13 ^ (w), 14 ^ (w), 15 ^ (w))
#define VLEAD_(v, n) __builtin_shufflevector(v, v, 0 & ~((n) - 1), 1 & ~((n) - 1), 2 & ~((n) - 1), 3 & ~((n) - 1), 4 & ~((n) - 1), \
                                             5 & ~((n) - 1), 6 & ~((n) - 1), 7 & ~((n) - 1), 8 & ~((n) - 1), 9 & ~((n) - 1), 10 & ~((n) - 1), \
                                             11 & ~((n) - 1), 12 & ~((n) - 1), 13 & ~((n) - 1), 14 & ~((n) - 1), 15 & ~((n) - 1))
#elif DDPM_VW == 8
#define VXOR_(v, w) __builtin_shufflevector(v, v, 0 ^ (w), 1 ^ (w), 2 ^ (w), 3 ^ (w), 4 ^ (w), 5 ^ (w), 6 ^ (w), 7 ^ (w))
#define VLEAD_(v, n) __builtin_shufflevector(v, v, 0 & ~((n) - 1), 1 & ~((n) - 1), 2 & ~((n) - 1), 3 & ~((n) - 1), 4 & ~((n) - 1), \
                                             5 & ~((n) - 1), 6 & ~((n) - 1), 7 & ~((n) - 1))
#else
#define VXOR_(v, w) __builtin_shufflevector(v, v, 0 ^ (w), 1 ^ (w), 2 ^ (w), 3 ^ (w))
#define VLEAD_(v, n) __builtin_shufflevector(v, v, 0 & ~((n) - 1), 1 & ~((n) - 1), 2 & ~((n) - 1), 3 & ~((n) - 1))
#endif
static inline vf vxor_lanes(vf v, int64_t w) {
    switch (w) {
    case 1: return VXOR_(v, 1);
    case 2: return VXOR_(v, 2);
    case 4: return VXOR_(v, DDPM_VW > 4 ? 4 : 0);  // (a width's impossible cases compile to anything valid)
    default: return VXOR_(v, DDPM_VW > 8 ? 8 : 0);
    }
}

/// Every lane k of the result = lane k − k mod n of v (n = 1, 2, 4, 8, 16, at most DDPM_VW): the first lane of each run of n.
static inline vf vlead_lanes(vf v, int64_t n) {
    switch (n) {
    case 1: return v;
    case 2: return VLEAD_(v, 2);
    case 4: return VLEAD_(v, 4);
    case 8: return VLEAD_(v, DDPM_VW >= 8 ? 8 : 1);
    default: return VLEAD_(v, DDPM_VW >= 16 ? 16 : 1);
    }
}
#undef VXOR_
#undef VLEAD_

/// Σ of 16 partial sums in a fixed tree: p[k] + p[k+8], then + 4, + 2, + 1.
static inline float tree16(const vf *acc) {
    float p[16];
    memcpy(p, acc, sizeof p);
    for (int w = 8; w >= 1; w /= 2)
        for (int k = 0; k < w; k++) p[k] = p[k] + p[k + w];
    return p[0];
}

static inline double tree16d(const vdh *acc) {
    double p[16];
    memcpy(p, acc, sizeof p);
    for (int w = 8; w >= 1; w /= 2)
        for (int k = 0; k < w; k++) p[k] = p[k] + p[k + w];
    return p[0];
}

/// Copies the first r floats of src (if any) into a zeroed block of one vector: the tail of an
/// elementwise loop runs the loop's body on such copies, so every element gets the same operations.
static inline void vpad(float *block, const float *src, int64_t r) {
    memset(block, 0, sizeof(float) * DDPM_VW);
    if (src) memcpy(block, src, sizeof(float) * (size_t)r);
}

/// Copies the first r (< 16) floats of src (if any) into a zeroed 16-float block: the last,
/// partial block of a reduction's run.
static inline void pad16(float *block, const float *src, int64_t r) {
    memset(block, 0, sizeof(float) * 16);
    if (src) memcpy(block, src, sizeof(float) * (size_t)r);
}

#endif
