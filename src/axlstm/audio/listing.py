"""The one reader of folders and manifests, for pretraining, ``axlstm embed`` and evaluation.

Rules, the same everywhere:

- a **folder** gives every regular file under it (recursively) whose extension is wanted
  (audio by default), hidden files and folders skipped, in a deterministic order (names sorted
  at every level), so two machines scanning the same tree get the same list; symbolic links
  are followed, but each real folder is entered once and each real file listed once (a link
  loop cannot multiply the data), and named pipes, devices and sockets are skipped with a
  warning (reading a pipe would block);
- a **manifest** is a ``.csv`` or ``.tsv`` file with a header naming a ``path`` column (``file``
  or ``filename`` are accepted too; an optional ``duration`` column in seconds), or a ``.jsonl``
  / ``.ndjson`` file of one object per line with the same keys (or a bare string); blank lines
  are skipped; relative paths are taken from the manifest's folder, ``~`` is expanded; the
  manifest is UTF-8 text (a byte-order mark is allowed);
- anything else is taken as a file name;
- the same file named twice (``a.wav``, ``./a.wav``, ``d/../a.wav``, a link to it) is kept
  once, under the first name (files are compared by their real path).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

from axlstm.core.errors import InputError
from axlstm.core.fileio import check_input_file, file_kind

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
    """Every regular file under ``root`` (recursively) with one of ``extensions`` (audio by
    default); see the module doc for the rules.

    Raises:
        FileNotFoundError: ``root`` does not exist.
        InputError: ``root`` is not a folder (a file, a link loop).
    """
    root = Path(root)
    if not os.path.lexists(root):
        raise FileNotFoundError(f"folder not found: {root}")
    if not root.is_dir():
        try:
            os.stat(root)
        except OSError as err:
            raise InputError(f"cannot scan {root}: {err.strerror or err}") from None
        raise InputError(f"cannot scan {root}: it is a file, not a folder")
    exts = tuple(e.lower() for e in (extensions or AUDIO_EXTENSIONS))
    found: list[str] = []
    seen_dirs: set[tuple[int, int]] = set()
    seen_files: set[tuple[int, int]] = set()
    skipped: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        st = os.stat(dirpath)
        if (st.st_dev, st.st_ino) in seen_dirs:  # entered before, through another link
            dirnames[:] = []
            continue
        seen_dirs.add((st.st_dev, st.st_ino))
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or not _wanted(name, exts):
                continue
            path = os.path.join(dirpath, name)
            try:
                fst = os.stat(path)
            except OSError as err:  # a broken link or a link loop
                skipped.append(f"{path} ({err.strerror or err})")
                continue
            if not stat.S_ISREG(fst.st_mode):
                skipped.append(f"{path} ({file_kind(fst.st_mode)})")
                continue
            if (fst.st_dev, fst.st_ino) in seen_files:
                continue
            seen_files.add((fst.st_dev, fst.st_ino))
            found.append(path)
    if skipped:
        logger.warning(
            "%s: skipped %d entries that are not regular files: %s%s",
            root,
            len(skipped),
            ", ".join(skipped[:5]),
            " ..." if len(skipped) > 5 else "",
        )
    return found


def _read_text(path: Path) -> str:
    """A manifest's text: UTF-8, a byte-order mark allowed; anything else named clearly."""
    check_input_file(path, "manifest")
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise InputError(
            f"{path}: not UTF-8 text (byte 0x{raw[err.start]:02x} at offset {err.start}); "
            "save the manifest as UTF-8"
        ) from None


def read_manifest(path: str | Path) -> Manifest:
    """The paths (and optional durations) a manifest lists; see the module doc for the rules.

    Raises:
        FileNotFoundError: the manifest does not exist.
        InputError: not a readable regular file, not UTF-8, an unknown manifest type, no path
            column, a malformed line or entry; the message names the file (and the line).
    """
    path = Path(path)
    base = path.parent
    rows: list[dict] = []
    suffix = path.suffix.lower()
    if suffix not in MANIFEST_EXTENSIONS:
        raise InputError(f"{path}: unknown manifest type; use one of {MANIFEST_EXTENSIONS}")
    text = _read_text(path)
    if suffix in (".jsonl", ".ndjson"):
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise InputError(f"{path}:{lineno}: invalid JSON ({err})") from err
            if isinstance(row, str):
                row = {"path": row}
            if not isinstance(row, dict) or not any(row.get(k) for k in _PATH_KEYS):
                raise InputError(f'{path}:{lineno}: each line needs a "path" key')
            rows.append(row)
    else:
        try:
            reader = csv.DictReader(
                io.StringIO(text, newline=""), delimiter="\t" if suffix == ".tsv" else ","
            )
            header = [h.strip() for h in reader.fieldnames or []]
            reader.fieldnames = header
            if not set(_PATH_KEYS) & set(header):
                raise InputError(f"{path}: the header needs a 'path' column, found {header}")
            rows = [r for r in reader if any((r.get(k) or "").strip() for k in _PATH_KEYS)]
        except csv.Error as err:
            raise InputError(f"{path}: malformed {suffix[1:].upper()} ({err})") from None
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
            raise InputError(f"{path}: entry {p!r} has a bad duration {d!r}") from None
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
        dedupe: drop files named twice (compared by real path; the first name is kept).

    Raises:
        FileNotFoundError: with ``must_exist``, an input that does not exist.
        InputError: with ``must_exist``, a named file that is not a readable regular file; a
            manifest that cannot be read.
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
        else:
            if must_exist:
                check_input_file(path, "input")
            found.append(str(path))
    if not dedupe:
        return found
    by_real: dict[str, str] = {}
    for name in found:
        by_real.setdefault(os.path.realpath(name), name)  # the first name of each real file
    unique = list(by_real.values())
    if len(unique) < len(found):
        logger.info("dropped %d duplicate inputs", len(found) - len(unique))
    return unique
