"""From a waveform or a log-mel array to one normalised 2 s training crop.

The pretraining path follows the official recipe (SPEC §1.1-1.2):

1. log-mel of the whole clip, unnormalised, ``(T, 80)``;
2. standardise the *whole* clip with its mean and **population** std (ddof 0);
3. a random 200-frame crop with a start uniform in ``[0, T - 200)``; a clip shorter than
   200 frames is tiled (repeated), never zero-padded.

Items that cannot give a useful crop raise :class:`BadItem` with a short reason, which the
data streams count and replace.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from axlstm.audio import log_mel

__all__ = [
    "BAD_REASONS",
    "BadItem",
    "ClipProcessor",
    "crop_or_tile",
    "normalize_clip",
]

#: Reasons an item is skipped, as they appear in logs and counts.
BAD_REASONS = (
    "missing",  # the file does not exist
    "unreadable",  # not decodable (corrupt, unknown format, truncated shard, refused pickle)
    "empty",  # zero bytes or zero samples
    "too_short",  # fewer samples than one STFT window
    "silent",  # constant signal (digital silence, DC)
    "nonfinite",  # NaN or infinite samples or features
    "bad_shape",  # a feature array that is not (T, n_mels)
)

#: Added to the std in the standardisation (as officially).
STD_EPS = 1e-8


class BadItem(Exception):  # noqa: N818  (a skip signal, not an error)
    """An item that yields no usable training crop.

    Attributes:
        reason: one of :data:`BAD_REASONS`.
        name: file name or key of the item, for the log.
        detail: free text.
    """

    def __init__(self, reason: str, name: str, detail: str = "") -> None:
        if reason not in BAD_REASONS:
            raise ValueError(f"unknown bad-item reason {reason!r}")
        super().__init__(f"{name}: {reason}{f' ({detail})' if detail else ''}")
        self.reason = reason
        self.name = name
        self.detail = detail


def normalize_clip(feats: torch.Tensor) -> torch.Tensor:
    """Standardise a whole clip ``(T, F)`` with its mean and population std; float32 out.

    The statistics are accumulated in float64 so long clips give the same numbers as numpy.
    """
    x = feats.double()
    mean = x.mean()
    std = x.std(unbiased=False)
    return ((x - mean) / (std + STD_EPS)).float()


def crop_or_tile(feats: torch.Tensor, frames: int, rng: np.random.Generator) -> torch.Tensor:
    """A ``(frames, F)`` window of ``(T, F)`` features.

    ``T > frames``: a random start uniform in ``[0, T - frames)`` (the official range, which
    never picks the very last start). ``T == frames``: the clip itself. ``T < frames``: the
    clip repeated end to end and cut to ``frames``.
    """
    T = feats.shape[0]
    if T > frames:
        start = int(rng.integers(0, T - frames))
        return feats[start : start + frames]
    if T == frames:
        return feats
    reps = math.ceil(frames / T)
    return feats.repeat(reps, 1)[:frames]


class ClipProcessor:
    """Turns waveforms or feature arrays into normalised crops ``(1, frames, n_mels)``.

    Args:
        frames: crop length in frames (200 = 2 s).
        n_mels: mel bins of the front end (80).
        sample_rate: rate of the waveforms it is given.
        silence_ptp: a waveform whose peak-to-peak amplitude is at most this is "silent";
            a feature array whose range is at most this is "silent" too.
        min_samples: shortest waveform accepted (one STFT window, 400 samples, by default).
    """

    def __init__(
        self,
        frames: int = 200,
        n_mels: int = 80,
        sample_rate: int = 16000,
        silence_ptp: float = 1e-6,
        min_samples: int = 400,
    ) -> None:
        if frames <= 0:
            raise ValueError(f"crop frames must be positive, got {frames}")
        self.frames = frames
        self.n_mels = n_mels
        self.sample_rate = sample_rate
        self.silence_ptp = silence_ptp
        self.min_samples = min_samples

    def check_wave(self, wave: np.ndarray | torch.Tensor, name: str) -> torch.Tensor:
        """Validate a mono waveform ``(N,)``; returns it as a float32 tensor."""
        w = torch.as_tensor(wave, dtype=torch.float32)
        if w.dim() != 1:
            raise BadItem("bad_shape", name, f"waveform shape {tuple(w.shape)}, expected (N,)")
        if w.numel() == 0:
            raise BadItem("empty", name, "no samples")
        if not torch.isfinite(w).all():
            raise BadItem("nonfinite", name, "NaN or infinite samples")
        if w.numel() < self.min_samples:
            raise BadItem("too_short", name, f"{w.numel()} samples < {self.min_samples}")
        if float(w.max() - w.min()) <= self.silence_ptp:
            raise BadItem("silent", name, "constant signal")
        return w

    def check_features(self, feats: np.ndarray | torch.Tensor, name: str) -> torch.Tensor:
        """Validate a log-mel array ``(T, n_mels)``; returns it as a float32 tensor."""
        x = torch.as_tensor(np.asarray(feats) if not torch.is_tensor(feats) else feats)
        if x.dim() != 2 or x.shape[1] != self.n_mels:
            raise BadItem(
                "bad_shape", name, f"feature shape {tuple(x.shape)}, expected (T, {self.n_mels})"
            )
        if x.shape[0] == 0:
            raise BadItem("empty", name, "no frames")
        x = x.float()
        if not torch.isfinite(x).all():
            raise BadItem("nonfinite", name, "NaN or infinite features")
        if float(x.max() - x.min()) <= self.silence_ptp:
            raise BadItem("silent", name, "constant features")
        return x

    def wave_features(self, wave: np.ndarray | torch.Tensor, name: str) -> torch.Tensor:
        """Unnormalised log-mel ``(T, n_mels)`` of a checked waveform."""
        w = self.check_wave(wave, name)
        return log_mel(w, normalize=False)[0, 0]  # (T, F)

    def from_features(
        self, feats: np.ndarray | torch.Tensor, rng: np.random.Generator, name: str
    ) -> torch.Tensor:
        """Normalised random crop ``(1, frames, n_mels)`` of an unnormalised log-mel clip."""
        x = self.check_features(feats, name)
        return crop_or_tile(normalize_clip(x), self.frames, rng).unsqueeze(0).contiguous()

    def from_wave(
        self, wave: np.ndarray | torch.Tensor, rng: np.random.Generator, name: str
    ) -> torch.Tensor:
        """Normalised random crop ``(1, frames, n_mels)`` of a waveform at ``sample_rate``."""
        return self.from_features(self.wave_features(wave, name), rng, name)
