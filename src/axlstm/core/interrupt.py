"""Interruption: SIGTERM handled like Ctrl-C, so that long jobs keep their finished work.

A batch scheduler (SLURM, Kubernetes) stops a job with SIGTERM, a user with Ctrl-C (SIGINT).
Python turns only SIGINT into ``KeyboardInterrupt``; inside :func:`terminate_as_interrupt`
SIGTERM raises :class:`Interrupted` (a ``KeyboardInterrupt``) too, so one ``try/finally`` or
``except KeyboardInterrupt`` in a long job saves its finished work for both.

A job's last step (writing the final output, then deleting the kept partial work) must not be
cut in half: inside :func:`interrupts_deferred` both signals are only recorded, and the job,
whose work is then complete, finishes normally.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["Interrupted", "interrupts_deferred", "terminate_as_interrupt"]

logger = logging.getLogger(__name__)


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


@contextmanager
def interrupts_deferred(step: str) -> Iterator[list[int]]:
    """Within the block SIGINT and SIGTERM are recorded instead of raised, and logged at its
    end as having arrived during ``step``; the yielded list holds their numbers. For a short
    step that must finish once begun, such as committing a job's final output (a no-op off
    the main thread)."""
    arrived: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield arrived
        return

    def record(signum, frame) -> None:
        arrived.append(signum)

    previous = {sig: signal.signal(sig, record) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield arrived
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if arrived:
        name = signal.Signals(arrived[0]).name
        logger.warning("%s arrived while %s; that step was finished first", name, step)
