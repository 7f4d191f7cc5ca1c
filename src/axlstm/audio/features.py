"""Log-mel front end of AxLSTM, written in plain PyTorch (no torchaudio).

The pipeline reproduces the official HEAR runtime feature extractor:

1. STFT with a periodic Hann window (n_fft 400, win_length 400, hop 160 at 16 kHz),
   ``center=True`` with reflect padding, onesided and not normalised.
2. Power spectrum ``|STFT|^2``.
3. 80 triangular HTK-mel filters from 50 Hz to 8 kHz without area normalisation. The
   filterbank is built in float32, as ``torchaudio.functional.melscale_fbanks`` does, because
   that is what the official features were computed with.
4. Natural log of ``mel + eps`` where ``eps`` is the float32 machine epsilon.
5. Optionally, per-clip standardisation ``(x - mean) / (std + 1e-8)`` with the mean and the
   *unbiased* standard deviation over all time-frequency bins of each clip. A clip whose
   log-mel is constant to within float32 rounding (digital silence, a DC offset: ``std <=
   1e-5 * (1 + |mean|)``, about 170 float32 ulps of its values, while even -100 dBFS noise
   has a std near 0.2) standardises to exact zeros, instead of its rounding noise divided by
   ~1e-6, which would depend on the batch the clip shares. Other clips are unchanged.

The output layout is ``(B, 1, T, n_mels)`` (time first, then frequency) with
``T = 1 + N // hop_length``.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from fractions import Fraction
from typing import ClassVar

import torch
from torch import nn

from axlstm.audio.frontend import FrontEndSpec
from axlstm.audio.io import SOURCE_RATE_RANGE
from axlstm.core.errors import ConfigError

__all__ = [
    "FrontEndConfig",
    "LogMelFrontEnd",
    "hz_to_mel",
    "log_mel",
    "mel_filterbank",
    "mel_to_hz",
]

#: Added to the mel power before the log; the float32 machine epsilon (1.1920929e-07).
LOG_EPS: float = float(torch.finfo(torch.float32).eps)
#: Added to the standard deviation in the per-clip standardisation.
STD_EPS: float = 1e-8
#: A clip whose per-clip std is at most this times ``1 + |mean|`` is constant to within
#: float32 rounding (relative precision 6e-8; this is ~170 ulps) and standardises to zeros.
CONSTANT_REL_STD: float = 1e-5


def hz_to_mel(freq: float) -> float:
    """Converts a frequency in Hz to the HTK mel scale, ``2595 * log10(1 + f / 700)``.

    Args:
        freq: Frequency in Hz.

    Returns:
        The frequency in mel.
    """
    return 2595.0 * math.log10(1.0 + freq / 700.0)


def mel_to_hz(mels: torch.Tensor) -> torch.Tensor:
    """Converts HTK mel values back to Hz, ``700 * (10^(m / 2595) - 1)``.

    Args:
        mels: Tensor of mel values.

    Returns:
        Tensor of frequencies in Hz, same shape and dtype as ``mels``.
    """
    return 700.0 * (10.0 ** (mels / 2595.0) - 1.0)


def mel_filterbank(
    n_freqs: int,
    f_min: float,
    f_max: float,
    n_mels: int,
    sample_rate: int,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Builds a triangular HTK-mel filterbank without area normalisation.

    The construction follows the usual recipe: ``n_freqs`` STFT bin centres evenly spaced from
    0 Hz to ``sample_rate / 2``, ``n_mels + 2`` corner points evenly spaced in mel between
    ``mel(f_min)`` and ``mel(f_max)``, and for each filter the minimum of its rising and falling
    slopes, clipped at zero (so the peak of each triangle is 1 where it falls on a bin).

    Args:
        n_freqs: Number of STFT frequency bins (``n_fft // 2 + 1``).
        f_min: Lowest corner frequency in Hz.
        f_max: Highest corner frequency in Hz.
        n_mels: Number of mel filters.
        sample_rate: Sample rate in Hz.
        dtype: Dtype the filterbank is computed in. The official features used float32.

    Returns:
        Filterbank of shape ``(n_freqs, n_mels)``.

    Raises:
        ValueError: If the frequency range or the sizes are invalid.
    """
    if n_freqs < 2 or n_mels < 1:
        raise ValueError(f"need n_freqs >= 2 and n_mels >= 1, got {n_freqs} and {n_mels}")
    if not 0.0 <= f_min < f_max:
        raise ValueError(f"need 0 <= f_min < f_max, got f_min={f_min}, f_max={f_max}")
    bin_freqs = torch.linspace(0, sample_rate // 2, n_freqs, dtype=dtype)  # (F,)
    mel_points = torch.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2, dtype=dtype)
    corners = mel_to_hz(mel_points)  # (M + 2,)
    widths = corners[1:] - corners[:-1]  # (M + 1,)
    # Signed distance from every bin to every corner.
    offsets = corners.unsqueeze(0) - bin_freqs.unsqueeze(1)  # (F, M + 2)
    rising = -offsets[:, :-2] / widths[:-1]  # (F, M)
    falling = offsets[:, 2:] / widths[1:]  # (F, M)
    return torch.clamp(torch.minimum(rising, falling), min=0.0)  # (F, M)


@dataclass
class FrontEndConfig(FrontEndSpec):
    """Settings of the log-mel front end. The defaults are those of AxLSTM.

    Its :class:`~axlstm.audio.frontend.FrontEndSpec` answers: frames every ``hop_length``
    samples centred on sample ``hop * t`` (centred STFT), ``1 + N // hop`` frames, at least
    ``n_fft // 2 + 1`` samples; normalised per clip (mean and *unbiased* std over every bin,
    SPEC §1.1) unless fixed statistics are set; padding frames hold 0 (the clip mean); training
    crops start uniformly in ``[0, T - L)`` and short clips are tiled (the official recipe).

    Attributes:
        sample_rate: Expected input sample rate in Hz.
        n_fft: FFT size.
        win_length: Hann window length in samples (``<= n_fft``).
        hop_length: Hop between frames in samples.
        n_mels: Number of mel bands.
        f_min: Lowest mel corner frequency in Hz.
        f_max: Highest mel corner frequency in Hz.
        normalize: Whether to standardise the log-mel. By default each clip with its own mean
            and unbiased std (what AxLSTM does); with ``norm_mean`` and ``norm_std`` set, every
            clip with those fixed statistics instead, which is causal and so can stream.
        norm_mean: Fixed mean for the standardisation (``None``: per clip).
        norm_std: Fixed standard deviation for the standardisation (``None``: per clip).
    """

    sample_rate: int = 16000
    n_fft: int = 400
    win_length: int = 400
    hop_length: int = 160
    n_mels: int = 80
    f_min: float = 50.0
    f_max: float = 8000.0
    normalize: bool = True
    norm_mean: float | None = None
    norm_std: float | None = None

    kind: ClassVar[str] = "log_mel"
    CONFIG_LABEL: ClassVar[str] = "FrontEndConfig"
    training_crop: ClassVar[str] = "random_official"
    training_pad: ClassVar[str] = "tile"
    min_samples_reason: ClassVar[str] = "the STFT needs"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Refuse settings no STFT can have, naming the field: positive integer sizes, a
        sample rate :func:`axlstm.audio.load_audio` can give, ``win_length <= n_fft``, finite
        corners with ``0 <= f_min < f_max <= sample_rate / 2``, finite fixed statistics (a
        positive std) set together.

        Raises:
            ConfigError: naming the field and the value.
        """
        for name in ("sample_rate", "n_fft", "win_length", "hop_length", "n_mels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        low, high = SOURCE_RATE_RANGE  # what load_audio reads
        if not low <= self.sample_rate <= high:
            raise ConfigError(f"sample_rate must be in [{low}, {high}] Hz, got {self.sample_rate}")
        if self.win_length > self.n_fft:
            raise ConfigError(
                f"win_length must be in (0, n_fft={self.n_fft}], got {self.win_length}"
            )
        for name in ("f_min", "f_max", "norm_mean", "norm_std"):
            value = getattr(self, name)
            if value is None and name.startswith("norm_"):
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{name} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise ConfigError(f"{name} must be a finite number, got {value!r}")
        if not isinstance(self.normalize, bool):
            raise ConfigError(f"normalize must be true or false, got {self.normalize!r}")
        if (self.norm_mean is None) != (self.norm_std is None):
            raise ConfigError("set both norm_mean and norm_std for fixed statistics, or neither")
        if self.norm_std is not None and self.norm_std <= 0:
            raise ConfigError(f"norm_std must be positive, got {self.norm_std}")
        if self.f_max > self.sample_rate / 2:
            raise ConfigError(
                f"f_max={self.f_max} is above the Nyquist frequency {self.sample_rate / 2}"
            )
        if not 0.0 <= self.f_min < self.f_max:
            raise ConfigError(f"need 0 <= f_min < f_max, got {self.f_min}, {self.f_max}")

    # ------------------------------------------------------------------ FrontEndSpec
    @property
    def hop_samples(self) -> int:
        return self.hop_length

    @property
    def frame_samples(self) -> int:
        return self.n_fft

    @property
    def first_centre(self) -> Fraction:
        return Fraction(0)

    @property
    def min_samples(self) -> int:
        """Reflect padding of ``n_fft // 2`` needs more than that many samples."""
        return self.n_fft // 2 + 1

    def num_frames(self, num_samples: int) -> int:
        return 1 + num_samples // self.hop_length

    @property
    def pad_value(self) -> float:
        """0: the mean of a per-clip standardised clip."""
        return 0.0

    @property
    def per_clip_normalization(self) -> bool:
        return self.normalize and self.norm_mean is None

    def build(self) -> LogMelFrontEnd:
        return LogMelFrontEnd(self)


class LogMelFrontEnd(nn.Module):
    """Waveform to log-mel spectrogram, ``(B, N)`` or ``(N,)`` to ``(B, 1, T, n_mels)``.

    The Hann window and the mel filterbank are non-persistent buffers: they follow
    ``.to(device)`` but are not written to state dicts. All operations run on the input's
    device (CPU or CUDA).

    Args:
        config: Front-end settings; the AxLSTM defaults when omitted.
    """

    window: torch.Tensor
    filterbank: torch.Tensor

    def __init__(self, config: FrontEndConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else FrontEndConfig()
        cfg = self.config
        self.register_buffer(
            "window", torch.hann_window(cfg.win_length, periodic=True), persistent=False
        )
        fbank = mel_filterbank(
            cfg.n_fft // 2 + 1, cfg.f_min, cfg.f_max, cfg.n_mels, cfg.sample_rate
        )  # (F, M)
        self.register_buffer("filterbank", fbank, persistent=False)

    @property
    def min_length(self) -> int:
        """Smallest number of samples accepted (reflect padding needs ``N > n_fft // 2``)."""
        return self.config.n_fft // 2 + 1

    def num_frames(self, num_samples: int) -> int:
        """Number of output frames for ``num_samples`` input samples, ``1 + N // hop``."""
        return 1 + num_samples // self.config.hop_length

    def forward(self, wave: torch.Tensor, normalize: bool | None = None) -> torch.Tensor:
        """Computes the (optionally standardised) log-mel spectrogram.

        Args:
            wave: Waveform of shape ``(B, N)`` or ``(N,)``, floating point, at
                ``config.sample_rate``. float16/bfloat16 input is computed in float32.
            normalize: Overrides ``config.normalize`` when given.

        Returns:
            Log-mel of shape ``(B, 1, T, n_mels)`` with ``T = 1 + N // hop_length``, in the
            input dtype (float32 for half-precision input).

        Raises:
            TypeError: If ``wave`` is not a floating-point tensor.
            ValueError: If ``wave`` is not 1-D or 2-D or is too short for reflect padding.
        """
        cfg = self.config
        if not isinstance(wave, torch.Tensor):
            raise TypeError(f"wave must be a torch.Tensor, got {type(wave).__name__}")
        if not wave.is_floating_point():
            raise TypeError(f"wave must be a floating-point tensor, got dtype {wave.dtype}")
        if wave.dim() == 1:
            wave = wave.unsqueeze(0)  # (1, N)
        elif wave.dim() != 2:
            raise ValueError(f"wave must have shape (B, N) or (N,), got {tuple(wave.shape)}")
        if wave.shape[-1] < self.min_length:
            raise ValueError(
                f"wave has {wave.shape[-1]} samples; at least {self.min_length} are needed "
                f"(reflect padding of n_fft // 2 = {cfg.n_fft // 2} requires N > {cfg.n_fft // 2})"
            )
        if wave.dtype in (torch.float16, torch.bfloat16):
            wave = wave.float()
        dtype = wave.dtype
        window = self.window.to(device=wave.device, dtype=dtype)
        fbank = self.filterbank.to(device=wave.device, dtype=dtype)

        logmel = self.frames_log_mel(wave, window, fbank, center=True)  # (B, T, M)
        if cfg.normalize if normalize is None else normalize:
            logmel = self.standardise(logmel)
        return logmel.unsqueeze(1)  # (B, 1, T, M)

    def frames_log_mel(
        self, wave: torch.Tensor, window: torch.Tensor, fbank: torch.Tensor, center: bool
    ) -> torch.Tensor:
        """Unnormalised log-mel (B, T, M) of (B, N) audio; ``center=False`` frames the samples
        as given (the streaming front end supplies the reflect padding itself)."""
        cfg = self.config
        spec = torch.stft(
            wave,
            n_fft=cfg.n_fft,
            hop_length=cfg.hop_length,
            win_length=cfg.win_length,
            window=window,
            center=center,
            pad_mode="reflect",
            normalized=False,
            onesided=True,
            return_complex=True,
        )  # (B, F, T) complex
        power = spec.real.square() + spec.imag.square()  # (B, F, T)
        mel = torch.matmul(power.transpose(-1, -2), fbank)  # (B, T, M)
        return torch.log(mel + LOG_EPS)  # (B, T, M)

    def standardise(self, logmel: torch.Tensor) -> torch.Tensor:
        """(B, T, M) log-mel standardised per clip, or with the configured fixed statistics."""
        cfg = self.config
        if cfg.norm_mean is not None:
            return (logmel - cfg.norm_mean) / (cfg.norm_std + STD_EPS)
        flat = logmel.flatten(1)  # (B, T * M)
        mean = flat.mean(dim=1).view(-1, 1, 1)  # (B, 1, 1)
        std = flat.std(dim=1, unbiased=True).view(-1, 1, 1)  # (B, 1, 1)
        out = (logmel - mean) / (std + STD_EPS)  # (B, T, M)
        constant = std <= CONSTANT_REL_STD * (1.0 + mean.abs())  # (B, 1, 1): only rounding
        return torch.where(constant, torch.zeros_like(out), out)

    def raw_features(self, wave: torch.Tensor) -> torch.Tensor:
        """Unnormalised log-mel ``(T, n_mels)`` of one ``(N,)`` clip."""
        return self(wave, normalize=False)[0, 0]

    def normalize(self, feats: torch.Tensor) -> torch.Tensor:
        """``(T, n_mels)`` unnormalised log-mel of a whole clip -> the model's normalisation
        (per clip, or the fixed statistics; unchanged when ``normalize`` is off)."""
        if not self.config.normalize:
            return feats
        return self.standardise(feats.unsqueeze(0))[0]

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.config.to_dict().items())


_DEFAULT_FRONT_ENDS: dict[tuple[str, torch.dtype], LogMelFrontEnd] = {}
_DEFAULT_LOCK = threading.Lock()


def _default_front_end(device: torch.device, dtype: torch.dtype) -> LogMelFrontEnd:
    """Returns the cached default front end whose buffers live on ``device`` in ``dtype``."""
    key = (str(device), dtype)
    front_end = _DEFAULT_FRONT_ENDS.get(key)
    if front_end is None:
        with _DEFAULT_LOCK:
            front_end = _DEFAULT_FRONT_ENDS.get(key)
            if front_end is None:
                front_end = LogMelFrontEnd().to(device=device, dtype=dtype)
                _DEFAULT_FRONT_ENDS[key] = front_end
    return front_end


def log_mel(wave: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """AxLSTM log-mel features of 16 kHz audio.

    Args:
        wave: Waveform of shape ``(B, N)`` or ``(N,)``, floating point, 16 kHz, with
            ``N > 200``.
        normalize: Standardise each clip to zero mean and unit unbiased std over all its
            time-frequency bins (what the AxLSTM encoders expect). ``False`` returns the raw
            natural-log mel power.

    Returns:
        Tensor of shape ``(B, 1, T, 80)`` (``(1, 1, T, 80)`` for 1-D input) with
        ``T = 1 + N // 160``, on the input's device.

    Raises:
        TypeError: If ``wave`` is not a floating-point tensor.
        ValueError: If ``wave`` has the wrong rank or ``N <= 200``.
    """
    if not isinstance(wave, torch.Tensor):
        raise TypeError(f"wave must be a torch.Tensor, got {type(wave).__name__}")
    dtype = wave.dtype if wave.dtype in (torch.float32, torch.float64) else torch.float32
    return _default_front_end(wave.device, dtype)(wave, normalize=normalize)
