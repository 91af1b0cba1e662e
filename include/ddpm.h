/*
 * ddpm.h — SwiftDDPM, a CPU diffusion-model engine (DDPM family: train and sample).
 *
 * The library is libddpm.so, written in Swift and exported through a C ABI. This header
 * is the whole public contract.
 *
 * Overview
 * --------
 *   ddpm_schedule  a forward-process noise schedule (β_t and its derived tables),
 *                  closed-form noising q(x_t|x_0), the posterior q(x_{t-1}|x_t,x_0),
 *                  single reverse steps, and sampling with a caller's ε-model callback.
 *   ddpm_model     a schedule plus an ε-network (residual MLP for vectors, UNet for
 *                  images), AdamW state, EMA weights and the training RNG; train steps,
 *                  sampling (DDPM, DDIM, classifier-free guidance), save and load.
 *
 * Conventions
 * -----------
 *   - Timesteps are 0-based: t in 0..T-1, t = 0 is the first noising step (as diffusers).
 *   - Every fallible function returns an int status: DDPM_OK (0) or a DDPM_ERR_* code.
 *     ddpm_status_string() names a code; ddpm_last_error() gives the detailed message of
 *     the last failure on the calling thread (owned by the library, valid until the next
 *     failing call on that thread). Bad input never crashes the process.
 *   - Buffers are caller-owned. Float data is row-major float32; a function is told the
 *     number of elements it may read or write (`count`) and checks it against the shape
 *     it expects. The library never keeps a pointer past the call.
 *   - Params structs begin with `struct_size`; fill them with the matching
 *     ddpm_*_params_default() and then edit fields. Enum values are fixed and only ever
 *     appended.
 *   - Handles are opaque; every create or load function has a matching free function, and
 *     freeing NULL is a no-op.
 *   - Threading: distinct handles may be used from different threads at once. One handle
 *     must not be used by two threads at the same time (a schedule is read-only after
 *     creation and may be shared by threads). The library itself may run BLAS on several
 *     threads; see ddpm_set_num_threads().
 *   - Random numbers come from a counter-based Philox generator: the same seed gives the
 *     same results from C, Python and Swift, whatever the thread count.
 *
 * Worked example (error checks shortened to CHECK)
 * ------------------------------------------------
 *   #include "ddpm.h"
 *   #define CHECK(x) do { int s_ = (x); if (s_ != DDPM_OK) { \
 *       fprintf(stderr, "%s: %s\n", ddpm_status_string(s_), ddpm_last_error()); exit(1); } } while (0)
 *
 *   ddpm_schedule_params sp = ddpm_schedule_params_default();   // linear, T = 1000
 *   ddpm_schedule *sched = NULL;
 *   CHECK(ddpm_schedule_create(&sp, &sched));
 *
 *   ddpm_model_params mp = ddpm_model_params_default();
 *   mp.data_dim = 2;                                           // 2-D points, residual MLP
 *   ddpm_model *model = NULL;
 *   CHECK(ddpm_model_create(sched, &mp, &model));
 *
 *   float batch[256 * 2];  // fill with data
 *   float loss;
 *   for (int i = 0; i < 1000; i++)
 *       CHECK(ddpm_model_train_step(model, batch, 256, 256 * 2, NULL, &loss));
 *
 *   ddpm_sample_params smp = ddpm_sample_params_default();     // DDPM, all T steps, EMA
 *   float samples[500 * 2];
 *   CHECK(ddpm_model_sample(model, &smp, NULL, 500, samples, 500 * 2));
 *   CHECK(ddpm_model_save(model, "roll.safetensors"));
 *   ddpm_model_free(model);
 *   ddpm_schedule_free(sched);
 *
 * Linking: cc app.c -Iinclude -L<dir> -lddpm -Wl,-rpath,<dir>
 */
#ifndef DDPM_H
#define DDPM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Version ---------------------------------------------------------------------- */

#define DDPM_VERSION_MAJOR 0
#define DDPM_VERSION_MINOR 1
#define DDPM_VERSION_PATCH 0
#define DDPM_VERSION_NUMBER (DDPM_VERSION_MAJOR * 10000 + DDPM_VERSION_MINOR * 100 + DDPM_VERSION_PATCH)

/** The library's version as MAJOR*10000 + MINOR*100 + PATCH; compare with DDPM_VERSION_NUMBER. */
int ddpm_version_number(void);
/** The library's version as "MAJOR.MINOR.PATCH" (static string). */
const char *ddpm_version_string(void);

/* ---- Status and errors ------------------------------------------------------------ */

enum {
    DDPM_OK = 0,
    DDPM_ERR_INVALID_ARGUMENT = 1, /* NULL pointer, out-of-range value or enum, bad t   */
    DDPM_ERR_SHAPE = 2,            /* a count does not match the expected shape          */
    DDPM_ERR_NON_FINITE = 3,       /* NaN or infinity in an input, or the loss diverged  */
    DDPM_ERR_IO = 4,               /* a file could not be read or written                */
    DDPM_ERR_FORMAT = 5,           /* a file is not a valid checkpoint of this library   */
    DDPM_ERR_CANCELLED = 6,        /* a callback returned nonzero                        */
    DDPM_ERR_INTERNAL = 7          /* a bug: please report with ddpm_last_error()        */
};

/** A static, human-readable name for a status code ("invalid argument", ...). */
const char *ddpm_status_string(int status);

/** The detailed message of the last failure on this thread ("" if none). The string is
 *  owned by the library and stays valid until the next failing call on this thread. */
const char *ddpm_last_error(void);

/** Sets the number of threads BLAS uses for every later call in the process (1 <= n <= 1024);
 *  returns DDPM_ERR_INVALID_ARGUMENT otherwise. */
int ddpm_set_num_threads(int n);
/** The number of threads BLAS uses. */
int ddpm_get_num_threads(void);

/* ---- Schedules -------------------------------------------------------------------- */

typedef struct ddpm_schedule ddpm_schedule;

typedef enum {
    DDPM_SCHEDULE_LINEAR = 0,  /* β linear from beta_start to beta_end                   */
    DDPM_SCHEDULE_COSINE = 1,  /* Nichol & Dhariwal, offset cosine_s, β <= max_beta      */
    DDPM_SCHEDULE_SIGMOID = 2  /* β = beta_start + (beta_end - beta_start)·sigmoid(linspace(sigmoid_start, sigmoid_end, T)) */
} ddpm_schedule_kind;

typedef struct ddpm_schedule_params {
    size_t struct_size;     /* sizeof(ddpm_schedule_params)                             */
    int32_t kind;           /* ddpm_schedule_kind; default LINEAR                         */
    int32_t num_timesteps;  /* T >= 1; default 1000                                       */
    double beta_start;      /* linear: first β (1e-4); sigmoid: β_min                     */
    double beta_end;        /* linear: last β (0.02); sigmoid: β_max                      */
    int32_t scale_to_steps; /* linear: nonzero multiplies both ends by 1000/T (default 0) */
    double cosine_s;        /* cosine offset s (0.008)                                    */
    double max_beta;        /* cosine clip (0.999)                                        */
    double sigmoid_start;   /* sigmoid range start (-6)                                   */
    double sigmoid_end;     /* sigmoid range end (6)                                      */
} ddpm_schedule_params;

/** Defaults: linear, T = 1000, β 1e-4..0.02. For the sigmoid recipe of the 50-dim signals
 *  set kind = SIGMOID, num_timesteps = 100, beta_start = 0, beta_end = 0.1. */
ddpm_schedule_params ddpm_schedule_params_default(void);

/** Creates a schedule. Every β must be finite and in (0, 1).
 *  @param out receives the new handle (set to NULL on failure); free with ddpm_schedule_free. */
int ddpm_schedule_create(const ddpm_schedule_params *params, ddpm_schedule **out);

/** Creates a schedule from T caller-chosen β values (copied). */
int ddpm_schedule_create_custom(const double *betas, int64_t num_timesteps, ddpm_schedule **out);

/** Frees a schedule; NULL is a no-op. Models keep their own copy of their schedule. */
void ddpm_schedule_free(ddpm_schedule *schedule);

/** T, the number of timesteps, or -1 if schedule is NULL. */
int64_t ddpm_schedule_num_timesteps(const ddpm_schedule *schedule);

typedef enum {
    DDPM_TABLE_BETAS = 0,                    /* β_t                                      */
    DDPM_TABLE_ALPHAS = 1,                   /* α_t = 1 - β_t                            */
    DDPM_TABLE_ALPHAS_CUMPROD = 2,           /* ᾱ_t = Π_{s<=t} α_s                       */
    DDPM_TABLE_ALPHAS_CUMPROD_PREV = 3,      /* ᾱ_{t-1}, with ᾱ_{-1} = 1                 */
    DDPM_TABLE_SQRT_ALPHAS_CUMPROD = 4,      /* √ᾱ_t                                     */
    DDPM_TABLE_SQRT_ONE_MINUS_ALPHAS_CUMPROD = 5, /* √(1-ᾱ_t)                            */
    DDPM_TABLE_SQRT_RECIP_ALPHAS = 6,        /* 1/√α_t                                   */
    DDPM_TABLE_POSTERIOR_VARIANCE = 7,       /* β̃_t = (1-ᾱ_{t-1})/(1-ᾱ_t)·β_t            */
    DDPM_TABLE_POSTERIOR_LOG_VARIANCE_CLIPPED = 8, /* log β̃_t, β̃_0 replaced by β̃_1      */
    DDPM_TABLE_POSTERIOR_MEAN_COEF_X0 = 9,   /* √ᾱ_{t-1}·β_t/(1-ᾱ_t)                     */
    DDPM_TABLE_POSTERIOR_MEAN_COEF_XT = 10   /* √α_t·(1-ᾱ_{t-1})/(1-ᾱ_t)                 */
} ddpm_table;

/** Copies one derived table (T doubles) into out; count must equal T. */
int ddpm_schedule_table(const ddpm_schedule *schedule, int32_t table, double *out, int64_t count);

/** Closed-form noising x_t = √ᾱ_t·x0 + √(1-ᾱ_t)·noise, each row with its own t.
 *  x0, noise, out: (batch, dim), count = batch·dim each; t: (batch,) in 0..T-1.
 *  out may alias x0 or noise. */
int ddpm_schedule_add_noise(const ddpm_schedule *schedule, const float *x0, const float *noise,
                            const int32_t *t, int64_t batch, int64_t dim, float *out, int64_t count);

/** The posterior q(x_{t-1}|x_t, x0) = N(mean, variance·I) for each row.
 *  x0, x_t, mean_out: (batch, dim), count = batch·dim; t, variance_out: (batch,). */
int ddpm_schedule_posterior(const ddpm_schedule *schedule, const float *x0, const float *x_t,
                            const int32_t *t, int64_t batch, int64_t dim,
                            float *mean_out, float *variance_out, int64_t count);

/* ---- Sampling options ------------------------------------------------------------- */

typedef enum { DDPM_METHOD_DDPM = 0, DDPM_METHOD_DDIM = 1 } ddpm_method;

typedef enum {
    DDPM_VARIANCE_BETA = 0,      /* σ_t² = β_t                                          */
    DDPM_VARIANCE_POSTERIOR = 1  /* σ_t² = β̃_t                                          */
} ddpm_variance;

/** Called with x_T before the first reverse step (step = 0, t = the first timestep), then
 *  after each reverse step (step = 1..total, t = the timestep of the new x, -1 for the final
 *  x_0). x is the whole current batch (count floats; read-only, valid during the call).
 *  Return nonzero to cancel: the sampler then returns DDPM_ERR_CANCELLED. */
typedef int (*ddpm_progress_fn)(void *user_data, int32_t step, int32_t total, int32_t t,
                                const float *x, int64_t count);

typedef struct ddpm_sample_params {
    size_t struct_size;     /* sizeof(ddpm_sample_params)                                 */
    int32_t method;         /* ddpm_method; default DDPM                                  */
    int32_t steps;          /* reverse steps; 0 = T for DDPM, min(50, T) for DDIM. DDPM with
                               fewer than T steps is the respaced sampler                  */
    float eta;              /* DDIM stochasticity in [0, 1]; default 0                    */
    int32_t variance;       /* ddpm_variance for DDPM; default BETA                       */
    int32_t clip_x0;        /* nonzero clips the predicted x0 to [clip_min, clip_max]     */
    float clip_min, clip_max; /* default -1, 1                                             */
    uint64_t seed;          /* seeds x_T and every noise draw; default 0                  */
    float guidance_scale;   /* classifier-free guidance w; 1 = conditional (default)      */
    int32_t use_ema;        /* nonzero (default) samples with the EMA weights             */
    ddpm_progress_fn progress; /* optional, NULL by default                                */
    void *progress_user_data;
} ddpm_sample_params;

ddpm_sample_params ddpm_sample_params_default(void);

/** One reverse step x_t -> x_prev (a scheduler's `step`) for `count` floats.
 *  params->method picks DDPM (variance, clipping) or DDIM (eta, clipping).
 *  prev_t is the target timestep, -1 for x_0; pass t-1 for the ordinary DDPM step.
 *  noise (count floats, z ~ N(0, I)) may be NULL when the step adds none (prev_t = -1,
 *  or DDIM with eta = 0). out may alias x_t. */
int ddpm_schedule_step(const ddpm_schedule *schedule, const ddpm_sample_params *params,
                       int32_t t, int32_t prev_t, const float *eps, const float *x_t,
                       const float *noise, float *out, int64_t count);

/** A caller's ε-model: write ε̂(x_t, t) for the batch to eps_out (batch·dim floats).
 *  labels is (batch,) or NULL. Return 0 on success, nonzero to cancel sampling. */
typedef int (*ddpm_eps_fn)(void *user_data, float *eps_out, const float *x_t, int64_t batch,
                           int64_t dim, int32_t t, const int32_t *labels);

/** Samples n points of `dim` floats with the schedule and a caller's ε-model.
 *  labels: (n,) passed through to eps_fn, or NULL. out: (n, dim), count = n·dim.
 *  guidance_scale and use_ema are ignored (the callback owns the model). */
int ddpm_schedule_sample(const ddpm_schedule *schedule, const ddpm_sample_params *params,
                         ddpm_eps_fn eps_fn, void *eps_user_data, const int32_t *labels,
                         int64_t n, int64_t dim, float *out, int64_t count);

/* ---- Models ----------------------------------------------------------------------- */

typedef struct ddpm_model ddpm_model;

typedef enum { DDPM_NETWORK_MLP = 0, DDPM_NETWORK_UNET = 1 } ddpm_network;

typedef struct ddpm_model_params {
    size_t struct_size;       /* sizeof(ddpm_model_params)                                */
    int32_t network;          /* ddpm_network; default MLP                                */
    /* Residual MLP (vectors of data_dim floats) */
    int32_t data_dim;         /* D, required for the MLP (default 0 = unset)              */
    int32_t hidden;           /* width H (128)                                            */
    int32_t depth;            /* residual blocks L (4)                                    */
    int32_t time_embed_dim;   /* sinusoidal encoding size E, even (64)                    */
    /* UNet (images of channels × height × width) */
    int32_t channels, height, width;   /* C (1), H, W (0 = unset): H, W divisible by 2^(levels-1) */
    int32_t base_channels;    /* channels at the first level (32)                         */
    int32_t num_levels;       /* resolutions (3), at most 4                               */
    int32_t channel_mult[4];  /* per level multiplier of base_channels ({1, 2, 2, 2})     */
    int32_t res_blocks;       /* residual blocks per level (2)                            */
    int32_t attention_levels; /* bit mask: bit l puts self-attention at level l (0b100)   */
    int32_t attention_heads;  /* heads of each attention layer (1)                        */
    int32_t groups;           /* GroupNorm groups (8); must divide every channel count    */
    float dropout;            /* dropout in residual blocks while training (0)            */
    /* Conditioning (both networks) */
    int32_t num_classes;      /* K; 0 = unconditional. Labels are 0..K-1, K = "no class"  */
    float label_dropout;      /* probability of training a row with the null label (0.1)  */
    /* Optimisation */
    float learning_rate;      /* AdamW lr (1e-3)                                          */
    float beta1, beta2;       /* (0.9, 0.999)                                             */
    float adam_eps;           /* (1e-8)                                                   */
    float weight_decay;       /* decoupled weight decay (0)                               */
    float grad_clip;          /* global gradient-norm clip, 0 = off (1)                   */
    float ema_decay;          /* EMA decay d (0.995); step n uses min(d, (1+n)/(10+n))    */
    uint64_t seed;            /* parameter init and training draws (0)                    */
} ddpm_model_params;

ddpm_model_params ddpm_model_params_default(void);

/** Creates a model over a copy of `schedule`.
 *  @param out receives the handle (NULL on failure); free with ddpm_model_free. */
int ddpm_model_create(const ddpm_schedule *schedule, const ddpm_model_params *params, ddpm_model **out);

/** Frees a model; NULL is a no-op. */
void ddpm_model_free(ddpm_model *model);

/** Floats per sample (D, or C·H·W), or -1 if model is NULL. */
int64_t ddpm_model_sample_size(const ddpm_model *model);
/** Number of trainable parameters, or -1 if model is NULL. */
int64_t ddpm_model_num_parameters(const ddpm_model *model);
/** Train steps taken so far, or -1 if model is NULL. */
int64_t ddpm_model_step(const ddpm_model *model);
/** Fills *params with the model's configuration (network fields and optimisation settings).
 *  Set params->struct_size first (e.g. start from ddpm_model_params_default()); at most
 *  struct_size bytes are written. */
int ddpm_model_get_params(const ddpm_model *model, ddpm_model_params *params);
/** A copy of the model's schedule; free it with ddpm_schedule_free. */
int ddpm_model_get_schedule(const ddpm_model *model, ddpm_schedule **out);
/** Changes the AdamW learning rate (> 0) for the following steps. */
int ddpm_model_set_learning_rate(ddpm_model *model, float learning_rate);

/** One training step (DDPM Algorithm 1) on x0: (batch, sample_size), count = batch·sample_size.
 *  labels: (batch,) in 0..K (K = null), or NULL; only for models with num_classes > 0.
 *  loss_out (may be NULL) receives L_simple before the update. On DDPM_ERR_NON_FINITE for
 *  a diverged loss the parameters are left unchanged. */
int ddpm_model_train_step(ddpm_model *model, const float *x0, int64_t batch, int64_t count,
                          const int32_t *labels, float *loss_out);

/** ε̂ for x_t: (batch, sample_size) at one timestep t for every row, with the EMA weights
 *  when use_ema, and guidance scale w when labels are given. eps_out: count floats. */
int ddpm_model_predict_eps(ddpm_model *model, const float *x_t, int64_t batch, int32_t t,
                           const int32_t *labels, float guidance_scale, int32_t use_ema,
                           float *eps_out, int64_t count);

/** Draws n samples into out: (n, sample_size), count = n·sample_size.
 *  labels: (n,) class labels with classifier-free guidance params->guidance_scale, or NULL
 *  for unconditional samples. params NULL means ddpm_sample_params_default(). */
int ddpm_model_sample(ddpm_model *model, const ddpm_sample_params *params, const int32_t *labels,
                      int64_t n, float *out, int64_t count);

/** Saves network, EMA, optimizer state, RNG, schedule and config as one safetensors file.
 *  The file is written to a temporary name beside `path` and renamed over it, so an
 *  existing file is never left half-written. */
int ddpm_model_save(const ddpm_model *model, const char *path);

/** Loads a model saved by ddpm_model_save; training resumes exactly where it stopped. */
int ddpm_model_load(const char *path, ddpm_model **out);

#ifdef __cplusplus
}
#endif
#endif /* DDPM_H */
