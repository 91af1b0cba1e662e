"""Model.from_diffusers on a PyTorch zip .bin (issue 21), read without torch (_torch_zip.py).

fixtures/diffusers/unets_bin holds plain_8x8's weights as diffusers saved them before
safetensors (make_fixtures.py: save_pretrained(safe_serialization=False), float32 and float16).
The float32 .bin must give the very bits the safetensors folder gives; the float16 one must
equal the float32 weights to fp16 rounding. Hostile or broken archives are built here by hand
(pickle opcodes, in the same zip layout) and must each be a FormatError: a forbidden global is
refused before it runs (its side effect, a file, must not appear)."""

from __future__ import annotations

import io
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

import swiftddpm as sd
from swiftddpm import _safetensors, _torch_zip
from swiftddpm.errors import FormatError

ROOT = Path(__file__).parent / "fixtures" / "diffusers"
SAFE = ROOT / "unets" / "plain_8x8"
BIN = ROOT / "unets_bin" / "plain_8x8"
BIN16 = ROOT / "unets_bin" / "plain_8x8_fp16"
WEIGHTS = "diffusion_pytorch_model.bin"


def predictions(folder: Path) -> np.ndarray:
    io_ = dict(np.load(SAFE / "io.npz"))
    with sd.Model.from_diffusers(folder) as model:
        return np.concatenate([model.predict(io_["sample"][b:b + 1], int(io_["timesteps"][b]), use_ema=False)
                               for b in range(io_["sample"].shape[0])])


def test_a_bin_folder_predicts_the_same_bits_as_safetensors():
    assert not (BIN / "diffusion_pytorch_model.safetensors").exists()
    ours, reference = predictions(BIN), predictions(SAFE)
    assert ours.dtype == reference.dtype and np.array_equal(ours, reference)


def test_the_bin_weights_equal_the_safetensors_ones():
    bin_, safe = _torch_zip.read(BIN / WEIGHTS), _safetensors.read(SAFE / "diffusion_pytorch_model.safetensors")[0]
    assert bin_.keys() == safe.keys()
    for name in safe:
        assert bin_[name].dtype == np.float32 and bin_[name].flags.c_contiguous
        assert np.array_equal(bin_[name], safe[name]), name


def test_fp16_weights_match_to_fp16_rounding():
    half, safe = _torch_zip.read(BIN16 / WEIGHTS), _safetensors.read(SAFE / "diffusion_pytorch_model.safetensors")[0]
    for name in safe:
        assert half[name].dtype == np.float32
        assert np.array_equal(half[name], safe[name].astype(np.float16).astype(np.float32)), name
    # and not trivially: fp16 rounding moved some weight
    assert any(not np.array_equal(half[n], safe[n]) for n in safe)
    ours, reference = predictions(BIN16), predictions(SAFE)
    assert np.abs(ours - reference).max() <= 1e-2 * np.abs(reference).max()


def test_safetensors_is_preferred_when_both_exist(tmp_path):
    folder = tmp_path / "both"
    shutil.copytree(SAFE, folder)
    shutil.copy(BIN16 / WEIGHTS, folder / WEIGHTS)  # the fp16 one: preferring it would change the bits
    assert np.array_equal(predictions(folder), predictions(SAFE))


# ---- hand-built archives ------------------------------------------------------------------

def frag(value) -> bytes:
    """The opcodes pushing `value` (protocol 2, without PROTO and STOP)."""
    return pickle.dumps(value, protocol=2)[2:-1]


def glob(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def tensor_pickle(entries: list[tuple[str, str, str, int, int, tuple, tuple]]) -> bytes:
    """A state_dict pickle as torch writes it: {name: _rebuild_tensor_v2((storage pid), offset,
    size, stride, False, OrderedDict())}, entries (name, storage type, key, numel, offset, size, stride)."""
    out = b"\x80\x02}"
    for name, kind, key, numel, offset, size, stride in entries:
        pid = b"(" + frag("storage") + glob("torch", kind) + frag(key) + frag("cpu") + frag(numel) + b"tQ"
        out += frag(name) + glob("torch._utils", "_rebuild_tensor_v2") + b"(" + pid + frag(offset) + frag(size) \
            + frag(stride) + b"\x89" + glob("collections", "OrderedDict") + b")R" + b"tR" + b"s"
    return out + b"."


def archive(path: Path, pickle_bytes: bytes, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pickle_bytes)
        z.writestr("archive/byteorder", b"little")
        for key, data in members.items():
            z.writestr(f"archive/data/{key}", data)
    return path


def test_a_hand_built_archive_reads_with_its_strides(tmp_path):
    data = np.arange(12, dtype="<f4")
    path = archive(tmp_path / "ok.bin", tensor_pickle([("t", "FloatStorage", "0", 12, 1, (3, 2), (1, 3)),
                                                       ("h", "HalfStorage", "1", 4, 0, (2, 2), (2, 1)),
                                                       ("b", "BFloat16Storage", "2", 2, 0, (2,), (1,))]),
                   {"0": data.tobytes(), "1": np.array([1, 2, 3, 0.1], "<f2").tobytes(),
                    "2": np.array([0x3F80, 0xC040], "<u2").tobytes()})  # bfloat16 1.0, −3.0
    got = _torch_zip.read(path)
    assert np.array_equal(got["t"], np.lib.stride_tricks.as_strided(data[1:], (3, 2), (4, 12)))
    assert got["t"].flags.c_contiguous and got["t"].dtype == np.float32
    assert np.array_equal(got["h"], np.array([[1, 2], [3, 0.1]], np.float16).astype(np.float32))
    assert got["b"].dtype == np.float32 and got["b"].tolist() == [1.0, -3.0]


def test_a_scalar_keeps_its_zero_dimensions(tmp_path):
    path = archive(tmp_path / "s.bin", tensor_pickle([("s", "DoubleStorage", "0", 2, 1, (), ())]),
                   {"0": np.array([1.5, -2.25], "<f8").tobytes()})
    got = _torch_zip.read(path)["s"]
    assert got.shape == () and got.dtype == np.float32 and float(got) == -2.25


def test_a_forbidden_global_is_refused_and_not_run(tmp_path):
    witness = tmp_path / "pwned"
    evil = b"\x80\x02" + glob("os", "system") + frag(f"touch {witness}") + b"\x85R."  # os.system((cmd,))
    path = archive(tmp_path / "evil.bin", evil, {})
    with pytest.raises(FormatError, match="os.system"):
        _torch_zip.read(path)
    assert not witness.exists()
    # the same inside a folder, through from_diffusers
    folder = tmp_path / "folder"
    folder.mkdir()
    shutil.copy(BIN / "config.json", folder)
    shutil.copy(path, folder / WEIGHTS)
    with pytest.raises(FormatError, match="os.system"):
        sd.Model.from_diffusers(folder)
    assert not witness.exists()
    # control: the same pickle, unrestricted, does run (the witness is a real side effect)
    pickle.loads(evil)
    assert witness.exists()


@pytest.mark.parametrize("module,name", [("torch.storage", "_load_from_bytes"), ("builtins", "eval"),
                                         ("torch", "Tensor"), ("numpy", "frombuffer")])
def test_other_globals_are_refused(module, name, tmp_path):
    path = archive(tmp_path / "g.bin", b"\x80\x02" + glob(module, name) + b".", {})
    with pytest.raises(FormatError, match=f"{module}.{name}"):
        _torch_zip.read(path)


def test_a_truncated_storage_is_refused(tmp_path):
    path = tmp_path / WEIGHTS
    with zipfile.ZipFile(BIN / WEIGHTS) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = src.read(info)
            dst.writestr(info.filename, data[:-4] if info.filename.endswith("/data/0") else data)
    with pytest.raises(FormatError, match="bytes, not the"):
        _torch_zip.read(path)


@pytest.mark.parametrize("offset,size,stride", [(0, (3, 5), (4, 1)),   # last element 2·4 + 4 = 12: outside
                                                (12, (1,), (1,)),      # offset at the end
                                                (0, (13,), (1,)),
                                                (0, (2, 2), (-1, 1)),  # negative stride
                                                (0, (2,), (1, 1)),     # rank mismatch
                                                (0, (1000, 1000), (0, 0))])  # a 10⁶-element expansion of 12
def test_out_of_bounds_views_are_refused(offset, size, stride, tmp_path):
    path = archive(tmp_path / "oob.bin", tensor_pickle([("t", "FloatStorage", "0", 12, offset, size, stride)]),
                   {"0": np.zeros(12, "<f4").tobytes()})
    with pytest.raises(FormatError):
        _torch_zip.read(path)


def test_a_storage_size_that_disagrees_with_its_member_is_refused(tmp_path):
    path = archive(tmp_path / "n.bin", tensor_pickle([("t", "FloatStorage", "0", 1 << 40, 0, (2,), (1,))]),
                   {"0": np.zeros(12, "<f4").tobytes()})
    with pytest.raises(FormatError, match="bytes, not the"):
        _torch_zip.read(path)


def test_a_legacy_checkpoint_is_refused(tmp_path):
    path = tmp_path / WEIGHTS  # torch < 1.6: a bare pickle stream (magic number, protocol, sys info, ...)
    path.write_bytes(pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2) + pickle.dumps({"protocol_version": 1001}, 2))
    with pytest.raises(FormatError, match="legacy"):
        _torch_zip.read(path)


def test_a_corrupt_pickle_or_zip_is_a_format_error(tmp_path):
    with pytest.raises(FormatError):
        _torch_zip.read(archive(tmp_path / "p.bin", b"\x80\x02}(", {}))
    with pytest.raises(FormatError):
        _torch_zip.read(archive(tmp_path / "l.bin", b"\x80\x02]" + frag(1) + b"a.", {}))  # a list, not a dict
    broken = tmp_path / "z.bin"
    broken.write_bytes(b"PK\x03\x04" + b"\0" * 40)
    with pytest.raises(FormatError):
        _torch_zip.read(broken)
