"""Python numbers checked and converted for a C call: an exact int within its C type's range
(ctypes would silently keep only the low bits of a larger one), or a real number as a float.
Range and finiteness of floats are the library's to check.
"""

from __future__ import annotations

import numbers
import operator
from typing import Any

import numpy as np

from .errors import ArgumentTypeError, InvalidArgumentError

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
INT64_MAX = 2**63 - 1
UINT64_MAX = 2**64 - 1


def as_int(value: Any, what: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """An exact Python int (numpy integers accepted, floats, strings and bools refused with
    ArgumentTypeError), optionally within [minimum, maximum] (InvalidArgumentError)."""
    if isinstance(value, (bool, np.bool_)):
        raise ArgumentTypeError(f"{what} must be an integer (got {value!r})")
    try:
        result = operator.index(value)
    except TypeError:
        raise ArgumentTypeError(f"{what} must be an integer (got {value!r})") from None
    if minimum is not None and result < minimum:
        raise InvalidArgumentError(f"{what} must be >= {minimum} (got {result})")
    if maximum is not None and result > maximum:
        raise InvalidArgumentError(f"{what} must be <= {maximum} (got {result})")
    return result


def as_int32(value: Any, what: str) -> int:
    """as_int within the int32 range."""
    return as_int(value, what, minimum=INT32_MIN, maximum=INT32_MAX)


def as_int64_count(value: Any, what: str) -> int:
    """A count >= 1 that the library takes as int64_t."""
    return as_int(value, what, minimum=1, maximum=INT64_MAX)


def as_seed(value: Any, what: str = "seed") -> int:
    """A seed: an int in 0..2**64-1 (the library takes uint64_t)."""
    return as_int(value, what, minimum=0, maximum=UINT64_MAX)


def as_float(value: Any, what: str) -> float:
    """A real number as a Python float: ints, floats and numpy reals (a 0-d array too);
    bools, strings ("1.5" too), complex numbers and other objects raise ArgumentTypeError."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)):
        return float(value)
    raise ArgumentTypeError(f"{what} must be a number: an int or a float (got {value!r})")
