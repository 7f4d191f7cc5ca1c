"""Tests of the log-mel front end: parity with the official features, shapes and properties."""

from __future__ import annotations

import math

import pytest
import torch

from axlstm.audio import FrontEndConfig, LogMelFrontEnd, log_mel
from axlstm.audio.features import hz_to_mel, mel_filterbank, mel_to_hz
from conftest import load_fixture
from tolerances import assert_log_mel_matches_fixture

SR = 16000
HOP = 160
N_MELS = 80


def _noise(*shape: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(*shape, generator=gen)


# --- parity with the official implementation ---------------------------------------------------


@pytest.mark.parametrize(
    ("wave_name", "lms_name"), [("wave.pt", "lms.pt"), ("wave_short.pt", "lms_short.pt")]
)
def test_normalized_matches_official(wave_name: str, lms_name: str) -> None:
    wave = load_fixture("official", f"wave/{wave_name}")
    expected = load_fixture("official", f"wave/{lms_name}")
    got = log_mel(wave)
    assert got.shape == expected.shape
    assert got.dtype == torch.float32
    # per-element fp32 rounding of both sides (FFT, log, and the CPU-dependent fp32 filterbank
    # corners): atol = rtol = 1e-4 was 0.58-0.93 used up under ATEN_CPU_CAPABILITY=default
    assert_log_mel_matches_fixture(got, expected, wave, normalized=True, what=lms_name)


def test_unnormalized_matches_official() -> None:
    wave = load_fixture("official", "wave/wave.pt")
    expected = load_fixture("official", "wave/lms_unnormalized.pt")  # (B, M, T)
    got = log_mel(wave, normalize=False)  # (B, 1, T, M)
    got = got.squeeze(1).transpose(1, 2)  # (B, M, T)
    assert got.shape == expected.shape
    # as in test_normalized_matches_official (the bound is per element, (B, 1, T, M) layout)
    as_bt = lambda t: t.transpose(1, 2).unsqueeze(1)  # noqa: E731
    assert_log_mel_matches_fixture(as_bt(got), as_bt(expected), wave, normalized=False)


# --- shapes ------------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [201, 202, 359, 400, 401, 1600, 16000, 16159, 16160, 59200])
def test_shapes_1d_and_batched(length: int) -> None:
    frames = 1 + length // HOP
    single = log_mel(_noise(length))
    assert single.shape == (1, 1, frames, N_MELS)
    batched = log_mel(_noise(3, length))
    assert batched.shape == (3, 1, frames, N_MELS)
    raw = log_mel(_noise(2, length), normalize=False)
    assert raw.shape == (2, 1, frames, N_MELS)
    assert torch.isfinite(batched).all() and torch.isfinite(raw).all()


@pytest.mark.parametrize("length", [0, 1, 100, 200])
def test_too_short_raises(length: int) -> None:
    with pytest.raises(ValueError, match=rf"\b{length} samples"):
        log_mel(torch.zeros(length))
    with pytest.raises(ValueError, match=rf"\b{length} samples"):
        log_mel(torch.zeros(2, length))


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="shape"):
        log_mel(torch.zeros(1, 1, 1000))
    with pytest.raises(TypeError, match="floating"):
        log_mel(torch.zeros(1000, dtype=torch.int16))
    with pytest.raises(TypeError):
        log_mel([0.0] * 1000)  # type: ignore[arg-type]


def test_batched_equals_one_by_one() -> None:
    wave = _noise(4, 8000)
    wave[1] *= 10.0  # different loudness per clip; normalisation is per clip
    wave[2, 4000:] = 0.0
    for normalize in (True, False):
        batched = log_mel(wave, normalize=normalize)
        singles = torch.cat([log_mel(w, normalize=normalize) for w in wave])
        torch.testing.assert_close(batched, singles, atol=1e-5, rtol=1e-5)


def test_normalized_statistics_per_clip() -> None:
    wave = _noise(3, 12000)
    wave[0] *= 5.0
    out = log_mel(wave).flatten(1)  # (B, T * M)
    torch.testing.assert_close(out.mean(dim=1), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.std(dim=1, unbiased=True), torch.ones(3), atol=1e-5, rtol=0)


def test_normalize_is_standardised_raw() -> None:
    wave = _noise(2, 5000)
    raw = log_mel(wave, normalize=False).flatten(1)  # (B, T * M)
    expected = (raw - raw.mean(1, keepdim=True)) / (raw.std(1, keepdim=True) + 1e-8)
    torch.testing.assert_close(log_mel(wave).flatten(1), expected, atol=1e-5, rtol=1e-5)


def test_silence_is_log_eps() -> None:
    raw = log_mel(torch.zeros(1000), normalize=False)
    torch.testing.assert_close(
        raw, torch.full_like(raw, math.log(torch.finfo(torch.float32).eps)), atol=1e-6, rtol=0
    )


def test_float64_input() -> None:
    wave = _noise(2, 4000)
    out32 = log_mel(wave)
    out64 = log_mel(wave.double())
    assert out64.dtype == torch.float64
    assert out64.shape == out32.shape
    torch.testing.assert_close(out64.float(), out32, atol=1e-3, rtol=1e-3)


def test_half_input_is_computed_in_float32() -> None:
    out = log_mel(_noise(1000).half())
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()


# --- filterbank and tones ------------------------------------------------------------------------


def test_filterbank_properties() -> None:
    fbank = mel_filterbank(201, 50.0, 8000.0, N_MELS, SR)
    assert fbank.shape == (201, N_MELS)
    assert fbank.dtype == torch.float32
    assert (fbank >= 0).all()
    assert (fbank <= 1.0 + 1e-6).all()
    assert (fbank.amax(dim=0) > 0).all(), "every filter must have a nonzero weight"
    # Centroids never decrease with the filter index (low filters are narrower than a bin).
    centres = (fbank * torch.linspace(0, SR / 2, 201).unsqueeze(1)).sum(0) / fbank.sum(0)
    assert (centres[1:] >= centres[:-1]).all()
    # No weight below f_min or above f_max.
    freqs = torch.linspace(0, SR / 2, 201)
    assert fbank[freqs < 50.0].abs().sum() == 0
    assert fbank[freqs > 8000.0].abs().sum() == 0


def test_mel_scale_round_trip() -> None:
    assert hz_to_mel(0.0) == 0.0
    assert hz_to_mel(700.0) == pytest.approx(2595.0 * math.log10(2.0))
    hz = torch.tensor([50.0, 1000.0, 8000.0], dtype=torch.float64)
    mels = torch.tensor([hz_to_mel(f) for f in hz.tolist()], dtype=torch.float64)
    torch.testing.assert_close(mel_to_hz(mels), hz)


def test_filterbank_rejects_bad_range() -> None:
    with pytest.raises(ValueError):
        mel_filterbank(201, 8000.0, 50.0, N_MELS, SR)


def test_pure_tone_peaks_in_right_band() -> None:
    t = torch.arange(SR) / SR
    tone = 0.5 * torch.sin(2 * math.pi * 1000.0 * t)
    spectrum = log_mel(tone, normalize=False)[0, 0].mean(dim=0)  # (M,)
    band = int(spectrum.argmax())
    # Corner points of the filters: band i spans corners[i]..corners[i + 2], peaks at i + 1.
    mel_points = torch.linspace(hz_to_mel(50.0), hz_to_mel(8000.0), N_MELS + 2, dtype=torch.float64)
    centres = mel_to_hz(mel_points)[1:-1]
    assert abs(float(centres[band]) - 1000.0) < 60.0, (band, float(centres[band]))
    # The 1 kHz STFT bin (index 25) falls in this filter with the largest weight.
    fbank = mel_filterbank(201, 50.0, 8000.0, N_MELS, SR)
    assert band == int(fbank[25].argmax())


# --- module and config ---------------------------------------------------------------------------


def test_front_end_module_matches_function_and_has_no_state() -> None:
    front_end = LogMelFrontEnd()
    assert front_end.state_dict() == {}
    assert {name for name, _ in front_end.named_buffers()} == {"window", "filterbank"}
    wave = _noise(2, 3000)
    torch.testing.assert_close(front_end(wave), log_mel(wave))
    torch.testing.assert_close(front_end(wave, normalize=False), log_mel(wave, normalize=False))
    raw = LogMelFrontEnd(FrontEndConfig(normalize=False))
    torch.testing.assert_close(raw(wave), log_mel(wave, normalize=False))
    assert front_end.num_frames(3000) == 1 + 3000 // HOP
    assert "n_mels=80" in repr(front_end)


def test_front_end_to_float64() -> None:
    front_end = LogMelFrontEnd().to(torch.float64)
    assert front_end.filterbank.dtype == torch.float64
    out = front_end(_noise(2, 3000).double())
    assert out.dtype == torch.float64


def test_config_round_trip_and_validation() -> None:
    cfg = FrontEndConfig(n_mels=64, f_max=7600.0, normalize=False)
    data = cfg.to_dict()
    assert data["n_mels"] == 64 and data["normalize"] is False
    assert FrontEndConfig.from_dict(data) == cfg
    assert FrontEndConfig.from_dict({}) == FrontEndConfig()
    with pytest.raises(ValueError, match="unknown"):
        FrontEndConfig.from_dict({"n_mel": 80})
    with pytest.raises(ValueError):
        FrontEndConfig(f_max=9000.0)
    with pytest.raises(ValueError):
        FrontEndConfig(win_length=512)
    out = LogMelFrontEnd(cfg)(_noise(4000))
    assert out.shape == (1, 1, 1 + 4000 // HOP, 64)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu() -> None:
    wave = load_fixture("official", "wave/wave.pt")
    expected = load_fixture("official", "wave/lms.pt")
    got = log_mel(wave.cuda())
    assert got.device.type == "cuda"
    torch.testing.assert_close(got.cpu(), log_mel(wave), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got.cpu(), expected, atol=1e-4, rtol=1e-4)
    module = LogMelFrontEnd().cuda()
    assert module.window.device.type == "cuda"
    torch.testing.assert_close(module(wave.cuda()), got)
