"""WebDataset tar shards: writing them from files, and reading their samples back.

A shard is a plain tar in the WebDataset layout: the members of one sample share a key
(``000000042.flac`` and ``000000042.json``). Samples hold either

* audio (``.flac`` written by :func:`write_shards`; any extension libsndfile decodes is read),
* or a precomputed, **unnormalised** log-mel array ``(T, 80)`` as ``.npy`` (float16 or float32,
  read with ``allow_pickle=False``),

plus a small ``.json`` with the source file name and duration. The official AudioSet shards
store the array as a pickled ``.pyd`` instead; unpickling can execute code, so such members are
refused unless ``trust_pickle=True`` is passed explicitly.

:func:`write_shards` writes each shard under a temporary name and renames it when complete,
then an ``index.json`` with the sample count of every shard (used to skip whole shards when a
run resumes mid-epoch). Reading uses the standard library's streaming tar reader.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import io
import json
import logging
import os
import pickle
import re
import tarfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from axlstm.audio import AUDIO_EXTENSIONS, resample
from axlstm.audio.listing import collect_inputs
from axlstm.core.errors import InputError, OutputError, UsageError
from axlstm.core.fileio import atomic_write_text, check_input_file
from axlstm.data.clips import BadItem, ClipProcessor
from axlstm.data.sources import (
    MANIFEST_EXTENSIONS,
    TRAINING_EXTENSIONS,
    read_audio_file,
)

__all__ = [
    "INDEX_NAME",
    "ShardWriteReport",
    "check_prefix",
    "decode_sample",
    "expand_braces",
    "expand_shards",
    "iter_raw_samples",
    "iter_tar_samples",
    "list_inputs",
    "shard_counts",
    "write_shards",
]

logger = logging.getLogger(__name__)

INDEX_NAME = "index.json"
INDEX_FORMAT = "axlstm-shards"
_AUDIO_EXTS = tuple(e.lstrip(".") for e in AUDIO_EXTENSIONS)
_PICKLE_EXTS = ("pyd", "pickle", "pkl")
# WebDataset's key rule: everything up to the first dot of the file name is the key.
_KEY_RE = re.compile(r"^((?:.*/|)[^./]+)\.([^/]*)$")


# ------------------------------------------------------------------------------------ reading
_BRACE_RE = re.compile(r"\{([^{}]*)\}")


def expand_braces(pattern: str) -> list[str]:
    """Shell-style brace expansion: ``a-{000..002}.tar`` and ``{train,val}-{0..1}.tar``.

    Numeric ranges keep the zero-padding of their first bound; ``{a,b}`` lists alternatives.
    """
    match = _BRACE_RE.search(pattern)
    if match is None:
        return [pattern]
    head, tail, body = pattern[: match.start()], pattern[match.end() :], match.group(1)
    rng = re.fullmatch(r"(\d+)\.\.(\d+)", body)
    if rng:
        lo, hi = rng.group(1), rng.group(2)
        step = 1 if int(hi) >= int(lo) else -1
        width = len(lo) if lo.startswith("0") and len(lo) > 1 else 0
        choices = [str(i).zfill(width) for i in range(int(lo), int(hi) + step, step)]
    else:
        choices = body.split(",")
    return [x for c in choices for x in expand_braces(head + c + tail)]


def expand_shards(spec: str | Path) -> list[str]:
    """Shard files named by a folder, a single ``.tar``, a glob or a brace pattern.

    ``shards/`` (every ``*.tar`` directly inside, sorted), ``a.tar``, ``shards/*.tar`` and
    ``shards/train-{000000..000099}.tar`` are all accepted. Brace patterns are expanded
    without checking that each file exists (a missing shard is reported when it is read).
    """
    spec = str(spec)
    if os.path.isdir(spec):
        urls = sorted(glob.glob(os.path.join(glob.escape(spec), "*.tar")))
        if not urls:
            raise FileNotFoundError(f"no .tar shards in {spec}")
        return urls
    if "{" in spec:
        return expand_braces(spec)
    if any(c in spec for c in "*?["):
        urls = sorted(glob.glob(spec))
        if not urls:
            raise FileNotFoundError(f"no shards match {spec}")
        return urls
    check_input_file(spec, "shard")  # a pipe or a link loop is refused by kind
    return [spec]


def shard_counts(urls: Sequence[str]) -> dict[str, int]:
    """Sample counts of the shards listed in the ``index.json`` files beside them."""
    counts: dict[str, int] = {}
    for folder in sorted({os.path.dirname(os.path.abspath(u)) for u in urls}):
        path = os.path.join(folder, INDEX_NAME)
        if not os.path.isfile(path):
            continue
        try:
            with open(path, encoding="utf-8") as f:
                index = json.load(f)
            for name, n in index.get("shards", {}).items():
                counts[os.path.join(folder, name)] = int(n)
        except (OSError, ValueError, AttributeError) as err:
            logger.warning("ignoring unreadable shard index %s (%s)", path, err)
    return {u: counts[os.path.abspath(u)] for u in urls if os.path.abspath(u) in counts}


def iter_tar_samples(url: str) -> Iterator[tuple[str, dict[str, bytes]]]:
    """``(key, {extension: bytes})`` for each sample of a tar, in file order.

    Members whose names start with ``__`` or that are not regular files are ignored; members
    of one sample must be adjacent, as WebDataset requires.

    Raises:
        tarfile.TarError, OSError: when the shard is missing, truncated or not a tar.
    """
    key: str | None = None
    files: dict[str, bytes] = {}
    with open(url, "rb") as raw, tarfile.open(fileobj=raw, mode="r|*") as tar:
        for member in tar:
            if not member.isfile():
                continue
            base = os.path.basename(member.name)
            match = _KEY_RE.match(member.name)
            if base.startswith("__") or match is None:
                continue
            k, ext = match.group(1), match.group(2).lower()
            data = tar.extractfile(member).read()
            if k != key:
                if key is not None:
                    yield key, files
                key, files = k, {}
            files[ext] = data
        if key is not None:
            yield key, files


def iter_raw_samples(
    urls: Sequence[str],
    skip: int = 0,
    counts: dict[str, int] | None = None,
    on_error: Callable[[str, Exception], None] | None = None,
) -> Iterator[tuple[str, str, dict[str, bytes]]]:
    """``(url, key, files)`` over shards in order, after skipping the first ``skip`` samples.

    Shards whose count is known (``counts``) are skipped without being opened. A shard that
    fails to read is reported through ``on_error`` and the stream goes on with the next.
    """
    counts = counts or {}
    for url in urls:
        n = counts.get(url)
        if n is not None and skip >= n:
            skip -= n
            continue
        try:
            for key, files in iter_tar_samples(url):
                if skip:
                    skip -= 1
                    continue
                yield url, key, files
        except (tarfile.TarError, OSError, EOFError) as err:
            if on_error is None:
                raise
            on_error(url, err)


def _payload(files: dict[str, bytes], trust_pickle: bool) -> tuple[str, bytes]:
    """The member to decode: features first, then audio; pickles only when trusted."""
    by_last = {ext.rsplit(".", 1)[-1]: ext for ext in files}
    if "npy" in by_last:
        return "npy", files[by_last["npy"]]
    for ext in _AUDIO_EXTS:
        if ext in by_last:
            return ext, files[by_last[ext]]
    for ext in _PICKLE_EXTS:
        if ext in by_last:
            if not trust_pickle:
                raise InputError(
                    f"shard sample holds a pickled '.{by_last[ext]}' member (the official "
                    "AudioSet shard format). Unpickling can run arbitrary code, so it is refused; "
                    "rewrite the shards with `axlstm shards --features`, or, only for shards you "
                    "trust, set data.trust_pickle=true"
                )
            return ext, files[by_last[ext]]
    raise BadItem("unreadable", "", f"no audio, .npy or .pyd member among {sorted(files)}")


def decode_audio_bytes(data: bytes, sample_rate: int, name: str) -> np.ndarray:
    """Decode an encoded audio file held in memory to mono float32 ``(N,)`` at ``sample_rate``."""
    if not data:
        raise BadItem("empty", name, "0 bytes")
    try:
        with sf.SoundFile(io.BytesIO(data)) as handle:
            rate = handle.samplerate
            wave = handle.read(dtype="float32", always_2d=True)  # (N, C)
    except Exception as err:
        raise BadItem("unreadable", name, str(err)) from None
    if wave.shape[0] == 0:
        raise BadItem("empty", name, "no samples")
    mono = wave.mean(axis=1, dtype=np.float32)  # (N,)
    if not np.isfinite(mono).all():
        raise BadItem("nonfinite", name, "NaN or infinite samples")
    return resample(mono, rate, sample_rate) if rate != sample_rate else mono


def decode_sample(
    files: dict[str, bytes],
    processor: ClipProcessor,
    rng: np.random.Generator,
    name: str,
    trust_pickle: bool = False,
):
    """One normalised crop ``(1, frames, n_mels)`` from a shard sample's members.

    Raises:
        BadItem: for undecodable, empty, silent or non-finite samples.
        InputError: for pickled members when ``trust_pickle`` is false.
    """
    try:
        ext, data = _payload(files, trust_pickle)
    except BadItem as bad:
        raise BadItem(bad.reason, name, bad.detail) from None
    if ext == "npy":
        try:
            feats = np.load(io.BytesIO(data), allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            raise BadItem("unreadable", name, f".npy: {err}") from None
        return processor.from_features(feats, rng, name)
    if ext in _PICKLE_EXTS:
        try:
            obj = pickle.loads(data)  # only reached with trust_pickle=True
        except Exception as err:
            raise BadItem("unreadable", name, f"pickle: {err}") from None
        if not isinstance(obj, np.ndarray):
            raise BadItem("bad_shape", name, f"pickled {type(obj).__name__}, not an array")
        return processor.from_features(obj, rng, name)
    return processor.from_wave(decode_audio_bytes(data, processor.sample_rate, name), rng, name)


# ------------------------------------------------------------------------------------ writing
def list_inputs(spec: str | Path) -> tuple[list[str], str]:
    """Files named by a folder (scanned recursively), a manifest or a file; and a root for
    names.

    The files are read by :func:`axlstm.audio.listing.collect_inputs`, as for ``axlstm embed``:
    a file named several ways (``a.wav``, ``./a.wav``, ``d/../a.wav``, a link) is used once,
    under its first name.

    Raises:
        FileNotFoundError: nothing is at ``spec``.
        InputError: ``spec`` is not a folder, a readable manifest or a regular file (a named
            pipe, a device, a broken link, a link loop).
    """
    path = Path(spec)
    if path.is_dir():
        root = str(path)
    else:
        manifest = path.suffix.lower() in MANIFEST_EXTENSIONS
        check_input_file(path, "manifest" if manifest else "input")
        root = str(path.parent)
    return collect_inputs([path], TRAINING_EXTENSIONS), root


def check_prefix(prefix: str) -> str:
    """A shard name prefix: a plain, visible file name part (no folder, not hidden).

    Raises:
        UsageError: an empty prefix, one holding a path separator or a NUL, or one starting
            with a dot.
    """
    seps = {"/", os.sep, os.altsep} - {None}
    if not prefix:
        raise UsageError("shard prefix must not be empty")
    if any(c in prefix for c in seps) or "\0" in prefix:
        raise UsageError(
            f"shard prefix {prefix!r} must be a plain name, without a path separator "
            "(shards are written in the output folder)"
        )
    if prefix.startswith("."):
        raise UsageError(f"shard prefix {prefix!r} must not start with a dot (hidden files)")
    return prefix


@dataclass
class ShardWriteReport:
    """What :func:`write_shards` did."""

    shards: list[str] = field(default_factory=list)
    written: int = 0
    skipped: Counter = field(default_factory=Counter)
    skipped_names: list[tuple[str, str]] = field(default_factory=list)


@functools.cache
def _feature_processor() -> ClipProcessor:
    """The AxLSTM log-mel processor (what ``--features`` shards hold), built once per process."""
    return ClipProcessor()


def _encode(task: tuple[int, str, str, bool, str, int]) -> tuple[int, dict | None, tuple | None]:
    """Encode one input file: ``(index, members | None, (reason, name, detail) | None)``."""
    index, path, rel, features, dtype, sample_rate = task
    processor = _feature_processor()
    try:
        if path.lower().endswith(".npy"):
            if not features:
                raise BadItem("unreadable", path, "feature arrays need --features shards")
            feats = processor.check_features(np.load(path, allow_pickle=False), path).numpy()
            wave = None
        else:
            wave = processor.check_wave(read_audio_file(path, sample_rate), path).numpy()
            feats = processor.wave_features(wave, path).numpy() if features else None
    except BadItem as bad:
        return index, None, (bad.reason, bad.name, bad.detail)
    except (OSError, ValueError) as err:
        return index, None, ("unreadable", path, str(err))
    meta: dict = {"source": rel, "sample_rate": sample_rate}
    members: dict[str, bytes] = {}
    if features:
        arr = np.ascontiguousarray(feats, dtype=np.float16 if dtype == "float16" else np.float32)
        buf = io.BytesIO()
        np.save(buf, arr, allow_pickle=False)
        members["npy"] = buf.getvalue()
        meta.update(frames=int(arr.shape[0]), n_mels=int(arr.shape[1]), dtype=dtype)
        if wave is not None:
            meta["duration_s"] = round(len(wave) / sample_rate, 4)
    else:
        peak = float(np.abs(wave).max())
        if peak > 1.0:
            wave = np.clip(wave, -1.0, 1.0)
            meta["clipped_peak"] = round(peak, 4)
        buf = io.BytesIO()
        sf.write(buf, wave, sample_rate, format="FLAC", subtype="PCM_16")
        members["flac"] = buf.getvalue()
        meta["duration_s"] = round(len(wave) / sample_rate, 4)
    members["json"] = json.dumps(meta, sort_keys=True).encode("utf-8")
    return index, members, None


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def write_shards(
    inputs: Sequence[str],
    out_dir: str | Path,
    features: bool = False,
    shard_size: int = 1000,
    dtype: str = "float16",
    prefix: str = "shard",
    sample_rate: int = 16000,
    workers: int = 0,
    root: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> ShardWriteReport:
    """Write WebDataset shards of ``shard_size`` samples from audio (or ``.npy``) files.

    Args:
        inputs: file paths, in the order the samples are written.
        out_dir: folder for ``{prefix}-000000.tar``, ... and ``index.json``.
        features: store unnormalised log-mel ``.npy`` arrays ``(T, 80)`` instead of FLAC audio.
        dtype: ``float16`` (half the size; ~0.01 resolution on log-mel values) or ``float32``.
        sample_rate: audio is resampled to this rate (16 kHz for AxLSTM) and stored as 16-bit
            mono FLAC.
        workers: decoding processes (0: in this process).
        root: stored source names are made relative to this folder.
        progress: called with the number of inputs handled since the last call.

    Bad inputs (unreadable, empty, silent, NaN) are skipped and listed in the report.
    """
    if shard_size <= 0:
        raise ValueError(f"shard size must be positive, got {shard_size}")
    if dtype not in ("float16", "float32"):
        raise ValueError(f"dtype must be float16 or float32, got {dtype!r}")
    check_prefix(prefix)
    import webdataset as wds

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = ShardWriteReport()
    counts: dict[str, int] = {}
    tasks = (
        (i, p, os.path.relpath(p, root) if root else p, features, dtype, sample_rate)
        for i, p in enumerate(inputs)
    )

    state: dict = {"writer": None, "stream": None, "tmp": None, "n": 0}

    def shard_name() -> str:
        return f"{prefix}-{len(report.shards):06d}.tar"

    def discard() -> None:
        """Close the open shard without raising and delete its temporary file."""
        writer, stream, tmp = state["writer"], state["stream"], state["tmp"]
        state.update(writer=None, stream=None, tmp=None, n=0)
        # Closing the tar writer first marks it closed (even when its final write fails), so
        # it never tries to write again to a closed file when it is garbage-collected.
        for closing in (writer, stream):
            if closing is not None:
                with contextlib.suppress(OSError, ValueError):
                    closing.close()
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    @contextlib.contextmanager
    def writing():
        """Turn a failed write of the current shard (a full disk) into one OutputError."""
        try:
            yield
        except OutputError:
            discard()
            raise
        except OSError as err:
            target = out / shard_name()
            discard()
            raise OutputError(f"cannot write shard {target}: {err.strerror or err}") from None

    def close_shard() -> None:
        if state["writer"] is None:
            return
        name = shard_name()
        with writing():
            state["writer"].close()
            state["stream"].flush()
            os.fsync(state["stream"].fileno())
            state["stream"].close()
            os.replace(state["tmp"], out / name)
        report.shards.append(str(out / name))
        counts[name] = state["n"]
        state.update(writer=None, stream=None, tmp=None, n=0)

    def add(members: dict[str, bytes], index: int) -> None:
        with writing():
            if state["writer"] is None:
                tmp = out / f".{shard_name()}.tmp"
                state["tmp"] = tmp
                state["stream"] = open(tmp, "wb")  # noqa: SIM115  (closed in close_shard)
                state["writer"] = wds.TarWriter(state["stream"], encoder=False, mtime=0.0)
            state["writer"].write({"__key__": f"{index:09d}", **members})
        state["n"] += 1
        report.written += 1
        if state["n"] >= shard_size:
            close_shard()

    def handle(result) -> None:
        index, members, bad = result
        if bad is not None:
            reason, name, detail = bad
            report.skipped[reason] += 1
            report.skipped_names.append((reason, name))
            logger.warning("skipped %s: %s%s", name, reason, f" ({detail})" if detail else "")
        else:
            add(members, index)
        if progress is not None:
            progress(1)

    try:
        if workers > 0:
            with ProcessPoolExecutor(workers, initializer=_init_worker) as pool:
                for result in pool.map(_encode, tasks, chunksize=8):
                    handle(result)
        else:
            for task in tasks:
                handle(_encode(task))
        close_shard()
    finally:
        discard()  # interrupted or failed: never leave a partial shard
    index = {
        "format": INDEX_FORMAT,
        "version": 1,
        "content": "features" if features else "audio",
        "dtype": dtype if features else None,
        "sample_rate": sample_rate,
        "shards": counts,
        "samples": report.written,
    }
    atomic_write_text(out / INDEX_NAME, json.dumps(index, indent=2, sort_keys=True) + "\n")
    return report
