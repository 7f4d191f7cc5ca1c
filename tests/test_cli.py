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
    assert code == 2
    assert "does not fit" in err and "embed_dim" in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()


def test_models_lists_presets(capsys):
    assert main(["models", "axlstm_*"]) == 0
    out = capsys.readouterr().out
    assert "axlstm_tiny" in out and "2,867,808" in out and "ssast" not in out


def test_console_entry_point_runs():
    proc = subprocess.run(
        [sys.executable, "-m", "axlstm.cli.main", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert proc.stdout.startswith("axlstm ")
