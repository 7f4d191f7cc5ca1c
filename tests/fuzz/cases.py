"""Generators of the fuzz cases and the assertions they share.

Each generator returns a list of cases; a case knows how to build its input under a folder
(``build(root) -> path``) and what must happen (``expect``). The tests are table-driven over
these lists, so every case is its own test id.

The contract (issue 11): the right result or a clear error, whose message names the file (or
option) and the problem; never a hang (every case runs under a timeout), never a traceback,
never a silent wrong value.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import resource
import shutil
import struct
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from axlstm.core.errors import AudioError, AxlstmError

SR = 16000
#: Seconds a case may take before it counts as a hang (pytest-timeout, signal method).
TIMEOUT = 20
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


# ------------------------------------------------------------------------------- assertions
def assert_clear_error(
    err: BaseException | str,
    *,
    names: tuple[str, ...] = (),
    names_any: tuple[str, ...] = (),
    words: tuple[str, ...] = (),
    one_line: bool = False,
) -> None:
    """The message of ``err`` holds every string of ``names``, one of ``names_any`` and one of
    ``words`` (the problem, any case); with ``one_line`` it is a single line."""
    msg = str(err)
    for name in names:
        assert name in msg, f"the message does not name {name!r}: {msg!r}"
    if names_any:
        assert any(n in msg for n in names_any), f"the message names none of {names_any}: {msg!r}"
    if words:
        low = msg.lower()
        assert any(w.lower() in low for w in words), (
            f"the message does not say the problem (one of {words}): {msg!r}"
        )
    if one_line:
        assert "\n" not in msg.strip(), f"the message is not one line: {msg!r}"


def _proc_status(key: str) -> int | None:
    """A ``/proc/self/status`` memory field in bytes (None where there is none)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


@contextmanager
def memory_guard(headroom: int = 2 << 30) -> Iterator[dict[str, int]]:
    """Measure the growth of peak RSS over the block, and cap the address space at its current
    size plus ``headroom`` so that a hostile file makes an allocation fail instead of the
    machine run out of memory. Yields a dict that holds ``growth`` (bytes) afterwards."""
    result: dict[str, int] = {}
    try:  # reset the peak (VmHWM) so the growth is measured from now
        Path("/proc/self/clear_refs").write_text("5")
        reset = True
    except OSError:
        reset = False
    before = (_proc_status("VmRSS") if reset else None) or (
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    )
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    size = _proc_status("VmSize")
    limited = size is not None
    if limited:
        cap = size + headroom
        if hard != resource.RLIM_INFINITY:
            cap = min(cap, hard)
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield result
    finally:
        if limited:
            resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
        peak = (_proc_status("VmHWM") if reset else None) or (
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        )
        result["growth"] = max(0, peak - before)


# ------------------------------------------------------------------------------------ audio
def tone(n: int, rate: float, amp: float = 0.5, freq: float = 440.0, channels: int = 1):
    """A sine of ``n`` samples at ``rate`` Hz: (n,) float64, or (n, channels)."""
    x = amp * np.sin(2 * np.pi * freq * np.arange(n) / rate)
    return np.repeat(x[:, None], channels, axis=1) if channels > 1 else x


def audio_bytes(data, rate: int = SR, subtype: str = "PCM_16", fmt: str = "WAV") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, data, rate, subtype=subtype, format=fmt)
    return buf.getvalue()


def patched(blob: bytes, offset: int, fmt: str, value: int) -> bytes:
    out = bytearray(blob)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


#: A valid 0.25 s 16-bit mono WAV at 16 kHz; header fields of the canonical 44-byte header.
N = SR // 4
WAV = audio_bytes(tone(N, SR))
WAV_FIELDS = {  # name: (offset, struct format)
    "riff_size": (4, "<I"),
    "fmt_size": (16, "<I"),
    "format_tag": (20, "<H"),
    "channels": (22, "<H"),
    "sample_rate": (24, "<I"),
    "byte_rate": (28, "<I"),
    "block_align": (32, "<H"),
    "bits": (34, "<H"),
    "data_size": (40, "<I"),
}


def wav_with(**fields: int) -> bytes:
    blob = WAV
    for name, value in fields.items():
        offset, fmt = WAV_FIELDS[name]
        blob = patched(blob, offset, fmt, value)
    return blob


def with_chunk(blob: bytes, chunk_id: bytes, payload: bytes, before_data: bool) -> bytes:
    """A WAV with an extra chunk (before the data chunk or at the end), RIFF size fixed."""
    body = chunk_id + struct.pack("<I", len(payload)) + payload + b"\0" * (len(payload) % 2)
    at = blob.index(b"data") if before_data else len(blob)
    out = bytearray(blob[:at] + body + blob[at:])
    struct.pack_into("<I", out, 4, len(out) - 8)
    return bytes(out)


@dataclass(eq=False)
class Loads:
    """The file must load: ``samples`` long at 16 kHz (within ``tol``), finite float32; where
    ``reference`` is given, equal to it within ``atol`` (``edge`` samples at each end left out,
    for the resampler's transients)."""

    samples: int
    tol: int = 0
    reference: np.ndarray | None = None
    atol: float = 0.0
    edge: int = 0


@dataclass(eq=False)
class Fails:
    """The file must be refused with ``error`` naming it and saying the problem (one of
    ``words``, when given)."""

    error: type[BaseException] | tuple[type[BaseException], ...] = AudioError
    words: tuple[str, ...] = ()


@dataclass(eq=False)
class AudioCase:
    id: str
    build: Callable[[Path], Path]
    expect: Loads | Fails
    skip: str | None = None  # reason to skip (e.g. a permission case when running as root)


def _file(name: str | bytes, blob: bytes | Callable[[], bytes]) -> Callable[[Path], Path]:
    def build(root: Path) -> Path:
        path = root / os.fsdecode(name)
        path.write_bytes(blob() if callable(blob) else blob)
        return path

    return build


def _rng_bytes(seed: int, n: int) -> bytes:
    return np.random.default_rng(seed).bytes(n)


def _ok_16k(x: np.ndarray, atol: float) -> Loads:
    mono = x.mean(axis=1) if x.ndim == 2 else x
    return Loads(len(mono), reference=mono, atol=atol)


def _ok_resampled(rate: int, seconds: float = 0.25) -> tuple[bytes, Loads]:
    n = round(seconds * rate)
    out = round(n * SR / rate)
    blob = audio_bytes(tone(n, rate), rate, "FLOAT")
    return blob, Loads(out, tol=1, reference=tone(out, SR), atol=1e-3, edge=200)


# quantisation step of each PCM subtype (for the exact-value checks)
_Q = {"PCM_U8": 1 / 128, "PCM_16": 1 / 32768, "PCM_24": 2**-23, "PCM_32": 2**-31}


def _fifo(root: Path) -> Path:
    path = root / "pipe.wav"
    os.mkfifo(path)
    return path


def _folder(root: Path) -> Path:
    path = root / "folder.wav"
    path.mkdir()
    return path


def _broken_link(root: Path) -> Path:
    path = root / "broken.wav"
    path.symlink_to(root / "gone.wav")
    return path


def _link_loop(root: Path) -> Path:
    a, b = root / "loop_a.wav", root / "loop_b.wav"
    a.symlink_to(b)
    b.symlink_to(a)
    return a


def _device(target: str) -> Callable[[Path], Path]:
    def build(root: Path) -> Path:
        path = root / f"dev_{Path(target).name}.wav"
        path.symlink_to(target)
        return path

    return build


def _unreadable(root: Path) -> Path:
    path = root / "secret.wav"
    path.write_bytes(WAV)
    path.chmod(0)
    return path


def _valid_link(root: Path) -> Path:
    (root / "real.wav").write_bytes(WAV)
    link = root / "alias.wav"
    link.symlink_to(root / "real.wav")
    return link


def audio_cases() -> list[AudioCase]:
    """Malformed, hostile and odd-but-valid audio files for ``load_audio(path, 16000)``."""
    x = tone(N, SR)
    refs = _ok_16k(x, _Q["PCM_16"])
    cases: list[AudioCase] = []

    def bad(id, build, *words, error=AudioError, skip=None):
        cases.append(AudioCase(id, build, Fails(error, tuple(words)), skip))

    def good(id, build, expect=refs):
        cases.append(AudioCase(id, build, expect))

    # --- not audio at all
    bad("empty_wav", _file("empty.wav", b""), "empty", "0 bytes")
    bad("empty_flac", _file("empty.flac", b""), "empty", "0 bytes")
    bad("one_byte", _file("one.wav", b"R"))
    bad("43_bytes", _file("short_header.wav", WAV[:43]))
    bad("riff_wave_only", _file("riff.wav", WAV[:12]))
    bad("header_cut_at_30", _file("cut30.wav", WAV[:30]))
    for i, ext in enumerate(("wav", "flac", "mp3", "ogg")):
        bad(f"random_100B_{ext}", _file(f"random.{ext}", _rng_bytes(i, 100)))
        bad(f"random_4KiB_{ext}", _file(f"random4k.{ext}", _rng_bytes(10 + i, 4096)))
    bad("text_named_wav", _file("notes.wav", b"this is a text file, not audio\n" * 20))
    bad("json_named_flac", _file("data.flac", json.dumps({"a": list(range(200))}).encode()))
    bad("zip_named_wav", _file("archive.wav", lambda: _zip_bytes({"a.txt": b"hello"})))
    bad("png_named_ogg", _file("image.ogg", b"\x89PNG\r\n\x1a\n" + _rng_bytes(5, 500)))
    bad(
        "id3_junk_mp3",
        _file("tagged.mp3", b"ID3\x03\x00\x00\x00\x00\x00\x10" + _rng_bytes(6, 3000)),
    )
    bad("riff_header_garbage_body", _file("fake.wav", WAV[:12] + _rng_bytes(7, 2000)))
    bad("unknown_format_tag", _file("tag.wav", wav_with(format_tag=0x1234)))
    # --- valid header, no or missing data
    bad("wav_no_data", _file("nodata.wav", audio_bytes(np.zeros(0), SR)), "no samples", "empty")
    bad("header_only_44", _file("header44.wav", WAV[:44]), "truncat")
    bad("truncated_half", _file("half.wav", WAV[: 44 + (len(WAV) - 44) // 2]), "truncat")
    bad("truncated_one_byte", _file("minus1.wav", WAV[:-1]), "truncat")
    big = wav_with(data_size=len(WAV) - 44 + 1000, riff_size=len(WAV) - 8 + 1000)
    bad("declares_more_data", _file("declares_more.wav", big), "truncat")
    w24 = audio_bytes(x, SR, "PCM_24")
    bad("truncated_pcm24", _file("cut24.wav", w24[: len(w24) * 2 // 3]), "truncat")
    wf = audio_bytes(x, SR, "FLOAT")
    bad("truncated_float", _file("cutfloat.wav", wf[: len(wf) // 2]), "truncat")
    fl = audio_bytes(x, SR, "PCM_16", "FLAC")
    bad("truncated_flac", _file("cut.flac", fl[: len(fl) // 2]))
    og = audio_bytes(x, SR, "VORBIS", "OGG")
    bad("truncated_ogg", _file("cut.ogg", og[: len(og) // 2]))
    ai = audio_bytes(x, SR, "PCM_16", "AIFF")
    bad("truncated_aiff", _file("cut.aiff", ai[: len(ai) // 2]), "truncat")
    mp = audio_bytes(x, SR, "MPEG_LAYER_III", "MP3")
    bad("truncated_mp3", _file("cut.mp3", mp[: len(mp) // 2]))
    # --- non-finite samples
    for id, name, value, subtype in (
        ("nan_float32", "nan.wav", np.nan, "FLOAT"),
        ("posinf_float32", "inf.wav", np.inf, "FLOAT"),
        ("neginf_float64", "neginf.wav", -np.inf, "DOUBLE"),
    ):
        y = x.copy()
        y[100] = value
        bad(id, _file(name, audio_bytes(y, SR, subtype)), "nan", "finite", "inf")
    six = tone(N, SR, channels=6)
    six[50, 3] = np.nan
    bad(
        "nan_in_one_of_six_channels",
        _file("nan6.wav", audio_bytes(six, SR, "FLOAT")),
        "nan",
        "finite",
    )
    # --- absurd header fields
    bad("rate_1hz", _file("rate1.wav", wav_with(sample_rate=1, byte_rate=2)), "rate")
    bad("rate_2hz", _file("rate2.wav", wav_with(sample_rate=2, byte_rate=4)), "rate")
    bad("rate_2ghz", _file("rate2g.wav", wav_with(sample_rate=2_000_000_000)))
    bad("zero_channels", _file("ch0.wav", wav_with(channels=0)))
    bad("65535_channels", _file("ch65535.wav", wav_with(channels=65535)))
    # --- not regular files: refused by name, never read (a pipe would block forever)
    bad("named_pipe", _fifo, "pipe", "fifo")
    bad("folder_named_wav", _folder, "folder", "directory")
    bad("broken_symlink", _broken_link, error=(AudioError, FileNotFoundError))
    bad("symlink_loop", _link_loop, "loop")
    bad("dev_null_as_wav", _device("/dev/null"), "device", "regular file")
    bad("dev_zero_as_wav", _device("/dev/zero"), "device", "regular file")
    bad("missing_file", lambda root: root / "missing.wav", error=FileNotFoundError)
    bad(
        "no_read_permission",
        _unreadable,
        "permission",
        skip="root reads any file" if IS_ROOT else None,
    )

    # --- odd but valid: each must load with the right length and values
    good(
        "silent_pcm16",
        _file("silent.wav", audio_bytes(np.zeros(N), SR)),
        Loads(N, reference=np.zeros(N)),
    )
    good(
        "silent_float",
        _file("silentf.wav", audio_bytes(np.zeros(N), SR, "FLOAT")),
        Loads(N, reference=np.zeros(N)),
    )
    dc = np.full(N, 0.25)
    good("dc_float", _file("dc.wav", audio_bytes(dc, SR, "FLOAT")), Loads(N, reference=dc))
    neg = np.full(N, -1.0)
    good(
        "dc_full_scale_negative", _file("dcneg.wav", audio_bytes(neg, SR)), Loads(N, reference=neg)
    )
    good(
        "one_sample",
        _file("single.wav", audio_bytes(np.array([0.5]), SR)),
        Loads(1, reference=np.array([0.5]), atol=1e-4),
    )
    for subtype in ("PCM_U8", "PCM_16", "PCM_24", "PCM_32"):
        atol = _Q[subtype] + 1e-7
        good(
            f"wav_{subtype.lower()}",
            _file(f"{subtype}.wav", audio_bytes(x, SR, subtype)),
            _ok_16k(x, atol),
        )
    good("wav_float32", _file("f32.wav", audio_bytes(x, SR, "FLOAT")), _ok_16k(x, 1e-7))
    good("wav_float64", _file("f64.wav", audio_bytes(x, SR, "DOUBLE")), _ok_16k(x, 1e-7))
    loud = 4.0 * x
    good(
        "float_beyond_full_scale",
        _file("loud.wav", audio_bytes(loud, SR, "FLOAT")),
        _ok_16k(loud, 1e-6),
    )
    good(
        "six_channels", _file("six.wav", audio_bytes(tone(N, SR, channels=6), SR)), _ok_16k(x, 1e-4)
    )
    stereo = np.stack([x, -x], axis=1)  # opposite phases average to silence
    good(
        "stereo_cancelling",
        _file("stereo.wav", audio_bytes(stereo, SR)),
        Loads(N, reference=np.zeros(N), atol=1e-4),
    )
    good("flac_16", _file("clip.flac", fl), _ok_16k(x, 1e-4))
    good("flac_24", _file("clip24.flac", audio_bytes(x, SR, "PCM_24", "FLAC")), _ok_16k(x, 1e-6))
    good("ogg_vorbis", _file("clip.ogg", og), Loads(N, reference=x, atol=0.05, edge=200))
    good("mp3", _file("clip.mp3", mp), Loads(N, reference=x, atol=0.05, edge=200))
    good("aiff", _file("clip.aiff", ai), _ok_16k(x, 1e-4))
    good("au", _file("clip.au", audio_bytes(x, SR, "PCM_16", "AU")), _ok_16k(x, 1e-4))
    good("caf", _file("clip.caf", audio_bytes(x, SR, "PCM_16", "CAF")), _ok_16k(x, 1e-4))
    good("w64", _file("clip.w64", audio_bytes(x, SR, "PCM_16", "W64")), _ok_16k(x, 1e-4))
    good("rf64", _file("clip_rf64.wav", audio_bytes(x, SR, "PCM_16", "RF64")), _ok_16k(x, 1e-4))
    for rate in (8000, 22050, 44100, 48000, 96000):
        blob, expect = _ok_resampled(rate)
        good(f"rate_{rate}", _file(f"r{rate}.wav", blob), expect)
    blob, expect = _ok_resampled(44100)
    good(
        "stereo_44k_flac",
        _file("st44.flac", audio_bytes(tone(11025, 44100, channels=2), 44100, "PCM_24", "FLAC")),
        expect,
    )
    good("flac_named_wav", _file("really_flac.wav", fl), _ok_16k(x, 1e-4))
    good("wav_named_mp3", _file("really_wav.mp3", WAV), refs)
    good("ogg_named_flac", _file("really_ogg.flac", og), Loads(N, reference=x, atol=0.05, edge=200))
    good("uppercase_ext_wav", _file("CLIP.WAV", WAV))
    good("uppercase_ext_flac", _file("CLIP.FLAC", fl), _ok_16k(x, 1e-4))
    good("no_extension", _file("clip", WAV))
    good("spaces_in_name", _file("my clip (1) .wav", WAV))
    good("unicode_name", _file("café 日本語 🎵.wav", WAV))
    good("non_utf8_name", _file(b"clip-\xff\xfe-latin\xe9.wav", WAV))
    good("leading_dash_name", _file("-clip.wav", WAV))
    good("long_name", _file("n" * 250 + ".wav", WAV))
    good("symlink_to_valid", _valid_link)
    good("garbage_appended", _file("tail.wav", WAV + _rng_bytes(8, 1000)))
    good(
        "id3_chunk_at_end",
        _file("id3.wav", with_chunk(WAV, b"id3 ", b"ID3\x03\x00\x00\x00\x00\x00\x05hello", False)),
    )
    info = b"INFOICMT" + struct.pack("<I", 4) + b"abc\0"
    good("list_chunk_before_data", _file("list.wav", with_chunk(WAV, b"LIST", info, True)))
    good("unknown_chunk_odd_size", _file("junk.wav", with_chunk(WAV, b"junk", b"abc", True)))
    return cases


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


# ------------------------------------------------------------------------------------ tasks
TASK_LABELS = ("low", "mid", "high")
_FREQS = {"low": 220.0, "mid": 660.0, "high": 1980.0}


def make_task(root: Path, name: str = "task", *, kfold: bool = False) -> Path:
    """A valid tiny HEAR scene task: one 0.5 s tone per class and split, 16 kHz audio."""
    task = root / name
    task.mkdir(parents=True)
    splits = ["fold00", "fold01", "fold02"] if kfold else ["train", "valid", "test"]
    meta = {
        "task_name": name,
        "version": "fuzz",
        "embedding_type": "scene",
        "prediction_type": "multiclass",
        "split_mode": "new_split_kfold" if kfold else "trainvaltest",
        "sample_duration": 0.5,
        "evaluation": ["top1_acc"],
        "splits": splits,
    }
    if kfold:
        meta["nfolds"] = len(splits)
    (task / "task_metadata.json").write_text(json.dumps(meta))
    vocab = "idx,label\n" + "".join(f"{i},{x}\n" for i, x in enumerate(TASK_LABELS))
    (task / "labelvocabulary.csv").write_text(vocab)
    n = 0
    for split in splits:
        entries = {}
        folder = task / str(SR) / split
        folder.mkdir(parents=True)
        for label in TASK_LABELS:
            fname = f"clip{n:03d}.wav"
            sf.write(folder / fname, tone(SR // 2, SR, 0.4, _FREQS[label]), SR, subtype="PCM_16")
            entries[fname] = [label]
            n += 1
        (task / f"{split}.json").write_text(json.dumps(entries))
    return task


def _edit_json(path: Path, edit: Callable[[Any], Any]) -> None:
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))


@dataclass(eq=False)
class TaskCase:
    """A broken (or odd but valid) task folder. ``mutate(task) -> culprit`` breaks a valid
    task and returns the file at fault; the error must name it (its path or one of
    ``names_any``) and say the problem (one of ``words``). ``valid``: it must load instead;
    ``either``: a load or a clear error are both right."""

    id: str
    mutate: Callable[[Path], Path]
    words: tuple[str, ...] = ()
    names_any: tuple[str, ...] = ()
    kfold: bool = False
    valid: bool = False
    either: bool = False


def _meta(task: Path) -> Path:
    return task / "task_metadata.json"


def _vocab(task: Path) -> Path:
    return task / "labelvocabulary.csv"


def _write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def _del_key(key: str) -> Callable[[Path], Path]:
    def mutate(task: Path) -> Path:
        _edit_json(_meta(task), lambda m: {k: v for k, v in m.items() if k != key})
        return _meta(task)

    return mutate


def _set_key(key: str, value: Any) -> Callable[[Path], Path]:
    def mutate(task: Path) -> Path:
        _edit_json(_meta(task), lambda m: {**m, key: value})
        return _meta(task)

    return mutate


def _fifo_at(path: Path) -> Path:
    path.unlink()
    os.mkfifo(path)
    return path


def _one_class(task: Path) -> Path:
    _write(_vocab(task), "idx,label\n0,only\n")
    for split in ("train", "valid", "test"):
        _edit_json(task / f"{split}.json", lambda e: {k: ["only"] for k in e})
    return _vocab(task)


def _split_entry(split: str, entry: str, outside: Callable[[Path], Path] | None = None):
    """Add ``entry`` to ``split``.json, with a valid audio file where it points (so the only
    problem is where it points)."""

    def mutate(task: Path) -> Path:
        target = outside(task) if outside else task / str(SR) / split / entry
        target.parent.mkdir(parents=True, exist_ok=True)
        sf.write(target, tone(SR // 2, SR, 0.4, 440.0), SR)
        _edit_json(task / f"{split}.json", lambda e: {**e, entry: ["low"]})
        return task / f"{split}.json"

    return mutate


def _escape_entry(levels: int) -> Callable[[Path], Path]:
    entry = "../" * levels + "x.wav"

    def mutate(task: Path) -> Path:
        target = (task / str(SR) / "train" / entry).resolve()
        target.parent.mkdir(parents=True, exist_ok=True)
        sf.write(target, tone(SR // 2, SR, 0.4, 440.0), SR)
        _edit_json(task / "train.json", lambda e: {**e, entry: ["low"]})
        return task / "train.json"

    return mutate


def _absolute_entry(task: Path) -> Path:
    target = task.parent / "elsewhere" / "abs.wav"
    target.parent.mkdir(parents=True, exist_ok=True)
    sf.write(target, tone(SR // 2, SR, 0.4, 440.0), SR)
    _edit_json(task / "train.json", lambda e: {**e, str(target): ["low"]})
    return task / "train.json"


def _missing_audio(task: Path) -> Path:
    _edit_json(task / "test.json", lambda e: {**e, "ghost.wav": ["mid"]})
    return task / str(SR) / "test" / "ghost.wav"


def _unlink(name: str) -> Callable[[Path], Path]:
    def mutate(task: Path) -> Path:
        (task / name).unlink()
        return task / name

    return mutate


def _rm_audio_split(split: str) -> Callable[[Path], Path]:
    def mutate(task: Path) -> Path:
        shutil.rmtree(task / str(SR) / split)
        return task / str(SR) / split

    return mutate


def _task_is_file(task: Path) -> Path:
    shutil.rmtree(task)
    task.write_text("not a folder")
    return task


def _metadata_is_folder(task: Path) -> Path:
    _meta(task).unlink()
    _meta(task).mkdir()
    return _meta(task)


def _bom_vocab(task: Path) -> Path:
    return _write(_vocab(task), "\ufeff" + _vocab(task).read_text())


def _bom_meta(task: Path) -> Path:
    return _write(_meta(task), "\ufeff" + _meta(task).read_text())


def _latin1_vocab(task: Path) -> Path:
    _write(_vocab(task), "idx,label\n0,café\n1,crème\n2,naïve\n".encode("latin-1"))
    mapping = dict(zip(TASK_LABELS, ("café", "crème", "naïve"), strict=True))
    for split in ("train", "valid", "test"):
        _edit_json(task / f"{split}.json", lambda e: {k: [mapping[v[0]]] for k, v in e.items()})
    return _vocab(task)


def _same_file_twice(task: Path) -> Path:
    train = json.loads((task / "train.json").read_text())
    first = next(iter(train))
    shutil.copy(task / str(SR) / "train" / first, task / str(SR) / "test" / first)
    _edit_json(task / "test.json", lambda e: {**e, first: train[first]})
    return task / "test.json"


def task_cases() -> list[TaskCase]:
    c = TaskCase
    return [
        c("no_metadata", _unlink("task_metadata.json"), names_any=("task_metadata.json",)),
        c("metadata_not_json", lambda t: _write(_meta(t), "{embedding_type: scene"), ("json",)),
        c("metadata_is_list", lambda t: _write(_meta(t), "[1, 2, 3]"), ("object", "list")),
        c("metadata_missing_embedding_type", _del_key("embedding_type"), ("embedding_type",)),
        c("metadata_missing_split_mode", _del_key("split_mode"), ("split_mode",)),
        c("metadata_splits_is_string", _set_key("splits", "train"), ("splits",)),
        c("metadata_prediction_type_number", _set_key("prediction_type", 5), ("prediction_type",)),
        c("metadata_evaluation_is_string", _set_key("evaluation", "top1_acc"), ("evaluation",)),
        c("metadata_nfolds_mismatch", _set_key("nfolds", 7), ("nfolds",), kfold=True),
        c("metadata_fifo", lambda t: _fifo_at(_meta(t)), ("pipe", "fifo")),
        c("metadata_is_folder", _metadata_is_folder, ("folder", "directory", "regular file")),
        c("metadata_utf8_bom", _bom_meta, either=True),
        c("vocab_missing", _unlink("labelvocabulary.csv"), ("not found", "missing", "no such")),
        c("vocab_empty", lambda t: _write(_vocab(t), ""), ("empty",)),
        c("vocab_header_only", lambda t: _write(_vocab(t), "idx,label\n"), ("no labels", "empty")),
        c(
            "vocab_no_header",
            lambda t: _write(_vocab(t), "0,low\n1,mid\n2,high\n"),
            ("idx", "header"),
        ),
        c(
            "vocab_duplicate_label",
            lambda t: _write(_vocab(t), "idx,label\n0,low\n1,mid\n2,low\n"),
            ("twice", "duplicate"),
        ),
        c(
            "vocab_idx_not_integer",
            lambda t: _write(_vocab(t), "idx,label\n0,low\nx,mid\n2,high\n"),
            ("integer", "idx"),
        ),
        c(
            "vocab_idx_gap",
            lambda t: _write(_vocab(t), "idx,label\n0,low\n1,mid\n5,high\n"),
            ("idx", "gap"),
        ),
        c("vocab_one_class", _one_class, ("class",)),
        c("vocab_utf8_bom", _bom_vocab, valid=True),
        c("vocab_latin1", _latin1_vocab, ("utf-8", "utf8", "encoding", "decode")),
        c(
            "split_is_list",
            lambda t: _write(t / "train.json", '["clip000.wav"]'),
            ("object", "list"),
        ),
        c("split_not_json", lambda t: _write(t / "valid.json", "{'clip': low}"), ("json",)),
        c("split_missing", _unlink("test.json"), ("not found", "missing", "no such")),
        c(
            "split_label_not_in_vocab",
            lambda t: (
                _edit_json(t / "train.json", lambda e: {**e, "clip000.wav": ["purple"]})
                or t / "train.json"
            ),
            ("purple",),
        ),
        c(
            "split_labels_not_a_list",
            lambda t: (
                _edit_json(t / "train.json", lambda e: {**e, "clip000.wav": "low"})
                or t / "train.json"
            ),
            ("list",),
        ),
        c("split_entry_parent_dirs", _escape_entry(2), names_any=("train.json", "x.wav")),
        c("split_entry_leaves_task_folder", _escape_entry(3), names_any=("train.json", "x.wav")),
        c("split_entry_absolute_path", _absolute_entry, names_any=("train.json", "abs.wav")),
        c(
            "split_entry_in_subfolder_escape",
            _split_entry("train", "sub/../../../../y.wav", lambda t: t.parent / "y.wav"),
            names_any=("train.json", "y.wav"),
        ),
        c("listed_audio_missing", _missing_audio),
        c("same_file_in_two_splits", _same_file_twice, ("both", "twice")),
        c("kfold_missing_fold_json", _unlink("fold01.json"), kfold=True),
        c(
            "kfold_missing_fold_audio",
            _rm_audio_split("fold01"),
            ("fold01",),
            names_any=("fold01",),
            kfold=True,
        ),
        c("task_folder_is_a_file", _task_is_file),
    ]


# ------------------------------------------------------------------------------ checkpoints
class Exploit:
    """Pickles as a call of ``os.system`` that creates ``marker``: must never run."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


class EvalExploit(Exploit):
    """The same through ``builtins.eval``."""

    def __reduce__(self):
        return (eval, (f"__import__('os').system(\"touch '{self.marker}'\")",))


def malicious_legacy_pickle(marker: Path) -> bytes:
    """A raw (non-zip) pickle that calls ``os.system``."""
    return pickle.dumps({"model": Exploit(marker)}, protocol=2)


@dataclass(eq=False)
class CkptCase:
    """A broken checkpoint or release.

    ``loader``: "release" (``axlstm.load_model``), "official" (``axlstm.load_official`` as
    ``axlstm convert`` uses it), "train" (``engine.load_checkpoint``) or "export"
    (``engine.export_release``). ``build(root, good) -> path`` makes it from the valid files in
    ``good`` (see ``test_fuzz_checkpoints.good``). The loader must raise ``error`` naming
    ``path`` (or the file in ``culprit``), in one line, saying the problem (one of ``words``).
    """

    id: str
    loader: str
    build: Callable[[Path, dict[str, Any]], Path]
    words: tuple[str, ...] = ()
    error: type[BaseException] | tuple[type[BaseException], ...] = AxlstmError
    culprit: str | None = None  # a file inside the release folder that the message names
    marker: bool = False  # the case plants a payload that would create root/"pwned"
    memory: bool = False  # hostile sizes: measure peak RSS, cap the address space
    load_or_refuse: bool = False  # a clean load is also right (e.g. an inert payload)


#: Words of the non-finite refusal.
NONFINITE = ("nan", "finite", "inf")
#: Words of a refusal of a named pipe, folder, link loop.
FIFO_WORDS = ("pipe", "fifo")
DIR_WORDS = ("folder", "directory", "regular file")


def release_copy(root: Path, good: dict[str, Any]) -> Path:
    dst = root / "release"
    shutil.copytree(good["release"], dst)
    return dst


def rewrite_safetensors_header(path: Path, edit: Callable[[dict], dict]) -> None:
    blob = path.read_bytes()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + n])
    text = json.dumps(edit(header)).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + blob[8 + n :])


def _release_edit_config(edit: Callable[[dict], Any]) -> Callable[[Path, dict], Path]:
    def build(root: Path, good: dict[str, Any]) -> Path:
        rel = release_copy(root, good)
        _edit_json(rel / "config.json", edit)
        return rel

    return build


def _release_model_fields(**fields: Any) -> Callable[[Path, dict], Path]:
    return _release_edit_config(lambda c: {**c, "model": {**c["model"], **fields}})


def _release_config_text(content: str | bytes) -> Callable[[Path, dict], Path]:
    def build(root: Path, good: dict[str, Any]) -> Path:
        rel = release_copy(root, good)
        _write(rel / "config.json", content)
        return rel

    return build


def _release_weights(edit: Callable[[dict], dict]) -> Callable[[Path, dict], Path]:
    """A release whose weights are ``edit(state)``."""

    def build(root: Path, good: dict[str, Any]) -> Path:
        from safetensors.torch import save_file

        rel = release_copy(root, good)
        state = {k: v.clone() for k, v in good["state"].items()}
        save_file(edit(state), str(rel / "model.safetensors"), metadata={"format": "pt"})
        return rel

    return build


def _release_weights_bytes(edit: Callable[[bytes], bytes]) -> Callable[[Path, dict], Path]:
    def build(root: Path, good: dict[str, Any]) -> Path:
        rel = release_copy(root, good)
        w = rel / "model.safetensors"
        w.write_bytes(edit(w.read_bytes()))
        return rel

    return build


def _release_special(name: str, kind: str) -> Callable[[Path, dict], Path]:
    """A release whose ``name`` is a FIFO, a folder, a link loop or missing."""

    def build(root: Path, good: dict[str, Any]) -> Path:
        rel = release_copy(root, good)
        path = rel / name
        path.unlink()
        if kind == "fifo":
            os.mkfifo(path)
        elif kind == "folder":
            path.mkdir()
        elif kind == "loop":
            other = rel / f"{name}.other"
            path.symlink_to(other)
            other.symlink_to(path)
        return rel

    return build


def _release_header(edit: Callable[[dict], dict]) -> Callable[[Path, dict], Path]:
    def build(root: Path, good: dict[str, Any]) -> Path:
        rel = release_copy(root, good)
        rewrite_safetensors_header(rel / "model.safetensors", edit)
        return rel

    return build


def _first_weight(state: dict) -> str:
    return next(k for k, v in state.items() if v.is_floating_point() and v.dim() >= 2)


def _nan_weights(value: float) -> Callable[[dict], dict]:
    def edit(state: dict) -> dict:
        key = _first_weight(state)
        state[key].view(-1)[3] = value
        return state

    return edit


def _wrong_shape(state: dict) -> dict:
    key = _first_weight(state)
    state[key] = state[key][:-1].clone()
    return state


def _missing_key(state: dict) -> dict:
    del state[_first_weight(state)]
    return state


def _extra_key(state: dict) -> dict:
    import torch

    state["stowaway.weight"] = torch.zeros(3, 3)
    return state


def _offset_beyond(header: dict) -> dict:
    key = next(k for k in header if k != "__metadata__")
    start, end = header[key]["data_offsets"]
    header[key]["data_offsets"] = [start, end + 10**9]
    header[key]["shape"] = [(end + 10**9 - start) // 4]
    return header


def _file_from(key: str, edit: Callable[[bytes], bytes] | None = None, name: str = "ckpt.pth"):
    """A checkpoint file: the valid bytes ``good[key]`` through ``edit``."""

    def build(root: Path, good: dict[str, Any]) -> Path:
        path = root / name
        blob = good[key] if key else b""
        path.write_bytes(edit(blob) if edit else blob)
        return path

    return build


def _file_bytes(blob: bytes | Callable[[], bytes], name: str = "ckpt.pth"):
    def build(root: Path, good: dict[str, Any]) -> Path:
        path = root / name
        path.write_bytes(blob() if callable(blob) else blob)
        return path

    return build


def _torch_file(make: Callable[[Path, dict[str, Any]], Any], name: str = "ckpt.pth"):
    """``torch.save(make(root, good))``."""

    def build(root: Path, good: dict[str, Any]) -> Path:
        import torch

        path = root / name
        torch.save(make(root, good), path)
        return path

    return build


def _special_file(kind: str, name: str = "ckpt.pth"):
    def build(root: Path, good: dict[str, Any]) -> Path:
        path = root / name
        if kind == "fifo":
            os.mkfifo(path)
        elif kind == "folder":
            path.mkdir()
        elif kind == "loop":
            other = root / f"{name}.other"
            path.symlink_to(other)
            other.symlink_to(path)
        elif kind == "missing":
            pass
        return path

    return build


def _state_with(edit: Callable[[dict], dict]) -> Callable[[dict], dict]:
    def make(good: dict[str, Any]) -> dict:
        return edit({k: v.clone() for k, v in good["state"].items()})

    return make


def _official(edit: Callable[[dict], dict]) -> Callable[[Path, dict], Any]:
    return lambda root, good: {"model": _state_with(edit)(good)}


def _train(**fields: Any) -> Callable[[Path, dict], Any]:
    """A training checkpoint with ``fields`` replaced (a callable value is applied to the old
    one; ``None`` drops the field)."""

    def make(root: Path, good: dict[str, Any]) -> dict:
        state = dict(good["train_state"])
        state["model"] = {k: v.clone() for k, v in state["model"].items()}
        for key, value in fields.items():
            if value is None:
                state.pop(key, None)
            elif callable(value):
                state[key] = value(state[key])
            else:
                state[key] = value
        return state

    return make


def _truncate(fraction: float) -> Callable[[bytes], bytes]:
    return lambda blob: blob[: int(len(blob) * fraction)]


def checkpoint_cases() -> list[CkptCase]:
    c = CkptCase
    loop = ("loop",)
    cases = [
        # --- release folders: axlstm.load_model
        c("release_missing_folder", "release", lambda r, g: r / "nowhere", error=FileNotFoundError),
        c("release_is_a_file", "release", _file_from("official"), (*DIR_WORDS, "release")),
        c(
            "release_no_config",
            "release",
            _release_special("config.json", "missing"),
            ("config.json",),
        ),
        c(
            "release_config_not_json",
            "release",
            _release_config_text("{model: 1"),
            ("json",),
            culprit="config.json",
        ),
        c(
            "release_config_empty",
            "release",
            _release_config_text(""),
            ("json", "empty"),
            culprit="config.json",
        ),
        c(
            "release_config_list",
            "release",
            _release_config_text("[1, 2]"),
            ("object", "list"),
            culprit="config.json",
        ),
        c(
            "release_config_latin1",
            "release",
            _release_config_text(b'{"format": "\xe9"}'),
            ("utf-8", "utf8", "decode", "encoding", "json"),
            culprit="config.json",
        ),
        c(
            "release_config_fifo",
            "release",
            _release_special("config.json", "fifo"),
            FIFO_WORDS,
            culprit="config.json",
        ),
        c(
            "release_config_folder",
            "release",
            _release_special("config.json", "folder"),
            DIR_WORDS,
            culprit="config.json",
        ),
        c(
            "release_embed_dim_string",
            "release",
            _release_model_fields(embed_dim="32"),
            ("embed_dim",),
            culprit="config.json",
            load_or_refuse=True,
        ),
        c(
            "release_embed_dim_negative",
            "release",
            _release_model_fields(embed_dim=-32),
            ("embed_dim",),
            culprit="config.json",
        ),
        c(
            "release_depth_float",
            "release",
            _release_model_fields(depth=2.5),
            ("depth",),
            culprit="config.json",
        ),
        c(
            "release_model_not_object",
            "release",
            _release_edit_config(lambda cfg: {**cfg, "model": [32, 2]}),
            ("model",),
            culprit="config.json",
        ),
        c(
            "release_unknown_model_class",
            "release",
            _release_edit_config(lambda cfg: {**cfg, "model_class": "rocket"}),
            ("rocket",),
            culprit="config.json",
        ),
        c(
            "release_future_format",
            "release",
            _release_edit_config(lambda cfg: {**cfg, "format_version": 999}),
            ("version",),
            culprit="config.json",
        ),
        c(
            "release_huge_width",
            "release",
            _release_model_fields(embed_dim=65536),
            ("embed_dim", "shape", "does not fit", "weights"),
            memory=True,
        ),
        c(
            "release_huge_depth",
            "release",
            _release_model_fields(depth=100_000),
            ("depth", "does not fit", "weights", "shape"),
            memory=True,
        ),
        c(
            "release_huge_both",
            "release",
            _release_model_fields(embed_dim=32768, depth=4096),
            ("embed_dim", "depth", "does not fit", "weights", "shape"),
            memory=True,
        ),
        c(
            "release_no_weights",
            "release",
            _release_special("model.safetensors", "missing"),
            ("model.safetensors",),
        ),
        c(
            "release_weights_empty",
            "release",
            _release_weights_bytes(lambda b: b""),
            culprit="model.safetensors",
        ),
        c(
            "release_weights_truncated",
            "release",
            _release_weights_bytes(_truncate(0.5)),
            culprit="model.safetensors",
        ),
        c(
            "release_weights_header_len_garbage",
            "release",
            _release_weights_bytes(lambda b: b"\xff" * 8 + b[8:]),
            culprit="model.safetensors",
        ),
        c(
            "release_weights_header_json_garbage",
            "release",
            _release_weights_bytes(lambda b: b[:8] + b"{" * 40 + b[48:]),
            culprit="model.safetensors",
        ),
        c(
            "release_weights_offsets_beyond_file",
            "release",
            _release_header(_offset_beyond),
            culprit="model.safetensors",
            memory=True,
        ),
        c(
            "release_weights_are_a_pickle",
            "release",
            _release_weights_bytes(lambda b: pickle.dumps({"a": 1})),
            culprit="model.safetensors",
        ),
        c(
            "release_weights_fifo",
            "release",
            _release_special("model.safetensors", "fifo"),
            FIFO_WORDS,
            culprit="model.safetensors",
        ),
        c(
            "release_weights_folder",
            "release",
            _release_special("model.safetensors", "folder"),
            DIR_WORDS,
            culprit="model.safetensors",
        ),
        c(
            "release_weights_link_loop",
            "release",
            _release_special("model.safetensors", "loop"),
            loop,
            culprit="model.safetensors",
        ),
        c(
            "release_weights_nan",
            "release",
            _release_weights(_nan_weights(float("nan"))),
            NONFINITE,
            culprit="model.safetensors",
        ),
        c(
            "release_weights_inf",
            "release",
            _release_weights(_nan_weights(float("inf"))),
            NONFINITE,
            culprit="model.safetensors",
        ),
        c(
            "release_weights_wrong_shape",
            "release",
            _release_weights(_wrong_shape),
            ("shape", "size", "fit"),
            culprit="model.safetensors",
        ),
        c(
            "release_weights_missing_key",
            "release",
            _release_weights(_missing_key),
            ("missing", "fit"),
            culprit="model.safetensors",
        ),
        c(
            "release_weights_extra_key",
            "release",
            _release_weights(_extra_key),
            ("stowaway", "unexpected", "fit"),
            culprit="model.safetensors",
        ),
        # --- official checkpoints: axlstm.load_official (what `axlstm convert` reads)
        c("official_missing", "official", _special_file("missing"), error=FileNotFoundError),
        c("official_empty", "official", _file_bytes(b""), ("empty", "0 bytes")),
        c(
            "official_truncated",
            "official",
            _file_from("official", _truncate(0.5)),
            ("truncat", "corrupt", "incomplete", "not a", "zip", "archive"),
        ),
        c("official_random_bytes", "official", _file_bytes(lambda: _rng_bytes(3, 5000))),
        c("official_text_file", "official", _file_bytes(b"model weights go here\n")),
        c(
            "official_zip_not_torch",
            "official",
            _file_bytes(lambda: _zip_bytes({"weights.txt": b"1 2 3"})),
        ),
        c(
            "official_safetensors_as_pth",
            "official",
            lambda r, g: _copy_to(g["release"] / "model.safetensors", r / "ckpt.pth"),
        ),
        c(
            "official_malicious_legacy_pickle",
            "official",
            lambda r, g: _write(r / "ckpt.pth", malicious_legacy_pickle(r / "pwned")),
            marker=True,
        ),
        c(
            "official_malicious_zip_payload_only",
            "official",
            _torch_file(lambda r, g: Exploit(r / "pwned")),
            marker=True,
        ),
        c(
            "official_malicious_eval_payload",
            "official",
            _torch_file(lambda r, g: {"model": EvalExploit(r / "pwned")}),
            marker=True,
        ),
        c(
            "official_malicious_beside_weights",
            "official",
            _torch_file(lambda r, g: {"model": g["state"], "x": Exploit(r / "pwned")}),
            marker=True,
            load_or_refuse=True,
        ),
        c(
            "official_list_of_tensors",
            "official",
            _torch_file(lambda r, g: list(g["state"].values())),
            ("state dict", "model"),
        ),
        c(
            "official_no_tensors",
            "official",
            _torch_file(lambda r, g: {"model": {"a": 1}}),
            ("tensor", "state dict"),
        ),
        c(
            "official_nan_weights",
            "official",
            _torch_file(_official(_nan_weights(float("nan")))),
            NONFINITE,
        ),
        c(
            "official_inf_weights",
            "official",
            _torch_file(_official(_nan_weights(float("-inf")))),
            NONFINITE,
        ),
        c(
            "official_wrong_shape",
            "official",
            _torch_file(_official(_wrong_shape)),
            ("shape", "size", "fit"),
        ),
        c(
            "official_missing_key",
            "official",
            _torch_file(_official(_missing_key)),
            ("missing", "fit"),
        ),
        c("official_folder", "official", _special_file("folder"), DIR_WORDS),
        c("official_fifo", "official", _special_file("fifo"), FIFO_WORDS),
        c("official_link_loop", "official", _special_file("loop"), loop),
        # --- training checkpoints: engine.load_checkpoint / export_release
        c("train_missing", "train", _special_file("missing", "last.pt"), error=FileNotFoundError),
        c("train_empty", "train", _file_bytes(b"", "last.pt"), ("empty", "0 bytes")),
        c(
            "train_truncated",
            "train",
            _file_from("train", _truncate(0.6), "last.pt"),
            ("truncat", "corrupt", "incomplete", "not a", "zip", "archive"),
        ),
        c("train_random_bytes", "train", _file_bytes(lambda: _rng_bytes(4, 3000), "last.pt")),
        c(
            "train_malicious_pickle",
            "train",
            _torch_file(
                lambda r, g: {**g["train_state"], "model": Exploit(r / "pwned")}, "last.pt"
            ),
            marker=True,
        ),
        c(
            "train_malicious_legacy_pickle",
            "train",
            lambda r, g: _write(r / "last.pt", malicious_legacy_pickle(r / "pwned")),
            marker=True,
        ),
        c(
            "train_plain_state_dict",
            "train",
            _torch_file(lambda r, g: g["state"], "last.pt"),
            ("training checkpoint",),
        ),
        c(
            "train_future_format",
            "train",
            _torch_file(_train(format_version=99), "last.pt"),
            ("newer", "version"),
        ),
        c(
            "train_format_version_text",
            "train",
            _torch_file(_train(format_version="abc"), "last.pt"),
            ("version", "format"),
        ),
        c("train_folder", "train", _special_file("folder", "last.pt"), DIR_WORDS),
        c("train_fifo", "train", _special_file("fifo", "last.pt"), FIFO_WORDS),
        c(
            "export_nan_weights",
            "export",
            _torch_file(_train(model=_nan_weights(float("nan"))), "last.pt"),
            NONFINITE,
        ),
        c(
            "export_no_model_config",
            "export",
            _torch_file(_train(model_config=None), "last.pt"),
            ("config",),
        ),
        c(
            "export_wrong_shape",
            "export",
            _torch_file(_train(model=_wrong_shape), "last.pt"),
            ("shape", "size", "fit"),
        ),
        c(
            "export_config_list",
            "export",
            _torch_file(_train(model_config=[1, 2]), "last.pt"),
            ("config",),
        ),
    ]
    return cases


def _copy_to(src: Path, dst: Path) -> Path:
    shutil.copy(src, dst)
    return dst
