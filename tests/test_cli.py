"""The ``axlstm`` command line: convert and models."""

from __future__ import annotations

import json
import subprocess
import sys

import torch

import axlstm
from axlstm.cli.main import main
from conftest import fixture_dir, load_fixture


def test_convert_official_checkpoint_end_to_end(tmp_path, capsys):
    ckpt = fixture_dir("official") / "axlstm_a" / "checkpoint_full.pth"
    out = tmp_path / "release"
    args = ["convert", str(ckpt), str(out), "--arch", "axlstm_tiny", "--embed-dim", "64"]
    assert main([*args, "--depth", "2"]) == 0
    assert "wrote" in capsys.readouterr().out
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["provenance"]["official_checkpoint"] == "checkpoint_full.pth"
    assert len(cfg["provenance"]["official_checkpoint_sha256"]) == 64
    model = axlstm.load_model(out, frame_layout="official", mask_token_pos=False)
    with torch.no_grad():
        feats = model.forward_features(load_fixture("official", "axlstm_a/input_lms.pt"))
    ref = load_fixture("official", "axlstm_a/features.pt")
    torch.testing.assert_close(feats, ref, atol=1e-4, rtol=1e-4)


def test_convert_reports_a_mismatch_without_traceback(tmp_path, capsys):
    ckpt = fixture_dir("official") / "ssast_c" / "state_dict.pth"
    code = main(["convert", str(ckpt), str(tmp_path / "x"), "--arch", "ssast_tiny"])
    err = capsys.readouterr().err
    assert code == 1  # could not be done (bad weights), not a usage error
    assert "does not fit" in err and "embed_dim" in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()


def test_models_lists_presets(capsys):
    assert main(["models", "axlstm_*"]) == 0
    out = capsys.readouterr().out
    assert "axlstm_tiny" in out and "2,867,808" in out and "ssast" not in out


def test_models_table_fits_the_long_names(capsys):
    assert main(["models", "test_ss*"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "family", "dim", "depth", "encoder", "params"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert rows["test_ssast_orig"].split()[1] == "ssast_orig"
    assert len({line.index(" ", len("test_ssast_orig")) for line in lines}) == 1  # aligned
    assert len({len(line) for line in lines}) == 1


TINY_SSAST = ["embed_dim=64", "depth=2", "num_heads=4"]  # the fixtures' reduction
TINY_SSAMBA = ["embed_dim=64", "depth=4"]


def _convert(tmp_path, ckpt, arch, *sets):
    out = tmp_path / ckpt.parent.name / ckpt.stem
    assert main(["convert", str(ckpt), str(out), "--arch", arch, "--set", *sets]) == 0
    return axlstm.load_model(out), json.loads((out / "config.json").read_text())


def test_convert_official_ssast_and_ssamba_with_set(tmp_path, capsys):
    """Pretrained and fine-tuned checkpoints become releases that reproduce the official
    outputs; fine-tuned geometries come in through --set patch_stride / img_size."""
    ssast = fixture_dir("ssast") / "patch"
    model, cfg = _convert(
        tmp_path, ssast / "state_dict.pth", "ssast_orig_tiny_patch", *TINY_SSAST, "mask_patch=50"
    )
    assert cfg["model_class"] == "ssast_original" and cfg["front_end"]["kind"] == "kaldi_fbank"
    assert cfg["provenance"]["overrides"]["mask_patch"] == 50
    x, mpc = (
        load_fixture("ssast", "patch/input_fbank.pt"),
        load_fixture("ssast", "patch/pretrain_mpc.pt"),
    )
    with torch.no_grad():
        tokens = model.encode(x, mpc["mask_index"])
    torch.testing.assert_close(tokens, mpc["encoder_output"], atol=1e-4, rtol=1e-4)

    cases = [
        (
            ssast / "ft_s10_t128_state_dict.pth",
            "ssast_orig_tiny_patch",
            TINY_SSAST,
            "ssast",
            "patch/",
        ),
        (
            fixture_dir("ssamba") / "ft_s10_t128_state_dict.pth",
            "ssamba_tiny",
            TINY_SSAMBA,
            "ssamba",
            "",
        ),
    ]
    for ckpt, arch, reduced, fixtures, sub in cases:
        geometry = ["patch_stride=10,10", "img_size=[128, 128]"]
        model, cfg = _convert(tmp_path, ckpt, arch, *reduced, *geometry)
        assert cfg["model"]["patch_stride"] == [10, 10] and cfg["model"]["num_classes"] == 10
        x = load_fixture(fixtures, f"{sub}input_fbank.pt")
        ref = load_fixture(fixtures, f"{sub}ft_s10_t128_forward.pt")
        with torch.no_grad():
            torch.testing.assert_close(model.classify(x), ref["ft_avgtok"], atol=1e-4, rtol=1e-4)
        assert axlstm.embedding.embed(model, torch.randn(16000)).frames.shape[-1] == 12 * 64


def test_convert_set_errors_are_clear(tmp_path, capsys):
    ckpt = fixture_dir("ssamba") / "state_dict.pth"
    base = ["convert", str(ckpt), str(tmp_path / "x"), "--arch", "ssamba_tiny", "--set"]
    assert main([*base, *TINY_SSAMBA, "mask_pach=50"]) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'mask_pach'" in err and "did you mean 'mask_patch'" in err
    assert main([*base, *TINY_SSAMBA, "mask_patch=fifty"]) == 2
    assert "mask_patch: expected an integer" in capsys.readouterr().err
    assert main([*base, "depth"]) == 2
    assert "not of the form key=value" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_console_entry_point_runs():
    proc = subprocess.run(
        [sys.executable, "-m", "axlstm.cli.main", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert proc.stdout.startswith("axlstm ")
