"""Finished work of a long embedding run, kept on disk as it comes in, so that an interrupted
run (Ctrl-C, SIGTERM, a crash, a power cut) loses at most the last few files and can resume.

Beside the output ``OUT`` a folder ``OUT.partial/`` holds ``settings.json`` (what the run
computes: model, options) and numbered chunks ``part-000000.npz`` ... (each written atomically)
with the results of consecutive files, failures included:

* ``files`` (n,) and ``errors`` (n,): "" for an embedded file, else the reason it failed;
* ``scene`` (k, *dim) and ``duration`` (k,) for the k embedded files, in order;
* with frames, ``frames`` (sum T_i, *dim), ``timestamps`` (sum T_i,) and ``offsets`` (k + 1,).

When the run finishes the caller writes the output from :meth:`EmbeddingStore.results` and
removes the folder; ``--resume`` continues a run whose folder is still there.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from axlstm.core.errors import InputError, UsageError
from axlstm.core.fileio import atomic_write, atomic_write_text
from axlstm.embedding.files import FileEmbedding

__all__ = ["EmbeddingStore", "partial_dir"]

logger = logging.getLogger(__name__)

SETTINGS_NAME = "settings.json"
#: Settings that may differ between an interrupted run and its resumption.
_FREE_SETTINGS = ("device", "axlstm_version")


def partial_dir(out: Path) -> Path:
    """Where the finished work of a run writing ``out`` is kept until it completes."""
    return out.with_name(f"{out.name}.partial")


def _comparable(settings: dict[str, Any]) -> dict[str, Any]:
    clean = json.loads(json.dumps(settings))  # what a JSON round trip keeps
    return {k: v for k, v in clean.items() if k not in _FREE_SETTINGS}


class EmbeddingStore:
    """Results of one embedding run, flushed to ``OUT.partial/`` every ``chunk_files`` files
    or ``chunk_seconds`` seconds, whichever comes first.

    Args:
        out: the run's final output file.
        settings: what the run computes (JSON-serialisable); a resumed run must match it.
        resume: continue the run kept in ``OUT.partial/``.
        frames: keep frame embeddings too.

    Raises:
        UsageError: ``resume`` without an unfinished run to continue, an unfinished run
            without ``resume``, or a resumed run whose settings differ.
    """

    def __init__(
        self,
        out: Path,
        settings: dict[str, Any],
        *,
        resume: bool,
        frames: bool,
        chunk_files: int = 64,
        chunk_seconds: float = 60.0,
    ) -> None:
        self.out, self.dir, self.frames = Path(out), partial_dir(Path(out)), frames
        self.chunk_files, self.chunk_seconds = chunk_files, chunk_seconds
        self._pending: list[FileEmbedding] = []
        self._last_flush = time.monotonic()
        settings_path = self.dir / SETTINGS_NAME
        if resume:
            if not settings_path.is_file():
                state = "is complete" if self.out.exists() else "was never started"
                raise UsageError(
                    f"--resume: nothing to resume for {self.out} (no {self.dir}: the run {state})"
                )
            saved = self._read_settings(settings_path)
            if _comparable(saved) != _comparable(settings):
                keys = sorted(
                    k
                    for k in set(_comparable(saved)) | set(_comparable(settings))
                    if _comparable(saved).get(k) != _comparable(settings).get(k)
                )
                raise UsageError(
                    f"--resume: {self.dir} was started with other settings ({', '.join(keys)}); "
                    f"run with the same options, or delete {self.dir} to start over"
                )
        elif self.dir.exists():
            raise UsageError(
                f"{self.dir} holds an unfinished run for {self.out}; pass --resume to continue "
                "it, or delete that folder to start over"
            )
        else:
            self.dir.mkdir(parents=True)
            atomic_write_text(settings_path, json.dumps(settings, indent=2) + "\n")
        self.done: set[str] = set()
        for chunk in self._chunks():
            with np.load(chunk) as data:
                self.done.update(str(f) for f in data["files"])
        if resume:
            logger.info("resuming: %d files already done in %s", len(self.done), self.dir)

    @staticmethod
    def _read_settings(path: Path) -> dict[str, Any]:
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise InputError(f"{path}: cannot read the run's settings ({err})") from None
        if not isinstance(saved, dict):
            raise InputError(f"{path}: not a settings object")
        return saved

    def _chunks(self) -> list[Path]:
        return sorted(self.dir.glob("part-*.npz"))

    def add(self, result: FileEmbedding) -> None:
        """Keep one file's result; flush when a chunk is full or old enough."""
        self._pending.append(result)
        self.done.add(result.path)
        full = len(self._pending) >= self.chunk_files
        if full or time.monotonic() - self._last_flush >= self.chunk_seconds:
            self.flush()

    def flush(self) -> None:
        """Write the pending results as the next chunk (atomically)."""
        self._last_flush = time.monotonic()
        if not self._pending:
            return
        ok = [r for r in self._pending if r.ok]
        arrays = {
            "files": np.array([r.path for r in self._pending], dtype=str),
            "errors": np.array([r.error or "" for r in self._pending], dtype=str),
            "scene": np.stack([r.scene for r in ok]) if ok else np.zeros(0, np.float32),
            "duration": np.array([r.duration for r in ok], dtype=np.float64),
        }
        if self.frames and ok:
            counts = [r.frames.shape[0] for r in ok]
            arrays["frames"] = np.concatenate([r.frames for r in ok])
            arrays["timestamps"] = np.concatenate([r.timestamps for r in ok])
            arrays["offsets"] = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        path = self.dir / f"part-{len(self._chunks()):06d}.npz"

        def write(tmp: str) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)

        atomic_write(path, write)
        logger.debug("kept %d results in %s", len(self._pending), path)
        self._pending = []

    def results(self, order: Sequence[str]) -> list[FileEmbedding]:
        """Every kept result (after a :meth:`flush`), in the order of ``order`` (files not in
        it are dropped)."""
        found: dict[str, FileEmbedding] = {}
        for chunk in self._chunks():
            with np.load(chunk) as data:
                k = 0
                for name, error in zip(data["files"], data["errors"], strict=True):
                    name, error = str(name), str(error)
                    if error:
                        found[name] = FileEmbedding(name, error=error)
                        continue
                    result = FileEmbedding(
                        name, scene=data["scene"][k], duration=float(data["duration"][k])
                    )
                    if self.frames:
                        lo, hi = data["offsets"][k], data["offsets"][k + 1]
                        result.frames = data["frames"][lo:hi]
                        result.timestamps = data["timestamps"][lo:hi]
                    found[name] = result
                    k += 1
        dropped = len(set(found) - set(order))
        if dropped:
            logger.info("%d finished files are no longer among the inputs; left out", dropped)
        return [found[p] for p in order if p in found]

    def remove(self) -> None:
        """Delete the kept work (once the final output is written)."""
        shutil.rmtree(self.dir, ignore_errors=True)
