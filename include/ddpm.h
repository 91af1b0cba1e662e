/*
 * ddpm.h — SwiftDDPM, a CPU diffusion-model engine (DDPM family: train and sample).
 *
 * The library is libddpm.so, written in Swift and exported through a C ABI. This header
 * (with ddpm_version.h) is the whole public contract. ABI 0.3.
 *
 * Overview
 * --------
 *   ddpm_schedule  a forward-process noise schedule (β_t and its derived tables),
 *                  closed-form noising q(x_t|x_0), the posterior q(x_{t-1}|x_t,x_0), and
 *                  sampling with a caller's model callback.
 *   ddpm_sampler   one reverse process (any method) stepped from outside: the caller
 *                  runs its own model and feeds the output, step by step.
 *   ddpm_model     a schedule plus a denoising network (residual MLP for vectors, UNet for
 *                  images), AdamW state, EMA weights and the training RNG; train steps,
 *                  predictions, sampling (with classifier-free guidance), save and load.
 *
 *   Parameters come in focused structs, each filled by its _default() function:
 *     ddpm_schedule_params   the β schedule
 *     ddpm_mlp_params /      the network; both begin with a ddpm_network_params head
 *     ddpm_unet_params       (struct_size, kind), and a model is created from &p.base
 *     ddpm_train_params      optimizer, clipping, EMA, condition dropout, seed, the objective
 *                            (prediction target, loss weighting, learned variance), timesteps
 *     ddpm_cond_params       what a sample is conditioned on (nothing, a class label, a vector,
 *                            a sequence of vectors, token ids)
 *     ddpm_cond_batch        the conditions of the rows of one call (labels, vectors or tokens)
 *     ddpm_sample_params     the solver: method, steps and spacing, variance, η, clipping, seed
 *     ddpm_predict_params    how the model predicts: EMA or live weights, guidance scale
 *     ddpm_vlb_params        the variational bound: variance, decoder (nats or bits), seed
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
 *   - Params structs begin with `struct_size` (the network structs with a head holding it);
 *     fill them with the matching _default() function and then edit fields. A caller
 *     built against an older, shorter struct keeps working. Enum values are fixed and
 *     only ever appended.
 *   - Handles are opaque; every create or load function has a matching free function, and
 *     freeing NULL is a no-op.
 *   - Threading (tests/c/thread_stress.c runs each rule at once, under a watchdog):
 *       * Distinct models and samplers: any calls at the same time from different threads,
 *         create, load, save and free included (saves to one path: the last rename wins).
 *       * One ddpm_schedule: read-only once created; every function taking a const
 *         ddpm_schedule* (tables, add_noise, posterior, vlb, schedule_sample, model and
 *         sampler creation) may run on it from several threads at once. Free it only when
 *         none runs.
 *       * One model or one sampler: its calls must not overlap, not even the read-only
 *         ones (step, get_*); serialise them with your own lock. A handle may move between
 *         threads, one call after another. The ddpm_model_gradients buffer belongs to its
 *         model under the same rule.
 *       * ddpm_set_num_threads / ddpm_get_num_threads: at any time, from any thread, while
 *         other threads are inside any calls (a change waits for the parallel section
 *         running, and a call in progress may continue on the new count). Results are
 *         bitwise the same for every thread count, so a change never alters any result.
 *       * ddpm_last_error() is per thread; ddpm_status_string and the version functions
 *         may be called at any time. Callbacks (model_fn, progress) run on the thread that
 *         made the call, one at a time.
 *     The library splits a call's work over its own pool of threads; see ddpm_set_num_threads().
 *   - Random numbers come from a counter-based Philox generator: the same seed gives the
 *     same results from C, Python and Swift, whatever the thread count.
 *   - Sizes are bounded before anything is allocated (see Limits below): a configuration or
 *     request over a limit gets DDPM_ERR_INVALID_ARGUMENT with the bytes it would need; a
 *     failed allocation is an error too, never an abort.
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
 *   ddpm_mlp_params net = ddpm_mlp_params_default();
 *   net.data_dim = 2;                                          // 2-D points
 *   ddpm_train_params train = ddpm_train_params_default();
 *   train.learning_rate = 2e-3f;
 *   ddpm_model *model = NULL;
 *   CHECK(ddpm_model_create(sched, &net.base, &train, NULL, &model));  // NULL: unconditional
 *
 *   float batch[256 * 2];  // fill with data
 *   float loss;
 *   for (int i = 0; i < 1000; i++)
 *       CHECK(ddpm_model_train_step(model, batch, 256, 256 * 2, NULL, &loss));
 *
 *   ddpm_sample_params smp = ddpm_sample_params_default();     // DDPM, all T steps
 *   float samples[500 * 2];
 *   CHECK(ddpm_model_sample(model, &smp, NULL, NULL, 500, samples, 500 * 2));  // EMA weights
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

#include "ddpm_version.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Version ---------------------------------------------------------------------- */

/* DDPM_VERSION_MAJOR, _MINOR, _PATCH and _NUMBER come from ddpm_version.h. */

/** The library's version as MAJOR*10000 + MINOR*100 + PATCH; compare with DDPM_VERSION_NUMBER. */
int ddpm_version_number(void);
/** The library's version as "MAJOR.MINOR.PATCH" (static string). */
const char *ddpm_version_string(void);

/* ---- Limits ----------------------------------------------------------------------- */

/* One byte ceiling per model: its parameters, gradients, EMA weights, both AdamW moments
 * (5 floats per parameter) and its timestep table (T × time_embed_dim floats), plus the
 * buffers of any one call (a train step, a prediction, a sampling run: activations and the
 * batch's own buffers). A ddpm_sampler and ddpm_schedule_sample have the same ceiling for
 * their buffers (at most 6 floats per float of the batch) and their plan of model
 * evaluations (24 bytes each; timesteps × (corrector_steps + 1) for PC). */
#define DDPM_MAX_MODEL_BYTES ((int64_t)1 << 33)  /* 8 GiB */
/* Caps on single fields, so that every size computes exactly; the byte ceiling is the
 * limit that usually binds. */
#define DDPM_MAX_TIMESTEPS (1 << 20)      /* T of any schedule                           */
#define DDPM_MAX_WIDTH (1 << 16)          /* hidden, time_embed_dim, channels, height, width,
                                             base_channels and base_channels × channel_mult[l] */
#define DDPM_MAX_SAMPLE_FLOATS (1 << 24)  /* data_dim; channels × height × width           */
#define DDPM_MAX_DEPTH 4096               /* MLP residual blocks                         */
#define DDPM_MAX_RES_BLOCKS 64            /* UNet ResBlocks per level                    */
#define DDPM_MAX_CLASSES (1 << 24)        /* num_classes                                 */
#define DDPM_MAX_CONTEXT_LENGTH 4096      /* max_length of SEQUENCE and TOKENS conditioning */
/* The smallest ᾱ_t a schedule may reach: a schedule whose ᾱ falls below it (e.g. linear
 * 1e-4..0.02 with T = 100000, or 80000 steps of β = 0.01) is refused, because x̂0 =
 * (x_t − √(1−ᾱ)·ε̂)/√ᾱ and the reverse steps lose every digit there and ᾱ soon underflows
 * to 0 (an infinite 1/√ᾱ). β_0 must also leave 1 − ᾱ_0 > 0 in double (β >= 2^-53). */
#define DDPM_MIN_ALPHA_BAR 1e-30

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

/** Sets the number of threads every later call in the process splits its work over, the
 *  calling thread included (1 <= n <= 1024); returns DDPM_ERR_INVALID_ARGUMENT otherwise.
 *  The library keeps a pool of n - 1 worker threads (they sleep between calls) and cuts
 *  each batch into fixed chunks that depend only on the batch size and the network, with
 *  gradients summed in a fixed order: results are bitwise the same for any n. A matrix
 *  product (the library's own SGEMM) runs on its chunk's thread, or, in a batch of one
 *  chunk, in tiles over the pool, the same bits either way. The default is OpenBLAS's
 *  thread count when the library loads (OPENBLAS_NUM_THREADS, else the number of cores;
 *  OpenBLAS itself is then kept on one thread); under MPI use 1 per rank. */
int ddpm_set_num_threads(int n);
/** The number of threads calls split their work over. */
int ddpm_get_num_threads(void);

/* ---- Schedules -------------------------------------------------------------------- */

typedef struct ddpm_schedule ddpm_schedule;

typedef enum {
    DDPM_SCHEDULE_LINEAR = 0,  /* β linear from beta_start to beta_end                   */
    DDPM_SCHEDULE_COSINE = 1,  /* Nichol & Dhariwal, offset cosine_s, β <= max_beta      */
    DDPM_SCHEDULE_SIGMOID = 2, /* β = beta_start + (beta_end - beta_start)·sigmoid(linspace(sigmoid_start, sigmoid_end, T)) */
    DDPM_SCHEDULE_CUSTOM = 3,  /* caller-given β (ddpm_schedule_create_custom); reported, not created, by params */
    DDPM_SCHEDULE_SCALED_LINEAR = 4 /* √β linear from √beta_start to √beta_end (diffusers' "scaled_linear") */
} ddpm_schedule_kind;

typedef struct ddpm_schedule_params {
    size_t struct_size;     /* sizeof(ddpm_schedule_params)                             */
    int32_t kind;           /* ddpm_schedule_kind; default LINEAR                         */
    int32_t num_timesteps;  /* T >= 1; default 1000                                       */
    double beta_start;      /* linear, scaled_linear: first β (1e-4); sigmoid: β_min       */
    double beta_end;        /* linear, scaled_linear: last β (0.02); sigmoid: β_max        */
    int32_t scale_to_steps; /* linear: nonzero multiplies both ends by 1000/T (default 0) */
    double cosine_s;        /* cosine offset s (0.008)                                    */
    double max_beta;        /* cosine clip (0.999)                                        */
    double sigmoid_start;   /* sigmoid range start (-6)                                   */
    double sigmoid_end;     /* sigmoid range end (6)                                      */
} ddpm_schedule_params;

/** Defaults: linear, T = 1000, β 1e-4..0.02. For the sigmoid recipe of the 50-dim signals
 *  set kind = SIGMOID, num_timesteps = 100, beta_start = 0, beta_end = 0.1. */
ddpm_schedule_params ddpm_schedule_params_default(void);

/** Creates a schedule. Every β must be finite and in (0, 1), T <= DDPM_MAX_TIMESTEPS and
 *  ᾱ_{T-1} >= DDPM_MIN_ALPHA_BAR (likewise for ddpm_schedule_create_custom).
 *  @param out receives the new handle (set to NULL on failure); free with ddpm_schedule_free. */
int ddpm_schedule_create(const ddpm_schedule_params *params, ddpm_schedule **out);

/** Creates a schedule from T caller-chosen β values (copied). */
int ddpm_schedule_create_custom(const double *betas, int64_t num_timesteps, ddpm_schedule **out);

/** Frees a schedule; NULL is a no-op. Models keep their own copy of their schedule. */
void ddpm_schedule_free(ddpm_schedule *schedule);

/** Reads back how a schedule was made: its kind, T and the parameters of that kind (the
 *  other fields keep their defaults). A linear schedule made with scale_to_steps reports
 *  the scaled ends and scale_to_steps = 0 (the same β); a custom one reports CUSTOM (its β
 *  are in ddpm_schedule_table). Before the call set out->struct_size = sizeof *out (or start
 *  from ddpm_schedule_params_default(), which sets it); at most that many bytes are written,
 *  so a caller built against an older, shorter struct is safe. */
int ddpm_schedule_get_params(const ddpm_schedule *schedule, ddpm_schedule_params *out);

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

/** Copies one derived table (a ddpm_table value) into out: count = T, the number of
 *  doubles out holds (ddpm_schedule_num_timesteps()). */
int ddpm_schedule_table(const ddpm_schedule *schedule, int32_t table, double *out, int64_t count);

/** Closed-form noising x_t = √ᾱ_t·x0 + √(1-ᾱ_t)·noise, each row with its own t.
 *  x0, noise, out: (batch, dim) floats each; count = batch·dim, the size of each of the
 *  three (checked against batch·dim). t: (batch,) in 0..T-1.
 *  out may alias x0 or noise. */
int ddpm_schedule_add_noise(const ddpm_schedule *schedule, const float *x0, const float *noise,
                            const int32_t *t, int64_t batch, int64_t dim, float *out, int64_t count);

/** The posterior q(x_{t-1}|x_t, x0) = N(mean, variance·I) for each row.
 *  x0, x_t, mean_out: (batch, dim) floats each; count = batch·dim, the size of each of these
 *  three. t: (batch,) in 0..T-1. variance_out: (batch,) floats, one variance per row — it is
 *  NOT count floats. */
int ddpm_schedule_posterior(const ddpm_schedule *schedule, const float *x0, const float *x_t,
                            const int32_t *t, int64_t batch, int64_t dim,
                            float *mean_out, float *variance_out, int64_t count);

/* ---- Sampling options ------------------------------------------------------------- */

typedef enum {
    DDPM_METHOD_DDPM = 0,           /* ancestral (Algorithm 2); fewer steps than T: respaced      */
    DDPM_METHOD_DDIM = 1,           /* DDIM with eta                                             */
    DDPM_METHOD_DPM_SOLVER_PP = 2,  /* DPM-Solver++ multistep, data prediction, solver_order 1-3 */
    DDPM_METHOD_SDE_DPM_SOLVER_PP = 3, /* its SDE variant, solver_order 1-2                       */
    DDPM_METHOD_LANGEVIN = 4,       /* annealed Langevin dynamics with the score (NCSN):
                                       corrector_steps steps at each timestep, step size
                                       δ_t = langevin_step_size·(1-ᾱ_t)/(1-ᾱ_last)            */
    DDPM_METHOD_PC = 5              /* predictor–corrector (Song et al. 2021): at each timestep
                                       corrector_steps Langevin steps with the snr step size, then
                                       a DDPM step                                               */
} ddpm_method;

/** How the timesteps are spread over 0..T-1 (diffusers' names; see ddpm_sample_params.spacing). */
typedef enum {
    DDPM_SPACING_DEFAULT = 0,   /* ⌊(S-i)·T/S⌋ - 1: ends at T-1; = TRAILING when S divides T   */
    DDPM_SPACING_LEADING = 1,   /* (S-1-i)·⌊T/S⌋ + steps_offset                                */
    DDPM_SPACING_TRAILING = 2,  /* round(T - i·T/S) - 1                                        */
    DDPM_SPACING_LINSPACE = 3,  /* round((S-1-i)·(T-1)/(S-1)): from T-1 down to 0              */
    DDPM_SPACING_KARRAS = 4,    /* Karras et al. σ spacing (ρ = 7) mapped to the nearest t;
                                   repeats dropped, so fewer than S steps can result            */
    DDPM_SPACING_DPM_LEADING = 5,  /* (S-i)·⌊T/(S+1)⌋ + steps_offset: S+1 leading points, the last
                                   dropped (DPMSolverMultistepScheduler's "leading")             */
    DDPM_SPACING_DPM_LINSPACE = 6  /* round((S-i)·(T-1)/S): S+1 linspace points, the last (0)
                                   dropped (DPMSolverMultistepScheduler's "linspace")            */
} ddpm_spacing;

typedef enum {
    DDPM_VARIANCE_BETA = 0,      /* σ_t² = β_t                                          */
    DDPM_VARIANCE_POSTERIOR = 1, /* σ_t² = β̃_t                                          */
    DDPM_VARIANCE_LEARNED = 2    /* the model's: log σ_t² = frac·log β_t + (1-frac)·log β̃_t,
                                    frac = (v+1)/2 from its variance output (DDPM and PC
                                    sampling, and the bound, of a learned_variance model)   */
} ddpm_variance;

/** What a model output (or a requested prediction) is. */
typedef enum {
    DDPM_OUTPUT_EPS = 0,  /* ε̂, the noise in x_t = √ᾱ_t·x0 + √(1-ᾱ_t)·ε                  */
    DDPM_OUTPUT_X0 = 1,   /* x̂0 = (x_t - √(1-ᾱ_t)·ε̂)/√ᾱ_t, the predicted clean sample     */
    DDPM_OUTPUT_V = 2,    /* v̂ = √ᾱ_t·ε̂ - √(1-ᾱ_t)·x̂0 (Salimans & Ho)                     */
    DDPM_OUTPUT_SCORE = 3, /* s = -ε̂/√(1-ᾱ_t), the score of q(x_t); a prediction only, never a
                             model's output type                                             */
    DDPM_OUTPUT_VARIANCE = 4 /* σ_t² of a learned reverse variance; a prediction only        */
} ddpm_output;

/** Called with x_T before the first reverse step (step = 0, t = the first timestep), then
 *  after each reverse step (step = 1..total, t = the timestep of the new x, -1 for the final
 *  x_0). x is the whole current batch: count = n·dim floats (n samples of dim floats; the
 *  model's sample_size for ddpm_model_sample), read-only, valid only during the call.
 *  Return nonzero to cancel: the sampler then returns DDPM_ERR_CANCELLED. */
typedef int (*ddpm_progress_fn)(void *user_data, int32_t step, int32_t total, int32_t t,
                                const float *x, int64_t count);

/** The solver: which reverse process, how many steps, its noise and clipping. */
typedef struct ddpm_sample_params {
    size_t struct_size;     /* sizeof(ddpm_sample_params)                                 */
    int32_t method;         /* ddpm_method; default DDPM                                  */
    int32_t steps;          /* timesteps S; 0 = T for DDPM and PC, min(50, T) for the others.
                               DDPM with fewer than T steps is the respaced sampler. Spread
                               by `spacing`; after the last one the sampler goes to x_0      */
    float eta;              /* DDIM stochasticity in [0, 1]; default 0                    */
    int32_t variance;       /* ddpm_variance for DDPM and the PC predictor; default BETA  */
    int32_t clip_x0;        /* nonzero clips the predicted x0 to [clip_min, clip_max]     */
    float clip_min, clip_max; /* default -1, 1                                             */
    uint64_t seed;          /* seeds x_T and every noise draw; default 0                  */
    int32_t prediction_type; /* ddpm_output a caller's model returns (callbacks and the
                               ddpm_sampler); default EPS. A ddpm_model knows its own.    */
    const int32_t *timesteps; /* optional: the caller's own timesteps, strictly decreasing
                               in 0..T-1 (the last step goes to x_0); overrides steps.
                               Read during the call that receives the params (NULL)       */
    int32_t num_timesteps;  /* entries of timesteps (0)                                   */
    ddpm_progress_fn progress; /* optional, NULL by default                                */
    void *progress_user_data;
    /* ABI 0.2: solvers beyond DDPM and DDIM (fields appended; older callers get the defaults). */
    int32_t spacing;        /* ddpm_spacing; default DEFAULT                              */
    int32_t steps_offset;   /* added to LEADING timesteps (diffusers' steps_offset); 0    */
    int32_t use_clipped_model_output; /* DDIM: recompute ε̂ from the clipped x̂0 (0, as diffusers) */
    int32_t thresholding;   /* nonzero: dynamic thresholding of x̂0 (Imagen): per sample
                               s = clamp(quantile(|x̂0|, threshold_quantile), 1, threshold_max),
                               x̂0 = clip(x̂0, -s, s)/s; after clip_x0 if both (0)          */
    float threshold_quantile; /* in (0, 1]; 0.995                                          */
    float threshold_max;    /* >= 1; 1                                                    */
    int32_t solver_order;   /* DPM-Solver++ order; 2                                      */
    int32_t lower_order_final; /* nonzero (default): lower orders on the last steps when
                               there are fewer than 15                                    */
    int32_t corrector_steps; /* Langevin steps per timestep (LANGEVIN, PC); 1             */
    float snr;              /* PC corrector signal-to-noise ratio r; 0.16. The step is
                               2(1-β_t)(r·‖z‖/‖s‖)², norms averaged over the batch        */
    float langevin_step_size; /* LANGEVIN ε; 2e-5                                          */
    /* ABI 0.3 (appended; older callers get the default): */
    int32_t set_alpha_to_one; /* DDIM, DPM-Solver++: nonzero (default) takes the step after the
                               last timestep to x_0 (ᾱ = 1); 0 takes it to ᾱ_0 (diffusers' DDIM
                               set_alpha_to_one=False, DPM-Solver's final_sigmas_type
                               "sigma_min"). 0 is refused for the other methods             */
} ddpm_sample_params;

ddpm_sample_params ddpm_sample_params_default(void);

/* ---- Sampling with a caller's model ----------------------------------------------- */

/** A caller's model: write its output at (x_t, t) for the batch to out, of the kind
 *  params->prediction_type names (ε̂ by default). x_t and out: (batch, dim) floats each; x_t
 *  is the library's, read-only and valid during the call. labels: (batch,) class labels, the
 *  caller's labels passed through, or NULL. (ddpm_cond_model_fn below also sees vectors,
 *  tokens and lengths.) Return 0 on success, nonzero to cancel sampling. */
typedef int (*ddpm_model_fn)(void *user_data, float *out, const float *x_t, int64_t batch,
                             int64_t dim, int32_t t, const int32_t *labels);

/** Samples n points of `dim` floats with the schedule and a caller's model.
 *  labels: (n,) passed through to model_fn, or NULL. out: (n, dim) floats; count = n·dim,
 *  the size of out. */
int ddpm_schedule_sample(const ddpm_schedule *schedule, const ddpm_sample_params *params,
                         ddpm_model_fn model_fn, void *model_user_data, const int32_t *labels,
                         int64_t n, int64_t dim, float *out, int64_t count);

/* ---- The variational bound (negative log-likelihood) ------------------------------ */

/** How the bound's last term L_0 = -log p(x_0|x_1) scores x_0. */
typedef enum {
    DDPM_DECODER_CONTINUOUS = 0,  /* a Gaussian density: the bound is in nats per dimension   */
    DDPM_DECODER_DISCRETIZED = 1  /* data on 2^bits levels in [-1, 1] (images): the Gaussian's
                                     mass of x_0's bin, in bits per dimension                  */
} ddpm_decoder;

typedef struct ddpm_vlb_params {
    size_t struct_size;     /* sizeof(ddpm_vlb_params)                                    */
    int32_t variance;       /* ddpm_variance of p(x_{t-1}|x_t): BETA (default) or POSTERIOR */
    int32_t decoder;        /* ddpm_decoder; CONTINUOUS                                   */
    int32_t bits;           /* levels 2^bits for DISCRETIZED; 8                           */
    uint64_t seed;          /* seeds the x_t ~ q(x_t|x_0) of every term; 0                */
    int32_t prediction_type; /* ddpm_output a caller's model returns (callbacks); EPS      */
} ddpm_vlb_params;

ddpm_vlb_params ddpm_vlb_params_default(void);

/** The variational bound L_T + Σ L_{t-1} + L_0 of each of n samples x0 (n, dim) under a
 *  caller's model (one call per timestep, each at a fresh x_t ~ q(x_t|x_0)), in bits/dim
 *  (DISCRETIZED) or nats/dim (CONTINUOUS). total_out: (n,). prior_out: (n,) L_T, or NULL.
 *  terms_out: (n, T) with L_0 at t = 0 and L_{t-1} at t >= 1, or NULL. count = n·dim, the
 *  size of x0 only: total_out and prior_out hold n floats, terms_out n·T. */
int ddpm_schedule_vlb(const ddpm_schedule *schedule, const ddpm_vlb_params *params,
                      ddpm_model_fn model_fn, void *model_user_data, const int32_t *labels,
                      const float *x0, int64_t n, int64_t dim, float *total_out, float *prior_out,
                      float *terms_out, int64_t count);

struct ddpm_cond_batch;  /* defined with the models below */

/** A caller's model that reads the whole condition of its rows  (since 0.3). As ddpm_model_fn,
 *  with cond the condition of this call's `batch` rows, or NULL when the caller gave none: a
 *  ddpm_cond_batch (struct_size = sizeof(ddpm_cond_batch)) whose labels, vectors, tokens and
 *  lengths point at those rows of what the caller passed to ddpm_schedule_sample_cond or
 *  ddpm_schedule_vlb_cond, with vectors_count and tokens_count for those rows; NULL fields
 *  stay NULL. Valid during the call. */
typedef int (*ddpm_cond_model_fn)(void *user_data, float *out, const float *x_t, int64_t batch,
                                  int64_t dim, int32_t t, const struct ddpm_cond_batch *cond);

/** ddpm_schedule_sample with a ddpm_cond_model_fn: cond (n rows: labels, vectors of any
 *  per-row size, tokens, lengths; or NULL) is passed through to model_fn, which gives it its
 *  meaning. Checked: each given count is a multiple of n; lengths are >= 0, and at most the
 *  ids per row when tokens are given. count = n·dim, the size of out.  (since 0.3) */
int ddpm_schedule_sample_cond(const ddpm_schedule *schedule, const ddpm_sample_params *params,
                              ddpm_cond_model_fn model_fn, void *model_user_data,
                              const struct ddpm_cond_batch *cond, int64_t n, int64_t dim, float *out,
                              int64_t count);

/** ddpm_schedule_vlb with a ddpm_cond_model_fn, cond as for ddpm_schedule_sample_cond;
 *  count = n·dim, the size of x0 only (the outputs as ddpm_schedule_vlb's).  (since 0.3) */
int ddpm_schedule_vlb_cond(const ddpm_schedule *schedule, const ddpm_vlb_params *params,
                           ddpm_cond_model_fn model_fn, void *model_user_data,
                           const struct ddpm_cond_batch *cond, const float *x0, int64_t n, int64_t dim,
                           float *total_out, float *prior_out, float *terms_out, int64_t count);

/* ---- A sampler stepped from outside (a diffusers-style scheduler) ---------------- */

typedef struct ddpm_sampler ddpm_sampler;

/** Creates the reverse process `params` describes for batches of n samples of dim floats,
 *  over a copy of the schedule. Its steps go through the timesteps of
 *  ddpm_sampler_timesteps() in order; its noise comes from params->seed, so that
 *  init_noise + the steps reproduce ddpm_schedule_sample exactly. params->progress is
 *  not used. variance = DDPM_VARIANCE_LEARNED is DDPM_ERR_INVALID_ARGUMENT here and in
 *  ddpm_schedule_sample: a caller's model output carries no learned variance. */
int ddpm_sampler_create(const ddpm_schedule *schedule, const ddpm_sample_params *params,
                        int64_t n, int64_t dim, ddpm_sampler **out);

/** Frees a sampler; NULL is a no-op. */
void ddpm_sampler_free(ddpm_sampler *sampler);

/** The number of steps (model evaluations) S, or -1 if sampler is NULL. One per timestep,
 *  except LANGEVIN (corrector_steps per timestep) and PC (corrector_steps + 1 per timestep). */
int64_t ddpm_sampler_num_steps(const ddpm_sampler *sampler);

/** The timestep of each step's model evaluation, in order, into out: (S,) int32; count = S
 *  (ddpm_sampler_num_steps()), the size of out. */
int ddpm_sampler_timesteps(const ddpm_sampler *sampler, int32_t *out, int64_t count);

/** 1 if the next step adds noise (and so would use the `noise` argument of
 *  ddpm_sampler_step), 0 if not, -1 if sampler is NULL or finished. */
int32_t ddpm_sampler_step_adds_noise(const ddpm_sampler *sampler);

/** The timestep of the x the next step expects (the first timestep before any step), or
 *  -1 once every step has been taken (or if sampler is NULL). */
int32_t ddpm_sampler_timestep(const ddpm_sampler *sampler);

/** Fills x with x_T ~ N(0, I) from the seed: what ddpm_schedule_sample starts from.
 *  count = n·dim, the size of x (n and dim of ddpm_sampler_create). Optional: a caller may
 *  start from its own x_T. */
int ddpm_sampler_init_noise(ddpm_sampler *sampler, float *x, int64_t count);

/** One step at t = ddpm_sampler_timestep(): a reverse step to the next timestep (x_0 after
 *  the last), or a Langevin step at t. x (n·dim floats) holds x on entry and the result on return. model_output is the
 *  model's output at (x_t, t), of params->prediction_type. noise (n·dim floats of
 *  z ~ N(0, I)) replaces the sampler's own draw when not NULL; x0_out, when not NULL,
 *  receives the predicted x̂0 the step used (after clipping). count = n·dim (of
 *  ddpm_sampler_create): model_output, x, noise and x0_out each hold count floats.
 *  After the last step, returns DDPM_ERR_INVALID_ARGUMENT. */
int ddpm_sampler_step(ddpm_sampler *sampler, const float *model_output, float *x,
                      const float *noise, float *x0_out, int64_t count);

/* ---- Model parameters ------------------------------------------------------------- */

typedef struct ddpm_model ddpm_model;

typedef enum { DDPM_NETWORK_MLP = 0, DDPM_NETWORK_UNET = 1 } ddpm_network_kind;

/** The head every network params struct begins with. */
typedef struct ddpm_network_params {
    size_t struct_size;       /* sizeof the whole network struct (ddpm_mlp_params, ...)   */
    int32_t kind;             /* ddpm_network_kind of the struct                          */
} ddpm_network_params;

/** A residual MLP over vectors of data_dim floats. */
typedef struct ddpm_mlp_params {
    ddpm_network_params base; /* { sizeof(ddpm_mlp_params), DDPM_NETWORK_MLP }            */
    int32_t data_dim;         /* D, required (default 0 = unset)                          */
    int32_t hidden;           /* width H (128)                                            */
    int32_t depth;            /* residual blocks L (4)                                    */
    int32_t time_embed_dim;   /* sinusoidal encoding size E, even (64)                    */
} ddpm_mlp_params;

ddpm_mlp_params ddpm_mlp_params_default(void);

#define DDPM_UNET_MAX_LEVELS 8

/** A UNet over images of channels × height × width. */
typedef struct ddpm_unet_params {
    ddpm_network_params base; /* { sizeof(ddpm_unet_params), DDPM_NETWORK_UNET }          */
    int32_t channels, height, width; /* C (1), H, W (0 = unset): H, W divisible by 2^(levels-1) */
                                     /* H = 1: a 1-D UNet over signals of length W (1×3 kernels,
                                        resampling along W, only W divisible)                   */
    int32_t base_channels;    /* channels at the first level (32)                         */
    int32_t num_levels;       /* resolutions (3), 1..DDPM_UNET_MAX_LEVELS                 */
    int32_t channel_mult[DDPM_UNET_MAX_LEVELS]; /* per level multiplier of base_channels
                                                  ({1, 2, 2, ...}); the first num_levels count */
    int32_t res_blocks;       /* residual blocks per level (2)                            */
    uint32_t attention_levels; /* bit mask: bit l puts self-attention at level l (0b100)  */
    int32_t attention_heads;  /* heads of each attention layer (1)                        */
    int32_t groups;           /* GroupNorm groups (8); must divide every channel count    */
    float dropout;            /* dropout in residual blocks while training (0)            */
    int32_t time_embed_dim;   /* sinusoidal encoding size, even (64)                      */
    uint32_t cross_attention_levels; /* bit mask: bit l puts cross-attention to a SEQUENCE or
                                 TOKENS condition at level l (0; the middle always has one
                                 when the model has such a condition)  (since 0.3)        */
    /* diffusers' UNet2DModel options (appended; older callers get the defaults, the network as before): */
    int32_t flip_sin_to_cos;  /* sinusoid halves [cos, sin] instead of [sin, cos] (0)       */
    float freq_shift;         /* s in ω_i = 10000^(−i/(E/2 − s)) (0; DDPM's code: 1), < E/2  */
    float norm_eps;           /* ε of every GroupNorm (1e-5)                               */
    int32_t downsample_padding; /* 1: stride-2 conv padded on every side (1); 0: one zero row
                                   and column at the bottom and right only (original DDPM)  */
    int32_t attention_head_dim; /* d > 0: every attention has channels/d heads of d channels,
                                   overriding attention_heads (0: attention_heads)          */
    int32_t middle_attention; /* the middle block's self-attention (1)                    */
    int32_t cross_attention_positions; /* nonzero: each cross-attention layer adds a learned
                                 position embedding of its pixels to its queries, so that
                                 words naming a place can find it (0)  (since 0.3)        */
} ddpm_unet_params;

ddpm_unet_params ddpm_unet_params_default(void);

/** How the training timestep t is drawn. */
typedef enum {
    DDPM_TIMESTEPS_UNIFORM = 0,    /* t ~ U{0..T-1}                                        */
    DDPM_TIMESTEPS_IMPORTANCE = 1  /* by the running second moment of each t's loss (the last
                                      10 per t; uniform until every t has 10), the loss
                                      weighted 1/(T·p_t) (improved-diffusion's resampler). One
                                      process's history: refused across data-parallel shards */
} ddpm_timestep_sampling;

/** How each sample's squared error is weighted in the training loss (SNR = ᾱ/(1-ᾱ)). */
typedef enum {
    DDPM_LOSS_UNIFORM = 0,    /* L_simple                                                  */
    DDPM_LOSS_MIN_SNR = 1,    /* min-SNR-γ: ε: min(SNR,γ)/SNR, x0: min(SNR,γ), v: min(SNR,γ)/(SNR+1) */
    DDPM_LOSS_VLB = 2         /* the variational bound's weight of L_{t-1} as an ε error,
                                 β_t²/(2σ_t²α_t(1-ᾱ_t)) with σ_t² = β̃_t (β̃_1 at t = 0), times
                                 the target's factor (1, SNR, ᾱ_t)                         */
} ddpm_loss_weighting;

/** The training recipe: get the defaults from ddpm_train_params_default(), change fields.
 *  The enum fields are int32_t (a fixed size in the ABI, which a C enum is not) holding the
 *  values of the enums above. */
typedef struct ddpm_train_params {
    size_t struct_size;       /* sizeof(ddpm_train_params)                                */
    float learning_rate;      /* AdamW lr (1e-3)                                          */
    float beta1, beta2;       /* (0.9, 0.999)                                             */
    float adam_eps;           /* (1e-8)                                                   */
    float weight_decay;       /* decoupled weight decay (0)                               */
    float grad_clip;          /* global gradient-norm clip, 0 = off (1)                   */
    float ema_decay;          /* EMA decay d (0.995); step n uses min(d, (1+n)/(10+n))    */
    union {                   /* probability of training a row on the null condition, for
                                 classifier-free guidance (0.1)                           */
        float condition_dropout;  /* the null label, vector or context                   */
        float label_dropout;      /* the same field, by its name before 0.3               */
    };
    uint64_t seed;            /* parameter init and training draws (0)                    */
    int32_t prediction_target; /* a ddpm_output: what the network learns, DDPM_OUTPUT_EPS
                                 (default), DDPM_OUTPUT_X0 or DDPM_OUTPUT_V               */
    int32_t loss_weighting;   /* a ddpm_loss_weighting (above); DDPM_LOSS_UNIFORM          */
    float min_snr_gamma;      /* γ of MIN_SNR (5)                                         */
    int32_t learned_variance; /* nonzero: the network also outputs its reverse variance, trained
                                 by the hybrid loss L_simple + vlb_lambda·L_vlb (0)        */
    float vlb_lambda;         /* λ of the hybrid loss (0.001)                             */
    int32_t timestep_sampling; /* a ddpm_timestep_sampling (above); DDPM_TIMESTEPS_UNIFORM */
} ddpm_train_params;

ddpm_train_params ddpm_train_params_default(void);

typedef enum {
    DDPM_COND_NONE = 0,       /* unconditional                                            */
    DDPM_COND_CLASSES = 1,    /* a class label per sample: 0..K-1, K = "no class"         */
    DDPM_COND_VECTOR = 2,     /* a vector c of `dim` floats per sample (any encoder's
                                 embedding), projected into the time embedding; a learned
                                 null vector stands for "no condition"                    */
    DDPM_COND_SEQUENCE = 3,   /* up to max_length vectors of `dim` floats per sample (a text
                                 encoder's output) with a length each; the UNet cross-attends
                                 to them at cross_attention_levels and the middle, and both
                                 networks add their masked mean to the time embedding (the
                                 MLP reads the mean only). Length 0 = no condition: a learned
                                 one-vector null context                                  */
    DDPM_COND_TOKENS = 4      /* up to max_length token ids in 0..vocab_size-1 per sample,
                                 embedded by learned token + position tables of `dim`
                                 features, then (encoder_layers > 0) a transformer over
                                 them trained with the model, then as SEQUENCE            */
} ddpm_cond_kind;

/** What a sample is conditioned on. */
typedef struct ddpm_cond_params {
    size_t struct_size;       /* sizeof(ddpm_cond_params)                                 */
    int32_t kind;             /* ddpm_cond_kind; default NONE                             */
    int32_t num_classes;      /* K >= 1 for CLASSES (0)                                   */
    int32_t dim;              /* Dc >= 1 for VECTOR, SEQUENCE, TOKENS (0)  (since 0.3)    */
    int32_t max_length;       /* Lmax >= 1 for SEQUENCE, TOKENS (0)  (since 0.3)          */
    int32_t vocab_size;       /* V >= 1 for TOKENS (0)  (since 0.3)                       */
    int32_t encoder_layers;   /* TOKENS: pre-LayerNorm transformer blocks over the token
                                 embeddings (masked self-attention + 4·dim SiLU MLP), then a
                                 LayerNorm; 0 (default) = the embeddings alone  (since 0.3) */
    int32_t encoder_heads;    /* their attention heads, >= 1 dividing dim when
                                 encoder_layers > 0, else 0 (0)  (since 0.3)              */
} ddpm_cond_params;

ddpm_cond_params ddpm_cond_params_default(void);

/** The condition of each sample of one call: what a model's conditioning reads (labels for
 *  CLASSES, vectors for VECTOR and SEQUENCE, tokens for TOKENS). Pass NULL, or leave a field
 *  NULL, for the null condition (unconditional rows; the unconditional branch of guidance).
 *  Everything given is checked: labels in 0..K (K = null), each count, lengths in
 *  0..max_length, token ids in 0..V-1, every float finite. struct_size must end at a field
 *  boundary (an older, shorter struct) or cover the whole struct, and must include the
 *  fields the model's conditioning reads (labels; vectors and vectors_count; tokens and
 *  tokens_count; lengths may be left out): otherwise DDPM_ERR_INVALID_ARGUMENT. */
typedef struct ddpm_cond_batch {
    size_t struct_size;       /* sizeof(ddpm_cond_batch)                                  */
    const int32_t *labels;    /* (rows,) class labels, or NULL                            */
    const float *vectors;     /* VECTOR: (rows, dim); SEQUENCE: (rows, max_length, dim)   */
    int64_t vectors_count;    /* floats at `vectors`                                      */
    const int32_t *tokens;    /* TOKENS: (rows, max_length) ids, or NULL                  */
    int64_t tokens_count;     /* ids at `tokens`: rows·max_length                         */
    const int32_t *lengths;   /* SEQUENCE, TOKENS: (rows,) in 0..max_length (0 = the null
                                 condition), or NULL for max_length every row             */
} ddpm_cond_batch;

ddpm_cond_batch ddpm_cond_batch_default(void);

/** How a model predicts: with which weights and which classifier-free guidance. */
typedef struct ddpm_predict_params {
    size_t struct_size;       /* sizeof(ddpm_predict_params)                              */
    float guidance_scale;     /* w: ε̂ = ε̂_uncond + w·(ε̂_cond - ε̂_uncond); 1 = conditional
                                 (default), 0 = unconditional; used when a condition is given */
    int32_t use_ema;          /* nonzero (default) predicts with the EMA weights          */
} ddpm_predict_params;

ddpm_predict_params ddpm_predict_params_default(void);

/* ---- Models ----------------------------------------------------------------------- */

/** Creates a model over a copy of `schedule`.
 *  @param network &mlp.base or &unet.base (its kind says which struct it heads).
 *  @param train   the training recipe, or NULL for ddpm_train_params_default().
 *  @param cond    the conditioning, or NULL for none.
 *  @param out receives the handle (NULL on failure); free with ddpm_model_free.
 *  A field beyond its DDPM_MAX_* cap, or a model over DDPM_MAX_MODEL_BYTES, is
 *  DDPM_ERR_INVALID_ARGUMENT; the message gives the bytes it would need. */
int ddpm_model_create(const ddpm_schedule *schedule, const ddpm_network_params *network,
                      const ddpm_train_params *train, const ddpm_cond_params *cond,
                      ddpm_model **out);

/** Frees a model; NULL is a no-op. */
void ddpm_model_free(ddpm_model *model);

/** Floats per sample (D, or C·H·W), or -1 if model is NULL. */
int64_t ddpm_model_sample_size(const ddpm_model *model);
/** Number of trainable parameters, or -1 if model is NULL. */
int64_t ddpm_model_num_parameters(const ddpm_model *model);
/** Train steps taken so far, or -1 if model is NULL. */
int64_t ddpm_model_step(const ddpm_model *model);
/** The model's ddpm_network_kind, or -1 if model is NULL. */
int32_t ddpm_model_network_kind(const ddpm_model *model);
/** Fills the network struct that `out` heads. Before the call set out->struct_size (the size
 *  of the whole struct) and out->kind, which must be the model's (ddpm_model_network_kind());
 *  the _default() functions set both:
 *      ddpm_unet_params u = ddpm_unet_params_default();   (or ddpm_mlp_params_default())
 *      int status = ddpm_model_get_network(model, &u.base);
 *  A kind other than the model's is DDPM_ERR_INVALID_ARGUMENT. At most out->struct_size
 *  bytes are written. */
int ddpm_model_get_network(const ddpm_model *model, ddpm_network_params *out);
/** Fills *out with the model's training recipe (current learning rate included). Before the
 *  call set out->struct_size = sizeof *out (ddpm_train_params_default() sets it); at most
 *  that many bytes are written. */
int ddpm_model_get_train_params(const ddpm_model *model, ddpm_train_params *out);
/** Fills *out with the model's conditioning. Before the call set out->struct_size =
 *  sizeof *out (ddpm_cond_params_default() sets it); at most that many bytes are written. */
int ddpm_model_get_cond_params(const ddpm_model *model, ddpm_cond_params *out);
/** A copy of the model's schedule; free it with ddpm_schedule_free. */
int ddpm_model_get_schedule(const ddpm_model *model, ddpm_schedule **out);
/** Changes the AdamW learning rate (> 0) for the following steps. */
int ddpm_model_set_learning_rate(ddpm_model *model, float learning_rate);

/** One training step (DDPM Algorithm 1) on x0: (batch, sample_size) floats; count =
 *  batch·sample_size, the size of x0 (sample_size: ddpm_model_sample_size()).
 *  cond: the condition of each row (ddpm_cond_batch), or NULL; only for conditional models.
 *  loss_out (may be NULL) receives L_simple before the update.
 *  A step is applied only if everything it writes stays finite: when the loss, the gradient
 *  norm or any updated parameter, AdamW moment or EMA weight would not be finite, it returns
 *  DDPM_ERR_NON_FINITE (naming the tensor) and the parameters, EMA, moments and step count
 *  are unchanged (the step's random draws are spent), so training can go on, e.g. after
 *  ddpm_model_set_learning_rate() with a lower rate. An exploding update is refused the same
 *  way: one whose RMS is over 100 × max(RMS of the parameters, 1) (with AdamW an update's
 *  RMS is about the learning rate, so only a rate of order 100 or more gets there; one such
 *  step accepted used to leave weights so large that no later step could succeed). This
 *  guards against one explosive step, not against a run that drifts away over many
 *  accepted steps: keep checkpoints (ddpm_model_save) to go back to. With gradient clipping
 *  on, a backward pass that overflows float is run again on a scaled loss gradient (only the
 *  direction of a clipped gradient matters), and finite gradients of any size are clipped,
 *  so such steps still go through. A step that would take the step counter past 2^53 (what
 *  a checkpoint holds) is DDPM_ERR_INVALID_ARGUMENT. With importance-sampled timesteps only
 *  an applied step adds its losses to the history. */
int ddpm_model_train_step(ddpm_model *model, const float *x0, int64_t batch, int64_t count,
                          const ddpm_cond_batch *cond, float *loss_out);

/** The model's prediction for x_t: (batch, sample_size) at one timestep t for every row,
 *  as `output` (a ddpm_output: ε̂, x̂0, v̂, the score, or the learned σ_t²), with the weights and guidance of params (NULL =
 *  ddpm_predict_params_default()); guidance applies when a condition (cond) is given.
 *  x_t and out: (batch, sample_size) floats each; count = batch·sample_size, the size of
 *  each (also for output = DDPM_OUTPUT_VARIANCE, σ_t² per element). */
int ddpm_model_predict(ddpm_model *model, const ddpm_predict_params *params, int32_t output,
                       const float *x_t, int64_t batch, int32_t t, const ddpm_cond_batch *cond,
                       float *out, int64_t count);

/** Draws n samples into out: (n, sample_size) floats; count = n·sample_size, the size of out; with the solver of
 *  sample_params and the weights and guidance of predict_params (NULL = defaults).
 *  cond: the condition of each of the n samples, or NULL for unconditional samples. */
int ddpm_model_sample(ddpm_model *model, const ddpm_sample_params *sample_params,
                      const ddpm_predict_params *predict_params, const ddpm_cond_batch *cond,
                      int64_t n, float *out, int64_t count);

/** The cross-attention layers of a UNet conditioned on SEQUENCE or TOKENS, in the order the
 *  forward pass runs them (encoder, middle, decoder): returns their number (0 for a model
 *  without any, -1 for NULL) and writes the first `count` layers' height and width to
 *  heights and widths when they are not NULL (count must be at most their length).  (since 0.3) */
int32_t ddpm_model_cross_attention_layers(const ddpm_model *model, int32_t *heights, int32_t *widths, int64_t count);

/** What cross-attention layer `layer` looks at: for x_t (batch, sample_size) at timestep t
 *  with the condition cond (no guidance; the EMA weights unless params->use_ema is 0), the
 *  weight each pixel gives each context position, averaged over the heads. out:
 *  (batch, height·width, max_length), count floats; a row sums to 1 over a sample's length and
 *  is 0 after it (a null row attends to its one null vector).  (since 0.3) */
int ddpm_model_cross_attention(ddpm_model *model, const ddpm_predict_params *params, int32_t layer,
                               const float *x_t, int64_t batch, int32_t t, const ddpm_cond_batch *cond,
                               float *out, int64_t count);

/** The variational bound of n samples x0 (n, sample_size) under the model, with the weights
 *  and guidance of predict_params (NULL = defaults); cond for the n rows, or NULL. count =
 *  n·sample_size, the size of x0 only; total_out and prior_out hold n floats, terms_out n·T
 *  (as ddpm_schedule_vlb). */
int ddpm_model_nll(ddpm_model *model, const ddpm_vlb_params *params, const ddpm_predict_params *predict_params,
                   const ddpm_cond_batch *cond, const float *x0, int64_t n, float *total_out, float *prior_out,
                   float *terms_out, int64_t count);

/** Saves network, EMA, optimizer state, RNG, schedule and configuration as one safetensors
 *  file. The file is written to a temporary name beside `path` and renamed over it, so an
 *  existing file is never left half-written; a symbolic link at `path` is replaced, never
 *  written through. The new file keeps the mode of the regular file it replaces; over a link
 *  to a regular file it gets no more than the target's mode and 0644 less the umask; else
 *  0644 less the umask. Any name a folder can hold (up to 255 bytes) can be saved to. */
int ddpm_model_save(const ddpm_model *model, const char *path);

/** Loads a model saved by ddpm_model_save (any checkpoint format version up to the
 *  current one); training resumes exactly where it stopped. Only a regular file is read,
 *  and it is validated whole before anything is built from it: the container (sizes,
 *  header, byte ranges, tensors of at most 8 dimensions, checksum: required in format 2,
 *  which every writer since 0.2 has stored), format_version exactly "1" or "2", the configuration
 *  within the limits above, exactly the tensors of that model (none missing, none extra,
 *  F32 with the right shapes), every weight, EMA value and moment finite (second moments
 *  >= 0), counters decimal and <= 2^53, the schedule metadata agreeing with its β, an
 *  importance-sampling loss history of values in [0, 1e100].
 *  Anything else is DDPM_ERR_FORMAT with a message naming the tensor or field (DDPM_ERR_IO
 *  for a file that cannot be read or is not a regular file). */
int ddpm_model_load(const char *path, ddpm_model **out);


/* ---- Data-parallel training and sharded sampling (MPI and the like) ----------------
 *
 * A train step is ddpm_model_compute_gradients, then the caller's reduction of the
 * gradient buffer in place, then ddpm_model_apply_gradients (clip, AdamW, EMA). With N
 * workers, worker r passes its shard of each global batch of B samples (its rows, starting
 * at global sample index `sample_offset`, and global_batch = B); the loss and gradients it
 * gets are its shard's terms of the global mean, so an allreduce-SUM of both gives the
 * whole batch's:
 *
 *     ddpm_model_compute_gradients(m, x0_shard, b, b * D, NULL, offset, B, &loss);
 *     ddpm_model_gradients(m, &grads, &P);
 *     MPI_Allreduce(MPI_IN_PLACE, grads, P, MPI_FLOAT, MPI_SUM, comm);
 *     MPI_Allreduce(MPI_IN_PLACE, &loss, 1, MPI_FLOAT, MPI_SUM, comm);
 *     ddpm_model_apply_gradients(m);
 *
 * Every random draw of a train step is keyed by (seed, step, global sample index), so the
 * shards draw what one process draws for the whole batch; models created with the same
 * seed start identical (compare ddpm_model_parameter_hash). ddpm_model_train_step is the
 * pair with no reduction. */

/** The first half of a train step on x0 (batch, sample_size), count = batch·sample_size:
 *  draws, forward, loss, backward; the gradients stay in the model's gradient buffer.
 *  sample_offset: global index of the first row (0 alone); global_batch: the global batch
 *  size B (0 = batch, i.e. not a shard). loss_out (may be NULL) receives this shard's term
 *  of L_simple: Σ(ε̂ - ε)²/(B·sample_size). cond (this shard's rows) as for ddpm_model_train_step. */
int ddpm_model_compute_gradients(ddpm_model *model, const float *x0, int64_t batch, int64_t count,
                                 const ddpm_cond_batch *cond, int64_t sample_offset, int64_t global_batch,
                                 float *loss_out);

/** The model's flat gradient buffer: *grads_out receives a pointer to its P floats (P =
 *  ddpm_model_num_parameters, also stored in *count_out when not NULL). Owned by the model
 *  and valid until ddpm_model_free; read and write it between compute and apply (e.g. an
 *  in-place MPI_Allreduce). Not thread-safe against calls on the same model. */
int ddpm_model_gradients(ddpm_model *model, float **grads_out, int64_t *count_out);

/** The second half of a train step: clips the gradient buffer (as the caller left it),
 *  applies AdamW, updates the EMA, counts the step. DDPM_ERR_INVALID_ARGUMENT unless a
 *  compute_gradients came first; DDPM_ERR_NON_FINITE (parameters unchanged) if the
 *  gradients are not finite or the update explodes, as for ddpm_model_train_step. */
int ddpm_model_apply_gradients(ddpm_model *model);

/** Copies the parameters (ema = 0) or their EMA (ema != 0) into out: count = P floats. */
int ddpm_model_get_parameters(const ddpm_model *model, int32_t ema, float *out, int64_t count);

/** FNV-1a (64 bit) over the bit patterns of the parameters, then the EMA weights: equal on
 *  every worker of a data-parallel run that stays in step. */
int ddpm_model_parameter_hash(const ddpm_model *model, uint64_t *hash_out);

/** A model's predictions run on chunks of this many samples, so that a shard of a sampling
 *  batch that starts at a multiple of it computes bitwise what one process computes. */
#define DDPM_PREDICT_CHUNK 256

/** ddpm_model_sample for samples sample_offset..sample_offset+n-1 of a global batch of
 *  global_n: x_T and every noise draw are that slice of what ddpm_model_sample(global_n)
 *  draws; with sample_offset a multiple of DDPM_PREDICT_CHUNK the shards, concatenated in
 *  order, are the one-process samples bitwise (DDPM, DDIM; guidance included).
 *  cond: this shard's n rows, or NULL. out: (n, sample_size), count = n·sample_size. */
int ddpm_model_sample_shard(ddpm_model *model, const ddpm_sample_params *sample_params,
                            const ddpm_predict_params *predict_params, const ddpm_cond_batch *cond,
                            int64_t n, int64_t sample_offset, int64_t global_n, float *out, int64_t count);

#ifdef __cplusplus
}
#endif
#endif /* DDPM_H */
