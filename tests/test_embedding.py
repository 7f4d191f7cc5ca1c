"""Embeddings of raw audio: official parity, any length, mixed batches, timestamps, layers."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch

import axlstm
from axlstm.audio import log_mel, resample
from axlstm.embedding import embed, front_end_config, parse_layers, parse_window, resolve_model
from conftest import fixture_dir, load_fixture
from tolerances import assert_log_mel_matches_fixture

TOL = dict(atol=1e-4, rtol=1e-4)
OFFICIAL = dict(frame_layout="official", mask_token_pos=False)
PARITY = {
    "hear_axlstm_a.pt": ("axlstm_a", "axlstm_tiny", dict(embed_dim=64, depth=2), "wave.pt"),
    "hear_axlstm_a_short.pt": (
        "axlstm_a",
        "axlstm_tiny",
        dict(embed_dim=64, depth=2),
        "wave_short.pt",
    ),
    "hear_ssast_c.pt": (
        "ssast_c",
        "ssast_tiny",
        dict(embed_dim=64, depth=2, num_heads=4),
        "wave.pt",
    ),
}


def noise(n: int, seed: int = 0, channels: int | None = None) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    shape = (n,) if channels is None else (channels, n)
    return 0.3 * torch.randn(shape, generator=g)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return axlstm.create_model("test_axlstm").eval()


@pytest.fixture(scope="module")
def tiny_ssast():
    torch.manual_seed(0)
    return axlstm.create_model("test_ssast").eval()


# ------------------------------------------------------------------------------- official parity
@pytest.mark.parametrize("ref_name", list(PARITY))
def test_official_layout_reproduces_the_official_runtime(ref_name):
    name, arch, kw, wave_name = PARITY[ref_name]
    path = fixture_dir("official") / name / "state_dict.pth"
    model = axlstm.load_official(path, arch, **kw, **OFFICIAL)
    ref = load_fixture("official", f"wave/{ref_name}")
    out = embed(model, load_fixture("official", f"wave/{wave_name}"))
    assert out.frame_layout == "official"
    torch.testing.assert_close(out.frames, ref["timestamp_embeddings"], **TOL)
    torch.testing.assert_close(out.scene, ref["scene_embeddings"], **TOL)
    torch.testing.assert_close(out.timestamps, ref["timestamps"], **TOL)


def test_official_front_end_matches_fixture():
    """The spectrogram the windows are cut from is the official one (lms.pt)."""
    lms, wave = load_fixture("official", "wave/lms.pt"), load_fixture("official", "wave/wave.pt")
    # per-element fp32 rounding, see test_audio_features.test_normalized_matches_official
    assert_log_mel_matches_fixture(log_mel(wave), lms, wave, normalized=True)


def test_windows_equal_a_hand_made_chunked_forward(tiny):
    """Default mode == pad, 200-frame windows through forward_features, concat, keep."""
    wave = noise(59200)  # 3.7 s: T = 371 mel frames, two windows
    out = embed(tiny, wave)
    spec = log_mel(wave)  # (1, 1, 371, 80)
    spec = torch.nn.functional.pad(spec, (0, 0, 0, 400 - 371))
    with torch.no_grad():
        ref = torch.cat([tiny.forward_features(spec[:, :, s : s + 200]) for s in (0, 200)], 1)
    n = out.num_frames.item()
    assert n == 93  # centres 15 .. 3695 ms lie inside the 3700 ms clip
    torch.testing.assert_close(out.frames[0], ref[0, :n])
    torch.testing.assert_close(out.scene[0], ref[0, :n].mean(0))


# ------------------------------------------------------------------------- frames and timestamps
@pytest.mark.parametrize(
    "n", [201, 239, 240, 400, 1000, 16000, 17120, 31680, 32000, 32160, 43840, 64000, 64001, 80000]
)
def test_timestamps_are_frame_centres_inside_the_clip(tiny, n):
    out = embed(tiny, noise(n))
    ts = out.timestamps[0].double()
    k = int(out.num_frames[0])
    duration_ms = 1000 * n / 16000
    T = 1 + n // 160
    # every kept frame has its centre (40 t + 15 ms) inside the clip, the next one would not
    expected = max(1, min(math.ceil(T / 4), math.floor((duration_ms - 15) / 40) + 1))
    assert k == expected == ts.shape[0]
    centres = 40 * torch.arange(k, dtype=torch.float64) + 15
    torch.testing.assert_close(ts, centres.clamp(max=duration_ms))
    assert ts.max() <= duration_ms
    if k > 1:
        assert torch.all(ts.diff() == 40)


def test_official_timestamps_and_frame_count(tiny):
    for n in (16000, 32000, 59200, 64000):
        out = embed(tiny, noise(n), frame_layout="official")
        T = 1 + n // 160
        k = math.ceil(T / 4)  # what the official int(50 * pad / 200) trim leaves
        assert out.frames.shape[1] == k
        step = 1000 * n / 16000 / k
        torch.testing.assert_close(
            out.timestamps[0], (torch.arange(k) * step).float(), atol=1e-3, rtol=0
        )


def test_exactly_two_seconds_and_exact_window_multiples(tiny):
    """T % 200 == 0 adds no extra all-zero window; 2 s (T = 201) spills one frame over."""
    for n, windows in ((31840, 1), (32000, 2), (63840, 2)):
        T = 1 + n // 160
        assert math.ceil(T / 200) == windows
        out = embed(tiny, noise(n))
        assert out.frames.shape[1] == math.floor((1000 * n / 16000 - 15) / 40) + 1


def test_long_audio_in_windows_and_in_one_pass(tiny, tiny_ssast):
    wave = noise(16000 * 60, seed=3)  # one minute: 30 windows
    out = embed(tiny, wave, batch_size=8)
    assert out.frames.shape == (1, 1500, tiny.frame_dim)
    assert torch.isfinite(out.frames).all()
    # the batch size only changes how windows are grouped, not the result
    again = embed(tiny, wave, batch_size=30)
    torch.testing.assert_close(again.frames, out.frames, atol=1e-5, rtol=1e-5)
    whole = embed(tiny_ssast, wave[: 16000 * 20], window=None)
    assert whole.frames.shape == (1, 500, tiny_ssast.frame_dim)


def test_one_pass_equals_forward_features(tiny):
    wave = noise(25000)  # T = 157, padded to 160 frames
    out = embed(tiny, wave, window="none")
    spec = torch.nn.functional.pad(log_mel(wave), (0, 0, 0, 3))
    with torch.no_grad():
        ref = tiny.forward_features(spec)
    k = int(out.num_frames[0])
    torch.testing.assert_close(out.frames[0], ref[0, :k])


def test_the_models_own_front_end_sets_rate_and_timestamps():
    """A model whose front end hops 20 ms has 80 ms frames centred at 80 t + 30 ms."""
    model = axlstm.create_model("test_axlstm", front_end={"hop_length": 320}).eval()
    out = embed(model, noise(32000))
    spec = model.front_end_config
    assert spec.hop_length == 320
    T = 1 + 32000 // 320
    assert out.frames.shape[1] == min(math.ceil(T / 4), math.floor((2000 - 30) / 80) + 1) == 25
    torch.testing.assert_close(out.timestamps[0], 30.0 + 80.0 * torch.arange(25).float())


def test_models_without_a_front_end_are_refused():
    class NoFrontEnd(torch.nn.Module):
        front_end_config = "kaldi_fbank"  # a name, not a FrontEndSpec

    for model in (NoFrontEnd(), torch.nn.Linear(2, 2)):
        with pytest.raises(ValueError, match="declares no front end"):
            front_end_config(model)
    for name in ("test_axlstm", "test_ssast_orig"):
        model = axlstm.create_model(name)
        assert front_end_config(model) is not None and isinstance(model, axlstm.Encoder)


# ------------------------------------------------------------------------------- mixed lengths
@pytest.mark.parametrize("window", ["official", None, 100])
@pytest.mark.parametrize("family", ["axlstm", "ssast"])
def test_mixed_length_batch_equals_one_by_one(tiny, tiny_ssast, window, family):
    model = tiny if family == "axlstm" else tiny_ssast
    lengths = [201, 8000, 32000, 59200, 8000, 40000]
    clips = [noise(n, seed=i) for i, n in enumerate(lengths)]
    batch = embed(model, clips, window=window, batch_size=4)
    for i, clip in enumerate(clips):
        alone = embed(model, clip, window=window)
        k = int(alone.num_frames[0])
        assert int(batch.num_frames[i]) == k
        torch.testing.assert_close(batch.scene[i], alone.scene[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(batch.frames[i, :k], alone.frames[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(batch.timestamps[i, :k], alone.timestamps[0])
        # padding past the clip is inert: zero frames, NaN timestamps, outside the mask
        assert torch.all(batch.frames[i, k:] == 0)
        assert torch.isnan(batch.timestamps[i, k:]).all()
        assert batch.mask[i].sum() == k
        frames, ts = batch.clip(i)
        assert frames.shape[0] == ts.shape[0] == k
        torch.testing.assert_close(batch.scene[i], frames.mean(0))


@pytest.mark.parametrize("level", [0.0, 0.3])  # digital silence, a DC offset
def test_constant_clips_embed_the_same_in_any_batch(tiny, level):
    """Their log-mel is constant up to rounding: standardised to zeros, never to noise."""
    clip = torch.full((32000,), level)
    alone = embed(tiny, clip)
    others = [noise(8000, seed=1), clip, noise(48000, seed=2), torch.full((16000,), 0.5)]
    mixed = embed(tiny, others, batch_size=3)
    torch.testing.assert_close(mixed.scene[1], alone.scene[0], atol=0, rtol=0)
    feats = log_mel(torch.stack([clip, noise(32000, seed=3)]))
    assert torch.all(feats[0] == 0) and feats[1].std() > 0.5


def test_standardisation_of_normal_clips_is_the_official_formula():
    wave = noise(16000, seed=4) * 1e-4  # quiet (-80 dBFS) but not constant
    raw = log_mel(wave, normalize=False).double()
    expected = (raw - raw.mean()) / (raw.std() + 1e-8)
    # float32 mean and std of 8080 values near -15 agree with float64 to ~1e-6 relative; the
    # standardised values are below 10 in magnitude, so 1e-5 bounds the difference
    torch.testing.assert_close(log_mel(wave).double(), expected, atol=1e-5, rtol=0)


def test_padded_batch_with_lengths_ignores_the_padding(tiny):
    clips = [noise(12000, 1), noise(40000, 2), noise(20000, 3)]
    padded = torch.zeros(3, 40000)
    for i, c in enumerate(clips):
        padded[i, : c.shape[0]] = c
        padded[i, c.shape[0] :] = 5.0  # junk past each clip must not matter
    a = embed(tiny, padded, lengths=torch.tensor([12000, 40000, 20000]))
    b = embed(tiny, clips)
    torch.testing.assert_close(a.scene, b.scene)
    torch.testing.assert_close(a.frames, b.frames)


# ---------------------------------------------------------------------------- any rate, channels
def test_any_rate_and_channel_count(tiny):
    stereo = noise(44100 * 2, seed=5, channels=2)  # (C, N) at 44.1 kHz
    out = axlstm.embed(tiny, stereo[None], sample_rate=44100)  # (1, C, N)
    mono16 = resample(stereo.mean(0), 44100, 16000)
    ref = embed(tiny, mono16)
    torch.testing.assert_close(out.scene, ref.scene)
    torch.testing.assert_close(out.frames, ref.frames)
    assert out.duration[0] == 2.0
    # a list element may be (C, N); numpy works as well
    listed = axlstm.embed(tiny, [stereo.numpy()], sample_rate=44100)
    torch.testing.assert_close(listed.scene, out.scene)
    # 8 kHz: timestamps follow the true duration
    low = axlstm.embed(tiny, noise(8000 * 3), sample_rate=8000)
    assert low.timestamps[0].max() <= 3000 and low.duration[0] == 3.0


def test_model_embed_delegates_and_restores_train_mode(tiny):
    tiny.train()
    try:
        out = axlstm.embed(tiny, noise(16000))
        assert tiny.training
    finally:
        tiny.eval()
    torch.testing.assert_close(out.scene, embed(tiny, noise(16000)).scene)
    assert out.scene.dtype == torch.float32 and out.frames.dtype == torch.float32


# -------------------------------------------------------------------------------------- layers
def test_layer_choice(tiny):
    wave = noise(20000)
    spec = torch.nn.functional.pad(log_mel(wave), (0, 0, 0, 200 - 126))
    with torch.no_grad():
        _, hidden = tiny.encode(spec, return_hidden=True)
    block0 = tiny.tokens_to_frames(hidden[0][:, 1:])
    out0 = embed(tiny, wave, layer=0)
    k = int(out0.num_frames[0])
    torch.testing.assert_close(out0.frames[0], block0[0, :k])
    assert out0.layers == ["block0"]

    last = embed(tiny, wave)
    every = embed(tiny, wave, layer="all")
    assert every.layers == ["block0", "block1", "final"]
    assert every.frames.shape == (1, k, 3, tiny.frame_dim)
    assert every.scene.shape == (1, 3, tiny.frame_dim)
    torch.testing.assert_close(every.frames[:, :, 0], out0.frames)
    torch.testing.assert_close(every.frames[:, :, 2], last.frames)
    torch.testing.assert_close(every.scene[:, 2], last.scene)
    pair = embed(tiny, wave, layer="-1,last")
    assert pair.layers == ["block1", "final"]
    torch.testing.assert_close(pair.scene[:, 0], every.scene[:, 1])


def test_option_parsing():
    assert parse_window("official") == 200 and parse_window(None) is None
    assert parse_window("none") is None and parse_window(400) == 400
    with pytest.raises(ValueError, match="multiple of 4"):
        parse_window(201)
    with pytest.raises(ValueError, match="unknown window"):
        parse_window("sliding")
    assert parse_layers(None, 4) == ([None], True)
    assert parse_layers("last", 4) == ([None], True)
    assert parse_layers(-1, 4) == ([3], True)
    assert parse_layers("block2", 4) == ([2], True)
    assert parse_layers("all", 2) == ([0, 1, None], False)
    assert parse_layers([0, "final"], 2) == ([0, None], False)
    with pytest.raises(ValueError, match="out of range"):
        parse_layers(5, 4)
    with pytest.raises(ValueError, match="unknown layer"):
        parse_layers("middle", 4)


# -------------------------------------------------------------------------------------- errors
def test_clear_errors_name_the_clip(tiny):
    with pytest.raises(ValueError, match=r"clip 1: too short: 200 samples"):
        embed(tiny, [noise(16000), noise(200)])
    with pytest.raises(ValueError, match=r"clip 0: the clip is empty"):
        embed(tiny, [torch.zeros(0)])
    with pytest.raises(ValueError, match=r"song\.wav: too short"):
        embed(tiny, noise(100), names=["song.wav"])
    with pytest.raises(ValueError, match=r"too short.*at 44100 Hz"):
        embed(tiny, noise(500), sample_rate=44100)
    bad = noise(8000)
    bad[10] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        embed(tiny, bad)
    with pytest.raises(TypeError, match="int16"):
        embed(tiny, np.zeros(8000, dtype=np.int16))
    with pytest.raises(ValueError, match="shape"):
        embed(tiny, torch.zeros(1, 1, 1, 8000))
    with pytest.raises(ValueError, match="unknown precision"):
        embed(tiny, noise(8000), precision="int8")


def test_half_precision_is_cuda_only(tiny, caplog):
    wave = noise(16000)
    with caplog.at_level(logging.WARNING, logger="axlstm.embedding.extract"):
        out = embed(tiny, wave, precision="bf16")
    torch.testing.assert_close(out.scene, embed(tiny, wave).scene)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_follows_the_model_to_cuda():
    model = axlstm.create_model("test_axlstm").eval()
    wave = noise(40000)
    cpu = embed(model, wave)
    model.cuda()
    gpu = embed(model, wave)
    assert gpu.scene.device.type == "cuda"
    torch.testing.assert_close(gpu.scene.cpu(), cpu.scene, atol=1e-4, rtol=1e-4)
    half = embed(model, wave, precision="fp16")
    assert half.scene.dtype == torch.float32
    torch.testing.assert_close(half.scene.cpu(), cpu.scene, atol=5e-2, rtol=5e-2)


# ------------------------------------------------------------------------------- model naming
def test_resolve_model_names(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        preset = resolve_model("test_ssast", frame_layout="official")
    assert "random weights" in caplog.text
    assert preset.config.frame_layout == "official" and not preset.training
    release = tmp_path / "rel"
    preset.save_pretrained(release)
    for spec in (release, release / "config.json", str(release / "model.safetensors")):
        loaded = resolve_model(spec)
        for key, value in preset.state_dict().items():
            torch.testing.assert_close(loaded.state_dict()[key], value)
    assert resolve_model(release, frame_layout="time").config.frame_layout == "time"
    ckpt = fixture_dir("official") / "axlstm_a" / "state_dict.pth"
    official = resolve_model(ckpt, arch="axlstm_tiny", embed_dim=64, depth=2)
    assert official.config.embed_dim == 64
    with pytest.raises(ValueError, match="axlstm convert"):
        resolve_model(ckpt)
    with pytest.raises(ValueError, match="did you mean test_axlstm"):
        resolve_model("test_axlstn")
    with pytest.raises(ValueError, match="no model given"):
        resolve_model("")
    with pytest.raises(ValueError, match="not a release"):
        resolve_model(tmp_path)
