"""Ctrl-C as a flag: while a `StopOnInterrupt` block runs in the main thread, SIGINT sets
`.interrupted` instead of raising KeyboardInterrupt, so that a loop can finish the library
call in progress (a train step cannot be abandoned half-way) and stop cleanly. A
KeyboardInterrupt raised at an arbitrary bytecode could land between a library call and the
bookkeeping after it, or before a `try`; a flag polled once per step cannot.

Outside the main thread, or when SIGINT is not Python's default handler (the caller installed
their own), the block changes nothing and `.interrupted` stays False.
"""

from __future__ import annotations

import signal
import threading


class StopOnInterrupt:
    def __init__(self) -> None:
        self.interrupted = False
        self._previous = None

    def _handler(self, signum, frame) -> None:
        self.interrupted = True

    def __enter__(self) -> "StopOnInterrupt":
        if threading.current_thread() is threading.main_thread() \
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None
