/*
 * bad_inputs.c — every function of ddpm.h called with every class of bad input: NULL
 * pointers and handles, wrong struct_size, unknown enum values, negative, huge and
 * overflowing counts and sizes, NaN and infinity, counts that do not match, bad paths;
 * plus the size, schedule, training and file regressions of issue 10 as named cases.
 *
 * Each case runs in a forked child (tests/c/harness.h) and must return exactly the status
 * named, with a message; 0 crashes, 0 hangs and 0 wrong statuses is the bar.
 *
 *   bad_inputs [-v] <scratch folder>
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "harness.h"

enum { OK = DDPM_OK, INV = DDPM_ERR_INVALID_ARGUMENT, SHAPE = DDPM_ERR_SHAPE, NONFIN = DDPM_ERR_NON_FINITE,
       IO = DDPM_ERR_IO, FMT = DDPM_ERR_FORMAT, CANCEL = DDPM_ERR_CANCELLED };

/* Shared fixtures, made once in the parent; each child gets its own copy. */
static ddpm_schedule *sched;      /* linear, T = 100 */
static ddpm_model *mlp;           /* D = 2 */
static ddpm_model *cond;          /* D = 2, 3 classes */
static ddpm_model *vec;           /* D = 2, conditioned on vectors of 3 floats */
static ddpm_model *tok;           /* D = 2, conditioned on up to 3 tokens of a vocabulary of 5 */
static ddpm_model *unet;          /* 1×8×8 */
static ddpm_sampler *smp;         /* n = 4, dim = 2 over sched */
static char dir[1024], ckpt[2048];
static float buf[4096], buf2[4096], buf3[4096];
static int32_t ts[64], labels[64];
/* A ddpm_cond_batch of labels, or of vectors with their count. */
#define LBL(l) (&(ddpm_cond_batch){sizeof(ddpm_cond_batch), (l), NULL, 0, NULL, 0, NULL})
#define VEC(v, n) (&(ddpm_cond_batch){sizeof(ddpm_cond_batch), NULL, (v), (n), NULL, 0, NULL})
#define TOK(t, n, l) (&(ddpm_cond_batch){sizeof(ddpm_cond_batch), NULL, NULL, 0, (t), (n), (l)})
static double betas[128];

#define T 100
#define HUGE64 INT64_MAX
static const float NaN_ = NAN, Inf_ = INFINITY;

/* NaN/Inf arrays of 4096 floats for the step cases. */
static float nan_buf[4096], inf_buf[4096];
static float *nan_array(void) { for (int i = 0; i < 4096; i++) nan_buf[i] = (i == 3) ? NAN : 0; return nan_buf; }
static float *inf_array(void) { for (int i = 0; i < 4096; i++) inf_buf[i] = (i == 1) ? INFINITY : 0; return inf_buf; }

/* ---- small helpers that return a status ------------------------------------------- */

static int sched_with(ddpm_schedule_params p) {
    ddpm_schedule *s = NULL;
    int st = ddpm_schedule_create(&p, &s);
    if (st == OK && s == NULL) return -100;
    if (st != OK && s != NULL) return -101; /* failure must leave *out NULL */
    ddpm_schedule_free(s);
    return st;
}

static ddpm_schedule_params sp(int32_t kind, int32_t T_, double a, double b) {
    ddpm_schedule_params p = ddpm_schedule_params_default();
    p.kind = kind; p.num_timesteps = T_; p.beta_start = a; p.beta_end = b;
    return p;
}

static int custom_const(int64_t n, double beta) {
    double *b = malloc((size_t)n * sizeof *b);
    for (int64_t i = 0; i < n; i++) b[i] = beta;
    ddpm_schedule *s = NULL;
    int st = ddpm_schedule_create_custom(b, n, &s);
    free(b);
    ddpm_schedule_free(s);
    return st;
}

static int model_with(const ddpm_schedule *s, const ddpm_network_params *net, const ddpm_train_params *tr,
                      const ddpm_cond_params *c) {
    ddpm_model *m = NULL;
    int st = ddpm_model_create(s, net, tr, c, &m);
    if (st != OK && m != NULL) return -101;
    ddpm_model_free(m);
    return st;
}

static ddpm_mlp_params mlp_p(int32_t D, int32_t H, int32_t L, int32_t E) {
    ddpm_mlp_params p = ddpm_mlp_params_default();
    p.data_dim = D; p.hidden = H; p.depth = L; p.time_embed_dim = E;
    return p;
}
static int mlp_create(ddpm_mlp_params p) { return model_with(sched, &p.base, NULL, NULL); }

static ddpm_unet_params unet_p(int32_t C, int32_t H, int32_t W) {
    ddpm_unet_params p = ddpm_unet_params_default();
    p.channels = C; p.height = H; p.width = W; p.base_channels = 8; p.groups = 4;
    return p;
}
static int unet_create(ddpm_unet_params p) { return model_with(sched, &p.base, NULL, NULL); }

static int train_with(ddpm_train_params t) { ddpm_mlp_params p = mlp_p(2, 8, 1, 4); return model_with(sched, &p.base, &t, NULL); }
static int cond_with(int32_t kind, int32_t k) {
    ddpm_cond_params c = ddpm_cond_params_default();
    c.kind = kind; c.num_classes = k;
    ddpm_mlp_params p = mlp_p(2, 8, 1, 4);
    return model_with(sched, &p.base, NULL, &c);
}

static int vec_with(int32_t dim, int32_t k) {
    ddpm_cond_params c = ddpm_cond_params_default();
    c.kind = DDPM_COND_VECTOR; c.dim = dim; c.num_classes = k;
    ddpm_mlp_params p = mlp_p(2, 8, 1, 4);
    return model_with(sched, &p.base, NULL, &c);
}

static int zero_model(void *u, float *out, const float *x, int64_t b, int64_t d, int32_t t, const int32_t *l) {
    (void)u; (void)x; (void)t; (void)l;
    memset(out, 0, (size_t)(b * d) * sizeof *out);
    return 0;
}
static int nan_model(void *u, float *out, const float *x, int64_t b, int64_t d, int32_t t, const int32_t *l) {
    (void)u; (void)x; (void)t; (void)l;
    for (int64_t i = 0; i < b * d; i++) out[i] = NAN;
    return 0;
}
static int cancel_model(void *u, float *out, const float *x, int64_t b, int64_t d, int32_t t, const int32_t *l) {
    (void)u; (void)out; (void)x; (void)b; (void)d; (void)t; (void)l;
    return 1;
}
static int cancel_progress(void *u, int32_t s, int32_t n, int32_t t, const float *x, int64_t c) {
    (void)u; (void)s; (void)n; (void)t; (void)x; (void)c;
    return 1;
}

static int schedule_sample_with(ddpm_sample_params p, ddpm_model_fn fn, int64_t n, int64_t dim, int64_t count) {
    return ddpm_schedule_sample(sched, &p, fn, NULL, NULL, n, dim, buf, count);
}

static int sampler_with(ddpm_sample_params p, int64_t n, int64_t dim) {
    ddpm_sampler *s = NULL;
    int st = ddpm_sampler_create(sched, &p, n, dim, &s);
    if (st != OK && s != NULL) return -101;
    ddpm_sampler_free(s);
    return st;
}

static int sampler_past_end(void) {
    ddpm_sample_params p = ddpm_sample_params_default();
    p.steps = 2;
    ddpm_sampler *s = NULL;
    int st = ddpm_sampler_create(sched, &p, 1, 2, &s);
    if (st != OK) return -1;
    float x[2] = {0, 0}, e[2] = {0, 0};
    for (int i = 0; i < 2; i++) if (ddpm_sampler_step(s, e, x, NULL, NULL, 2) != OK) return -2;
    st = ddpm_sampler_step(s, e, x, NULL, NULL, 2);
    ddpm_sampler_free(s);
    return st;
}

static int size_check(int64_t v, int64_t want) { return v == want ? OK : -1; }

/* The weights, EMA and step of a model, to compare before and after a refused step. */
typedef struct { float w[2048], e[2048]; int64_t step; } snapshot;
static int snap(ddpm_model *m, snapshot *s) {
    ddpm_predict_params live = ddpm_predict_params_default(), avg = ddpm_predict_params_default();
    live.use_ema = 0;
    float x[16];
    for (int i = 0; i < 16; i++) x[i] = (float)i / 8 - 1;
    s->step = ddpm_model_step(m);
    int st = ddpm_model_predict(m, &live, DDPM_OUTPUT_EPS, x, 8, 50, NULL, s->w, 16);
    if (st == OK) st = ddpm_model_predict(m, &avg, DDPM_OUTPUT_EPS, x, 8, 50, NULL, s->e, 16);
    return st;
}

/* lr = 3e38: the step is refused with NON_FINITE and nothing changes. */
static int huge_lr_step(void) {
    snapshot a, b;
    if (snap(mlp, &a) != OK) return -1;
    if (ddpm_model_set_learning_rate(mlp, 3e38f) != OK) return -2;
    int st = ddpm_model_train_step(mlp, buf, 64, 128, NULL, NULL);
    if (snap(mlp, &b) != OK) return -3;
    if (memcmp(a.w, b.w, 16 * sizeof(float)) || memcmp(a.e, b.e, 16 * sizeof(float)) || a.step != b.step) return -4;
    if (ddpm_model_set_learning_rate(mlp, 1e-3f) != OK) return -5;
    if (ddpm_model_train_step(mlp, buf, 64, 128, NULL, NULL) != OK) return -6; /* usable again */
    return st;
}

static int train_count(ddpm_model *m, const float *x, int64_t batch, int64_t count) {
    return ddpm_model_train_step(m, x, batch, count, NULL, NULL);
}

static int save_load(const char *path) {
    int st = ddpm_model_save(mlp, path);
    if (st != OK) return st;
    ddpm_model *m = NULL;
    st = ddpm_model_load(path, &m);
    ddpm_model_free(m);
    return st;
}

static int load_path(const char *path) {
    ddpm_model *m = NULL;
    int st = ddpm_model_load(path, &m);
    if (st != OK && m != NULL) return -101;
    ddpm_model_free(m);
    return st;
}

static int write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    fwrite(data, 1, n, f);
    fclose(f);
    return 0;
}

/* Kill a process that saves in a loop; the destination must load, and the next save must
 * leave no temporary file behind. */
static int kill_mid_save(void) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/killed.safetensors", dir);
    if (ddpm_model_save(unet, path) != OK) return -1;
    for (int round = 0; round < 5; round++) {
        pid_t pid = fork();
        if (pid == 0) { for (;;) ddpm_model_save(unet, path); }
        usleep(20000 + 15000 * round);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        ddpm_model *m = NULL;
        int st = ddpm_model_load(path, &m);
        ddpm_model_free(m);
        if (st != OK) { printf("kill-mid-save: round %d: %s\n", round, ddpm_last_error()); return st; }
    }
    if (ddpm_model_save(unet, path) != OK) return -2;
    DIR *d = opendir(dir);
    struct dirent *e;
    int left = 0;
    while ((e = readdir(d)) != NULL) if (strncmp(e->d_name, ".killed.safetensors.tmp-", 24) == 0) left++;
    closedir(d);
    return left == 0 ? OK : -3;
}

/* ---- the cases ------------------------------------------------------------------------ */

/* The header's limits are the engine's: each one just passes, one past it fails. */
static void limits(void) {
    ddpm_schedule_params p = sp(0, DDPM_MAX_TIMESTEPS, 1e-4, 0.02);
    p.scale_to_steps = 1;
    CASE("limit: T = DDPM_MAX_TIMESTEPS", OK, sched_with(p));
    p.num_timesteps++;
    CASE_MSG("limit: T = DDPM_MAX_TIMESTEPS + 1", INV, "DDPM_MAX_TIMESTEPS", sched_with(p));
    CASE("limit: hidden = DDPM_MAX_WIDTH (over the bytes)", INV, mlp_create(mlp_p(2, DDPM_MAX_WIDTH, 1, 4)));
    CASE_MSG("limit: hidden = DDPM_MAX_WIDTH + 1", INV, "<= 65536", mlp_create(mlp_p(2, DDPM_MAX_WIDTH + 1, 1, 4)));
    CASE("limit: depth = DDPM_MAX_DEPTH", OK, mlp_create(mlp_p(2, 4, DDPM_MAX_DEPTH, 4)));
    CASE("limit: depth = DDPM_MAX_DEPTH + 1", INV, mlp_create(mlp_p(2, 4, DDPM_MAX_DEPTH + 1, 4)));
    CASE("limit: data_dim = DDPM_MAX_SAMPLE_FLOATS + 1", INV, mlp_create(mlp_p(DDPM_MAX_SAMPLE_FLOATS + 1, 1, 0, 2)));
    ddpm_unet_params u = unet_p(1, 8, 8);
    u.res_blocks = DDPM_MAX_RES_BLOCKS + 1;
    CASE("limit: res_blocks = DDPM_MAX_RES_BLOCKS + 1", INV, unet_create(u));
    CASE("limit: num_classes = DDPM_MAX_CLASSES + 1", INV, cond_with(DDPM_COND_CLASSES, DDPM_MAX_CLASSES + 1));
    CASE("limit: 0.99^6873 just above DDPM_MIN_ALPHA_BAR", OK,
         pow(0.99, 6873) >= DDPM_MIN_ALPHA_BAR ? custom_const(6873, 0.01) : -1);
    CASE("limit: 0.99^6874 just below DDPM_MIN_ALPHA_BAR", INV, custom_const(6874, 0.01));
    CASE("limit: DDPM_MAX_MODEL_BYTES is 8 GiB", OK, DDPM_MAX_MODEL_BYTES == 8589934592LL ? OK : -1);
}

static void versions_and_errors(void) {
    CASE("version_number matches the header", OK, ddpm_version_number() == DDPM_VERSION_NUMBER ? OK : -1);
    CASE("version_string not NULL", OK, ddpm_version_string() != NULL ? OK : -1);
    CASE("status_string(-1)", OK, strcmp(ddpm_status_string(-1), "unknown status") == 0 ? OK : -1);
    CASE("status_string(INT_MAX)", OK, ddpm_status_string(INT_MAX) != NULL ? OK : -1);
    CASE("last_error never NULL", OK, ddpm_last_error() != NULL ? OK : -1);
    CASE("set_num_threads(0)", INV, ddpm_set_num_threads(0));
    CASE("set_num_threads(-1)", INV, ddpm_set_num_threads(-1));
    CASE("set_num_threads(1025)", INV, ddpm_set_num_threads(1025));
    CASE("set_num_threads(INT_MIN)", INV, ddpm_set_num_threads(INT_MIN));
    CASE("get_num_threads >= 1", OK, ddpm_get_num_threads() >= 1 ? OK : -1);
}

static void schedules(void) {
    ddpm_schedule *s = NULL;
    ddpm_schedule_params p = ddpm_schedule_params_default();
    CASE("schedule_create(NULL params)", INV, ddpm_schedule_create(NULL, &s));
    CASE("schedule_create(NULL out)", INV, ddpm_schedule_create(&p, NULL));
    p.struct_size = 0;
    CASE("schedule_create struct_size 0", INV, sched_with(p));
    p.struct_size = 3;
    CASE("schedule_create struct_size 3", INV, sched_with(p));
    p.struct_size = (size_t)1 << 40;
    CASE("schedule_create struct_size 2^40", INV, sched_with(p));
    p = ddpm_schedule_params_default(); p.struct_size = 8 + 4; /* an old, shorter struct: kind only */
    CASE("schedule_create shorter struct keeps defaults", OK, sched_with(p));
    CASE("schedule kind -1", INV, sched_with(sp(-1, 100, 1e-4, 0.02)));
    CASE("schedule kind CUSTOM via params", INV, sched_with(sp(DDPM_SCHEDULE_CUSTOM, 100, 1e-4, 0.02)));
    CASE("schedule kind 99", INV, sched_with(sp(99, 100, 1e-4, 0.02)));
    CASE("schedule T = 0", INV, sched_with(sp(0, 0, 1e-4, 0.02)));
    CASE("schedule T = -1", INV, sched_with(sp(0, -1, 1e-4, 0.02)));
    CASE_MSG("schedule T = INT32_MAX (size regression)", INV, "DDPM_MAX_TIMESTEPS", sched_with(sp(0, INT32_MAX, 1e-4, 0.02)));
    CASE_MSG("schedule cosine T = INT32_MAX", INV, "DDPM_MAX_TIMESTEPS", sched_with(sp(1, INT32_MAX, 0, 0)));
    CASE_MSG("schedule sigmoid T = 2^20 + 1", INV, "DDPM_MAX_TIMESTEPS", sched_with(sp(2, (1 << 20) + 1, 0, 0.1)));
    CASE("schedule beta NaN", INV, sched_with(sp(0, 100, NAN, 0.02)));
    CASE("schedule beta Inf", INV, sched_with(sp(0, 100, 1e-4, INFINITY)));
    CASE("schedule beta 0", INV, sched_with(sp(0, 100, 0, 0.02)));
    CASE("schedule beta 1", INV, sched_with(sp(0, 100, 1e-4, 1)));
    CASE("schedule beta < 0", INV, sched_with(sp(0, 100, -1e-4, 0.02)));
    CASE("schedule beta 1e-300 (1 - alpha_bar = 0)", INV, sched_with(sp(0, 2, 1e-300, 1e-300)));
    p = sp(1, 100, 0, 0); p.cosine_s = NAN;
    CASE("schedule cosine s NaN", INV, sched_with(p));
    p = sp(1, 100, 0, 0); p.max_beta = 1;
    CASE("schedule cosine max_beta 1", INV, sched_with(p));
    p = sp(2, 100, 0, 0.1); p.sigmoid_start = -INFINITY;
    CASE("schedule sigmoid start -Inf", INV, sched_with(p));
    CASE_MSG("schedule linear T = 100000 underflows (regression)", INV, "DDPM_MIN_ALPHA_BAR", sched_with(sp(0, 100000, 1e-4, 0.02)));
    p = sp(0, 100000, 1e-4, 0.02); p.scale_to_steps = 1;
    CASE("schedule linear T = 100000 scaled is fine", OK, sched_with(p));
    p = sp(0, 1 << 20, 1e-4, 0.02); p.scale_to_steps = 1;
    CASE("schedule linear T = 2^20 scaled is fine", OK, sched_with(p));

    CASE("create_custom(NULL betas)", INV, ddpm_schedule_create_custom(NULL, 3, &s));
    CASE("create_custom(NULL out)", INV, ddpm_schedule_create_custom(betas, 3, NULL));
    CASE("create_custom count 0", INV, ddpm_schedule_create_custom(betas, 0, &s));
    CASE("create_custom count -1", INV, ddpm_schedule_create_custom(betas, -1, &s));
    CASE("create_custom count INT64_MAX", INV, ddpm_schedule_create_custom(betas, HUGE64, &s));
    CASE("create_custom count 2^20 + 1", INV, ddpm_schedule_create_custom(betas, (1 << 20) + 1, &s));
    CASE("create_custom beta NaN", INV, custom_const(3, NAN));
    CASE("create_custom beta 1.5", INV, custom_const(3, 1.5));
    CASE_MSG("create_custom 80000 x 0.01 underflows (regression)", INV, "DDPM_MIN_ALPHA_BAR", custom_const(80000, 0.01));
    CASE("create_custom 6000 x 0.01 is fine", OK, custom_const(6000, 0.01));
    CASE("schedule_free(NULL)", OK, (ddpm_schedule_free(NULL), OK));

    ddpm_schedule_params out = ddpm_schedule_params_default();
    CASE("get_params(NULL schedule)", INV, ddpm_schedule_get_params(NULL, &out));
    CASE("get_params(NULL out)", INV, ddpm_schedule_get_params(sched, NULL));
    out.struct_size = 0;
    CASE("get_params struct_size 0", INV, ddpm_schedule_get_params(sched, &out));
    CASE("num_timesteps(NULL)", OK, size_check(ddpm_schedule_num_timesteps(NULL), -1));

    double tab[T];
    CASE("table(NULL schedule)", INV, ddpm_schedule_table(NULL, 0, tab, T));
    CASE("table -1", INV, ddpm_schedule_table(sched, -1, tab, T));
    CASE("table 11", INV, ddpm_schedule_table(sched, 11, tab, T));
    CASE("table INT32_MAX", INV, ddpm_schedule_table(sched, INT32_MAX, tab, T));
    CASE("table NULL out", INV, ddpm_schedule_table(sched, 0, NULL, T));
    CASE("table count T-1", SHAPE, ddpm_schedule_table(sched, 0, tab, T - 1));
    CASE("table count -1", SHAPE, ddpm_schedule_table(sched, 0, tab, -1));
    CASE("table count INT64_MAX", SHAPE, ddpm_schedule_table(sched, 0, tab, HUGE64));

    CASE("add_noise(NULL schedule)", INV, ddpm_schedule_add_noise(NULL, buf, buf2, ts, 4, 2, buf3, 8));
    CASE("add_noise(NULL x0)", INV, ddpm_schedule_add_noise(sched, NULL, buf2, ts, 4, 2, buf3, 8));
    CASE("add_noise(NULL noise)", INV, ddpm_schedule_add_noise(sched, buf, NULL, ts, 4, 2, buf3, 8));
    CASE("add_noise(NULL t)", INV, ddpm_schedule_add_noise(sched, buf, buf2, NULL, 4, 2, buf3, 8));
    CASE("add_noise(NULL out)", INV, ddpm_schedule_add_noise(sched, buf, buf2, ts, 4, 2, NULL, 8));
    CASE("add_noise batch 0", INV, ddpm_schedule_add_noise(sched, buf, buf2, ts, 0, 2, buf3, 0));
    CASE("add_noise batch -1", INV, ddpm_schedule_add_noise(sched, buf, buf2, ts, -1, 2, buf3, -2));
    CASE("add_noise dim 0", INV, ddpm_schedule_add_noise(sched, buf, buf2, ts, 4, 0, buf3, 0));
    CASE("add_noise batch x dim overflows", INV, ddpm_schedule_add_noise(sched, buf, buf2, ts, HUGE64 / 2, 3, buf3, 8));
    CASE("add_noise huge batch", INV, ddpm_schedule_add_noise(sched, buf, buf2, ts, (int64_t)1 << 40, 2, buf3, (int64_t)1 << 41));
    CASE("add_noise count wrong", SHAPE, ddpm_schedule_add_noise(sched, buf, buf2, ts, 4, 2, buf3, 7));
    int32_t bad_t[4] = {0, 1, T, 2}, neg_t[4] = {0, -1, 0, 0};
    CASE("add_noise t = T", INV, ddpm_schedule_add_noise(sched, buf, buf2, bad_t, 4, 2, buf3, 8));
    CASE("add_noise t = -1", INV, ddpm_schedule_add_noise(sched, buf, buf2, neg_t, 4, 2, buf3, 8));
    float nanx[8] = {0, 0, 0, NAN, 0, 0, 0, 0}, infx[8] = {0, INFINITY, 0, 0, 0, 0, 0, 0};
    CASE("add_noise NaN x0", NONFIN, ddpm_schedule_add_noise(sched, nanx, buf2, ts, 4, 2, buf3, 8));
    CASE("add_noise Inf noise", NONFIN, ddpm_schedule_add_noise(sched, buf, infx, ts, 4, 2, buf3, 8));

    CASE("posterior(NULL schedule)", INV, ddpm_schedule_posterior(NULL, buf, buf2, ts, 4, 2, buf3, buf3 + 8, 8));
    CASE("posterior(NULL x0)", INV, ddpm_schedule_posterior(sched, NULL, buf2, ts, 4, 2, buf3, buf3 + 8, 8));
    CASE("posterior(NULL x_t)", INV, ddpm_schedule_posterior(sched, buf, NULL, ts, 4, 2, buf3, buf3 + 8, 8));
    CASE("posterior(NULL t)", INV, ddpm_schedule_posterior(sched, buf, buf2, NULL, 4, 2, buf3, buf3 + 8, 8));
    CASE("posterior(NULL mean)", INV, ddpm_schedule_posterior(sched, buf, buf2, ts, 4, 2, NULL, buf3 + 8, 8));
    CASE("posterior(NULL variance)", INV, ddpm_schedule_posterior(sched, buf, buf2, ts, 4, 2, buf3, NULL, 8));
    CASE("posterior batch -5", INV, ddpm_schedule_posterior(sched, buf, buf2, ts, -5, 2, buf3, buf3 + 8, 8));
    CASE("posterior count wrong", SHAPE, ddpm_schedule_posterior(sched, buf, buf2, ts, 4, 2, buf3, buf3 + 8, 9));
    CASE("posterior overflow", INV, ddpm_schedule_posterior(sched, buf, buf2, ts, HUGE64, HUGE64, buf3, buf3 + 8, 8));
    CASE("posterior t = T", INV, ddpm_schedule_posterior(sched, buf, buf2, bad_t, 4, 2, buf3, buf3 + 8, 8));
    CASE("posterior NaN x_t", NONFIN, ddpm_schedule_posterior(sched, buf, nanx, ts, 4, 2, buf3, buf3 + 8, 8));
}

static void sampling(void) {
    ddpm_sample_params p = ddpm_sample_params_default();
    CASE("schedule_sample ok", OK, schedule_sample_with(p, zero_model, 4, 2, 8));
    CASE("schedule_sample(NULL schedule)", INV, ddpm_schedule_sample(NULL, &p, zero_model, NULL, NULL, 4, 2, buf, 8));
    CASE("schedule_sample(NULL params = defaults)", OK, ddpm_schedule_sample(sched, NULL, zero_model, NULL, NULL, 4, 2, buf, 8));
    CASE("schedule_sample(NULL model_fn)", INV, ddpm_schedule_sample(sched, &p, NULL, NULL, NULL, 4, 2, buf, 8));
    CASE("schedule_sample(NULL out)", INV, ddpm_schedule_sample(sched, &p, zero_model, NULL, NULL, 4, 2, NULL, 8));
    CASE("schedule_sample n 0", INV, schedule_sample_with(p, zero_model, 0, 2, 0));
    CASE("schedule_sample n -1", INV, schedule_sample_with(p, zero_model, -1, 2, -2));
    CASE("schedule_sample dim -1", INV, schedule_sample_with(p, zero_model, 4, -1, -4));
    CASE("schedule_sample count wrong", SHAPE, schedule_sample_with(p, zero_model, 4, 2, 9));
    CASE("schedule_sample n x dim overflows", INV, schedule_sample_with(p, zero_model, HUGE64, 2, 8));
    CASE_MSG("schedule_sample 2^28 x 64 over the memory limit (size regression)", INV, "bytes",
             schedule_sample_with(p, zero_model, (int64_t)1 << 28, 64, (int64_t)1 << 34));
    CASE("schedule_sample NaN model output", NONFIN, schedule_sample_with(p, nan_model, 4, 2, 8));
    CASE("schedule_sample model_fn cancels", CANCEL, schedule_sample_with(p, cancel_model, 4, 2, 8));
    ddpm_sample_params q = p; q.progress = cancel_progress;
    CASE("schedule_sample progress cancels", CANCEL, schedule_sample_with(q, zero_model, 4, 2, 8));
    q = p; q.struct_size = 0;
    CASE("sample params struct_size 0", INV, schedule_sample_with(q, zero_model, 4, 2, 8));
    q = p; q.struct_size = SIZE_MAX;
    CASE("sample params struct_size SIZE_MAX", INV, schedule_sample_with(q, zero_model, 4, 2, 8));
    q = p; q.method = 77;
    CASE("sample method 77", INV, schedule_sample_with(q, zero_model, 4, 2, 8));
    q = p; q.method = -1;
    CASE("sample method -1", INV, schedule_sample_with(q, zero_model, 4, 2, 8));
    q = p; q.variance = 7;
    CASE("sample variance 7", INV, schedule_sample_with(q, zero_model, 4, 2, 8));
    q = p; q.prediction_type = 5;
    CASE("sample prediction_type 5", INV, schedule_sample_with(q, zero_model, 4, 2, 8));
    q = p; q.method = DDPM_METHOD_DDIM; q.eta = NAN;
    CASE("sample eta NaN", INV, schedule_sample_with(q, zero_model, 4, 2, 8));
    q = p; q.method = DDPM_METHOD_DDIM; q.eta = 2;
    CASE("sample eta 2", INV, schedule_sample_with(q, zero_model, 4, 2, 8));
    q = p; q.steps = -1;
    CASE("sample steps -1", INV, schedule_sample_with(q, zero_model, 4, 2, 8));
    q = p; q.steps = T + 1;
    CASE("sample steps T + 1", INV, schedule_sample_with(q, zero_model, 4, 2, 8));
    q = p; q.steps = INT32_MAX;
    CASE("sample steps INT32_MAX", INV, schedule_sample_with(q, zero_model, 4, 2, 8));
    q = p; q.clip_x0 = 1; q.clip_min = NAN;
    CASE("sample clip NaN", INV, schedule_sample_with(q, zero_model, 4, 2, 8));
    q = p; q.clip_x0 = 1; q.clip_min = 1; q.clip_max = -1;
    CASE("sample clip min > max", INV, schedule_sample_with(q, zero_model, 4, 2, 8));
    int32_t inc[3] = {10, 20, 5}, out_of_range[2] = {T, 3}, good[3] = {50, 20, 0};
    q = p; q.timesteps = inc; q.num_timesteps = 3;
    CASE("sample timesteps not decreasing", INV, schedule_sample_with(q, zero_model, 4, 2, 8));
    q = p; q.timesteps = out_of_range; q.num_timesteps = 2;
    CASE("sample timesteps = T", INV, schedule_sample_with(q, zero_model, 4, 2, 8));
    q = p; q.timesteps = NULL; q.num_timesteps = 3;
    CASE("sample timesteps NULL with a count", INV, schedule_sample_with(q, zero_model, 4, 2, 8));
    q = p; q.timesteps = good; q.num_timesteps = -3;
    CASE("sample num_timesteps -3", INV, schedule_sample_with(q, zero_model, 4, 2, 8));
    q = p; q.timesteps = good; q.num_timesteps = INT32_MAX;
    CASE("sample num_timesteps INT32_MAX", INV, schedule_sample_with(q, zero_model, 4, 2, 8));
    q = p; q.timesteps = good; q.num_timesteps = 3;
    CASE("sample own timesteps ok", OK, schedule_sample_with(q, zero_model, 4, 2, 8));

    ddpm_sampler *s = NULL;
    CASE("sampler_create(NULL schedule)", INV, ddpm_sampler_create(NULL, &p, 4, 2, &s));
    CASE("sampler_create(NULL out)", INV, ddpm_sampler_create(sched, &p, 4, 2, NULL));
    CASE("sampler_create(NULL params = defaults)", OK, ddpm_sampler_create(sched, NULL, 4, 2, &s));
    CASE("sampler_create n 0", INV, sampler_with(p, 0, 2));
    CASE("sampler_create dim 0", INV, sampler_with(p, 4, 0));
    CASE("sampler_create n -7", INV, sampler_with(p, -7, 2));
    CASE("sampler_create n x dim overflows", INV, sampler_with(p, HUGE64, HUGE64));
    CASE_MSG("sampler_create 2^30 x 64 over the memory limit (size regression)", INV, "bytes", sampler_with(p, (int64_t)1 << 30, 64));
    q = p; q.method = 9;
    CASE("sampler_create bad method", INV, sampler_with(q, 4, 2));
    CASE("sampler_free(NULL)", OK, (ddpm_sampler_free(NULL), OK));
    CASE("sampler_num_steps(NULL)", OK, size_check(ddpm_sampler_num_steps(NULL), -1));
    CASE("sampler_timestep(NULL)", OK, size_check(ddpm_sampler_timestep(NULL), -1));
    int32_t tsteps[T];
    CASE("sampler_timesteps(NULL)", INV, ddpm_sampler_timesteps(NULL, tsteps, T));
    CASE("sampler_timesteps(NULL out)", INV, ddpm_sampler_timesteps(smp, NULL, T));
    CASE("sampler_timesteps count wrong", SHAPE, ddpm_sampler_timesteps(smp, tsteps, T + 1));
    CASE("sampler_init_noise(NULL)", INV, ddpm_sampler_init_noise(NULL, buf, 8));
    CASE("sampler_init_noise(NULL x)", INV, ddpm_sampler_init_noise(smp, NULL, 8));
    CASE("sampler_init_noise count wrong", SHAPE, ddpm_sampler_init_noise(smp, buf, 7));
    CASE("sampler_init_noise count -1", SHAPE, ddpm_sampler_init_noise(smp, buf, -1));
    memset(buf2, 0, sizeof buf2);
    CASE("sampler_step(NULL)", INV, ddpm_sampler_step(NULL, buf2, buf, NULL, NULL, 8));
    CASE("sampler_step(NULL output)", INV, ddpm_sampler_step(smp, NULL, buf, NULL, NULL, 8));
    CASE("sampler_step(NULL x)", INV, ddpm_sampler_step(smp, buf2, NULL, NULL, NULL, 8));
    CASE("sampler_step count wrong", SHAPE, ddpm_sampler_step(smp, buf2, buf, NULL, NULL, 16));
    CASE("sampler_step NaN output", NONFIN, ddpm_sampler_step(smp, nan_array(), buf, NULL, NULL, 8));
    CASE("sampler_step NaN x", NONFIN, ddpm_sampler_step(smp, buf2, nan_array(), NULL, NULL, 8));
    CASE("sampler_step Inf noise", NONFIN, ddpm_sampler_step(smp, buf2, buf, inf_array(), NULL, 8));
    CASE("sampler_step after the last step", INV, sampler_past_end());
}

static void models(void) {
    ddpm_model *m = NULL;
    ddpm_mlp_params mp = mlp_p(2, 8, 1, 4);
    CASE("model_create(NULL schedule)", INV, ddpm_model_create(NULL, &mp.base, NULL, NULL, &m));
    CASE("model_create(NULL network)", INV, ddpm_model_create(sched, NULL, NULL, NULL, &m));
    CASE("model_create(NULL out)", INV, ddpm_model_create(sched, &mp.base, NULL, NULL, NULL));
    ddpm_mlp_params bad = mp; bad.base.kind = 7;
    CASE("network kind 7", INV, mlp_create(bad));
    bad = mp; bad.base.kind = -1;
    CASE("network kind -1", INV, mlp_create(bad));
    bad = mp; bad.base.struct_size = 0;
    CASE("network struct_size 0", INV, mlp_create(bad));
    bad = mp; bad.base.struct_size = SIZE_MAX;
    CASE("network struct_size SIZE_MAX", INV, mlp_create(bad));
    CASE("mlp data_dim 0", INV, mlp_create(mlp_p(0, 8, 1, 4)));
    CASE("mlp data_dim -1", INV, mlp_create(mlp_p(-1, 8, 1, 4)));
    CASE("mlp data_dim INT32_MAX (size regression)", INV, mlp_create(mlp_p(INT32_MAX, 8, 1, 4)));
    CASE("mlp hidden 0", INV, mlp_create(mlp_p(2, 0, 1, 4)));
    CASE("mlp hidden -8", INV, mlp_create(mlp_p(2, -8, 1, 4)));
    CASE_MSG("mlp hidden 1<<16 is 51 GB (size regression)", INV, "bytes", mlp_create(mlp_p(2, 1 << 16, 4, 64)));
    CASE("mlp hidden INT32_MAX", INV, mlp_create(mlp_p(2, INT32_MAX, 1, 4)));
    CASE("mlp depth -1", INV, mlp_create(mlp_p(2, 8, -1, 4)));
    CASE("mlp depth 1<<20 (size regression)", INV, mlp_create(mlp_p(2, 8, 1 << 20, 4)));
    CASE_MSG("mlp depth 4096 x hidden 4096 over the limit", INV, "bytes", mlp_create(mlp_p(2, 4096, 4096, 4)));
    CASE("mlp time_embed_dim 3 (odd)", INV, mlp_create(mlp_p(2, 8, 1, 3)));
    CASE("mlp time_embed_dim 0", INV, mlp_create(mlp_p(2, 8, 1, 0)));
    CASE("mlp time_embed_dim INT32_MAX - 1 (size regression)", INV, mlp_create(mlp_p(2, 8, 1, INT32_MAX - 1)));
    CASE("mlp data_dim 2^24 + 1", INV, mlp_create(mlp_p((1 << 24) + 1, 8, 1, 4)));

    ddpm_unet_params up = unet_p(1, 8, 8);
    CASE("unet ok", OK, unet_create(up));
    CASE("unet channels 0", INV, unet_create(unet_p(0, 8, 8)));
    CASE("unet channels INT32_MAX", INV, unet_create(unet_p(INT32_MAX, 8, 8)));
    CASE("unet height 0", INV, unet_create(unet_p(1, 0, 8)));
    CASE("unet width -4", INV, unet_create(unet_p(1, 8, -4)));
    CASE("unet height 6 not divisible by 4", INV, unet_create(unet_p(1, 6, 8)));
    CASE_MSG("unet 4096 x 4096 (size regression)", INV, "bytes", unet_create(unet_p(1, 4096, 4096)));
    CASE("unet 65536 x 65536", INV, unet_create(unet_p(1, 65536, 65536)));
    ddpm_unet_params u = up; u.base_channels = 1 << 20;
    CASE("unet base_channels 1<<20 (size regression)", INV, unet_create(u));
    u = up; u.base_channels = 0;
    CASE("unet base_channels 0", INV, unet_create(u));
    u = up; u.base_channels = 4096; u.groups = 8;
    CASE_MSG("unet base_channels 4096 over the limit", INV, "bytes", unet_create(u));
    u = up; u.num_levels = 0;
    CASE("unet num_levels 0", INV, unet_create(u));
    u = up; u.num_levels = DDPM_UNET_MAX_LEVELS + 1;
    CASE("unet num_levels 9", INV, unet_create(u));
    u = up; u.num_levels = 2; u.channel_mult[0] = 1; u.channel_mult[1] = INT32_MAX; u.attention_levels = 0;
    CASE("unet channel_mult [1, INT32_MAX] (size regression: was a segfault)", INV, unet_create(u));
    u = up; u.num_levels = 2; u.channel_mult[1] = 0; u.attention_levels = 0;
    CASE("unet channel_mult [1, 0]", INV, unet_create(u));
    u = up; u.channel_mult[2] = -2;
    CASE("unet channel_mult -2", INV, unet_create(u));
    u = up; u.res_blocks = 0;
    CASE("unet res_blocks 0", INV, unet_create(u));
    u = up; u.res_blocks = 1000000;
    CASE("unet res_blocks 1e6 (size regression)", INV, unet_create(u));
    u = up; u.attention_levels = 1u << 5;
    CASE("unet attention level beyond the levels", INV, unet_create(u));
    u = up; u.attention_levels = 0xFFFFFFFFu;
    CASE("unet attention_levels all bits", INV, unet_create(u));
    u = up; u.attention_heads = 0;
    CASE("unet attention_heads 0", INV, unet_create(u));
    u = up; u.attention_heads = 3;
    CASE("unet attention_heads 3 does not divide", INV, unet_create(u));
    u = up; u.groups = 0;
    CASE("unet groups 0", INV, unet_create(u));
    u = up; u.groups = 3;
    CASE("unet groups 3 does not divide", INV, unet_create(u));
    u = up; u.dropout = NAN;
    CASE("unet dropout NaN", INV, unet_create(u));
    u = up; u.dropout = 1;
    CASE("unet dropout 1", INV, unet_create(u));
    u = up; u.time_embed_dim = 5;
    CASE("unet time_embed_dim 5", INV, unet_create(u));
    u = unet_p(1, 1024, 1024); u.num_levels = 1; u.attention_levels = 1;
    CASE_MSG("unet attention over 1024 x 1024 pixels (N^2 size)", INV, "bytes", unet_create(u));

    ddpm_train_params t = ddpm_train_params_default();
    CASE("train struct_size 0", INV, (t.struct_size = 0, train_with(t)));
    t = ddpm_train_params_default(); t.learning_rate = 0;
    CASE("train lr 0", INV, train_with(t));
    t = ddpm_train_params_default(); t.learning_rate = NAN;
    CASE("train lr NaN", INV, train_with(t));
    t = ddpm_train_params_default(); t.learning_rate = INFINITY;
    CASE("train lr Inf", INV, train_with(t));
    t = ddpm_train_params_default(); t.beta1 = 1;
    CASE("train beta1 1", INV, train_with(t));
    t = ddpm_train_params_default(); t.beta2 = -0.1f;
    CASE("train beta2 -0.1", INV, train_with(t));
    t = ddpm_train_params_default(); t.adam_eps = 0;
    CASE("train adam_eps 0", INV, train_with(t));
    t = ddpm_train_params_default(); t.weight_decay = -1;
    CASE("train weight_decay -1", INV, train_with(t));
    t = ddpm_train_params_default(); t.grad_clip = NAN;
    CASE("train grad_clip NaN", INV, train_with(t));
    t = ddpm_train_params_default(); t.ema_decay = 2;
    CASE("train ema_decay 2", INV, train_with(t));
    t = ddpm_train_params_default(); t.label_dropout = NAN;
    CASE("train label_dropout NaN", INV, train_with(t));
    CASE("cond kind 5", INV, cond_with(5, 3));
    CASE("cond classes 0", INV, cond_with(DDPM_COND_CLASSES, 0));
    CASE("cond classes -1", INV, cond_with(DDPM_COND_CLASSES, -1));
    CASE("cond none with classes", INV, cond_with(DDPM_COND_NONE, 3));
    CASE("cond classes INT32_MAX", INV, cond_with(DDPM_COND_CLASSES, INT32_MAX));
    CASE("cond vector dim 3 ok", OK, vec_with(3, 0));
    CASE("cond vector dim 0", INV, vec_with(0, 0));
    CASE("cond vector dim -1", INV, vec_with(-1, 0));
    CASE("cond vector dim DDPM_MAX_WIDTH + 1", INV, vec_with(DDPM_MAX_WIDTH + 1, 0));
    CASE("cond vector with num_classes", INV, vec_with(3, 2));
    {
        ddpm_cond_params ct = ddpm_cond_params_default();
        ct.kind = DDPM_COND_TOKENS; ct.vocab_size = 5; ct.max_length = 3; ct.dim = 4;
        CASE("cond tokens ok", OK, model_with(sched, &mp.base, NULL, &ct));
        ct.vocab_size = 0;
        CASE("cond tokens vocab_size 0", INV, model_with(sched, &mp.base, NULL, &ct));
        ct.vocab_size = 5; ct.max_length = 4097;
        CASE("cond tokens max_length 4097", INV, model_with(sched, &mp.base, NULL, &ct));
        ct.kind = DDPM_COND_SEQUENCE; ct.max_length = 3;
        CASE("cond sequence with vocab_size", INV, model_with(sched, &mp.base, NULL, &ct));
        ct.vocab_size = 0; ct.max_length = 0;
        CASE("cond sequence max_length 0", INV, model_with(sched, &mp.base, NULL, &ct));
        ddpm_unet_params uu = unet_p(1, 8, 8);
        ct.max_length = 3;
        uu.cross_attention_levels = 1;
        CASE("cond sequence on a UNet with cross-attention ok", OK, model_with(sched, &uu.base, NULL, &ct));
        uu.cross_attention_levels = 1u << 5;
        CASE("cross_attention_levels past the last level", INV, model_with(sched, &uu.base, NULL, &ct));
    }
    {
        ddpm_cond_params cd = ddpm_cond_params_default();
        cd.kind = DDPM_COND_CLASSES; cd.num_classes = 3; cd.dim = 4;
        CASE("cond classes with dim", INV, model_with(sched, &mp.base, NULL, &cd));
        cd = ddpm_cond_params_default(); cd.dim = 4;
        CASE("cond none with dim", INV, model_with(sched, &mp.base, NULL, &cd));
        /* A caller built against 0.2 (no dim field) still gets class conditioning. */
        cd = ddpm_cond_params_default(); cd.kind = DDPM_COND_CLASSES; cd.num_classes = 3; cd.dim = 99;
        cd.struct_size = offsetof(ddpm_cond_params, dim);
        CASE("cond struct without dim (0.2 caller)", OK, model_with(sched, &mp.base, NULL, &cd));
    }
    ddpm_cond_params c = ddpm_cond_params_default(); c.struct_size = 1;
    CASE("cond struct_size 1", INV, model_with(sched, &mp.base, NULL, &c));
    {
        ddpm_schedule_params lp = sp(0, 1 << 20, 1e-4, 0.02); lp.scale_to_steps = 1;
        ddpm_schedule *longs = NULL;
        ddpm_schedule_create(&lp, &longs);
        ddpm_mlp_params wide = mlp_p(2, 8, 1, 4096);
        CASE_MSG("model over T = 2^20 with a 2^20 x 4096 time table (size regression)", INV, "timestep table",
                 model_with(longs, &wide.base, NULL, NULL));
        ddpm_schedule_free(longs);
    }

    CASE("model_free(NULL)", OK, (ddpm_model_free(NULL), OK));
    CASE("sample_size(NULL)", OK, size_check(ddpm_model_sample_size(NULL), -1));
    CASE("num_parameters(NULL)", OK, size_check(ddpm_model_num_parameters(NULL), -1));
    CASE("step(NULL)", OK, size_check(ddpm_model_step(NULL), -1));
    CASE("network_kind(NULL)", OK, size_check(ddpm_model_network_kind(NULL), -1));
    ddpm_mlp_params gm = ddpm_mlp_params_default();
    ddpm_unet_params gu = ddpm_unet_params_default();
    CASE("get_network(NULL model)", INV, ddpm_model_get_network(NULL, &gm.base));
    CASE("get_network(NULL out)", INV, ddpm_model_get_network(mlp, NULL));
    CASE("get_network wrong kind", INV, ddpm_model_get_network(mlp, &gu.base));
    gm.base.struct_size = 0;
    CASE("get_network struct_size 0", INV, ddpm_model_get_network(mlp, &gm.base));
    ddpm_train_params gt = ddpm_train_params_default();
    ddpm_cond_params gc = ddpm_cond_params_default();
    CASE("get_train_params(NULL)", INV, ddpm_model_get_train_params(NULL, &gt));
    CASE("get_train_params(NULL out)", INV, ddpm_model_get_train_params(mlp, NULL));
    CASE("get_cond_params(NULL)", INV, ddpm_model_get_cond_params(NULL, &gc));
    CASE("get_cond_params(NULL out)", INV, ddpm_model_get_cond_params(mlp, NULL));
    ddpm_schedule *gs = NULL;
    CASE("get_schedule(NULL)", INV, ddpm_model_get_schedule(NULL, &gs));
    CASE("get_schedule(NULL out)", INV, ddpm_model_get_schedule(mlp, NULL));
    CASE("set_learning_rate(NULL)", INV, ddpm_model_set_learning_rate(NULL, 1e-3f));
    CASE("set_learning_rate 0", INV, ddpm_model_set_learning_rate(mlp, 0));
    CASE("set_learning_rate -1", INV, ddpm_model_set_learning_rate(mlp, -1));
    CASE("set_learning_rate NaN", INV, ddpm_model_set_learning_rate(mlp, NaN_));
    CASE("set_learning_rate Inf", INV, ddpm_model_set_learning_rate(mlp, Inf_));
}

static void training_prediction_sampling(void) {
    CASE("train_step ok", OK, train_count(mlp, buf, 64, 128));
    CASE("train_step(NULL model)", INV, ddpm_model_train_step(NULL, buf, 4, 8, NULL, NULL));
    CASE("train_step(NULL x0)", INV, ddpm_model_train_step(mlp, NULL, 4, 8, NULL, NULL));
    CASE("train_step batch 0", INV, train_count(mlp, buf, 0, 0));
    CASE("train_step batch -1", INV, train_count(mlp, buf, -1, -2));
    CASE("train_step count wrong", SHAPE, train_count(mlp, buf, 4, 9));
    CASE("train_step batch x S overflows", INV, train_count(mlp, buf, HUGE64, 8));
    CASE_MSG("train_step n = 2^28 over the memory limit (size regression)", INV, "bytes",
             train_count(mlp, buf, (int64_t)1 << 28, (int64_t)1 << 29));
    CASE_MSG("unet train_step n = 2^20 over the memory limit", INV, "bytes",
             train_count(unet, buf, (int64_t)1 << 20, (int64_t)64 << 20));
    float nanx0[8] = {0, 0, 0, 0, 0, NAN, 0, 0};
    CASE("train_step NaN x0", NONFIN, train_count(mlp, nanx0, 4, 8));
    int32_t big[4] = {0, 1, 4, 0}, neg[4] = {0, -1, 0, 0}, okl[4] = {0, 1, 2, 3};
    CASE("train_step labels for an unconditional model", INV, ddpm_model_train_step(mlp, buf, 4, 8, LBL(okl), NULL));
    CASE("train_step label K + 1", INV, ddpm_model_train_step(cond, buf, 4, 8, LBL(big), NULL));
    CASE("train_step label -1", INV, ddpm_model_train_step(cond, buf, 4, 8, LBL(neg), NULL));
    CASE("train_step label K (null) ok", OK, ddpm_model_train_step(cond, buf, 4, 8, LBL(okl), NULL));
    float vs[12] = {0.5f, -1, 2, 0, 0, 0, 1, 1, 1, -3, 0.25f, 0}, nanv[12] = {0, 0, 0, 0, NAN, 0, 0, 0, 0, 0, 0, 0};
    ddpm_cond_batch cb = ddpm_cond_batch_default();
    CASE("train_step vectors ok", OK, ddpm_model_train_step(vec, buf, 4, 8, VEC(vs, 12), NULL));
    CASE("train_step empty cond batch (null condition) ok", OK, ddpm_model_train_step(vec, buf, 4, 8, &cb, NULL));
    CASE("train_step vectors count wrong", SHAPE, ddpm_model_train_step(vec, buf, 4, 8, VEC(vs, 11), NULL));
    CASE("train_step vectors count -1", SHAPE, ddpm_model_train_step(vec, buf, 4, 8, VEC(vs, -1), NULL));
    CASE("train_step vectors NULL with a count", INV, ddpm_model_train_step(vec, buf, 4, 8, VEC(NULL, 12), NULL));
    CASE("train_step NaN vector", NONFIN, ddpm_model_train_step(vec, buf, 4, 8, VEC(nanv, 12), NULL));
    CASE("train_step vectors for a class model", INV, ddpm_model_train_step(cond, buf, 4, 8, VEC(vs, 12), NULL));
    CASE("train_step vectors for an unconditional model", INV, ddpm_model_train_step(mlp, buf, 4, 8, VEC(vs, 12), NULL));
    CASE("train_step labels for a vector model", INV, ddpm_model_train_step(vec, buf, 4, 8, LBL(okl), NULL));
    cb.struct_size = 3;
    CASE("train_step cond struct_size 3", INV, ddpm_model_train_step(vec, buf, 4, 8, &cb, NULL));
    cb = ddpm_cond_batch_default();
    CASE("compute_gradients vectors count wrong", SHAPE,
         ddpm_model_compute_gradients(vec, buf, 4, 8, VEC(vs, 13), 0, 0, NULL));
    ddpm_predict_params gp = ddpm_predict_params_default(); gp.guidance_scale = 2;
    CASE("predict guided vectors ok", OK, ddpm_model_predict(vec, &gp, 0, buf, 4, 5, VEC(vs, 12), buf3, 8));
    CASE("predict NaN vector", NONFIN, ddpm_model_predict(vec, &gp, 0, buf, 4, 5, VEC(nanv, 12), buf3, 8));
    CASE("predict vectors count wrong", SHAPE, ddpm_model_predict(vec, &gp, 0, buf, 4, 5, VEC(vs, 8), buf3, 8));
    ddpm_sample_params vsp = ddpm_sample_params_default(); vsp.steps = 3;
    CASE("model_sample guided vectors ok", OK, ddpm_model_sample(vec, &vsp, &gp, VEC(vs, 12), 4, buf3, 8));
    CASE("model_sample vectors count wrong", SHAPE, ddpm_model_sample(vec, &vsp, &gp, VEC(vs, 4), 4, buf3, 8));
    CASE("model_sample_shard vectors count wrong", SHAPE,
         ddpm_model_sample_shard(vec, &vsp, &gp, VEC(vs, 6), 4, 0, 4, buf3, 8));
    CASE("nll vectors ok", OK, ddpm_model_nll(vec, NULL, NULL, VEC(vs, 12), buf, 4, buf2, NULL, NULL, 8));
    int32_t ids[12] = {1, 4, 0, 2, 2, 0, 3, 3, 3, 4, 1, 0}, badids[12] = {1, 4, 0, 5, 2, 0, 3, 3, 3, 4, 1, 0};
    int32_t lens[4] = {3, 2, 0, 1}, longl[4] = {3, 4, 0, 1}, negl[4] = {3, -1, 0, 1};
    CASE("train_step tokens ok", OK, ddpm_model_train_step(tok, buf, 4, 8, TOK(ids, 12, lens), NULL));
    CASE("train_step tokens, lengths NULL (all max_length) ok", OK, ddpm_model_train_step(tok, buf, 4, 8, TOK(ids, 12, NULL), NULL));
    CASE("train_step tokens count wrong", SHAPE, ddpm_model_train_step(tok, buf, 4, 8, TOK(ids, 11, lens), NULL));
    CASE("train_step tokens NULL with a count", INV, ddpm_model_train_step(tok, buf, 4, 8, TOK(NULL, 12, lens), NULL));
    CASE("train_step token = vocab_size", INV, ddpm_model_train_step(tok, buf, 4, 8, TOK(badids, 12, lens), NULL));
    CASE("train_step length > max_length", INV, ddpm_model_train_step(tok, buf, 4, 8, TOK(ids, 12, longl), NULL));
    CASE("train_step length -1", INV, ddpm_model_train_step(tok, buf, 4, 8, TOK(ids, 12, negl), NULL));
    CASE("train_step tokens for a vector model", INV, ddpm_model_train_step(vec, buf, 4, 8, TOK(ids, 12, NULL), NULL));
    CASE("train_step lengths for a vector model", INV,
         ddpm_model_train_step(vec, buf, 4, 8, &(ddpm_cond_batch){sizeof(ddpm_cond_batch), NULL, vs, 12, NULL, 0, lens}, NULL));
    CASE("train_step vectors for a token model", INV, ddpm_model_train_step(tok, buf, 4, 8, VEC(vs, 12), NULL));
    CASE("predict guided tokens ok", OK, ddpm_model_predict(tok, &gp, 0, buf, 4, 5, TOK(ids, 12, lens), buf3, 8));
    CASE("model_sample guided tokens ok", OK, ddpm_model_sample(tok, &vsp, &gp, TOK(ids, 12, lens), 4, buf3, 8));
    CASE("nll vectors count wrong", SHAPE, ddpm_model_nll(vec, NULL, NULL, VEC(vs, 3), buf, 4, buf2, NULL, NULL, 8));
    CASE("train_step lr = 3e38 is refused, nothing changes, then recovers (regression)", NONFIN, huge_lr_step());

    ddpm_predict_params pp = ddpm_predict_params_default();
    CASE("predict ok", OK, ddpm_model_predict(mlp, &pp, DDPM_OUTPUT_EPS, buf, 4, 5, NULL, buf3, 8));
    CASE("predict(NULL params = defaults)", OK, ddpm_model_predict(mlp, NULL, DDPM_OUTPUT_X0, buf, 4, 5, NULL, buf3, 8));
    CASE("predict(NULL model)", INV, ddpm_model_predict(NULL, &pp, 0, buf, 4, 5, NULL, buf3, 8));
    CASE("predict output 99", INV, ddpm_model_predict(mlp, &pp, 99, buf, 4, 5, NULL, buf3, 8));
    CASE("predict output VARIANCE without a learned variance", INV,
         ddpm_model_predict(mlp, &pp, DDPM_OUTPUT_VARIANCE, buf, 4, 5, NULL, buf3, 8));
    CASE("predict output -1", INV, ddpm_model_predict(mlp, &pp, -1, buf, 4, 5, NULL, buf3, 8));
    CASE("predict(NULL x_t)", INV, ddpm_model_predict(mlp, &pp, 0, NULL, 4, 5, NULL, buf3, 8));
    CASE("predict(NULL out)", INV, ddpm_model_predict(mlp, &pp, 0, buf, 4, 5, NULL, NULL, 8));
    CASE("predict batch 0", INV, ddpm_model_predict(mlp, &pp, 0, buf, 0, 5, NULL, buf3, 0));
    CASE("predict t -1", INV, ddpm_model_predict(mlp, &pp, 0, buf, 4, -1, NULL, buf3, 8));
    CASE("predict t = T", INV, ddpm_model_predict(mlp, &pp, 0, buf, 4, T, NULL, buf3, 8));
    CASE("predict count wrong", SHAPE, ddpm_model_predict(mlp, &pp, 0, buf, 4, 5, NULL, buf3, 10));
    CASE("predict NaN x_t", NONFIN, ddpm_model_predict(mlp, &pp, 0, nan_array(), 4, 5, NULL, buf3, 8));
    /* Predictions run on fixed chunks, so only a learned variance's (n, D) buffer grows with n. */
    ddpm_model *learned = NULL;
    {
        ddpm_mlp_params lnet = ddpm_mlp_params_default();
        lnet.data_dim = 2;
        ddpm_train_params ltrain = ddpm_train_params_default();
        ltrain.learned_variance = 1;
        if (ddpm_model_create(sched, &lnet.base, &ltrain, NULL, &learned) != DDPM_OK) {
            fprintf(stderr, "cannot create a learned-variance model: %s\n", ddpm_last_error());
            exit(2);
        }
    }
    CASE_MSG("predict n = 2^31 over the memory limit (size regression)", INV, "bytes",
             ddpm_model_predict(learned, &pp, 0, buf, (int64_t)1 << 31, 5, NULL, buf3, (int64_t)1 << 32));
    ddpm_model_free(learned);
    ddpm_predict_params bp = pp; bp.guidance_scale = NAN;
    CASE("predict guidance NaN", INV, ddpm_model_predict(cond, &bp, 0, buf, 4, 5, LBL(okl), buf3, 8));
    bp = pp; bp.struct_size = 2;
    CASE("predict struct_size 2", INV, ddpm_model_predict(mlp, &bp, 0, buf, 4, 5, NULL, buf3, 8));
    bp = pp; bp.guidance_scale = 3;
    CASE("predict guided ok", OK, ddpm_model_predict(cond, &bp, 0, buf, 4, 5, LBL(okl), buf3, 8));
    CASE("predict label out of range", INV, ddpm_model_predict(cond, &bp, 0, buf, 4, 5, LBL(big), buf3, 8));

    ddpm_sample_params sp_ = ddpm_sample_params_default();
    sp_.steps = 5;
    CASE("model_sample ok", OK, ddpm_model_sample(mlp, &sp_, NULL, NULL, 4, buf3, 8));
    CASE("model_sample(NULL model)", INV, ddpm_model_sample(NULL, &sp_, NULL, NULL, 4, buf3, 8));
    CASE("model_sample(NULL out)", INV, ddpm_model_sample(mlp, &sp_, NULL, NULL, 4, NULL, 8));
    CASE("model_sample n 0", INV, ddpm_model_sample(mlp, &sp_, NULL, NULL, 0, buf3, 0));
    CASE("model_sample n -3", INV, ddpm_model_sample(mlp, &sp_, NULL, NULL, -3, buf3, -6));
    CASE("model_sample count wrong", SHAPE, ddpm_model_sample(mlp, &sp_, NULL, NULL, 4, buf3, 7));
    CASE_MSG("model_sample n = 2^28 over the memory limit (size regression)", INV, "bytes",
             ddpm_model_sample(mlp, &sp_, NULL, NULL, (int64_t)1 << 28, buf3, (int64_t)1 << 29));
    CASE_MSG("unet model_sample n = 2^26 over the memory limit", INV, "bytes",
             ddpm_model_sample(unet, &sp_, NULL, NULL, (int64_t)1 << 26, buf3, (int64_t)64 << 26));
    ddpm_sample_params sx = sp_; sx.prediction_type = DDPM_OUTPUT_X0;
    CASE("model_sample prediction_type X0", INV, ddpm_model_sample(mlp, &sx, NULL, NULL, 4, buf3, 8));
    sx = sp_; sx.method = 77;
    CASE("model_sample method 77", INV, ddpm_model_sample(mlp, &sx, NULL, NULL, 4, buf3, 8));
    sx = sp_; sx.progress = cancel_progress;
    CASE("model_sample progress cancels", CANCEL, ddpm_model_sample(mlp, &sx, NULL, NULL, 4, buf3, 8));
    CASE("model_sample label out of range", INV, ddpm_model_sample(cond, &sp_, NULL, LBL(big), 4, buf3, 8));
    ddpm_predict_params bad_pp = pp; bad_pp.guidance_scale = INFINITY;
    CASE("model_sample guidance Inf", INV, ddpm_model_sample(cond, &sp_, &bad_pp, LBL(okl), 4, buf3, 8));
}

/* Issue 19: a ddpm_cond_batch whose struct_size ends inside a field (a pointer: half of it was
 * copied, then dereferenced: SIGSEGV) or leaves out a field the model reads (silently the null
 * condition) is an invalid argument; an older, shorter struct that ends at a field boundary
 * and holds what the model reads still works. A caller's model gives no learned variance. */
static int cond_sized(ddpm_model *m, ddpm_cond_batch b, size_t size) {
    b.struct_size = size;
    return ddpm_model_train_step(m, buf, 4, 8, &b, NULL);
}

static void issue19(void) {
    int32_t okl[4] = {0, 1, 2, 3}, ids[12] = {1, 4, 0, 2, 2, 0, 3, 3, 3, 4, 1, 0}, lens[4] = {3, 2, 0, 1};
    float vs[12] = {0.5f, -1, 2, 0, 0, 0, 1, 1, 1, -3, 0.25f, 0};
    ddpm_cond_batch l = *LBL(okl), v = *VEC(vs, 12), t = *TOK(ids, 12, lens);
    static const size_t inside[] = {9, 12, 15, 20, 28, 36, 44, 52, 55};
    for (size_t i = 0; i < sizeof inside / sizeof inside[0]; i++) {
        char name[128];
        snprintf(name, sizeof name, "cond struct_size %zu (inside a field), class model", inside[i]);
        CASE_MSG(name, INV, "field", cond_sized(cond, l, inside[i]));
        snprintf(name, sizeof name, "cond struct_size %zu (inside a field), token model", inside[i]);
        CASE_MSG(name, INV, "field", cond_sized(tok, t, inside[i]));
    }
    CASE_MSG("cond struct_size 16 (labels only) for a vector model", INV, "vectors_count", cond_sized(vec, v, 16));
    CASE_MSG("cond struct_size 8 for a vector model", INV, "vectors_count", cond_sized(vec, v, 8));
    CASE_MSG("cond struct_size 32 (no tokens) for a token model", INV, "tokens_count", cond_sized(tok, t, 32));
    CASE_MSG("cond struct_size 8 for a class model", INV, "labels", cond_sized(cond, l, 8));
    CASE("cond struct_size 16 for a class model (an older struct) ok", OK, cond_sized(cond, l, 16));
    CASE("cond struct_size 32 for a vector model (an older struct) ok", OK, cond_sized(vec, v, 32));
    CASE("cond struct_size 48 for a token model (no lengths: max_length) ok", OK, cond_sized(tok, t, 48));
    CASE("cond struct_size 8 for an unconditional model ok", OK, cond_sized(mlp, *VEC(NULL, 0), 8));
    CASE("cond struct_size sizeof + 8 (a newer caller's tail) ok", OK, cond_sized(tok, t, sizeof(ddpm_cond_batch) + 8));
    ddpm_cond_batch half = v;
    half.struct_size = 20;
    CASE_MSG("predict cond struct_size 20", INV, "field", ddpm_model_predict(vec, NULL, 0, buf, 4, 5, &half, buf3, 8));
    CASE_MSG("model_sample cond struct_size 20", INV, "field", ddpm_model_sample(vec, NULL, NULL, &half, 4, buf3, 8));

    ddpm_sample_params lv = ddpm_sample_params_default();
    lv.variance = DDPM_VARIANCE_LEARNED;
    lv.steps = 3;
    CASE_MSG("sampler_create variance LEARNED (no caller's model has it)", INV, "LEARNED", sampler_with(lv, 4, 2));
    CASE_MSG("schedule_sample variance LEARNED", INV, "LEARNED", schedule_sample_with(lv, zero_model, 4, 2, 8));
    lv.variance = DDPM_VARIANCE_POSTERIOR;
    CASE("sampler_create variance POSTERIOR ok (control)", OK, sampler_with(lv, 4, 2));
}

static void files(void) {
    char path[PATH_MAX];
    CASE("save(NULL model)", INV, ddpm_model_save(NULL, ckpt));
    CASE("save(NULL path)", INV, ddpm_model_save(mlp, NULL));
    CASE("save(\"\")", INV, ddpm_model_save(mlp, ""));
    snprintf(path, sizeof path, "%s/no/such/folder/m.safetensors", dir);
    CASE("save into a missing folder", IO, ddpm_model_save(mlp, path));
    CASE("save onto a folder", IO, ddpm_model_save(mlp, dir));
    snprintf(path, sizeof path, "%s/roundtrip.safetensors", dir);
    CASE("save + load ok", OK, save_load(path));
    ddpm_model *m = NULL;
    CASE("load(NULL path)", INV, ddpm_model_load(NULL, &m));
    CASE("load(NULL out)", INV, ddpm_model_load(ckpt, NULL));
    snprintf(path, sizeof path, "%s/missing.safetensors", dir);
    CASE("load a missing file", IO, load_path(path));
    CASE("load a folder", IO, load_path(dir));
    CASE("load /dev/zero (was read until out of memory)", IO, load_path("/dev/zero"));
    snprintf(path, sizeof path, "%s/fifo", dir);
    mkfifo(path, 0600);
    CASE("load a FIFO without a writer (was a hang)", IO, load_path(path));
    snprintf(path, sizeof path, "%s/empty.safetensors", dir);
    write_file(path, "", 0);
    CASE("load an empty file", FMT, load_path(path));
    snprintf(path, sizeof path, "%s/text.safetensors", dir);
    write_file(path, "hello, world, this is not a checkpoint\n", 39);
    CASE("load a text file", FMT, load_path(path));
    case_seconds = 120;
    CASE("kill -9 in the middle of saves: destination loads, next save leaves no temp file", OK, kill_mid_save());
    case_seconds = 30;
}

/* ---- sampling plans (issue 19, finding 5) ------------------------------------------- */
/* The plan of model evaluations (timesteps × (corrector_steps + 1) for PC) was allocated
 * unchecked: 2^20 steps × 10000 correctors asked for 251 GB and aborted the process. Now it is
 * sized and counted against DDPM_MAX_MODEL_BYTES before anything is allocated. */

/* A schedule of 2^20 timesteps (the most), betas small enough that ᾱ stays above its floor. */
static ddpm_schedule *longest_schedule(void) {
    ddpm_schedule_params p = ddpm_schedule_params_default();
    p.num_timesteps = 1 << 20; p.beta_start = 1e-6; p.beta_end = 2e-5;
    ddpm_schedule *s = NULL;
    return ddpm_schedule_create(&p, &s) == OK ? s : NULL;
}

/* ddpm_sampler_create over the longest schedule; OK also needs ddpm_sampler_num_steps = expect. */
static int plan_sampler(int32_t method, int32_t steps, int32_t correctors, int64_t expect) {
    ddpm_schedule *s = longest_schedule();
    if (s == NULL) return -100;
    ddpm_sample_params p = ddpm_sample_params_default();
    p.method = method; p.steps = steps; p.corrector_steps = correctors;
    ddpm_sampler *smp_ = NULL;
    int st = ddpm_sampler_create(s, &p, 1, 2, &smp_);
    if (st == OK && ddpm_sampler_num_steps(smp_) != expect) st = -102;
    if (st != OK && smp_ != NULL) st = -101;
    ddpm_sampler_free(smp_);
    ddpm_schedule_free(s);
    return st;
}

/* ddpm_model_sample of an MLP over the longest schedule. */
static int plan_model_sample(int32_t method, int32_t steps, int32_t correctors) {
    ddpm_schedule *s = longest_schedule();
    ddpm_mlp_params mp = mlp_p(2, 8, 1, 4);
    ddpm_model *m = NULL;
    if (s == NULL || ddpm_model_create(s, &mp.base, NULL, NULL, &m) != OK) return -100;
    ddpm_sample_params p = ddpm_sample_params_default();
    p.method = method; p.steps = steps; p.corrector_steps = correctors;
    int st = ddpm_model_sample(m, &p, NULL, NULL, 1, buf3, 2);
    ddpm_model_free(m);
    ddpm_schedule_free(s);
    return st;
}

static void sampling_plans(void) {
    const int32_t most = 1 << 20;
    CASE_MSG("sampler_create PC 2^20 steps x 10000 correctors: plan over the memory limit (was an abort)", INV, "bytes",
             plan_sampler(DDPM_METHOD_PC, most, 10000, 0));
    CASE_MSG("sampler_create Langevin 2^20 steps x 10000: plan over the memory limit (was an abort)", INV, "bytes",
             plan_sampler(DDPM_METHOD_LANGEVIN, most, 10000, 0));
    CASE_MSG("model_sample PC 2^20 steps x 10000 correctors: plan over the memory limit (was an abort)", INV, "bytes",
             plan_model_sample(DDPM_METHOD_PC, most, 10000));
    CASE_MSG("model_sample Langevin 2^20 steps x 10000: plan over the memory limit (was an abort)", INV, "bytes",
             plan_model_sample(DDPM_METHOD_LANGEVIN, most, 10000));
    CASE("sampler_create PC 4 steps x 10000 correctors: 40004 evaluations", OK,
         plan_sampler(DDPM_METHOD_PC, 4, 10000, 4 * 10001));
    CASE("sampler_create Langevin 2^20 steps x 3: 3 x 2^20 evaluations", OK,
         plan_sampler(DDPM_METHOD_LANGEVIN, most, 3, (int64_t)3 * most));
}

int main(int argc, char **argv) {
    int a = 1;
    if (a < argc && strcmp(argv[a], "-v") == 0) { verbose = 1; a++; }
    if (a >= argc) { fprintf(stderr, "usage: %s [-v] <scratch folder>\n", argv[0]); return 2; }
    snprintf(dir, sizeof dir, "%s/bad_inputs", argv[a]);
    mkdir(dir, 0755);
    snprintf(ckpt, sizeof ckpt, "%s/ckpt.safetensors", dir);
    setvbuf(stdout, NULL, _IOLBF, 0);
    ddpm_set_num_threads(1);

    for (int i = 0; i < 4096; i++) { buf[i] = (float)((i * 37) % 17) / 8 - 1; buf2[i] = 0; }
    for (int i = 0; i < 64; i++) { ts[i] = i % T; labels[i] = i % 3; }
    for (int i = 0; i < 128; i++) betas[i] = 0.01;
    ddpm_schedule_params p = ddpm_schedule_params_default();
    p.num_timesteps = T;
    ddpm_mlp_params mp = mlp_p(2, 16, 2, 8);
    ddpm_cond_params c = ddpm_cond_params_default();
    c.kind = DDPM_COND_CLASSES; c.num_classes = 3;
    ddpm_cond_params vc = ddpm_cond_params_default(), tc = ddpm_cond_params_default();
    vc.kind = DDPM_COND_VECTOR; vc.dim = 3;
    tc.kind = DDPM_COND_TOKENS; tc.vocab_size = 5; tc.max_length = 3; tc.dim = 4;
    ddpm_unet_params up = unet_p(1, 8, 8);
    ddpm_sample_params sp0 = ddpm_sample_params_default();
    if (ddpm_schedule_create(&p, &sched) || ddpm_model_create(sched, &mp.base, NULL, NULL, &mlp) ||
        ddpm_model_create(sched, &mp.base, NULL, &c, &cond) || ddpm_model_create(sched, &up.base, NULL, NULL, &unet) ||
        ddpm_model_create(sched, &mp.base, NULL, &vc, &vec) || ddpm_model_create(sched, &mp.base, NULL, &tc, &tok) ||
        ddpm_sampler_create(sched, &sp0, 4, 2, &smp) || ddpm_model_save(mlp, ckpt)) {
        fprintf(stderr, "fixtures: %s\n", ddpm_last_error());
        return 2;
    }
    versions_and_errors();
    limits();
    schedules();
    sampling();
    models();
    training_prediction_sampling();
    issue19();
    files();
    sampling_plans();
    ddpm_sampler_free(smp);
    ddpm_model_free(unet);
    ddpm_model_free(cond);
    ddpm_model_free(vec);
    ddpm_model_free(tok);
    ddpm_model_free(mlp);
    ddpm_schedule_free(sched);
    return summary("bad_inputs");
}
