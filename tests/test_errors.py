"""One error hierarchy: every deliberate error is an AxlstmError of one kind (and a ValueError),
and names the file or key it is about."""

from __future__ import annotations

import json

import pytest
import torch

import axlstm
from axlstm import checkpoint, engine
from axlstm.audio import FrontEndConfig, KaldiFbankConfig, load_audio
from axlstm.core import AudioError, AxlstmError, CheckpointError, ConfigError
from axlstm.embedding import check_clip


def test_one_class_per_kind_everywhere():
    assert checkpoint.CheckpointError is engine.CheckpointError is CheckpointError
    assert engine.ConfigError is ConfigError and axlstm.audio.AudioLoadError is AudioError
    for kind in (AudioError, CheckpointError, ConfigError):
        assert issubclass(kind, AxlstmError) and issubclass(kind, ValueError)


def test_config_errors():
    with pytest.raises(ConfigError, match=r"unknown model config keys.*did you mean 'depth'"):
        axlstm.create_model("test_axlstm", deptj=3)
    with pytest.raises(ConfigError, match="frame_layout"):
        axlstm.create_model("test_axlstm", frame_layout="sideways")
    with pytest.raises(ConfigError, match="unknown model"):
        axlstm.create_model("no_such_model")
    with pytest.raises(ConfigError, match="norm_mean"):
        FrontEndConfig(norm_mean=1.0)
    with pytest.raises(ConfigError, match="std"):
        KaldiFbankConfig(std=0.0)
    cls = type(axlstm.create_model("test_ssast_orig").config)
    assert cls.parse_set(["patch_stride=10,10", "depth=4"]) == {
        "patch_stride": (10, 10),
        "depth": 4,
    }
    with pytest.raises(ConfigError, match="did you mean 'depth'"):
        cls.parse_set(["dept=4"])


def test_audio_errors_name_the_clip_or_file(tmp_path):
    fe = FrontEndConfig()
    with pytest.raises(AudioError, match="clip 7: too short"):
        check_clip(torch.zeros(100), 16000, "clip 7", fe)
    with pytest.raises(AudioError, match=r"bad\.wav"):
        bad = tmp_path / "bad.wav"
        bad.write_bytes(b"not audio" * 20)
        load_audio(bad)


def test_release_errors_name_the_file(tmp_path):
    model = axlstm.create_model("test_axlstm")
    path = model.save_pretrained(tmp_path / "rel")
    cfg = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"rel/config.json: invalid JSON"):
        axlstm.load_model(path)
    cfg["model_class"] = "martian"
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="unknown model_class 'martian'"):
        axlstm.load_model(path)
    cfg["model_class"] = "masked_spec"
    cfg["model"]["depth"] = 5
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"rel/model.safetensors does not fit"):
        axlstm.load_model(path)
    cfg["model"]["bogus"] = 1
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"config.json: invalid model config.*bogus"):
        axlstm.load_model(path)
    (path / "model.safetensors").write_bytes(b"garbage")
    del cfg["model"]["bogus"]
    cfg["model"]["depth"] = 2
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"model\.safetensors: not a valid safetensors file"):
        axlstm.load_model(path)
