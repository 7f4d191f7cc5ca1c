"""Manifests for public datasets, from their official extracted archives (``axlstm
prepare-data``). Nothing is downloaded: ``root`` is the archive as extracted.

Each dataset gives one manifest, ``<out>/<dataset>.csv``, with the columns ``path,label,split``
that :func:`axlstm.finetune.labels.load_labelled` reads (several labels joined by ``;``).
Paths are absolute (``root`` made absolute, links kept), so the manifest may live anywhere;
after moving the dataset, run prepare-data again (it takes seconds).

- ``esc50``: ``root/meta/esc50.csv`` (filename, fold 1-5, target, category, ...) and
  ``root/audio/*.wav``; label = category, split = ``fold1`` ... ``fold5`` (k-fold data).
- ``speechcommands_v2``: ``root/<word>/*.wav`` for the 35 words (folders starting with ``_``
  or ``.``, e.g. ``_background_noise_``, are not words), ``root/validation_list.txt`` and
  ``root/testing_list.txt`` (paths relative to ``root``); split train/valid/test.
- ``audioset_20k``: ``root/class_labels_indices.csv`` (index, mid, display_name),
  ``root/balanced_train_segments.csv`` and ``root/eval_segments.csv`` (AudioSet's lists:
  ``#`` comment lines, then YTID, start_seconds, end_seconds, "mid,mid,...") and the audio under
  ``root/audio/balanced_train/`` (split train) and ``root/audio/eval/`` (split valid), found
  recursively, any audio extension; a file belongs to a clip when its name (without extension)
  is the YTID, optionally prefixed by ``Y`` and followed by ``_`` and anything:
  ``--PJHxphWEs.wav``, ``--PJHxphWEs_30.000.flac``, ``Y--PJHxphWEs_30.000_40.000.wav``.
  Labels = display names (two classes sharing a name get their mid appended).

Clips whose audio is absent (AudioSet downloads always miss some), duplicates and clips with
labels the class list lacks are not written; they are counted per split, logged and reported.
Malformed lists are an :class:`~axlstm.core.InputError` naming the file and line; no usable
clip at all is an error too, and nothing is written then.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import posixpath
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from axlstm.audio import listing
from axlstm.core.errors import InputError, UsageError
from axlstm.core.fileio import atomic_write_text, check_input_file, check_output_dir

__all__ = ["DATASETS", "LABEL_DELIMITER", "PreparedData", "SplitSummary", "prepare_data"]

logger = logging.getLogger(__name__)

DATASETS = ("esc50", "speechcommands_v2", "audioset_20k")
LABEL_DELIMITER = ";"
_LAYOUTS = {
    "esc50": "ESC-50-master layout: meta/esc50.csv and audio/*.wav",
    "speechcommands_v2": (
        "Speech Commands v0.02 layout: <word>/*.wav, validation_list.txt, testing_list.txt"
    ),
    "audioset_20k": (
        "AudioSet layout: class_labels_indices.csv, balanced_train_segments.csv, "
        "eval_segments.csv, audio/balanced_train/, audio/eval/"
    ),
}

Rows = list[tuple[str, tuple[str, ...], str]]  # path, labels, split
Skips = list[tuple[str, str, str]]  # split, reason, entry


@dataclass
class SplitSummary:
    """One split of a prepared manifest: clips written, their classes, skips by reason."""

    clips: int = 0
    classes: set[str] = field(default_factory=set)
    skipped: dict[str, int] = field(default_factory=dict)


@dataclass
class PreparedData:
    """What :func:`prepare_data` wrote: the manifest, per-split summaries and every skipped
    entry by reason."""

    dataset: str
    manifest: Path
    splits: dict[str, SplitSummary]
    skipped: dict[str, list[str]]

    def summary_lines(self) -> list[str]:
        """One line per split: clips, classes, skipped (by reason)."""
        lines = []
        for name, s in self.splits.items():
            n = sum(s.skipped.values())
            why = f" ({', '.join(f'{r} {k}' for r, k in s.skipped.items())})" if n else ""
            lines.append(
                f"{self.dataset} {name}: {s.clips} clips, {len(s.classes)} classes, "
                f"{n} skipped{why}"
            )
        return lines


def _text(path: Path, what: str, dataset: str) -> str:
    try:
        check_input_file(path, what)
    except FileNotFoundError:
        raise InputError(f"{path}: not found; expected the {_LAYOUTS[dataset]}") from None
    return listing._read_text(path)


def _table(path: Path, what: str, dataset: str, columns: set[str]) -> list[tuple[int, dict]]:
    """The rows of a CSV file with a header holding ``columns``, with their line numbers."""
    reader = csv.DictReader(io.StringIO(_text(path, what, dataset), newline=""))
    try:
        header = [h.strip() for h in reader.fieldnames or []]
        if columns - set(header):
            raise InputError(f"{path}: no column {sorted(columns - set(header))}; found {header}")
        reader.fieldnames = header
        return [
            (reader.line_num, {k: (v or "").strip() for k, v in r.items() if k is not None})
            for r in reader
        ]
    except csv.Error as err:
        raise InputError(f"{path}: malformed CSV ({err})") from None


# ------------------------------------------------------------------------------------ ESC-50
def _esc50(root: Path) -> tuple[Rows, Skips]:
    meta = root / "meta" / "esc50.csv"
    rows: Rows = []
    skips: Skips = []
    category_of: dict[str, str] = {}
    for line, rec in _table(meta, "ESC-50 metadata", "esc50", {"filename", "fold", "category"}):
        name, fold, category = rec["filename"], rec["fold"], rec["category"]
        where = f"{meta}:{line}"
        if not name or name in (".", "..") or "/" in name or "\\" in name:
            raise InputError(f"{where}: filename {name!r} is not a file name in audio/")
        if not fold.isdigit() or int(fold) < 1:
            raise InputError(f"{where}: fold {fold!r} is not a fold number (1-5)")
        if not category:
            raise InputError(f"{where}: empty category")
        target = rec.get("target", "")
        if target and category_of.setdefault(target, category) != category:
            raise InputError(
                f"{where}: target {target} is {category!r} here but {category_of[target]!r} above"
            )
        split, path = f"fold{int(fold)}", root / "audio" / name
        if os.path.isfile(path):
            rows.append((str(path), (category,), split))
        else:
            skips.append((split, "audio absent", str(path)))
    return rows, skips


# ------------------------------------------------------------------------- Speech Commands
def _listed(path: Path, root: Path) -> set[str]:
    entries = set()
    for lineno, line in enumerate(_text(path, "split list", "speechcommands_v2").splitlines(), 1):
        entry = line.strip().replace("\\", "/")
        if not entry:
            continue
        norm = posixpath.normpath(entry)
        if norm.startswith("/") or norm == ".." or norm.startswith("../"):
            raise InputError(f"{path}:{lineno}: {entry!r} is not a path inside {root}")
        entries.add(norm)
    return entries


def _speechcommands(root: Path) -> tuple[Rows, Skips]:
    valid = _listed(root / "validation_list.txt", root)
    test = _listed(root / "testing_list.txt", root)
    both = sorted(valid & test)
    if both:
        raise InputError(
            f"{root}: {both[0]} is listed in both validation_list.txt and testing_list.txt"
        )
    words = sorted(
        d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith(("_", "."))
    )
    if not words:
        raise InputError(f"{root}: no word folders; expected the {_LAYOUTS['speechcommands_v2']}")
    if len(words) != 35:
        logger.warning("%s: %d word folders; Speech Commands v0.02 has 35", root, len(words))
    rows: Rows = []
    found: set[str] = set()
    for word in words:
        for path in listing.scan_folder(root / word):
            rel = Path(os.path.relpath(path, root)).as_posix()
            found.add(rel)
            split = "test" if rel in test else "valid" if rel in valid else "train"
            rows.append((path, (word,), split))
    skips = [
        (split, "listed but absent", str(root / entry))
        for split, listed in (("valid", valid), ("test", test))
        for entry in sorted(listed - found)
    ]
    return rows, skips


# --------------------------------------------------------------------------------- AudioSet
def _audioset_classes(path: Path) -> dict[str, str]:
    """mid -> display name (a name two classes share gets the mid appended)."""
    names: dict[str, str] = {}
    columns = {"mid", "display_name"}
    for line, rec in _table(path, "AudioSet class list", "audioset_20k", columns):
        if not rec["mid"] or not rec["display_name"]:
            raise InputError(f"{path}:{line}: empty mid or display_name")
        if rec["mid"] in names:
            raise InputError(f"{path}:{line}: mid {rec['mid']} is listed twice")
        names[rec["mid"]] = rec["display_name"]
    shared = {n for n in names.values() if list(names.values()).count(n) > 1}
    if shared:
        logger.warning("%s: display names used by several classes: %s", path, sorted(shared))
    return {mid: f"{n} ({mid})" if n in shared else n for mid, n in names.items()}


def _segments(path: Path) -> list[tuple[str, list[str]]]:
    """(YTID, label mids) of an AudioSet segment list."""
    out = []
    text = _text(path, "AudioSet segment list", "audioset_20k")
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            fields = next(csv.reader([line], skipinitialspace=True))
        except csv.Error as err:
            raise InputError(f"{path}:{lineno}: malformed line ({err})") from None
        if len(fields) < 4 or not fields[0].strip():
            raise InputError(
                f"{path}:{lineno}: expected YTID, start_seconds, end_seconds, positive_labels; "
                f"got {line.strip()!r}"
            )
        out.append((fields[0].strip(), [m.strip() for m in fields[3].split(",") if m.strip()]))
    return out


def _match(stem: str, ids: set[str], lengths: list[int]) -> str | None:
    for text in (stem, stem[1:] if stem.startswith("Y") else ""):
        for n in lengths:
            if text[:n] in ids and (len(text) == n or text[n] == "_"):
                return text[:n]
    return None


def _audio_files(folder: Path, ids: set[str]) -> dict[str, str]:
    """YTID -> audio file under ``folder`` (the first, in sorted order, when there are more)."""
    if not folder.is_dir():
        logger.warning("%s: audio folder not found; every clip of it counts as absent", folder)
        return {}
    lengths = sorted({len(i) for i in ids})
    found: dict[str, str] = {}
    extra = 0
    for path in listing.scan_folder(folder):
        ytid = _match(os.path.splitext(os.path.basename(path))[0], ids, lengths)
        if ytid is not None:
            extra += ytid in found
            found.setdefault(ytid, path)
    if extra:
        logger.warning("%s: %d clips have several audio files; the first is used", folder, extra)
    return found


def _audioset(root: Path) -> tuple[Rows, Skips]:
    names = _audioset_classes(root / "class_labels_indices.csv")
    rows: Rows = []
    skips: Skips = []
    for split, listed, folder in (
        ("train", "balanced_train_segments.csv", "balanced_train"),
        ("valid", "eval_segments.csv", "eval"),
    ):
        segments = _segments(root / listed)
        files = _audio_files(root / "audio" / folder, {y for y, _ in segments})
        seen: set[str] = set()
        for ytid, mids in segments:
            unknown = [m for m in mids if m not in names]
            if ytid in seen:
                skips.append((split, "duplicate", ytid))
            elif not mids:
                skips.append((split, "no label", ytid))
            elif unknown:
                skips.append((split, "unknown label", f"{ytid} ({', '.join(unknown)})"))
            elif ytid not in files:
                skips.append((split, "audio absent", ytid))
            else:
                rows.append((files[ytid], tuple(dict.fromkeys(names[m] for m in mids)), split))
            seen.add(ytid)
    return rows, skips


_READERS: dict[str, Callable[[Path], tuple[Rows, Skips]]] = {
    "esc50": _esc50,
    "speechcommands_v2": _speechcommands,
    "audioset_20k": _audioset,
}


def _split_key(name: str) -> tuple[int, int, str]:
    order = ("train", "valid", "test")
    if name in order:
        return (0, order.index(name), name)
    digits = name[4:] if name.startswith("fold") else ""
    return (1, int(digits) if digits.isdigit() else 0, name)


def prepare_data(dataset: str, root: str | Path, out: str | Path) -> PreparedData:
    """Write ``<out>/<dataset>.csv`` for the dataset extracted at ``root`` (see the module doc).

    Raises:
        UsageError: an unknown dataset.
        FileNotFoundError: ``root`` does not exist.
        InputError: a file of the layout is missing or malformed (named, with the line), a
            label holds the delimiter, or no clip is usable.
        OutputError: ``out`` cannot be written (checked before anything is read).
    """
    if dataset not in _READERS:
        raise UsageError(f"unknown dataset {dataset!r}; one of {', '.join(DATASETS)}")
    root = Path(os.path.abspath(root))
    if not root.is_dir():
        if not os.path.lexists(root):
            raise FileNotFoundError(f"dataset folder not found: {root}")
        raise InputError(f"{root}: not a folder; expected the {_LAYOUTS[dataset]}")
    out = check_output_dir(out, "manifest folder (--out)")
    rows, skips = _READERS[dataset](root)
    kept: Rows = []
    for path, labels, split in rows:
        try:
            path.encode("utf-8")
        except UnicodeEncodeError:
            skips.append((split, "file name not UTF-8", ascii(path)))
            continue
        bad = [x for x in labels if LABEL_DELIMITER in x]
        if bad:
            raise InputError(f"{root}: label {bad[0]!r} holds the delimiter {LABEL_DELIMITER!r}")
        kept.append((path, labels, split))
    splits: dict[str, SplitSummary] = {}
    for _, labels, split in kept:
        summary = splits.setdefault(split, SplitSummary())
        summary.clips += 1
        summary.classes.update(labels)
    skipped: dict[str, list[str]] = {}
    for split, reason, entry in skips:
        counts = splits.setdefault(split, SplitSummary()).skipped
        counts[reason] = counts.get(reason, 0) + 1
        skipped.setdefault(reason, []).append(entry)
    for reason, entries in skipped.items():
        more = f" and {len(entries) - 3} more" if len(entries) > 3 else ""
        shown = ", ".join(entries[:3]) + more
        logger.warning("%s: skipped %d (%s): %s", root, len(entries), reason, shown)
    if not kept:
        why = ", ".join(f"{r} {len(e)}" for r, e in skipped.items()) or "nothing found"
        raise InputError(f"{root}: no usable {dataset} clip ({why}); nothing written")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(("path", "label", "split"))
    writer.writerows((p, LABEL_DELIMITER.join(labels), s) for p, labels, s in kept)
    manifest = atomic_write_text(out / f"{dataset}.csv", buf.getvalue())
    ordered = {k: splits[k] for k in sorted(splits, key=_split_key)}
    logger.info("wrote %s (%d clips)", manifest, len(kept))
    return PreparedData(dataset, manifest, ordered, skipped)
