"""The HEAR API module: the hear-validator contract (in pytest and, when installed, the real
validator), official parity through the API, model naming and layer options."""

from __future__ import annotations

import importlib.util
import logging
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

import axlstm
from axlstm import hear
from conftest import REPO_ROOT, fixture_dir, load_fixture

SAMPLE_RATES = (16000, 22050, 32000, 44100, 48000)  # hearvalidator.ValidateModel


def check_timestamp_contract(module, model, n_sounds: int, length: float) -> None:
    """The checks hear-validator 2021.0.6 makes on get_timestamp_embeddings (errors only)."""
    audio = torch.rand(n_sounds, int(length * model.sample_rate)) * 2 - 1
    emb, ts = module.get_timestamp_embeddings(audio, model)
    assert emb.dtype == torch.float32
    emb, ts = emb.detach().cpu().numpy(), ts.detach().cpu().numpy()
    assert emb.ndim == 3 and ts.ndim == 2
    assert emb.shape[0] == n_sounds
    assert emb.shape[:2] == ts.shape
    assert emb.shape[2] == model.timestamp_embedding_size
    assert np.isfinite(emb).all() and np.isfinite(ts).all()
    if ts.shape[1] > 1:
        diff = np.diff(ts)
        assert np.max(np.abs(diff - diff.mean())) <= 1, "timestamps must be regular"
        assert np.max(ts) <= 1000 * length, "timestamps past the end of the audio"
        # the validator only warns about these; a correct model does not trigger them, except
        # that a 16x16-patch model's first frame covers 0-160 ms, centred at 87.5 ms, whatever
        # its (40 ms) hop: the validator's "begin" heuristic expects a centre within one hop
        assert diff.max() <= 50.0, "HEAR asks for a hop of at most 50 ms"
        assert np.min(ts) <= max(diff.mean(), 87.5)
        assert np.max(ts) >= 1000 * length - max(diff.mean(), 50)


def check_scene_contract(module, model) -> None:
    audio = torch.rand(4, int(2.74 * model.sample_rate)) * 2 - 1
    emb = module.get_scene_embeddings(audio, model)
    assert emb.dtype == torch.float32
    emb = emb.detach().cpu().numpy()
    assert emb.dtype == np.float32 and emb.shape == (4, model.scene_embedding_size)
    assert np.isfinite(emb).all()


def check_contract(model_path: str, **options) -> hear.HearModel:
    model = hear.load_model(model_path, **options)
    assert isinstance(model, nn.Module)
    assert model.sample_rate in SAMPLE_RATES
    assert isinstance(model.scene_embedding_size, int)
    assert isinstance(model.timestamp_embedding_size, int)
    for length in (1.07, 1.98, 4.0):
        check_timestamp_contract(hear, model, 2, length)
    check_scene_contract(hear, model)
    return model


@pytest.mark.parametrize("preset", ["test_axlstm", "test_ssast"])
@pytest.mark.parametrize("frame_layout", ["time", "official"])
def test_hear_contract(preset, frame_layout):
    model = check_contract(preset, frame_layout=frame_layout)
    assert model.scene_embedding_size == model.encoder.frame_dim


@pytest.mark.parametrize("preset", ["test_ssast_orig", "test_ssamba"])
def test_hear_contract_fbank_models(preset):
    """The original SSAST and SSAMBA: Kaldi fbank front end, training-length windows."""
    model = check_contract(preset)
    assert model.sample_rate == 16000
    assert model.scene_embedding_size == model.encoder.frame_dim == 8 * 64  # 8 bands x D
    audio = torch.rand(2, 40000) * 2 - 1  # 2.5 s
    emb, ts = hear.get_timestamp_embeddings(audio, model)
    # 160 ms patches, four passes offset by 40 ms: a 40 ms hop (HEAR asks for at most 50 ms)
    assert model.hop_split == 4
    torch.testing.assert_close(ts[0], 87.5 + 40.0 * torch.arange(ts.shape[1]).float())
    assert ts[0, -1] <= 2500.0 < ts[0, -1] + 40.0
    # pass 0 is the model's own grid, whose mean is the scene embedding
    coarse = hear.load_model(preset, max_hop_ms=None)
    coarse.encoder.load_state_dict(model.encoder.state_dict())
    emb0, ts0 = hear.get_timestamp_embeddings(audio, coarse)
    torch.testing.assert_close(ts0[0], 87.5 + 160.0 * torch.arange(ts0.shape[1]).float())
    torch.testing.assert_close(emb[:, ::4][:, : emb0.shape[1]], emb0)
    torch.testing.assert_close(hear.get_scene_embeddings(audio, model), emb0.mean(1))


def test_offset_passes_equal_shifted_features():
    """Frame m of the 40 ms grid is frame m // 4 of a pass over the features without their
    first 4 (m % 4) input frames (hop_split=4 on 160 ms patches)."""
    from axlstm.embedding import embed

    model = hear.load_model("test_ssamba", window="none").encoder
    wave = torch.rand(20000) * 2 - 1
    fine = embed(model, wave, 16000, window="none", hop_split=4)
    spec = model.front_end_config.whole_clip().build()(wave[None])  # (1, 1, T, F)
    for m in (1, 2, 3, 5):
        shifted = spec[:, :, 4 * (m % 4) :]
        pad = (-shifted.shape[2]) % 16
        shifted = torch.nn.functional.pad(
            shifted, (0, 0, 0, pad), value=model.front_end_config.pad_value
        )
        with torch.no_grad():
            ref = model.forward_features(shifted)[0, m // 4]
        torch.testing.assert_close(fine.frames[0, m], ref)
    with pytest.raises(ValueError, match="does not divide"):
        embed(model, wave, 16000, hop_split=3)


@pytest.mark.parametrize("options", [dict(window="none"), dict(layer="all"), dict(layer=0)])
def test_hear_contract_fbank_models_with_options(options):
    model = check_contract("test_ssamba", **options)
    layers, dim = model.encoder.num_layers, model.encoder.frame_dim  # SSAMBA: one per pair
    width = dim * (layers + 1) if options.get("layer") == "all" else dim
    assert model.scene_embedding_size == model.timestamp_embedding_size == width


@pytest.mark.parametrize("options", [dict(window="none"), dict(layer="all"), dict(layer=0)])
def test_hear_contract_with_options(options):
    model = check_contract("test_axlstm", **options)
    depth, dim = model.encoder.config.depth, model.encoder.frame_dim
    width = dim * (depth + 1) if options.get("layer") == "all" else dim
    assert model.scene_embedding_size == model.timestamp_embedding_size == width


def test_layers_are_concatenated_in_order():
    every = hear.load_model("test_axlstm", layer="all")
    final = hear.load_model("test_axlstm")
    final.encoder.load_state_dict(every.encoder.state_dict())
    audio = torch.rand(2, 24000) * 2 - 1
    emb_all, ts_all = hear.get_timestamp_embeddings(audio, every)
    emb, ts = hear.get_timestamp_embeddings(audio, final)
    dim = final.timestamp_embedding_size
    torch.testing.assert_close(emb_all[..., -dim:], emb)
    torch.testing.assert_close(ts_all, ts)
    scene_all = hear.get_scene_embeddings(audio, every)
    torch.testing.assert_close(scene_all[:, -dim:], hear.get_scene_embeddings(audio, final))


def test_timestamps_centred_and_scene_is_the_frame_mean():
    model = hear.load_model("test_ssast")
    audio = torch.rand(3, 30000) * 2 - 1
    emb, ts = hear.get_timestamp_embeddings(audio, model)
    torch.testing.assert_close(ts[0], 15.0 + 40.0 * torch.arange(ts.shape[1]).float())
    assert torch.equal(ts[0], ts[2])
    torch.testing.assert_close(hear.get_scene_embeddings(audio, model), emb.mean(1))


def test_default_model_without_a_path(caplog):
    with caplog.at_level(logging.WARNING):
        model = hear.load_model()
    assert "random weights" in caplog.text
    assert model.encoder.config.name == hear.DEFAULT_MODEL
    assert model.scene_embedding_size == 960 and model.timestamp_embedding_size == 960


def test_release_folder_and_official_checkpoint(tmp_path):
    ckpt = fixture_dir("official") / "ssast_c" / "state_dict.pth"
    kw = dict(embed_dim=64, depth=2, num_heads=4)
    direct = hear.load_model(ckpt, arch="ssast_tiny", frame_layout="official", **kw)
    ref = load_fixture("official", "wave/hear_ssast_c.pt")
    wave = load_fixture("official", "wave/wave.pt")
    emb, ts = hear.get_timestamp_embeddings(wave, direct)
    tol = dict(atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(emb, ref["timestamp_embeddings"], **tol)
    torch.testing.assert_close(ts, ref["timestamps"], **tol)
    torch.testing.assert_close(
        hear.get_scene_embeddings(wave, direct), ref["scene_embeddings"], **tol
    )
    # converted to a release, the same model by folder name (layout stored in the release)
    release = tmp_path / "ssast_c"
    direct.encoder.save_pretrained(release)
    via_release = hear.load_model(str(release))
    assert via_release.encoder.config.frame_layout == "official"
    torch.testing.assert_close(
        hear.get_scene_embeddings(wave, via_release), ref["scene_embeddings"], **tol
    )
    with pytest.raises(ValueError, match="axlstm convert"):
        hear.load_model(ckpt)


def test_hear_model_follows_device_and_is_a_module():
    model = hear.load_model("test_axlstm", device="cpu")
    assert "window='official'" in repr(model)
    emb, ts = model(torch.rand(1, 20000))
    assert emb.device == next(model.parameters()).device
    with pytest.raises(ValueError, match="n_sounds, n_samples"):
        hear.get_scene_embeddings(torch.rand(20000), model)


# --------------------------------------------------------------------- the real hear-validator
HAVE_VALIDATOR = importlib.util.find_spec("hearvalidator") is not None
VALIDATOR_SKIP = (
    "hearvalidator is not installed; on Python >= 3.10 install it with "
    "`pip install --no-deps --ignore-requires-python hearvalidator==2021.0.6` "
    "(the pure-pytest contract tests above check the same rules)"
)
TF_STUB = """\
# Stand-in for tensorflow: hear-validator imports it; torch models never use it.
import contextlib
class Module:
    pass
float32 = "tf.float32"
def device(name):
    return contextlib.nullcontext()
"""


def run_validator(tmp_path, *args: str) -> subprocess.CompletedProcess:
    stub = tmp_path / "tfstub" / "tensorflow"
    stub.mkdir(parents=True, exist_ok=True)
    (stub / "__init__.py").write_text(TF_STUB)
    env = dict(os.environ)
    paths = [str(stub.parent), str(REPO_ROOT / "src"), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    env["OMP_NUM_THREADS"] = "1"  # tiny models; spare the shared CPU
    code = "import sys; from hearvalidator.validate import main; sys.exit(main())"
    return subprocess.run(
        [sys.executable, "-c", code, "axlstm.hear", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )


@pytest.mark.skipif(not HAVE_VALIDATOR, reason=VALIDATOR_SKIP)
@pytest.mark.parametrize("preset", ["test_ssast", "test_ssamba"])
def test_real_hear_validator_on_a_preset(tmp_path, preset):
    proc = run_validator(tmp_path, "-m", preset, "-d", "cpu")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Looks good!" in proc.stdout


@pytest.mark.skipif(not HAVE_VALIDATOR, reason=VALIDATOR_SKIP)
def test_real_hear_validator_on_a_release_folder(tmp_path):
    release = tmp_path / "release"
    axlstm.create_model("test_axlstm", frame_layout="official").save_pretrained(release)
    proc = run_validator(tmp_path, "--model", str(release), "--device", "cpu")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Looks good!" in proc.stdout
    assert "Received embedding of shape: (2, 101, 160)" in proc.stdout  # 4.0 s: ceil(401 / 4)


def test_tf_stub_is_valid_python():
    compile(textwrap.dedent(TF_STUB), "tensorflow/__init__.py", "exec")
