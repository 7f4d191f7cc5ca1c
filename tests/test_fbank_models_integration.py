"""The original SSAST and SSAMBA (Kaldi fbank front end) through everything else: embeddings
and ``axlstm embed``, the pretraining data path, ``axlstm pretrain`` with the joint recipe and
its official optimiser and schedule, exact resume, export."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F

import axlstm
from axlstm.audio import KaldiFbankConfig, KaldiFbankFrontEnd
from axlstm.cli.main import main
from axlstm.data import ClipProcessor, make_processor
from axlstm.data.config import DataConfig
from axlstm.embedding import embed, model_window, official_window
from axlstm.engine import export_release, load_checkpoint
from axlstm.engine.metrics import read_records
from axlstm.recipes import load_config, pretrain
from conftest import fixture_dir, load_fixture

FBANK = ["test_ssast_orig", "test_ssamba"]
CLOSE = dict(atol=1e-5, rtol=1e-5)


def noise(n: int, seed: int = 0) -> torch.Tensor:
    return 0.3 * torch.randn(n, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def models():
    out = {}
    for name in FBANK:
        torch.manual_seed(0)
        out[name] = axlstm.create_model(name).eval()
    return out


def fbank(model, wave: torch.Tensor) -> torch.Tensor:
    """The normalised fbank (1, 1, T, 128) of a whole clip, as the embedding path sees it."""
    cfg = dataclasses.replace(model.front_end_config, target_length=None)
    return KaldiFbankFrontEnd(cfg)(wave)


def expected_frames(n: int, patch: int = 16, stride: int = 16) -> int:
    """Frames kept for a clip of n samples: centres 12.5 + 10 (s t + (p - 1) / 2) ms inside."""
    T = 1 + (n - 400) // 160
    centre = 12.5 + 10 * (patch - 1) / 2
    inside = math.floor((1000 * n / 16000 - centre) / (10 * stride)) + 1
    return max(1, min(math.ceil(T / stride), inside))


# ------------------------------------------------------------------------------- embeddings
def test_official_window_is_the_training_length():
    with torch.device("meta"):
        released = axlstm.create_model("ssast_orig_tiny_patch")
        axlstm_tiny = axlstm.create_model("axlstm_tiny")
    assert official_window(released) == model_window(released, "official") == 1024
    assert official_window(axlstm_tiny) == 200  # the official AxLSTM HEAR runtime
    assert model_window(released, "none") is None and model_window(released, 512) == 512


@pytest.mark.parametrize("name", FBANK)
def test_windows_equal_a_hand_made_forward(models, name):
    """Default mode == whole-clip fbank, official zero-row padding, 128-frame windows through
    forward_features, concatenated, cut to the frames whose centre lies in the clip."""
    model = models[name]
    wave = noise(48000)  # 3 s: T = 298 fbank frames, three windows of 128
    out = embed(model, wave)
    spec = fbank(model, wave)
    assert spec.shape == (1, 1, 298, 128)
    padded = F.pad(spec, (0, 0, 0, 384 - 298), value=model.front_end_config.pad_value)
    # the padding is the official loader's: zero log-mel rows, normalised (+0.467)
    cfg = dataclasses.replace(model.front_end_config, target_length=384)
    torch.testing.assert_close(padded, KaldiFbankFrontEnd(cfg)(wave))
    with torch.no_grad():
        ref = torch.cat(
            [model.forward_features(padded[:, :, s : s + 128]) for s in (0, 128, 256)], 1
        )
    k = int(out.num_frames[0])
    assert k == expected_frames(48000) == 19  # centres 87.5 ... 2967.5 ms
    assert out.frames.shape == (1, 19, model.frame_dim) and model.frame_dim == 8 * 64
    torch.testing.assert_close(out.frames[0], ref[0, :k], **CLOSE)
    torch.testing.assert_close(out.scene[0], ref[0, :k].mean(0), **CLOSE)
    torch.testing.assert_close(out.timestamps[0], 87.5 + 160 * torch.arange(19.0))


def test_embeddings_start_from_the_official_fbank():
    """An official checkpoint embeds the official features: the fixture wave's fbank as the
    official AudioDataset computes it (wave/fbank.pt), windowed at the training length."""
    path = fixture_dir("ssast") / "patch" / "state_dict.pth"
    model = axlstm.load_official(
        path, "ssast_orig_tiny_patch", embed_dim=64, depth=2, num_heads=4, mask_patch=50
    )
    wave = load_fixture("ssast", "wave/wave.pt")  # (1, 48000)
    ref_fbank = load_fixture("ssast", "wave/fbank.pt")["fbank_kaldi"]  # (298, 128), raw
    spec = (F.pad(ref_fbank, (0, 0, 0, 384 - 298)) + 4.2677393) / (4.5689974 * 2)
    with torch.no_grad():
        ref = torch.cat(
            [model.forward_features(spec[None, None, s : s + 128]) for s in (0, 128, 256)], 1
        )
    out = embed(model, wave)
    k = int(out.num_frames[0])
    torch.testing.assert_close(out.frames[0], ref[0, :k], atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("n", [400, 2000, 16000, 17120, 31680, 32000, 48000, 64000, 80000])
def test_timestamps_are_patch_centres_inside_the_clip(models, n):
    out = embed(models["test_ssast_orig"], noise(n))
    k = int(out.num_frames[0])
    assert k == expected_frames(n)
    duration_ms = 1000 * n / 16000
    centres = (87.5 + 160 * torch.arange(k, dtype=torch.float64)).clamp(max=duration_ms)
    torch.testing.assert_close(out.timestamps[0].double(), centres)
    assert out.timestamps[0].max() <= duration_ms


def test_frame_models_have_20_ms_frames():
    torch.manual_seed(0)
    model = axlstm.create_model("test_ssast_orig", patch_size=(2, 128), masking="random").eval()
    out = embed(model, noise(32000))  # 2 s: T = 198 frames -> 99 frames of 20 ms
    k = int(out.num_frames[0])
    assert k == expected_frames(32000, patch=2, stride=2) == 99
    assert out.frames.shape == (1, 99, 64)  # frame_dim = D: one frequency patch per step
    torch.testing.assert_close(out.timestamps[0], 17.5 + 20 * torch.arange(99.0))


def test_overlapping_stride_keeps_a_regular_frame_grid():
    """Fine-tuned geometry (stride 10): windows advance by whole strides (12 frames of 100 ms
    per 128-frame window, next window 120 frames later)."""
    torch.manual_seed(0)
    model = axlstm.create_model("test_ssast_orig", patch_stride=(10, 10)).eval()
    wave = noise(40000)  # 2.5 s: T = 248 frames
    out = embed(model, wave)
    k = int(out.num_frames[0])
    assert k == expected_frames(40000, patch=16, stride=10) == 25
    assert torch.all(out.timestamps[0].diff() == 100)
    spec = fbank(model, wave)
    padded = F.pad(spec, (0, 0, 0, 2 * 120 + 128 - 248), value=model.front_end_config.pad_value)
    with torch.no_grad():
        ref = torch.cat(
            [model.forward_features(padded[:, :, s : s + 128]) for s in (0, 120, 240)], 1
        )
    torch.testing.assert_close(out.frames[0], ref[0, :k], **CLOSE)
    whole = embed(model, wave, window=None)
    assert int(whole.num_frames[0]) == k


@pytest.mark.parametrize("window", ["official", None])
@pytest.mark.parametrize("name", FBANK)
def test_mixed_length_batch_equals_one_by_one(models, name, window):
    model = models[name]
    clips = [noise(n, seed=i) for i, n in enumerate([400, 8000, 32000, 20000, 8000])]
    batch = embed(model, clips, window=window, batch_size=3)
    for i, clip in enumerate(clips):
        alone = embed(model, clip, window=window)
        k = int(alone.num_frames[0])
        assert int(batch.num_frames[i]) == k == expected_frames(clip.shape[0])
        torch.testing.assert_close(batch.frames[i, :k], alone.frames[0], **CLOSE)
        torch.testing.assert_close(batch.scene[i], alone.scene[0], **CLOSE)
        assert torch.all(batch.frames[i, k:] == 0) and torch.isnan(batch.timestamps[i, k:]).all()


@pytest.mark.parametrize("name", FBANK)
def test_layers_follow_num_layers(models, name):
    model = models[name]
    wave = noise(20000)
    every = embed(model, wave, layer="all")
    n = model.num_layers  # SSAST: one per block; SSAMBA: one per bidirectional pair
    assert n == (2 if name == "test_ssast_orig" else 1)
    assert every.layers == [*(f"block{i}" for i in range(n)), "final"]
    assert every.frames.shape[2:] == (n + 1, model.frame_dim)
    torch.testing.assert_close(every.frames[:, :, -1], embed(model, wave).frames)
    spec = F.pad(fbank(model, wave), (0, 0, 0, 128 - 123), value=model.front_end_config.pad_value)
    with torch.no_grad():
        block0 = model.forward_features(spec, layer=0)
    k = int(every.num_frames[0])
    torch.testing.assert_close(every.frames[0, :, 0], block0[0, :k], **CLOSE)
    with pytest.raises(ValueError, match="out of range"):
        embed(model, wave, layer=n)


def test_errors_for_fbank_models(models):
    model = models["test_ssamba"]
    with pytest.raises(ValueError, match=r"clip 0: too short: 399 samples.*fbank frame"):
        embed(model, noise(399))
    with pytest.raises(ValueError, match="frame_layout 'time' only"):
        embed(model, noise(8000), frame_layout="official")
    with pytest.raises(ValueError, match="multiple of 16"):
        embed(model, noise(8000), window=100)


def test_embed_cli_with_a_release_and_a_preset(models, tmp_path, capsys):
    audio = tmp_path / "audio"
    audio.mkdir()
    sf.write(audio / "a.wav", noise(44100 * 2).numpy(), 44100)  # resampled to 16 kHz
    sf.write(audio / "b.flac", noise(16000 * 3, seed=1).numpy(), 16000)
    release = tmp_path / "release"
    models["test_ssast_orig"].save_pretrained(release)
    out = tmp_path / "emb.npz"
    assert main(["embed", str(audio), "--model", str(release), "--out", str(out), "--frames"]) == 0
    data = np.load(out)
    assert list(data["files"]) == [str(audio / "a.wav"), str(audio / "b.flac")]
    assert data["scene"].shape == (2, 512)
    a, b = expected_frames(32000), expected_frames(48000)
    assert data["offsets"].tolist() == [0, a, a + b]
    settings = json.loads(str(data["settings"]))
    assert settings["sample_rate"] == 16000 and settings["window"] == "official"
    wave = axlstm.audio.load_audio(audio / "b.flac", 16000)  # as stored: 16-bit PCM
    direct = embed(models["test_ssast_orig"], wave)
    np.testing.assert_allclose(data["scene"][1], direct.scene[0].numpy(), atol=1e-4)
    capsys.readouterr()
    out2 = tmp_path / "emb2.npz"
    args = ["embed", str(audio), "--model", "test_ssamba", "--out", str(out2), "--layer", "all"]
    assert main(args) == 0
    assert np.load(out2)["scene"].shape == (2, 2, 512)
    capsys.readouterr()
    args = ["embed", str(audio), "--model", "test_ssamba", "--out", str(out2), "--stream"]
    assert main(args) == 2
    assert "cannot stream" in capsys.readouterr().err


# ------------------------------------------------------------------------------ data path
def test_training_inputs_reproduce_the_official_loader():
    """wave/fbank.pt holds the official AudioDataset outputs at 1024 frames (AudioSet stats,
    zero-padded) and at 128 frames (Speech Commands stats, cropped to the first frames)."""
    wave = load_fixture("ssast", "wave/wave.pt")[0]
    ref = load_fixture("ssast", "wave/fbank.pt")
    rng = np.random.default_rng(0)
    audioset = ClipProcessor(KaldiFbankConfig())
    x = audioset.from_wave(wave, rng, "wave")
    assert x.shape == (1, 1024, 128)
    torch.testing.assert_close(x[0], ref["as_1024"], atol=3e-4, rtol=0)
    assert torch.allclose(x[0, 298:], torch.tensor(0.467032), atol=1e-5)  # padded rows
    speech = ClipProcessor(KaldiFbankConfig.for_dataset("speechcommands"))
    torch.testing.assert_close(
        speech.from_wave(wave, rng, "wave")[0], ref["sc_128"], atol=3e-4, rtol=0
    )


def test_crop_pad_and_augmentation_options():
    fe = KaldiFbankConfig(target_length=128)
    feats = torch.randn(300, 128) - 4.0  # a raw fbank of 300 frames
    rng = lambda: np.random.default_rng(7)  # noqa: E731
    first = ClipProcessor(fe).from_features(feats, rng(), "x")[0]
    torch.testing.assert_close(first, (feats[:128] - fe.mean) / (2 * fe.std))
    crop = ClipProcessor(fe, crop="random").from_features(feats, rng(), "x")[0]
    start = int(np.random.default_rng(7).integers(0, 300 - 128 + 1))
    torch.testing.assert_close(crop, (feats[start : start + 128] - fe.mean) / (2 * fe.std))
    tiled = ClipProcessor(fe, pad="tile").from_features(feats[:50], rng(), "x")[0]
    torch.testing.assert_close(tiled[50:100], tiled[:50])
    masked = ClipProcessor(fe, freqm=48, timem=48).from_features(feats, rng(), "x")[0]
    hole = torch.isclose(masked, torch.tensor(fe.pad_value))  # 0 before normalising
    assert hole.all(0).any() and hole.all(1).any()  # a frequency band and a time span
    noisy = ClipProcessor(fe, noise=True)
    a, b = noisy.from_features(feats, rng(), "x"), noisy.from_features(feats, rng(), "x")
    assert torch.equal(a, b) and not torch.allclose(a[0], first)  # seeded: reproducible
    proc = make_processor(DataConfig(), fe)
    assert proc.frames == 128 and (proc.crop, proc.pad) == ("start", "zeros")
    assert type(make_processor(DataConfig())).__name__ == "ClipProcessor"
    with pytest.raises(Exception, match="bad_shape"):  # AxLSTM log-mel arrays do not fit
        ClipProcessor(fe).from_features(torch.randn(300, 80), rng(), "x")


# ----------------------------------------------------------------------------- pretraining
FAST = [
    "logging.tensorboard=false",
    "data.procedural_size=64",
    "optim.global_batch=4",
    "schedule.warmup_steps=2",
    "schedule.warmup_stair=1",
    "schedule.plateau_every=2",
    "logging.log_every=2",
]


@pytest.mark.parametrize("name", FBANK)
def test_debug_recipe_end_to_end(name, tmp_path, capsys):
    preset = f"debug_{name.removeprefix('test_')}"
    out = tmp_path / "run"
    args = ["pretrain", "--config", preset, "--out", str(out), "--max-steps", "6", "--set", *FAST]
    assert main(args) == 0
    assert "trained steps 0->6" in capsys.readouterr().out
    records = read_records(out / "log.jsonl")
    assert [r["step"] for r in records] == [2, 4, 6]
    for r in records:
        assert all(math.isfinite(r[k]) for k in ("loss", "nce", "mse", "acc"))
        assert r["loss"] == pytest.approx(r["nce"] + 10 * r["mse"], rel=1e-5)
        assert 0 <= r["acc"] <= 1
    assert (out / "log.csv").read_text().splitlines()[0].endswith(",nce,mse,acc")
    assert (out / "plots" / "loss.png").is_file()
    assert not (out / "plots" / "reconstruction.png").exists()  # predictions: masked only
    ck = load_checkpoint(out / "checkpoints" / "last.pt")
    assert ck["model_class"] == ("ssast_original" if name == "test_ssast_orig" else "ssamba")
    assert ck["scheduler"]["plateau"]["mode"] == "max" and "progress" in ck["scheduler"]
    group = ck["optimizer"]["param_groups"][0]
    assert len(ck["optimizer"]["param_groups"]) == 1  # decay on every parameter
    assert tuple(group["betas"]) == (0.95, 0.999)
    assert group["weight_decay"] == (5e-7 if name == "test_ssast_orig" else 5e-8)
    release = tmp_path / "release"
    export_release(out / "checkpoints" / "last.pt", release)
    model = axlstm.load_model(release)
    assert type(model).__name__ == ("SSASTOriginal" if name == "test_ssast_orig" else "SSAMBA")
    for k, v in ck["model"].items():
        assert torch.equal(model.state_dict()[k], v)
    assert embed(model, noise(16000)).scene.shape == (1, model.frame_dim)


def test_training_batches_are_the_models_inputs(tmp_path):
    """The stream feeds (B, 1, img_size[0], 128) normalised fbank, first frames kept."""
    from axlstm.recipes.pretrain import MaskedSpecTask

    cfg = load_config("debug_ssast_orig", ["data.procedural_size=8"])
    task = MaskedSpecTask(cfg)
    model = task.build_model()
    stream = task.build_data(
        seed=0, rank=0, world=1, micro_batch=2, states=None, pin_memory=False, model=model
    )
    batch = next(iter(stream))
    assert batch["spec"].shape == (2, 1, 128, 128)
    from axlstm.data import ProceduralCorpus

    lo, hi = cfg.data.procedural_seconds
    corpus = ProceduralCorpus(cfg.data.procedural_seed, cfg.data.procedural_size, lo, hi)
    item = stream.dataset.item_of(0)
    wave, _ = corpus.clip(item)
    ref = KaldiFbankFrontEnd(model.front_end_config)(torch.as_tensor(wave, dtype=torch.float32))
    torch.testing.assert_close(batch["spec"][0], ref[0])


def test_plateau_schedule_reduces_and_resume_is_exact(tmp_path):
    """Checks every 2 steps after a 2-step warm-up; a relative threshold nothing can beat makes
    every check after the first (which sets the best MSE) a bad one, so with patience 0 the lr
    halves at each later check. A run resumed from its step-4 checkpoint ends with the same
    weights, records and schedule state."""
    over = [
        *FAST,
        "schedule.max_steps=8",
        "schedule.plateau_metric=mse",
        "schedule.plateau_patience=0",
        "schedule.plateau_threshold=1000",
        "engine.ckpt_every=4",
    ]
    full = tmp_path / "full"
    pretrain(load_config("debug_ssast_orig", over), full)
    records = read_records(full / "log.jsonl")
    # lr of the last update of each record: warm-up (0, then 5e-4), then the peak 1e-3 until
    # the checks at steps 4 and 6 halve it
    assert [r["lr"] for r in records] == pytest.approx([5e-4, 1e-3, 5e-4, 2.5e-4])
    ck = load_checkpoint(full / "checkpoints" / "last.pt")
    assert ck["scheduler"]["progress"]["reductions"] == 3  # after the check at step 8
    part = tmp_path / "part" / "checkpoints"
    part.mkdir(parents=True)
    shutil.copy(full / "checkpoints" / "step_000000004.pt", part / "last.pt")
    pretrain(load_config("debug_ssast_orig", over), tmp_path / "part", resume=True)
    resumed = load_checkpoint(part / "last.pt")
    for k, v in ck["model"].items():
        assert torch.equal(resumed["model"][k], v), k
    assert resumed["scheduler"] == ck["scheduler"]

    def same(r):
        return {k: v for k, v in r.items() if k not in ("clips_per_s", "elapsed_s")}

    after = read_records(tmp_path / "part" / "log.jsonl")
    assert [same(r) for r in after] == [same(r) for r in records[2:]]


def test_presets_hold_the_official_recipes():
    tiny = load_config("ssast_orig_tiny_patch")
    assert tiny.model.name == "ssast_orig_tiny_patch"
    assert (tiny.optim.name, tiny.optim.weight_decay_scope) == ("adam", "all")
    assert tiny.optim.peak_lr() == 5e-4 and tiny.optim.global_batch == 120
    assert tiny.optim.betas == (0.95, 0.999) and tiny.optim.weight_decay == 5e-7
    s = tiny.schedule
    assert (s.warmup_steps, s.warmup_stair, s.decay, s.plateau_every) == (1000, 50, "plateau", 800)
    assert (s.plateau_metric, s.plateau_mode, s.plateau_factor, s.plateau_patience) == (
        "acc",
        "max",
        0.5,
        2,
    )
    assert tiny.engine.precision == "fp32" and tiny.data.input.crop == "start"
    base = load_config("ssast_orig_base_patch")
    assert base.optim.peak_lr() == 1e-4 and base.optim.global_batch == 24
    assert base.schedule.plateau_every == 4000
    assert load_config("ssast_orig_tiny_frame").model.name == "ssast_orig_tiny_frame"
    for size in ("tiny", "small", "base"):
        cfg = load_config(f"ssamba_{size}")
        assert cfg.model.name == f"ssamba_{size}" and cfg.optim.name == "adamw"
        assert cfg.optim.weight_decay == 5e-8 and cfg.optim.global_batch == 64
        assert cfg.optim.peak_lr() == 1e-4 and cfg.schedule.plateau_every == 4000
    # debug also runs these models with an override
    cfg = load_config("debug", ["model.name=test_ssamba"])
    assert cfg.model.name == "test_ssamba"
