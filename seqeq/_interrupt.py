"""Ctrl-C while training is never lost.

Python turns SIGINT into a ``KeyboardInterrupt`` raised wherever the main thread happens to be.
If that is inside a weakref or garbage-collection callback (SQLAlchemy, under Optuna's storage,
runs such callbacks), Python prints "Exception ignored in ..." and carries on: the interrupt is
gone, the search runs to its end and the user's Ctrl-C did nothing (seen in
``tests/test_resume.py``). While a model trains, :func:`deferred` therefore only records the
signal; :func:`check`, called between optimiser steps, raises the ``KeyboardInterrupt`` from
there, so it reaches the search's handling (the trial marked interrupted, the best model so far
exported). A second Ctrl-C before the next check raises at once, as Python would.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

__all__ = ["deferred", "check"]

_pending = False


def _record(signum, frame) -> None:
    global _pending
    if _pending:  # a second Ctrl-C: at once, wherever we are
        _pending = False
        raise KeyboardInterrupt
    _pending = True


def check() -> None:
    """Raise the ``KeyboardInterrupt`` a Ctrl-C inside :func:`deferred` recorded, if any."""
    global _pending
    if _pending:
        _pending = False
        raise KeyboardInterrupt


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Record SIGINT instead of raising it wherever it lands (main thread only, where Python
    delivers signals; elsewhere, and where the program has its own SIGINT handler, nothing
    changes). On leaving, a recorded interrupt is raised, so none is lost."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield
        return
    previous = signal.signal(signal.SIGINT, _record)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    check()
