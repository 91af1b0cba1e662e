/*
 * from_diffusers.c — a diffusers model sampled through the C API: loads a checkpoint converted
 * from a diffusers folder, draws N images with DPM-Solver++ (20 steps by default, one seed),
 * writes them as one binary PPM grid and prints the time taken. The C twin of
 * examples/python/from_diffusers.py.
 *
 *   python -m swiftddpm convert ddpm-cifar10-32 --out cifar10.safetensors   (the weight mapping is Python's)
 *   make examples/c/from_diffusers
 *   ./examples/c/from_diffusers cifar10.safetensors [--out grid.ppm] [--n 16] [--steps 20] [--seed 0]
 *                               [--raw samples.f32]
 *
 * --raw also writes the samples as (n, C, H, W) float32 in the machine's byte order, which
 * make test compares with Python's Model.sample(n, method="dpm_solver++", steps=S, seed=seed).
 * Every status is checked: a failed call prints its status and ddpm_last_error(), exit 1.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ddpm.h"

#define CHECK(x)                                                                               \
    do {                                                                                       \
        int s_ = (x);                                                                          \
        if (s_ != DDPM_OK) {                                                                   \
            fprintf(stderr, "%s failed: %s: %s\n", #x, ddpm_status_string(s_), ddpm_last_error()); \
            exit(1);                                                                           \
        }                                                                                      \
    } while (0)

static void usage(const char *argv0) {
    fprintf(stderr, "usage: %s CHECKPOINT [--out grid.ppm] [--n N] [--steps S] [--seed SEED] [--raw FILE]\n", argv0);
    exit(2);
}

/* A pixel of x in [-1, 1]: (x + 1)/2 · 255, rounded half up, clamped to 0..255. */
static unsigned char to_byte(float x) {
    float v = floorf((x + 1.0f) * 127.5f + 0.5f);
    return (unsigned char)(v < 0.0f ? 0.0f : v > 255.0f ? 255.0f : v);
}

/* samples: (n, c, h, w); the grid is cols = ⌈√n⌉ images wide, ⌈n / cols⌉ high, empty cells black.
 * Grey images (c = 1) are written as RGB with equal channels. P6: "P6\n<W> <H>\n255\n" then RGB bytes. */
static int write_ppm(const char *path, const float *samples, int n, int c, int h, int w) {
    int cols = (int)ceil(sqrt((double)n)), rows = (n + cols - 1) / cols;
    int gw = cols * w, gh = rows * h;
    unsigned char *rgb = calloc((size_t)gw * gh * 3, 1);
    if (rgb == NULL) return -1;
    for (int k = 0; k < n; k++)
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                for (int ch = 0; ch < 3; ch++) {
                    const float *image = samples + (size_t)k * c * h * w;
                    float v = image[((size_t)(c == 1 ? 0 : ch) * h + y) * w + x];
                    size_t gy = (size_t)(k / cols) * h + y, gx = (size_t)(k % cols) * w + x;
                    rgb[(gy * gw + gx) * 3 + ch] = to_byte(v);
                }
    FILE *f = fopen(path, "wb");
    int ok = f != NULL && fprintf(f, "P6\n%d %d\n255\n", gw, gh) > 0 &&
             fwrite(rgb, 1, (size_t)gw * gh * 3, f) == (size_t)gw * gh * 3;
    if (f != NULL && fclose(f) != 0) ok = 0;
    free(rgb);
    return ok ? 0 : -1;
}

int main(int argc, char **argv) {
    const char *checkpoint = NULL, *out = "from_diffusers.ppm", *raw = NULL;
    long n = 16, steps = 20;
    unsigned long long seed = 0;
    for (int i = 1; i < argc; i++) {
        if (argv[i][0] != '-') { if (checkpoint != NULL) usage(argv[0]); checkpoint = argv[i]; continue; }
        if (i + 1 >= argc) usage(argv[0]);
        const char *flag = argv[i], *value = argv[++i];
        char *end = NULL;
        if (strcmp(flag, "--out") == 0) out = value;
        else if (strcmp(flag, "--raw") == 0) raw = value;
        else if (strcmp(flag, "--n") == 0) n = strtol(value, &end, 10);
        else if (strcmp(flag, "--steps") == 0) steps = strtol(value, &end, 10);
        else if (strcmp(flag, "--seed") == 0) seed = strtoull(value, &end, 10);
        else usage(argv[0]);
        if (end != NULL && (*end != '\0' || end == value)) usage(argv[0]);
    }
    if (checkpoint == NULL || n < 1 || n > 4096 || steps < 1 || steps > 100000) usage(argv[0]);

    ddpm_model *model = NULL;
    CHECK(ddpm_model_load(checkpoint, &model));
    if (ddpm_model_network_kind(model) != DDPM_NETWORK_UNET) {
        fprintf(stderr, "%s is not an image model (a UNet)\n", checkpoint);
        return 1;
    }
    ddpm_unet_params unet = ddpm_unet_params_default();
    CHECK(ddpm_model_get_network(model, &unet.base));
    int c = unet.channels, h = unet.height, w = unet.width;
    if (h == 1 || (c != 1 && c != 3)) {
        fprintf(stderr, "%s: %d×%d×%d samples are not grey or RGB images\n", checkpoint, c, h, w);
        return 1;
    }
    printf("%s: UNet %d×%d×%d, %lld parameters\n", checkpoint, c, h, w, (long long)ddpm_model_num_parameters(model));

    int64_t count = (int64_t)n * ddpm_model_sample_size(model);
    float *samples = malloc((size_t)count * sizeof(float));
    if (samples == NULL) { fprintf(stderr, "out of memory for %lld floats\n", (long long)count); return 1; }
    ddpm_sample_params smp = ddpm_sample_params_default();
    smp.method = DDPM_METHOD_DPM_SOLVER_PP;  /* solver_order 2 (2M), x̂0 not clipped: Model.sample's defaults */
    smp.steps = (int32_t)steps;
    smp.seed = seed;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CHECK(ddpm_model_sample(model, &smp, NULL, NULL, n, samples, count));  /* EMA weights, unconditional */
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double seconds = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    printf("%ld images in %ld DPM-Solver++ steps (seed %llu): %.2f s\n", n, steps, seed, seconds);

    if (write_ppm(out, samples, (int)n, c, h, w) != 0) { perror(out); return 1; }
    printf("wrote %s\n", out);
    if (raw != NULL) {
        FILE *f = fopen(raw, "wb");
        if (f == NULL || fwrite(samples, sizeof(float), (size_t)count, f) != (size_t)count || fclose(f) != 0) {
            perror(raw);
            return 1;
        }
        printf("wrote %s\n", raw);
    }
    free(samples);
    ddpm_model_free(model);
    return 0;
}
