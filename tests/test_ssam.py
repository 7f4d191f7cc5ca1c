"""SSAM (Audio Mamba): unidirectional Mamba blocks in the AxLSTM masked spectrogram model."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

import axlstm
from axlstm.layers import MambaBlock


def mamba_encoder_count(D: int, depth: int = 12, N: int = 24, expand: int = 3, K: int = 4) -> int:
    """Analytic encoder size (SPEC §10): patch embed, cls, blocks, final norm."""
    E, R = expand * D, math.ceil(D / 16)
    mixer = 2 * E * D + (E * K + E) + E * (R + 2 * N) + (R * E + E) + E * N + E + E * D
    return (4 * 16 * D + D) + D + depth * (mixer + 2 * D) + 2 * D


@pytest.mark.parametrize(
    "name,dim,millions",
    [("ssam_tiny", 192, 4.71), ("ssam_small", 384, 17.72), ("ssam_base", 768, 68.61)],
)
def test_parameter_counts(name, dim, millions):
    with torch.device("meta"):
        model = axlstm.create_model(name)
    assert model.num_parameters("encoder") == mamba_encoder_count(dim)
    assert round(model.num_parameters("encoder") / 1e6, 2) == millions  # SPEC §10 estimate
    block = model.blocks[0]
    assert isinstance(block, MambaBlock)
    mixer = block.mixer
    assert (mixer.d_state, mixer.d_inner, mixer.d_conv, mixer.dt_rank) == (
        24,
        3 * dim,
        4,
        dim // 16,
    )


def test_blocks_are_unidirectional_and_pre_norm():
    torch.manual_seed(0)
    model = axlstm.create_model("test_ssam", depth=3).eval()
    x = torch.randn(1, 40, 32)
    bumped = x.clone()
    bumped[:, 25] += 1.0

    def run(h):
        for block in model.blocks:
            h = block(h)
        return h

    with torch.no_grad():
        diff = (run(bumped) - run(x)).abs().sum(-1)[0]
        block = model.blocks[0]
        torch.testing.assert_close(block(x), x + block.mixer(block.norm(x)))
    assert torch.all(diff[:25] == 0) and diff[25] > 0 and diff[26] > 0  # causal: no flipping


def test_initialisation():
    torch.manual_seed(0)
    model = axlstm.create_model("ssam_tiny", depth=4)
    for block in model.blocks:
        mixer = block.mixer
        assert mixer.out_proj.weight.abs().max() <= 1 / math.sqrt(576) / math.sqrt(4) + 1e-7
        dt = F.softplus(mixer.dt_proj.bias)
        assert 0.0009 < dt.min() and dt.max() < 0.1001
        assert torch.equal(mixer.A_log[0], torch.log(torch.arange(1.0, 25.0)))
        assert block.norm.eps == 1e-5 and torch.equal(block.norm.weight, torch.ones(192))


def test_scan_choice_and_training_step():
    torch.manual_seed(0)
    spec = torch.randn(2, 1, 40, 80)
    seq = axlstm.create_model("test_ssam", scan_impl="sequential").eval()
    chunked = axlstm.create_model("test_ssam", scan_impl="chunked").eval()
    chunked.load_state_dict(seq.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(
            chunked.forward_features(spec), seq.forward_features(spec), atol=1e-5, rtol=1e-5
        )
    out = seq.train()(spec)
    out.loss.backward()
    assert all(p.grad is not None for p in seq.parameters() if p.requires_grad)
    with pytest.raises(ValueError, match="scan impl"):
        axlstm.create_model("test_ssam", scan_impl="magic")


def test_old_releases_still_load(tmp_path):
    """A release written before model_class and the Mamba fields existed loads unchanged."""
    model = axlstm.create_model("test_axlstm").eval()
    model.save_pretrained(tmp_path / "rel")
    path = tmp_path / "rel" / "config.json"
    cfg = json.loads(path.read_text())
    assert cfg["model_class"] == "masked_spec"
    del cfg["model_class"]
    for key in ("d_state", "dt_rank", "scan_impl", "residual_in_fp32"):
        del cfg["model"][key]
    path.write_text(json.dumps(cfg))
    loaded = axlstm.load_model(tmp_path / "rel")
    assert type(loaded) is axlstm.MaskedSpecModel and loaded.config == model.config
    cfg["model_class"] = "transformer_xl"
    path.write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="unknown model_class"):
        axlstm.load_model(tmp_path / "rel")
