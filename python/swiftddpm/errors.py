"""Exceptions: one class per library status code, all subclasses of DDPMError.

Every non-OK status from libddpm becomes the matching exception, carrying the status
code and the library's detailed message (ddpm_last_error()). Checks done in Python
before a call (shapes, enum names, closed handles) raise the same classes, so callers
only ever need to catch DDPMError (or the builtin it also derives from, e.g. ValueError).
"""

from __future__ import annotations

from . import _lib


class DDPMError(Exception):
    """A failure reported by SwiftDDPM.

    Attributes:
        status: the library status code (DDPM_ERR_*), see `status_name`.
        message: the detailed message (from ddpm_last_error() for library failures).
    """

    status = _lib.DDPM_ERR_INTERNAL

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        if status is not None:
            self.status = status
        self.message = message

    @property
    def status_name(self) -> str:
        """The library's name of the status ("invalid argument", ...)."""
        return _lib.status_string(self.status)

    def __str__(self) -> str:
        return f"{self.message} [{self.status_name}]" if self.message else self.status_name


class InvalidArgumentError(DDPMError, ValueError):
    """DDPM_ERR_INVALID_ARGUMENT: an out-of-range value, bad enum name or bad timestep."""

    status = _lib.DDPM_ERR_INVALID_ARGUMENT


class ArgumentTypeError(InvalidArgumentError, TypeError):
    """An argument of the wrong type: a bool, complex, string or object array where numbers
    are expected, a float where an integer is. Raised in Python, before any library call;
    also an InvalidArgumentError (status DDPM_ERR_INVALID_ARGUMENT) and a TypeError."""


class ShapeError(DDPMError, ValueError):
    """DDPM_ERR_SHAPE: an array does not have the expected shape."""

    status = _lib.DDPM_ERR_SHAPE


class NonFiniteError(DDPMError, ValueError):
    """DDPM_ERR_NON_FINITE: NaN or infinity in an input, or the loss diverged."""

    status = _lib.DDPM_ERR_NON_FINITE


class DDPMIOError(DDPMError, OSError):
    """DDPM_ERR_IO: a file could not be read or written."""

    status = _lib.DDPM_ERR_IO

    def __init__(self, message: str, status: int | None = None):
        # OSError.__init__ would treat extra args as (errno, strerror): pass one.
        DDPMError.__init__(self, message, status)


class FormatError(DDPMError, ValueError):
    """DDPM_ERR_FORMAT: a file is not a valid checkpoint of this library."""

    status = _lib.DDPM_ERR_FORMAT


class CancelledError(DDPMError):
    """DDPM_ERR_CANCELLED: a callback asked to stop."""

    status = _lib.DDPM_ERR_CANCELLED


class InternalError(DDPMError, RuntimeError):
    """DDPM_ERR_INTERNAL: a bug in the library; please report it with the message."""

    status = _lib.DDPM_ERR_INTERNAL


class ClosedError(DDPMError, RuntimeError):
    """An object was used after close(); raised in Python, before any library call."""

    status = _lib.DDPM_ERR_INVALID_ARGUMENT


_BY_STATUS = {
    _lib.DDPM_ERR_INVALID_ARGUMENT: InvalidArgumentError,
    _lib.DDPM_ERR_SHAPE: ShapeError,
    _lib.DDPM_ERR_NON_FINITE: NonFiniteError,
    _lib.DDPM_ERR_IO: DDPMIOError,
    _lib.DDPM_ERR_FORMAT: FormatError,
    _lib.DDPM_ERR_CANCELLED: CancelledError,
    _lib.DDPM_ERR_INTERNAL: InternalError,
}


def error_for_status(status: int, message: str | None = None) -> DDPMError:
    """The exception for a library status; message defaults to ddpm_last_error()."""
    if message is None:
        message = _lib.last_error()
    cls = _BY_STATUS.get(status, DDPMError)
    return cls(message, status)


def check(status: int) -> None:
    """Raises the matching DDPMError unless status is DDPM_OK."""
    if status != _lib.DDPM_OK:
        raise error_for_status(status)
