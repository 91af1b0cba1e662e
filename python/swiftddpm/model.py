"""Model: a noise schedule plus a denoising network (residual MLP for vectors, UNet for
images), its AdamW state, EMA weights and training RNG. Train it on numpy arrays, predict,
sample from it, save and load it. All the maths runs in libddpm; this module only moves arrays.

A model is described by three configs (config.py): the network (MLPConfig or UNetConfig),
the training recipe (TrainConfig) and the conditioning (Conditioning):

    Model(schedule, network=MLPConfig(data_dim=2), train=TrainConfig(learning_rate=2e-3),
          cond=Conditioning.classes(10))

The fields of those configs may also be given as keywords, which are routed to the config
that has the field: Model(schedule, data_dim=2, hidden=64, learning_rate=2e-3, num_classes=10);
network="unet" picks the UNet, image_shape=(C, H, W) sets channels, height and width.
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
import tempfile
import warnings
from typing import Any, Callable, Union

import numpy as np

from . import _export, _lib
from ._arrays import batch_array, elements, float_ptr, int32_ptr, int32_vector
from ._callbacks import CallbackState
from ._conditions import cond_batch, cond_ref
from ._enums import PREDICTIONS, enum_value
from ._files import path_bytes
from ._handles import HandleOwner
from ._likelihood import Likelihood, run_vlb, vlb_params
from ._progress import TrainProgress
from ._sample_params import fresh_seed, predict_params, sample_params
from ._sampling import run_sampling
from ._scalars import as_float, as_int, as_int32, as_int64_count
from ._train_loop import Minibatches, TrainLoop
from .config import NETWORK_CONFIGS, NETWORK_KINDS, Conditioning, MLPConfig, TrainConfig, UNetConfig
from .errors import ClosedError, FormatError, InvalidArgumentError, check, error_for_status
from .schedule import NoiseSchedule

NetworkConfig = Union[MLPConfig, UNetConfig]

_NOT_CACHED: Any = object()  # first field of a train_step cache entry that matches no argument


def _cache_entry(arg: Any, arr: np.ndarray, pointer_type: Any) -> tuple:
    """A train_step cache entry: (the argument if it is used as-is, else _NOT_CACHED, then
    what `_is_cached` compares — dtype, shape, strides, data address — and the pointer)."""
    return (arg if arr is arg else _NOT_CACHED, arr.dtype, arr.shape, arr.strides, arr.ctypes.data,
            arr.ctypes.data_as(pointer_type))


def _is_cached(arg: Any, entry: tuple) -> bool:
    """True if arg is the very array of a cache entry and nothing a pointer depends on has
    changed since: its dtype (`a.dtype = ...` in place), shape, strides and data address
    (`a.resize(...)` may move the data)."""
    return (arg is entry[0] and arg.dtype is entry[1] and arg.shape == entry[2] and arg.strides == entry[3]
            and arg.ctypes.data == entry[4])


def _configs(network: Any, train: Any, cond: Any, options: dict[str, Any]):
    """(network, train, cond) configs from Model(...)'s arguments: each config given or its
    defaults, then every keyword option written into the config that has that field."""
    if isinstance(network, str):
        network = NETWORK_CONFIGS[enum_value(NETWORK_KINDS, network, "network")]()
    network = _typed(network, (MLPConfig, UNetConfig), "network")
    train = TrainConfig() if train is None else _typed(train, (TrainConfig,), "train")
    cond = Conditioning() if cond is None else _typed(cond, (Conditioning,), "cond")
    if "image_shape" in options:
        shape = tuple(options.pop("image_shape"))
        if len(shape) != 3:
            raise InvalidArgumentError(f"image_shape must be (channels, height, width) (got {shape!r})")
        options.update(zip(("channels", "height", "width"), shape))
    if "num_classes" in options:
        k = options.pop("num_classes")
        cond = Conditioning.classes(k) if k else Conditioning.none()
    if "label_dropout" in options:  # condition_dropout by its name before 0.3
        options.setdefault("condition_dropout", options.pop("label_dropout"))
    network_options, train_options = ({k: options.pop(k) for k in list(options) if k in _field_names(config)}
                                      for config in (network, train))
    if options:
        raise InvalidArgumentError(
            f"unknown option(s) {sorted(options)}: not a field of {type(network).__name__}, TrainConfig or "
            "Conditioning (num_classes), nor image_shape")
    return dataclasses.replace(network, **network_options), dataclasses.replace(train, **train_options), cond


def _typed(value: Any, kinds: tuple[type, ...], name: str) -> Any:
    if not isinstance(value, kinds):
        raise InvalidArgumentError(f"{name} must be {' or '.join(k.__name__ for k in kinds)} (got {value!r})")
    return value


def _field_names(config: Any) -> set[str]:
    return {f.name for f in dataclasses.fields(config)}


# UNetConfig fields swiftddpm.torch does not mirror (diffusers' UNet2DModel options).
_DIFFUSERS_OPTIONS = ("flip_sin_to_cos", "freq_shift", "norm_eps", "downsample_padding", "attention_head_dim",
                      "middle_attention")


class Model(HandleOwner):
    """A diffusion model: schedule + denoising network + AdamW + EMA (owns a ddpm_model handle).

    Example:
        >>> sched = NoiseSchedule.linear(1000)
        >>> with Model(sched, network=MLPConfig(data_dim=2)) as model:
        ...     losses = model.fit(data, steps=3000)
        ...     x = model.sample(1000)
    """

    def __init__(self, schedule: NoiseSchedule, *, network: NetworkConfig | str = "mlp",
                 train: TrainConfig | None = None, cond: Conditioning | None = None, **options: Any) -> None:
        """Creates a model over a copy of `schedule`.

        Args:
            network: an MLPConfig (vectors; needs data_dim) or a UNetConfig (images; needs
                height and width), or "mlp"/"unet" for that config's defaults.
            train: the TrainConfig (default TrainConfig()).
            cond: the Conditioning (default none).
            **options: fields of the network config or of TrainConfig, num_classes (K > 0:
                Conditioning.classes(K)) and image_shape=(C, H, W); each overrides the config.
        Raises InvalidArgumentError (a ValueError) on a bad combination, with the library's message.
        """
        if not isinstance(schedule, NoiseSchedule):
            raise InvalidArgumentError(f"schedule must be a NoiseSchedule (got {type(schedule).__name__})")
        network, train, cond = _configs(network, train, cond, options)
        net_p, train_p, cond_p = network.to_c(), train.to_c(), cond.to_c()
        handle = _lib.ddpm_model_p()
        check(_lib.lib.ddpm_model_create(schedule._h(), ctypes.byref(net_p.base), ctypes.byref(train_p),
                                         ctypes.byref(cond_p), ctypes.byref(handle)))
        self._adopt(handle)

    def _adopt(self, handle) -> None:
        """Takes ownership of a ddpm_model* and prepares the fast-path state of train_step."""
        self._handle = handle
        self._sample_shape = self.network.sample_shape
        self._sample_size = int(_lib.lib.ddpm_model_sample_size(handle))
        # train_step's fast path: the last x0/labels arrays used as-is, with their pointers
        # (entries of _cache_entry; the x0 entry is followed by batch and count).
        self.last_sample_seed: int | None = None  # the seed of the last sample() call (see its seed)
        self._x0_cache: tuple = (_NOT_CACHED,)
        self._labels_cache: tuple = (_NOT_CACHED,)
        self._loss = ctypes.c_float()
        self._loss_ptr = ctypes.pointer(self._loss)
        self._conditioning = self.conditioning
        self._label_batch = _lib.lib.ddpm_cond_batch_default()  # train_step's labels, pointed at the cached array
        self._label_batch_ref = ctypes.byref(self._label_batch)
        self._train_step_fn = _lib.lib.ddpm_model_train_step

    # ---- Lifetime ------------------------------------------------------------------

    _free = "ddpm_model_free"
    _handle_type = _lib.ddpm_model_p

    def close(self) -> None:
        """Frees the library handle (and forgets train_step's cached arrays); later calls
        raise ClosedError. Idempotent."""
        self._x0_cache = self._labels_cache = (_NOT_CACHED,)
        super().close()

    def __repr__(self) -> str:
        if self.closed:
            return "Model(closed)"
        cond = self.conditioning
        cond_text = f", cond={cond!r}" if cond.kind != "none" else ""
        return f"Model(network={self.network!r}{cond_text}, num_parameters={self.num_parameters}, step={self.step})"

    # ---- Properties ----------------------------------------------------------------

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """The shape of one sample: (D,) for the MLP, (C, H, W) for the UNet."""
        self._h()
        return self._sample_shape

    @property
    def num_parameters(self) -> int:
        """Number of trainable parameters."""
        return int(_lib.lib.ddpm_model_num_parameters(self._h()))

    @property
    def step(self) -> int:
        """Train steps taken so far."""
        return int(_lib.lib.ddpm_model_step(self._h()))

    @property
    def network(self) -> NetworkConfig:
        """The network's config, an MLPConfig or a UNetConfig (ddpm_model_get_network)."""
        handle = self._h()
        cls = NETWORK_CONFIGS[_lib.lib.ddpm_model_network_kind(handle)]
        p = cls._c_default()  # its head names the kind and size that get_network fills
        check(_lib.lib.ddpm_model_get_network(handle, ctypes.byref(p.base)))
        return cls.from_c(p)

    @property
    def train_config(self) -> TrainConfig:
        """The training recipe (the current learning rate included)."""
        p = _lib.lib.ddpm_train_params_default()
        check(_lib.lib.ddpm_model_get_train_params(self._h(), ctypes.byref(p)))
        config = TrainConfig.from_c(p)
        return config.for_unconditional() if self._conditioning.kind == "none" else config

    @property
    def conditioning(self) -> Conditioning:
        """What the model's samples are conditioned on."""
        p = _lib.lib.ddpm_cond_params_default()
        check(_lib.lib.ddpm_model_get_cond_params(self._h(), ctypes.byref(p)))
        return Conditioning.from_c(p)

    @property
    def configs(self) -> dict[str, Any]:
        """{"network": ..., "train": ..., "cond": ...}: Model(schedule, **model.configs) builds a twin."""
        return {"network": self.network, "train": self.train_config, "cond": self.conditioning}

    @property
    def schedule(self) -> NoiseSchedule:
        """A copy of the model's noise schedule (yours to close)."""
        handle = _lib.ddpm_schedule_p()
        check(_lib.lib.ddpm_model_get_schedule(self._h(), ctypes.byref(handle)))
        return NoiseSchedule(handle)

    def set_learning_rate(self, learning_rate: float) -> None:
        """Changes the AdamW learning rate (> 0) for the following steps."""
        check(_lib.lib.ddpm_model_set_learning_rate(self._h(), as_float(learning_rate, "learning_rate")))

    # ---- Training ------------------------------------------------------------------

    def _batch(self, x: Any, what: str) -> np.ndarray:
        return batch_array(x, what, self._sample_shape)

    def _prepare_x0(self, x0: Any) -> tuple:
        arr = self._batch(x0, "x0")
        entry = _cache_entry(x0, arr, _lib.FLOAT_P) + (arr.shape[0], arr.size)
        if arr is x0:  # no copy was needed: the same array may come back next step
            self._x0_cache = entry
        return entry

    def _prepare_labels(self, labels: Any, batch: int) -> tuple:
        arr = int32_vector(labels, batch, "labels", broadcast=True)
        entry = _cache_entry(labels, arr, _lib.INT32_P)
        if arr is labels:
            self._labels_cache = entry
        return entry

    def train_step(self, x0: Any, labels: Any = None, *, cond: Any = None, lengths: Any = None) -> float:
        """One training step (DDPM Algorithm 1) on a batch x0 (B, *sample_shape); returns the loss.

        cond (or its alias labels): (B,) ints in 0..K (K = no class) for a class-conditional
        model, (B, dim) floats for a vector-conditioned one, (B, max_length, dim) floats (and
        lengths (B,)) or (B, max_length) token ids (0 = padding) for a sequence- or
        token-conditioned one, else None. With condition
        dropout (TrainConfig.condition_dropout) a row is trained on the null condition instead.
        Passing the same float32 C-contiguous array each step (refilled in place) takes
        a fast path with no conversion; any change of its dtype, shape, strides or data
        address since the last step takes the full path again.
        """
        handle = self._handle
        if handle is None:
            raise ClosedError("this Model has been closed")
        cache = self._x0_cache
        entry = cache if _is_cached(x0, cache) else self._prepare_x0(x0)
        batch = entry[6]
        keep = None
        if cond is None and labels is None:
            c_cond = None
        elif self._conditioning.kind in ("none", "classes") and (cond is None or labels is None) and lengths is None:
            labels = labels if cond is None else cond
            lcache = self._labels_cache
            lentry = lcache if (_is_cached(labels, lcache) and lcache[2] == (batch,)) else self._prepare_labels(labels, batch)
            self._label_batch.labels = lentry[5]
            c_cond = self._label_batch_ref
        else:
            cbatch, keep = cond_batch(self._conditioning, cond, labels, batch, lengths)
            c_cond = cond_ref(cbatch)
        status = self._train_step_fn(handle, entry[5], batch, entry[7], c_cond, self._loss_ptr)
        del keep
        if status:
            raise error_for_status(status)
        return self._loss.value

    def fit(self, data: Any, steps: int, batch_size: int = 256, *, cond: Any = None, labels: Any = None,
            lengths: Any = None, seed: int = 0,
            progress: bool = True, lr_schedule: Callable[[int], float] | None = None,
            callback: Callable[[int, float, float, "Model"], Any] | None = None, callback_every: int = 1,
            log: str | os.PathLike | None = None) -> np.ndarray:
        """Trains for `steps` more steps on minibatches drawn (with replacement) from data: the
        training loop of swiftddpm._train_loop, which distributed.fit and the command line share.

        Args:
            data: (N, *sample_shape) training set.
            cond (or its alias labels): (N,) class labels, (N, dim) conditioning vectors,
                (N, max_length, dim) sequences (lengths (N,) or None for full), (N, max_length)
                token ids (0 = padding), or None.
            steps: train steps in this call.  batch_size: rows per step.
            seed: minibatch k (k = model.step before the step) is drawn by
                np.random.default_rng([seed, k]): fit(4) then fit(6) draws what fit(10) draws,
                and so does a model saved after 4 steps, loaded and fitted 6 more.
            progress: show a tqdm bar (silently none if tqdm is not installed).
            lr_schedule: lr_schedule(i) -> learning rate for step i of this call (0-based).
            callback: callback(step, loss, lr, model) after every `callback_every`-th step of
                this call: step is the model's step count (model.step), loss that step's loss,
                lr the learning rate it used. Returning False (exactly) stops training there.
            log: a CSV file written as training goes (header "step,loss,lr", one row per step,
                flushed every 100 steps and at the end); replaced if it exists. It must be a
                regular file (a FIFO or a device is refused with DDPMIOError, never waited on).
        Ctrl-C (SIGINT, in the main thread) stops training after the step in progress (no
        callback runs after it): the model stays usable and fit returns the losses so far (a
        RuntimeWarning says so).
        Every row of data (and of a float condition) is checked for NaN and infinity before the
        first step (NonFiniteError naming the row). A step that fails raises its DDPMError with
        the losses of the steps before it as the error's `losses` attribute.
        Returns the float32 loss history: (steps,), or shorter if stopped early.
        """
        self._h()
        steps = as_int(steps, "steps", minimum=0)
        batch_size = as_int(batch_size, "batch_size", minimum=1)
        callback_every = as_int(callback_every, "callback_every", minimum=1)
        if callback is not None and not callable(callback):
            raise InvalidArgumentError(f"callback must be callable (got {callback!r})")
        batches = Minibatches(self, data, batch_size, seed, cond=cond, labels=labels, lengths=lengths)
        hooks = []
        if callback is not None:
            def call_back(loop: TrainLoop) -> Any:
                if loop.done % callback_every:
                    return None
                result = callback(loop.step, loop.loss, loop.lr, self)
                loop.lr = self.train_config.learning_rate  # the callback may have changed it
                return result
            hooks.append(call_back)
        start = self.step
        bar = TrainProgress(start, start + steps, bar_every=25, leave=False) if progress else None
        loop = TrainLoop(self, batches, lr_schedule=lr_schedule, log=log, progress=bar, hooks=hooks)
        losses = loop.run(steps)
        if loop.stopped == "interrupt":
            warnings.warn(f"fit: interrupted (Ctrl-C) after {loop.done} of {steps} steps; "
                          "returning the losses so far", RuntimeWarning, stacklevel=2)
        return losses

    # ---- Inference -----------------------------------------------------------------

    def predict_variance(self, x_t: Any, t: int, labels: Any = None, **options: Any) -> np.ndarray:
        """The learned reverse variance σ_t² at x_t (models trained with learned_variance): predict(output="variance")."""
        return self.predict(x_t, t, labels, output="variance", **options)

    def score(self, x_t: Any, t: int, labels: Any = None, **options: Any) -> np.ndarray:
        """The score s_θ(x_t, t) = −ε̂/√(1−ᾱ_t) (with guidance when a condition is given): predict(output="score")."""
        return self.predict(x_t, t, labels, output="score", **options)

    def predict(self, x_t: Any, t: int, labels: Any = None, *, cond: Any = None, lengths: Any = None, output: str = "eps",
                guidance_scale: float = 1.0,
                use_ema: bool = True) -> np.ndarray:
        """The model's prediction for a batch x_t (B, *sample_shape) at one timestep t for every row.

        output: "eps" (ε̂), "x0" (x̂_0 = (x_t − √(1−ᾱ_t)·ε̂)/√ᾱ_t), "v" (√ᾱ_t·ε̂ − √(1−ᾱ_t)·x̂_0)
            or "score" (−ε̂/√(1−ᾱ_t), the score of q(x_t)), whatever the model's target; or
            "variance", the learned σ_t² of a model trained with learned_variance.
        cond (or its alias labels): (B,) labels (or one int) for a class-conditional model,
        (B, dim) vectors (or one (dim,) vector) for a vector-conditioned one, with
        classifier-free guidance ε̂_uncond + w·(ε̂_cond − ε̂_uncond), w = guidance_scale
        (ε̂_uncond with the null condition); or None.
        use_ema: predict with the EMA weights (default) or the live ones.
        Returns float32 with x_t's shape.
        """
        handle = self._h()
        x = self._batch(x_t, "x_t")
        t = as_int32(t, "t")
        cbatch, _keep = cond_batch(self._conditioning, cond, labels, x.shape[0], lengths)
        params = predict_params(guidance_scale, use_ema)
        out = np.empty_like(x)
        check(_lib.lib.ddpm_model_predict(handle, ctypes.byref(params), enum_value(PREDICTIONS, output, "output"),
                                          float_ptr(x), x.shape[0], t, cond_ref(cbatch),
                                          float_ptr(out), out.size))
        return out

    @property
    def cross_attention_layers(self) -> list[tuple[int, int]]:
        """(height, width) of each cross-attention layer of a UNet conditioned on sequences or
        tokens, in the order the forward pass runs them (encoder, middle, decoder); [] if none."""
        handle = self._h()
        n = _lib.lib.ddpm_model_cross_attention_layers(handle, None, None, 0)
        heights, widths = np.zeros(max(n, 1), np.int32), np.zeros(max(n, 1), np.int32)
        _lib.lib.ddpm_model_cross_attention_layers(handle, int32_ptr(heights), int32_ptr(widths), n)
        return [(int(h), int(w)) for h, w in zip(heights[:n], widths[:n])]

    def cross_attention(self, x_t: Any, t: int, layer: int, *, cond: Any, lengths: Any = None,
                        use_ema: bool = True) -> np.ndarray:
        """What cross-attention layer `layer` (an index into cross_attention_layers) looks at
        for x_t (B, *sample_shape) at timestep t with the condition cond (no guidance): the
        weight each pixel gives each context position (word), averaged over the heads, as
        float32 (B, height, width, max_length); 0 past a row's length."""
        handle = self._h()
        x = self._batch(x_t, "x_t")
        sizes = self.cross_attention_layers
        layer = as_int(layer, "layer", minimum=0, maximum=max(0, len(sizes) - 1))
        if not sizes:
            raise InvalidArgumentError("the model has no cross-attention layer (a UNet conditioned on sequences or tokens has)")
        cbatch, _keep = cond_batch(self._conditioning, cond, None, x.shape[0], lengths)
        params = predict_params(1.0, use_ema)
        h, w = sizes[layer]
        out = np.empty((x.shape[0], h, w, self._conditioning.max_length), np.float32)
        check(_lib.lib.ddpm_model_cross_attention(handle, ctypes.byref(params), layer, float_ptr(x), x.shape[0],
                                                  as_int32(t, "t"), cond_ref(cbatch), float_ptr(out), out.size))
        return out

    def sample(self, n: int, *, method: str = "ddpm", steps: int = 0, eta: float = 0.0, variance: str = "beta",
               clip: Any = None, seed: int | None = None, timesteps: Any = None, cond: Any = None,
               labels: Any = None, lengths: Any = None,
               guidance_scale: float = 1.0,
               use_ema: bool = True, progress: Any = True,
               return_trajectory: Any = False,
               **solver_options: Any) -> np.ndarray | tuple[np.ndarray, dict[int, np.ndarray]]:
        """Draws n samples: x_T ~ N(0, I), then reverse steps down to x_0.

        Args:
            n: number of samples.
            method: "ddpm" (ancestral; steps < T gives the respaced sampler), "ddim",
                "dpm_solver++" (multistep DPM-Solver++, order solver_order), "sde_dpm_solver++",
                "langevin" (annealed Langevin with the score, corrector_steps per timestep) or
                "pc" (predictor-corrector: corrector_steps Langevin steps, then a DDPM step).
            steps: timesteps; 0 = T for DDPM and PC, min(50, T) for the others.
            eta: DDIM stochasticity in [0, 1] (0 = deterministic).
            variance: DDPM σ_t²: "beta" (β_t) or "posterior" (β̃_t).
            clip: None, True for (-1, 1), or (lo, hi): clip the predicted x_0 each step.
            seed: seeds x_T and every noise draw. As numpy's generators: None (the default)
                draws a fresh seed from the operating system's entropy, so two calls give
                different samples; an int in 0..2**64-1 reproduces (same seed, same samples,
                whatever the thread count). The seed used is `model.last_sample_seed`
                afterwards: pass it back to get the same samples again.
            timesteps: your own timesteps, strictly decreasing in 0..T-1 (overrides steps).
            cond (or its alias labels): (n,) class labels or one int (class-conditional models),
                (n, dim) vectors or one (dim,) vector (vector-conditioned), None for unconditional.
            guidance_scale: classifier-free guidance w (1 = plain conditional).
            use_ema: sample with the EMA weights (default) or the live ones.
            progress: True (the default: a tqdm bar, as fit shows; none when tqdm is not
                installed), None or False (none), or progress(step, total, t, x) called after each
                step with x the (n, *sample_shape) batch at timestep t (-1 = the final x_0),
                valid during the call; return truthy to cancel (raises CancelledError).
            return_trajectory: False; True for every step; or a list of timesteps to keep.
                Keys are the timestep of each x: T-1 is x_T (the starting noise), -1 the
                final x_0. Timesteps the sampler does not visit are absent.
            solver_options: spacing ("default", "leading", "trailing", "linspace", "karras"),
                steps_offset, use_clipped_model_output, thresholding (None, True or the
                quantile p), threshold_max, solver_order, lower_order_final, corrector_steps,
                snr, langevin_step_size (see swiftddpm._sample_params.SOLVER_OPTIONS and ddpm.h).
        Returns (n, *sample_shape) float32 — for a UNetConfig.signal model (n, length) with one
        channel and (n, channels, length) with more, the layouts fit takes; with
        return_trajectory, (samples, {t: x_t}) ordered from noisiest to x_0.
        """
        handle = self._h()
        n = as_int64_count(n, "n")
        elements(n, self._sample_shape)
        cbatch, _keep = cond_batch(self._conditioning, cond, labels, n, lengths)
        seed = fresh_seed() if seed is None else seed
        params = sample_params(method=method, steps=steps, eta=eta, variance=variance, clip=clip, seed=seed,
                               timesteps=timesteps, **solver_options)
        self.last_sample_seed = int(params.seed)
        predict = predict_params(guidance_scale, use_ema)
        out = run_sampling(CallbackState(), params, (n, *self._sample_shape), progress, return_trajectory,
                           lambda out: _lib.lib.ddpm_model_sample(handle, ctypes.byref(params), ctypes.byref(predict),
                                                                  cond_ref(cbatch), n, float_ptr(out),
                                                                  out.size))
        shape = self._signal_shape()
        if shape is None:
            return out
        if isinstance(out, tuple):
            return out[0].reshape(n, *shape), {t: x.reshape(n, *shape) for t, x in out[1].items()}
        return out.reshape(n, *shape)

    def _signal_shape(self) -> tuple[int, ...] | None:
        """A UNet over signals (height 1, UNetConfig.signal): one sample's shape without the
        height axis, and without the channel axis for one channel; None for other networks."""
        c, h, w = self._sample_shape if len(self._sample_shape) == 3 else (0, 0, 0)
        if h != 1 or not isinstance(self.network, UNetConfig):
            return None
        return (w,) if c == 1 else (c, w)

    def nll(self, x0: Any, labels: Any = None, *, cond: Any = None, lengths: Any = None, variance: str = "beta", decoder: str = "continuous", bits: int = 8,
            seed: int = 0, guidance_scale: float = 1.0,
            use_ema: bool = True) -> Likelihood:
        """The variational bound on −log p(x0) of each sample, term by term (one network
        evaluation per timestep, each at a fresh x_t ~ q(x_t|x_0) drawn from `seed`).

        variance: σ² of p(x_{t-1}|x_t), "beta" or "posterior". decoder: "continuous" (a
        Gaussian density; nats/dim) or "discretized" (x0 on 2**bits levels in [-1, 1], e.g.
        images; bits/dim). Returns a Likelihood: total (n,), prior (n,) L_T, terms (n, T), unit.
        """
        handle = self._h()
        x = self._batch(x0, "x0")
        n = x.shape[0]
        cbatch, _keep = cond_batch(self._conditioning, cond, labels, n, lengths)
        params = vlb_params(variance, decoder, bits, seed, "eps")
        predict = predict_params(guidance_scale, use_ema)
        with self.schedule as schedule:
            T = schedule.num_timesteps
        return run_vlb(CallbackState(), params, x, T, decoder,
                       lambda total, prior, terms: _lib.lib.ddpm_model_nll(
                             handle, ctypes.byref(params), ctypes.byref(predict), cond_ref(cbatch),
                             float_ptr(x), n, total, prior, terms, x.size))

    # ---- Files ---------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Saves the whole model (network, EMA, optimizer, RNG, schedule, config) as one
        safetensors file; written atomically (temporary file renamed over path)."""
        check(_lib.lib.ddpm_model_save(self._h(), path_bytes(path)))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Model":
        """Loads a model written by `save`; training resumes exactly where it stopped."""
        raw_path = path_bytes(path)
        handle = _lib.ddpm_model_p()
        check(_lib.lib.ddpm_model_load(raw_path, ctypes.byref(handle)))
        model = cls.__new__(cls)
        model._adopt(handle)
        return model

    # ---- Export (weights for PyTorch and other frameworks) -------------------------

    def export(self, path: str | os.PathLike, *, use_ema: bool = True) -> str:
        """Writes the network's weights alone to the folder `path` (created if needed):
        model.safetensors (F32 tensors named as swiftddpm.torch's state_dict keys) and
        config.json (architecture, conditioning, schedule with every β, prediction target,
        learned variance). use_ema: export the EMA weights (default) or the live ones. Returns path.

        swiftddpm.torch.from_export(path) builds the equivalent torch.nn.Module;
        Model.from_export(path) builds a model here again. Every network, objective and
        conditioning exports, but UNets with diffusers' options (flip_sin_to_cos, ...: see
        export_diffusers), which swiftddpm.torch does not mirror.
        """
        if isinstance(self.network, UNetConfig):
            changed = [f for f in _DIFFUSERS_OPTIONS if getattr(self.network, f) != getattr(UNetConfig(), f)]
            if changed:
                raise InvalidArgumentError(f"export: swiftddpm.torch does not mirror the UNet options {changed}; "
                                           "export_diffusers writes this model for diffusers")
        weights = _export.model_weights(self, use_ema)
        train = self.train_config
        with self.schedule as schedule:
            config = _export.make_config(self.network, self.conditioning, schedule.params, schedule.betas,
                                         weights="ema" if use_ema else "live", step=self.step,
                                         prediction_target=train.prediction_target,
                                         learned_variance=train.learned_variance)
        return str(_export.write_export(path, weights, config))

    @classmethod
    def from_export(cls, path: str | os.PathLike, *, train: TrainConfig | None = None) -> "Model":
        """A model built from an export folder (Model.export or swiftddpm.torch.export): its
        network, conditioning, schedule, prediction target and learned variance, with the
        folder's weights as both the live and the EMA weights; train (default TrainConfig())
        is the recipe for further training (its prediction_target and learned_variance are
        the folder's: a train that asks for others is refused)."""
        config = _export.read_config(path)
        with _export.format_errors(path):  # a malformed config.json: FormatError, whatever it breaks
            network = _export.network_from_json(config["network"])
            cond = _export.conditioning_from_json(config["conditioning"])
            target, learned = _export.objective_from_json(config)
            schedule = _export.schedule_from_json(config["schedule"])
        recipe = dataclasses.replace(train or TrainConfig(), prediction_target=target, learned_variance=learned)
        if train is not None and recipe != train:
            schedule.close()
            raise InvalidArgumentError(f"train asks for prediction_target={train.prediction_target!r}, learned_variance="
                                       f"{train.learned_variance}; the export's network predicts {target!r} with "
                                       f"learned_variance={learned}")
        with schedule:
            try:
                model = cls(schedule, network=network, train=recipe, cond=cond)
            except InvalidArgumentError as e:
                if train is not None:  # the caller's recipe may be what is refused
                    raise
                raise FormatError(f"'{os.fspath(path)}' is not a valid export: {e}") from None
        try:
            model.import_weights(path)
        except BaseException:
            model.close()
            raise
        return model

    @classmethod
    def from_diffusers(cls, folder: str | os.PathLike, *, train: TrainConfig | None = None) -> "Model":
        """A model with the UNet2DModel of a diffusers folder (a pipeline folder with unet/, or
        the UNet folder itself: config.json + diffusion_pytorch_model.safetensors) and the
        schedule of its scheduler/scheduler_config.json (DDPMScheduler's default without one).
        Anything we cannot express is refused, naming the field (see swiftddpm.diffusers)."""
        from . import diffusers
        return diffusers.load_unet(cls, folder, train=train)[0]

    def export_diffusers(self, folder: str | os.PathLike, *, use_ema: bool = True, **scheduler_options: Any) -> str:
        """Writes the model as a diffusers DDPMPipeline folder (model_index.json, unet/,
        scheduler/) that UNet2DModel.from_pretrained and DDPMPipeline.from_pretrained load; the
        folder is replaced whole. Refuses what diffusers cannot hold (vector or token
        conditioning, a learned variance, a 1-D signal UNet). Returns folder."""
        from . import diffusers
        return str(diffusers.export_unet(self, folder, use_ema=use_ema, **scheduler_options))

    def import_weights(self, source: Any, *, live: bool = True, ema: bool = True) -> None:
        """Replaces the network's weights (live and EMA, or one of them) with those of an
        export folder, a safetensors file, or a {name: array} mapping (a torch state_dict
        converted with .numpy() works). Every parameter must be given, with the model's
        shape; the optimizer state, step count and RNG are kept."""
        self._h()
        weights = source if isinstance(source, dict) else _export.read_weights(source)
        with tempfile.TemporaryDirectory() as d:
            path = _export.checkpoint_with_weights(self, weights, d, live=live, ema=ema)
            handle = _lib.ddpm_model_p()
            check(_lib.lib.ddpm_model_load(os.fsencode(path), ctypes.byref(handle)))
        old = self._handle
        self._adopt(handle)
        _lib.lib.ddpm_model_free(old)

