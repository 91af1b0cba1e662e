"""Reading a PyTorch zip checkpoint (torch.save's default since 1.6) as numpy, without torch
and without running its pickle: the state_dict of a diffusers `diffusion_pytorch_model.bin`.

    <archive>/data.pkl        pickle of the state_dict (protocol 2)
    <archive>/data/<key>      the raw bytes of storage <key>, little-endian (<archive>/byteorder)
    <archive>/version, ...    ignored

data.pkl is read by a restricted Unpickler. find_class gives only what a state_dict needs:
collections.OrderedDict, torch._utils._rebuild_tensor_v2 / _rebuild_tensor (our own functions
of the same arguments) and torch.<Dtype>Storage as dtype markers; any other global (os.system,
torch.storage._load_from_bytes, ...) is a FormatError naming it, raised when the pickle names
it, before anything could call it. persistent_load maps ('storage', <Dtype>Storage, key,
location, numel) to the numpy buffer of member data/<key>, stored uncompressed and exactly
numel * itemsize bytes. A tensor is (storage, offset, size, stride): offset, sizes and strides
are non-negative integers (at most 8 dimensions) with offset + Σ (size_i − 1)·stride_i inside
the storage, checked before np.lib.stride_tricks.as_strided views it; the view is then copied
to a contiguous array (floating point as float32: fp16, bf16 and fp64 converted; integers and
bools keep their type). The file is read under the package's rules (_files.py: a regular file
of bounded size). The legacy non-zip format (torch < 1.6, a bare pickle stream) is refused.
Anything malformed is a FormatError.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import zipfile
from typing import Any

import numpy as np

from . import _files
from .errors import FormatError

_MAX_FILE = 1 << 36  # 64 GiB, as _safetensors
_MAX_PICKLE = 1 << 28  # data.pkl of a state_dict is small (names and tuples)
MAX_RANK = 8

# torch.<name> storage class → (numpy dtype of its bytes, whether it is bfloat16 in uint16 bits)
_STORAGES = {
    "FloatStorage": np.dtype("<f4"), "DoubleStorage": np.dtype("<f8"), "HalfStorage": np.dtype("<f2"),
    "BFloat16Storage": np.dtype("<u2"), "LongStorage": np.dtype("<i8"), "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"), "CharStorage": np.dtype("i1"), "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


class _Inert:
    """Objects the pickle can hold but never alter (BUILD on them is refused)."""
    __slots__ = ()

    def __setstate__(self, state: Any) -> None:
        raise FormatError("the pickle sets the state of a tensor or storage")


class _StorageType(_Inert):
    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name


class _Storage(_Inert):
    __slots__ = ("data", "name")

    def __init__(self, data: np.ndarray, name: str):
        self.data, self.name = data, name  # (numel,) of the storage's dtype


class _Tensor(_Inert):
    __slots__ = ("array",)

    def __init__(self, array: np.ndarray):
        self.array = array


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _rebuild(storage: Any, offset: Any, size: Any, stride: Any, *_rest: Any) -> _Tensor:
    """torch._utils._rebuild_tensor(_v2)(storage, storage_offset, size, stride, [requires_grad,
    backward_hooks, metadata]): the checked strided view, copied."""
    if not isinstance(storage, _Storage):
        raise FormatError("a tensor is rebuilt from something that is not a storage")
    if not (isinstance(size, tuple) and isinstance(stride, tuple) and len(size) == len(stride) <= MAX_RANK
            and all(_is_int(d) and d >= 0 for d in size + stride) and _is_int(offset) and offset >= 0):
        raise FormatError(f"a tensor has offset {offset!r}, size {size!r}, stride {stride!r}: not non-negative "
                          f"integers of the same rank (at most {MAX_RANK})")
    data = storage.data
    numel = 1
    for d in size:
        numel *= d
    last = offset + sum((d - 1) * s for d, s in zip(size, stride)) if numel else offset - 1
    if offset > data.size or last >= data.size:
        raise FormatError(f"a tensor of size {size}, stride {stride} at offset {offset} reaches element {last}, "
                          f"outside its {data.size}-element storage")
    if numel > max(data.size, 1) * 64:  # a stride-0 expansion past any weight's use: refuse the allocation
        raise FormatError(f"a tensor of size {size} has {numel} elements from a {data.size}-element storage")
    item = data.itemsize
    view = np.lib.stride_tricks.as_strided(data[offset:] if numel else data[:0], shape=size,
                                           strides=tuple(s * item for s in stride), writeable=False)
    if storage.name == "BFloat16Storage":  # bfloat16 = the high 16 bits of a float32
        array = (np.array(view, dtype=np.uint32, order="C") << 16).view(np.float32)
    else:  # a C-ordered copy (np.ascontiguousarray would make a 0-d tensor 1-d)
        array = np.array(view, dtype=np.float32 if view.dtype.kind == "f" else view.dtype, order="C")
    return _Tensor(array)


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str, where: str):
        super().__init__(io.BytesIO(data))
        self.archive, self.prefix, self.where = archive, prefix, where
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild
        if module == "torch" and name in _STORAGES:
            return _StorageType(name)
        raise FormatError(f"{self.where}: the pickle names the global {module}.{name}, which a state_dict does "
                          "not need; refused (not executed)")

    def persistent_load(self, pid: Any) -> _Storage:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise FormatError(f"{self.where}: persistent id {pid!r} is not ('storage', type, key, location, numel)")
        _, kind, key, _location, numel = pid
        if not isinstance(kind, _StorageType) or not isinstance(key, str) or not key or "/" in key \
                or not _is_int(numel) or numel < 0:
            raise FormatError(f"{self.where}: malformed storage reference {pid!r}")
        if key in self.storages:
            storage = self.storages[key]
            if storage.name != kind.name or storage.data.size != numel:
                raise FormatError(f"{self.where}: storage {key!r} is referenced with two types or sizes")
            return storage
        dtype = _STORAGES[kind.name]
        member = self.prefix + "data/" + key
        try:
            info = self.archive.getinfo(member)
        except KeyError:
            raise FormatError(f"{self.where}: storage {key!r} has no member {member!r}") from None
        if info.compress_type != zipfile.ZIP_STORED:
            raise FormatError(f"{self.where}: member {member!r} is compressed (torch stores storages uncompressed)")
        if info.file_size != numel * dtype.itemsize:
            raise FormatError(f"{self.where}: member {member!r} is {info.file_size} bytes, not the "
                              f"{numel} × {dtype.itemsize} bytes of its {kind.name}")
        raw = self.archive.read(info)  # file_size bytes, CRC checked by zipfile
        storage = _Storage(np.frombuffer(raw, dtype=dtype), kind.name)
        self.storages[key] = storage
        return storage


def read(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The state_dict of a PyTorch zip checkpoint as {name: contiguous array}. DDPMIOError if
    it cannot be read or is not a regular file; FormatError for the legacy format, a forbidden
    global, or anything malformed."""
    where = f"'{os.fspath(path)}'"
    raw = _files.read_regular(path, _MAX_FILE, "PyTorch checkpoint")
    if not raw.startswith(b"PK"):
        raise FormatError(f"{where} is not a zip: a legacy PyTorch checkpoint (torch < 1.6) is not supported; "
                          "re-save it with torch.save (zip, the default) or convert it to safetensors")
    try:
        archive = zipfile.ZipFile(io.BytesIO(raw))
        names = archive.namelist()
    except (zipfile.BadZipFile, ValueError, EOFError, OSError) as e:
        raise FormatError(f"{where} is not a valid zip ({e})") from None
    with archive:
        pickles = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise FormatError(f"{where} has {len(pickles)} '<archive>/data.pkl' members, not one")
        prefix = pickles[0][: -len("data.pkl")]
        if prefix + "byteorder" in names:
            order = archive.read(prefix + "byteorder")
            if order != b"little":
                raise FormatError(f"{where} is stored {order[:16]!r}-endian; only little-endian is supported")
        info = archive.getinfo(pickles[0])
        if info.file_size > _MAX_PICKLE:
            raise FormatError(f"{where}: data.pkl is {info.file_size} bytes, over the limit of {_MAX_PICKLE}")
        try:
            result = _Unpickler(archive.read(info), archive, prefix, where).load()
        except FormatError:
            raise
        except Exception as e:  # a malformed pickle: UnpicklingError, EOFError, TypeError, ...
            raise FormatError(f"{where}: data.pkl is not a state_dict pickle ({type(e).__name__}: {e})") from None
    if not isinstance(result, dict):
        raise FormatError(f"{where} holds a {type(result).__name__}, not a state_dict")
    tensors = {}
    for name, value in result.items():
        if not isinstance(name, str) or not isinstance(value, _Tensor):
            raise FormatError(f"{where}: entry {name!r} is not a named tensor")
        tensors[name] = value.array
    return tensors
