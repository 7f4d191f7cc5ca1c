"""Batch augmentations for supervised fine-tuning, and the AudioSet-style balanced sampler.

Every function works on a whole batch, on whatever device the batch lives (CPU or CUDA), and
draws its randomness from the ``torch.Generator`` it is given (a CPU generator: the draws are
small and the results do not depend on the device), so a seeded run is reproducible and a
resumed one can continue exactly.

Waveform augmentations take ``(B, N)`` audio; spectrogram ones take ``(B, C, T, F)`` inputs
(time before frequency, as every encoder here takes them); label mixing takes ``(B, K)``
float targets (one-hot for multiclass, multi-hot for multilabel).

The recipes they follow (facts from SSAST's and SSAMBA's fine-tuning loaders and the
Audio-MAE/EAT configs; the code is our own):

- **mixup** (:func:`mixup`): with probability ``prob`` an example is mixed with another of the
  batch, ``lam * x_i + (1 - lam) * x_j`` and the same for the targets, ``lam ~ Beta(alpha,
  alpha)`` (SSAST: alpha 10, prob 0.5 on AudioSet);
- **SpecAugment** (:func:`spec_mask`): one frequency band of width ``floor(u * freqm)`` and
  one time band of width ``floor(u * timem)`` per example set to ``value``;
- **time shift** (:func:`time_shift`): a circular roll along time by an integer in
  ``[-max_shift, max_shift]`` per example (SSAST rolls by up to 10 frames);
- **additive noise at an SNR** (:func:`add_noise`): white noise scaled so that the example's
  signal-to-noise ratio is a draw from ``[snr_low, snr_high]`` dB;
- **random gain** (:func:`random_gain`): a gain of ``U(-max_db, max_db)`` dB per example;
- **balanced sampling** (:func:`balanced_weights`, :func:`balanced_sampler`): each clip
  weighs the sum over its labels of ``1000 / (count + 0.01)``, the label frequencies counted
  over the training set, and clips are drawn with replacement by those weights.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import WeightedRandomSampler

from axlstm.core.errors import ConfigError

__all__ = [
    "add_noise",
    "balanced_sampler",
    "balanced_weights",
    "mixup",
    "random_gain",
    "spec_mask",
    "time_shift",
]


def _uniform(n: int, generator: torch.Generator) -> torch.Tensor:
    """``(n,)`` float64 draws in [0, 1) on the CPU."""
    return torch.rand(n, generator=generator, dtype=torch.float64)


def _beta(alpha: float, n: int, generator: torch.Generator) -> torch.Tensor:
    """``(n,)`` draws of Beta(alpha, alpha): torch's Beta sampler ignores generators, so numpy's
    is used, seeded by a draw from ``generator``."""
    if not alpha > 0:
        raise ConfigError(f"mixup alpha must be positive, got {alpha}")
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return torch.from_numpy(np.random.default_rng(seed).beta(alpha, alpha, n))  # (n,) float64


def mixup(
    x: torch.Tensor,
    y: torch.Tensor,
    generator: torch.Generator,
    *,
    alpha: float = 10.0,
    prob: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mix examples and their targets in pairs.

    Args:
        x: ``(B, ...)`` inputs (waveforms or spectrograms).
        y: ``(B, K)`` float targets.
        generator: CPU generator for the draws.
        alpha: Beta(alpha, alpha) parameter of the mixing weight.
        prob: probability that an example is mixed (others keep ``lam = 1``).

    Returns:
        The mixed ``x`` and ``y`` (new tensors; the inputs are not changed).
    """
    if not 0.0 <= prob <= 1.0:
        raise ConfigError(f"mixup probability must be in [0, 1], got {prob}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{x.shape[0]} inputs but {y.shape[0]} targets")
    b = x.shape[0]
    partner = torch.randperm(b, generator=generator)  # (B,)
    lam = _beta(alpha, b, generator)  # (B,)
    lam = torch.where(_uniform(b, generator) < prob, lam, torch.ones_like(lam))
    lam_x = lam.to(x.device, x.dtype).view(-1, *([1] * (x.dim() - 1)))
    lam_y = lam.to(y.device, y.dtype).view(-1, 1)
    part = partner.to(x.device)
    mixed_x = lam_x * x + (1 - lam_x) * x[part]
    mixed_y = lam_y * y + (1 - lam_y) * y[partner.to(y.device)]
    return mixed_x, mixed_y


def _spans(n: int, size: int, bound: int, generator: torch.Generator) -> torch.Tensor:
    """``(n, 2)`` [start, stop) spans of width ``floor(u1 bound)`` at ``floor(u2 (size - w))``
    (torchaudio's ``mask_along_axis`` rule)."""
    width = _uniform(n, generator) * bound
    start = (_uniform(n, generator) * (size - width)).floor()
    return torch.stack([start, start + width.floor()], dim=1).long()


def spec_mask(
    x: torch.Tensor,
    generator: torch.Generator,
    *,
    freqm: int = 0,
    timem: int = 0,
    value: float = 0.0,
) -> torch.Tensor:
    """SpecAugment: one frequency band (width < ``freqm`` bins) and one time band (width <
    ``timem`` frames) per example of ``(B, C, T, F)`` inputs set to ``value``; 0 turns a
    mask off. Returns a new tensor."""
    if freqm < 0 or timem < 0:
        raise ConfigError(f"mask widths must be >= 0, got freqm={freqm}, timem={timem}")
    b, _, t, f = x.shape
    keep = torch.ones(b, 1, t, f, dtype=torch.bool)
    if freqm:
        spans = _spans(b, f, freqm, generator)
        bins = torch.arange(f)
        band = (bins >= spans[:, :1]) & (bins < spans[:, 1:])  # (B, F)
        keep &= ~band[:, None, None, :]
    if timem:
        spans = _spans(b, t, timem, generator)
        frames = torch.arange(t)
        band = (frames >= spans[:, :1]) & (frames < spans[:, 1:])  # (B, T)
        keep &= ~band[:, None, :, None]
    return torch.where(keep.to(x.device), x, torch.full_like(x, value))


def time_shift(x: torch.Tensor, generator: torch.Generator, *, max_shift: int) -> torch.Tensor:
    """Roll each example of ``(B, C, T, F)`` inputs (or ``(B, N)`` waveforms) circularly along
    time by an integer in ``[-max_shift, max_shift]``. Returns a new tensor."""
    if max_shift < 0:
        raise ConfigError(f"max_shift must be >= 0, got {max_shift}")
    b = x.shape[0]
    time_dim = 2 if x.dim() == 4 else 1
    length = x.shape[time_dim]
    shifts = torch.randint(-max_shift, max_shift + 1, (b,), generator=generator)  # (B,)
    index = (torch.arange(length)[None, :] - shifts[:, None]) % length  # (B, T)
    shape = [b] + [1] * (x.dim() - 1)
    shape[time_dim] = length
    index = index.view(shape).expand_as(x).to(x.device)
    return torch.gather(x, time_dim, index)


def add_noise(
    wave: torch.Tensor,
    generator: torch.Generator,
    *,
    snr_low: float,
    snr_high: float,
) -> torch.Tensor:
    """White Gaussian noise at a signal-to-noise ratio drawn from ``[snr_low, snr_high]`` dB
    per example of ``(B, N)`` waveforms; the noise power is the example's mean power over
    ``10 ** (snr / 10)`` (a silent example stays silent). Returns a new tensor."""
    if not (math.isfinite(snr_low) and math.isfinite(snr_high)) or snr_low > snr_high:
        raise ConfigError(f"need finite snr_low <= snr_high, got {snr_low}, {snr_high}")
    b, n = wave.shape
    snr = snr_low + (snr_high - snr_low) * _uniform(b, generator)  # (B,) dB
    noise = torch.randn(b, n, generator=generator, dtype=torch.float32).to(wave.device)
    power = wave.float().square().mean(dim=1)  # (B,)
    noise_power = noise.square().mean(dim=1)  # (B,) ~1, normalised away exactly
    scale = (power / (10 ** (snr.to(wave.device) / 10)) / noise_power).sqrt()
    return (wave + (noise * scale[:, None]).to(wave.dtype)).contiguous()


def random_gain(wave: torch.Tensor, generator: torch.Generator, *, max_db: float) -> torch.Tensor:
    """Each example of ``(B, N)`` waveforms scaled by ``U(-max_db, max_db)`` dB."""
    if not math.isfinite(max_db) or max_db < 0:
        raise ConfigError(f"max_db must be finite and >= 0, got {max_db}")
    db = (2 * _uniform(wave.shape[0], generator) - 1) * max_db  # (B,)
    gain = (10 ** (db / 20)).to(wave.device, wave.dtype)
    return wave * gain[:, None]


def balanced_weights(targets: torch.Tensor) -> torch.Tensor:
    """AudioSet-style sampling weights of ``(N, K)`` multi-hot (or one-hot) training targets:
    clip i weighs ``sum_k y_ik * 1000 / (count_k + 0.01)`` with ``count_k`` the clips holding
    label k. A clip without labels weighs nothing."""
    y = torch.as_tensor(targets, dtype=torch.float64)
    if y.dim() != 2:
        raise ValueError(f"targets must be (N, K), got shape {tuple(y.shape)}")
    label_weight = 1000.0 / (y.sum(dim=0) + 0.01)  # (K,)
    return y @ label_weight  # (N,)


def balanced_sampler(
    targets: torch.Tensor, num_samples: int, generator: torch.Generator
) -> WeightedRandomSampler:
    """A sampler drawing ``num_samples`` clip indices with replacement by
    :func:`balanced_weights`."""
    weights = balanced_weights(targets)
    if not bool((weights > 0).any()):
        raise ConfigError("balanced sampling needs at least one labelled clip")
    return WeightedRandomSampler(weights, num_samples, replacement=True, generator=generator)
