"""Option names as the C enums they stand for: Python takes "ddim", the library
DDPM_METHOD_DDIM. One table per enum of include/ddpm.h that a keyword option names (the
configs' enum fields have theirs in config.py), and the two lookups.
"""

from __future__ import annotations

from . import _lib
from .errors import InvalidArgumentError

METHODS = {"ddpm": _lib.DDPM_METHOD_DDPM, "ddim": _lib.DDPM_METHOD_DDIM, "dpm_solver++": _lib.DDPM_METHOD_DPM_SOLVER_PP,
           "sde_dpm_solver++": _lib.DDPM_METHOD_SDE_DPM_SOLVER_PP, "langevin": _lib.DDPM_METHOD_LANGEVIN,
           "pc": _lib.DDPM_METHOD_PC,  # ddpm_method
           # the header's names (DDPM_METHOD_DPM_SOLVER_PP), which the command line and the
           # library's messages use, are accepted as well; enum_name gives the names above
           "dpm_solver_pp": _lib.DDPM_METHOD_DPM_SOLVER_PP, "sde_dpm_solver_pp": _lib.DDPM_METHOD_SDE_DPM_SOLVER_PP}
SPACINGS = {"default": _lib.DDPM_SPACING_DEFAULT, "leading": _lib.DDPM_SPACING_LEADING,
            "trailing": _lib.DDPM_SPACING_TRAILING, "linspace": _lib.DDPM_SPACING_LINSPACE,
            "karras": _lib.DDPM_SPACING_KARRAS, "dpm_leading": _lib.DDPM_SPACING_DPM_LEADING,
            "dpm_linspace": _lib.DDPM_SPACING_DPM_LINSPACE}  # ddpm_spacing
VARIANCES = {"beta": _lib.DDPM_VARIANCE_BETA, "posterior": _lib.DDPM_VARIANCE_POSTERIOR,
             "learned": _lib.DDPM_VARIANCE_LEARNED}  # ddpm_variance
OUTPUTS = {"eps": _lib.DDPM_OUTPUT_EPS, "x0": _lib.DDPM_OUTPUT_X0, "v": _lib.DDPM_OUTPUT_V}  # ddpm_output of a model
PREDICTIONS = {**OUTPUTS, "score": _lib.DDPM_OUTPUT_SCORE, "variance": _lib.DDPM_OUTPUT_VARIANCE}  # Model.predict
DECODERS = {"continuous": _lib.DDPM_DECODER_CONTINUOUS, "discretized": _lib.DDPM_DECODER_DISCRETIZED}  # ddpm_decoder


def enum_value(table: dict[str, int], value: str, what: str) -> int:
    """Maps an option name ("ddim") to its enum value; raises InvalidArgumentError."""
    if isinstance(value, str) and value.lower() in table:
        return table[value.lower()]
    raise InvalidArgumentError(f"{what} must be one of {sorted(table)} (got {value!r})")


def enum_name(table: dict[str, int], value: int) -> str:
    """The name of an enum value (its number as text if the table has none)."""
    for name, v in table.items():
        if v == value:
            return name
    return str(value)
