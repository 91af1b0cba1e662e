"""A condition given in Python (labels, vectors, sequences, token ids) as the
ddpm_cond_batch the library reads, for a model with a given Conditioning.

Shapes are checked here; values (labels in 0..K, ids in 0..V-1, lengths, finite floats) by
the library. The arrays the batch points into are returned beside it: keep them until the
call has returned.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

from . import _lib
from ._arrays import float_ptr, int32_vector
from ._scalars import INT32_MAX, INT32_MIN
from .errors import ArgumentTypeError, InvalidArgumentError, ShapeError


def cond_batch(conditioning: Any, cond: Any, labels: Any, rows: int, lengths: Any = None) -> tuple:
    """(ddpm_cond_batch or None, (values, lengths) arrays it points into) for `rows` rows of
    a model with the given Conditioning. cond and labels are aliases (give one):
      classes:  labels (rows,) or one int
      vector:   floats (rows, dim) or one (dim,) vector
      sequence: floats (rows, max_length, dim), lengths (rows,) in 0..max_length (None: full)
      tokens:   ints (rows, max_length); lengths derived (0 = padding: a row's length ends at
                its last nonzero id) unless given
    or None (the null condition).
    """
    if cond is not None and labels is not None:
        raise InvalidArgumentError("give the condition as cond= or as labels=, not both")
    value = cond if cond is not None else labels
    kind = conditioning.kind
    if lengths is not None and kind not in ("sequence", "tokens"):
        raise InvalidArgumentError(f"lengths= is for sequence and token conditioning (this model's is {kind!r})")
    if value is None:
        if lengths is not None:
            raise InvalidArgumentError("lengths= was given without a condition")
        return None, (None, None)
    batch = _lib.lib.ddpm_cond_batch_default()
    arr = np.asarray(value)
    if kind in ("vector", "sequence"):
        shape = (rows, conditioning.dim) if kind == "vector" else (rows, conditioning.max_length, conditioning.dim)
        if arr.dtype.kind not in "fiu":
            raise ArgumentTypeError(f"cond must hold numbers (got dtype {arr.dtype})")
        if arr.shape == shape[1:]:
            arr = np.broadcast_to(arr, shape)
        if arr.shape != shape:
            what = "one vector of" if kind == "vector" else f"up to {conditioning.max_length} vectors of"
            raise ShapeError(f"cond must have shape {shape} ({what} {conditioning.dim} floats per row) or {shape[1:]}; "
                             f"got {arr.shape}")
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        batch.vectors, batch.vectors_count = float_ptr(arr), arr.size
    elif kind == "tokens":
        L = conditioning.max_length
        if arr.dtype.kind not in "iu":
            raise ArgumentTypeError(f"cond must hold integer token ids for a token-conditioned model (got dtype {arr.dtype})")
        if arr.shape == (L,):
            arr = np.broadcast_to(arr, (rows, L))
        if arr.shape != (rows, L):
            raise ShapeError(f"cond must have shape ({rows}, {L}) (token ids, 0 = padding) or ({L},); got {arr.shape}")
        if arr.size and (arr.min() < INT32_MIN or arr.max() > INT32_MAX):
            raise InvalidArgumentError("cond has token ids outside the int32 range")
        arr = np.ascontiguousarray(arr, dtype=np.int32)
        if lengths is None:  # 0 = padding: a row's length ends at its last nonzero id
            nonzero = arr != 0
            lengths = np.where(nonzero.any(axis=1), L - np.argmax(nonzero[:, ::-1], axis=1), 0)
        batch.tokens, batch.tokens_count = arr.ctypes.data_as(_lib.INT32_P), arr.size
    else:
        if arr.dtype.kind == "f" and arr.ndim >= 1:
            raise InvalidArgumentError(f"cond holds float vectors but the model is conditioned on {kind!r}, "
                                       "not vectors (Conditioning.vector(dim))")
        arr = int32_vector(value, rows, "labels", broadcast=True)
        batch.labels = arr.ctypes.data_as(_lib.INT32_P)
        return batch, (arr, None)
    if lengths is not None:
        lengths = int32_vector(lengths, rows, "lengths", broadcast=True)
        batch.lengths = lengths.ctypes.data_as(_lib.INT32_P)
    return batch, (arr, lengths)


def cond_ref(batch: Any):
    """ctypes.byref of a ddpm_cond_batch, or None (NULL)."""
    return None if batch is None else ctypes.byref(batch)
