"""Scene embeddings of a task, computed once per (embedder, task) and cached on disk.

The cache key is the SHA-256 of

* the embedder's fingerprint: for an encoder its config (architecture and log-mel front end),
  the SHA-256 of its state dict and the embedding options (window, layer, frame layout), plus
  a pipeline version; for the log-mel baseline its statistics and front end;
* the task's fingerprint: the bytes of ``task_metadata.json``, ``labelvocabulary.csv`` and the
  split files, and the name, size and modification time of every audio file used.

So retrained or re-exported weights, another front end, other options or changed task audio
all give a new key; a key hit means the same numbers would be computed again. Entries are
``CACHE/<task>/<key[:32]>.npz`` (one ``X_<split>`` (N, D) float32 and ``files_<split>`` per
split) with a readable ``.json`` beside each, written atomically.

Event (timestamp) tasks keep frame embeddings instead (:func:`task_frames`): per split the
frames of every file one after another ``X_<split>`` (frames, D), their timestamps
``T_<split>`` (ms), the frames per file ``N_<split>`` and the clip durations ``S_<split>``
(seconds). Frames take memory in proportion to the audio: a 10-minute clip gives 15,000
frames (40 ms hop), 58 MB at D = 960.

Every embedding must be finite: a file whose embedding holds NaN or inf (weights that hold
NaN, an overflow) counts as failed, so a wrong number never reaches a probe; a cache entry
holding one is recomputed. A cache that cannot be written costs only the reuse: the
embeddings are still returned, with a warning.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from axlstm.core.errors import AxlstmError
from axlstm.core.fileio import atomic_write, atomic_write_text
from axlstm.evaluation.embedders import Embedder
from axlstm.evaluation.tasks import METADATA_NAME, VOCAB_NAME, Task

__all__ = [
    "EmbeddingError",
    "FrameSet",
    "cache_key",
    "default_cache_dir",
    "task_embeddings",
    "task_fingerprint",
    "task_frames",
]

logger = logging.getLogger(__name__)

_FORMAT = 1


class EmbeddingError(AxlstmError, RuntimeError):
    """Some files of a task could not be embedded (unreadable audio, non-finite embeddings);
    the message lists them with reasons."""


def default_cache_dir() -> Path:
    """The cache root: ``$AXLSTM_CACHE``, else ``$XDG_CACHE_HOME/axlstm``, else
    ``~/.cache/axlstm`` (read when called, not at import). ``axlstm evaluate`` keeps embeddings
    in ``ROOT/embeddings`` and generated built-in tasks in ``ROOT/tasks``."""
    if os.environ.get("AXLSTM_CACHE"):
        return Path(os.environ["AXLSTM_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "axlstm"


def _failure(path: str, error: str | None) -> str:
    """``path: error``, without naming the file twice when the error already starts with it."""
    error = str(error)
    return error if error.startswith(f"{path}:") else f"{path}: {error}"


def task_fingerprint(task: Task) -> str:
    """SHA-256 of a task's metadata, vocabulary, split files and audio file stats."""
    digest = hashlib.sha256()
    for name in [METADATA_NAME, VOCAB_NAME, *(f"{s}.json" for s in task.splits)]:
        digest.update(name.encode() + b"\0" + (task.path / name).read_bytes() + b"\0")
    digest.update(f"rate={task.sample_rate}\0".encode())
    for split in task.splits:
        for path in task.audio_paths(split):
            st = path.stat()
            digest.update(f"{split}/{path.name}|{st.st_size}|{st.st_mtime_ns}\0".encode())
    return digest.hexdigest()


def cache_key(fingerprint: dict[str, Any], task_digest: str) -> str:
    blob = json.dumps(
        {"format": _FORMAT, "embedder": fingerprint, "task": task_digest}, sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def _atomic_savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    atomic_write(path, write)


def _read_entry(path: Path, task: Task, read_split: Callable[[Any, str, list[str]], Any]):
    """``{split: read_split(data, split, files)}`` from a cache entry, or None (with a
    warning) when it is unreadable, lists other files, or ``read_split`` finds it malformed
    (returns None)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            out = {}
            for split in task.splits:
                files = data[f"files_{split}"].tolist()
                if files != task.files(split):
                    logger.warning("%s: file list differs from %s; recomputing", path, task.name)
                    return None
                value = read_split(data, split, files)
                if value is None:
                    logger.warning("%s: malformed or non-finite embeddings; recomputing", path)
                    return None
                out[split] = value
            return out
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as err:
        logger.warning("unreadable cache entry %s (%s); recomputing", path, err)
        return None


def _scene_split(data: Any, split: str, files: list[str]) -> np.ndarray | None:
    x = data[f"X_{split}"].astype(np.float32)
    if x.ndim != 2 or x.shape[0] != len(files) or not np.isfinite(x).all():
        return None
    return x


def _load(path: Path, task: Task) -> dict[str, np.ndarray] | None:
    return _read_entry(path, task, _scene_split)


def task_embeddings(
    embedder: Embedder,
    task: Task,
    cache_dir: str | Path | None = None,
    *,
    on_file: Callable[[int], None] | None = None,
) -> tuple[dict[str, np.ndarray], bool]:
    """Scene embeddings ``{split: (N, D) float32}`` of every split of ``task``, rows in the
    order of the split's JSON file, from the cache when possible.

    Args:
        embedder: the model or baseline.
        task: a scene task.
        cache_dir: cache root; None disables caching.
        on_file: called with 1 after each embedded file (progress); not called on a cache hit.

    Returns:
        The embeddings and whether they came from the cache.

    Raises:
        EmbeddingError: a file could not be embedded (all failures listed, up to 5 shown).
    """
    task.require_scene()
    key = path = None
    if cache_dir is not None:
        key = cache_key(embedder.fingerprint(), task_fingerprint(task))
        path = Path(cache_dir) / task.name / f"{key[:32]}.npz"
        if path.is_file():
            loaded = _load(path, task)
            if loaded is not None:
                logger.info("%s / %s: embeddings from cache %s", embedder.label, task.name, path)
                return loaded, True
    out: dict[str, np.ndarray] = {}
    failures: list[str] = []
    for split in task.splits:
        paths = [str(p) for p in task.audio_paths(split)]
        rows = []
        for result in embedder.embed_files(paths):
            if on_file is not None:
                on_file(1)
            if not result.ok:
                failures.append(_failure(result.path, result.error))
                continue
            row = np.asarray(result.scene, dtype=np.float32).reshape(-1)
            if not np.isfinite(row).all():
                bad = int(row.size - np.count_nonzero(np.isfinite(row)))
                failures.append(
                    f"{result.path}: the embedding holds {bad} non-finite values (NaN or inf; "
                    "do the model's weights hold NaN?)"
                )
                continue
            rows.append(row)
        if not failures:
            out[split] = np.stack(rows) if rows else np.zeros((0, embedder.dim), np.float32)
    if failures:
        shown = "; ".join(failures[:5])
        more = f" (and {len(failures) - 5} more)" if len(failures) > 5 else ""
        raise EmbeddingError(
            f"{len(failures)} of {task.num_files()} files of {task.name} could not be embedded: "
            f"{shown}{more}"
        )
    if path is not None:
        _store(path, out, task, key, embedder)
    return out, False


def _store(
    path: Path, out: dict[str, np.ndarray], task: Task, key: str | None, embedder: Embedder
) -> None:
    """Write a cache entry; a failure (read-only cache, full disk) is a warning only."""
    arrays = {f"X_{s}": x for s, x in out.items()}
    arrays.update({f"files_{s}": np.array(task.files(s), dtype=str) for s in task.splits})
    info = {
        "key": key,
        "label": embedder.label,
        "task": str(task.path),
        "embedder": embedder.fingerprint(),
        "dim": int(next(iter(out.values())).shape[1]),
    }
    _write_entry(path, arrays, info, embedder.label, task.name)


# ------------------------------------------------------------------------------ event tasks
@dataclass
class FrameSet:
    """The timestamp embeddings of the files of one split, one after another.

    Attributes:
        files: file names, in the split's order.
        x: (frames, D) float32 embeddings.
        timestamps: (frames,) float64 frame times in ms.
        counts: (files,) int64 frames per file.
        durations: (files,) float64 clip lengths in seconds.
    """

    files: list[str]
    x: np.ndarray
    timestamps: np.ndarray
    counts: np.ndarray
    durations: np.ndarray

    @property
    def offsets(self) -> np.ndarray:
        """(files + 1,) index of each file's first frame, and the total."""
        return np.concatenate([[0], np.cumsum(self.counts)]).astype(np.int64)

    def file_slices(self) -> list[slice]:
        o = self.offsets
        return [slice(int(o[i]), int(o[i + 1])) for i in range(len(self.files))]

    @staticmethod
    def concat(sets: list[FrameSet]) -> FrameSet:
        if len(sets) == 1:
            return sets[0]
        return FrameSet(
            files=[f for s in sets for f in s.files],
            x=np.concatenate([s.x for s in sets]),
            timestamps=np.concatenate([s.timestamps for s in sets]),
            counts=np.concatenate([s.counts for s in sets]),
            durations=np.concatenate([s.durations for s in sets]),
        )


def _frames_split(data: Any, split: str, files: list[str]) -> FrameSet | None:
    x = data[f"X_{split}"].astype(np.float32)
    ts = data[f"T_{split}"].astype(np.float64)
    counts = data[f"N_{split}"].astype(np.int64)
    durations = data[f"S_{split}"].astype(np.float64)
    if (
        x.ndim != 2
        or counts.shape != (len(files),)
        or int(counts.sum()) != x.shape[0]
        or ts.shape != (x.shape[0],)
        or durations.shape != (len(files),)
        or not np.isfinite(x).all()
    ):
        return None
    return FrameSet(files, x, ts, counts, durations)


def _load_frames(path: Path, task: Task) -> dict[str, FrameSet] | None:
    return _read_entry(path, task, _frames_split)


def task_frames(
    embedder: Embedder,
    task: Task,
    cache_dir: str | Path | None = None,
    *,
    on_file: Callable[[int], None] | None = None,
) -> tuple[dict[str, FrameSet], bool]:
    """Timestamp embeddings of every split of an event task, from the cache when possible.

    The frames are those of :func:`axlstm.hear.get_timestamp_embeddings` (a hop of at most
    50 ms; see :mod:`.embedders`).

    Returns:
        ``{split: FrameSet}`` and whether they came from the cache.

    Raises:
        EmbeddingError: a file could not be embedded (all failures listed, up to 5 shown).
    """
    task.require_event()
    key = path = None
    if cache_dir is not None:
        key = cache_key(embedder.fingerprint(timestamps=True), task_fingerprint(task))
        path = Path(cache_dir) / task.name / f"{key[:32]}.npz"
        if path.is_file():
            loaded = _load_frames(path, task)
            if loaded is not None:
                logger.info("%s / %s: frames from cache %s", embedder.label, task.name, path)
                return loaded, True
    out: dict[str, FrameSet] = {}
    failures: list[str] = []
    for split in task.splits:
        paths = [str(p) for p in task.audio_paths(split)]
        xs, ts, counts, durations = [], [], [], []
        for result in embedder.embed_files(paths, timestamps=True):
            if on_file is not None:
                on_file(1)
            if not result.ok:
                failures.append(_failure(result.path, result.error))
                continue
            frames = np.asarray(result.frames, dtype=np.float32)
            frames = frames.reshape(frames.shape[0], -1)
            if not np.isfinite(frames).all():
                bad = int(frames.size - np.count_nonzero(np.isfinite(frames)))
                failures.append(
                    f"{result.path}: the embedding holds {bad} non-finite values (NaN or inf; "
                    "do the model's weights hold NaN?)"
                )
                continue
            xs.append(frames)
            ts.append(np.asarray(result.timestamps, dtype=np.float64))
            counts.append(frames.shape[0])
            durations.append(float(result.duration))
        if not failures:
            out[split] = FrameSet(
                task.files(split),
                np.concatenate(xs),
                np.concatenate(ts),
                np.asarray(counts, dtype=np.int64),
                np.asarray(durations, dtype=np.float64),
            )
    if failures:
        shown = "; ".join(failures[:5])
        more = f" (and {len(failures) - 5} more)" if len(failures) > 5 else ""
        raise EmbeddingError(
            f"{len(failures)} of {task.num_files()} files of {task.name} could not be embedded: "
            f"{shown}{more}"
        )
    if path is not None:
        arrays: dict[str, np.ndarray] = {}
        for split, fs in out.items():
            arrays.update(
                {
                    f"X_{split}": fs.x,
                    f"T_{split}": fs.timestamps,
                    f"N_{split}": fs.counts,
                    f"S_{split}": fs.durations,
                    f"files_{split}": np.array(fs.files, dtype=str),
                }
            )
        info = {
            "key": key,
            "label": embedder.label,
            "task": str(task.path),
            "embedder": embedder.fingerprint(timestamps=True),
            "dim": int(next(iter(out.values())).x.shape[1]),
            "frames": {s: int(fs.x.shape[0]) for s, fs in out.items()},
        }
        _write_entry(path, arrays, info, embedder.label, task.name)
    return out, False


def _write_entry(path: Path, arrays, info, label: str, task_name: str) -> None:
    """Write a cache entry; a failure (read-only cache, full disk) is a warning only."""
    try:
        _atomic_savez(path, arrays)
        atomic_write_text(path.with_suffix(".json"), json.dumps(info, indent=2, default=str) + "\n")
    except OSError as err:
        logger.warning(
            "%s / %s: embeddings not cached (%s); they will be computed again next time",
            label,
            task_name,
            err,
        )
        return
    logger.info("%s / %s: cached embeddings in %s", label, task_name, path)
