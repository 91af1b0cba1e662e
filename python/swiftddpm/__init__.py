"""swiftddpm — Python bindings of SwiftDDPM (libddpm), a CPU DDPM diffusion engine.

    import swiftddpm as sd
    from swiftddpm import datasets

    data = datasets.swiss_roll(10_000)
    with sd.NoiseSchedule.linear(1000) as schedule, sd.Model(schedule, data_dim=2) as model:
        losses = model.fit(data, steps=3000)
        samples = model.sample(1000)

Timesteps are 0-based (t in 0..T-1, as in diffusers). Arrays in and out are numpy
float32 (labels and timesteps int32). Every library failure raises a DDPMError
subclass carrying the library's message.
"""

from __future__ import annotations

from . import _lib
from . import datasets
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
from .model import Model
from .schedule import NoiseSchedule

__version__ = ".".join(map(str, _lib.EXPECTED_VERSION))


def library_version() -> str:
    """The loaded libddpm's version string (ddpm_version_string())."""
    return _lib.lib.ddpm_version_string().decode()


def library_path() -> str:
    """The path of the loaded libddpm."""
    return _lib.lib._name


def set_num_threads(n: int) -> None:
    """Sets the number of threads BLAS uses (n >= 1)."""
    from ._common import as_int

    _check(_lib.lib.ddpm_set_num_threads(as_int(n, "n")))


def get_num_threads() -> int:
    """The number of threads BLAS uses."""
    return int(_lib.lib.ddpm_get_num_threads())


__all__ = [
    "CancelledError",
    "ClosedError",
    "DDPMError",
    "DDPMIOError",
    "FormatError",
    "InternalError",
    "InvalidArgumentError",
    "Model",
    "NoiseSchedule",
    "NonFiniteError",
    "ShapeError",
    "datasets",
    "get_num_threads",
    "library_path",
    "library_version",
    "set_num_threads",
]
