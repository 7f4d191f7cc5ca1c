"""Labelled audio for fine-tuning, from the forms people have it in.

:func:`load_labelled` reads, detected from its ``source``:

- a **HEAR task folder** (with ``task_metadata.json``), by :func:`axlstm.evaluation.load_task`
  and its checks, in the task's class order; event (timestamp) tasks are refused;
- a **manifest** (``.csv``, ``.tsv``, ``.jsonl``; UTF-8, a byte-order mark allowed): a path
  column (``path``/``file``/``filename``; relative to the manifest's folder), a label column
  (several labels split by the delimiter; a JSON list in JSONL), an optional split column
  (``train``/``training``, ``valid``/``validation``/``val``/``dev``, ``test``/``testing``, or
  folds ``fold1``/``fold_02``/``3``, renamed ``fold01``...: k-fold data; default: train);
- a **folder of class folders** (class = sub-folder name, audio found recursively), or of
  ``train/`` (``valid/``, ``test/``) folders holding class folders. Hidden folders are skipped,
  empty class folders ignored (warned), loose audio beside class folders a counted skip.

Vocabulary: sorted names (HEAR: the task's order). Paths are absolute. Data with a train split
and no valid split gets ``valid_fraction`` of its training clips as valid split (seeded,
stratified by class, every class keeps a training clip).

Bad input is an :class:`~axlstm.core.InputError` naming the file (and line): an empty label,
several labels in multiclass data, an unknown split, a class with no training clip (k-fold:
clips in fewer than two folds), a missing or empty fold, fewer than two classes, no clips.
A row whose file is missing or not a regular file is skipped (``skipped["missing file"]``,
``["unusable file"]``) or, with ``missing="error"``, an error; a file listed twice is kept
under its first name (``skipped["duplicate"]``).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from axlstm.audio import listing
from axlstm.core.errors import InputError, UsageError
from axlstm.core.fileio import check_input_file
from axlstm.evaluation import UnsupportedTaskError, load_task
from axlstm.evaluation.tasks import METADATA_NAME

__all__ = ["LabelledData", "LabelledItem", "load_labelled", "subset_training"]

logger = logging.getLogger(__name__)

_SPLIT_ALIASES = {
    **dict.fromkeys(("train", "training"), "train"),
    **dict.fromkeys(("valid", "validation", "val", "dev"), "valid"),
    **dict.fromkeys(("test", "testing"), "test"),
}
_FOLD = re.compile(r"(?:fold)?[ _-]?(\d+)", re.IGNORECASE)


@dataclass(frozen=True)
class LabelledItem:
    """One clip: its file and its classes (indices into the vocabulary, ascending)."""

    path: str
    labels: tuple[int, ...]


@dataclass
class LabelledData:
    """Labelled clips in splits (``train``/``valid``/``test``, or folds), with their vocabulary.

    Attributes:
        vocabulary: class names; index = class id.
        multilabel: several labels per clip (else exactly one).
        splits: split (or fold) name -> clips, in source order.
        folds: the fold names in order for k-fold data, else None.
        source: what was read (kind and path; how a valid split was drawn), for logs and runs.
        skipped: reason -> entries skipped (paths), already logged.
    """

    vocabulary: list[str]
    multilabel: bool
    splits: dict[str, list[LabelledItem]]
    folds: list[str] | None
    source: str
    skipped: dict[str, list[str]] = field(default_factory=dict)

    def targets(self, items: Sequence[LabelledItem]) -> np.ndarray:
        """(N, K) float32 targets: one-hot (multiclass) or multi-hot (multilabel)."""
        y = np.zeros((len(items), len(self.vocabulary)), dtype=np.float32)
        for row, item in enumerate(items):
            y[row, list(item.labels)] = 1.0
        return y

    def fold_name(self, fold: str) -> str:
        """The fold ``fold`` names, written as the manifest wrote it ("fold1", "1") or as
        :attr:`folds` names it ("fold01"); a :class:`UsageError` for an unknown one."""
        if self.folds is None:
            raise UsageError(f"{self.source}: not k-fold data (splits: {', '.join(self.splits)})")
        name = fold if fold in self.folds else _fold_alias(str(fold))
        if name not in self.folds:
            raise UsageError(f"unknown fold {fold!r}; the folds are {', '.join(self.folds)}")
        return name

    def fold_split(
        self, test_fold: str, *, valid_fraction: float = 0.0, seed: int = 0
    ) -> dict[str, list[LabelledItem]]:
        """The k-fold arrangement with ``test_fold`` held out: ``{"train": the other folds,
        "test": that fold}``. No valid split by default (SSAST's ESC-50 recipe evaluates on the
        held-out fold); ``valid_fraction`` > 0 draws one from the training folds (seeded,
        stratified). ``test_fold`` may be written as the manifest wrote it ("fold1", "1").
        """
        name = self.fold_name(test_fold)
        train = [item for f in self.folds if f != name for item in self.splits[f]]
        out = {"train": train}
        if valid_fraction > 0:
            out["train"], valid = _draw_valid(train, valid_fraction, seed)
            if valid:
                out["valid"] = valid
        out["test"] = list(self.splits[name])
        return out

    def counts(self, split: str) -> np.ndarray:
        """(K,) int64: clips per class in ``split`` (a split or fold name)."""
        if split not in self.splits:
            raise UsageError(f"no split {split!r}; the splits are {', '.join(self.splits)}")
        return _class_counts(self.splits[split], len(self.vocabulary))

    def describe(self) -> str:
        """One line: source, task type, classes, clips per split, skips."""
        kind = "multilabel" if self.multilabel else "multiclass"
        sizes = ", ".join(f"{s} {len(v)}" for s, v in self.splits.items())
        layout = f"{len(self.folds)}-fold" if self.folds else "splits"
        text = f"{self.source}: {kind}, {len(self.vocabulary)} classes, {layout} ({sizes})"
        if self.skipped:
            reasons = ", ".join(f"{r} {len(e)}" for r, e in self.skipped.items())
            text += f", skipped {sum(map(len, self.skipped.values()))} ({reasons})"
        return text


@dataclass
class _Row:
    where: str  # "file:line" (or the file) for messages
    path: str
    labels: list[str]
    split: str


def _fold_alias(text: str) -> str | None:
    m = _FOLD.fullmatch(text.strip())
    return f"fold{int(m.group(1)):02d}" if m else None


def _labels(value: Any, delimiter: str, where: str, column: str) -> list[str]:
    parts = value if isinstance(value, list) else [] if value is None else [value]
    if not all(isinstance(p, (str, int)) and not isinstance(p, bool) for p in parts):
        raise InputError(f"{where}: labels must be names, got {value!r}")
    if not isinstance(value, list):
        parts = [x for p in parts for x in str(p).split(delimiter)]
    labels = list(dict.fromkeys(x for x in (str(p).strip() for p in parts) if x))
    if not labels:
        raise InputError(f"{where}: empty label (column {column!r})")
    return labels


# ------------------------------------------------------------------------------- the sources
def _manifest_rows(path: Path, label_column: str, split_column: str, delimiter: str) -> list[_Row]:
    suffix = path.suffix.lower()
    text = listing._read_text(path)
    records: list[tuple[int, dict[str, Any]]] = []
    if suffix in (".jsonl", ".ndjson"):
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except (json.JSONDecodeError, RecursionError) as err:
                raise InputError(f"{path}:{lineno}: invalid JSON ({err})") from None
            rec = {"path": rec} if isinstance(rec, str) else rec
            if not isinstance(rec, dict):
                raise InputError(f"{path}:{lineno}: expected a JSON object, got {rec!r}")
            records.append((lineno, rec))
        columns = sorted({k for _, rec in records for k in rec})
    else:
        reader = csv.reader(
            io.StringIO(text, newline=""), delimiter="\t" if suffix == ".tsv" else ","
        )
        try:
            header = [h.strip() for h in next(reader, [])]
            if len(set(header)) < len(header):
                raise InputError(f"{path}: the header names a column twice: {header}")
            for fields in reader:
                if not any(f.strip() for f in fields):
                    continue
                if len(fields) > len(header):
                    raise InputError(
                        f"{path}:{reader.line_num}: {len(fields)} fields but the header has "
                        f"{len(header)} (quote values holding {reader.dialect.delimiter!r})"
                    )
                records.append((reader.line_num, dict(zip(header, fields, strict=False))))
        except csv.Error as err:
            raise InputError(f"{path}: malformed {suffix[1:].upper()} ({err})") from None
        columns = header
        if not set(listing._PATH_KEYS) & set(header):
            raise InputError(f"{path}: the header needs a 'path' column, found {header}")
    if not records:
        raise InputError(f"{path}: the manifest lists no clips")
    if label_column not in columns:
        raise InputError(f"{path}: no label column {label_column!r}; the columns are {columns}")
    has_split = split_column in columns
    base = os.path.abspath(path.parent)
    rows = []
    for lineno, rec in records:
        where = f"{path}:{lineno}"
        name = next(
            (str(rec[k]).strip() for k in listing._PATH_KEYS if rec.get(k) not in (None, "")), ""
        )
        if not name:
            raise InputError(f"{where}: no file path (a 'path', 'file' or 'filename' value)")
        labels = _labels(rec.get(label_column), delimiter, where, label_column)
        value = rec.get(split_column) if has_split else "train"
        value = "" if value is None else str(value).strip()
        split = _SPLIT_ALIASES.get(value.lower()) or _fold_alias(value)
        if split is None:
            raise InputError(
                f"{where}: split {value!r} is not train, valid or test, nor a fold (fold1, 2, ...)"
            )
        full = os.path.abspath(os.path.join(base, os.path.expanduser(name)))
        rows.append(_Row(where, full, labels, split))
    return rows


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _folder_rows(root: Path) -> tuple[list[_Row], list[str]]:
    """Rows of a class-folder tree, and the audio files lying outside any class folder."""
    subdirs = _subfolders(root)
    if not subdirs:
        raise InputError(
            f"{root}: no sub-folders; expected class folders (or train/, valid/, test/ of them)"
        )
    splits = [_SPLIT_ALIASES.get(d.name.lower()) for d in subdirs]
    split_layout = all(splits) and "train" in splits
    layout = list(zip(splits, subdirs, strict=True)) if split_layout else [("train", root)]
    rows: list[_Row] = []
    stray = _loose_audio(root)
    for split, folder in layout:
        if folder != root:
            stray += _loose_audio(folder)
        for class_dir in _subfolders(folder):
            files = listing.scan_folder(class_dir)
            if not files:
                logger.warning("%s: no audio files in this class folder; ignored", class_dir)
            rows += [_Row(f, os.path.abspath(f), [class_dir.name], split) for f in files]
    return rows, stray


def _loose_audio(folder: Path) -> list[str]:
    """Audio files lying directly in ``folder`` (outside any class folder)."""
    return sorted(
        os.path.abspath(p)
        for p in folder.iterdir()
        if not p.name.startswith(".")
        and p.suffix.lower() in listing.AUDIO_EXTENSIONS
        and p.is_file()
    )


def _hear_rows(path: Path) -> tuple[list[_Row], Any]:
    task = load_task(path)
    if task.embedding_type != "scene":
        raise UnsupportedTaskError(
            f"{task.path}: an event (timestamp) task; fine-tuning trains clip classifiers only"
        )
    rows = []
    for split in task.splits:
        for name, labels in task.entries[split].items():
            where = f"{task.path / f'{split}.json'}: {name}"
            found = _labels([str(x) for x in labels], ";", where, "labels")
            rows.append(_Row(where, os.path.abspath(task.audio_path(split, name)), found, split))
    return rows, task


# ------------------------------------------------------------------------------- assembling
def _keep_usable(rows: list[_Row], missing: str, skipped: dict[str, list[str]]) -> list[_Row]:
    kept: list[_Row] = []
    first: dict[str, str] = {}
    for row in rows:
        problem = None
        try:
            check_input_file(row.path, "audio file")
        except FileNotFoundError:
            problem = ("missing file", f"audio file not found: {row.path}")
        except InputError as err:
            problem = ("unusable file", str(err))
        if problem is not None:
            if missing == "error":
                raise InputError(f"{row.where}: {problem[1]}")
            skipped.setdefault(problem[0], []).append(row.path)
            continue
        real = os.path.realpath(row.path)
        if real in first:
            skipped.setdefault("duplicate", []).append(row.path)
            continue
        first[real] = row.path
        kept.append(row)
    return kept


def _by_rarest_label(
    items: Sequence[LabelledItem], order: Iterable[int], count: Counter[int]
) -> dict[int, list[int]]:
    """Indices of ``items`` (in ``order``) grouped by each clip's rarest label (by ``count``,
    ties to the lower class id): the strata of a class-stratified draw."""
    groups: dict[int, list[int]] = {}
    for i in order:
        groups.setdefault(min(items[i].labels, key=lambda c: (count[c], c)), []).append(i)
    return groups


def _draw_valid(
    items: list[LabelledItem], fraction: float, seed: int
) -> tuple[list[LabelledItem], list[LabelledItem]]:
    """A seeded draw of about ``fraction`` of ``items``, stratified by class (by the rarest
    label of a clip for multilabel data), that leaves every class a training clip."""
    count = Counter(c for item in items for c in item.labels)
    groups = _by_rarest_label(items, range(len(items)), count)
    rng = np.random.default_rng(seed)
    chosen: set[int] = set()
    for key in sorted(groups):
        idx = groups[key]
        n = min(int(fraction * len(idx) + 0.5), len(idx) - 1)
        if n > 0:
            chosen.update(idx[j] for j in rng.permutation(len(idx))[:n])
    left = count - Counter(c for i in chosen for c in items[i].labels)
    for i in sorted(chosen):  # give back clips whose class has no training clip left
        if any(left[c] == 0 for c in items[i].labels):
            chosen.discard(i)
            left.update(items[i].labels)
    if not chosen:
        logger.warning("too few training clips per class to draw a validation split")
    train = [item for i, item in enumerate(items) if i not in chosen]
    return train, [item for i, item in enumerate(items) if i in chosen]


def subset_training(
    items: Sequence[LabelledItem],
    *,
    fraction: float = 1.0,
    per_class: int | None = None,
    seed: int = 0,
) -> list[LabelledItem]:
    """A seeded subset of the training clips, for label-efficiency studies: about ``fraction``
    of them, stratified by class (by the rarest label of a clip for multilabel data), then at
    most ``per_class`` clips of each class. Every class that has a clip in ``items`` keeps at
    least one; the subset keeps the source order.

    ``per_class`` caps a multiclass class exactly. With several labels per clip a clip is
    kept while one of its classes has fewer than ``per_class`` clips, so a frequent class can
    exceed the cap through clips kept for rarer ones.
    """
    items = list(items)
    if fraction >= 1.0 and per_class is None:
        return items
    count = Counter(c for item in items for c in item.labels)
    rng = np.random.default_rng(seed)
    order = [int(i) for i in rng.permutation(len(items))]
    keep = set(order)
    if fraction < 1.0:
        groups = _by_rarest_label(items, order, count)  # each group in the seeded order
        keep = set()
        for idx in groups.values():
            keep.update(idx[: max(1, int(fraction * len(idx) + 0.5))])
    if per_class is not None:
        held: Counter[int] = Counter()
        capped: set[int] = set()
        for i in order:
            if i in keep and any(held[c] < per_class for c in items[i].labels):
                capped.add(i)
                held.update(items[i].labels)
        keep = capped
    have = Counter(c for i in keep for c in items[i].labels)
    for i in order:  # give every class its clip back (multilabel: one lost in the draw)
        if any(have[c] == 0 for c in items[i].labels):
            keep.add(i)
            have.update(items[i].labels)
    return [items[i] for i in sorted(keep)]


def _class_counts(items: Sequence[LabelledItem], num_classes: int) -> np.ndarray:
    c = np.zeros(num_classes, dtype=np.int64)
    for item in items:
        c[list(item.labels)] += 1
    return c


def _check_classes(
    source: str,
    vocabulary: list[str],
    splits: dict[str, list[LabelledItem]],
    kfold: bool,
    named: set[str],
) -> None:
    counts = {name: _class_counts(items, len(vocabulary)) for name, items in splits.items()}
    for k, label in enumerate(vocabulary):
        where = {s: int(c[k]) for s, c in counts.items() if c[k]}
        if not where and label in named:
            raise InputError(
                f"{source}: class {label!r}: all its clips were skipped (no training clip)"
            )
        if not where:
            logger.warning("%s: class %r has no clip in any split", source, label)
        elif kfold and len(where) == 1:
            raise InputError(
                f"{source}: class {label!r} has clips only in {next(iter(where))}; with that "
                "fold held out it has no training clip: a class needs clips in at least two "
                "folds"
            )
        elif not kfold and "train" not in where:
            found = ", ".join(f"{s}: {n}" for s, n in where.items())
            raise InputError(
                f"{source}: class {label!r} has no training clip (only {found}); a class that "
                "exists only in valid/test cannot be learned"
            )


def _manifest_folds(rows: list[_Row], names: list[str], source: str) -> list[str]:
    """The folds of k-fold manifest rows, in order; an error for a mix or a missing fold."""
    other = next((r for r in rows if not r.split.startswith("fold")), None)
    if other is not None:
        raise InputError(
            f"{other.where}: split {other.split!r} in k-fold data (other rows name folds); "
            "use folds only, or train/valid/test only"
        )
    numbers = sorted(int(n[4:]) for n in names)
    gaps = sorted(set(range(min(numbers[0], 1), numbers[-1] + 1)) - set(numbers))
    if gaps:
        raise InputError(f"{source}: folds {numbers} found: fold {gaps[0]} is missing")
    if len(numbers) < 2:
        raise InputError(f"{source}: one fold ({numbers[0]}); k-fold data needs two or more")
    return [f"fold{n:02d}" for n in numbers]


def _assemble(rows, source, vocabulary, folds, multilabel, skipped, missing, fraction, seed):
    """The checked :class:`LabelledData` of ``rows`` (see the module doc)."""
    if not rows:
        raise InputError(f"{source}: no clips")
    if multilabel is False:
        bad = next((r for r in rows if len(r.labels) > 1), None)
        if bad is not None:
            raise InputError(
                f"{bad.where}: {len(bad.labels)} labels {bad.labels} in multiclass data (one "
                "label per clip); use multilabel or another label delimiter"
            )
    elif multilabel is None:
        multilabel = any(len(r.labels) > 1 for r in rows)
    named = {x for r in rows for x in r.labels}
    vocabulary = list(vocabulary) if vocabulary is not None else sorted(named)
    names = list(dict.fromkeys(r.split for r in rows))
    if folds is None and any(n.startswith("fold") for n in names):
        folds = _manifest_folds(rows, names, source)
    if folds is None and "train" not in names:
        raise InputError(f"{source}: no training clips (splits: {', '.join(names)})")
    order = (
        list(folds) if folds is not None else [s for s in ("train", "valid", "test") if s in names]
    )
    kept = _keep_usable(rows, missing, skipped)
    for reason, entries in skipped.items():
        shown = ", ".join(entries[:5]) + (
            f" and {len(entries) - 5} more" if len(entries) > 5 else ""
        )
        logger.warning("%s: skipped %d (%s): %s", source, len(entries), reason, shown)
    if not kept:
        raise InputError(f"{source}: no usable clips ({sum(map(len, skipped.values()))} skipped)")
    if len(vocabulary) < 2:
        raise InputError(
            f"{source}: a single class {vocabulary}; fine-tuning needs at least two classes"
        )
    index = {label: i for i, label in enumerate(vocabulary)}
    splits: dict[str, list[LabelledItem]] = {s: [] for s in order}
    for r in kept:
        splits[r.split].append(LabelledItem(r.path, tuple(sorted(index[x] for x in r.labels))))
    for name, items in splits.items():
        if not items:
            raise InputError(
                f"{source}: {'fold' if folds else 'split'} {name} has no usable clip (all its "
                "rows were skipped)"
            )
    _check_classes(source, vocabulary, splits, folds is not None, named)
    if folds is None and "valid" not in splits and fraction > 0:
        train, valid = _draw_valid(splits["train"], fraction, seed)
        if valid:
            test = {"test": splits["test"]} if "test" in splits else {}
            splits = {"train": train, "valid": valid, **test}
            source += f"; valid: {len(valid)} of the training clips (seed {seed})"
    data = LabelledData(vocabulary, bool(multilabel), splits, folds, source, skipped)
    logger.info("%s", data.describe())
    return data


def load_labelled(
    source: str | Path,
    *,
    label_column: str = "label",
    split_column: str = "split",
    label_delimiter: str = ";",
    multilabel: bool | None = None,
    valid_fraction: float = 0.1,
    seed: int = 0,
    missing: str = "skip",
) -> LabelledData:
    """Read labelled audio from a HEAR task folder, a manifest or a folder of class folders
    (see the module doc for the rules).

    Args:
        label_column, split_column, label_delimiter: manifest columns; the separator of
            several labels in one cell.
        multilabel: force the task type; None infers it (HEAR: its metadata; else multilabel
            when a clip has several labels). False refuses clips with several.
        valid_fraction, seed: the valid split drawn from train when the source has none (not
            for k-fold data, see :meth:`LabelledData.fold_split`); 0: none.
        missing: "skip" rows whose file is missing or unusable (counted in ``skipped``,
            logged) or raise ("error").

    Raises:
        FileNotFoundError: ``source`` does not exist.
        UsageError: a bad argument value.
        InputError: bad data; the message names the file (and line) and the problem.
    """
    if missing not in ("skip", "error"):
        raise UsageError(f"missing must be 'skip' or 'error', got {missing!r}")
    if not 0.0 <= valid_fraction < 1.0:
        raise UsageError(f"valid_fraction must be in [0, 1), got {valid_fraction}")
    if not label_delimiter or not label_column.strip():
        raise UsageError("label_delimiter and label_column must not be empty")
    path = Path(source)
    vocabulary, folds, skipped = None, None, {}
    if path.is_dir() and os.path.lexists(path / METADATA_NAME):
        rows, task = _hear_rows(path)
        what, vocabulary = f"HEAR task {os.path.abspath(task.path)}", task.labels
        folds = list(task.splits) if task.is_kfold else None
        if multilabel is None:
            multilabel = task.prediction_type == "multilabel"
    elif path.is_dir():
        rows, stray = _folder_rows(path)
        what, skipped = f"class folders {os.path.abspath(path)}", {}
        if stray:
            skipped["not in a class folder"] = stray
    elif path.suffix.lower() in listing.MANIFEST_EXTENSIONS:
        rows = _manifest_rows(path, label_column, split_column, label_delimiter)
        what = f"manifest {os.path.abspath(path)}"
    elif not os.path.lexists(path):
        raise FileNotFoundError(f"labelled data not found: {path}")
    else:
        raise InputError(
            f"{path}: not a manifest (.csv, .tsv, .jsonl), a HEAR task folder or a folder of "
            "class folders"
        )
    return _assemble(
        rows, what, vocabulary, folds, multilabel, skipped, missing, valid_fraction, seed
    )
