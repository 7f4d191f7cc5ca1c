"""Indexable data sources: a folder scan, a manifest, or the procedural corpus.

An indexable source has a length and turns item ``i`` into one normalised crop given a
``numpy.random.Generator`` (for the crop offset). Streams of shards live in
:mod:`axlstm.data.shards`.

File lists are held in a :class:`PathTable` (one bytes buffer plus offsets) rather than a
Python list: with millions of paths a list of ``str`` objects is slowly copied into every
DataLoader worker as reference counts touch its pages; two numpy arrays are not.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

from axlstm.audio import AUDIO_EXTENSIONS, AudioLoadError, load_audio
from axlstm.data.clips import BadItem, ClipProcessor
from axlstm.data.procedural import ProceduralCorpus

__all__ = [
    "FEATURE_EXTENSIONS",
    "MANIFEST_EXTENSIONS",
    "FileSource",
    "PathTable",
    "ProceduralSource",
    "load_item",
    "read_audio_file",
    "read_manifest",
    "scan_folder",
]

logger = logging.getLogger(__name__)

#: Files holding a precomputed, unnormalised log-mel array (T, 80).
FEATURE_EXTENSIONS = (".npy",)
#: Manifest formats: CSV/TSV with a header naming a ``path`` column, or JSON lines.
MANIFEST_EXTENSIONS = (".csv", ".tsv", ".jsonl", ".ndjson")


class PathTable:
    """An immutable list of strings stored as one UTF-8 buffer and an offsets array."""

    def __init__(self, items: Iterable[str]) -> None:
        encoded = [s.encode("utf-8") for s in items]
        self._offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(b) for b in encoded], out=self._offsets[1:])
        self._buffer = np.frombuffer(b"".join(encoded), dtype=np.uint8).copy()

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, i: int) -> str:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} items")
        i %= len(self)
        return self._buffer[self._offsets[i] : self._offsets[i + 1]].tobytes().decode("utf-8")

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    @classmethod
    def concat(cls, tables: Sequence[PathTable]) -> PathTable:
        return cls(s for t in tables for s in t)


def _wanted(name: str, extensions: Sequence[str]) -> bool:
    return os.path.splitext(name)[1].lower() in extensions


def scan_folder(root: str | Path, extensions: Sequence[str] | None = None) -> list[str]:
    """Every file under ``root`` (recursively) with a known audio or feature extension.

    The order is deterministic: directories and files sorted by name at every level, so two
    machines scanning the same tree get the same list. Hidden files and folders are ignored.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder not found: {root}")
    exts = tuple(extensions or (*AUDIO_EXTENSIONS, *FEATURE_EXTENSIONS))
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(
            os.path.join(dirpath, f)
            for f in sorted(filenames)
            if not f.startswith(".") and _wanted(f, exts)
        )
    return found


def read_manifest(path: str | Path) -> tuple[list[str], list[float | None]]:
    """Paths (and optional durations in seconds) listed in a CSV/TSV or JSON-lines manifest.

    CSV/TSV need a header with a ``path`` column (``file`` and ``filename`` are accepted too)
    and may have a ``duration`` column. JSON lines hold one object per line with the same
    keys. Relative paths are resolved against the manifest's folder.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path}")
    base = path.parent
    rows: list[dict] = []
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}:{lineno}: invalid JSON ({err})") from err
                if isinstance(row, str):
                    row = {"path": row}
                if not isinstance(row, dict):
                    raise ValueError(f"{path}:{lineno}: expected an object with a 'path' key")
                rows.append(row)
    elif suffix in (".csv", ".tsv"):
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ",")
            rows = list(reader)
            header = reader.fieldnames or []
        if not ({"path", "file", "filename"} & set(header)):
            raise ValueError(f"{path}: the header needs a 'path' column, found {header}")
    else:
        raise ValueError(f"{path}: unknown manifest type; use one of {MANIFEST_EXTENSIONS}")
    paths: list[str] = []
    durations: list[float | None] = []
    for i, row in enumerate(rows):
        p = row.get("path") or row.get("file") or row.get("filename")
        if not p:
            raise ValueError(f"{path}: entry {i + 1} has no path")
        p = os.path.expanduser(str(p))
        paths.append(p if os.path.isabs(p) else str(base / p))
        d = row.get("duration")
        durations.append(float(d) if d not in (None, "") else None)
    return paths, durations


def read_audio_file(path: str, sample_rate: int) -> torch.Tensor:
    """:func:`axlstm.audio.load_audio` with failures turned into :class:`BadItem` reasons."""
    try:
        return load_audio(path, sample_rate)
    except FileNotFoundError:
        raise BadItem("missing", path) from None
    except AudioLoadError as err:
        msg = str(err)
        if "empty" in msg or "no samples" in msg:
            reason = "empty"
        elif "non-finite" in msg:
            reason = "nonfinite"
        else:
            reason = "unreadable"
        raise BadItem(reason, path, msg.split(": ", 1)[-1]) from None
    except OSError as err:
        raise BadItem("unreadable", path, str(err)) from None


def load_item(path: str, processor: ClipProcessor, rng: np.random.Generator) -> torch.Tensor:
    """One normalised crop ``(1, frames, n_mels)`` of an audio or ``.npy`` feature file.

    Raises:
        BadItem: with the reason the file cannot be used.
    """
    if _wanted(path, FEATURE_EXTENSIONS):
        try:
            feats = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            raise BadItem("missing", path) from None
        except (OSError, ValueError) as err:
            reason = "empty" if os.path.exists(path) and os.path.getsize(path) == 0 else None
            raise BadItem(reason or "unreadable", path, str(err)) from None
        return processor.from_features(feats, rng, path)
    wave = read_audio_file(path, processor.sample_rate)
    return processor.from_wave(wave, rng, path)


class FileSource:
    """Audio or feature files addressed by index (folder scans and manifests concatenated)."""

    kind = "files"

    def __init__(self, paths: Sequence[str] | PathTable, description: str = "files") -> None:
        self.paths = paths if isinstance(paths, PathTable) else PathTable(paths)
        if len(self.paths) == 0:
            raise ValueError(f"no audio files found in {description}")
        self.description = description

    def __len__(self) -> int:
        return len(self.paths)

    def name(self, index: int) -> str:
        return self.paths[index]

    def load(self, index: int, processor: ClipProcessor, rng: np.random.Generator):
        return load_item(self.paths[index], processor, rng)


class ProceduralSource:
    """The built-in synthetic corpus as an indexable source."""

    kind = "procedural"

    def __init__(self, corpus: ProceduralCorpus) -> None:
        self.corpus = corpus
        self.description = f"procedural corpus (seed {corpus.seed}, {corpus.size:,} clips)"

    def __len__(self) -> int:
        return len(self.corpus)

    def name(self, index: int) -> str:
        return f"procedural:{index}"

    def load(self, index: int, processor: ClipProcessor, rng: np.random.Generator):
        wave, _ = self.corpus.clip(index)
        return processor.from_wave(wave, rng, self.name(index))
