"""Reading audio files as mono float32 tensors at a fixed sample rate.

Decoding uses libsndfile (through ``soundfile``), which covers WAV/W64/RF64, FLAC, Ogg Vorbis,
Ogg Opus, MP3 (libsndfile >= 1.1), AIFF, AU, CAF and more. Integer PCM is scaled to [-1, 1) by
libsndfile. Multi-channel audio is averaged to mono, and other sample rates are converted with
``soxr`` at high quality.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from pathlib import Path
from typing import TypeVar

import numpy as np
import soundfile as sf
import soxr
import torch

from axlstm.core.errors import AudioError
from axlstm.core.fileio import check_input_file

__all__ = [
    "MAX_SAMPLES",
    "SOURCE_RATE_RANGE",
    "AudioError",
    "AudioLoadError",
    "load_audio",
    "open_audio",
    "resample",
    "to_mono",
    "truncation",
]

logger = logging.getLogger(__name__)

#: soxr quality used for all sample-rate conversions.
RESAMPLE_QUALITY = "HQ"

ArrayLike = TypeVar("ArrayLike", np.ndarray, torch.Tensor)


#: The audio error (:class:`axlstm.core.AudioError`) under the name this module always used:
#: a file that cannot be turned into a usable waveform (a directory, an empty file, a format
#: libsndfile does not recognise or fails to decode, no samples, NaN or infinite samples).
#: The message always names the file.
AudioLoadError = AudioError


def _check_rate(name: str, rate: float) -> None:
    if isinstance(rate, bool) or not isinstance(rate, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {type(rate).__name__}")
    if not np.isfinite(rate) or rate <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {rate}")


def to_mono(wave: ArrayLike) -> ArrayLike:
    """Averages the channels of a waveform.

    Args:
        wave: numpy array or torch tensor of shape ``(N,)`` (returned unchanged) or
            ``(C, N)`` (channels first).

    Returns:
        The ``(N,)`` mean over channels, same library and dtype as the input.

    Raises:
        ValueError: If ``wave`` is not 1-D or 2-D.
    """
    if wave.ndim == 1:
        return wave
    if wave.ndim != 2:
        raise ValueError(f"expected a (N,) or (C, N) waveform, got shape {tuple(wave.shape)}")
    if isinstance(wave, torch.Tensor):
        return wave.mean(dim=0)  # (N,)
    return wave.mean(axis=0, dtype=wave.dtype if wave.dtype.kind == "f" else None)  # (N,)


def _resample_numpy(wave: np.ndarray, orig_sr: float, target_sr: float) -> np.ndarray:
    """soxr resampling of a float numpy ``(N,)`` or ``(C, N)`` array."""
    if wave.dtype not in (np.float32, np.float64):
        wave = wave.astype(np.float32)
    if wave.ndim == 1:
        return soxr.resample(wave, orig_sr, target_sr, quality=RESAMPLE_QUALITY)  # (N',)
    # soxr wants frames first: (N, C).
    frames = np.ascontiguousarray(wave.T)  # (N, C)
    out = soxr.resample(frames, orig_sr, target_sr, quality=RESAMPLE_QUALITY)  # (N', C)
    return np.ascontiguousarray(out.T)  # (C, N')


def resample(wave: ArrayLike, orig_sr: float, target_sr: float) -> ArrayLike:
    """Converts the sample rate of a waveform with soxr (high quality).

    Works on numpy arrays and torch tensors of shape ``(N,)`` or ``(C, N)`` (channels first).
    The output has ``round(N * target_sr / orig_sr)`` samples. Torch input is processed on the
    CPU and returned on its original device and dtype; the operation is not differentiable.
    Integer numpy input is converted to float32 first (without rescaling).

    Args:
        wave: Waveform, ``(N,)`` or ``(C, N)``.
        orig_sr: Sample rate of ``wave`` in Hz.
        target_sr: Wanted sample rate in Hz.

    Returns:
        The resampled waveform, same kind (numpy or torch) and layout as ``wave``. When the
        rates are equal the input is returned unchanged.

    Raises:
        TypeError: If ``wave`` is neither a numpy array nor a torch tensor.
        ValueError: If a rate is not positive, or ``wave`` is not 1-D or 2-D.
    """
    _check_rate("orig_sr", orig_sr)
    _check_rate("target_sr", target_sr)
    if not isinstance(wave, (np.ndarray, torch.Tensor)):
        raise TypeError(f"wave must be a numpy array or torch tensor, got {type(wave).__name__}")
    if wave.ndim not in (1, 2):
        raise ValueError(f"expected a (N,) or (C, N) waveform, got shape {tuple(wave.shape)}")
    if orig_sr == target_sr:
        return wave
    if wave.shape[-1] == 0:
        return wave
    if isinstance(wave, torch.Tensor):
        device, dtype = wave.device, wave.dtype
        work_dtype = torch.float64 if dtype == torch.float64 else torch.float32
        array = wave.detach().to(device="cpu", dtype=work_dtype).numpy()
        out = _resample_numpy(array, orig_sr, target_sr)
        out_dtype = dtype if wave.is_floating_point() else torch.float32
        return torch.from_numpy(out).to(device=device, dtype=out_dtype)
    return _resample_numpy(wave, orig_sr, target_sr)


def _fail(path: Path, problem: str) -> AudioLoadError:
    return AudioLoadError(f"cannot read audio from {path}: {problem}")


#: Source sample rates accepted by :func:`load_audio`, in Hz. A header claiming a rate outside
#: them is refused: converting a "2 Hz" file to 16 kHz would make 8000 samples of every one.
SOURCE_RATE_RANGE = (1000, 1_536_000)
#: Most samples :func:`load_audio` decodes or returns for one file by default (2**29: 2 GiB
#: as float32, e.g. 9.3 hours at 16 kHz or 3.1 hours at 48 kHz). Longer files are refused with
#: a clear message before anything is read; use ``max_samples`` or block-wise streaming.
MAX_SAMPLES = 2**29
#: Frames decoded per read (times the channel count, at most 4 M values in memory at once).
_BLOCK_VALUES = 1 << 22
#: Frames per read when looking for the readable part of a truncated file.
_SMALL_BLOCK = 1024
#: Declared data sizes that mean "length unknown" (written by tools streaming to a pipe).
_UNKNOWN_SIZES = (0, 0xFFFFFFFF)
#: libsndfile's header log states a chunk size it found wrong as "NAME : DECLARED (should be
#: ACTUAL)"; a declared size larger than the file holds means the file was cut short.
_SHOULD_BE = re.compile(r"^\s*([\w ]+?)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
#: The chunks (RIFF, AIFF's FORM, Wave64's riff, RF64's size) that contain all the others.
_CONTAINER_CHUNKS = ("riff", "form", "riff size")
#: Bytes read from the end of an Ogg file to find its last page (a page holds < 65,308).
_OGG_TAIL = 70_000
#: MP3 lengths without an exact (Xing/LAME) header are estimates; shortfalls within this
#: many samples (two MPEG frames) are not taken for truncation.
_MPEG_SLACK = 2 * 1152


def _header_truncation(info: str) -> str | None:
    """The truncation libsndfile's header log reports, in words, or None."""
    for name, declared, actual in _SHOULD_BE.findall(info):
        declared, actual = int(declared), int(actual)
        if declared in _UNKNOWN_SIZES or declared >= 0x7FFF0000:
            continue  # a streaming writer's "unknown length", not a cut
        # a container's size counts the pad byte after an odd-sized chunk, which some writers
        # leave out; a data chunk's size never includes it
        pad = 1 if name.strip().lower() in _CONTAINER_CHUNKS else 0
        if declared > actual + pad:
            return f"its {name.strip()} chunk should hold {declared} bytes, the file has {actual}"
    return None


def _read_mono(handle: sf.SoundFile, path: Path, allow_truncated: bool) -> tuple[np.ndarray, str]:
    """Decode block by block, averaging channels as it goes (memory: the mono signal).

    Returns the mono samples and a description of a decoding failure part-way ("" if none);
    a failure before anything was decoded raises.
    """
    channels = handle.channels
    block = max(1, _BLOCK_VALUES // channels)
    parts: list[np.ndarray] = []
    problem = ""
    while True:
        try:
            data = handle.read(block, dtype="float32", always_2d=True)  # (n, C)
        except Exception as err:
            done = sum(p.shape[0] for p in parts)
            if allow_truncated and block > _SMALL_BLOCK and handle.seekable():
                # find the readable part in small steps from where this block started
                handle.seek(done)
                block = _SMALL_BLOCK
                continue
            where = f" after {done} of {handle.frames} frames" if done else ""
            problem = f"decoding failed{where} ({err})"
            if not parts or not allow_truncated:
                fmt = f"{handle.format}/{handle.subtype}"
                raise _fail(path, f"truncated or corrupt: {fmt} {problem}") from err
            break
        if data.shape[0] == 0:
            break
        parts.append(data.mean(axis=1, dtype=np.float32) if channels > 1 else data[:, 0].copy())
    mono = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
    return mono, problem


def open_audio(path: str | os.PathLike[str]) -> sf.SoundFile:
    """Opens an audio file for reading, after the checks every reader needs.

    The path must be a readable, non-empty regular file (a named pipe is refused by name, not
    opened), in a format libsndfile recognises, with at least one channel and a sample rate
    within :data:`SOURCE_RATE_RANGE`. The caller closes the handle (``with open_audio(p) as
    f``). After reading, :func:`truncation` tells whether the file was cut short.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        AudioLoadError: For any of the problems above; the message names the file.
    """
    path = Path(path)
    if check_input_file(path, "audio file", AudioLoadError).st_size == 0:
        raise _fail(path, "file is empty (0 bytes)")
    # bytes, not str: a file name that is not valid UTF-8 (kept by Python as surrogates) opens
    name = path if sys.platform == "win32" else os.fsencode(path)
    try:
        handle = sf.SoundFile(name)
    except Exception as err:
        raise _fail(path, f"not a recognised audio format ({err})") from err
    low, high = SOURCE_RATE_RANGE
    problem = None
    if not low <= handle.samplerate <= high:
        problem = f"its header claims a sample rate of {handle.samplerate} Hz, outside {low}-{high}"
    elif handle.channels < 1:
        problem = f"its header claims {handle.channels} channels"
    if problem:
        handle.close()
        raise _fail(path, problem)
    return handle


def _ogg_unfinished(name: str | bytes) -> bool:
    """Whether an Ogg file lacks its end: its last page must end exactly at the end of the file
    and carry the end-of-stream flag (an Ogg file has no length in a header, and libsndfile
    reads a cut one to where it stops without a word)."""
    with open(name, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - _OGG_TAIL))
        tail = f.read()
    end = len(tail)
    i = tail.rfind(b"OggS")
    while i >= 0:  # from the last capture pattern back: the one whose page ends at EOF
        if i + 27 <= end and tail[i + 4] == 0:  # stream structure version 0
            segments = tail[i + 26]
            if i + 27 + segments <= end:
                body = sum(tail[i + 27 : i + 27 + segments])
                if i + 27 + segments + body == end:
                    return not tail[i + 5] & 0x04  # header type: end of stream
        i = tail.rfind(b"OggS", 0, i)
    return True


def truncation(handle: sf.SoundFile, frames_read: int) -> str | None:
    """Why an open file counts as cut short after ``frames_read`` frames were decoded from it
    (its header declares more than it holds, an Ogg stream stops without its last page), or
    None when it is complete."""
    cut = _header_truncation(handle.extra_info)
    if cut:
        return cut
    if handle.format == "OGG" and _ogg_unfinished(handle.name):
        return "the Ogg stream stops before its last page (no end-of-stream page)"
    slack = _MPEG_SLACK if handle.format == "MP3" or handle.format.startswith("MPEG") else 0
    if frames_read + slack < handle.frames:
        return f"its header declares {handle.frames} frames but only {frames_read} could be read"
    return None


def load_audio(
    path: str | os.PathLike[str],
    sample_rate: int = 16000,
    *,
    allow_truncated: bool = False,
    max_samples: int | None = MAX_SAMPLES,
) -> torch.Tensor:
    """Loads an audio file as a mono float32 waveform at ``sample_rate``.

    Integer PCM (8-bit unsigned, 16/24/32-bit signed) is scaled to [-1, 1); float files are
    returned as stored (values beyond +-1 are kept, with a warning). Channels are averaged and
    the audio is resampled with soxr when its rate differs from ``sample_rate``.

    The path is checked before anything is read: a folder, a named pipe, a device or a link
    loop is refused by name (a pipe would otherwise block forever). A file cut short (its
    header declares more audio than it holds, or decoding fails part-way) is an error, or with
    ``allow_truncated`` a warning and the readable part.

    Args:
        path: Path of the audio file.
        sample_rate: Output sample rate in Hz.
        allow_truncated: return the readable part of a truncated file (with a warning)
            instead of raising.
        max_samples: refuse files that would decode to, or resample to, more samples than
            this (:data:`MAX_SAMPLES` by default; ``None`` for no limit).

    Returns:
        float32 tensor of shape ``(N,)``.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        AudioLoadError: If ``path`` is not a readable regular file, is empty, is not an audio
            format libsndfile recognises, is truncated or cannot be decoded, holds no samples
            or NaN/infinite samples, declares a sample rate outside
            :data:`SOURCE_RATE_RANGE`, or is longer than ``max_samples``.
        ValueError: If ``sample_rate`` is not positive.
    """
    _check_rate("sample_rate", sample_rate)
    path = Path(path)
    with open_audio(path) as handle:
        orig_sr, channels, declared = handle.samplerate, handle.channels, handle.frames
        fmt = f"{handle.format}/{handle.subtype}"
        if max_samples is not None:
            out_len = declared * sample_rate / orig_sr
            if max(declared, out_len) > max_samples:
                raise _fail(
                    path,
                    f"too long: {declared} frames ({declared / orig_sr / 3600:.2f} h at "
                    f"{orig_sr} Hz), more than the limit of {max_samples} samples; split "
                    "it, stream it (axlstm embed --stream) or raise max_samples",
                )
        mono, problem = _read_mono(handle, path, allow_truncated)
        cut = problem or truncation(handle, mono.shape[0])
    if cut:
        if not allow_truncated:
            raise _fail(path, f"truncated file: {cut}")
        logger.warning("%s: truncated (%s); using the %d readable frames", path, cut, mono.shape[0])
    if mono.shape[0] == 0:
        raise _fail(path, "contains no samples")
    if not np.isfinite(mono).all():
        bad = int(mono.size - np.count_nonzero(np.isfinite(mono)))
        raise _fail(path, f"contains {bad} non-finite samples (NaN or inf)")

    peak = float(np.abs(mono).max())
    if peak > 1.0:
        logger.warning("%s: samples exceed [-1, 1] (peak %.3f); they are kept as is", path, peak)
    if orig_sr != sample_rate:
        logger.debug("%s: resampling %d Hz -> %d Hz", path, orig_sr, sample_rate)
        mono = _resample_numpy(mono, orig_sr, sample_rate)  # (N',)
    logger.debug(
        "loaded %s (%s, %d ch, %d Hz) -> %d samples", path, fmt, channels, orig_sr, mono.shape[0]
    )
    return torch.from_numpy(np.ascontiguousarray(mono, dtype=np.float32))
