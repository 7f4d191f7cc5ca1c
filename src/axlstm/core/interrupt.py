"""Interruption: SIGTERM handled like Ctrl-C, so that long jobs keep their finished work.

A batch scheduler (SLURM, Kubernetes) stops a job with SIGTERM, a user with Ctrl-C (SIGINT).
Python turns only SIGINT into ``KeyboardInterrupt``; inside :func:`terminate_as_interrupt`
SIGTERM raises :class:`Interrupted` (a ``KeyboardInterrupt``) too, so one ``try/finally`` or
``except KeyboardInterrupt`` in a long job saves its finished work for both.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["Interrupted", "terminate_as_interrupt"]


class Interrupted(KeyboardInterrupt):
    """Raised in the main thread on SIGTERM inside :func:`terminate_as_interrupt`."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise(signum, frame) -> None:
    raise Interrupted(signum)


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within the block SIGTERM raises :class:`Interrupted` (a no-op off the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
