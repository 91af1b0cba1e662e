/*
 * swiss_roll.c — a C program linking libddpm: trains a residual-MLP diffusion model on the
 * 2-D swiss roll, samples it with DDPM and DDIM (also stepping a ddpm_sampler by hand),
 * saves and reloads a checkpoint, exercises a few error paths, and prints a summary. Exits
 * nonzero if anything is off.
 *
 *   make examples/c/swiss_roll && ./examples/c/swiss_roll [train_steps]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ddpm.h"
#include "swiss_roll_data.h"


#define N_DATA 4096
#define BATCH 256
#define N_SAMPLES 1000

/* Every bad call must fail with the expected status and leave the process running. */
static int check_errors(ddpm_schedule *sched, ddpm_model *model) {
    int failures = 0;
    float x[4] = {0, 0, 0, 0}, loss = 0;
    int32_t bad_label = 3;
#define EXPECT(call, code)                                                                     \
    do {                                                                                       \
        int s_ = (call);                                                                       \
        if (s_ != (code)) {                                                                    \
            fprintf(stderr, "expected %s from %s, got %s\n", ddpm_status_string(code), #call,  \
                    ddpm_status_string(s_));                                                   \
            failures++;                                                                        \
        }                                                                                      \
    } while (0)
    EXPECT(ddpm_model_train_step(NULL, x, 2, 4, NULL, &loss), DDPM_ERR_INVALID_ARGUMENT);
    EXPECT(ddpm_model_train_step(model, NULL, 2, 4, NULL, &loss), DDPM_ERR_INVALID_ARGUMENT);
    EXPECT(ddpm_model_train_step(model, x, 2, 3, NULL, &loss), DDPM_ERR_SHAPE);
    ddpm_cond_batch bad = ddpm_cond_batch_default();
    bad.labels = &bad_label;
    EXPECT(ddpm_model_train_step(model, x, 1, 2, &bad, &loss), DDPM_ERR_INVALID_ARGUMENT);
    x[1] = NAN;
    EXPECT(ddpm_model_train_step(model, x, 2, 4, NULL, &loss), DDPM_ERR_NON_FINITE);
    x[1] = 0;
    ddpm_model *missing = (ddpm_model *)0x1;
    EXPECT(ddpm_model_load("/nonexistent/dir/model.safetensors", &missing), DDPM_ERR_IO);
    if (missing != NULL) { fprintf(stderr, "failed load must set *out = NULL\n"); failures++; }
    int32_t t = 1000;
    EXPECT(ddpm_schedule_add_noise(sched, x, x, &t, 1, 4, x, 4), DDPM_ERR_INVALID_ARGUMENT);
    ddpm_schedule_params sp = ddpm_schedule_params_default();
    sp.kind = 7;
    ddpm_schedule *s2 = (ddpm_schedule *)0x1;
    EXPECT(ddpm_schedule_create(&sp, &s2), DDPM_ERR_INVALID_ARGUMENT);
    if (s2 != NULL) { fprintf(stderr, "failed create must set *out = NULL\n"); failures++; }
    /* Network structs: none, one not initialised by its _default(), one of an unknown kind. */
    ddpm_model *m2 = (ddpm_model *)0x1;
    EXPECT(ddpm_model_create(sched, NULL, NULL, NULL, &m2), DDPM_ERR_INVALID_ARGUMENT);
    if (m2 != NULL) { fprintf(stderr, "failed create must set *out = NULL\n"); failures++; }
    ddpm_mlp_params mp = ddpm_mlp_params_default();
    mp.data_dim = 2;
    mp.base.struct_size = 0;
    EXPECT(ddpm_model_create(sched, &mp.base, NULL, NULL, &m2), DDPM_ERR_INVALID_ARGUMENT);
    mp = ddpm_mlp_params_default();
    mp.data_dim = 2;
    mp.base.kind = 7;
    EXPECT(ddpm_model_create(sched, &mp.base, NULL, NULL, &m2), DDPM_ERR_INVALID_ARGUMENT);
    /* Reading the model's network back into the other kind's struct. */
    ddpm_unet_params wrong = ddpm_unet_params_default();
    EXPECT(ddpm_model_get_network(model, &wrong.base), DDPM_ERR_INVALID_ARGUMENT);
    /* An image model whose height is not divisible by 2^(levels-1), then one with labels out of range. */
    ddpm_unet_params up = ddpm_unet_params_default();
    up.channels = 1, up.height = 6, up.width = 8, up.base_channels = 8, up.groups = 4, up.num_levels = 3;
    ddpm_model *unet = (ddpm_model *)0x1;
    EXPECT(ddpm_model_create(sched, &up.base, NULL, NULL, &unet), DDPM_ERR_INVALID_ARGUMENT);
    printf("bad UNet shape: \"%s\"\n", ddpm_last_error());
    up.height = 8, up.num_levels = 2, up.attention_levels = 2;
    ddpm_cond_params cond = ddpm_cond_params_default();
    cond.kind = DDPM_COND_CLASSES, cond.num_classes = 3;
    CHECK(ddpm_model_create(sched, &up.base, NULL, &cond, &unet));
    float image[64] = {0};
    int32_t label = 4;
    ddpm_cond_batch labels = ddpm_cond_batch_default();  /* the condition of each row: here one label */
    labels.labels = &label;
    EXPECT(ddpm_model_train_step(unet, image, 1, 64, &labels, &loss), DDPM_ERR_INVALID_ARGUMENT);
    EXPECT(ddpm_model_train_step(unet, image, 1, 63, NULL, &loss), DDPM_ERR_SHAPE);
    label = 2;
    CHECK(ddpm_model_train_step(unet, image, 1, 64, &labels, &loss));
    ddpm_model_free(unet);
    ddpm_model_free(NULL);
    ddpm_schedule_free(NULL);
    printf("error paths: %s (last message: \"%s\")\n", failures ? "FAILED" : "ok", ddpm_last_error());
    return failures;
}

int main(int argc, char **argv) {
    int steps = argc > 1 ? atoi(argv[1]) : 3000;
    if (ddpm_version_number() != DDPM_VERSION_NUMBER) {
        fprintf(stderr, "header %d and library %d versions differ\n", DDPM_VERSION_NUMBER, ddpm_version_number());
        return 1;
    }
    printf("libddpm %s\n", ddpm_version_string());

    ddpm_schedule_params sp = ddpm_schedule_params_default(); /* linear, T = 1000 */
    ddpm_schedule *sched = NULL;
    CHECK(ddpm_schedule_create(&sp, &sched));

    ddpm_mlp_params net = ddpm_mlp_params_default();
    net.data_dim = 2;
    net.hidden = 128;
    net.depth = 4;
    ddpm_train_params train = ddpm_train_params_default();
    train.learning_rate = 2e-3f;
    train.seed = 1;
    ddpm_model *model = NULL;
    CHECK(ddpm_model_create(sched, &net.base, &train, NULL, &model)); /* NULL: unconditional */
    printf("model: %lld parameters\n", (long long)ddpm_model_num_parameters(model));

    static float data[N_DATA * 2], batch[BATCH * 2];
    unsigned rng = 12345;
    swiss_roll(data, N_DATA, &rng);

    double first = 0, last = 0;
    for (int step = 0; step < steps; step++) {
        for (int i = 0; i < BATCH; i++) {
            rng = rng * 1664525u + 1013904223u;
            int j = (rng >> 8) % N_DATA;
            batch[2 * i] = data[2 * j];
            batch[2 * i + 1] = data[2 * j + 1];
        }
        float loss;
        CHECK(ddpm_model_train_step(model, batch, BATCH, BATCH * 2, NULL, &loss));
        if (step < 100) first += loss / 100;
        if (step >= steps - 100) last += loss / 100;
    }
    printf("train: %d steps, loss %.4f (first 100) -> %.4f (last 100)\n", steps, first, last);

    static float samples[N_SAMPLES * 2];
    ddpm_sample_params smp = ddpm_sample_params_default();
    smp.seed = 7;
    CHECK(ddpm_model_sample(model, &smp, NULL, NULL, N_SAMPLES, samples, N_SAMPLES * 2)); /* EMA weights */
    double ddpm_dist = mean_nn_distance(samples, N_SAMPLES, data, N_DATA);

    smp.method = DDPM_METHOD_DDIM;
    smp.steps = 50;
    CHECK(ddpm_model_sample(model, &smp, NULL, NULL, N_SAMPLES, samples, N_SAMPLES * 2));
    double ddim_dist = mean_nn_distance(samples, N_SAMPLES, data, N_DATA);

    /* The same DDIM run stepped by hand: a ddpm_sampler fed the model's own ε̂ reproduces it. */
    static float x[N_SAMPLES * 2], eps[N_SAMPLES * 2];
    ddpm_sampler *sampler = NULL;
    CHECK(ddpm_sampler_create(sched, &smp, N_SAMPLES, 2, &sampler));
    CHECK(ddpm_sampler_init_noise(sampler, x, N_SAMPLES * 2));
    for (int32_t t; (t = ddpm_sampler_timestep(sampler)) >= 0;) {
        CHECK(ddpm_model_predict(model, NULL, DDPM_OUTPUT_EPS, x, N_SAMPLES, t, NULL, eps, N_SAMPLES * 2));
        CHECK(ddpm_sampler_step(sampler, eps, x, NULL, NULL, N_SAMPLES * 2));
    }
    int stepped_same = memcmp(x, samples, sizeof x) == 0;
    printf("sampler: %lld DDIM steps by hand, samples %s\n", (long long)ddpm_sampler_num_steps(sampler),
           stepped_same ? "identical" : "DIFFER");
    ddpm_sampler_free(sampler);

    static float noise_only[N_SAMPLES * 2];
    memset(noise_only, 0, sizeof noise_only);
    for (int i = 0; i < N_SAMPLES * 2; i++) {
        rng = rng * 1664525u + 1013904223u;
        noise_only[i] = ((rng >> 8) / 16777216.0f - 0.5f) * 6; /* a spread-out baseline */
    }
    double baseline = mean_nn_distance(noise_only, N_SAMPLES, data, N_DATA);
    printf("samples: mean distance to the roll %.4f (DDPM, 1000 steps), %.4f (DDIM, 50 steps), baseline %.4f\n",
           ddpm_dist, ddim_dist, baseline);

    /* Save, reload, and check the reloaded model samples identically. */
    const char *path = argc > 2 ? argv[2] : "swiss_roll_c.safetensors";
    CHECK(ddpm_model_save(model, path));
    ddpm_model *loaded = NULL;
    CHECK(ddpm_model_load(path, &loaded));
    static float again[N_SAMPLES * 2];
    CHECK(ddpm_model_sample(loaded, &smp, NULL, NULL, N_SAMPLES, again, N_SAMPLES * 2));
    int identical = memcmp(samples, again, sizeof samples) == 0;
    printf("checkpoint: saved to %s, reloaded at step %lld, samples %s\n", path,
           (long long)ddpm_model_step(loaded), identical ? "identical" : "DIFFER");
    if (getenv("KEEP_CHECKPOINT") == NULL) remove(path);

    int failures = check_errors(sched, model);
    ddpm_model_free(loaded);
    ddpm_model_free(model);
    ddpm_schedule_free(sched);

    int ok = identical && stepped_same && failures == 0 && last < first && ddpm_dist < 0.1 && ddim_dist < 0.1 &&
             ddpm_dist < baseline / 3;
    printf("%s\n", ok ? "swiss_roll: OK" : "swiss_roll: FAILED");
    return ok ? 0 : 1;
}
