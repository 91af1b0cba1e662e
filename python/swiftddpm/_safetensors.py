"""A minimal safetensors reader and writer (numpy), for exported weights and for moving
weights in and out of a checkpoint.

    u64 little-endian N | N bytes of JSON header | data region

The header maps each tensor name to {"dtype", "shape", "data_offsets": [begin, end]} (offsets
into the data region) and "__metadata__" to a str -> str map. Only what the library writes
and reads is supported: F32 and F64, little-endian. The library's own reader
(Sources/DDPM/Checkpoint) validates files whole; this one checks what it needs to slice
the data region safely and leaves the rest to it.
"""

from __future__ import annotations

import json
import os
from typing import Mapping

import numpy as np

from .errors import FormatError

_DTYPES = {"F32": np.dtype("<f4"), "F64": np.dtype("<f8")}
_NAMES = {v: k for k, v in _DTYPES.items()}
_MAX_HEADER = 100_000_000  # as the library (and the reference implementation)


def read(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """(tensors by name, metadata) of a safetensors file with F32/F64 tensors."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise FormatError(f"'{os.fspath(path)}' is too short to be a safetensors file")
    n = int.from_bytes(raw[:8], "little")
    if n > min(_MAX_HEADER, len(raw) - 8):
        raise FormatError(f"'{os.fspath(path)}': header length {n} exceeds the file")
    try:
        header = json.loads(raw[8:8 + n])
    except ValueError as e:
        raise FormatError(f"'{os.fspath(path)}': the header is not JSON ({e})") from None
    body = memoryview(raw)[8 + n:]
    metadata = header.pop("__metadata__", None) or {}
    tensors = {}
    for name, info in header.items():
        dtype = _DTYPES.get(info.get("dtype"))
        if dtype is None:
            raise FormatError(f"'{os.fspath(path)}': tensor '{name}' has dtype {info.get('dtype')!r}; "
                              "only F32 and F64 are supported")
        begin, end = info["data_offsets"]
        shape = tuple(int(s) for s in info["shape"])
        if not 0 <= begin <= end <= len(body) or end - begin != dtype.itemsize * int(np.prod(shape, dtype=np.int64)):
            raise FormatError(f"'{os.fspath(path)}': tensor '{name}' has data_offsets {info['data_offsets']} "
                              f"that do not fit shape {list(shape)} in a {len(body)}-byte data region")
        tensors[name] = np.frombuffer(body[begin:end], dtype=dtype).reshape(shape).copy()
    return tensors, dict(metadata)


def write(path: str | os.PathLike, tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None) -> None:
    """Writes tensors (F32 or F64 arrays, any shape) in the given order, with metadata; the
    header is padded with spaces to a multiple of 8 bytes (so the data region is aligned)."""
    header: dict = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    arrays = []
    offset = 0
    for name, value in tensors.items():
        array = np.ascontiguousarray(value)
        if array.dtype.newbyteorder("<") not in _NAMES:
            raise ValueError(f"tensor '{name}' has dtype {array.dtype}; only float32 and float64 are written")
        array = array.astype(array.dtype.newbyteorder("<"), copy=False)
        header[name] = {"dtype": _NAMES[array.dtype], "shape": list(array.shape),
                        "data_offsets": [offset, offset + array.nbytes]}
        offset += array.nbytes
        arrays.append(array)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for array in arrays:
            f.write(array.tobytes())
