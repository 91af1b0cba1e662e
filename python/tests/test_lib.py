"""_lib.py is a one-to-one mirror of include/ddpm.h: checked by parsing the header."""

from __future__ import annotations

import ctypes
import re

import pytest

import swiftddpm as sd
from swiftddpm import _lib

from conftest import HEADER, VERSION_HEADER

C_TYPES = {
    "size_t": ctypes.c_size_t,
    "int32_t": ctypes.c_int32,
    "uint32_t": ctypes.c_uint32,
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


def header_defines() -> dict[str, int]:
    """{macro: value} for every integer #define of the header."""
    return {name: int(value) for name, value in re.findall(r"^#define (\w+) (\d+)\s*$", header_text(), flags=re.M)}


def header_structs() -> dict[str, list[tuple[str, str, int]]]:
    """{struct name: [(C type, field name, array length or 0), ...]} in declaration order."""
    defines = header_defines()
    structs = {}
    for name, body in re.findall(r"typedef struct (\w+) \{(.*?)\}\s*\w+;", header_text(), flags=re.S):
        # An anonymous union is mirrored as its first member (its other names are properties).
        body = re.sub(r"union\s*\{\s*([^;]*;)[^}]*\}\s*;", r"\1", body)
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
                arr = re.match(r"(\w+)\[(\w+)\]", raw)
                length = arr and (int(arr.group(2)) if arr.group(2).isdigit() else defines[arr.group(2)])
                fields.append((ctype, arr.group(1), length) if arr else (ctype, raw, 0))
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
    assert _lib.lib.ddpm_version_number() == _lib.EXPECTED_VERSION_NUMBER == 300
    assert sd.library_version() == sd.__version__ == "0.3.0"


@pytest.mark.skipif(not VERSION_HEADER.is_file(), reason="no include/ddpm_version.h (an installed package)")
def test_expected_version_is_the_version_header():
    # ddpm_version.h is the one version source: _lib.EXPECTED_VERSION must restate it.
    text = VERSION_HEADER.read_text()
    header_version = tuple(int(re.search(rf"^#define DDPM_VERSION_{part} (\d+)", text, flags=re.M).group(1))
                           for part in ("MAJOR", "MINOR", "PATCH"))
    assert header_version == _lib.EXPECTED_VERSION


def test_every_enum_constant_and_define_matches_the_header():
    constants = re.findall(r"\b(DDPM_[A-Z0-9_]+)\s*=\s*(\d+)", header_text())
    assert len(constants) >= 33
    for name, value in constants:
        assert getattr(_lib, name) == int(value), name
    defines = header_defines()
    assert "DDPM_UNET_MAX_LEVELS" in defines
    for name, value in defines.items():
        assert getattr(_lib, name) == value, name


def test_every_struct_of_the_header_is_mirrored():
    structs = header_structs()
    assert set(structs) == {"ddpm_schedule_params", "ddpm_sample_params", "ddpm_network_params", "ddpm_mlp_params",
                            "ddpm_unet_params", "ddpm_train_params", "ddpm_cond_params", "ddpm_cond_batch", "ddpm_predict_params",
                            "ddpm_vlb_params"}
    for name in structs:
        assert issubclass(getattr(_lib, name), ctypes.Structure), name


@pytest.mark.parametrize("struct", sorted(header_structs()))
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
        elif ctype == "ddpm_network_params":
            assert mtype is _lib.ddpm_network_params
        elif ctype == "const int32_t *":
            assert mtype is ctypes.POINTER(ctypes.c_int32), name
        elif ctype == "const float *":
            assert mtype is ctypes.POINTER(ctypes.c_float), name
        else:
            assert ctype == "void *" and mtype is ctypes.c_void_p, name


@pytest.mark.parametrize("struct", ["schedule", "sample", "mlp", "unet", "train", "cond", "predict"])
def test_struct_size_agrees_with_the_library(struct):
    params = getattr(_lib.lib, f"ddpm_{struct}_params_default")()
    size = params.base.struct_size if struct in ("mlp", "unet") else params.struct_size
    assert size == ctypes.sizeof(getattr(_lib, f"ddpm_{struct}_params"))


def test_every_function_is_bound_with_the_header_arity():
    funcs = header_functions()
    assert len(funcs) >= 45
    bound = {name for name in dir(_lib.lib) if name.startswith("ddpm_")}  # CDLL keeps what was looked up
    assert bound <= set(funcs), bound - set(funcs)
    returns = {"int": ctypes.c_int, "int32_t": ctypes.c_int32, "int64_t": ctypes.c_int64, "void": None,
               "const char *": ctypes.c_char_p}
    for name, (ret, arity) in funcs.items():
        fn = getattr(_lib.lib, name)
        assert fn.argtypes is not None, f"{name} has no argtypes"
        assert len(fn.argtypes) == arity, name
        expected = getattr(_lib, ret) if ret.endswith(("_params", "_batch")) else returns[ret]
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
