"""A minimal safetensors reader and writer (numpy), for exported weights and for moving
weights in and out of a checkpoint.

    u64 little-endian N | N bytes of JSON header | data region

The header maps each tensor name to {"dtype", "shape", "data_offsets": [begin, end]} (offsets
into the data region) and "__metadata__" to a str -> str map. Only what the library writes
and reads is supported: F32 and F64, little-endian. Both sides keep the library's rules
(Sources/DDPM/Checkpoint): a regular file of bounded size is read (_files.py), the header is
checked whole (JSON without duplicate keys, exactly dtype, shape of at most 8 dimensions and
data_offsets per tensor, the tensors tiling the data region), the CRC-32C of the data region
under "data_crc32c" is verified when present and always written; files are written
atomically. Anything malformed is a FormatError.
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping

import numpy as np

from . import _files
from .errors import FormatError

_DTYPES = {"F32": np.dtype("<f4"), "F64": np.dtype("<f8")}
_NAMES = {v: k for k, v in _DTYPES.items()}
_MAX_HEADER = 100_000_000  # as the library (and the reference implementation)
_MAX_FILE = 1 << 36  # 64 GiB, as the library
MAX_RANK = 8  # as the library
CHECKSUM_KEY = "data_crc32c"


# ---- CRC-32C (Castagnoli, reflected 0x82F63B78), as the library's SafeTensors.swift ---------
# Byte-serial in pure Python would take seconds for a few MB, so the data is cut into lanes of
# _LANE bytes whose raw CRCs (from state 0) numpy computes side by side, one byte position at a
# time; CRC linearity then joins them in order: crc(A‖B) = shift_|B|(crc(A)) ⊕ crc₀(B), where
# shift_L feeds L zero bytes, a GF(2)-linear map applied through 4 byte tables.

_POLY = 0x82F63B78
_LANE = 4096


def _byte_table() -> np.ndarray:
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(_POLY), table >> 1).astype(np.uint32)
    return table  # (256,) CRC of byte b


_TABLE = _byte_table()
_TABLE_LIST = _TABLE.tolist()
_shift_tables: list[list[int]] = []


def _zero_shift() -> list[list[int]]:
    """4 tables: shift_LANE(s) = Z0[s & 255] ^ Z1[s >> 8 & 255] ^ Z2[s >> 16 & 255] ^ Z3[s >> 24]."""
    if not _shift_tables:
        v = (np.arange(256, dtype=np.uint32)[None, :] << (8 * np.arange(4, dtype=np.uint32))[:, None]).ravel()
        for _ in range(_LANE):
            v = _TABLE[v & 0xFF] ^ (v >> 8)
        _shift_tables.extend(v.reshape(4, 256).tolist())
    return _shift_tables


def crc32c(data: bytes | memoryview | np.ndarray, crc: int = 0) -> int:
    """CRC-32C of data, continuing `crc` (start with 0), as the library computes it."""
    view = np.frombuffer(data, dtype=np.uint8)
    state = crc ^ 0xFFFFFFFF
    lanes = view.size // _LANE
    if lanes:
        columns = view[: lanes * _LANE].reshape(lanes, _LANE).T.copy()  # (LANE, lanes): position-major
        raw = np.zeros(lanes, dtype=np.uint32)
        for row in columns:
            raw = _TABLE[(raw ^ row) & 0xFF] ^ (raw >> 8)
        z0, z1, z2, z3 = _zero_shift()
        for lane_crc in raw.tolist():
            state = z0[state & 0xFF] ^ z1[(state >> 8) & 0xFF] ^ z2[(state >> 16) & 0xFF] ^ z3[state >> 24] ^ lane_crc
    for b in view[lanes * _LANE:].tolist():
        state = _TABLE_LIST[(state ^ b) & 0xFF] ^ (state >> 8)
    return state ^ 0xFFFFFFFF


# ---- Reading ------------------------------------------------------------------------------

def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def read(path: str | os.PathLike, *, verify: bool = True) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """(tensors by name, metadata without the checksum key) of a safetensors file of F32/F64
    tensors. DDPMIOError if it cannot be read or is not a regular file; FormatError if it
    breaks any rule of the format. verify=False skips the checksum (for a file the library
    has just written into a private temporary folder)."""
    name = os.fspath(path)
    raw = _files.read_regular(path, _MAX_FILE, "safetensors file")

    def bad(message: str) -> FormatError:
        return FormatError(f"'{name}': {message}")

    if len(raw) < 8:
        raise bad("too short to be a safetensors file")
    n = int.from_bytes(raw[:8], "little")
    if n > min(_MAX_HEADER, len(raw) - 8):
        raise bad(f"header length {n} exceeds the file or the limit of {_MAX_HEADER} bytes")
    try:
        header = json.loads(raw[8:8 + n].decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (ValueError, RecursionError) as e:
        raise bad(f"the header is not valid JSON ({e})") from None
    if not isinstance(header, dict):
        raise bad("the header is not a JSON object")
    body = memoryview(raw)[8 + n:]
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise bad("'__metadata__' is not an object of strings")
    entries = []
    for tensor, info in header.items():
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise bad(f"tensor '{tensor}' is not exactly {{dtype, shape, data_offsets}}")
        dtype, shape, offsets = _DTYPES.get(info["dtype"]) if isinstance(info["dtype"], str) else None, \
            info["shape"], info["data_offsets"]
        if dtype is None:
            raise bad(f"tensor '{tensor}' has dtype {info['dtype']!r}; only F32 and F64 are supported")
        if not isinstance(shape, list) or len(shape) > MAX_RANK or not all(_integer(d) and d >= 0 for d in shape):
            raise bad(f"tensor '{tensor}' has shape {shape!r}: not a list of at most {MAX_RANK} integers >= 0")
        if not isinstance(offsets, list) or len(offsets) != 2 or not all(_integer(o) for o in offsets):
            raise bad(f"tensor '{tensor}' has data_offsets {offsets!r}: not two integers")
        begin, end = offsets
        size = dtype.itemsize * int(np.prod(shape, dtype=object))  # Python integers: no overflow
        if not 0 <= begin <= end <= len(body) or end - begin != size:
            raise bad(f"tensor '{tensor}' has data_offsets {offsets} that do not fit shape {shape} "
                      f"in a {len(body)}-byte data region")
        entries.append((begin, end, tensor, dtype, shape))
    covered = 0
    for begin, end, tensor, _, _ in sorted(entries):
        if begin != covered:
            raise bad(f"tensor '{tensor}' starts at {begin}: the tensors must tile the data region (next byte {covered})")
        covered = end
    if covered != len(body):
        raise bad(f"{len(body) - covered} bytes after the last tensor")
    stored = metadata.pop(CHECKSUM_KEY, None)
    if verify and stored is not None and stored != f"{crc32c(body):08x}":
        raise bad(f"the tensor data is corrupted: its CRC-32C is not the {CHECKSUM_KEY} {stored!r} the file records")
    tensors = {tensor: np.frombuffer(body[begin:end], dtype=dtype).reshape(shape).copy()
               for begin, end, tensor, dtype, shape in entries}
    return tensors, dict(metadata)


# ---- Writing ------------------------------------------------------------------------------

def write(path: str | os.PathLike, tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None) -> None:
    """Writes tensors (F32 or F64 arrays, at most 8 dimensions) in the given order, with
    metadata and the data's CRC-32C, atomically; the header is padded with spaces to a
    multiple of 8 bytes (so the data region is aligned)."""
    header: dict = {}
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    arrays = []
    offset = 0
    crc = 0
    entries = {}
    for name, value in tensors.items():
        array = np.ascontiguousarray(value)
        if array.dtype.newbyteorder("<") not in _NAMES:
            raise ValueError(f"tensor '{name}' has dtype {array.dtype}; only float32 and float64 are written")
        if array.ndim > MAX_RANK:
            raise ValueError(f"tensor '{name}' has {array.ndim} dimensions, more than {MAX_RANK}")
        array = array.astype(array.dtype.newbyteorder("<"), copy=False)
        entries[name] = {"dtype": _NAMES[array.dtype], "shape": list(array.shape),
                         "data_offsets": [offset, offset + array.nbytes]}
        offset += array.nbytes
        crc = crc32c(array.reshape(-1).view(np.uint8), crc)
        arrays.append(array)
    meta[CHECKSUM_KEY] = f"{crc:08x}"
    header["__metadata__"] = meta
    header.update(entries)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    chunks = [len(text).to_bytes(8, "little"), text, *(a.reshape(-1).view(np.uint8) for a in arrays)]
    _files.write_atomic(path, chunks, "safetensors file")
