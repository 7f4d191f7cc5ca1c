"""Batch augmentations for fine-tuning: each seeded, each checked for what it does."""

from __future__ import annotations

import math

import pytest
import torch

from axlstm.core.errors import ConfigError
from axlstm.data.augment import (
    add_noise,
    balanced_sampler,
    balanced_weights,
    mixup,
    random_gain,
    spec_mask,
    time_shift,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_mixup_mixes_inputs_and_targets_with_the_same_weight():
    x = torch.arange(8, dtype=torch.float64).view(8, 1).repeat(1, 5)  # row i holds i
    y = torch.eye(8, dtype=torch.float64)
    mx, my = mixup(x, y, gen(), alpha=10.0, prob=1.0)
    assert torch.allclose(my.sum(1), torch.ones(8, dtype=torch.float64))  # still a distribution
    for i in range(8):
        others = [k for k in range(8) if k != i and my[i, k] > 0]
        if not others:  # paired with itself (or lam = 1): unchanged
            assert torch.equal(mx[i], x[i]) and my[i, i] == 1
            continue
        lam, j = my[i, i], others[0]
        assert torch.allclose(mx[i], lam * x[i] + (1 - lam) * x[j], atol=1e-12)
    # the same seed gives the same batch; the inputs are untouched
    mx2, my2 = mixup(x, y, gen(), alpha=10.0, prob=1.0)
    assert torch.equal(mx, mx2) and torch.equal(my, my2)
    assert torch.equal(x[:, 0], torch.arange(8, dtype=torch.float64))


def test_mixup_weights_follow_beta_and_prob():
    n = 4000
    y = torch.eye(2, dtype=torch.float64).repeat(n // 2, 1)  # alternating classes
    x = y[:, :1].clone()
    _, my = mixup(x, y, gen(1), alpha=10.0, prob=1.0)
    lam = my.max(dim=1).values  # max(lam, 1 - lam) when mixed with the other class
    mixed = (my > 0).sum(1) == 2
    # E[max(L, 1-L)] for L ~ Beta(10, 10) is 0.5 + E|L - 0.5| = 0.5 + 0.0857 (numerically);
    # n/2 mixed draws with std 0.06 give a standard error of 0.0013: 0.01 is 7 errors
    assert abs(float(lam[mixed].mean()) - 0.5857) < 0.01
    _, my = mixup(x, y, gen(2), alpha=10.0, prob=0.0)
    assert torch.equal(my, y)
    with pytest.raises(ConfigError):
        mixup(x, y, gen(), prob=1.5)


def test_spec_mask_zeroes_one_band_of_each_axis_within_the_bounds():
    x = torch.ones(16, 1, 50, 20)
    out = spec_mask(x, gen(), freqm=8, timem=12)
    for b in range(16):
        zero_bins = (out[b, 0] == 0).all(dim=0)  # (F,) bins masked over all time
        zero_frames = (out[b, 0] == 0).all(dim=1)  # (T,) frames masked over all bins
        for zeros, bound in ((zero_bins, 8), (zero_frames, 12)):
            idx = zeros.nonzero().flatten()
            assert idx.numel() < bound
            if idx.numel():  # one contiguous band
                assert int(idx[-1] - idx[0]) + 1 == idx.numel()
        # nothing else is touched
        keep = ~zero_bins[None, :] & ~zero_frames[:, None]
        assert torch.all(out[b, 0][keep] == 1)
    assert torch.equal(spec_mask(x, gen(), freqm=0, timem=0), x)
    assert torch.equal(out, spec_mask(x, gen(), freqm=8, timem=12))


def test_time_shift_is_a_circular_roll_per_example():
    x = torch.randn(6, 1, 30, 4, generator=gen(5))
    out = time_shift(x, gen(3), max_shift=10)
    shifts = torch.randint(-10, 11, (6,), generator=gen(3))  # the same draws
    for b in range(6):
        assert torch.equal(out[b], torch.roll(x[b], int(shifts[b]), dims=1))
    wave = torch.randn(3, 100, generator=gen(6))
    out = time_shift(wave, gen(4), max_shift=7)
    shifts = torch.randint(-7, 8, (3,), generator=gen(4))
    for b in range(3):
        assert torch.equal(out[b], torch.roll(wave[b], int(shifts[b])))


def test_noise_has_the_drawn_snr():
    t = torch.arange(16000) / 16000
    wave = torch.stack([0.5 * torch.sin(2 * math.pi * 440 * t), 0.01 * torch.sin(3 * t)])
    out = add_noise(wave, gen(), snr_low=10.0, snr_high=10.0)
    noise = out - wave
    snr = 10 * torch.log10(wave.square().mean(1) / noise.square().mean(1))
    # the noise is rescaled to its exact sample power, so the SNR holds to float32 rounding
    assert torch.allclose(snr, torch.full((2,), 10.0), atol=1e-3)
    silent = torch.zeros(2, 100)
    assert torch.equal(add_noise(silent, gen(), snr_low=0, snr_high=5), silent)


def test_gain_is_within_the_range_in_db():
    wave = torch.ones(200, 10)
    out = random_gain(wave, gen(), max_db=6.0)
    db = 20 * torch.log10(out[:, 0])
    assert float(db.abs().max()) <= 6.0 + 1e-5 and float(db.std()) > 2.0  # U(-6, 6): std 3.46
    assert torch.allclose(out, out[:, :1].expand_as(out))  # one gain per example


def test_balanced_weights_and_sampler():
    y = torch.tensor([[1, 0, 0], [1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 1, 1]], dtype=torch.float)
    w = balanced_weights(y)
    expected = [1000 / 3.01] * 3 + [1000 / 2.01, 1000 / 2.01 + 1000 / 1.01]
    assert torch.allclose(w, torch.tensor(expected, dtype=torch.float64))
    draws = list(balanced_sampler(y, 5000, gen()))
    counts = torch.bincount(torch.tensor(draws), minlength=5).double() / 5000
    # draw frequencies approach w / sum(w) (binomial error < 0.007 at n = 5000)
    assert torch.allclose(counts, w / w.sum(), atol=0.03)
    with pytest.raises(ConfigError):
        balanced_sampler(torch.zeros(3, 2), 10, gen())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_batches_give_the_cpu_result():
    x = torch.randn(4, 1, 20, 8, generator=gen(9))
    y = torch.eye(4)
    for fn in (
        lambda a, g: spec_mask(a, g, freqm=4, timem=6),
        lambda a, g: time_shift(a, g, max_shift=3),
        lambda a, g: mixup(a, y.to(a.device), g)[0],
    ):
        assert torch.allclose(fn(x, gen()).cpu(), fn(x.cuda(), gen()).cpu(), atol=1e-6)
    # the waveform augmentations, (B, N): the same draws (CPU generator); the noise scale is a
    # mean over 400 samples, summed in another order on the GPU (~1e-6 relative), |x| <= ~4
    wave = torch.randn(3, 400, generator=gen(8))
    for fn in (
        lambda a, g: add_noise(a, g, snr_low=5.0, snr_high=20.0),
        lambda a, g: random_gain(a, g, max_db=6.0),
    ):
        assert torch.allclose(fn(wave, gen()).cpu(), fn(wave.cuda(), gen()).cpu(), atol=1e-5)
