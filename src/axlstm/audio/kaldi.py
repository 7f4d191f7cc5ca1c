"""Kaldi-compatible log mel filterbank: the front end of the original SSAST and of SSAMBA.

Written in plain PyTorch. It follows the Kaldi ``compute-fbank-feats`` algorithm as
``torchaudio.compliance.kaldi.fbank`` implements it, with the settings of SSAST's data loader
(SPEC-SSAST-SSAMBA §A1), and keeps that implementation's float32 operation order so that the
result matches the official features to float32 rounding:

1. remove the clip's global mean (SSAST's loader does this before calling Kaldi);
2. cut 25 ms frames every 10 ms with ``snip_edges`` (only whole frames:
   ``T = 1 + (N - 400) // 160`` at 16 kHz);
3. per frame: remove the frame's mean (DC offset), pre-emphasise with 0.97 (the first sample is
   its own predecessor), multiply by a symmetric Hann window ("hanning", ``periodic=False``) and
   zero-pad to the next power of two (512);
4. power spectrum ``|rfft|²``;
5. triangular filters equally spaced on the Kaldi mel scale ``1127 ln(1 + f / 700)`` from 20 Hz
   to the Nyquist frequency, sampled at the FFT bin frequencies; the Nyquist bin gets weight 0;
6. ``log(max(E, eps))`` with eps the float32 machine epsilon.

The model input is then padded (zero rows at the end) or cropped to ``target_length`` frames and
normalised with dataset statistics as ``(x - mean) / (2 std)``; note the factor 2.

Layouts: a waveform is ``(N,)`` or ``(C, N)`` (channel 0 is used, as Kaldi does); one clip's
features are ``(T, n_mels)``; the model input is ``(B, 1, T, n_mels)`` like every front end here.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from axlstm.audio.frontend import FrontEndSpec
from axlstm.audio.io import SOURCE_RATE_RANGE
from axlstm.core.errors import ConfigError

__all__ = [
    "DATASET_STATS",
    "KaldiFbankConfig",
    "KaldiFbankFrontEnd",
    "kaldi_fbank",
    "kaldi_mel_banks",
    "normalize_fbank",
    "pad_or_crop",
]

#: Floor of the mel energies before the log: the float32 machine epsilon (1.1920929e-07).
KALDI_EPS: float = float(torch.finfo(torch.float32).eps)

#: (mean, std) of the raw log fbank per dataset flag of the SSAST/SSAMBA scripts (§A1), and the
#: input length (frames) those scripts use.
DATASET_STATS: dict[str, dict[str, float]] = {
    "audioset": {"mean": -4.2677393, "std": 4.5689974, "target_length": 1024},
    "esc50": {"mean": -6.6268077, "std": 5.358466, "target_length": 512},
    "speechcommands": {"mean": -6.845978, "std": 5.5654526, "target_length": 128},
    "urbansound8k": {"mean": -5.138443946838379, "std": 4.229961395263672, "target_length": 6144},
}


def _kaldi_mel(freq):
    """Kaldi's mel scale, 1127 ln(1 + f / 700), for a float or a tensor."""
    if isinstance(freq, torch.Tensor):
        return 1127.0 * (1.0 + freq / 700.0).log()
    return 1127.0 * math.log(1.0 + freq / 700.0)


def kaldi_mel_banks(
    num_mel_bins: int,
    padded_window_size: int,
    sample_rate: float,
    low_freq: float = 20.0,
    high_freq: float = 0.0,
) -> torch.Tensor:
    """Kaldi's triangular mel filters, ``(num_mel_bins, padded_window_size // 2 + 1)``, float32.

    Args:
        num_mel_bins: number of triangles.
        padded_window_size: FFT size (512 for 25 ms at 16 kHz).
        sample_rate: in Hz.
        low_freq: lowest corner in Hz.
        high_freq: highest corner in Hz; ``<= 0`` counts down from the Nyquist frequency.

    Raises:
        ValueError: when the corners are out of order or above the Nyquist frequency.
    """
    nyquist = 0.5 * sample_rate
    if high_freq <= 0.0:
        high_freq += nyquist
    if not 0.0 <= low_freq < high_freq <= nyquist:
        raise ValueError(
            f"need 0 <= low_freq < high_freq <= Nyquist ({nyquist}), got {low_freq}, {high_freq}"
        )
    num_fft_bins = padded_window_size // 2
    bin_width = sample_rate / padded_window_size
    mel_low, mel_high = _kaldi_mel(low_freq), _kaldi_mel(high_freq)
    delta = (mel_high - mel_low) / (num_mel_bins + 1)
    index = torch.arange(num_mel_bins).unsqueeze(1)  # (M, 1)
    left = mel_low + index * delta  # (M, 1) corner mels, float32 like torchaudio
    centre = mel_low + (index + 1.0) * delta
    right = mel_low + (index + 2.0) * delta
    mel = _kaldi_mel(bin_width * torch.arange(num_fft_bins)).unsqueeze(0)  # (1, K)
    up = (mel - left) / (centre - left)
    down = (right - mel) / (right - centre)
    banks = torch.clamp(torch.minimum(up, down), min=0.0)  # (M, K)
    return F.pad(banks, (0, 1), value=0.0)  # (M, K + 1): the Nyquist bin has weight 0


def _frames(wave: torch.Tensor, size: int, shift: int) -> torch.Tensor:
    """(N,) -> (T, size) frames with ``snip_edges``: only frames that fit entirely."""
    n = wave.shape[0]
    count = 1 + (n - size) // shift
    return wave.as_strided((count, size), (shift * wave.stride(0), wave.stride(0)))


def kaldi_fbank(
    wave: torch.Tensor,
    num_mel_bins: int = 128,
    sample_rate: int = 16000,
    frame_length_ms: float = 25.0,
    frame_shift_ms: float = 10.0,
    preemphasis: float = 0.97,
    low_freq: float = 20.0,
    high_freq: float = 0.0,
    remove_global_dc: bool = True,
) -> torch.Tensor:
    """Raw Kaldi log mel filterbank of one clip, as SSAST's data loader computes it.

    Args:
        wave: ``(N,)`` or ``(C, N)`` float waveform in [-1, 1] (not rescaled to int16); only
            channel 0 of a multi-channel clip is used.
        num_mel_bins: mel bands (SSAST: 128).
        sample_rate: rate of ``wave`` in Hz.
        frame_length_ms, frame_shift_ms: framing (25 ms / 10 ms).
        preemphasis: pre-emphasis coefficient.
        low_freq, high_freq: filterbank range in Hz (``high_freq <= 0``: relative to Nyquist).
        remove_global_dc: subtract the clip's mean first, as SSAST's loader does.

    Returns:
        ``(T, num_mel_bins)`` natural-log mel energies, ``T = 1 + (N - L) // S`` for frame
        length L and shift S in samples; float64 input gives float64, anything else float32.

    Raises:
        TypeError: ``wave`` is not a floating-point tensor.
        ValueError: wrong rank, or shorter than one frame.
    """
    if not isinstance(wave, torch.Tensor) or not wave.is_floating_point():
        raise TypeError("wave must be a floating-point torch.Tensor")
    if wave.dim() == 2:
        wave_1d = wave
        if remove_global_dc:  # SSAST takes the mean over all samples and channels
            wave_1d = wave - wave.mean()
        wave = wave_1d[0]
    elif wave.dim() == 1:
        if remove_global_dc:
            wave = wave - wave.mean()
    else:
        raise ValueError(f"wave must have shape (N,) or (C, N), got {tuple(wave.shape)}")
    if wave.dtype != torch.float64:
        wave = wave.float()
    size = int(sample_rate * frame_length_ms * 0.001)
    shift = int(sample_rate * frame_shift_ms * 0.001)
    if wave.shape[0] < size:
        raise ValueError(
            f"wave has {wave.shape[0]} samples, fewer than one {frame_length_ms} ms frame ({size})"
        )
    fft_size = 1 << (size - 1).bit_length()  # round up to a power of two
    frames = _frames(wave.contiguous(), size, shift)  # (T, size)
    frames = frames - frames.mean(dim=1, keepdim=True)  # per-frame DC offset
    if preemphasis != 0.0:
        previous = torch.cat([frames[:, :1], frames[:, :-1]], dim=1)  # x[-1] := x[0]
        frames = frames - preemphasis * previous
    window = torch.hann_window(size, periodic=False, dtype=frames.dtype, device=frames.device)
    frames = frames * window.unsqueeze(0)
    frames = F.pad(frames, (0, fft_size - size))  # (T, fft_size)
    power = torch.fft.rfft(frames).abs().pow(2.0)  # (T, fft_size // 2 + 1)
    banks = kaldi_mel_banks(num_mel_bins, fft_size, sample_rate, low_freq, high_freq)
    mel = torch.mm(power, banks.to(device=power.device, dtype=power.dtype).T)  # (T, M)
    floor = torch.tensor(KALDI_EPS, dtype=mel.dtype, device=mel.device)
    return torch.maximum(mel, floor).log()


def pad_or_crop(fbank: torch.Tensor, target_length: int) -> torch.Tensor:
    """``(T, M)`` -> ``(target_length, M)``: zero rows appended at the end, or the first frames.

    The zeros are in the log-mel domain, before normalisation, as SSAST does.
    """
    n = fbank.shape[-2]
    if n < target_length:
        return F.pad(fbank, (0, 0, 0, target_length - n))
    return fbank[..., :target_length, :]


def normalize_fbank(fbank: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """``(fbank - mean) / (2 std)``: SSAST's dataset normalisation (inputs get std ≈ 0.5)."""
    return (fbank - mean) / (std * 2)


@dataclass
class KaldiFbankConfig(FrontEndSpec):
    """Settings of the Kaldi fbank front end; the defaults are SSAST's AudioSet pretraining.

    A release records this as its ``"front_end"`` (``kind == "kaldi_fbank"``).

    Attributes:
        kind: always "kaldi_fbank" (tells it apart from the AxLSTM log-mel front end).
        sample_rate: expected input rate in Hz.
        n_mels: mel bands (the ``num_mel_bins`` of Kaldi).
        frame_length_ms, frame_shift_ms: framing.
        target_length: frames after pad/crop; None keeps the clip's own length.
        mean, std: normalisation statistics; the output is ``(x - mean) / (2 std)``.
        normalize: apply that normalisation.
    """

    kind: str = "kaldi_fbank"
    sample_rate: int = 16000
    n_mels: int = 128
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    target_length: int | None = 1024
    mean: float = -4.2677393
    std: float = 4.5689974
    normalize: bool = True

    CONFIG_LABEL: ClassVar[str] = "KaldiFbankConfig"
    training_crop: ClassVar[str] = "start"
    training_pad: ClassVar[str] = "zeros"
    min_samples_reason: ClassVar[str] = "one fbank frame needs"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Refuse settings no fbank can have, naming the field: a sample rate
        :func:`axlstm.audio.load_audio` can give, positive bins, frames and shifts of at least
        one sample, a positive target length (or None), finite statistics with a positive std.

        Raises:
            ConfigError: naming the field and the value.
        """
        if self.kind != "kaldi_fbank":
            raise ConfigError(f"KaldiFbankConfig.kind must be 'kaldi_fbank', got {self.kind!r}")
        for name in ("sample_rate", "n_mels", "target_length"):
            value = getattr(self, name)
            if value is None and name == "target_length":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        low, high = SOURCE_RATE_RANGE  # what load_audio reads
        if not low <= self.sample_rate <= high:
            raise ConfigError(f"sample_rate must be in [{low}, {high}] Hz, got {self.sample_rate}")
        for name in ("frame_length_ms", "frame_shift_ms", "mean", "std"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{name} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise ConfigError(f"{name} must be a finite number, got {value!r}")
        if self.std <= 0:
            raise ConfigError(f"std must be positive, got {self.std}")
        if self.frame_size < 2:  # the frame's DC removal and window need two samples
            raise ConfigError(
                f"frame_length_ms={self.frame_length_ms} gives {self.frame_size} samples per "
                f"frame at {self.sample_rate} Hz; it needs at least 2"
            )
        if self.frame_shift < 1:
            raise ConfigError(
                f"frame_shift_ms={self.frame_shift_ms} gives a shift of {self.frame_shift} "
                f"samples at {self.sample_rate} Hz; it needs at least 1"
            )
        if not isinstance(self.normalize, bool):
            raise ConfigError(f"normalize must be true or false, got {self.normalize!r}")

    @classmethod
    def for_dataset(cls, name: str, **changes: Any) -> KaldiFbankConfig:
        """The statistics and input length of one of :data:`DATASET_STATS`."""
        if name not in DATASET_STATS:
            raise ConfigError(f"unknown dataset {name!r}; choose one of {sorted(DATASET_STATS)}")
        stats = DATASET_STATS[name]
        return cls(
            mean=stats["mean"],
            std=stats["std"],
            target_length=int(stats["target_length"]),
            **changes,
        )

    @property
    def frame_size(self) -> int:
        """Samples per analysis frame (400 at 16 kHz)."""
        return int(self.sample_rate * self.frame_length_ms * 0.001)

    @property
    def frame_shift(self) -> int:
        """Samples between frame starts (160 at 16 kHz)."""
        return int(self.sample_rate * self.frame_shift_ms * 0.001)

    @property
    def pad_value(self) -> float:
        """What a zero-padded frame holds in the model input: the padding is a zero log-mel
        row, so after normalisation ``-mean / (2 std)`` (+0.467 for AudioSet statistics)."""
        return (0.0 - self.mean) / (self.std * 2) if self.normalize else 0.0

    def num_frames(self, num_samples: int) -> int:
        """Frames of a clip of ``num_samples`` samples before pad/crop (``snip_edges``):
        ``1 + (N - size) // shift``, 0 when shorter than one frame."""
        if num_samples < self.frame_size:
            return 0
        return 1 + (num_samples - self.frame_size) // self.frame_shift

    # ------------------------------------------------------------------ FrontEndSpec
    @property
    def hop_samples(self) -> int:
        return self.frame_shift

    @property
    def frame_samples(self) -> int:
        return self.frame_size

    @property
    def first_centre(self) -> Fraction:
        """Half a frame: only whole frames are cut (``snip_edges``)."""
        return Fraction(self.frame_size, 2)

    @property
    def min_samples(self) -> int:
        return self.frame_size

    @property
    def per_clip_normalization(self) -> bool:
        return False

    @property
    def fixed_length(self) -> int | None:
        return self.target_length

    def whole_clip(self) -> KaldiFbankConfig:
        return dataclasses.replace(self, target_length=None)

    def build(self) -> KaldiFbankFrontEnd:
        return KaldiFbankFrontEnd(self)


class KaldiFbankFrontEnd(nn.Module):
    """Waveforms to normalised Kaldi fbank, ``(B, N)`` or ``(N,)`` -> ``(B, 1, T, n_mels)``.

    Each clip is processed on its own (global DC removal is per clip), then padded or cropped to
    ``target_length`` and normalised. Without a ``target_length`` all clips of a batch have the
    same length, so they give the same number of frames.
    """

    def __init__(self, config: KaldiFbankConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else KaldiFbankConfig()

    def num_frames(self, num_samples: int) -> int:
        """Frames for a clip of ``num_samples`` samples (after pad/crop when configured)."""
        cfg = self.config
        if cfg.target_length is not None:
            return cfg.target_length
        return 1 + (num_samples - cfg.frame_size) // cfg.frame_shift

    def forward(self, wave: torch.Tensor, normalize: bool | None = None) -> torch.Tensor:
        cfg = self.config
        if not isinstance(wave, torch.Tensor) or not wave.is_floating_point():
            raise TypeError("wave must be a floating-point torch.Tensor")
        if wave.dim() == 1:
            wave = wave.unsqueeze(0)
        elif wave.dim() != 2:
            raise ValueError(f"wave must have shape (B, N) or (N,), got {tuple(wave.shape)}")
        feats = []
        for clip in wave:
            fb = kaldi_fbank(
                clip,
                num_mel_bins=cfg.n_mels,
                sample_rate=cfg.sample_rate,
                frame_length_ms=cfg.frame_length_ms,
                frame_shift_ms=cfg.frame_shift_ms,
            )
            if cfg.target_length is not None:
                fb = pad_or_crop(fb, cfg.target_length)
            if cfg.normalize if normalize is None else normalize:
                fb = normalize_fbank(fb, cfg.mean, cfg.std)
            feats.append(fb)
        return torch.stack(feats).unsqueeze(1)  # (B, 1, T, M)

    def raw_features(self, wave: torch.Tensor) -> torch.Tensor:
        """Raw Kaldi log fbank ``(T, n_mels)`` of one ``(N,)`` clip (global DC removed), no
        pad or crop."""
        cfg = self.config
        return kaldi_fbank(
            wave,
            num_mel_bins=cfg.n_mels,
            sample_rate=cfg.sample_rate,
            frame_length_ms=cfg.frame_length_ms,
            frame_shift_ms=cfg.frame_shift_ms,
        )

    def normalize(self, feats: torch.Tensor) -> torch.Tensor:
        """``(x - mean) / (2 std)`` with the dataset statistics (unchanged when off)."""
        cfg = self.config
        return normalize_fbank(feats, cfg.mean, cfg.std) if cfg.normalize else feats

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.config.to_dict().items())
