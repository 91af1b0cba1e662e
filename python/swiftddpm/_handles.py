"""Ownership of one library handle (a ddpm_schedule*, ddpm_model*, ddpm_sampler*) by a Python
object: an idempotent close(), `closed`, `with` support, a last-resort close on deletion, and
the check that an argument owns a live handle of the kind a call needs.
"""

from __future__ import annotations

from typing import Any

from . import _lib
from .errors import ClosedError, InvalidArgumentError


class HandleOwner:
    """An object that owns one library handle in self._handle: an idempotent close() that
    frees it with the subclass's `_free` function (name of a ddpm_*_free), `closed`, `_h()`
    (the handle, or ClosedError), `with` support and a last-resort close on deletion.
    `_handle_type` is the ctypes pointer type of the handle (see `handle_of`)."""

    _free = ""
    _handle_type: Any = None
    _handle: Any = None

    def close(self) -> None:
        """Frees the library handle; later calls raise ClosedError. Idempotent."""
        handle, self._handle = self._handle, None
        if handle and _lib is not None and _lib.lib is not None:
            getattr(_lib.lib, self._free)(handle)

    @property
    def closed(self) -> bool:
        return not self._handle

    def _h(self):
        handle = self._handle
        if not handle:
            raise ClosedError(f"this {type(self).__name__} has been closed")
        return handle

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


def handle_of(owner: Any, handle_type: Any, what: str, kind: str):
    """The live handle of `owner`, which must own a handle of `handle_type` (a NoiseSchedule
    owns a ddpm_schedule_p): InvalidArgumentError "`what` must be a `kind`" otherwise, and
    ClosedError if it has been closed. Lets a module take a schedule without importing the
    class (sampler.py, below schedule.py)."""
    if not (isinstance(owner, HandleOwner) and owner._handle_type is handle_type):
        raise InvalidArgumentError(f"{what} must be a {kind} (got {type(owner).__name__})")
    return owner._h()
