"""One C call that calls back into Python (sampling, the bound with your model): what its
ctypes callbacks need kept alive, a Python exception they raised carried out of the call,
and Ctrl-C deferred to the end of the call.
"""

from __future__ import annotations

import signal
import threading
from typing import Any, Callable


class CallbackState:
    """The state of one C call with Python callbacks.

    Ctrl-C: while the call runs (`with state:`, main thread only), SIGINT goes to a handler
    that runs the previous Python handler (default_int_handler raises KeyboardInterrupt) and
    keeps what it raised in `interrupt` instead of letting it escape from wherever the
    interpreter happens to be — an exception escaping a ctypes callback is printed as
    "Exception ignored" and lost. Every callback polls `interrupted` and returns nonzero, so
    the library stops cleanly at the next step (the handle stays usable), and `raise_pending`
    raises the KeyboardInterrupt after the call. While the caller's own Python code runs
    inside a callback (`call_user`: a model function, a progress function), the handler
    raises at once so that slow user code is interrupted too; the callback catches it.
    A SIGINT handler that is not a Python callable (SIG_IGN, SIG_DFL) is left alone.
    """

    def __init__(self) -> None:
        self.error: BaseException | None = None  # what a callback raised, re-raised after the call
        self.interrupt: BaseException | None = None  # what the SIGINT handler raised during the call
        self._in_user = False
        self._previous: Any = None
        self._installed = False

    # ---- Ctrl-C ---------------------------------------------------------------------

    def __enter__(self) -> "CallbackState":
        if threading.current_thread() is threading.main_thread():
            previous = signal.getsignal(signal.SIGINT)
            if callable(previous):
                self._previous = previous
                signal.signal(signal.SIGINT, self._on_sigint)
                self._installed = True
        return self

    def __exit__(self, *exc_info) -> None:
        if self._installed:
            self._installed = False
            signal.signal(signal.SIGINT, self._previous)

    def _on_sigint(self, signum, frame) -> None:
        try:
            self._previous(signum, frame)
        except BaseException as error:  # noqa: BLE001 - kept, raised after the C call
            if self.interrupt is None:
                self.interrupt = error
            if self._in_user:
                raise

    @property
    def interrupted(self) -> bool:
        """True once Ctrl-C was pressed during the call: callbacks then return nonzero."""
        return self.interrupt is not None

    def call_user(self, fn: Callable, *args: Any) -> Any:
        """fn(*args), the caller's own code, which Ctrl-C may interrupt directly."""
        self._in_user = True
        try:
            return fn(*args)
        finally:
            self._in_user = False

    def keep(self, error: BaseException) -> None:
        """Records an exception raised in a callback (the first one wins)."""
        self._in_user = False
        if self.error is None:
            self.error = error

    # ---- After the call -------------------------------------------------------------

    def raise_pending(self) -> None:
        """Raises the deferred KeyboardInterrupt (first), else a callback's exception."""
        interrupt, self.interrupt = self.interrupt, None
        error, self.error = self.error, None
        if interrupt is not None:
            raise interrupt
        if error is not None:
            raise error
