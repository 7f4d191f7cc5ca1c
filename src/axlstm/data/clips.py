"""From a waveform or a log-mel array to one normalised 2 s training crop.

The pretraining path follows the official recipe (SPEC §1.1-1.2):

1. log-mel of the whole clip, unnormalised, ``(T, 80)``;
2. standardise the *whole* clip with its mean and **population** std (ddof 0);
3. a random 200-frame crop with a start uniform in ``[0, T - 200)``; a clip shorter than
   200 frames is tiled (repeated), never zero-padded.

Models on the Kaldi fbank front end (the original SSAST and SSAMBA) get their inputs from
:class:`FbankClipProcessor` instead, which follows the official SSAST data loader
(SPEC-SSAST-SSAMBA §A1-A2): raw 128-bin Kaldi fbank of the whole clip (global DC removed), the
first ``target_length`` frames or zero rows appended, optional SpecAugment, normalisation
``(x - mean) / (2 std)`` with the dataset statistics, optional noise. :func:`make_processor`
picks the processor for a model's front end.

Items that cannot give a useful crop raise :class:`BadItem` with a short reason, which the
data streams count and replace.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from axlstm.audio import log_mel
from axlstm.audio.kaldi import KaldiFbankConfig, kaldi_fbank, normalize_fbank

__all__ = [
    "BAD_REASONS",
    "BadItem",
    "ClipProcessor",
    "FbankClipProcessor",
    "crop_or_tile",
    "make_processor",
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


# ------------------------------------------------------------------------------- Kaldi fbank
def _mask_span(size: int, bound: int, rng: np.random.Generator) -> tuple[int, int]:
    """torchaudio ``mask_along_axis``: width ``floor(u1 bound)``, start ``floor(u2 (size - w))``
    with ``w = u1 bound`` unrounded."""
    value = rng.random() * bound
    start = int(rng.random() * (size - value))
    return start, start + int(value)


class FbankClipProcessor(ClipProcessor):
    """Waveforms (or raw fbank arrays) to model inputs ``(1, target_length, n_mels)`` as the
    official SSAST/SSAMBA data loader makes them (see the module doc).

    Args:
        front_end: the model's :class:`~axlstm.audio.KaldiFbankConfig` (its ``target_length``
            is the input length; mean/std the normalisation).
        crop: "start" (official) or "random" start for clips longer than the target.
        pad: "zeros" (official) or "tile" for shorter clips.
        freqm, timem: SpecAugment mask bounds (0: off).
        noise: the official noise augmentation after normalising.
        silence_ptp: a constant clip or feature array is "silent".

    Feature arrays (``.npy`` files, shards made with ``--features``) must be raw
    ``(T, n_mels)`` Kaldi fbank; AxLSTM's 80-bin log-mel arrays are refused as "bad_shape".
    """

    def __init__(
        self,
        front_end: KaldiFbankConfig,
        crop: str = "start",
        pad: str = "zeros",
        freqm: int = 0,
        timem: int = 0,
        noise: bool = False,
        silence_ptp: float = 1e-6,
    ) -> None:
        if front_end.target_length is None:
            raise ValueError("the fbank front end needs a target_length to make training inputs")
        if crop not in ("start", "random") or pad not in ("zeros", "tile"):
            raise ValueError(
                f"crop must be 'start' or 'random' and pad 'zeros' or 'tile', got {crop}, {pad}"
            )
        super().__init__(
            front_end.target_length,
            n_mels=front_end.n_mels,
            sample_rate=front_end.sample_rate,
            silence_ptp=silence_ptp,
            min_samples=front_end.frame_size,
        )
        self.front_end = front_end
        self.crop, self.pad = crop, pad
        self.freqm, self.timem, self.noise = int(freqm), int(timem), bool(noise)

    def wave_features(self, wave: np.ndarray | torch.Tensor, name: str) -> torch.Tensor:
        """Raw Kaldi log fbank ``(T, n_mels)`` of a checked waveform (global DC removed)."""
        w = self.check_wave(wave, name)
        fe = self.front_end
        return kaldi_fbank(
            w,
            num_mel_bins=fe.n_mels,
            sample_rate=fe.sample_rate,
            frame_length_ms=fe.frame_length_ms,
            frame_shift_ms=fe.frame_shift_ms,
        )

    def fit_length(self, feats: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """``(T, F)`` -> ``(target_length, F)`` by cropping and padding as configured."""
        T, L = feats.shape[0], self.frames
        if T > L:
            start = 0 if self.crop == "start" else int(rng.integers(0, T - L + 1))
            return feats[start : start + L]
        if T < L:
            if self.pad == "zeros":  # zero log-mel rows, before normalisation (official)
                return torch.cat([feats, feats.new_zeros(L - T, feats.shape[1])])
            return feats.repeat(math.ceil(L / T), 1)[:L]
        return feats

    def from_features(
        self, feats: np.ndarray | torch.Tensor, rng: np.random.Generator, name: str
    ) -> torch.Tensor:
        """Model input ``(1, target_length, n_mels)`` of a raw fbank clip: crop/pad,
        SpecAugment, normalisation, noise (the official order)."""
        x = self.fit_length(self.check_features(feats, name), rng).clone()
        T, F = x.shape
        if self.freqm:
            lo, hi = _mask_span(F, self.freqm, rng)
            x[:, lo:hi] = 0.0
        if self.timem:
            lo, hi = _mask_span(T, self.timem, rng)
            x[lo:hi] = 0.0
        fe = self.front_end
        if fe.normalize:
            x = normalize_fbank(x, fe.mean, fe.std)
        if self.noise:
            scale = rng.random() / 10
            x = x + torch.from_numpy(rng.random((T, F), dtype=np.float32)) * scale
            x = torch.roll(x, int(rng.integers(-10, 10)), dims=0)
        return x.float().unsqueeze(0).contiguous()


def make_processor(data_cfg, front_end=None) -> ClipProcessor:
    """The clip processor of a model's front end.

    Args:
        data_cfg: the run's :class:`~axlstm.data.DataConfig`.
        front_end: the model's ``front_end_config``: a
            :class:`~axlstm.audio.KaldiFbankConfig` gives :class:`FbankClipProcessor` (with
            ``data_cfg.fbank``); anything else (None, the log-mel config) the AxLSTM
            :class:`ClipProcessor` of ``data_cfg.crop_frames``-frame crops.
    """
    if isinstance(front_end, KaldiFbankConfig):
        fb = data_cfg.fbank
        return FbankClipProcessor(
            front_end,
            crop=fb.crop,
            pad=fb.pad,
            freqm=fb.freqm,
            timem=fb.timem,
            noise=fb.noise,
            silence_ptp=data_cfg.silence_ptp,
        )
    return ClipProcessor(data_cfg.crop_frames, silence_ptp=data_cfg.silence_ptp)
