"""Reading audio files as mono float32 tensors at a fixed sample rate.

Decoding uses libsndfile (through ``soundfile``), which covers WAV/W64/RF64, FLAC, Ogg Vorbis,
Ogg Opus, MP3 (libsndfile >= 1.1), AIFF, AU, CAF and more. Integer PCM is scaled to [-1, 1) by
libsndfile. Multi-channel audio is averaged to mono, and other sample rates are converted with
``soxr`` at high quality.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TypeVar

import numpy as np
import soundfile as sf
import soxr
import torch

from axlstm.core.errors import AudioError

__all__ = ["AudioError", "AudioLoadError", "load_audio", "resample", "to_mono"]

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


def load_audio(path: str | os.PathLike[str], sample_rate: int = 16000) -> torch.Tensor:
    """Loads an audio file as a mono float32 waveform at ``sample_rate``.

    Integer PCM (8-bit unsigned, 16/24/32-bit signed) is scaled to [-1, 1); float files are
    returned as stored (values beyond +-1 are kept, with a warning). Channels are averaged and
    the audio is resampled with soxr when its rate differs from ``sample_rate``.

    Args:
        path: Path of the audio file.
        sample_rate: Output sample rate in Hz.

    Returns:
        float32 tensor of shape ``(N,)``.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        AudioLoadError: If ``path`` is a directory, is empty, is not an audio format libsndfile
            recognises, cannot be decoded, holds no samples or holds NaN/infinite samples.
        ValueError: If ``sample_rate`` is not positive.
    """
    _check_rate("sample_rate", sample_rate)
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"audio file not found: {path}")
    if path.is_dir():
        raise _fail(path, "it is a directory, not a file")
    try:
        size = path.stat().st_size
    except OSError as err:
        raise _fail(path, f"cannot stat the file ({err})") from err
    if size == 0 and path.is_file():
        raise _fail(path, "file is empty (0 bytes)")
    try:
        with open(path, "rb"):
            pass
    except OSError as err:
        raise _fail(path, f"cannot open the file ({err.strerror or err})") from err

    try:
        with sf.SoundFile(path) as handle:
            orig_sr = handle.samplerate
            channels = handle.channels
            declared = handle.frames
            fmt = f"{handle.format}/{handle.subtype}"
            try:
                data = handle.read(dtype="float32", always_2d=True)  # (N, C)
            except Exception as err:
                raise _fail(path, f"decoding failed ({fmt}: {err})") from err
    except AudioLoadError:
        raise
    except Exception as err:
        raise _fail(path, f"not a recognised audio format ({err})") from err

    if data.shape[0] < declared:
        logger.warning(
            "%s: header declares %d frames but only %d could be read (truncated file?)",
            path,
            declared,
            data.shape[0],
        )
    if data.shape[0] == 0 or channels == 0:
        raise _fail(path, "contains no samples")
    if not np.isfinite(data).all():
        bad = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
        raise _fail(path, f"contains {bad} non-finite samples (NaN or inf)")

    mono = data.mean(axis=1, dtype=np.float32) if channels > 1 else data[:, 0]  # (N,)
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
