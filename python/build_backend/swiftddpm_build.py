"""The PEP 517 build backend of swiftddpm: builds libddpm with SwiftPM and puts it in the wheel.

    pip install ./python                 builds libddpm from source, installs a wheel carrying it
    python -m build python               an sdist (Python package + the Swift sources) and a wheel
    python -m build --wheel python       the wheel alone, from this checkout

It needs nothing but the standard library (and `tomli` on Python < 3.11, asked for through
get_requires_for_build_*), so a from-source install works offline: pip has no build
requirements to download.

The wheel holds swiftddpm/*.py and swiftddpm/libddpm.so (the loader looks next to
__init__.py first), tagged py3-none-<platform> (no Python extension; one native library).

libddpm is built with `swift build -c release --product ddpm -Xswiftc -static-stdlib` (SwiftPM's
--static-swift-stdlib does not apply to a dynamic library product: it fails to link) and
stripped of its symbol tables (`strip --strip-unneeded`; 23 MB -> 14 MB, about 5 MB in the
wheel). The Swift runtime is linked in, so the wheel needs only libc, libstdc++, libgcc_s and
OpenBLAS (libopenblas0) on the target machine, not a Swift toolchain; its RUNPATH is $ORIGIN.
The SwiftPM scratch folder is <root>/.build-wheel, kept between builds (incremental rebuilds).

Environment variables (all optional):
  SWIFTDDPM_PREBUILT_LIBRARY  a libddpm already built: put this file in the wheel instead of
                              building (make test uses it; the loader's version check still runs)
  SWIFTDDPM_STATIC_STDLIB=0   link the Swift runtime dynamically (a small library with a RUNPATH
                              into this machine's toolchain: for local use only)
  SWIFTDDPM_SCRATCH           the SwiftPM scratch folder (default <root>/.build-wheel)
  SWIFTDDPM_QUIET=1           report the build on stderr only (by default, when pip captures
                              stderr, also on the terminal, /dev/tty: see _Terminal)

The Swift sources: the checkout around this folder (python/..), or, in an sdist, its swift/
folder (Package.swift, Sources/, include/, Tests/).
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import time
import zipfile
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parents[1]  # python/ (or the sdist's root)
PACKAGE = "swiftddpm"
SWIFT_TREE = ("Package.swift", "Sources", "include", "Tests")  # what the sdist carries in swift/

if sys.platform == "darwin":
    LIBRARY_FILE = "libddpm.dylib"
else:
    LIBRARY_FILE = "libddpm.so"


# ---- Project facts ----------------------------------------------------------------------


def _swift_root() -> Path:
    for root in (PROJECT.parent, PROJECT / "swift"):
        if (root / "Package.swift").is_file() and (root / "include" / "ddpm_version.h").is_file():
            return root
    raise RuntimeError(f"swiftddpm: no Swift sources found (looked for Package.swift in {PROJECT.parent} "
                       f"and {PROJECT / 'swift'})")


def _version() -> str:
    """MAJOR.MINOR.PATCH of include/ddpm_version.h, the one version source."""
    text = (_swift_root() / "include" / "ddpm_version.h").read_text()
    parts = [re.search(rf"#define DDPM_VERSION_{k}\s+(\d+)", text) for k in ("MAJOR", "MINOR", "PATCH")]
    if not all(parts):
        raise RuntimeError("swiftddpm: include/ddpm_version.h lacks a DDPM_VERSION_MAJOR/MINOR/PATCH line")
    return ".".join(m.group(1) for m in parts)


def _project_table() -> dict:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # asked for by get_requires_for_build_*
        import tomli as tomllib
    with open(PROJECT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]


def _metadata() -> str:
    """The METADATA (core metadata 2.1) of [project] in pyproject.toml, version from the header."""
    p = _project_table()
    lines = ["Metadata-Version: 2.1", f"Name: {p['name']}", f"Version: {_version()}"]
    if "description" in p:
        lines.append(f"Summary: {p['description']}")
    if "requires-python" in p:
        lines.append(f"Requires-Python: {p['requires-python']}")
    if "license" in p and "text" in p["license"]:
        lines.append(f"License: {p['license']['text']}")
    lines += [f"Requires-Dist: {d}" for d in p.get("dependencies", [])]
    for extra, deps in p.get("optional-dependencies", {}).items():
        lines.append(f"Provides-Extra: {extra}")
        lines += [f'Requires-Dist: {d}; extra == "{extra}"' for d in deps]
    return "\n".join(lines) + "\n"


def _dist_name() -> str:
    return f"{PACKAGE}-{_version()}"


def _platform_tag() -> str:
    return re.sub(r"[-.]", "_", sysconfig.get_platform())


# ---- Building libddpm ------------------------------------------------------------------


def _library() -> Path:
    """The libddpm to ship: SWIFTDDPM_PREBUILT_LIBRARY, or a fresh SwiftPM build."""
    prebuilt = os.environ.get("SWIFTDDPM_PREBUILT_LIBRARY")
    if prebuilt:
        path = Path(prebuilt)
        if not path.is_file():
            raise RuntimeError(f"swiftddpm: SWIFTDDPM_PREBUILT_LIBRARY={prebuilt} is not a file")
        print(f"swiftddpm: shipping the prebuilt {path}", file=sys.stderr)
        return path
    root = _swift_root()
    swift = shutil.which("swift")
    if swift is None:
        raise RuntimeError("swiftddpm: building libddpm needs a Swift toolchain (swift on PATH, "
                           "https://swift.org/install) and OpenBLAS (libopenblas-dev) on Linux")
    scratch = Path(os.environ.get("SWIFTDDPM_SCRATCH") or root / ".build-wheel")
    cmd = [swift, "build", "-c", "release", "--product", "ddpm", "--scratch-path", str(scratch)]
    if os.environ.get("SWIFTDDPM_STATIC_STDLIB", "1") != "0":
        cmd += ["-Xswiftc", "-static-stdlib"]
    t0 = time.monotonic()
    with _Terminal() as terminal:
        terminal.say(f"swiftddpm: building libddpm from the Swift sources in {root} (a few minutes on 2 cores; "
                     "pip install -v shows every line):\n  " + " ".join(cmd))
        _run_reporting(cmd, root, terminal)
        terminal.say(f"swiftddpm: libddpm built in {time.monotonic() - t0:.0f} s")
    library = scratch / "release" / LIBRARY_FILE
    if not library.is_file():
        raise RuntimeError(f"swiftddpm: swift build succeeded but {library} is missing")
    return _stripped(library)


class _Terminal:
    """Where the build reports what it is doing. Every line goes to stderr (pip shows it with -v);
    pip without -v captures the backend's output and shows a spinner, so where stderr is not a
    terminal the same news also goes to the controlling terminal, /dev/tty, if there is one
    (SwiftPM's "[k/n] Compiling …" lines as one line rewritten in place). SWIFTDDPM_QUIET=1
    keeps it to stderr."""

    def __init__(self, tty: Any = None) -> None:
        self.tty = tty
        self._opened = False
        self._status = False  # a progress line is on the terminal, not yet ended

    def __enter__(self) -> "_Terminal":
        if self.tty is None and not sys.stderr.isatty() and os.environ.get("SWIFTDDPM_QUIET") != "1":
            try:
                self.tty, self._opened = open("/dev/tty", "w"), True
            except OSError:
                self.tty = None
        return self

    def __exit__(self, *exc: Any) -> None:
        self._end_status()
        if self._opened:
            self.tty.close()

    def _end_status(self) -> None:
        if self._status:
            self.tty.write("\n")
            self.tty.flush()
            self._status = False

    def say(self, text: str) -> None:
        """A message: stderr, and the terminal."""
        print(text, file=sys.stderr, flush=True)
        if self.tty is not None:
            self._end_status()
            self.tty.write(text + "\n")
            self.tty.flush()

    def progress(self, line: str) -> None:
        """A line of the build's output: stderr; "[k/n] …" lines also on the terminal, in place."""
        print(line, file=sys.stderr, flush=True)
        if self.tty is not None and re.match(r"\[\d+/\d+\]", line):
            self.tty.write("\r\033[K  " + line[:100])
            self.tty.flush()
            self._status = True


def _run_reporting(cmd: list[str], cwd: Path, terminal: _Terminal) -> None:
    """Runs cmd, passing each line of its output (stdout and stderr) to terminal.progress;
    CalledProcessError if it fails."""
    with subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          errors="replace", bufsize=1) as process:
        for line in process.stdout:
            terminal.progress(line.rstrip("\n"))
    if process.returncode != 0:
        terminal.say(f"swiftddpm: the build failed (status {process.returncode}); its output is above")
        raise subprocess.CalledProcessError(process.returncode, cmd)


def _stripped(library: Path) -> Path:
    """A copy of library without its symbol tables (the dynamic symbols stay), or library
    itself where there is no `strip`."""
    strip = shutil.which("strip")
    if strip is None:
        return library
    out = library.with_name(library.name + ".stripped")
    flags = ["-x"] if sys.platform == "darwin" else ["--strip-unneeded"]
    subprocess.run([strip, *flags, "-o", str(out), str(library)], check=True)
    return out


# ---- Archives ----------------------------------------------------------------------------


def _package_files() -> list[tuple[str, Path]]:
    """(name in the wheel, file) for every Python file of the package."""
    out = []
    for path in sorted((PROJECT / PACKAGE).rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix in (".py", ".typed"):
            out.append((path.relative_to(PROJECT).as_posix(), path))
    return out


class _Wheel:
    """A wheel being written: files plus the RECORD of their hashes."""

    def __init__(self, path: Path):
        self.zip = zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED)
        self.record: list[str] = []

    def add(self, name: str, data: bytes, executable: bool = False) -> None:
        info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))  # reproducible
        info.external_attr = (0o755 if executable else 0o644) << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        self.zip.writestr(info, data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        self.record.append(f"{name},sha256={digest},{len(data)}")

    def close(self, dist_info: str) -> None:
        self.record.append(f"{dist_info}/RECORD,,")
        info = zipfile.ZipInfo(f"{dist_info}/RECORD", date_time=(2020, 1, 1, 0, 0, 0))
        info.external_attr = 0o644 << 16
        self.zip.writestr(info, "\n".join(self.record) + "\n")
        self.zip.close()


def _write_dist_info(directory: Path) -> str:
    dist_info = f"{_dist_name()}.dist-info"
    (directory / dist_info).mkdir(parents=True, exist_ok=True)
    (directory / dist_info / "METADATA").write_text(_metadata())
    return dist_info


def _wheel_file(extra_tag: str) -> str:
    return f"{_dist_name()}-py3-none-{extra_tag}.whl"


# ---- PEP 517 hooks -----------------------------------------------------------------------


def get_requires_for_build_wheel(config_settings=None):
    return [] if sys.version_info >= (3, 11) else ["tomli>=1.1"]


get_requires_for_build_sdist = get_requires_for_build_wheel
get_requires_for_build_editable = get_requires_for_build_wheel


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    return _write_dist_info(Path(metadata_directory))


prepare_metadata_for_build_editable = prepare_metadata_for_build_wheel


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    library = _library()
    name = _wheel_file(_platform_tag())
    dist_info = f"{_dist_name()}.dist-info"
    wheel = _Wheel(Path(wheel_directory) / name)
    for arcname, path in _package_files():
        wheel.add(arcname, path.read_bytes())
    wheel.add(f"{PACKAGE}/{LIBRARY_FILE}", library.read_bytes(), executable=True)
    wheel.add(f"{dist_info}/METADATA", _metadata().encode())
    wheel.add(f"{dist_info}/WHEEL", (f"Wheel-Version: 1.0\nGenerator: swiftddpm_build\n"
                                     f"Root-Is-Purelib: false\nTag: py3-none-{_platform_tag()}\n").encode())
    wheel.add(f"{dist_info}/top_level.txt", f"{PACKAGE}\n".encode())
    wheel.close(dist_info)
    return name


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    """pip install -e ./python: a .pth pointing at this folder; the loader then finds the
    library in the checkout's .build/release (build it with `swift build -c release --product ddpm`)."""
    name = _wheel_file("any")
    dist_info = f"{_dist_name()}.dist-info"
    wheel = _Wheel(Path(wheel_directory) / name)
    wheel.add(f"_{PACKAGE}_editable.pth", (str(PROJECT) + "\n").encode())
    wheel.add(f"{dist_info}/METADATA", _metadata().encode())
    wheel.add(f"{dist_info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: swiftddpm_build\nRoot-Is-Purelib: true\n"
                                     b"Tag: py3-none-any\n")
    wheel.close(dist_info)
    return name


def build_sdist(sdist_directory, config_settings=None):
    """swiftddpm-X.Y.Z.tar.gz: this folder's package, backend and tests, PKG-INFO, and the Swift
    sources under swift/, so that the wheel builds from the sdist alone."""
    root = _swift_root()
    base = _dist_name()
    name = f"{base}.tar.gz"

    def keep(info: tarfile.TarInfo):
        parts = Path(info.name).parts
        if "__pycache__" in parts or info.name.endswith((".pyc", ".so", ".dylib")) or ".build" in parts:
            return None
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    with tarfile.open(Path(sdist_directory) / name, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        for entry in ("pyproject.toml", "build_backend", PACKAGE, "tests"):
            if (PROJECT / entry).exists():
                tar.add(PROJECT / entry, f"{base}/{entry}", filter=keep)
        for entry in SWIFT_TREE:
            if (root / entry).exists():
                tar.add(root / entry, f"{base}/swift/{entry}", filter=keep)
        pkg_info = _metadata().encode()
        info = tarfile.TarInfo(f"{base}/PKG-INFO")
        info.size, info.mtime, info.mode = len(pkg_info), int(time.time()), 0o644
        tar.addfile(info, io.BytesIO(pkg_info))
    return name
