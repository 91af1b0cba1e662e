"""numpy arrays checked and converted for a C call, and the pointers the call takes.

Arrays go to the library as C-contiguous, aligned float32 (int32 for labels, token ids and
timesteps), copied only when needed; their shapes are checked here, before the call, and
their values (finite floats, labels in range) by the library. Only arrays of real numbers
are converted: bool, complex, string and object arrays raise ArgumentTypeError rather than
being silently cast.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import _lib
from ._scalars import INT32_MAX, INT32_MIN, INT64_MAX, as_int
from .errors import ArgumentTypeError, InvalidArgumentError, ShapeError

# dtype kinds that hold real numbers: signed and unsigned integers, floats. Refused: b (bool),
# c (complex), U/S (strings, "1.5" too), O (objects), M/m (dates), V (records).
_REAL_KINDS = "iuf"
_NULL_INT32 = _lib.INT32_P()


def real_array(x: Any, what: str, dtype: Any = np.float32) -> np.ndarray:
    """x as a C-contiguous, aligned array of `dtype` (a copy only when needed)."""
    if not isinstance(x, np.ndarray):
        try:
            x = np.asarray(x)
        except (TypeError, ValueError) as error:  # ragged nested lists
            raise InvalidArgumentError(f"{what} cannot be converted to a {np.dtype(dtype)} array: {error}") from None
    if x.dtype.kind not in _REAL_KINDS:
        raise ArgumentTypeError(f"{what} must hold real numbers (integers or floats); got dtype {x.dtype}"
                                + (" (convert strings with float() first)" if x.dtype.kind in "US" else ""))
    arr = np.ascontiguousarray(x, dtype=dtype)
    return arr if arr.flags.aligned else arr.copy()


def float32_array(x: Any, what: str) -> np.ndarray:
    """x as a C-contiguous float32 array (a copy only when needed); see real_array."""
    return real_array(x, what, np.float32)


def batch_array(x: Any, what: str, sample_shape: tuple[int, ...] | None = None) -> np.ndarray:
    """x as a float32 (B, ...) array with B >= 1.

    With sample_shape, the trailing dimensions must equal it or be its flattened size.
    """
    arr = float32_array(x, what)
    if arr.ndim < 1 or arr.shape[0] < 1:
        raise ShapeError(f"{what} must be a non-empty batch (B, ...); got shape {arr.shape}")
    if sample_shape is not None:
        trailing = arr.shape[1:]
        if trailing != sample_shape and trailing != (math.prod(sample_shape),):
            raise ShapeError(
                f"{what} must have shape (B, {', '.join(map(str, sample_shape))})"
                f"{'' if len(sample_shape) == 1 else f' or (B, {math.prod(sample_shape)})'}; got {arr.shape}"
            )
    return arr


def int32_vector(values: Any, length: int, what: str, *, broadcast: bool = False) -> np.ndarray:
    """values as a C-contiguous int32 array of shape (length,).

    A scalar is repeated when broadcast is True. Non-integer dtypes raise ArgumentTypeError,
    values outside int32 InvalidArgumentError; a wrong length raises ShapeError.
    """
    arr = np.asarray(values)
    if arr.dtype.kind not in "iu":
        raise ArgumentTypeError(f"{what} must hold integers (got dtype {arr.dtype})")
    if arr.ndim == 0 and broadcast:
        arr = np.full(length, arr, dtype=arr.dtype)
    if arr.shape != (length,):
        raise ShapeError(f"{what} must have shape ({length},){' or be a scalar' if broadcast else ''}; got {arr.shape}")
    if arr.size and (arr.min() < INT32_MIN or arr.max() > INT32_MAX):
        raise InvalidArgumentError(f"{what} has values outside the int32 range")
    return np.ascontiguousarray(arr, dtype=np.int32)


def shape_tuple(shape: Any) -> tuple[int, ...]:
    """One sample's shape as a tuple of ints >= 1 (an int is a 1-D shape)."""
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (int(shape),)
    try:
        result = tuple(as_int(s, "shape entries", minimum=1) for s in shape)
    except TypeError:
        raise InvalidArgumentError(f"shape must be an int or a tuple of ints (got {shape!r})") from None
    if not result:
        raise InvalidArgumentError("shape must have at least one dimension")
    return result


def same_shape(arr: np.ndarray, like: np.ndarray, what: str, like_what: str) -> None:
    if arr.shape != like.shape:
        raise ShapeError(f"{what} has shape {arr.shape} but {like_what} has shape {like.shape}; they must match")


def elements(n: int, shape: tuple[int, ...]) -> int:
    """prod(shape), checked with n·prod(shape) against int64 (ctypes would wrap a larger value)."""
    dim = math.prod(shape)
    if dim > INT64_MAX or n * dim > INT64_MAX:
        raise InvalidArgumentError(f"{n} samples of shape {shape} have more elements than int64 can count")
    return dim


# ---- Pointers ----------------------------------------------------------------------------
# The array must outlive the call that gets its pointer: keep a reference until it returns.

def float_ptr(arr: np.ndarray):
    """float * to a float32 array's data."""
    return arr.ctypes.data_as(_lib.FLOAT_P)


def int32_ptr(arr: np.ndarray | None):
    """int32_t * to an int32 array's data, or NULL for None."""
    return _NULL_INT32 if arr is None else arr.ctypes.data_as(_lib.INT32_P)


def null_float_ptr():
    """A NULL float *."""
    return _lib.FLOAT_P()


def from_pointer(ptr, count: int) -> np.ndarray:
    """A (count,) numpy view of memory the library owns (valid only as long as it says)."""
    return np.ctypeslib.as_array(ptr, shape=(count,))
