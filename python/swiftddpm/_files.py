"""Files the package reads and writes itself (export folders, fit's log, the command line's
run.json and sample grids), under the rules the library keeps for its checkpoints
(Sources/DDPM/Checkpoint/SafeTensors.swift), and the paths it gives the library (path_bytes):

reading   only a regular file: opened with O_NONBLOCK (a FIFO with no writer returns at
          once) and checked with fstat, so a FIFO, a device (/dev/zero), a socket or a folder
          is refused before anything is read (DDPMIOError); at most `max_bytes`, checked
          before reading (FormatError); exactly st_size bytes are read.
writing   a new temporary file ".<name>.tmp-<16 random hex digits>" in the destination's
          folder, created with O_EXCL | O_NOFOLLOW (nothing planted there is opened), written,
          fsynced and renamed over the destination, then the folder fsynced: a reader or a
          crash sees the old file or the new one, never half of one, and a symlink at the
          destination is replaced, never written through. The mode of a replaced regular file
          is kept; over a link to a regular file the new file gets no more than its target's
          mode; otherwise 0644 less the umask. On failure the temporary file is removed.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from pathlib import Path
from typing import Any, Iterable

from .errors import ArgumentTypeError, DDPMIOError, FormatError, InvalidArgumentError

_NAME_MAX = 255  # bytes in a folder entry's name (Linux, macOS)
_RANDOM_DIGITS = 16


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symbolic link")):
        if test(mode):
            return name
    return "not a regular file"


def path_bytes(path: Any, what: str = "path") -> bytes:
    """A file path as bytes for the library; a NUL byte (which C would silently cut the path at)
    raises InvalidArgumentError."""
    try:
        raw = os.fsencode(os.fspath(path))
    except TypeError:
        raise ArgumentTypeError(f"{what} must be a str, bytes or os.PathLike (got {type(path).__name__})") from None
    if b"\0" in raw:
        raise InvalidArgumentError(f"{what} contains a NUL byte: {path!r}")
    if not raw:
        raise InvalidArgumentError(f"{what} is empty")
    return raw


def open_regular(path: str | os.PathLike, flags: int, what: str, mode: int = 0o644) -> int:
    """A descriptor of `path` opened with `flags` (O_RDONLY, or O_WRONLY | O_CREAT) if it is a
    regular file, in blocking mode; DDPMIOError otherwise, before any byte is read or written."""
    name = os.fspath(path)
    try:
        fd = os.open(name, flags | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0), mode)
    except OSError as e:
        if e.errno == errno.ENXIO:  # O_WRONLY | O_NONBLOCK on a FIFO with no reader
            raise DDPMIOError(f"{what} {name!r} is not a regular file (it is a FIFO)") from None
        raise DDPMIOError(f"cannot open {what} {name!r}: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise DDPMIOError(f"{what} {name!r} is not a regular file (it is {_kind(st.st_mode)})")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_regular(path: str | os.PathLike, max_bytes: int, what: str) -> bytes:
    """The whole of a regular file of at most max_bytes bytes."""
    fd = open_regular(path, os.O_RDONLY, what)
    with os.fdopen(fd, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size > max_bytes:
            raise FormatError(f"{what} {os.fspath(path)!r} is {size} bytes, over the limit of {max_bytes}")
        data = f.read(size)
        if len(data) != size or f.read(1):
            raise DDPMIOError(f"{what} {os.fspath(path)!r} changed while it was being read")
    return data


def temporary_prefix(name: str) -> str:
    """".<name>.tmp-", the name cut (at a character boundary) so that the prefix and the random
    digits fit in a folder entry, as the library does."""
    room = _NAME_MAX - 1 - len(".tmp-") - _RANDOM_DIGITS
    raw = os.fsencode(name)
    if len(raw) > room:
        raw = raw[:room]
        while raw and raw[-1] & 0xC0 == 0x80:  # continuation bytes
            raw = raw[:-1]
        if raw and raw[-1] >= 0xC0:  # a lead byte whose tail was cut
            raw = raw[:-1]
    return "." + os.fsdecode(raw) + ".tmp-"


def _new_mode(folder_fd: int, name: str, created: int) -> int | None:
    """The mode the new file gets (None: keep `created`, 0644 less the umask)."""
    try:
        st = os.stat(name, dir_fd=folder_fd, follow_symlinks=False)
    except OSError:
        return None
    if stat.S_ISREG(st.st_mode):
        return stat.S_IMODE(st.st_mode) & 0o777
    if stat.S_ISLNK(st.st_mode):
        try:
            target = os.stat(name, dir_fd=folder_fd)
        except OSError:
            return None
        if stat.S_ISREG(target.st_mode):
            return stat.S_IMODE(target.st_mode) & created & 0o777
    return None


def write_atomic(path: str | os.PathLike, chunks: Iterable[bytes], what: str = "file") -> Path:
    """Writes the chunks to `path` by a temporary file renamed over it (see the module doc)."""
    path = Path(path)
    name = path.name
    if name in ("", ".", ".."):
        raise DDPMIOError(f"cannot create {what} {os.fspath(path)!r}: the path does not name a file")
    try:
        folder_fd = os.open(path.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise DDPMIOError(f"cannot create {what} {os.fspath(path)!r}: cannot open its folder: {e.strerror}") from None
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        for _ in range(64):
            temp = temporary_prefix(name) + secrets.token_hex(_RANDOM_DIGITS // 2)
            try:
                fd = os.open(temp, flags, 0o644, dir_fd=folder_fd)
                break
            except FileExistsError:
                continue
            except OSError as e:
                raise DDPMIOError(f"cannot create {what} {os.fspath(path)!r}: cannot create a temporary file: "
                                  f"{e.strerror}") from None
        else:
            raise DDPMIOError(f"cannot create {what} {os.fspath(path)!r}: no free temporary name in its folder")
        try:
            with os.fdopen(fd, "wb") as f:
                mode = _new_mode(folder_fd, name, stat.S_IMODE(os.fstat(f.fileno()).st_mode))
                if mode is not None:
                    os.fchmod(f.fileno(), mode)
                for chunk in chunks:
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
            os.rename(temp, name, src_dir_fd=folder_fd, dst_dir_fd=folder_fd)
        except BaseException as error:
            try:
                os.unlink(temp, dir_fd=folder_fd)
            except OSError:
                pass
            if isinstance(error, OSError) and not isinstance(error, DDPMIOError):
                raise DDPMIOError(f"cannot create {what} {os.fspath(path)!r}: {error.strerror or error}") from None
            raise
        try:
            os.fsync(folder_fd)
        except OSError as e:
            if e.errno != errno.EINVAL:  # a file system that cannot sync a folder
                raise DDPMIOError(f"created {what} {os.fspath(path)!r}, but syncing its folder failed: {e.strerror}") from None
    finally:
        os.close(folder_fd)
    return path
