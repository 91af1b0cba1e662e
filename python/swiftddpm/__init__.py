"""swiftddpm — Python bindings of SwiftDDPM (libddpm), a CPU DDPM diffusion engine.

    import swiftddpm as sd
    from swiftddpm import datasets

    data = datasets.swiss_roll(10_000)
    with sd.NoiseSchedule.linear(1000) as schedule, \
            sd.Model(schedule, network=sd.MLPConfig(data_dim=2), train=sd.TrainConfig(learning_rate=2e-3)) as model:
        losses = model.fit(data, steps=3000)
        samples = model.sample(1000)

Configs (config.py) mirror the C params structs one to one: MLPConfig, UNetConfig,
TrainConfig, Conditioning, ScheduleConfig. Sampler steps a reverse process from outside
(a diffusers-style scheduler) with your own model outputs.

Timesteps are 0-based (t in 0..T-1, as in diffusers). Arrays in and out are numpy
float32 (labels and timesteps int32). Every library failure raises a DDPMError
subclass carrying the library's message.
"""

from __future__ import annotations

from . import _lib
from . import datasets
from . import diffusers
from .errors import (
    CancelledError,
    ClosedError,
    DDPMError,
    DDPMIOError,
    FormatError,
    InternalError,
    InvalidArgumentError,
    NonFiniteError,
    ShapeError,
    check as _check,
)
from .config import Conditioning, MLPConfig, ScheduleConfig, TrainConfig, UNetConfig
from ._likelihood import Likelihood
from ._scalars import as_int32 as _as_int32
from .model import Model
from .sampler import Sampler, Scheduler
from .schedule import NoiseSchedule

__version__ = ".".join(map(str, _lib.EXPECTED_VERSION))


def library_version() -> str:
    """The loaded libddpm's version string (ddpm_version_string())."""
    return _lib.lib.ddpm_version_string().decode()


def library_path() -> str:
    """The path of the loaded libddpm."""
    return _lib.lib._name


def set_num_threads(n: int) -> None:
    """Sets the number of threads the library splits its work over (n >= 1); results are
    bitwise the same for any n (fixed chunks, see ddpm_set_num_threads in ddpm.h)."""
    _check(_lib.lib.ddpm_set_num_threads(_as_int32(n, "n")))  # C int: a larger n would wrap


def get_num_threads() -> int:
    """The number of threads the library splits its work over."""
    return int(_lib.lib.ddpm_get_num_threads())


__all__ = [
    "CancelledError",
    "ClosedError",
    "Conditioning",
    "DDPMError",
    "DDPMIOError",
    "FormatError",
    "InternalError",
    "InvalidArgumentError",
    "MLPConfig",
    "Model",
    "NoiseSchedule",
    "NonFiniteError",
    "Likelihood",
    "Sampler",
    "Scheduler",
    "ScheduleConfig",
    "ShapeError",
    "TrainConfig",
    "UNetConfig",
    "datasets",
    "get_num_threads",
    "library_path",
    "library_version",
    "set_num_threads",
]
