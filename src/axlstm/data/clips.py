"""From a waveform or a feature array to one training input, through the model's front end.

Every model gets its training inputs the same way, from its own front end
(:class:`~axlstm.audio.FrontEndSpec`; the processor never asks which one it is):

1. raw features of the whole clip (``front_end.raw_features``: the unnormalised log-mel
   ``(T, 80)`` for AxLSTM, the raw 128-bin Kaldi fbank with global DC removed for SSAST/SSAMBA);
2. a front end that normalises per clip does it now, with the statistics of the whole clip
   (AxLSTM: mean and unbiased std over every bin, SPEC §1.1);
3. a crop of ``frames`` frames (``crop``: "random_official", a start uniform in ``[0, T - L)``
   as the official AxLSTM loader; "start", the first frames as SSAST's loader; "random", any
   start in ``[0, T - L]``) or, for a shorter clip, padding (``pad``: "tile" repeats the clip,
   "zeros" appends zero rows before normalisation as SSAST's loader);
4. optional SpecAugment (``freqm``, ``timem``: one frequency and one time mask written as 0);
5. a front end with fixed statistics normalises now (SSAST: ``(x - mean) / (2 std)``);
6. optional noise (SSAST's fine-tuning loader).

``crop``, ``pad`` and ``frames`` default to what the front end declares
(``training_crop``, ``training_pad``, ``fixed_length``); see :func:`make_processor`.

Items that cannot give a useful crop raise :class:`BadItem` with a short reason, which the
data streams count and replace.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from axlstm.audio import FrontEndConfig, FrontEndSpec
from axlstm.audio.frontend import CROP_POLICIES, PAD_POLICIES

__all__ = [
    "BAD_REASONS",
    "BadItem",
    "ClipProcessor",
    "crop_or_tile",
    "fit_length",
    "make_processor",
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


def crop_or_tile(feats: torch.Tensor, frames: int, rng: np.random.Generator) -> torch.Tensor:
    """A ``(frames, F)`` window of ``(T, F)`` features, as the official AxLSTM loader cuts it:
    ``T > frames``: a random start uniform in ``[0, T - frames)``; ``T == frames``: the clip
    itself; ``T < frames``: the clip repeated end to end and cut to ``frames``."""
    return fit_length(feats, frames, rng, "random_official", "tile")


def fit_length(
    feats: torch.Tensor, frames: int, rng: np.random.Generator, crop: str, pad: str
) -> torch.Tensor:
    """``(T, F)`` -> ``(frames, F)`` by the crop and pad policies (see the module doc)."""
    T = feats.shape[0]
    if T > frames:
        if crop == "start":
            start = 0
        elif crop == "random":
            start = int(rng.integers(0, T - frames + 1))
        else:  # official AxLSTM: never the very last start
            start = int(rng.integers(0, T - frames))
        return feats[start : start + frames]
    if T == frames:
        return feats
    if pad == "zeros":  # zero rows, before normalisation (SSAST's loader)
        return torch.cat([feats, feats.new_zeros(frames - T, feats.shape[1])])
    return feats.repeat(math.ceil(frames / T), 1)[:frames]


def _mask_span(size: int, bound: int, rng: np.random.Generator) -> tuple[int, int]:
    """torchaudio ``mask_along_axis``: width ``floor(u1 bound)``, start ``floor(u2 (size - w))``
    with ``w = u1 bound`` unrounded."""
    value = rng.random() * bound
    start = int(rng.random() * (size - value))
    return start, start + int(value)


class ClipProcessor:
    """Turns waveforms or raw feature arrays into training inputs ``(1, frames, n_mels)``
    through a front end (see the module doc).

    Args:
        front_end: the model's front end (:class:`~axlstm.audio.FrontEndSpec`); the AxLSTM
            log-mel when None.
        frames: input length; the front end's ``fixed_length``, else 200 (2 s), when None.
        crop: "random_official", "start" or "random"; the front end's default when None.
        pad: "tile" or "zeros"; the front end's default when None.
        freqm, timem: SpecAugment mask bounds (0: off), torchaudio semantics.
        noise: add the official SSAST loader's noise after normalising.
        silence_ptp: a waveform (or feature array) whose peak-to-peak range is at most this is
            "silent".

    Feature arrays (``.npy`` files, shards made with ``--features``) must be the front end's raw
    ``(T, n_mels)`` features; other shapes are refused as "bad_shape".
    """

    def __init__(
        self,
        front_end: FrontEndSpec | None = None,
        frames: int | None = None,
        crop: str | None = None,
        pad: str | None = None,
        freqm: int = 0,
        timem: int = 0,
        noise: bool = False,
        silence_ptp: float = 1e-6,
    ) -> None:
        fe = front_end if front_end is not None else FrontEndConfig()
        frames = frames or fe.fixed_length or 200
        crop = crop or fe.training_crop
        pad = pad or fe.training_pad
        if frames <= 0:
            raise ValueError(f"crop frames must be positive, got {frames}")
        if crop not in CROP_POLICIES or pad not in PAD_POLICIES:
            raise ValueError(
                f"crop must be one of {CROP_POLICIES} and pad one of {PAD_POLICIES}, got "
                f"{crop!r}, {pad!r}"
            )
        self.front_end = fe
        self.module = fe.build()
        self.frames = int(frames)
        self.crop, self.pad = crop, pad
        self.freqm, self.timem, self.noise = int(freqm), int(timem), bool(noise)
        self.n_mels = fe.n_mels
        self.sample_rate = fe.sample_rate
        self.silence_ptp = silence_ptp
        self.min_samples = fe.frame_samples  # one analysis window

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
        """Validate a raw feature array ``(T, n_mels)``; returns it as a float32 tensor."""
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
        """Raw (unnormalised) features ``(T, n_mels)`` of a checked waveform."""
        return self.module.raw_features(self.check_wave(wave, name))

    def from_features(
        self, feats: np.ndarray | torch.Tensor, rng: np.random.Generator, name: str
    ) -> torch.Tensor:
        """Training input ``(1, frames, n_mels)`` of a raw feature clip (the module doc's
        steps 2-6)."""
        x = self.check_features(feats, name)
        per_clip = self.front_end.per_clip_normalization
        if per_clip:
            x = self.module.normalize(x)
        x = fit_length(x, self.frames, rng, self.crop, self.pad).clone()
        T, F = x.shape
        if self.freqm:
            lo, hi = _mask_span(F, self.freqm, rng)
            x[:, lo:hi] = 0.0
        if self.timem:
            lo, hi = _mask_span(T, self.timem, rng)
            x[lo:hi] = 0.0
        if not per_clip:
            x = self.module.normalize(x)
        if self.noise:
            scale = rng.random() / 10
            x = x + torch.from_numpy(rng.random((T, F), dtype=np.float32)) * scale
            x = torch.roll(x, int(rng.integers(-10, 10)), dims=0)
        return x.float().unsqueeze(0).contiguous()

    def from_wave(
        self, wave: np.ndarray | torch.Tensor, rng: np.random.Generator, name: str
    ) -> torch.Tensor:
        """Training input ``(1, frames, n_mels)`` of a waveform at ``sample_rate``."""
        return self.from_features(self.wave_features(wave, name), rng, name)


def make_processor(data_cfg, front_end: FrontEndSpec | None = None) -> ClipProcessor:
    """The clip processor of a run: the model's front end with the run's data options.

    Args:
        data_cfg: the run's :class:`~axlstm.data.DataConfig`: ``crop_frames`` (for front ends
            without a fixed length), ``input`` (crop, pad, augmentation; "auto" is the front
            end's own default) and ``silence_ptp``.
        front_end: the model's ``front_end_config`` (the AxLSTM log-mel when None).
    """
    fe = front_end if front_end is not None else FrontEndConfig()
    opts = data_cfg.input
    return ClipProcessor(
        fe,
        frames=fe.fixed_length or data_cfg.crop_frames,
        crop=None if opts.crop == "auto" else opts.crop,
        pad=None if opts.pad == "auto" else opts.pad,
        freqm=opts.freqm,
        timem=opts.timem,
        noise=opts.noise,
        silence_ptp=data_cfg.silence_ptp,
    )
