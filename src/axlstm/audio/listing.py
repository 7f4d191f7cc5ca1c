"""The one reader of folders and manifests, for pretraining, ``axlstm embed`` and evaluation.

Rules, the same everywhere:

- a **folder** gives every file under it (recursively) whose extension is wanted (audio by
  default), hidden files and folders skipped, in a deterministic order (names sorted at every
  level), so two machines scanning the same tree get the same list;
- a **manifest** is a ``.csv`` or ``.tsv`` file with a header naming a ``path`` column (``file``
  or ``filename`` are accepted too; an optional ``duration`` column in seconds), or a ``.jsonl``
  / ``.ndjson`` file of one object per line with the same keys (or a bare string); blank lines
  are skipped; relative paths are taken from the manifest's folder, ``~`` is expanded;
- anything else is taken as a file name.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

__all__ = [
    "AUDIO_EXTENSIONS",
    "MANIFEST_EXTENSIONS",
    "Manifest",
    "collect_inputs",
    "read_manifest",
    "scan_folder",
]

logger = logging.getLogger(__name__)

#: Lower-case file extensions (with the leading dot, as ``Path.suffix`` gives them) of the
#: audio files that folder scans pick up. All are decoded by libsndfile.
AUDIO_EXTENSIONS: list[str] = [
    ".wav",
    ".flac",
    ".ogg",
    ".opus",
    ".mp3",
    ".aiff",
    ".aif",
    ".au",
    ".caf",
    ".w64",
]
#: Manifest formats: CSV/TSV with a header naming a ``path`` column, or JSON lines.
MANIFEST_EXTENSIONS = (".csv", ".tsv", ".jsonl", ".ndjson")
_PATH_KEYS = ("path", "file", "filename")


class Manifest(NamedTuple):
    """The entries of a manifest: ``paths`` and their ``durations`` (seconds, None when not
    given)."""

    paths: list[str]
    durations: list[float | None]


def _wanted(name: str, extensions: Sequence[str]) -> bool:
    return os.path.splitext(name)[1].lower() in extensions


def scan_folder(root: str | Path, extensions: Sequence[str] | None = None) -> list[str]:
    """Every file under ``root`` (recursively) with one of ``extensions`` (audio by default).

    Raises:
        FileNotFoundError: ``root`` is not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"folder not found: {root}")
    exts = tuple(e.lower() for e in (extensions or AUDIO_EXTENSIONS))
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(
            os.path.join(dirpath, f)
            for f in sorted(filenames)
            if not f.startswith(".") and _wanted(f, exts)
        )
    return found


def read_manifest(path: str | Path) -> Manifest:
    """The paths (and optional durations) a manifest lists; see the module doc for the rules.

    Raises:
        FileNotFoundError: the manifest does not exist.
        ValueError: an unknown manifest type, no path column, a malformed line or entry; the
            message names the file (and the line).
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
                if not isinstance(row, dict) or not any(row.get(k) for k in _PATH_KEYS):
                    raise ValueError(f'{path}:{lineno}: each line needs a "path" key')
                rows.append(row)
    elif suffix in (".csv", ".tsv"):
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ",")
            header = reader.fieldnames or []
            if not set(_PATH_KEYS) & set(header):
                raise ValueError(f"{path}: the header needs a 'path' column, found {header}")
            rows = [r for r in reader if any((r.get(k) or "").strip() for k in _PATH_KEYS)]
    else:
        raise ValueError(f"{path}: unknown manifest type; use one of {MANIFEST_EXTENSIONS}")
    paths: list[str] = []
    durations: list[float | None] = []
    for row in rows:
        p = next(str(row[k]) for k in _PATH_KEYS if row.get(k))
        p = os.path.expanduser(p.strip())
        paths.append(p if os.path.isabs(p) else str(base / p))
        d = row.get("duration")
        try:
            durations.append(float(d) if d not in (None, "") else None)
        except (TypeError, ValueError):
            raise ValueError(f"{path}: entry {p!r} has a bad duration {d!r}") from None
    return Manifest(paths, durations)


def collect_inputs(
    inputs: Iterable[str | os.PathLike[str]],
    extensions: Sequence[str] | None = None,
    *,
    must_exist: bool = False,
    dedupe: bool = True,
) -> list[str]:
    """Every file named by ``inputs`` (folders, manifests, files), in order.

    Args:
        inputs: folders, manifests and files.
        extensions: what folder scans pick up (audio by default).
        must_exist: raise for a named file that does not exist (otherwise it is kept, and
            fails with its reason when loaded).
        dedupe: drop repeated paths (keeping the first).

    Raises:
        FileNotFoundError: with ``must_exist``, an input that does not exist.
    """
    found: list[str] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files = scan_folder(path, extensions)
            if not files:
                logger.warning(
                    "%s: no files with %s", path, " ".join(extensions or AUDIO_EXTENSIONS)
                )
            logger.info("found %d files under %s", len(files), path)
            found.extend(files)
        elif path.suffix.lower() in MANIFEST_EXTENSIONS and path.is_file():
            listed = read_manifest(path).paths
            logger.info("manifest %s lists %d files", path, len(listed))
            found.extend(listed)
        elif must_exist and not path.is_file():
            raise FileNotFoundError(f"input not found: {path}")
        else:
            found.append(str(path))
    if not dedupe:
        return found
    unique = list(dict.fromkeys(found))
    if len(unique) < len(found):
        logger.info("dropped %d duplicate inputs", len(found) - len(unique))
    return unique
