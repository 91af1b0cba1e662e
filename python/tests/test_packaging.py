"""The build backend (python/build_backend/swiftddpm_build.py) and the C install's SONAME:
the wheel's files against its RECORD (hashes recomputed here), its metadata against the
version header, the sdist's Swift tree. Uses the library already built (no Swift build here);
`make test-wheel` installs such a wheel in a fresh venv and runs it."""

from __future__ import annotations

import base64
import hashlib
import importlib
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile

import pytest

import swiftddpm as sd
from swiftddpm import _lib

from conftest import REPO, VERSION_HEADER

sys.path.insert(0, str(REPO / "python" / "build_backend"))
backend = importlib.import_module("swiftddpm_build")
LIBRARY = REPO / ".build" / "release" / _lib.LIBRARY_FILE


def header_version() -> str:
    text = VERSION_HEADER.read_text()
    return ".".join(re.search(rf"#define DDPM_VERSION_{k}\s+(\d+)", text).group(1) for k in ("MAJOR", "MINOR", "PATCH"))


def test_package_version_is_the_header_version():
    assert backend._version() == header_version() == sd.__version__
    assert f"Version: {header_version()}\n" in backend._metadata()
    assert "Requires-Dist: numpy>=1.22\n" in backend._metadata()


@pytest.mark.skipif(not LIBRARY.is_file(), reason="needs .build/release (swift build -c release --product ddpm)")
def test_wheel_files_match_their_record(tmp_path, monkeypatch):
    monkeypatch.setenv("SWIFTDDPM_PREBUILT_LIBRARY", str(LIBRARY))
    name = backend.build_wheel(str(tmp_path))
    assert re.fullmatch(rf"swiftddpm-{re.escape(header_version())}-py3-none-[a-z0-9_]+\.whl", name), name
    with zipfile.ZipFile(tmp_path / name) as wheel:
        names = set(wheel.namelist())
        dist_info = f"swiftddpm-{header_version()}.dist-info"
        assert {"swiftddpm/__init__.py", "swiftddpm/_lib.py", "swiftddpm/torch.py", f"swiftddpm/{_lib.LIBRARY_FILE}",
                f"{dist_info}/METADATA", f"{dist_info}/WHEEL", f"{dist_info}/RECORD"} <= names
        assert not any("__pycache__" in n or n.startswith("tests/") for n in names)
        assert wheel.read(f"swiftddpm/{_lib.LIBRARY_FILE}") == LIBRARY.read_bytes()
        assert "Root-Is-Purelib: false" in wheel.read(f"{dist_info}/WHEEL").decode()
        record = [line.split(",") for line in wheel.read(f"{dist_info}/RECORD").decode().splitlines()]
        assert {r[0] for r in record} == names
        for path, digest, size in record:
            if path.endswith("RECORD"):
                continue
            data = wheel.read(path)
            expected = "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            assert (digest, int(size)) == (expected, len(data)), path


def test_sdist_carries_the_swift_sources(tmp_path):
    name = backend.build_sdist(str(tmp_path))
    base = f"swiftddpm-{header_version()}"
    with tarfile.open(tmp_path / name) as tar:
        names = set(tar.getnames())
    for needed in ("pyproject.toml", "PKG-INFO", "build_backend/swiftddpm_build.py", "swiftddpm/__init__.py",
                   "swift/Package.swift", "swift/include/ddpm.h", "swift/include/ddpm_version.h",
                   "swift/Sources/CBLAS/shim.h", "swift/Sources/DDPMC/Status.swift"):
        assert f"{base}/{needed}" in names, needed
    assert not any(n.endswith((".so", ".pyc")) or "/.build" in n for n in names)


@pytest.mark.skipif(shutil.which("readelf") is None or not LIBRARY.is_file(), reason="needs readelf and .build/release")
def test_soname_carries_the_abi_major_version():
    out = subprocess.run(["readelf", "-d", str(LIBRARY)], capture_output=True, text=True, check=True).stdout
    soname = re.search(r"\(SONAME\)\s+Library soname: \[(.*)\]", out)
    assert soname and soname.group(1) == f"libddpm.so.{header_version().split('.')[0]}"


def test_dependencies_and_the_extras_the_readme_names():
    """Issue 22: tqdm (the progress bars) is a dependency; each extra the README names exists,
    with what its part needs."""
    metadata = backend._metadata()
    assert "Requires-Dist: tqdm>=4.42\n" in metadata
    needs = {"images": "Pillow", "examples": "matplotlib", "mpi": "mpi4py", "torch": "torch"}
    readme = (REPO / "README.md").read_text()
    for extra, package in needs.items():
        assert f"Provides-Extra: {extra}\n" in metadata
        assert re.search(rf'Requires-Dist: {package}\S*; extra == "{extra}"', metadata), (extra, package)
        assert f"[{extra}]" in readme, extra


def test_the_package_is_typed():
    assert (REPO / "python" / "swiftddpm" / "py.typed").is_file()


def test_the_build_reports_what_it_is_doing(tmp_path, capsys):
    """Issue 22 (`pip install .` was silent for 90 s): every line of the build's output goes to
    stderr, and its "[k/n]" progress to the terminal (pip without -v hides the backend's stderr)."""
    import io

    script = "print('Building for production...'); print('[1/2] Compiling DDPM a.swift'); print('[2/2] Linking libddpm.so')"
    tty = io.StringIO()
    with backend._Terminal(tty) as terminal:
        terminal.say("swiftddpm: building")
        backend._run_reporting([sys.executable, "-c", script], tmp_path, terminal)
    err = capsys.readouterr().err
    assert err.splitlines() == ["swiftddpm: building", "Building for production...", "[1/2] Compiling DDPM a.swift",
                                "[2/2] Linking libddpm.so"]
    shown = tty.getvalue()
    assert shown.startswith("swiftddpm: building\n") and "[1/2] Compiling DDPM a.swift" in shown
    assert "[2/2] Linking libddpm.so" in shown and "Building for production" not in shown and shown.endswith("\n")
    with pytest.raises(subprocess.CalledProcessError), backend._Terminal(io.StringIO()) as terminal:
        backend._run_reporting([sys.executable, "-c", "import sys; print('error: x'); sys.exit(3)"], tmp_path, terminal)
    assert "error: x" in capsys.readouterr().err
