"""Impossible config values are refused by the config classes' ``validate()``, naming the field
and the value, on every path a model or a front end is built from: presets with overrides,
``from_dict``, direct construction, ``axlstm convert --set``, ``axlstm pretrain --set``, a
release's ``config.json``. Non-finite optimiser and schedule numbers are config errors too."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import soundfile as sf
import torch

import axlstm
from axlstm.audio import FrontEndConfig
from axlstm.audio.kaldi import KaldiFbankConfig
from axlstm.cli.main import main
from axlstm.core.errors import CheckpointError, ConfigError
from axlstm.engine.config import OptimConfig, ScheduleConfig
from axlstm.models import ModelConfig, SSAMBAConfig, SSASTOrigConfig
from axlstm.recipes import load_config


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    return lines[0]


def build(name: str, **overrides):
    with torch.device("meta"):  # validation comes before any allocation
        return axlstm.create_model(name, **overrides)


# ---------------------------------------------------------------------------- model configs
BAD_MODELS = [
    ("axlstm_tiny", {"patch_size": [0, 16]}, "patch_size", "(0, 16)"),
    ("axlstm_tiny", {"patch_size": [4, -16]}, "patch_size", "(4, -16)"),
    ("axlstm_tiny", {"mlstm_heads": 0}, "mlstm_heads", "0"),
    ("axlstm_tiny", {"mlstm_heads": 5}, "mlstm_heads=5", "384"),
    ("axlstm_tiny", {"qkv_block_size": 0}, "qkv_block_size", "0"),
    ("axlstm_tiny", {"qkv_block_size": 7}, "qkv_block_size=7", "384"),
    ("axlstm_tiny", {"embed_dim": 0}, "embed_dim", "0"),
    ("axlstm_tiny", {"embed_dim": 30}, "embed_dim", "30"),
    ("axlstm_tiny", {"expansion": 0}, "expansion", "0"),
    ("axlstm_tiny", {"conv_kernel_size": -1}, "conv_kernel_size", "-1"),
    ("axlstm_tiny", {"mlstm_chunk_size": 0}, "mlstm_chunk_size", "0"),
    ("axlstm_tiny", {"mlstm_segment_size": -1}, "mlstm_segment_size", "-1"),
    ("axlstm_tiny", {"mlstm_backend": "magic"}, "mlstm_backend", "magic"),
    ("axlstm_tiny", {"in_chans": 0}, "in_chans", "0"),
    ("test_axlstm", {"depth": 0}, "depth", "0"),
    ("test_axlstm", {"depth": -2}, "depth", "-2"),
    ("test_axlstm", {"img_size": [0, 80]}, "img_size", "(0, 80)"),
    ("test_axlstm", {"img_size": [2, 80]}, "img_size", "(2, 80)"),  # smaller than a patch
    ("test_axlstm", {"img_size": [202, 80]}, "img_size", "(202, 80)"),  # not a multiple
    ("test_axlstm", {"mask_ratio": 2}, "mask_ratio", "2"),
    ("test_axlstm", {"mask_ratio": 0}, "mask_ratio", "0"),
    ("test_axlstm", {"mask_ratio": 1}, "mask_ratio", "1"),
    ("test_axlstm", {"mask_ratio": math.nan}, "mask_ratio", "nan"),
    ("test_axlstm", {"masking_mode": "stripes"}, "masking_mode", "stripes"),
    ("test_axlstm", {"loss_scope": "some"}, "loss_scope", "some"),
    ("test_axlstm", {"front_end": {"hop_length": 0}}, "hop_length", "0"),
    ("test_axlstm", {"front_end": {"sample_rate": 2, "f_max": 1.0}}, "sample_rate", "2"),
    ("test_axlstm", {"front_end": {"n_mels": 0}}, "n_mels", "0"),
    ("test_axlstm", {"front_end": {"bogus": 1}}, "front_end", "bogus"),
    ("test_ssast", {"num_heads": 0}, "num_heads", "0"),
    ("test_ssast", {"num_heads": 5}, "num_heads=5", "embed_dim=32"),
    ("test_ssast", {"mlp_ratio": 0}, "mlp_ratio", "0"),
    ("test_ssast", {"mlp_ratio": math.inf}, "mlp_ratio", "inf"),
    ("test_ssast", {"attn_impl": "flash"}, "attn_impl", "flash"),
    ("test_ssam", {"d_state": 0}, "d_state", "0"),
    ("test_ssam", {"dt_rank": 0}, "dt_rank", "0"),
    ("test_ssam", {"dt_rank": "big"}, "dt_rank", "big"),
    ("test_ssam", {"scan_impl": "magic"}, "scan_impl", "magic"),
    ("test_ssast_orig", {"patch_size": [0, 16]}, "patch_size", "(0, 16)"),
    ("test_ssast_orig", {"patch_size": [256, 16]}, "img_size", "(256, 16)"),
    ("test_ssast_orig", {"patch_stride": [0, 16]}, "patch_stride", "(0, 16)"),
    ("test_ssast_orig", {"embed_dim": 0}, "embed_dim", "0"),
    ("test_ssast_orig", {"depth": 0}, "depth", "0"),
    ("test_ssast_orig", {"num_heads": 0}, "num_heads", "0"),
    ("test_ssast_orig", {"num_heads": 3}, "num_heads=3", "embed_dim=64"),
    ("test_ssast_orig", {"mask_patch": 0}, "mask_patch", "0"),
    ("test_ssast_orig", {"num_classes": -1}, "num_classes", "-1"),
    ("test_ssast_orig", {"mpg_weight": math.nan}, "mpg_weight", "nan"),
    ("test_ssast_orig", {"front_end": {"std": 0}}, "std", "0"),
    ("test_ssast_orig", {"front_end": {"frame_shift_ms": 0.01}}, "frame_shift_ms", "0.01"),
    ("test_ssast_orig", {"front_end": {"target_length": 0}}, "target_length", "0"),
    ("test_ssamba", {"embed_dim": 0}, "embed_dim", "0"),
    ("test_ssamba", {"patch_size": [0, 16]}, "patch_size", "(0, 16)"),
    ("test_ssamba", {"d_state": 0}, "d_state", "0"),
    ("test_ssamba", {"d_conv": 0}, "d_conv", "0"),
    ("test_ssamba", {"expand": 0}, "expand", "0"),
    ("test_ssamba", {"chunk_size": 0}, "chunk_size", "0"),
    ("test_ssamba", {"dt_rank": -1}, "dt_rank", "-1"),
    ("test_ssamba", {"norm_eps": 0}, "norm_eps", "0"),
    ("test_ssamba", {"drop_path_rate": 1.5}, "drop_path_rate", "1.5"),
    ("test_axlstm", {"drop_path_rate": 1.0}, "drop_path_rate", "1.0"),
    ("test_ssast", {"drop_path_rate": -0.1}, "drop_path_rate", "-0.1"),
    ("test_ssast_orig", {"drop_path_rate": 1.0}, "drop_path_rate", "1.0"),
    ("test_ssamba", {"depth": 3}, "depth", "3"),
]


@pytest.mark.parametrize(("name", "overrides", "field", "value"), BAD_MODELS)
def test_impossible_model_values_are_config_errors_naming_the_field(name, overrides, field, value):
    with pytest.raises(ConfigError) as info:
        build(name, **overrides)
    message = str(info.value)
    assert field in message and value in message, message
    assert "\n" not in message


@pytest.mark.parametrize("name", axlstm.list_models())
def test_every_preset_is_valid(name):
    model = build(name)
    model.config.validate()
    type(model.config).from_dict(model.config.to_dict())


def test_every_construction_path_validates():
    with pytest.raises(ConfigError, match="depth"):
        ModelConfig(depth=0)
    with pytest.raises(ConfigError, match="patch_size"):
        ModelConfig.from_dict({"patch_size": [0, 16]})
    with pytest.raises(ConfigError, match="mask_ratio"):
        ModelConfig().replace(mask_ratio=1.5)
    with pytest.raises(ConfigError, match="num_heads"):
        SSASTOrigConfig(num_heads=0)
    with pytest.raises(ConfigError, match="embed_dim"):
        SSAMBAConfig.from_dict({"embed_dim": 0})
    with pytest.raises(ConfigError, match="img_size"):
        ModelConfig(img_size=(0.5, 80))  # not a whole number: refused, not truncated
    assert ModelConfig(img_size=[200.0, 80]).img_size == (200, 80)  # JSON numbers are fine


# ------------------------------------------------------------------------ front-end configs
@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"sample_rate": 2, "f_max": 1.0, "f_min": 0.0}, "sample_rate"),
        ({"sample_rate": 0}, "sample_rate"),
        ({"hop_length": 0}, "hop_length"),
        ({"n_mels": 0}, "n_mels"),
        ({"n_fft": 0}, "n_fft"),
        ({"win_length": 0}, "win_length"),
        ({"win_length": 512}, "win_length"),
        ({"f_max": 9000.0}, "f_max"),
        ({"f_max": math.inf}, "f_max"),
        ({"f_min": math.nan}, "f_min"),
        ({"f_min": 8000.0}, "f_min"),
        ({"norm_mean": 0.0, "norm_std": 0.0}, "norm_std"),
        ({"norm_mean": math.nan, "norm_std": 1.0}, "norm_mean"),
        ({"norm_mean": 1.0}, "norm_std"),
    ],
)
def test_log_mel_front_end_refuses_impossible_settings(changes, field):
    with pytest.raises(ConfigError, match=field):
        FrontEndConfig.from_dict(changes)
    with pytest.raises(ConfigError, match=field):
        FrontEndConfig(**changes)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"sample_rate": 2}, "sample_rate"),
        ({"n_mels": 0}, "n_mels"),
        ({"frame_length_ms": 0.0}, "frame_length_ms"),
        ({"frame_shift_ms": 0.0}, "frame_shift_ms"),
        ({"frame_shift_ms": -10.0}, "frame_shift_ms"),
        ({"target_length": 0}, "target_length"),
        ({"std": 0.0}, "std"),
        ({"mean": math.nan}, "mean"),
        ({"std": math.inf}, "std"),
        ({"kind": "log_mel"}, "kind"),
    ],
)
def test_kaldi_front_end_refuses_impossible_settings(changes, field):
    with pytest.raises(ConfigError, match=field):
        KaldiFbankConfig.from_dict(changes)


def test_front_end_unknown_keys_are_refused():
    with pytest.raises(ConfigError, match=r"hop_lenght.*did you mean 'hop_length'"):
        FrontEndConfig.from_dict({"hop_lenght": 320})
    with pytest.raises(ConfigError, match="bogus"):
        KaldiFbankConfig.from_dict({"bogus": 1})


# --------------------------------------------------------------------- optimiser, schedule
@pytest.mark.parametrize(
    ("cls", "key", "value"),
    [
        (OptimConfig, "lr", math.nan),
        (OptimConfig, "base_lr", math.inf),
        (OptimConfig, "min_lr", math.nan),
        (OptimConfig, "eps", math.nan),
        (OptimConfig, "weight_decay", math.inf),
        (OptimConfig, "clip_grad_norm", math.nan),
        (OptimConfig, "betas", [0.9, math.nan]),
        (ScheduleConfig, "epochs", math.inf),
        (ScheduleConfig, "warmup_epochs", math.nan),
        (ScheduleConfig, "plateau_factor", math.nan),
        (ScheduleConfig, "plateau_threshold", math.inf),
        (ScheduleConfig, "step_factor", math.nan),
    ],
)
def test_non_finite_optim_and_schedule_numbers_are_config_errors(cls, key, value):
    section = "optim" if cls is OptimConfig else "schedule"
    with pytest.raises(ConfigError, match=rf"{section}\.{key} must be a finite number"):
        cls.from_dict({key: value})


def test_non_finite_values_from_overrides_name_the_key():
    with pytest.raises(ConfigError, match=r"optim\.lr must be a finite number, got nan"):
        load_config("debug", ["optim.lr=nan"])
    with pytest.raises(ConfigError, match=r"schedule\.epochs"):
        load_config("debug", ["schedule.epochs=.inf"])


# ------------------------------------------------------------------------------------- CLI
@pytest.mark.parametrize(
    ("items", "field"),
    [
        (["optim.lr=nan"], "optim.lr"),
        (["optim.base_lr=inf"], "optim.base_lr"),
        (["model.overrides={patch_size: [0, 16]}"], "patch_size"),
        (["model.name=test_ssast", "model.overrides={num_heads: 0}"], "num_heads"),
        (["model.overrides={embed_dim: 0}"], "embed_dim"),
        (["model.overrides={depth: 0}"], "depth"),
        (["model.overrides={img_size: [0, 80]}"], "img_size"),
        (["model.overrides.mask_ratio=2"], "mask_ratio"),
        (["model.overrides.front_end={hop_length: 0}"], "hop_length"),
    ],
)
def test_pretrain_refuses_bad_values_with_exit_2_before_training(tmp_path, capsys, items, field):
    out = tmp_path / "run"
    args = ["pretrain", "--config", "debug", "--out", str(out), "--max-steps", "1"]
    assert main([*args, "--no-progress", "--set", *items]) == 2
    line = one_line_error(capsys)
    assert line.startswith("axlstm pretrain: error:") and field in line, line
    assert not list(out.glob("checkpoints/*.pt"))


@pytest.fixture(scope="module")
def official_pth(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("official") / "official.pth"
    torch.save({"model": axlstm.create_model("axlstm_tiny").state_dict()}, path)
    return path


@pytest.mark.parametrize(
    ("item", "field"),
    [
        ("patch_size=0,16", "patch_size"),
        ("mlstm_heads=0", "mlstm_heads"),
        ("mlstm_heads=5", "mlstm_heads"),
        ("embed_dim=0", "embed_dim"),
        ("img_size=0,80", "img_size"),
        ("mask_ratio=2", "mask_ratio"),
    ],
)
def test_convert_refuses_bad_values_with_exit_2(official_pth, tmp_path, capsys, item, field):
    out = tmp_path / "out"
    args = ["convert", str(official_pth), str(out), "--arch", "axlstm_tiny", "--set", item]
    assert main(args) == 2
    line = one_line_error(capsys)
    assert line.startswith("axlstm convert: error:") and field in line, line
    assert not out.exists()


# -------------------------------------------------------------------------------- releases
@pytest.fixture(scope="module")
def releases(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("releases")
    out = {}
    for name in ("test_axlstm", "test_ssast_orig"):
        out[name] = axlstm.create_model(name).save_pretrained(root / name)
    return out


def _edited(release: Path, tmp_path: Path, edit) -> Path:
    target = tmp_path / "rel"
    shutil.copytree(release, target)
    config = json.loads((target / "config.json").read_text())
    edit(config)
    (target / "config.json").write_text(json.dumps(config))
    return target


BAD_RELEASES = [
    ("test_axlstm", lambda c: c["front_end"].update(sample_rate=2), "sample_rate"),
    ("test_axlstm", lambda c: c["front_end"].update(hop_length=0), "hop_length"),
    ("test_axlstm", lambda c: c["front_end"].update(n_mels=0), "n_mels"),
    ("test_axlstm", lambda c: c["front_end"].update(norm_mean=0.0, norm_std=0.0), "norm_std"),
    ("test_axlstm", lambda c: c["front_end"].update(bogus=1), "bogus"),
    ("test_axlstm", lambda c: c["front_end"].update(hop_length=320), "hop_length=320"),
    ("test_axlstm", lambda c: c["model"].update(front_end={"hop_length": 0}), "hop_length"),
    ("test_axlstm", lambda c: c["model"].update(front_end={"x": 1}), "front_end"),
    ("test_axlstm", lambda c: c["model"].update(mask_ratio=2), "mask_ratio"),
    ("test_axlstm", lambda c: c["model"].update(depth=0), "depth"),
    ("test_axlstm", lambda c: c["model"].update(patch_size=[0, 16]), "patch_size"),
    ("test_ssast_orig", lambda c: c["front_end"].update(std=0), "std"),
    ("test_ssast_orig", lambda c: c["front_end"].update(frame_shift_ms=0), "frame_shift_ms"),
    ("test_ssast_orig", lambda c: c["model"].update(front_end={"n_mels": 0}), "n_mels"),
    ("test_ssast_orig", lambda c: c["model"].update(num_heads=0), "num_heads"),
]


@pytest.mark.parametrize(("name", "edit", "field"), BAD_RELEASES)
def test_load_model_refuses_a_bad_config_json_naming_it(releases, tmp_path, name, edit, field):
    release = _edited(releases[name], tmp_path, edit)
    with pytest.raises(CheckpointError) as info:
        axlstm.load_model(release)
    message = str(info.value)
    assert str(release / "config.json") in message and field in message, message
    assert "\n" not in message


def test_intact_releases_load(releases):
    for release in releases.values():
        axlstm.load_model(release)


def test_embed_of_a_release_with_a_bad_front_end_exits_1_naming_config_json(
    releases, tmp_path, capsys
):
    release = _edited(releases["test_axlstm"], tmp_path, lambda c: c["front_end"].update(n_mels=0))
    wav = tmp_path / "x.wav"
    sf.write(wav, torch.randn(16000).mul(0.1).numpy(), 16000)
    code = main(["embed", str(wav), "--model", str(release), "--out", str(tmp_path / "e.npz")])
    assert code == 1
    line = one_line_error(capsys)
    assert str(release / "config.json") in line and "n_mels" in line, line
    assert not (tmp_path / "e.npz").exists()


def test_a_key_without_value_that_no_config_knows_is_refused():
    """YAML reads "{num_heads:0}" (no space) as the key "num_heads:0" with no value; it must
    not be dropped like an unset option and train the default model."""
    with pytest.raises(ConfigError, match="'num_heads:0'"):
        axlstm.create_model("test_axlstm", **{"num_heads:0": None})
    assert axlstm.create_model("test_axlstm", depth=None).config.depth == 2  # unset: default
