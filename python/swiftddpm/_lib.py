"""A one-to-one ctypes mirror of include/ddpm.h.

Every struct, enum, callback type and function of the header appears here once, in the
header's order, with its C prototype in a comment above the binding. argtypes and
restype are set once, at import. Nothing in this module does any maths or any
Pythonic wrapping: that is the job of the public modules (schedule.py, model.py).

The shared library is found by `load_library()`: the SWIFTDDPM_LIBRARY environment
variable, then libddpm.so next to this file, then the repository's SwiftPM build folders.
"""

from __future__ import annotations

import ctypes
import os
import sys
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    c_char_p,
    c_double,
    c_float,
    c_int,
    c_int32,
    c_int64,
    c_size_t,
    c_uint32,
    c_uint64,
    c_void_p,
)
from pathlib import Path

# The library version this package mirrors: DDPM_VERSION_* of include/ddpm_version.h (the one
# version source; python/tests/test_lib.py checks that this line agrees with it).
EXPECTED_VERSION = (0, 3, 0)
# DDPM_VERSION_NUMBER = MAJOR * 10000 + MINOR * 100 + PATCH
EXPECTED_VERSION_NUMBER = EXPECTED_VERSION[0] * 10000 + EXPECTED_VERSION[1] * 100 + EXPECTED_VERSION[2]

# ---- Loading ---------------------------------------------------------------------------

if sys.platform == "darwin":
    LIBRARY_FILE = "libddpm.dylib"
elif sys.platform == "win32":
    LIBRARY_FILE = "ddpm.dll"
else:
    LIBRARY_FILE = "libddpm.so"

_PACKAGE_DIR = Path(__file__).resolve().parent
_REPO_DIR = _PACKAGE_DIR.parent.parent  # python/swiftddpm -> repository root


def candidate_paths() -> list[Path]:
    """Where `load_library` looks, in order (the environment variable first)."""
    paths = []
    env = os.environ.get("SWIFTDDPM_LIBRARY")
    if env:
        paths.append(Path(env))
    paths.append(_PACKAGE_DIR / LIBRARY_FILE)
    for config in ("release", "debug"):
        paths.append(_REPO_DIR / ".build" / config / LIBRARY_FILE)
    return paths


def load_library() -> ctypes.CDLL:
    """Loads libddpm from the first candidate path that exists.

    Raises OSError listing every path tried (and why each failed).
    """
    tried = []
    for path in candidate_paths():
        if not path.is_file():
            tried.append(f"  {path} (not found)")
            continue
        try:
            return ctypes.CDLL(str(path))
        except OSError as error:  # exists but cannot be loaded: report it, keep looking
            tried.append(f"  {path} ({error})")
    raise OSError(
        "swiftddpm: could not load the SwiftDDPM library. Paths tried:\n"
        + "\n".join(tried)
        + "\nBuild it with `swift build -c release` in the repository root, or set "
        "SWIFTDDPM_LIBRARY to the full path of " + LIBRARY_FILE + "."
    )


lib = load_library()

# ---- Version ---------------------------------------------------------------------------

# int ddpm_version_number(void);
lib.ddpm_version_number.argtypes = []
lib.ddpm_version_number.restype = c_int
# const char *ddpm_version_string(void);
lib.ddpm_version_string.argtypes = []
lib.ddpm_version_string.restype = c_char_p

_found_version = lib.ddpm_version_number()
if _found_version != EXPECTED_VERSION_NUMBER:
    raise ImportError(
        f"swiftddpm: the library at {lib._name} has version number {_found_version} "
        f"({lib.ddpm_version_string().decode()}), but this package expects "
        f"{EXPECTED_VERSION_NUMBER} ({'.'.join(map(str, EXPECTED_VERSION))}). "
        "Rebuild the library or use the matching Python package."
    )

# ---- Status and errors -----------------------------------------------------------------

DDPM_OK = 0
DDPM_ERR_INVALID_ARGUMENT = 1  # NULL pointer, out-of-range value or enum, bad t
DDPM_ERR_SHAPE = 2  # a count does not match the expected shape
DDPM_ERR_NON_FINITE = 3  # NaN or infinity in an input, or the loss diverged
DDPM_ERR_IO = 4  # a file could not be read or written
DDPM_ERR_FORMAT = 5  # a file is not a valid checkpoint of this library
DDPM_ERR_CANCELLED = 6  # a callback returned nonzero
DDPM_ERR_INTERNAL = 7  # a bug: please report with ddpm_last_error()

# const char *ddpm_status_string(int status);
lib.ddpm_status_string.argtypes = [c_int]
lib.ddpm_status_string.restype = c_char_p
# const char *ddpm_last_error(void);
lib.ddpm_last_error.argtypes = []
lib.ddpm_last_error.restype = c_char_p
# int ddpm_set_num_threads(int n);
lib.ddpm_set_num_threads.argtypes = [c_int]
lib.ddpm_set_num_threads.restype = c_int
# int ddpm_get_num_threads(void);
lib.ddpm_get_num_threads.argtypes = []
lib.ddpm_get_num_threads.restype = c_int

# ---- Schedules -------------------------------------------------------------------------


class ddpm_schedule(Structure):
    """typedef struct ddpm_schedule ddpm_schedule;  (opaque)"""


ddpm_schedule_p = POINTER(ddpm_schedule)

# ddpm_schedule_kind
DDPM_SCHEDULE_LINEAR = 0  # β linear from beta_start to beta_end
DDPM_SCHEDULE_COSINE = 1  # Nichol & Dhariwal, offset cosine_s, β <= max_beta
DDPM_SCHEDULE_SIGMOID = 2  # β = beta_start + (beta_end - beta_start)·sigmoid(linspace(sigmoid_start, sigmoid_end, T))
DDPM_SCHEDULE_CUSTOM = 3  # caller-given β (ddpm_schedule_create_custom); reported, not created, by params
DDPM_SCHEDULE_SCALED_LINEAR = 4  # √β linear from √beta_start to √beta_end (diffusers' "scaled_linear")


class ddpm_schedule_params(Structure):
    _fields_ = [
        ("struct_size", c_size_t),  # sizeof(ddpm_schedule_params)
        ("kind", c_int32),  # ddpm_schedule_kind; default LINEAR
        ("num_timesteps", c_int32),  # T >= 1; default 1000
        ("beta_start", c_double),  # linear: first β (1e-4); sigmoid: β_min
        ("beta_end", c_double),  # linear: last β (0.02); sigmoid: β_max
        ("scale_to_steps", c_int32),  # linear: nonzero multiplies both ends by 1000/T (default 0)
        ("cosine_s", c_double),  # cosine offset s (0.008)
        ("max_beta", c_double),  # cosine clip (0.999)
        ("sigmoid_start", c_double),  # sigmoid range start (-6)
        ("sigmoid_end", c_double),  # sigmoid range end (6)
    ]


# ddpm_schedule_params ddpm_schedule_params_default(void);
lib.ddpm_schedule_params_default.argtypes = []
lib.ddpm_schedule_params_default.restype = ddpm_schedule_params
# int ddpm_schedule_create(const ddpm_schedule_params *params, ddpm_schedule **out);
lib.ddpm_schedule_create.argtypes = [POINTER(ddpm_schedule_params), POINTER(ddpm_schedule_p)]
lib.ddpm_schedule_create.restype = c_int
# int ddpm_schedule_create_custom(const double *betas, int64_t num_timesteps, ddpm_schedule **out);
lib.ddpm_schedule_create_custom.argtypes = [POINTER(c_double), c_int64, POINTER(ddpm_schedule_p)]
lib.ddpm_schedule_create_custom.restype = c_int
# void ddpm_schedule_free(ddpm_schedule *schedule);
lib.ddpm_schedule_free.argtypes = [ddpm_schedule_p]
lib.ddpm_schedule_free.restype = None
# int ddpm_schedule_get_params(const ddpm_schedule *schedule, ddpm_schedule_params *out);
lib.ddpm_schedule_get_params.argtypes = [ddpm_schedule_p, POINTER(ddpm_schedule_params)]
lib.ddpm_schedule_get_params.restype = c_int
# int64_t ddpm_schedule_num_timesteps(const ddpm_schedule *schedule);
lib.ddpm_schedule_num_timesteps.argtypes = [ddpm_schedule_p]
lib.ddpm_schedule_num_timesteps.restype = c_int64

# ddpm_table
DDPM_TABLE_BETAS = 0  # β_t
DDPM_TABLE_ALPHAS = 1  # α_t = 1 - β_t
DDPM_TABLE_ALPHAS_CUMPROD = 2  # ᾱ_t = Π_{s<=t} α_s
DDPM_TABLE_ALPHAS_CUMPROD_PREV = 3  # ᾱ_{t-1}, with ᾱ_{-1} = 1
DDPM_TABLE_SQRT_ALPHAS_CUMPROD = 4  # √ᾱ_t
DDPM_TABLE_SQRT_ONE_MINUS_ALPHAS_CUMPROD = 5  # √(1-ᾱ_t)
DDPM_TABLE_SQRT_RECIP_ALPHAS = 6  # 1/√α_t
DDPM_TABLE_POSTERIOR_VARIANCE = 7  # β̃_t = (1-ᾱ_{t-1})/(1-ᾱ_t)·β_t
DDPM_TABLE_POSTERIOR_LOG_VARIANCE_CLIPPED = 8  # log β̃_t, β̃_0 replaced by β̃_1
DDPM_TABLE_POSTERIOR_MEAN_COEF_X0 = 9  # √ᾱ_{t-1}·β_t/(1-ᾱ_t)
DDPM_TABLE_POSTERIOR_MEAN_COEF_XT = 10  # √α_t·(1-ᾱ_{t-1})/(1-ᾱ_t)

# int ddpm_schedule_table(const ddpm_schedule *schedule, int32_t table, double *out, int64_t count);
lib.ddpm_schedule_table.argtypes = [ddpm_schedule_p, c_int32, POINTER(c_double), c_int64]
lib.ddpm_schedule_table.restype = c_int
# int ddpm_schedule_add_noise(const ddpm_schedule *schedule, const float *x0, const float *noise,
#                             const int32_t *t, int64_t batch, int64_t dim, float *out, int64_t count);
lib.ddpm_schedule_add_noise.argtypes = [
    ddpm_schedule_p, POINTER(c_float), POINTER(c_float),
    POINTER(c_int32), c_int64, c_int64, POINTER(c_float), c_int64,
]
lib.ddpm_schedule_add_noise.restype = c_int
# int ddpm_schedule_posterior(const ddpm_schedule *schedule, const float *x0, const float *x_t,
#                             const int32_t *t, int64_t batch, int64_t dim,
#                             float *mean_out, float *variance_out, int64_t count);
lib.ddpm_schedule_posterior.argtypes = [
    ddpm_schedule_p, POINTER(c_float), POINTER(c_float),
    POINTER(c_int32), c_int64, c_int64,
    POINTER(c_float), POINTER(c_float), c_int64,
]
lib.ddpm_schedule_posterior.restype = c_int

# ---- Sampling options ------------------------------------------------------------------

# ddpm_method
DDPM_METHOD_DDPM = 0  # ancestral (Algorithm 2); fewer steps than T: respaced
DDPM_METHOD_DDIM = 1  # DDIM with eta
DDPM_METHOD_DPM_SOLVER_PP = 2  # DPM-Solver++ multistep, data prediction, solver_order 1-3
DDPM_METHOD_SDE_DPM_SOLVER_PP = 3  # its SDE variant, solver_order 1-2
DDPM_METHOD_LANGEVIN = 4  # annealed Langevin dynamics with the score (NCSN)
DDPM_METHOD_PC = 5  # predictor-corrector (Song et al. 2021)

# ddpm_spacing
DDPM_SPACING_DEFAULT = 0  # floor((S-i)·T/S) - 1: ends at T-1; = TRAILING when S divides T
DDPM_SPACING_LEADING = 1  # (S-1-i)·floor(T/S) + steps_offset
DDPM_SPACING_TRAILING = 2  # round(T - i·T/S) - 1
DDPM_SPACING_LINSPACE = 3  # round((S-1-i)·(T-1)/(S-1))
DDPM_SPACING_KARRAS = 4  # Karras et al. sigma spacing mapped to the nearest t
DDPM_SPACING_DPM_LEADING = 5  # (S-i)·floor(T/(S+1)) + steps_offset (DPMSolverMultistepScheduler's leading)
DDPM_SPACING_DPM_LINSPACE = 6  # round((S-i)·(T-1)/S) (DPMSolverMultistepScheduler's linspace)

# ddpm_variance
DDPM_VARIANCE_BETA = 0  # σ_t² = β_t
DDPM_VARIANCE_POSTERIOR = 1  # σ_t² = β̃_t
DDPM_VARIANCE_LEARNED = 2  # the model's learned variance

# ddpm_output: what a model output (or a requested prediction) is
DDPM_OUTPUT_EPS = 0  # ε̂, the noise in x_t = √ᾱ_t·x0 + √(1-ᾱ_t)·ε
DDPM_OUTPUT_X0 = 1  # x̂0 = (x_t - √(1-ᾱ_t)·ε̂)/√ᾱ_t, the predicted clean sample
DDPM_OUTPUT_V = 2  # v̂ = √ᾱ_t·ε̂ - √(1-ᾱ_t)·x̂0
DDPM_OUTPUT_SCORE = 3  # s = -ε̂/√(1-ᾱ_t); a prediction only, never a model's output type
DDPM_OUTPUT_VARIANCE = 4  # σ_t² of a learned reverse variance; a prediction only

# typedef int (*ddpm_progress_fn)(void *user_data, int32_t step, int32_t total, int32_t t,
#                                 const float *x, int64_t count);
ddpm_progress_fn = CFUNCTYPE(c_int, c_void_p, c_int32, c_int32, c_int32, POINTER(c_float), c_int64)


class ddpm_sample_params(Structure):
    _fields_ = [
        ("struct_size", c_size_t),  # sizeof(ddpm_sample_params)
        ("method", c_int32),  # ddpm_method; default DDPM
        ("steps", c_int32),  # reverse steps; 0 = T for DDPM, min(50, T) for DDIM ("trailing" timesteps)
        ("eta", c_float),  # DDIM stochasticity in [0, 1]; default 0
        ("variance", c_int32),  # ddpm_variance for DDPM; default BETA
        ("clip_x0", c_int32),  # nonzero clips the predicted x0 to [clip_min, clip_max]
        ("clip_min", c_float),  # default -1
        ("clip_max", c_float),  # default 1
        ("seed", c_uint64),  # seeds x_T and every noise draw; default 0
        ("prediction_type", c_int32),  # ddpm_output a caller's model returns; default EPS
        ("timesteps", POINTER(c_int32)),  # optional: strictly decreasing in 0..T-1; overrides steps (NULL)
        ("num_timesteps", c_int32),  # entries of timesteps (0)
        ("progress", ddpm_progress_fn),  # optional, NULL by default
        ("progress_user_data", c_void_p),
        ("spacing", c_int32),  # ddpm_spacing; default DEFAULT
        ("steps_offset", c_int32),  # added to LEADING timesteps; 0
        ("use_clipped_model_output", c_int32),  # DDIM: recompute eps from the clipped x0 (0)
        ("thresholding", c_int32),  # nonzero: dynamic thresholding of x0 (0)
        ("threshold_quantile", c_float),  # in (0, 1]; 0.995
        ("threshold_max", c_float),  # >= 1; 1
        ("solver_order", c_int32),  # DPM-Solver++ order; 2
        ("lower_order_final", c_int32),  # nonzero (default): lower orders on the last steps
        ("corrector_steps", c_int32),  # Langevin steps per timestep (LANGEVIN, PC); 1
        ("snr", c_float),  # PC corrector signal-to-noise ratio; 0.16
        ("langevin_step_size", c_float),  # LANGEVIN epsilon; 2e-5
        ("set_alpha_to_one", c_int32),  # DDIM, DPM-Solver++: 1 ends at x_0, 0 at alpha_bar_0 (1)
    ]


# ddpm_sample_params ddpm_sample_params_default(void);
lib.ddpm_sample_params_default.argtypes = []
lib.ddpm_sample_params_default.restype = ddpm_sample_params

# ---- Sampling with a caller's model ----------------------------------------------------

# typedef int (*ddpm_model_fn)(void *user_data, float *out, const float *x_t, int64_t batch,
#                              int64_t dim, int32_t t, const int32_t *labels);
ddpm_model_fn = CFUNCTYPE(c_int, c_void_p, POINTER(c_float), POINTER(c_float), c_int64, c_int64, c_int32,
                          POINTER(c_int32))

# int ddpm_schedule_sample(const ddpm_schedule *schedule, const ddpm_sample_params *params,
#                          ddpm_model_fn model_fn, void *model_user_data, const int32_t *labels,
#                          int64_t n, int64_t dim, float *out, int64_t count);
lib.ddpm_schedule_sample.argtypes = [
    ddpm_schedule_p, POINTER(ddpm_sample_params),
    ddpm_model_fn, c_void_p, POINTER(c_int32),
    c_int64, c_int64, POINTER(c_float), c_int64,
]
lib.ddpm_schedule_sample.restype = c_int

# ---- The variational bound (negative log-likelihood) -----------------------------------

# ddpm_decoder
DDPM_DECODER_CONTINUOUS = 0  # a Gaussian density: nats per dimension
DDPM_DECODER_DISCRETIZED = 1  # data on 2^bits levels in [-1, 1]: bits per dimension


class ddpm_vlb_params(Structure):
    _fields_ = [
        ("struct_size", c_size_t),  # sizeof(ddpm_vlb_params)
        ("variance", c_int32),  # ddpm_variance of p(x_{t-1}|x_t): BETA (default) or POSTERIOR
        ("decoder", c_int32),  # ddpm_decoder; CONTINUOUS
        ("bits", c_int32),  # levels 2^bits for DISCRETIZED; 8
        ("seed", c_uint64),  # seeds the x_t ~ q(x_t|x_0) of every term; 0
        ("prediction_type", c_int32),  # ddpm_output a caller's model returns (callbacks); EPS
    ]


# ddpm_vlb_params ddpm_vlb_params_default(void);
lib.ddpm_vlb_params_default.argtypes = []
lib.ddpm_vlb_params_default.restype = ddpm_vlb_params
# int ddpm_schedule_vlb(const ddpm_schedule *schedule, const ddpm_vlb_params *params,
#                       ddpm_model_fn model_fn, void *model_user_data, const int32_t *labels,
#                       const float *x0, int64_t n, int64_t dim, float *total_out, float *prior_out,
#                       float *terms_out, int64_t count);
lib.ddpm_schedule_vlb.argtypes = [
    ddpm_schedule_p, POINTER(ddpm_vlb_params), ddpm_model_fn, c_void_p, POINTER(c_int32),
    POINTER(c_float), c_int64, c_int64, POINTER(c_float), POINTER(c_float), POINTER(c_float), c_int64,
]
lib.ddpm_schedule_vlb.restype = c_int

# ---- A sampler stepped from outside (a diffusers-style scheduler) ----------------------


class ddpm_sampler(Structure):
    """typedef struct ddpm_sampler ddpm_sampler;  (opaque)"""


ddpm_sampler_p = POINTER(ddpm_sampler)

# int ddpm_sampler_create(const ddpm_schedule *schedule, const ddpm_sample_params *params,
#                         int64_t n, int64_t dim, ddpm_sampler **out);
lib.ddpm_sampler_create.argtypes = [ddpm_schedule_p, POINTER(ddpm_sample_params), c_int64, c_int64,
                                    POINTER(ddpm_sampler_p)]
lib.ddpm_sampler_create.restype = c_int
# void ddpm_sampler_free(ddpm_sampler *sampler);
lib.ddpm_sampler_free.argtypes = [ddpm_sampler_p]
lib.ddpm_sampler_free.restype = None
# int64_t ddpm_sampler_num_steps(const ddpm_sampler *sampler);
lib.ddpm_sampler_num_steps.argtypes = [ddpm_sampler_p]
lib.ddpm_sampler_num_steps.restype = c_int64
# int ddpm_sampler_timesteps(const ddpm_sampler *sampler, int32_t *out, int64_t count);
lib.ddpm_sampler_timesteps.argtypes = [ddpm_sampler_p, POINTER(c_int32), c_int64]
lib.ddpm_sampler_timesteps.restype = c_int
# int32_t ddpm_sampler_step_adds_noise(const ddpm_sampler *sampler);
lib.ddpm_sampler_step_adds_noise.argtypes = [ddpm_sampler_p]
lib.ddpm_sampler_step_adds_noise.restype = c_int32
# int32_t ddpm_sampler_timestep(const ddpm_sampler *sampler);
lib.ddpm_sampler_timestep.argtypes = [ddpm_sampler_p]
lib.ddpm_sampler_timestep.restype = c_int32
# int ddpm_sampler_init_noise(ddpm_sampler *sampler, float *x, int64_t count);
lib.ddpm_sampler_init_noise.argtypes = [ddpm_sampler_p, POINTER(c_float), c_int64]
lib.ddpm_sampler_init_noise.restype = c_int
# int ddpm_sampler_step(ddpm_sampler *sampler, const float *model_output, float *x,
#                       const float *noise, float *x0_out, int64_t count);
lib.ddpm_sampler_step.argtypes = [ddpm_sampler_p, POINTER(c_float), POINTER(c_float), POINTER(c_float),
                                  POINTER(c_float), c_int64]
lib.ddpm_sampler_step.restype = c_int

# ---- Model parameters ------------------------------------------------------------------


class ddpm_model(Structure):
    """typedef struct ddpm_model ddpm_model;  (opaque)"""


ddpm_model_p = POINTER(ddpm_model)

# ddpm_network_kind
DDPM_NETWORK_MLP = 0
DDPM_NETWORK_UNET = 1


class ddpm_network_params(Structure):
    """The head every network params struct begins with."""

    _fields_ = [
        ("struct_size", c_size_t),  # sizeof the whole network struct (ddpm_mlp_params, ...)
        ("kind", c_int32),  # ddpm_network_kind of the struct
    ]


class ddpm_mlp_params(Structure):
    """A residual MLP over vectors of data_dim floats."""

    _fields_ = [
        ("base", ddpm_network_params),  # { sizeof(ddpm_mlp_params), DDPM_NETWORK_MLP }
        ("data_dim", c_int32),  # D, required (default 0 = unset)
        ("hidden", c_int32),  # width H (128)
        ("depth", c_int32),  # residual blocks L (4)
        ("time_embed_dim", c_int32),  # sinusoidal encoding size E, even (64)
    ]


# ddpm_mlp_params ddpm_mlp_params_default(void);
lib.ddpm_mlp_params_default.argtypes = []
lib.ddpm_mlp_params_default.restype = ddpm_mlp_params

DDPM_UNET_MAX_LEVELS = 8

# Limits (sizes are checked against them before anything is allocated).
DDPM_MAX_MODEL_BYTES = 1 << 33  # 8 GiB: a model's state plus one call's buffers
DDPM_MAX_TIMESTEPS = 1 << 20
DDPM_MAX_WIDTH = 1 << 16
DDPM_MAX_SAMPLE_FLOATS = 1 << 24
DDPM_MAX_DEPTH = 4096
DDPM_MAX_RES_BLOCKS = 64
DDPM_MAX_CLASSES = 1 << 24
DDPM_MAX_CONTEXT_LENGTH = 4096
DDPM_MIN_ALPHA_BAR = 1e-30


class ddpm_unet_params(Structure):
    """A UNet over images of channels × height × width."""

    _fields_ = [
        ("base", ddpm_network_params),  # { sizeof(ddpm_unet_params), DDPM_NETWORK_UNET }
        ("channels", c_int32),  # C (1)
        ("height", c_int32),  # H (0 = unset), divisible by 2^(levels-1)
        ("width", c_int32),  # W (0 = unset), divisible by 2^(levels-1)
        ("base_channels", c_int32),  # channels at the first level (32)
        ("num_levels", c_int32),  # resolutions (3), 1..DDPM_UNET_MAX_LEVELS
        ("channel_mult", c_int32 * DDPM_UNET_MAX_LEVELS),  # per level multiplier ({1, 2, 2, ...}); first num_levels count
        ("res_blocks", c_int32),  # residual blocks per level (2)
        ("attention_levels", c_uint32),  # bit mask: bit l puts self-attention at level l (0b100)
        ("attention_heads", c_int32),  # heads of each attention layer (1)
        ("groups", c_int32),  # GroupNorm groups (8); must divide every channel count
        ("dropout", c_float),  # dropout in residual blocks while training (0)
        ("time_embed_dim", c_int32),  # sinusoidal encoding size, even (64)
        ("cross_attention_levels", c_uint32),  # bit mask: bit l puts cross-attention at level l (0)  (since 0.3)
        # diffusers' UNet2DModel options (appended; the defaults are the network as before):
        ("flip_sin_to_cos", c_int32),  # sinusoid halves [cos, sin] instead of [sin, cos] (0)
        ("freq_shift", c_float),  # s in ω_i = 10000^(−i/(E/2 − s)) (0), < E/2
        ("norm_eps", c_float),  # ε of every GroupNorm (1e-5)
        ("downsample_padding", c_int32),  # 1: stride-2 conv padded on every side (1); 0: bottom and right only
        ("attention_head_dim", c_int32),  # d > 0: channels/d heads of d channels, over attention_heads (0)
        ("middle_attention", c_int32),  # the middle block's self-attention (1)
        ("cross_attention_positions", c_int32),  # nonzero: learned pixel positions added to the cross-attention queries (0)
    ]


# ddpm_unet_params ddpm_unet_params_default(void);
lib.ddpm_unet_params_default.argtypes = []
lib.ddpm_unet_params_default.restype = ddpm_unet_params


class ddpm_train_params(Structure):
    """The training recipe."""

    _fields_ = [
        ("struct_size", c_size_t),  # sizeof(ddpm_train_params)
        ("learning_rate", c_float),  # AdamW lr (1e-3)
        ("beta1", c_float),  # (0.9)
        ("beta2", c_float),  # (0.999)
        ("adam_eps", c_float),  # (1e-8)
        ("weight_decay", c_float),  # decoupled weight decay (0)
        ("grad_clip", c_float),  # global gradient-norm clip, 0 = off (1)
        ("ema_decay", c_float),  # EMA decay d (0.995); step n uses min(d, (1+n)/(10+n))
        # union { float condition_dropout; float label_dropout; }: probability of training a row on
        # the null condition (0.1); label_dropout is the same field by its name before 0.3 (below)
        ("condition_dropout", c_float),
        ("seed", c_uint64),  # parameter init and training draws (0)
        ("prediction_target", c_int32),  # ddpm_output the network learns: EPS (default), X0 or V
        ("loss_weighting", c_int32),  # ddpm_loss_weighting; UNIFORM (L_simple)
        ("min_snr_gamma", c_float),  # gamma of MIN_SNR (5)
        ("learned_variance", c_int32),  # nonzero: the network also outputs its variance (hybrid loss) (0)
        ("vlb_lambda", c_float),  # lambda of the hybrid loss (0.001)
        ("timestep_sampling", c_int32),  # ddpm_timestep_sampling; UNIFORM
    ]

    label_dropout = property(lambda self: self.condition_dropout,
                             lambda self, value: setattr(self, "condition_dropout", value),
                             doc="condition_dropout by its name before 0.3 (a union in the header)")


# ddpm_loss_weighting: how each sample's squared error is weighted (SNR = ᾱ/(1-ᾱ))
DDPM_LOSS_UNIFORM = 0  # L_simple
DDPM_LOSS_MIN_SNR = 1  # min-SNR-γ
DDPM_LOSS_VLB = 2  # the variational bound's weight of L_{t-1}

# ddpm_timestep_sampling: how the training timestep is drawn
DDPM_TIMESTEPS_UNIFORM = 0  # t ~ U{0..T-1}
DDPM_TIMESTEPS_IMPORTANCE = 1  # by the running second moment of each t's loss

# ddpm_train_params ddpm_train_params_default(void);
lib.ddpm_train_params_default.argtypes = []
lib.ddpm_train_params_default.restype = ddpm_train_params

# ddpm_cond_kind
DDPM_COND_NONE = 0  # unconditional
DDPM_COND_CLASSES = 1  # a class label per sample: 0..K-1, K = "no class"
DDPM_COND_VECTOR = 2  # a vector c of `dim` floats per sample; a learned null vector = "no condition"
DDPM_COND_SEQUENCE = 3  # up to max_length vectors of `dim` floats per sample, with a length each
DDPM_COND_TOKENS = 4  # up to max_length token ids in 0..vocab_size-1, learned token + position tables


class ddpm_cond_params(Structure):
    """What a sample is conditioned on."""

    _fields_ = [
        ("struct_size", c_size_t),  # sizeof(ddpm_cond_params)
        ("kind", c_int32),  # ddpm_cond_kind; default NONE
        ("num_classes", c_int32),  # K >= 1 for CLASSES (0)
        ("dim", c_int32),  # Dc >= 1 for VECTOR, SEQUENCE, TOKENS (0)  (since 0.3)
        ("max_length", c_int32),  # Lmax >= 1 for SEQUENCE, TOKENS (0)  (since 0.3)
        ("vocab_size", c_int32),  # V >= 1 for TOKENS (0)  (since 0.3)
        ("encoder_layers", c_int32),  # TOKENS: transformer blocks over the token embeddings, 0 = none (0)  (since 0.3)
        ("encoder_heads", c_int32),  # their attention heads, >= 1 dividing dim when encoder_layers > 0, else 0 (0)  (since 0.3)
    ]


# ddpm_cond_params ddpm_cond_params_default(void);
lib.ddpm_cond_params_default.argtypes = []
lib.ddpm_cond_params_default.restype = ddpm_cond_params


class ddpm_cond_batch(Structure):
    """The condition of each sample of one call (labels or vectors); NULL fields = the null condition."""

    _fields_ = [
        ("struct_size", c_size_t),  # sizeof(ddpm_cond_batch)
        ("labels", POINTER(c_int32)),  # (rows,) class labels, or NULL
        ("vectors", POINTER(c_float)),  # VECTOR: (rows, dim); SEQUENCE: (rows, max_length, dim)
        ("vectors_count", c_int64),  # floats at `vectors`
        ("tokens", POINTER(c_int32)),  # TOKENS: (rows, max_length) ids, or NULL
        ("tokens_count", c_int64),  # ids at `tokens`: rows·max_length
        ("lengths", POINTER(c_int32)),  # SEQUENCE, TOKENS: (rows,) in 0..max_length, or NULL for max_length
    ]


# ddpm_cond_batch ddpm_cond_batch_default(void);
lib.ddpm_cond_batch_default.argtypes = []
lib.ddpm_cond_batch_default.restype = ddpm_cond_batch

# (The header declares these with ddpm_schedule_sample; ctypes needs ddpm_cond_batch first.)
# typedef int (*ddpm_cond_model_fn)(void *user_data, float *out, const float *x_t, int64_t batch,
#                                   int64_t dim, int32_t t, const struct ddpm_cond_batch *cond);
ddpm_cond_model_fn = CFUNCTYPE(c_int, c_void_p, POINTER(c_float), POINTER(c_float), c_int64, c_int64, c_int32,
                               POINTER(ddpm_cond_batch))

# int ddpm_schedule_sample_cond(const ddpm_schedule *schedule, const ddpm_sample_params *params,
#                               ddpm_cond_model_fn model_fn, void *model_user_data,
#                               const struct ddpm_cond_batch *cond, int64_t n, int64_t dim, float *out,
#                               int64_t count);
lib.ddpm_schedule_sample_cond.argtypes = [
    ddpm_schedule_p, POINTER(ddpm_sample_params),
    ddpm_cond_model_fn, c_void_p, POINTER(ddpm_cond_batch),
    c_int64, c_int64, POINTER(c_float), c_int64,
]
lib.ddpm_schedule_sample_cond.restype = c_int

# int ddpm_schedule_vlb_cond(const ddpm_schedule *schedule, const ddpm_vlb_params *params,
#                            ddpm_cond_model_fn model_fn, void *model_user_data,
#                            const struct ddpm_cond_batch *cond, const float *x0, int64_t n, int64_t dim,
#                            float *total_out, float *prior_out, float *terms_out, int64_t count);
lib.ddpm_schedule_vlb_cond.argtypes = [
    ddpm_schedule_p, POINTER(ddpm_vlb_params), ddpm_cond_model_fn, c_void_p, POINTER(ddpm_cond_batch),
    POINTER(c_float), c_int64, c_int64, POINTER(c_float), POINTER(c_float), POINTER(c_float), c_int64,
]
lib.ddpm_schedule_vlb_cond.restype = c_int


class ddpm_predict_params(Structure):
    """How a model predicts: with which weights and which classifier-free guidance."""

    _fields_ = [
        ("struct_size", c_size_t),  # sizeof(ddpm_predict_params)
        ("guidance_scale", c_float),  # w: ε̂_uncond + w·(ε̂_cond - ε̂_uncond); 1 = conditional (default)
        ("use_ema", c_int32),  # nonzero (default) predicts with the EMA weights
    ]


# ddpm_predict_params ddpm_predict_params_default(void);
lib.ddpm_predict_params_default.argtypes = []
lib.ddpm_predict_params_default.restype = ddpm_predict_params

# ---- Models ----------------------------------------------------------------------------

# int ddpm_model_create(const ddpm_schedule *schedule, const ddpm_network_params *network,
#                       const ddpm_train_params *train, const ddpm_cond_params *cond,
#                       ddpm_model **out);
lib.ddpm_model_create.argtypes = [ddpm_schedule_p, POINTER(ddpm_network_params), POINTER(ddpm_train_params),
                                  POINTER(ddpm_cond_params), POINTER(ddpm_model_p)]
lib.ddpm_model_create.restype = c_int
# void ddpm_model_free(ddpm_model *model);
lib.ddpm_model_free.argtypes = [ddpm_model_p]
lib.ddpm_model_free.restype = None
# int64_t ddpm_model_sample_size(const ddpm_model *model);
lib.ddpm_model_sample_size.argtypes = [ddpm_model_p]
lib.ddpm_model_sample_size.restype = c_int64
# int64_t ddpm_model_num_parameters(const ddpm_model *model);
lib.ddpm_model_num_parameters.argtypes = [ddpm_model_p]
lib.ddpm_model_num_parameters.restype = c_int64
# int64_t ddpm_model_step(const ddpm_model *model);
lib.ddpm_model_step.argtypes = [ddpm_model_p]
lib.ddpm_model_step.restype = c_int64
# int32_t ddpm_model_network_kind(const ddpm_model *model);
lib.ddpm_model_network_kind.argtypes = [ddpm_model_p]
lib.ddpm_model_network_kind.restype = c_int32
# int ddpm_model_get_network(const ddpm_model *model, ddpm_network_params *out);
lib.ddpm_model_get_network.argtypes = [ddpm_model_p, POINTER(ddpm_network_params)]
lib.ddpm_model_get_network.restype = c_int
# int ddpm_model_get_train_params(const ddpm_model *model, ddpm_train_params *out);
lib.ddpm_model_get_train_params.argtypes = [ddpm_model_p, POINTER(ddpm_train_params)]
lib.ddpm_model_get_train_params.restype = c_int
# int ddpm_model_get_cond_params(const ddpm_model *model, ddpm_cond_params *out);
lib.ddpm_model_get_cond_params.argtypes = [ddpm_model_p, POINTER(ddpm_cond_params)]
lib.ddpm_model_get_cond_params.restype = c_int
# int ddpm_model_get_schedule(const ddpm_model *model, ddpm_schedule **out);
lib.ddpm_model_get_schedule.argtypes = [ddpm_model_p, POINTER(ddpm_schedule_p)]
lib.ddpm_model_get_schedule.restype = c_int
# int ddpm_model_set_learning_rate(ddpm_model *model, float learning_rate);
lib.ddpm_model_set_learning_rate.argtypes = [ddpm_model_p, c_float]
lib.ddpm_model_set_learning_rate.restype = c_int
# int ddpm_model_train_step(ddpm_model *model, const float *x0, int64_t batch, int64_t count,
#                           const ddpm_cond_batch *cond, float *loss_out);
lib.ddpm_model_train_step.argtypes = [ddpm_model_p, POINTER(c_float), c_int64, c_int64, POINTER(ddpm_cond_batch),
                                      POINTER(c_float)]
lib.ddpm_model_train_step.restype = c_int
# int ddpm_model_predict(ddpm_model *model, const ddpm_predict_params *params, int32_t output,
#                        const float *x_t, int64_t batch, int32_t t, const ddpm_cond_batch *cond,
#                        float *out, int64_t count);
lib.ddpm_model_predict.argtypes = [
    ddpm_model_p, POINTER(ddpm_predict_params), c_int32,
    POINTER(c_float), c_int64, c_int32, POINTER(ddpm_cond_batch),
    POINTER(c_float), c_int64,
]
lib.ddpm_model_predict.restype = c_int
# int ddpm_model_sample(ddpm_model *model, const ddpm_sample_params *sample_params,
#                       const ddpm_predict_params *predict_params, const ddpm_cond_batch *cond,
#                       int64_t n, float *out, int64_t count);
lib.ddpm_model_sample.argtypes = [
    ddpm_model_p, POINTER(ddpm_sample_params),
    POINTER(ddpm_predict_params), POINTER(ddpm_cond_batch),
    c_int64, POINTER(c_float), c_int64,
]
lib.ddpm_model_sample.restype = c_int
# int32_t ddpm_model_cross_attention_layers(const ddpm_model *model, int32_t *heights, int32_t *widths, int64_t count);
lib.ddpm_model_cross_attention_layers.argtypes = [ddpm_model_p, POINTER(c_int32), POINTER(c_int32), c_int64]
lib.ddpm_model_cross_attention_layers.restype = c_int32
# int ddpm_model_cross_attention(ddpm_model *model, const ddpm_predict_params *params, int32_t layer,
#                                const float *x_t, int64_t batch, int32_t t, const ddpm_cond_batch *cond,
#                                float *out, int64_t count);
lib.ddpm_model_cross_attention.argtypes = [
    ddpm_model_p, POINTER(ddpm_predict_params), c_int32,
    POINTER(c_float), c_int64, c_int32, POINTER(ddpm_cond_batch),
    POINTER(c_float), c_int64,
]
lib.ddpm_model_cross_attention.restype = c_int
# int ddpm_model_nll(ddpm_model *model, const ddpm_vlb_params *params, const ddpm_predict_params *predict_params,
#                    const ddpm_cond_batch *cond, const float *x0, int64_t n, float *total_out, float *prior_out,
#                    float *terms_out, int64_t count);
lib.ddpm_model_nll.argtypes = [
    ddpm_model_p, POINTER(ddpm_vlb_params), POINTER(ddpm_predict_params), POINTER(ddpm_cond_batch),
    POINTER(c_float), c_int64, POINTER(c_float), POINTER(c_float), POINTER(c_float), c_int64,
]
lib.ddpm_model_nll.restype = c_int
# int ddpm_model_save(const ddpm_model *model, const char *path);
lib.ddpm_model_save.argtypes = [ddpm_model_p, c_char_p]
lib.ddpm_model_save.restype = c_int
# int ddpm_model_load(const char *path, ddpm_model **out);
lib.ddpm_model_load.argtypes = [c_char_p, POINTER(ddpm_model_p)]
lib.ddpm_model_load.restype = c_int

# ---- Data-parallel training and sharded sampling ------------------------------------------

DDPM_PREDICT_CHUNK = 256

# int ddpm_model_compute_gradients(ddpm_model *model, const float *x0, int64_t batch, int64_t count,
#                                  const ddpm_cond_batch *cond, int64_t sample_offset, int64_t global_batch,
#                                  float *loss_out);
lib.ddpm_model_compute_gradients.argtypes = [ddpm_model_p, POINTER(c_float), c_int64, c_int64, POINTER(ddpm_cond_batch),
                                             c_int64, c_int64, POINTER(c_float)]
lib.ddpm_model_compute_gradients.restype = c_int
# int ddpm_model_gradients(ddpm_model *model, float **grads_out, int64_t *count_out);
lib.ddpm_model_gradients.argtypes = [ddpm_model_p, POINTER(POINTER(c_float)), POINTER(c_int64)]
lib.ddpm_model_gradients.restype = c_int
# int ddpm_model_apply_gradients(ddpm_model *model);
lib.ddpm_model_apply_gradients.argtypes = [ddpm_model_p]
lib.ddpm_model_apply_gradients.restype = c_int
# int ddpm_model_get_parameters(const ddpm_model *model, int32_t ema, float *out, int64_t count);
lib.ddpm_model_get_parameters.argtypes = [ddpm_model_p, c_int32, POINTER(c_float), c_int64]
lib.ddpm_model_get_parameters.restype = c_int
# int ddpm_model_parameter_hash(const ddpm_model *model, uint64_t *hash_out);
lib.ddpm_model_parameter_hash.argtypes = [ddpm_model_p, POINTER(c_uint64)]
lib.ddpm_model_parameter_hash.restype = c_int
# int ddpm_model_sample_shard(ddpm_model *model, const ddpm_sample_params *sample_params,
#                             const ddpm_predict_params *predict_params, const ddpm_cond_batch *cond,
#                             int64_t n, int64_t sample_offset, int64_t global_n, float *out, int64_t count);
lib.ddpm_model_sample_shard.argtypes = [
    ddpm_model_p, POINTER(ddpm_sample_params),
    POINTER(ddpm_predict_params), POINTER(ddpm_cond_batch),
    c_int64, c_int64, c_int64, POINTER(c_float), c_int64,
]
lib.ddpm_model_sample_shard.restype = c_int


# ---- Small helpers shared by the public modules (no maths) -----------------------------

FLOAT_P = POINTER(c_float)
DOUBLE_P = POINTER(c_double)
INT32_P = POINTER(c_int32)


def last_error() -> str:
    """ddpm_last_error() as a str ("" if none)."""
    message = lib.ddpm_last_error()
    return message.decode("utf-8", errors="replace") if message else ""


def status_string(status: int) -> str:
    """ddpm_status_string(status) as a str."""
    name = lib.ddpm_status_string(status)
    return name.decode("utf-8", errors="replace") if name else f"status {status}"
