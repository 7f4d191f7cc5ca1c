"""Indexable data sources: a folder scan, a manifest, or the procedural corpus.

Folders and manifests are read by the package's one reader (:mod:`axlstm.audio.listing`).
An indexable source has a length and turns item ``i`` into one normalised crop given a
``numpy.random.Generator`` (for the crop offset). Streams of shards live in
:mod:`axlstm.data.shards`.

File lists are held in a :class:`PathTable` (one bytes buffer plus offsets) rather than a
Python list: with millions of paths a list of ``str`` objects is slowly copied into every
DataLoader worker as reference counts touch its pages; two numpy arrays are not.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence

import numpy as np
import torch

from axlstm.audio import load_audio
from axlstm.audio.listing import (
    AUDIO_EXTENSIONS,
    MANIFEST_EXTENSIONS,
    read_manifest,
    scan_folder,
)
from axlstm.core.errors import AxlstmError, InputError
from axlstm.data.clips import BadItem, ClipProcessor
from axlstm.data.procedural import ProceduralCorpus

__all__ = [
    "FEATURE_EXTENSIONS",
    "MANIFEST_EXTENSIONS",
    "TRAINING_EXTENSIONS",
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
#: What a folder of training data contributes: audio files and feature arrays.
TRAINING_EXTENSIONS = (*AUDIO_EXTENSIONS, *FEATURE_EXTENSIONS)


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


def read_audio_file(path: str, sample_rate: int) -> torch.Tensor:
    """:func:`axlstm.audio.load_audio` with failures turned into :class:`BadItem` reasons."""
    try:
        return load_audio(path, sample_rate)
    except FileNotFoundError:
        raise BadItem("missing", path) from None
    except AxlstmError as err:  # AudioError, or a path refused before reading (a pipe, a loop)
        msg = str(err)
        if "empty" in msg or "no samples" in msg:
            reason = "empty"
        elif "non-finite" in msg:
            reason = "nonfinite"
        else:
            reason = "unreadable"
        raise BadItem(reason, path, msg.split(": ", 1)[-1]) from None
    except (OSError, ValueError) as err:
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
            raise InputError(
                f"no audio or .npy feature files found in {description} (0 files with the "
                f"extensions {', '.join(TRAINING_EXTENSIONS)})"
            )
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
