/* How Tests/DDPMTests/Fixtures/v2-*.safetensors were made: this program, built against library
 * 0.2.0 (commit ff5821e, the last before ABI 0.3) and its ddpm.h, run once. Not built by any target.
 * v2-mlp.safetensors: a class-conditional MLP, v-prediction, min-SNR, cosine schedule;
 * v2-unet.safetensors: a small UNet with attention (no cross_attention_levels in 0.2), sigmoid schedule. */
#include <stdio.h>
#include <stdlib.h>
#include "ddpm.h"
#define CHECK(x) do { int s_ = (x); if (s_) { fprintf(stderr, "%s: %s\n", #x, ddpm_last_error()); exit(1); } } while (0)

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : ".";
    char path[512];
    printf("library %s\n", ddpm_version_string());
    ddpm_set_num_threads(1);
    /* MLP: D = 3, H = 8, L = 1, E = 8; 2 classes; cosine T = 20 */
    ddpm_schedule_params sp = ddpm_schedule_params_default();
    sp.kind = DDPM_SCHEDULE_COSINE; sp.num_timesteps = 20;
    ddpm_schedule *cos = NULL;
    CHECK(ddpm_schedule_create(&sp, &cos));
    ddpm_mlp_params m = ddpm_mlp_params_default();
    m.data_dim = 3; m.hidden = 8; m.depth = 1; m.time_embed_dim = 8;
    ddpm_train_params t = ddpm_train_params_default();
    t.seed = 5; t.label_dropout = 0.2f; t.weight_decay = 0.01f; t.prediction_target = DDPM_OUTPUT_V;
    t.loss_weighting = DDPM_LOSS_MIN_SNR; t.min_snr_gamma = 4;
    ddpm_cond_params c = ddpm_cond_params_default();
    c.kind = DDPM_COND_CLASSES; c.num_classes = 2;
    ddpm_model *mlp = NULL;
    CHECK(ddpm_model_create(cos, &m.base, &t, &c, &mlp));
    float x[4 * 3] = {0.5f, -1, 0.25f, 1, 0, -0.5f, -0.75f, 0.5f, 2, 0.1f, 0.2f, -0.3f};
    int32_t labels[4] = {0, 1, 1, 0};
    for (int i = 0; i < 3; i++) CHECK(ddpm_model_train_step(mlp, x, 4, 12, labels, NULL));
    snprintf(path, sizeof path, "%s/v2-mlp.safetensors", dir);
    CHECK(ddpm_model_save(mlp, path));
    /* UNet: 1×4×4, c = 4, mult {1, 2}, R = 1, attention at level 1, groups 2, E = 8; sigmoid T = 10 */
    sp = ddpm_schedule_params_default();
    sp.kind = DDPM_SCHEDULE_SIGMOID; sp.num_timesteps = 10; sp.beta_start = 0; sp.beta_end = 0.1;
    ddpm_schedule *sig = NULL;
    CHECK(ddpm_schedule_create(&sp, &sig));
    ddpm_unet_params u = ddpm_unet_params_default();
    u.channels = 1; u.height = 4; u.width = 4; u.base_channels = 4; u.num_levels = 2;
    u.channel_mult[0] = 1; u.channel_mult[1] = 2; u.res_blocks = 1; u.attention_levels = 2; u.groups = 2;
    u.time_embed_dim = 8;
    ddpm_model *unet = NULL;
    CHECK(ddpm_model_create(sig, &u.base, NULL, NULL, &unet));
    float img[2 * 16];
    for (int i = 0; i < 32; i++) img[i] = (float)((i * 7) % 11) / 5.0f - 1.0f;
    CHECK(ddpm_model_train_step(unet, img, 2, 32, NULL, NULL));
    snprintf(path, sizeof path, "%s/v2-unet.safetensors", dir);
    CHECK(ddpm_model_save(unet, path));
    ddpm_model_free(mlp); ddpm_model_free(unet); ddpm_schedule_free(cos); ddpm_schedule_free(sig);
    return 0;
}
