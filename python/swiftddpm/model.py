"""Model: a noise schedule plus an ε-network (residual MLP for vectors, UNet for images),
its AdamW state, EMA weights and training RNG. Train it on numpy arrays, sample from it,
save and load it. All the maths runs in libddpm; this module only moves arrays.
"""

from __future__ import annotations

import ctypes
import os
from typing import Any, Callable

import numpy as np

from . import _common as C
from . import _lib
from .errors import ClosedError, InvalidArgumentError, check, error_for_status
from .schedule import NoiseSchedule

_MAX_LEVELS = 4  # length of ddpm_model_params.channel_mult
_INT32_MAX = 2**31 - 1


def _int32(value: Any, what: str) -> int:
    v = C.as_int(value, what)
    if not -_INT32_MAX - 1 <= v <= _INT32_MAX:
        raise InvalidArgumentError(f"{what} must fit in int32 (got {v})")
    return v


def _f32(value: float) -> float:
    """A float32 field as the shortest decimal that rounds to it (1e-3, not 0.0010000000474974513)."""
    return float(str(np.float32(value)))


def _options_from_params(p: _lib.ddpm_model_params) -> dict[str, Any]:
    """ddpm_model_params -> the keyword arguments of Model(...)."""
    levels = max(0, min(p.num_levels, _MAX_LEVELS))
    return {
        "network": C.enum_name(C.NETWORKS, p.network),
        "data_dim": p.data_dim or None,
        "hidden": p.hidden,
        "depth": p.depth,
        "time_embed_dim": p.time_embed_dim,
        "image_shape": (p.channels, p.height, p.width) if p.channels and p.height and p.width else None,
        "base_channels": p.base_channels,
        "channel_mult": tuple(p.channel_mult[:levels]),
        "res_blocks": p.res_blocks,
        "attention_levels": tuple(l for l in range(32) if p.attention_levels >> l & 1),
        "attention_heads": p.attention_heads,
        "groups": p.groups,
        "dropout": _f32(p.dropout),
        "num_classes": p.num_classes,
        "label_dropout": _f32(p.label_dropout),
        "learning_rate": _f32(p.learning_rate),
        "betas": (_f32(p.beta1), _f32(p.beta2)),
        "adam_eps": _f32(p.adam_eps),
        "weight_decay": _f32(p.weight_decay),
        "grad_clip": _f32(p.grad_clip),
        "ema_decay": _f32(p.ema_decay),
        "seed": p.seed,
    }


def _params_from_options(o: dict[str, Any]) -> _lib.ddpm_model_params:
    """The keyword arguments of Model(...) -> ddpm_model_params (range checks are the library's)."""
    p = _lib.model_params_default()
    p.network = C.enum_value(C.NETWORKS, o["network"], "network")
    p.data_dim = 0 if o["data_dim"] is None else _int32(o["data_dim"], "data_dim")
    p.hidden = _int32(o["hidden"], "hidden")
    p.depth = _int32(o["depth"], "depth")
    p.time_embed_dim = _int32(o["time_embed_dim"], "time_embed_dim")
    if o["image_shape"] is not None:
        shape = tuple(o["image_shape"])
        if len(shape) != 3:
            raise InvalidArgumentError(f"image_shape must be (channels, height, width) (got {o['image_shape']!r})")
        p.channels, p.height, p.width = (_int32(v, "image_shape entries") for v in shape)
    p.base_channels = _int32(o["base_channels"], "base_channels")
    mult = [_int32(m, "channel_mult entries") for m in o["channel_mult"]]
    if not 1 <= len(mult) <= _MAX_LEVELS:
        raise InvalidArgumentError(f"channel_mult must have 1 to {_MAX_LEVELS} entries (got {len(mult)})")
    p.num_levels = len(mult)
    p.channel_mult[:] = mult + [mult[-1]] * (_MAX_LEVELS - len(mult))
    mask = 0
    for level in o["attention_levels"] or ():
        level = C.as_int(level, "attention_levels entries")
        if not 0 <= level < len(mult):
            raise InvalidArgumentError(f"attention level {level} is outside 0..{len(mult) - 1} (the levels of channel_mult)")
        mask |= 1 << level
    p.attention_levels = mask
    p.res_blocks = _int32(o["res_blocks"], "res_blocks")
    p.attention_heads = _int32(o["attention_heads"], "attention_heads")
    p.groups = _int32(o["groups"], "groups")
    p.dropout = float(o["dropout"])
    p.num_classes = _int32(o["num_classes"], "num_classes")
    p.label_dropout = float(o["label_dropout"])
    p.learning_rate = float(o["learning_rate"])
    try:
        p.beta1, p.beta2 = (float(b) for b in o["betas"])
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"betas must be a pair (beta1, beta2) (got {o['betas']!r})") from None
    p.adam_eps = float(o["adam_eps"])
    p.weight_decay = float(o["weight_decay"])
    p.grad_clip = float(o["grad_clip"])
    p.ema_decay = float(o["ema_decay"])
    seed = C.as_int(o["seed"], "seed", minimum=0)
    if seed >= 2**64:
        raise InvalidArgumentError(f"seed must fit in 64 bits (got {seed})")
    p.seed = seed
    return p


_NOT_CACHED: Any = object()  # first field of a train_step cache entry that matches no argument


_FROM_LIBRARY: Any = object()  # placeholder default; replaced by ddpm_model_params_default() below


class Model(C.ClosesOnExit):
    """A diffusion model: schedule + ε-network + AdamW + EMA (owns a ddpm_model handle).

    Example:
        >>> sched = NoiseSchedule.linear(1000)
        >>> with Model(sched, data_dim=2) as model:
        ...     losses = model.fit(data, steps=3000)
        ...     x = model.sample(1000)
    """

    def __init__(self, schedule: NoiseSchedule, *, network=_FROM_LIBRARY, data_dim=_FROM_LIBRARY,
                 hidden=_FROM_LIBRARY, depth=_FROM_LIBRARY, time_embed_dim=_FROM_LIBRARY,
                 image_shape=_FROM_LIBRARY, base_channels=_FROM_LIBRARY, channel_mult=_FROM_LIBRARY,
                 res_blocks=_FROM_LIBRARY, attention_levels=_FROM_LIBRARY, attention_heads=_FROM_LIBRARY,
                 groups=_FROM_LIBRARY, dropout=_FROM_LIBRARY, num_classes=_FROM_LIBRARY,
                 label_dropout=_FROM_LIBRARY, learning_rate=_FROM_LIBRARY, betas=_FROM_LIBRARY,
                 adam_eps=_FROM_LIBRARY, weight_decay=_FROM_LIBRARY, grad_clip=_FROM_LIBRARY,
                 ema_decay=_FROM_LIBRARY, seed=_FROM_LIBRARY) -> None:
        """Creates a model over a copy of `schedule` (defaults: ddpm_model_params_default()).

        Args:
            network: "mlp" (vectors; needs data_dim) or "unet" (images; needs image_shape).
            data_dim: D, floats per sample for the MLP.
            hidden, depth, time_embed_dim: MLP width, residual blocks, time encoding size.
            image_shape: (C, H, W) for the UNet; H, W divisible by 2^(levels-1).
            base_channels, channel_mult, res_blocks: UNet widths per level
                (len(channel_mult) levels, at most 4) and residual blocks per level.
            attention_levels: the levels (indices into channel_mult) with self-attention.
            attention_heads, groups, dropout: UNet attention heads, GroupNorm groups, dropout.
            num_classes: K > 0 for a class-conditional model (labels 0..K-1; K = no class).
            label_dropout: probability of training a row unconditionally (for guidance).
            learning_rate, betas, adam_eps, weight_decay, grad_clip: AdamW settings;
                grad_clip is a global norm (0 = off).
            ema_decay: EMA decay of the sampling weights.
            seed: parameter initialisation and every training draw.
        Raises InvalidArgumentError (a ValueError) on a bad combination, with the library's message.
        """
        self._handle = None
        options = dict(locals())
        del options["self"], options["schedule"]
        if not isinstance(schedule, NoiseSchedule):
            raise InvalidArgumentError(f"schedule must be a NoiseSchedule (got {type(schedule).__name__})")
        params = _params_from_options(options)
        handle = _lib.ddpm_model_p()
        check(_lib.lib.ddpm_model_create(schedule._h(), ctypes.byref(params), ctypes.byref(handle)))
        self._adopt(handle)

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        """The constructor's defaults, as ddpm_model_params_default() gives them."""
        return _options_from_params(_lib.model_params_default())

    def _adopt(self, handle) -> None:
        """Takes ownership of a ddpm_model* and prepares the fast-path state of train_step."""
        self._handle = handle
        p = _lib.ddpm_model_params()
        p.struct_size = ctypes.sizeof(p)
        check(_lib.lib.ddpm_model_get_params(handle, ctypes.byref(p)))
        self._sample_shape = ((p.channels, p.height, p.width) if p.network == _lib.DDPM_NETWORK_UNET
                              else (p.data_dim,))
        self._sample_size = int(_lib.lib.ddpm_model_sample_size(handle))
        self._flat_shape = (self._sample_size,)
        self._num_classes = p.num_classes
        # train_step's fast path: the last x0/labels arrays used as-is, with their pointers.
        self._x0_cache: tuple = (_NOT_CACHED,)
        self._labels_cache: tuple = (_NOT_CACHED,)
        self._loss = ctypes.c_float()
        self._loss_ptr = ctypes.pointer(self._loss)
        self._null_labels = _lib.INT32_P()
        self._train_step_fn = _lib.lib.ddpm_model_train_step

    # ---- Lifetime ------------------------------------------------------------------

    def close(self) -> None:
        """Frees the library handle; later calls raise ClosedError. Idempotent."""
        handle, self._handle = getattr(self, "_handle", None), None
        self._x0_cache = self._labels_cache = (_NOT_CACHED,)
        if handle and _lib is not None and _lib.lib is not None:
            _lib.lib.ddpm_model_free(handle)

    @property
    def closed(self) -> bool:
        return self._handle is None

    def _h(self):
        handle = self._handle
        if handle is None:
            raise ClosedError("this Model has been closed")
        return handle

    def __repr__(self) -> str:
        if self.closed:
            return "Model(closed)"
        o = self.params
        if o["network"] == "unet":
            arch = (f"network='unet', image_shape={o['image_shape']}, base_channels={o['base_channels']}, "
                    f"channel_mult={o['channel_mult']}, attention_levels={o['attention_levels']}")
        else:
            arch = f"network='mlp', data_dim={o['data_dim']}, hidden={o['hidden']}, depth={o['depth']}"
        cond = f", num_classes={o['num_classes']}" if o["num_classes"] else ""
        return f"Model({arch}{cond}, num_parameters={self.num_parameters}, step={self.step})"

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
    def params(self) -> dict[str, Any]:
        """The model's settings as Model(...) keyword arguments (learning rate included)."""
        p = _lib.ddpm_model_params()
        p.struct_size = ctypes.sizeof(p)
        check(_lib.lib.ddpm_model_get_params(self._h(), ctypes.byref(p)))
        return _options_from_params(p)

    @property
    def schedule(self) -> NoiseSchedule:
        """A copy of the model's noise schedule (yours to close)."""
        handle = _lib.ddpm_schedule_p()
        check(_lib.lib.ddpm_model_get_schedule(self._h(), ctypes.byref(handle)))
        return NoiseSchedule(handle, f"custom(T={_lib.lib.ddpm_schedule_num_timesteps(handle)}) from a Model")

    def set_learning_rate(self, learning_rate: float) -> None:
        """Changes the AdamW learning rate (> 0) for the following steps."""
        check(_lib.lib.ddpm_model_set_learning_rate(self._h(), float(learning_rate)))

    # ---- Training ------------------------------------------------------------------

    def _batch(self, x: Any, what: str) -> np.ndarray:
        return C.batch_array(x, what, self._sample_shape)

    def _prepare_x0(self, x0: Any) -> tuple:
        arr = self._batch(x0, "x0")
        entry = (x0 if arr is x0 else _NOT_CACHED, arr.shape, arr.ctypes.data_as(_lib.FLOAT_P), arr.shape[0], arr.size)
        if arr is x0:  # no copy was needed: the same array may come back next step
            self._x0_cache = entry
        return entry

    def _prepare_labels(self, labels: Any, batch: int) -> tuple:
        arr = C.int32_vector(labels, batch, "labels", broadcast=True)
        entry = (labels if arr is labels else _NOT_CACHED, arr.shape, arr.ctypes.data_as(_lib.INT32_P))
        if arr is labels:
            self._labels_cache = entry
        return entry

    def train_step(self, x0: Any, labels: Any = None) -> float:
        """One training step (DDPM Algorithm 1) on a batch x0 (B, *sample_shape); returns the loss.

        labels: (B,) ints in 0..K (K = no class) for a conditional model, else None.
        Passing the same float32 C-contiguous array each step (refilled in place) takes
        a fast path with no conversion.
        """
        handle = self._handle
        if handle is None:
            raise ClosedError("this Model has been closed")
        cache = self._x0_cache
        if x0 is cache[0] and x0.shape == cache[1]:
            entry = cache
        else:
            entry = self._prepare_x0(x0)
        batch = entry[3]
        if labels is None:
            label_ptr = self._null_labels
        else:
            lcache = self._labels_cache
            lentry = lcache if (labels is lcache[0] and labels.shape == (batch,)) else self._prepare_labels(labels, batch)
            label_ptr = lentry[2]
        status = self._train_step_fn(handle, entry[2], batch, entry[4], label_ptr, self._loss_ptr)
        if status:
            raise error_for_status(status)
        return self._loss.value

    def fit(self, data: Any, steps: int, batch_size: int = 256, *, labels: Any = None, seed: int = 0,
            progress: bool = True, lr_schedule: Callable[[int], float] | None = None) -> np.ndarray:
        """Trains for `steps` steps on minibatches drawn (with replacement) from data.

        Args:
            data: (N, *sample_shape) training set.  labels: (N,) class labels or None.
            steps: number of train steps.  batch_size: rows per step.
            seed: seeds the numpy RNG that picks the minibatches.
            progress: show a tqdm bar (silently none if tqdm is not installed).
            lr_schedule: lr_schedule(i) -> learning rate for step i of this call (0-based).
        Returns the float32 (steps,) loss history.
        """
        self._h()
        data = self._batch(data, "data")
        steps = C.as_int(steps, "steps", minimum=0)
        batch_size = C.as_int(batch_size, "batch_size", minimum=1)
        n = data.shape[0]
        flat = data.reshape(n, self._sample_size)
        label_arr = None if labels is None else C.int32_vector(labels, n, "labels")
        rng = np.random.default_rng(seed)
        batch = np.empty((batch_size, self._sample_size), dtype=np.float32)
        batch_labels = None if label_arr is None else np.empty(batch_size, dtype=np.int32)
        losses = np.empty(steps, dtype=np.float32)
        bar = _tqdm(steps, "training") if progress else None
        last_lr = None
        try:
            for i in range(steps):
                index = rng.integers(0, n, batch_size)
                np.take(flat, index, axis=0, out=batch)
                if batch_labels is not None:
                    np.take(label_arr, index, out=batch_labels)
                if lr_schedule is not None:
                    lr = float(lr_schedule(i))
                    if lr != last_lr:
                        self.set_learning_rate(lr)
                        last_lr = lr
                losses[i] = self.train_step(batch, batch_labels)
                if bar is not None and ((i + 1) % 25 == 0 or i + 1 == steps):
                    bar.update(i + 1 - bar.n)
                    bar.set_postfix(loss=f"{losses[max(0, i - 24):i + 1].mean():.4f}", refresh=False)
        finally:
            if bar is not None:
                bar.close()
        return losses

    # ---- Inference -----------------------------------------------------------------

    def predict_eps(self, x_t: Any, t: int, labels: Any = None, guidance_scale: float = 1.0,
                    use_ema: bool = True) -> np.ndarray:
        """ε̂(x_t, t) for a batch x_t (B, *sample_shape) at one timestep t for every row.

        labels: (B,) (or one int) with classifier-free guidance scale w, or None.
        Returns float32 with x_t's shape.
        """
        handle = self._h()
        x = self._batch(x_t, "x_t")
        t = _int32(t, "t")
        label_arr = None if labels is None else C.int32_vector(labels, x.shape[0], "labels", broadcast=True)
        out = np.empty_like(x)
        check(_lib.lib.ddpm_model_predict_eps(handle, C.float_ptr(x), x.shape[0], t, C.int32_ptr(label_arr),
                                              float(guidance_scale), 1 if use_ema else 0, C.float_ptr(out), out.size))
        return out

    def sample(self, n: int, *, method: str = "ddpm", steps: int = 0, eta: float = 0.0, variance: str = "beta",
               clip: Any = None, seed: int = 0, labels: Any = None, guidance_scale: float = 1.0,
               use_ema: bool = True, progress: Any = None, return_trajectory: Any = False):
        """Draws n samples: x_T ~ N(0, I), then reverse steps down to x_0.

        Args:
            n: number of samples.
            method: "ddpm" (ancestral; steps < T gives the respaced sampler) or "ddim".
            steps: reverse steps; 0 = T for DDPM, min(50, T) for DDIM.
            eta: DDIM stochasticity in [0, 1] (0 = deterministic).
            variance: DDPM σ_t²: "beta" (β_t) or "posterior" (β̃_t).
            clip: None, True for (-1, 1), or (lo, hi): clip the predicted x_0 each step.
            seed: seeds x_T and every noise draw (same seed, same samples).
            labels: (n,) class labels or one int (conditional models), None for unconditional.
            guidance_scale: classifier-free guidance w (1 = plain conditional).
            use_ema: sample with the EMA weights (default) or the live ones.
            progress: None, True (tqdm bar) or progress(step, total, t, x) called after each
                step with x the (n, *sample_shape) batch at timestep t (-1 = the final x_0),
                valid during the call; return truthy to cancel (raises CancelledError).
            return_trajectory: False; True for every step; or a list of timesteps to keep.
                Keys are the timestep of each x: T-1 is x_T (the starting noise), -1 the
                final x_0. Timesteps the sampler does not visit are absent.
        Returns (n, *sample_shape) float32; with return_trajectory, (samples, {t: x_t})
        ordered from noisiest to x_0.
        """
        handle = self._h()
        n = C.as_int(n, "n", minimum=1)
        full_shape = (n, *self._sample_shape)
        label_arr = None if labels is None else C.int32_vector(labels, n, "labels", broadcast=True)
        params = C.sample_params(method=method, steps=steps, eta=eta, variance=variance, clip=clip, seed=seed,
                                 guidance_scale=guidance_scale, use_ema=use_ema)
        want_all, wanted = C.trajectory_request(return_trajectory)
        trajectory: dict[int, np.ndarray] = {}
        state = C.CallbackState()
        relay, close_bar = C.progress_relay(state, full_shape, progress, want_all, wanted, "sampling")
        C.attach_progress(params, relay)
        out = np.empty(full_shape, dtype=np.float32)
        try:
            status = _lib.lib.ddpm_model_sample(handle, ctypes.byref(params), C.int32_ptr(label_arr), n,
                                                C.float_ptr(out), out.size)
        finally:
            close_bar()
        state.reraise()
        check(status)
        if want_all or wanted is not None:
            trajectory.update(relay.snapshots if relay else {})
            return out, dict(sorted(trajectory.items(), reverse=True))
        return out

    # ---- Files ---------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Saves the whole model (network, EMA, optimizer, RNG, schedule, config) as one
        safetensors file; written atomically (temporary file renamed over path)."""
        check(_lib.lib.ddpm_model_save(self._h(), os.fsencode(os.fspath(path))))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Model":
        """Loads a model written by `save`; training resumes exactly where it stopped."""
        handle = _lib.ddpm_model_p()
        check(_lib.lib.ddpm_model_load(os.fsencode(os.fspath(path)), ctypes.byref(handle)))
        model = cls.__new__(cls)
        model._adopt(handle)
        return model


def _tqdm(total: int, desc: str):
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, leave=False)


# The constructor's defaults come from the library, so they cannot drift from
# ddpm_model_params_default(); help(Model) shows the actual values.
Model.__init__.__kwdefaults__.update(Model.default_params())
