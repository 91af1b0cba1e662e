"""_lib.py is a one-to-one mirror of include/ddpm.h: checked by parsing the header."""

from __future__ import annotations

import ctypes
import re

import pytest

import swiftddpm as sd
from swiftddpm import _lib

from conftest import HEADER

C_TYPES = {
    "size_t": ctypes.c_size_t,
    "int32_t": ctypes.c_int32,
    "int64_t": ctypes.c_int64,
    "uint64_t": ctypes.c_uint64,
    "double": ctypes.c_double,
    "float": ctypes.c_float,
    "int": ctypes.c_int,
}


def header_text() -> str:
    text = HEADER.read_text()
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)  # drop comments
    return re.sub(r"//[^\n]*", "", text)


def header_structs() -> dict[str, list[tuple[str, str, int]]]:
    """{struct name: [(C type, field name, array length or 0), ...]} in declaration order."""
    structs = {}
    for name, body in re.findall(r"typedef struct (\w+) \{(.*?)\}\s*\w+;", header_text(), flags=re.S):
        fields = []
        for decl in body.split(";"):
            decl = " ".join(decl.split())
            if not decl:
                continue
            m = re.match(r"((?:const )?\w+(?: \*)?)\s*(.*)", decl.replace("*", " * ").replace("  ", " "))
            ctype, names = m.group(1).strip(), m.group(2)
            for raw in names.split(","):
                raw = raw.strip()
                if raw.startswith("*"):
                    ctype, raw = ctype + " *", raw[1:].strip()
                arr = re.match(r"(\w+)\[(\d+)\]", raw)
                fields.append((ctype, arr.group(1), int(arr.group(2))) if arr else (ctype, raw, 0))
        structs[name] = fields
    return structs


def header_functions() -> dict[str, tuple[str, int]]:
    """{function name: (return type, number of parameters)} for every prototype in the header."""
    funcs = {}
    pattern = r"^((?:const )?\w+(?: \*)?)\s*\*?\s*(ddpm_\w+)\s*\(([^()]*)\)\s*;"
    for line_ret, name, args in re.findall(pattern, header_text(), flags=re.M):
        args = args.strip()
        funcs[name] = (line_ret.strip(), 0 if args in ("", "void") else len(args.split(",")))
    return funcs


def test_library_version_matches_package():
    assert _lib.lib.ddpm_version_number() == _lib.EXPECTED_VERSION_NUMBER == 100
    assert sd.library_version() == sd.__version__ == "0.1.0"
    header_version = tuple(int(re.search(rf"#define DDPM_VERSION_{part} (\d+)", HEADER.read_text()).group(1))
                           for part in ("MAJOR", "MINOR", "PATCH"))
    assert header_version == _lib.EXPECTED_VERSION


def test_every_enum_constant_matches_the_header():
    constants = re.findall(r"\b(DDPM_[A-Z0-9_]+)\s*=\s*(\d+)", header_text())
    assert len(constants) >= 25
    for name, value in constants:
        assert getattr(_lib, name) == int(value), name


@pytest.mark.parametrize("struct", ["ddpm_schedule_params", "ddpm_sample_params", "ddpm_model_params"])
def test_struct_fields_match_the_header_in_order(struct):
    fields = header_structs()[struct]
    mirror = getattr(_lib, struct)._fields_
    assert [f[1] for f in fields] == [m[0] for m in mirror]
    for (ctype, name, length), (_, mtype) in zip(fields, mirror):
        if length:
            assert mtype._type_ is C_TYPES[ctype] and mtype._length_ == length, name
        elif ctype in C_TYPES:
            assert mtype is C_TYPES[ctype], name
        elif ctype == "ddpm_progress_fn":
            assert mtype is _lib.ddpm_progress_fn
        else:
            assert ctype == "void *" and mtype is ctypes.c_void_p, name


@pytest.mark.parametrize("struct", ["schedule", "sample", "model"])
def test_struct_size_agrees_with_the_library(struct):
    params = getattr(_lib, f"{struct}_params_default")()
    assert params.struct_size == ctypes.sizeof(getattr(_lib, f"ddpm_{struct}_params"))


def test_every_function_is_bound_with_the_header_arity():
    funcs = header_functions()
    assert len(funcs) >= 30
    returns = {"int": ctypes.c_int, "int64_t": ctypes.c_int64, "void": None, "const char *": ctypes.c_char_p}
    for name, (ret, arity) in funcs.items():
        fn = getattr(_lib.lib, name)
        assert fn.argtypes is not None, f"{name} has no argtypes"
        assert len(fn.argtypes) == arity, name
        expected = getattr(_lib, ret) if ret.endswith("_params") else returns[ret]
        assert fn.restype is expected, (name, ret)


def test_each_binding_carries_its_prototype_comment():
    source = (_lib.__file__ and open(_lib.__file__).read())
    for name in header_functions():
        assert re.search(rf"^# .*\b{name}\(", source, flags=re.M), name


def test_status_strings_and_empty_last_error():
    assert _lib.status_string(_lib.DDPM_OK) == "ok"
    for status in range(1, 8):
        assert _lib.status_string(status) not in ("", "unknown status")
    assert isinstance(_lib.last_error(), str)


def test_loader_error_lists_every_path(monkeypatch, tmp_path):
    missing = tmp_path / "nope" / "libddpm.so"
    monkeypatch.setenv("SWIFTDDPM_LIBRARY", str(missing))
    monkeypatch.setattr(_lib.Path, "is_file", lambda self: False)
    with pytest.raises(OSError) as info:
        _lib.load_library()
    message = str(info.value)
    for path in _lib.candidate_paths():
        assert str(path) in message
    assert str(missing) in message and ".build" in message


def test_threads_round_trip():
    sd.set_num_threads(1)
    assert sd.get_num_threads() == 1
    with pytest.raises(sd.InvalidArgumentError, match="thread"):
        sd.set_num_threads(0)
