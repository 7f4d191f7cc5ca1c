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

Event (timestamp) tasks: an event is ``{"label", "start", "end"}`` in ms with
``0 <= start <= end``; a file may have no events. Rules where HEAR's data can be odd, all
documented in docs/evaluation.md:

* events of one label that overlap (or touch) in a file are merged into one event, for the
  frame targets and for scoring alike (a detector outputs one event per run of active frames,
  so two overlapping references of one label could never both be hit); the number merged is
  logged;
* an event that starts after its clip ends is an error naming the file (checked when the clip's
  length is known, see :mod:`.event_probe`); one that ends after the clip is cut at its end;
* ``task_metadata.json`` may give ``evaluation_params.event_postprocessing_grid``
  (``{"median_filter_ms": [...], "min_duration": [...]}``, where hear-preprocess writes it, e.g.
  MAESTRO's ``{150} x {50}``), else HEAR's default grid is used;
* a multiclass event task is probed as multilabel (sigmoid outputs, BCE), as every frame may
  hold no event.

Everything malformed raises :class:`TaskFormatError` (an :class:`~axlstm.core.InputError`)
naming the file and what is wrong: every file is checked before it is read (a named pipe or a
folder in its place is refused by name), text files must be UTF-8 (a byte-order mark is
accepted), split entries must name files inside the task's audio folder ``<rate>/`` (no
absolute path, no ``..``, no symbolic link leading out), and a scene task needs at least two
classes in its vocabulary and in every training set.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import stat
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from axlstm.core.errors import InputError
from axlstm.core.fileio import check_input_file, file_kind
from axlstm.evaluation.metrics import SCORES
from axlstm.evaluation.postprocess import PostProcessing, postprocessing_grid
from axlstm.evaluation.sed import SCORES as EVENT_SCORES

__all__ = [
    "EMBEDDING_TYPES",
    "PREDICTION_TYPES",
    "SPLIT_MODES",
    "DataSplit",
    "Event",
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
_DEFAULT_EVENT_SCORES = ("event_onset_200ms_fms", "segment_1s_er")

#: One event of a file: onset and offset in ms, label.
Event = tuple[float, float, str]


class TaskFormatError(InputError):
    """A task folder that does not follow the HEAR layout, or that cannot be scored (one
    class, files outside the folder); the message names the file."""


class UnsupportedTaskError(InputError):
    """A well-formed task this package cannot use where it was asked to (an event task where
    scene embeddings are needed)."""


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

    @property
    def is_event(self) -> bool:
        return self.embedding_type == "event"

    def postprocessing(self) -> list[PostProcessing]:
        """The post-processing grid of an event task (the task's own, else HEAR's default)."""
        return postprocessing_grid(_grid_spec(self.metadata))

    def events(self, split: str) -> dict[str, list[Event]]:
        """``{file: [(onset ms, offset ms, label), ...]}`` of an event task's split, sorted by
        onset, overlapping events of one label merged (see the module doc)."""
        self.require_event()
        out: dict[str, list[Event]] = {}
        merged = 0
        for name, raw in self.entries[split].items():
            by_label: dict[str, list[list[float]]] = {}
            for ev in sorted(raw, key=lambda e: (float(e["start"]), float(e["end"]))):
                spans = by_label.setdefault(str(ev["label"]), [])
                start, end = float(ev["start"]), float(ev["end"])
                if spans and start <= spans[-1][1]:
                    spans[-1][1] = max(spans[-1][1], end)
                    merged += 1
                else:
                    spans.append([start, end])
            events = [(a, b, label) for label, spans in by_label.items() for a, b in spans]
            out[name] = sorted(events, key=lambda e: (e[0], self.labels.index(e[2])))
        if merged:
            logger.warning(
                "%s/%s.json: %d events overlap an earlier event of the same label in their "
                "file and were merged into it",
                self.name,
                split,
                merged,
            )
        return out

    def require_event(self) -> None:
        if not self.is_event:
            raise UnsupportedTaskError(f"{self.name} is a scene task, not an event task")

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
        if self.is_event:
            raise UnsupportedTaskError(
                f"{self.name} is an event (timestamp) task: it needs timestamp embeddings "
                "(axlstm.evaluation.task_frames), not scene embeddings"
            )

    def check_audio(self) -> None:
        """Raise :class:`TaskFormatError` listing audio files that are missing or are not
        regular files (a named pipe, a folder, a broken or looping link), before any is read."""
        missing: list[str] = []
        unusable: list[str] = []
        for split in self.splits:
            for path in self.audio_paths(split):
                try:
                    st = os.stat(path)
                except FileNotFoundError:
                    missing.append(str(path))
                    continue
                except OSError as err:
                    unusable.append(f"{path} ({err.strerror or err})")
                    continue
                if not stat.S_ISREG(st.st_mode):
                    unusable.append(f"{path} ({file_kind(st.st_mode)})")
        problems = []
        for what, items in (("missing", missing), ("not regular files", unusable)):
            if items:
                shown = ", ".join(items[:5])
                more = f" and {len(items) - 5} more" if len(items) > 5 else ""
                problems.append(f"{len(items)} audio files {what}: {shown}{more}")
        if problems:
            raise TaskFormatError(f"{self.name} ({self.path}): {'; '.join(problems)}")


# ------------------------------------------------------------------------------------ reading
class _DuplicateKeyError(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json.loads`` hook: an object naming a key twice is an error (JSON keeps the last)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKeyError(key)
        out[key] = value
    return out


def _read_text(path: Path, what: str) -> str:
    """The text of a task file, which must be a regular file holding UTF-8 (a byte-order mark
    is accepted and dropped). Checked before any read, so a named pipe cannot block."""
    try:
        check_input_file(path, what, error=TaskFormatError)
    except FileNotFoundError:
        raise TaskFormatError(f"{path}: file not found") from None
    try:
        data = path.read_bytes()
    except OSError as err:
        raise TaskFormatError(f"{path}: cannot read the {what} ({err.strerror or err})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise TaskFormatError(
            f"{path}: the {what} is not UTF-8 text (byte 0x{data[err.start]:02x} at offset "
            f"{err.start}; Latin-1 or another legacy encoding?); save it as UTF-8"
        ) from None
    if not text.strip():
        raise TaskFormatError(f"{path}: the {what} is empty")
    return text


def _read_json(path: Path, what: str) -> Any:
    text = _read_text(path, what)
    try:
        return json.loads(text, object_pairs_hook=_unique_object)
    except json.JSONDecodeError as err:
        raise TaskFormatError(f"{path}: invalid JSON ({err})") from None
    except _DuplicateKeyError as err:
        raise TaskFormatError(
            f"{path}: invalid {what}: the key {err.key!r} appears twice"
        ) from None
    except RecursionError:
        raise TaskFormatError(f"{path}: invalid JSON (nested too deeply)") from None


def _check_choice(meta: dict[str, Any], key: str, choices: Sequence[str], path: Path) -> str:
    if key not in meta:
        raise TaskFormatError(f"{path}: missing key {key!r} (one of {', '.join(choices)})")
    value = meta[key]
    if not isinstance(value, str) or value not in choices:
        raise TaskFormatError(f"{path}: {key} is {value!r}; expected one of {', '.join(choices)}")
    return value


def _check_split_name(name: Any, path: Path) -> str:
    """A split name must be a plain name: ``<name>.json`` and ``<rate>/<name>/`` lie in the
    task folder."""
    if not isinstance(name, str) or not name.strip():
        raise TaskFormatError(f"{path}: 'splits' must list split names (strings), got {name!r}")
    if name in (".", "..") or any(c in name for c in ("/", "\\", "\0")):
        raise TaskFormatError(
            f"{path}: split name {name!r} is not a plain name (a split's files must lie in the "
            "task folder)"
        )
    return name


def _read_metadata(path: Path) -> dict[str, Any]:
    meta = _read_json(path, "task metadata")
    if not isinstance(meta, dict):
        raise TaskFormatError(f"{path}: expected a JSON object, got a JSON {_json_kind(meta)}")
    _check_choice(meta, "embedding_type", EMBEDDING_TYPES, path)
    _check_choice(meta, "prediction_type", PREDICTION_TYPES, path)
    mode = _check_choice(meta, "split_mode", SPLIT_MODES, path)
    splits = meta.get("splits")
    if splits is None and mode == "trainvaltest":
        splits = list(TRAINVALTEST)
    if not isinstance(splits, list):
        raise TaskFormatError(f"{path}: 'splits' must be a list of split names, got {splits!r}")
    splits = [_check_split_name(s, path) for s in splits]
    if len(set(splits)) != len(splits):
        raise TaskFormatError(f"{path}: 'splits' lists a split twice: {splits}")
    nfolds = meta.get("nfolds")
    if nfolds is not None and (isinstance(nfolds, bool) or not isinstance(nfolds, int)):
        raise TaskFormatError(f"{path}: nfolds must be an integer, got {nfolds!r}")
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
        if nfolds is not None and nfolds != len(splits):
            raise TaskFormatError(
                f"{path}: nfolds is {nfolds} but 'splits' lists {len(splits)}: {splits}"
            )
        splits = sorted(splits)
    scores = meta.get("evaluation")
    if scores is not None and (
        not isinstance(scores, list) or not all(isinstance(s, str) and s for s in scores)
    ):
        raise TaskFormatError(f"{path}: 'evaluation' must be a list of score names, got {scores!r}")
    monitor = meta.get("use_scoring_for_early_stopping", True)
    if not isinstance(monitor, bool):
        raise TaskFormatError(
            f"{path}: use_scoring_for_early_stopping must be true or false, got {monitor!r}"
        )
    meta = dict(meta)
    meta["splits"] = splits
    return meta


def _json_kind(value: Any) -> str:
    kinds = {list: "list", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else kinds.get(type(value), type(value).__name__)


def _read_vocabulary(path: Path) -> list[str]:
    text = _read_text(path, "label vocabulary")
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as err:
        raise TaskFormatError(f"{path}: unreadable CSV ({err})") from None
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
        if not row[i_label].strip():
            raise TaskFormatError(f"{path}:{line}: empty label")
        by_index[idx] = row[i_label]
    if not by_index:
        raise TaskFormatError(f"{path}: no labels (only the header)")
    if sorted(by_index) != list(range(len(by_index))):
        raise TaskFormatError(f"{path}: idx must run 0..{len(by_index) - 1} without gaps")
    labels = [by_index[i] for i in range(len(by_index))]
    dup = sorted(label for label, n in Counter(labels).items() if n > 1)
    if dup:
        raise TaskFormatError(f"{path}: labels listed twice: {dup}")
    return labels


def _check_event(event: Any, where: str) -> None:
    if not isinstance(event, dict) or not {"label", "start", "end"} <= set(event):
        raise TaskFormatError(f"{where}: an event needs 'label', 'start' and 'end', got {event!r}")
    try:
        start, end = float(event["start"]), float(event["end"])
    except (TypeError, ValueError):
        raise TaskFormatError(f"{where}: event times must be numbers (ms), got {event!r}") from None
    if not (math.isfinite(start) and math.isfinite(end)):
        raise TaskFormatError(f"{where}: event times must be finite, got {event!r}")
    if start < 0:
        raise TaskFormatError(f"{where}: event starts before the clip (negative time): {event!r}")
    if end < start:
        raise TaskFormatError(f"{where}: event ends before it starts: {event!r}")


def _entry_problem(name: str) -> str | None:
    """Why a split entry cannot name a file under ``<rate>/<split>/``, or None."""
    if not name.strip():
        return "an empty file name"
    if "\0" in name:
        return "a file name holding a NUL character"
    if name.startswith(("/", "\\")) or Path(name).is_absolute():
        return "an absolute path; entries name files under <rate>/<split>/ of the task folder"
    parts = name.replace("\\", "/").split("/")
    if ".." in parts:
        return "a path with '..'; entries name files under <rate>/<split>/ of the task folder"
    if parts[-1] in ("", "."):
        return "a folder, not a file name"
    return None


def _read_split(path: Path, meta: dict[str, Any], vocab: set[str]) -> dict[str, Any]:
    data = _read_json(path, "split file")
    if not isinstance(data, dict):
        raise TaskFormatError(
            f"{path}: expected a JSON object {{file name: labels}}, got a JSON {_json_kind(data)}"
        )
    if not data:
        raise TaskFormatError(f"{path}: the split is empty")
    event = meta["embedding_type"] == "event"
    multiclass = meta["prediction_type"] == "multiclass"
    out: dict[str, Any] = {}
    for name, labels in data.items():
        where = f"{path}: {name}"
        problem = _entry_problem(name)
        if problem:
            raise TaskFormatError(f"{path}: entry {name!r} is {problem}")
        if not isinstance(labels, list):
            raise TaskFormatError(f"{where}: labels must be a list, got {labels!r}")
        if event:
            for ev in labels:
                _check_event(ev, where)
            names = [str(ev["label"]) for ev in labels]
        else:
            if not all(
                isinstance(x, (str, int, float)) and not isinstance(x, bool) for x in labels
            ):
                raise TaskFormatError(f"{where}: labels must be label names, got {labels!r}")
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
    try:
        rates = sorted(
            int(p.name)
            for p in task_dir.iterdir()
            if p.name.isdigit() and int(p.name) and p.is_dir()
        )
    except OSError as err:
        raise TaskFormatError(
            f"{task_dir}: cannot list the folder ({err.strerror or err})"
        ) from None
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


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _check_inside(task_dir: Path, rate: int, entries: dict[str, dict[str, Any]]) -> None:
    """Refuse split entries whose real path (symbolic links resolved) leaves the task's audio
    folder ``<rate>/``: a link to a file elsewhere, or a split folder that is such a link."""
    root = os.path.realpath(task_dir / str(rate))
    for split, files in entries.items():
        folder = task_dir / str(rate) / split
        real_folder = os.path.realpath(folder)
        for name in files:
            path = folder / name
            if "/" in name or "\\" in name or os.path.islink(path):
                real = os.path.realpath(path)
            else:
                real = os.path.join(real_folder, name)  # a plain entry in the split folder
            if not _inside(real, root):
                raise TaskFormatError(
                    f"{task_dir / f'{split}.json'}: entry {name!r}: {path} resolves to {real}, "
                    f"outside the task's audio folder {root}; a task may read only its own files"
                )


def _check_classes(task: Task) -> None:
    """Refuse a scene task that a probe cannot learn anything from: fewer than two labels in
    the vocabulary, or a training set (of any split) whose files all carry the same labels.
    Such a task scores (near) 100 % whatever the embedding and would inflate every mean."""
    if len(task.labels) < 2:
        raise TaskFormatError(
            f"{task.path / VOCAB_NAME}: a single label ({task.labels[0]!r}); a task needs at "
            "least two classes (a one-class probe scores 100 % whatever the embedding)"
        )
    for i, split in enumerate(task.data_splits()):
        seen: set[frozenset[str]] = set()
        for name in split.train:
            seen.update(frozenset(map(str, labels)) for labels in task.entries[name].values())
            if len(seen) > 1:
                break
        if len(seen) < 2:
            only = sorted(next(iter(seen))) if seen else []
            files = ", ".join(f"{s}.json" for s in split.train)
            which = (
                f" (split {i}: test {split.test[0]}, valid {split.valid[0]})"
                if task.is_kfold
                else ""
            )
            raise TaskFormatError(
                f"{task.path}: every training file{which} in {files} has the labels {only}; "
                "a probe needs at least two classes to train on (a one-class task scores "
                "100 % whatever the embedding)"
            )


def load_task(path: str | Path, preferred_rate: int = PREFERRED_RATE) -> Task:
    """Read and validate a HEAR task folder.

    Every file is checked before it is read (a named pipe or a folder in place of a file is
    refused by name); split entries must name files inside the task's audio folder; scene
    tasks need at least two classes in every training set.

    Raises:
        TaskFormatError: anything malformed; the message names the file.
    """
    task_dir = Path(path)
    _check_folder(task_dir)
    meta_path = task_dir / METADATA_NAME
    if not os.path.lexists(meta_path):
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
    event = meta["embedding_type"] == "event"
    default = list(_DEFAULT_EVENT_SCORES) if event else [_DEFAULT_SCORES[meta["prediction_type"]]]
    requested = meta.get("evaluation") or default
    if event:
        unknown = [s for s in requested if s not in EVENT_SCORES]
        if unknown:
            raise TaskFormatError(
                f"{meta_path}: unknown scores {unknown} for an event task; known: "
                f"{', '.join(EVENT_SCORES)}"
            )
        if not EVENT_SCORES[requested[0]].maximize:
            raise TaskFormatError(
                f"{meta_path}: the primary (first) score {requested[0]!r} is one to minimise; "
                "list a score to maximise first (e.g. event_onset_200ms_fms)"
            )
        scores = list(requested)
        try:
            postprocessing_grid(_grid_spec(meta))
        except (ValueError, TypeError, AttributeError) as err:
            raise TaskFormatError(
                f"{meta_path}: evaluation_params.event_postprocessing_grid: {err}"
            ) from None
    else:
        unknown = [s for s in requested if s not in SCORES]
        if unknown:
            raise TaskFormatError(
                f"{meta_path}: unknown scores {unknown} for a scene task; known: "
                f"{', '.join(SCORES)}"
            )
        scores = list(requested)
    rate = _audio_rate(task_dir, meta["splits"], preferred_rate)
    _check_inside(task_dir, rate, entries)
    task = Task(
        path=task_dir,
        name=task_dir.resolve().name,
        metadata=meta,
        labels=labels,
        splits=list(meta["splits"]),
        scores=scores,
        sample_rate=rate,
        entries=entries,
    )
    if task.is_event:
        _check_events(task)
    else:
        _check_classes(task)
    return task


def _grid_spec(meta: dict[str, Any]) -> Any:
    """The post-processing grid of the metadata, where hear-preprocess puts it
    (``evaluation_params.event_postprocessing_grid``), or None for HEAR's default."""
    params = meta.get("evaluation_params")
    if params is None:
        return None
    if not isinstance(params, dict):
        raise TypeError(f"evaluation_params must be a JSON object, got {params!r}")
    return params.get("event_postprocessing_grid")


def _check_events(task: Task) -> None:
    """Refuse an event task whose training set (of any split) holds no event: a frame probe
    would learn that nothing ever happens."""
    for i, split in enumerate(task.data_splits()):
        if not any(task.entries[name][f] for name in split.train for f in task.entries[name]):
            which = f" (split {i})" if task.is_kfold else ""
            files = ", ".join(f"{s}.json" for s in split.train)
            raise TaskFormatError(
                f"{task.path}: the training files{which} in {files} hold no event; a frame "
                "probe needs events to learn from"
            )


def _check_folder(folder: Path) -> None:
    try:
        st = os.stat(folder)
    except FileNotFoundError:
        raise TaskFormatError(f"{folder}: task folder not found") from None
    except OSError as err:
        raise TaskFormatError(
            f"{folder}: cannot open the task folder ({err.strerror or err})"
        ) from None
    if not stat.S_ISDIR(st.st_mode):
        raise TaskFormatError(f"{folder}: it is {file_kind(st.st_mode)}, not a task folder")


def find_tasks(path: str | Path) -> list[Path]:
    """Task folders named by ``path``: the folder itself when it holds ``task_metadata.json``,
    else its immediate sub-folders that do (sorted; hidden ones, e.g. unfinished built-in
    tasks, are skipped).

    Raises:
        TaskFormatError: ``path`` is not a folder or holds no task.
    """
    root = Path(path)
    _check_folder(root)
    if os.path.lexists(root / METADATA_NAME):
        return [root]
    try:
        found = sorted(
            p
            for p in root.iterdir()
            if not p.name.startswith(".") and p.is_dir() and os.path.lexists(p / METADATA_NAME)
        )
    except OSError as err:
        raise TaskFormatError(f"{root}: cannot list the folder ({err.strerror or err})") from None
    if not found:
        raise TaskFormatError(
            f"{root}: neither a HEAR task folder nor a folder of them (no {METADATA_NAME})"
        )
    return found
