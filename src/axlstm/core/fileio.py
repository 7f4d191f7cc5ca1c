"""Atomic file writes: a crash mid-write never leaves a half-written file behind.

The content goes to a temporary file in the target's folder, which is then renamed over the
target (``os.replace`` is atomic on POSIX and Windows).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: str | Path, write: Callable[[str], None], fsync: bool = False) -> Path:
    """Call ``write(tmp_path)`` to fill a temporary file, then rename it over ``path``.

    Args:
        path: the file to (re)place; its folder is created if needed.
        write: writes the content to the path it is given.
        fsync: flush the file to disk before the rename (for checkpoints that must survive a
            power loss, not only a crash of the process).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        if fsync:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Atomically write ``text`` (UTF-8) to ``path``."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
