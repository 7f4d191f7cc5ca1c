"""Graph forms of the front ends: waveform (B, N) to model input (B, 1, T, F) for any B and N.

The eager front ends compute the STFT with ``torch.stft`` (a complex tensor) or frame each clip
in a Python loop (the Kaldi fbank). Here the analysis is a strided ``conv1d`` whose kernels are
the windowed DFT basis, computed once in float64: ONNX has no complex tensors, the ``STFT``
operator needs opset 17 and is slow in ONNX Runtime for non-power-of-two sizes, and a
convolution runs everywhere. For the Kaldi fbank every per-frame step before the DFT (the
frame's DC removal, pre-emphasis, the window, zero padding to the FFT size) is linear, so it is
folded into the same kernel. Both equal the eager front ends to float32 rounding (tested).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from axlstm.audio.features import (
    CONSTANT_REL_STD,
    LOG_EPS,
    STD_EPS,
    FrontEndConfig,
    mel_filterbank,
)
from axlstm.audio.frontend import FrontEndSpec
from axlstm.audio.kaldi import KALDI_EPS, KaldiFbankConfig, kaldi_mel_banks
from axlstm.core.errors import ConfigError

__all__ = ["FbankGraph", "LogMelGraph", "front_end_graph", "min_samples_for"]


def _dft_kernel(frame_to_spectrum: torch.Tensor) -> torch.Tensor:
    """(2 F, 1, W) conv kernel from a complex (F, W) map of a frame of W samples."""
    stacked = torch.cat([frame_to_spectrum.real, frame_to_spectrum.imag], dim=0)
    return stacked.to(torch.float32).unsqueeze(1)


def _dft(n_fft: int, width: int) -> torch.Tensor:
    """The first ``n_fft // 2 + 1`` rows of the n_fft-point DFT of ``width`` samples (zero
    padded to ``n_fft``), complex128 (F, width)."""
    k = torch.arange(n_fft // 2 + 1, dtype=torch.float64)[:, None]
    n = torch.arange(width, dtype=torch.float64)[None, :]
    return torch.exp(-2j * math.pi * ((k * n) % n_fft) / n_fft)


def _power(wave: torch.Tensor, kernel: torch.Tensor, hop: int) -> torch.Tensor:
    """|DFT|² of every frame: (B, N) -> (B, T, F)."""
    spec = F.conv1d(wave[:, None], kernel, stride=hop)  # (B, 2 F, T)
    re, im = spec.chunk(2, dim=1)
    return (re.square() + im.square()).transpose(1, 2)


class LogMelGraph(nn.Module):
    """:class:`axlstm.audio.LogMelFrontEnd` as a graph: reflect padding (``center``), the
    windowed DFT, the mel filterbank, the log and the standardisation (per clip, with the
    constant-clip rule, or with fixed statistics).

    Args:
        config: the front end.
        center: reflect-pad n_fft // 2 at both ends (False: frames of the samples as given,
            as the streaming front end uses them).
    """

    def __init__(self, config: FrontEndConfig, center: bool = True) -> None:
        super().__init__()
        self.config = config
        self.center = center
        window = torch.hann_window(config.win_length, periodic=True, dtype=torch.float64)
        left = (config.n_fft - config.win_length) // 2  # torch.stft centres a short window
        window = F.pad(window, (left, config.n_fft - config.win_length - left))
        kernel = _dft_kernel(_dft(config.n_fft, config.n_fft) * window)
        self.register_buffer("kernel", kernel, persistent=False)
        fbank = mel_filterbank(
            config.n_fft // 2 + 1, config.f_min, config.f_max, config.n_mels, config.sample_rate
        )
        self.register_buffer("filterbank", fbank, persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if self.center:
            half = cfg.n_fft // 2
            wave = F.pad(wave[:, None], (half, half), mode="reflect")[:, 0]
        mel = _power(wave, self.kernel, cfg.hop_length) @ self.filterbank  # (B, T, M)
        logmel = torch.log(mel + LOG_EPS)
        if cfg.normalize:
            if cfg.norm_mean is not None:
                logmel = (logmel - cfg.norm_mean) / (cfg.norm_std + STD_EPS)
            else:
                flat = logmel.flatten(1)
                mean = flat.mean(dim=1)[:, None, None]
                std = flat.std(dim=1)[:, None, None]  # unbiased, as the eager front end
                out = (logmel - mean) / (std + STD_EPS)
                constant = std <= CONSTANT_REL_STD * (1.0 + mean.abs())
                logmel = torch.where(constant, torch.zeros_like(out), out)
        return logmel[:, None]  # (B, 1, T, M)


class FbankGraph(nn.Module):
    """:class:`axlstm.audio.kaldi.KaldiFbankFrontEnd` of whole clips (no pad or crop to a
    training length) as a graph: the clip's DC removed, then one strided convolution whose
    kernel is DFT ∘ Hann window ∘ pre-emphasis ∘ the frame's DC removal, Kaldi's mel banks,
    the floor, the log and ``(x - mean) / (2 std)``."""

    def __init__(self, config: KaldiFbankConfig) -> None:
        super().__init__()
        self.config = config
        size, shift = config.frame_size, config.frame_shift
        fft = 1 << (size - 1).bit_length()
        eye = torch.eye(size, dtype=torch.float64)
        centre = eye - 1.0 / size  # x - mean(x)
        preemph = eye - 0.97 * torch.diag(torch.ones(size - 1, dtype=torch.float64), -1)
        preemph[0, 0] = 1.0 - 0.97  # Kaldi repeats the first sample: x[-1] := x[0]
        window = torch.hann_window(size, periodic=False, dtype=torch.float64)
        linear = window[:, None] * (preemph @ centre)  # (size, size)
        kernel = _dft_kernel(_dft(fft, size).to(torch.complex128) @ linear.to(torch.complex128))
        self.register_buffer("kernel", kernel, persistent=False)
        banks = kaldi_mel_banks(config.n_mels, fft, config.sample_rate)  # (M, fft // 2 + 1)
        self.register_buffer("banks", banks.t().contiguous(), persistent=False)
        self.shift = shift

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        wave = wave - wave.mean(dim=-1, keepdim=True)  # SSAST removes the clip's DC first
        mel = _power(wave, self.kernel, self.shift) @ self.banks  # (B, T, M)
        fbank = torch.clamp_min(mel, KALDI_EPS).log()
        if cfg.normalize:
            fbank = (fbank - cfg.mean) / (cfg.std * 2)
        return fbank[:, None]  # (B, 1, T, M)


def front_end_graph(spec: FrontEndSpec, center: bool = True) -> nn.Module:
    """The graph form of a model's front end (whole clips).

    Raises:
        ConfigError: a front end without a graph form.
    """
    if isinstance(spec, FrontEndConfig):
        return LogMelGraph(spec, center=center)
    if isinstance(spec, KaldiFbankConfig):
        return FbankGraph(spec.whole_clip())
    raise ConfigError(f"front end {type(spec).__name__} (kind {spec.kind!r}) has no graph form")


def min_samples_for(spec: FrontEndSpec, frames: int) -> int:
    """Fewest samples that give ``frames`` frames (and that the front end accepts)."""
    if isinstance(spec, FrontEndConfig):
        return max(spec.min_samples, (frames - 1) * spec.hop_length)
    return max(spec.min_samples, spec.frame_samples + (frames - 1) * spec.hop_samples)
