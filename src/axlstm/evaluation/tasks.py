"""HEAR task folders, read as hear-eval-kit publishes them.

A task folder (``hearpreprocess`` output, e.g. ``esc50-v2.0.0-full/``) holds

* ``task_metadata.json``: ``embedding_type`` ("scene" or "event"), ``prediction_type``
  ("multiclass" or "multilabel"), ``split_mode`` ("trainvaltest", "new_split_kfold" or
  "presplit_kfold"), ``splits`` (split names, e.g. ``["fold00", ..., "fold04"]``),
  ``evaluation`` (score names, the first one is primary), ``sample_duration`` and more;
* ``labelvocabulary.csv``: a header ``idx,label`` and one row per class, idx 0..C-1;
* ``<split>.json`` per split: ``{file name: labels}``; labels are a list of label strings for
  scene tasks and a list of ``{"label", "start", "end"}`` events (ms) for event tasks;
* audio under ``<sample rate>/<split>/<file name>``. HEAR ships 16000 and 48000 (and others);
  16000 is used when present, otherwise any rate is read and resampled to 16 kHz.

Splits follow hear-eval-kit (``get_splits_from_metadata``): one train/valid/test split, or for
k-fold tasks k splits where (folds sorted) fold i is test, fold i+1 (mod k) validation and the
rest training.

Everything malformed raises :class:`TaskFormatError` naming the file and what is wrong.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from axlstm.evaluation.metrics import EVENT_SCORES, SCORES

__all__ = [
    "EMBEDDING_TYPES",
    "PREDICTION_TYPES",
    "SPLIT_MODES",
    "DataSplit",
    "Task",
    "TaskFormatError",
    "UnsupportedTaskError",
    "find_tasks",
    "load_task",
]

logger = logging.getLogger(__name__)

METADATA_NAME = "task_metadata.json"
VOCAB_NAME = "labelvocabulary.csv"
EMBEDDING_TYPES = ("scene", "event")
PREDICTION_TYPES = ("multiclass", "multilabel")
SPLIT_MODES = ("trainvaltest", "new_split_kfold", "presplit_kfold")
TRAINVALTEST = ("train", "valid", "test")
PREFERRED_RATE = 16000
_DEFAULT_SCORES = {"multiclass": "top1_acc", "multilabel": "mAP"}


class TaskFormatError(ValueError):
    """A task folder that does not follow the HEAR layout; the message names the file."""


class UnsupportedTaskError(ValueError):
    """A well-formed task this package cannot score (event tasks)."""


@dataclass(frozen=True)
class DataSplit:
    """Which splits train, validate and test one probe (one fold of a k-fold task)."""

    train: tuple[str, ...]
    valid: tuple[str, ...]
    test: tuple[str, ...]


@dataclass
class Task:
    """A HEAR task folder, validated.

    Attributes:
        path: the task folder.
        name: the folder name (unique within a task collection, used as the report key).
        metadata: the parsed ``task_metadata.json``.
        labels: the label vocabulary, index i = class i.
        splits: split names, sorted for k-fold tasks.
        scores: score names to compute, primary first (supported ones only).
        sample_rate: the audio folder used (16000 when present).
        entries: per split, ``{file name: labels}`` in file order (labels as stored: a list of
            label strings, or of event dicts for event tasks).
    """

    path: Path
    name: str
    metadata: dict[str, Any]
    labels: list[str]
    splits: list[str]
    scores: list[str]
    sample_rate: int
    entries: dict[str, dict[str, Any]] = field(repr=False)

    # ------------------------------------------------------------------------------ properties
    @property
    def embedding_type(self) -> str:
        return self.metadata["embedding_type"]

    @property
    def prediction_type(self) -> str:
        return self.metadata["prediction_type"]

    @property
    def split_mode(self) -> str:
        return self.metadata["split_mode"]

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @property
    def primary_score(self) -> str:
        return self.scores[0]

    @property
    def monitor_score(self) -> bool:
        """Whether early stopping monitors the primary score (HEAR's default) or the loss."""
        return bool(self.metadata.get("use_scoring_for_early_stopping", True))

    @property
    def is_kfold(self) -> bool:
        return self.split_mode != "trainvaltest"

    def num_files(self) -> int:
        return sum(len(e) for e in self.entries.values())

    def describe(self) -> str:
        """One line: name, type, classes, splits and clip counts."""
        counts = ", ".join(f"{s} {len(self.entries[s])}" for s in self.splits)
        return (
            f"{self.name}: {self.embedding_type} {self.prediction_type}, {self.num_classes} "
            f"classes, {self.split_mode} ({counts}), scores {', '.join(self.scores)}, audio "
            f"{self.sample_rate} Hz"
        )

    # --------------------------------------------------------------------------------- access
    def data_splits(self) -> list[DataSplit]:
        """The train/valid/test assignments, as hear-eval-kit makes them."""
        if not self.is_kfold:
            return [DataSplit(("train",), ("valid",), ("test",))]
        folds = self.splits
        k = len(folds)
        out = []
        for i in range(k):
            test, valid = folds[i], folds[(i + 1) % k]
            train = tuple(f for f in folds if f not in (test, valid))
            out.append(DataSplit(train, (valid,), (test,)))
        return out

    def files(self, split: str) -> list[str]:
        """File names of ``split``, in the order of its JSON file."""
        return list(self.entries[split])

    def audio_path(self, split: str, filename: str) -> Path:
        return self.path / str(self.sample_rate) / split / filename

    def audio_paths(self, split: str) -> list[Path]:
        return [self.audio_path(split, f) for f in self.entries[split]]

    def targets(self, split: str) -> np.ndarray:
        """(N, C) float32 multi-hot targets of ``split`` (one-hot for multiclass), scene tasks."""
        self.require_scene()
        index = {label: i for i, label in enumerate(self.labels)}
        entries = self.entries[split]
        y = np.zeros((len(entries), self.num_classes), dtype=np.float32)
        for row, labels in enumerate(entries.values()):
            for label in labels:
                y[row, index[str(label)]] = 1.0
        return y

    def require_scene(self) -> None:
        """Raise :class:`UnsupportedTaskError` for event (timestamp) tasks."""
        if self.embedding_type == "event":
            raise UnsupportedTaskError(
                f"{self.name} is an event (timestamp) task; axlstm evaluate probes scene "
                "embeddings only. HEAR scores event tasks by onset F1 "
                f"({', '.join(s for s in EVENT_SCORES if 'onset' in s)}) from frame-level "
                "predictions, which is not implemented here: use hear-eval-kit on "
                "`axlstm.hear` embeddings for this task"
            )

    def check_audio(self) -> None:
        """Raise :class:`TaskFormatError` listing audio files that are missing."""
        missing = [p for s in self.splits for p in self.audio_paths(s) if not p.is_file()]
        if missing:
            shown = ", ".join(str(p) for p in missing[:5])
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise TaskFormatError(f"{self.name}: {len(missing)} audio files missing: {shown}{more}")


# ------------------------------------------------------------------------------------ reading
def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise TaskFormatError(f"{path}: file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise TaskFormatError(f"{path}: invalid JSON ({err})") from err
    except UnicodeDecodeError as err:
        raise TaskFormatError(f"{path}: not UTF-8 text ({err})") from err


def _check_choice(meta: dict[str, Any], key: str, choices: Sequence[str], path: Path) -> str:
    if key not in meta:
        raise TaskFormatError(f"{path}: missing key {key!r} (one of {', '.join(choices)})")
    value = meta[key]
    if value not in choices:
        raise TaskFormatError(f"{path}: {key} is {value!r}; expected one of {', '.join(choices)}")
    return value


def _read_metadata(path: Path) -> dict[str, Any]:
    meta = _read_json(path)
    if not isinstance(meta, dict):
        raise TaskFormatError(f"{path}: expected a JSON object, got {type(meta).__name__}")
    _check_choice(meta, "embedding_type", EMBEDDING_TYPES, path)
    _check_choice(meta, "prediction_type", PREDICTION_TYPES, path)
    mode = _check_choice(meta, "split_mode", SPLIT_MODES, path)
    splits = meta.get("splits")
    if splits is None and mode == "trainvaltest":
        splits = list(TRAINVALTEST)
    if not isinstance(splits, list) or not all(isinstance(s, str) and s for s in splits):
        raise TaskFormatError(f"{path}: 'splits' must be a list of split names, got {splits!r}")
    if len(set(splits)) != len(splits):
        raise TaskFormatError(f"{path}: 'splits' lists a split twice: {splits}")
    if mode == "trainvaltest":
        if sorted(splits) != sorted(TRAINVALTEST):
            raise TaskFormatError(
                f"{path}: split_mode trainvaltest needs splits train, valid, test; got {splits}"
            )
        splits = list(TRAINVALTEST)
    else:
        if len(splits) < 3:
            raise TaskFormatError(
                f"{path}: a k-fold task needs at least 3 folds (test, validation, training), "
                f"got {splits}"
            )
        nfolds = meta.get("nfolds")
        if nfolds is not None and nfolds != len(splits):
            raise TaskFormatError(f"{path}: nfolds is {nfolds} but 'splits' lists {len(splits)}")
        splits = sorted(splits)
    meta = dict(meta)
    meta["splits"] = splits
    return meta


def _read_vocabulary(path: Path) -> list[str]:
    if not path.is_file():
        raise TaskFormatError(f"{path}: file not found")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except (UnicodeDecodeError, csv.Error) as err:
        raise TaskFormatError(f"{path}: unreadable CSV ({err})") from err
    if not rows:
        raise TaskFormatError(f"{path}: empty file; expected a header 'idx,label'")
    header = [h.strip() for h in rows[0]]
    if "idx" not in header or "label" not in header:
        raise TaskFormatError(f"{path}: header {rows[0]} lacks 'idx' and 'label' columns")
    i_idx, i_label = header.index("idx"), header.index("label")
    by_index: dict[int, str] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) <= max(i_idx, i_label):
            raise TaskFormatError(f"{path}:{line}: expected idx and label, got {row}")
        try:
            idx = int(row[i_idx])
        except ValueError:
            raise TaskFormatError(f"{path}:{line}: idx {row[i_idx]!r} is not an integer") from None
        if idx in by_index:
            raise TaskFormatError(f"{path}:{line}: idx {idx} appears twice")
        by_index[idx] = row[i_label]
    if not by_index:
        raise TaskFormatError(f"{path}: no labels")
    if sorted(by_index) != list(range(len(by_index))):
        raise TaskFormatError(f"{path}: idx must run 0..{len(by_index) - 1} without gaps")
    labels = [by_index[i] for i in range(len(by_index))]
    if len(set(labels)) != len(labels):
        dup = sorted({x for x in labels if labels.count(x) > 1})
        raise TaskFormatError(f"{path}: labels listed twice: {dup}")
    return labels


def _check_event(event: Any, where: str) -> None:
    if not isinstance(event, dict) or not {"label", "start", "end"} <= set(event):
        raise TaskFormatError(f"{where}: an event needs 'label', 'start' and 'end', got {event!r}")
    try:
        start, end = float(event["start"]), float(event["end"])
    except (TypeError, ValueError):
        raise TaskFormatError(f"{where}: event times must be numbers (ms), got {event!r}") from None
    if not (math.isfinite(start) and math.isfinite(end)) or end < start:
        raise TaskFormatError(f"{where}: event ends before it starts: {event!r}")


def _read_split(path: Path, meta: dict[str, Any], vocab: set[str]) -> dict[str, Any]:
    data = _read_json(path)
    if not isinstance(data, dict):
        raise TaskFormatError(f"{path}: expected a JSON object {{file name: labels}}")
    if not data:
        raise TaskFormatError(f"{path}: the split is empty")
    event = meta["embedding_type"] == "event"
    multiclass = meta["prediction_type"] == "multiclass"
    out: dict[str, Any] = {}
    for name, labels in data.items():
        where = f"{path}: {name}"
        if not isinstance(labels, list):
            raise TaskFormatError(f"{where}: labels must be a list, got {labels!r}")
        if event:
            for ev in labels:
                _check_event(ev, where)
            names = [str(ev["label"]) for ev in labels]
        else:
            names = [str(x) for x in labels]
            if multiclass and len(names) != 1:
                raise TaskFormatError(
                    f"{where}: a multiclass task needs exactly one label per file, got {labels}"
                )
        unknown = sorted(set(names) - vocab)
        if unknown:
            raise TaskFormatError(f"{where}: labels {unknown} are not in {VOCAB_NAME}")
        out[name] = labels
    return out


def _audio_rate(task_dir: Path, splits: Sequence[str], preferred: int) -> int:
    rates = sorted(
        int(p.name) for p in task_dir.iterdir() if p.is_dir() and p.name.isdigit() and int(p.name)
    )
    usable = [r for r in rates if all((task_dir / str(r) / s).is_dir() for s in splits)]
    if not usable:
        found = ", ".join(str(r) for r in rates) or "none"
        raise TaskFormatError(
            f"{task_dir}: no audio folder <rate>/<split>/ holding every split "
            f"({', '.join(splits)}); rate folders found: {found}"
        )
    if preferred in usable:
        return preferred
    chosen = min(usable, key=lambda r: (r < preferred, abs(r - preferred)))
    logger.info("%s: no %d Hz audio; reading %d Hz and resampling", task_dir, preferred, chosen)
    return chosen


def load_task(path: str | Path, preferred_rate: int = PREFERRED_RATE) -> Task:
    """Read and validate a HEAR task folder.

    Raises:
        TaskFormatError: anything malformed; the message names the file.
    """
    task_dir = Path(path)
    if not task_dir.is_dir():
        raise TaskFormatError(f"{task_dir}: task folder not found")
    meta_path = task_dir / METADATA_NAME
    if not meta_path.is_file():
        raise TaskFormatError(f"{task_dir}: not a HEAR task folder (no {METADATA_NAME})")
    meta = _read_metadata(meta_path)
    labels = _read_vocabulary(task_dir / VOCAB_NAME)
    vocab = set(labels)
    entries = {s: _read_split(task_dir / f"{s}.json", meta, vocab) for s in meta["splits"]}
    seen: dict[str, str] = {}
    for split, files in entries.items():
        for name in files:
            if name in seen:
                raise TaskFormatError(
                    f"{task_dir}: file {name} is in both {seen[name]}.json and {split}.json"
                )
            seen[name] = split
    requested = meta.get("evaluation") or [_DEFAULT_SCORES[meta["prediction_type"]]]
    if not isinstance(requested, list) or not all(isinstance(s, str) for s in requested):
        raise TaskFormatError(f"{meta_path}: 'evaluation' must be a list of score names")
    if meta["embedding_type"] == "event":
        scores = list(requested)
    else:
        unknown = [s for s in requested if s not in SCORES]
        if unknown:
            raise TaskFormatError(
                f"{meta_path}: unknown scores {unknown} for a scene task; known: "
                f"{', '.join(SCORES)}"
            )
        scores = list(requested)
    rate = _audio_rate(task_dir, meta["splits"], preferred_rate)
    return Task(
        path=task_dir,
        name=task_dir.resolve().name,
        metadata=meta,
        labels=labels,
        splits=list(meta["splits"]),
        scores=scores,
        sample_rate=rate,
        entries=entries,
    )


def find_tasks(path: str | Path) -> list[Path]:
    """Task folders named by ``path``: the folder itself when it holds ``task_metadata.json``,
    else its immediate sub-folders that do (sorted).

    Raises:
        TaskFormatError: ``path`` is not a folder or holds no task.
    """
    root = Path(path)
    if not root.is_dir():
        raise TaskFormatError(f"{root}: task folder not found")
    if (root / METADATA_NAME).is_file():
        return [root]
    found = sorted(p for p in root.iterdir() if p.is_dir() and (p / METADATA_NAME).is_file())
    if not found:
        raise TaskFormatError(
            f"{root}: neither a HEAR task folder nor a folder of them (no {METADATA_NAME})"
        )
    return found
