"""Tests of audio loading and resampling, on files generated in tmp_path."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from axlstm.audio import AUDIO_EXTENSIONS, AudioLoadError, load_audio, resample
from axlstm.audio.io import to_mono

TARGET_SR = 16000
RATES = [8000, 16000, 22050, 44100, 48000]

# name -> (extension, soundfile format, subtype, lossless)
FORMATS: dict[str, tuple[str, str, str, bool]] = {
    "wav_pcm16": (".wav", "WAV", "PCM_16", True),
    "wav_pcm24": (".wav", "WAV", "PCM_24", True),
    "wav_pcm32": (".wav", "WAV", "PCM_32", True),
    "wav_u8": (".wav", "WAV", "PCM_U8", True),
    "wav_float": (".wav", "WAV", "FLOAT", True),
    "flac": (".flac", "FLAC", "PCM_16", True),
    "ogg_vorbis": (".ogg", "OGG", "VORBIS", False),
    "mp3": (".mp3", "MP3", "MPEG_LAYER_III", False),
}

# Amplitude error allowed after a round trip through each format (the u8 step is 1/128).
PEAK_TOL = {"wav_u8": 1e-2, "ogg_vorbis": 5e-2, "mp3": 5e-2}


def _can_write(fmt: str, subtype: str) -> bool:
    return fmt in sf.available_formats() and subtype in sf.available_subtypes(fmt)


def _sine(freq: float, sr: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(round(sr * seconds)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _write(path: Path, data: np.ndarray, sr: int, fmt: str, subtype: str) -> Path:
    """Writes ``data`` (frames, channels) or (frames,), skipping formats this build lacks."""
    if not _can_write(fmt, subtype):
        pytest.skip(f"this libsndfile ({sf.__libsndfile_version__}) cannot write {fmt}/{subtype}")
    sf.write(path, data, sr, format=fmt, subtype=subtype)
    return path


def _expected_length(frames: int, sr: int) -> int:
    return round(frames * TARGET_SR / sr)


# --- formats, rates, channels --------------------------------------------------------------------


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("name", list(FORMATS))
def test_formats_and_rates(tmp_path: Path, name: str, rate: int) -> None:
    ext, fmt, subtype, lossless = FORMATS[name]
    channels = 1 if name == "mp3" else 2
    mono = _sine(440.0, rate, 0.25)
    data = np.stack([mono] * channels, axis=1)  # (N, C)
    path = _write(tmp_path / f"tone_{rate}{ext}", data, rate, fmt, subtype)

    wave = load_audio(path)
    assert isinstance(wave, torch.Tensor)
    assert wave.dtype == torch.float32 and wave.ndim == 1
    expected = _expected_length(len(mono), rate)
    if lossless:
        assert abs(wave.numel() - expected) <= 1
    else:
        # Lossy codecs may add or drop a little padding.
        assert abs(wave.numel() - expected) <= 0.05 * expected + 1200
    # Skip the edges (filter and codec transients), then check the amplitude.
    core = wave[wave.numel() // 5 : -wave.numel() // 5]
    peak = float(core.abs().max())
    assert peak == pytest.approx(0.5, abs=PEAK_TOL.get(name, 2e-3))


@pytest.mark.parametrize("channels", [1, 2, 6])
@pytest.mark.parametrize("name", ["wav_pcm16", "wav_float", "flac", "ogg_vorbis"])
def test_channels_are_averaged(tmp_path: Path, name: str, channels: int) -> None:
    ext, fmt, subtype, _ = FORMATS[name]
    sr = 22050
    base = _sine(300.0, sr, 0.25, amp=0.6)
    # Per-channel gains average to 0.5, so the mono mix is a 0.3-amplitude sine.
    gains = np.linspace(0.0, 1.0, channels) if channels > 1 else np.array([0.5])
    data = base[:, None] * gains[None, :].astype(np.float32)  # (N, C)
    path = _write(tmp_path / f"multi{ext}", data, sr, fmt, subtype)
    wave = load_audio(path)
    assert wave.ndim == 1
    assert abs(wave.numel() - _expected_length(len(base), sr)) <= (
        1 if name != "ogg_vorbis" else 1200
    )
    core = wave[wave.numel() // 5 : -wave.numel() // 5]
    tol = 5e-2 if name == "ogg_vorbis" else 2e-3
    assert float(core.abs().max()) == pytest.approx(0.3, abs=tol)


@pytest.mark.parametrize("name", ["wav_pcm16", "wav_float", "flac"])
def test_opposite_stereo_cancels(tmp_path: Path, name: str) -> None:
    ext, fmt, subtype, _ = FORMATS[name]
    x = _sine(500.0, 16000, 0.25)
    path = _write(tmp_path / f"anti{ext}", np.stack([x, -x], axis=1), 16000, fmt, subtype)
    wave = load_audio(path)
    assert wave.numel() == len(x)
    # x and -x may round to integers one step apart: allow half a 16-bit step.
    assert float(wave.abs().max()) <= (1e-6 if subtype == "FLOAT" else 0.5 / 32768 + 1e-9)


def test_int16_scaling_is_exact(tmp_path: Path) -> None:
    ints = np.array([-32768, -16384, 0, 16384, 32767], dtype=np.int16)
    path = tmp_path / "ints.wav"
    sf.write(path, ints, TARGET_SR, subtype="PCM_16")
    wave = load_audio(path)
    torch.testing.assert_close(wave, torch.from_numpy(ints.astype(np.float32) / 32768.0))


def test_u8_scaling(tmp_path: Path) -> None:
    path = tmp_path / "u8.wav"
    sf.write(path, np.array([-1.0, -0.5, 0.0, 0.5], dtype=np.float32), TARGET_SR, subtype="PCM_U8")
    wave = load_audio(path)
    torch.testing.assert_close(wave, torch.tensor([-1.0, -0.5, 0.0, 0.5]))


def test_int16_round_trip_peak(tmp_path: Path) -> None:
    path = tmp_path / "half.wav"
    sf.write(path, _sine(440.0, TARGET_SR, 0.5), TARGET_SR, subtype="PCM_16")
    wave = load_audio(path)
    assert wave.numel() == TARGET_SR // 2
    assert float(wave.abs().max()) == pytest.approx(0.5, abs=1e-3)
    assert float(wave.abs().max()) <= 1.0


def test_resampled_tone_keeps_its_frequency(tmp_path: Path) -> None:
    path = tmp_path / "tone44k.wav"
    sf.write(path, _sine(1000.0, 44100, 1.0), 44100, subtype="PCM_16")
    wave = load_audio(path)
    assert wave.numel() == TARGET_SR
    spectrum = np.abs(np.fft.rfft(wave.numpy() * np.hanning(wave.numel())))
    freqs = np.fft.rfftfreq(wave.numel(), 1 / TARGET_SR)
    assert abs(freqs[spectrum.argmax()] - 1000.0) <= 1.0


def test_other_target_rate(tmp_path: Path) -> None:
    path = tmp_path / "tone.flac"
    sf.write(path, _sine(440.0, 48000, 0.5), 48000)
    wave = load_audio(path, sample_rate=8000)
    assert wave.numel() == 4000
    with pytest.raises(ValueError):
        load_audio(path, sample_rate=0)


@pytest.mark.parametrize("ext", AUDIO_EXTENSIONS)
def test_every_scanned_extension_loads(tmp_path: Path, ext: str) -> None:
    formats = {
        ".ogg": ("OGG", "VORBIS"),
        ".opus": ("OGG", "OPUS"),
        ".mp3": ("MP3", "MPEG_LAYER_III"),
        ".aif": ("AIFF", "PCM_16"),
        ".aiff": ("AIFF", "PCM_16"),
        ".w64": ("W64", "PCM_16"),
        ".caf": ("CAF", "PCM_16"),
        ".au": ("AU", "PCM_16"),
        ".wav": ("WAV", "PCM_16"),
        ".flac": ("FLAC", "PCM_16"),
    }
    fmt, subtype = formats[ext]
    path = _write(tmp_path / f"tone{ext}", _sine(440.0, 48000, 0.25), 48000, fmt, subtype)
    wave = load_audio(path)
    assert wave.dtype == torch.float32
    assert abs(wave.numel() - 4000) <= 1200
    assert 0.4 < float(wave.abs().max()) < 0.6


def test_extensions_constant() -> None:
    assert len(set(AUDIO_EXTENSIONS)) == len(AUDIO_EXTENSIONS) == 10
    assert all(e.startswith(".") and e == e.lower() for e in AUDIO_EXTENSIONS)


# --- bad files ---------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.wav"
    with pytest.raises(FileNotFoundError, match=r"nope\.wav") as info:
        load_audio(path)
    assert str(path) in str(info.value)


def test_directory(tmp_path: Path) -> None:
    path = tmp_path / "folder.wav"
    path.mkdir()
    with pytest.raises(AudioLoadError, match="folder") as info:
        load_audio(path)
    assert str(path) in str(info.value)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    path.touch()
    with pytest.raises(AudioLoadError, match=r"empty \(0 bytes\)") as info:
        load_audio(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("name", ["notes.wav", "noise.flac", "junk.mp3"])
def test_not_audio(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    if name.endswith(".wav"):
        path.write_text("this is a text file, not audio\n" * 20)
    else:
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(AudioLoadError) as info:
        load_audio(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_truncated_flac(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "cut.flac"
    sf.write(path, (0.3 * rng.standard_normal(48000)).astype(np.float32), 48000)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(AudioLoadError, match="decoding failed") as info:
        load_audio(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("fmt", ["WAV", "AIFF", "AU", "W64", "RF64"])
def test_truncated_file_is_an_error_or_by_option_its_readable_part(
    tmp_path: Path, fmt: str, caplog
) -> None:
    path = tmp_path / f"cut.{fmt.lower()}"
    sf.write(path, _sine(440.0, TARGET_SR, 1.0), TARGET_SR, format=fmt, subtype="PCM_16")
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 4])  # the header still declares 16000 frames
    with pytest.raises(AudioLoadError, match="truncated") as info:
        load_audio(path)
    assert str(path) in str(info.value)
    wave = load_audio(path, allow_truncated=True)
    assert 0 < wave.numel() < 16000 // 4
    assert "truncated" in caplog.text


def test_truncated_flac_by_option_keeps_the_decodable_part(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "cut.flac"
    sf.write(path, (0.3 * rng.standard_normal(48000)).astype(np.float32), 16000)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    wave = load_audio(path, allow_truncated=True)
    assert 0 < wave.numel() < 48000


@pytest.mark.parametrize(
    ("subtype", "ext", "rate"), [("VORBIS", "ogg", 16000), ("OPUS", "opus", 48000)]
)
@pytest.mark.parametrize("keep", [0.6, 0.95])
def test_truncated_ogg_is_an_error(tmp_path: Path, subtype, ext, rate, keep) -> None:
    """An Ogg file has no length in a header: it is complete when its last page ends the file
    with the end-of-stream flag."""
    path = tmp_path / f"x.{ext}"
    sf.write(path, _sine(440.0, rate, 1.0), rate, format="OGG", subtype=subtype)
    assert load_audio(path).numel() == TARGET_SR  # complete: loads
    raw = path.read_bytes()
    path.write_bytes(raw[: int(len(raw) * keep)])
    # cut early, libsndfile may refuse to open it at all; either way: an error naming the file
    with pytest.raises(AudioLoadError, match=r"truncated file: the Ogg stream stops|malformed"):
        load_audio(path)


def test_garbage_after_a_complete_wav_is_not_truncation(tmp_path: Path) -> None:
    path = tmp_path / "tail.wav"
    sf.write(path, _sine(440.0, TARGET_SR, 0.5), TARGET_SR, subtype="PCM_16")
    path.write_bytes(path.read_bytes() + b"JUNK" * 100)
    assert load_audio(path).numel() == 8000


@pytest.mark.parametrize("rate", [1, 2, 999])
def test_absurd_sample_rate_is_refused_before_resampling(tmp_path: Path, rate: int) -> None:
    path = tmp_path / f"rate{rate}.wav"
    sf.write(path, np.zeros(100, dtype=np.float32), rate, subtype="PCM_16")
    with pytest.raises(AudioLoadError, match=f"sample rate of {rate} Hz") as info:
        load_audio(path)
    assert str(path) in str(info.value)


def test_too_long_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "long.wav"
    sf.write(path, np.zeros(8000, dtype=np.float32), 8000, subtype="PCM_16")
    with pytest.raises(AudioLoadError, match="too long") as info:
        load_audio(path, 16000, max_samples=10000)  # 8000 frames -> 16000 samples at 16 kHz
    assert str(path) in str(info.value)
    assert load_audio(path, 16000, max_samples=None).numel() == 16000


def test_multichannel_is_averaged_block_by_block(tmp_path: Path, monkeypatch) -> None:
    import axlstm.audio.io as io

    monkeypatch.setattr(io, "_BLOCK_VALUES", 1000)  # many blocks for a short file
    rng = np.random.default_rng(1)
    data = (0.3 * rng.standard_normal((5000, 3))).astype(np.float32)
    path = tmp_path / "three.wav"
    sf.write(path, data, TARGET_SR, subtype="FLOAT")
    expected = data.mean(axis=1, dtype=np.float32)
    np.testing.assert_array_equal(load_audio(path).numpy(), expected)


@pytest.mark.timeout(20)
@pytest.mark.parametrize("kind", ["fifo", "loop", "broken", "device"])
def test_special_files_are_refused_by_name_without_reading(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "x.wav"
    if kind == "fifo":
        os.mkfifo(path)  # opening it for reading would block forever
        expected = "named pipe"
    elif kind == "loop":
        os.symlink(tmp_path / "y.wav", path)
        os.symlink(path, tmp_path / "y.wav")
        expected = "symbolic link loop"
    elif kind == "broken":
        os.symlink(tmp_path / "gone.wav", path)
        expected = "broken symbolic link"
    else:
        os.symlink("/dev/null", path)
        expected = "character device"
    with pytest.raises(AudioLoadError, match=expected) as info:
        load_audio(path)
    assert str(path) in str(info.value)


def test_zero_frames(tmp_path: Path) -> None:
    path = tmp_path / "silent.wav"
    sf.write(path, np.zeros((0, 1), dtype=np.float32), TARGET_SR)
    with pytest.raises(AudioLoadError, match="no samples") as info:
        load_audio(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_samples(tmp_path: Path, bad: float) -> None:
    data = _sine(440.0, TARGET_SR, 0.1)
    data[100] = bad
    path = tmp_path / "nan.wav"
    sf.write(path, data, TARGET_SR, subtype="FLOAT")
    with pytest.raises(AudioLoadError, match="non-finite") as info:
        load_audio(path)
    assert str(path) in str(info.value)


def test_float_beyond_unit_range_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "loud.wav"
    sf.write(path, np.array([0.0, 1.5, -2.0, 0.25], dtype=np.float32), TARGET_SR, subtype="FLOAT")
    wave = load_audio(path)
    torch.testing.assert_close(wave, torch.tensor([0.0, 1.5, -2.0, 0.25]))


# --- resample / to_mono ------------------------------------------------------------------------


def test_resample_numpy_and_torch() -> None:
    x = _sine(440.0, 44100, 0.5)  # (N,)
    y = resample(x, 44100, 16000)
    assert isinstance(y, np.ndarray) and y.dtype == np.float32
    assert y.shape == (round(len(x) * 16000 / 44100),)

    stereo = np.stack([x, 0.5 * x])  # (C, N)
    ys = resample(stereo, 44100, 16000)
    assert ys.shape == (2, y.shape[0])
    np.testing.assert_allclose(ys[0], y, atol=1e-6)
    np.testing.assert_allclose(ys[1], 0.5 * y, atol=1e-6)

    t = torch.from_numpy(stereo).double()
    yt = resample(t, 44100, 16000)
    assert isinstance(yt, torch.Tensor) and yt.dtype == torch.float64
    assert yt.shape == (2, y.shape[0])
    np.testing.assert_allclose(yt[0].numpy(), y, atol=1e-5)


def test_resample_same_rate_and_errors() -> None:
    x = torch.randn(100)
    assert resample(x, 16000, 16000) is x
    assert resample(np.zeros(0, np.float32), 8000, 16000).shape == (0,)
    with pytest.raises(ValueError):
        resample(x, 0, 16000)
    with pytest.raises(ValueError):
        resample(x, 16000, -1)
    with pytest.raises(ValueError):
        resample(torch.zeros(1, 2, 3), 8000, 16000)
    with pytest.raises(TypeError):
        resample([0.0, 1.0], 8000, 16000)  # type: ignore[arg-type]


def test_to_mono() -> None:
    x = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32)  # (C, N)
    np.testing.assert_allclose(to_mono(x), [2.0, 3.0])
    torch.testing.assert_close(to_mono(torch.from_numpy(x)), torch.tensor([2.0, 3.0]))
    mono = torch.ones(5)
    assert to_mono(mono) is mono
    with pytest.raises(ValueError):
        to_mono(np.zeros((1, 2, 3)))
