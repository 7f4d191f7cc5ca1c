"""Model-level behaviour of the masked spectrogram model and the registry (the encoder contract
over every preset is tests/test_encoder_contract.py)."""

from __future__ import annotations

import json

import pytest
import torch

import axlstm
from axlstm.models import MaskedSpecModel, ModelConfig

ALL = axlstm.list_models()

# SPEC §3.4: trainable encoder parameters (without pred head and mask token), and all tensors.
EXPECTED_COUNTS = {
    "axlstm_tiny": (2_867_808, 2_965_600),
    "axlstm_small": (11_043_936, 11_313_184),
    "axlstm_base": (43_321_440, 44_154_784),
    "ssast_tiny": (5_351_424, 5_449_216),
    "ssast_small": (21_319_680, 21_588_928),
    "ssast_base": (85_106_688, 85_940_032),
}


def small(name: str, **kw) -> MaskedSpecModel:
    """The preset at its own width but at most two blocks, so every preset runs fast on CPU."""
    return axlstm.create_model(name, depth=2, **kw)


def test_registry_has_both_families_and_test_presets():
    assert set(EXPECTED_COUNTS) <= set(ALL)
    assert {"test_axlstm", "test_ssast"} <= set(ALL)
    assert axlstm.list_models("axlstm_*") == ["axlstm_base", "axlstm_small", "axlstm_tiny"]


@pytest.mark.parametrize("name", sorted(EXPECTED_COUNTS))
def test_parameter_counts_match_spec(name):
    model = axlstm.create_model(name)
    encoder, total = EXPECTED_COUNTS[name]
    assert model.num_parameters("encoder") == encoder
    assert model.num_parameters("all") == total


def test_axlstm_wrapper_shapes():
    model = small("axlstm_tiny")
    assert model.example_input(2).shape == (2, 1, 200, 80)
    assert model.frame_dim == 5 * 192 and model.frames_for(200) == 50
    assert model.pretrain_shapes(200) == {"pred": (250, 64), "mask": (250,), "num_masked": 125}


def test_create_model_overrides_and_none():
    model = axlstm.create_model("axlstm_tiny", embed_dim=64, depth=2, frame_layout="official")
    assert (model.embed_dim, len(model.blocks), model.config.frame_layout) == (64, 2, "official")
    model = axlstm.create_model("test_axlstm", depth=None, frame_layout=None)
    assert len(model.blocks) == 2 and model.config.frame_layout == "time"
    with pytest.raises(ValueError, match="unknown model"):
        axlstm.create_model("axlstm_huge")
    with pytest.raises(ValueError, match="unknown model config keys"):
        axlstm.create_model("test_axlstm", widht=3)
    with pytest.raises(ValueError, match="frame_layout"):
        axlstm.create_model("test_axlstm", frame_layout="sideways")


def test_blocks_alternate_direction():
    model = axlstm.create_model("axlstm_tiny", embed_dim=32, depth=4)
    assert [b.reverse for b in model.blocks] == [False, True, False, True]


def test_official_init_values():
    model = axlstm.create_model("axlstm_tiny")
    layer = model.blocks[0].layer
    cell = layer.mlstm_cell
    assert torch.equal(cell.fgate.bias, torch.linspace(3, 6, 4))
    assert torch.count_nonzero(cell.fgate.weight) == 0
    assert torch.count_nonzero(cell.igate.weight) == 0
    assert 0.05 < cell.igate.bias.std() < 0.3 or cell.igate.bias.abs().max() < 0.5
    assert torch.equal(layer.learnable_skip, torch.ones_like(layer.learnable_skip))
    assert torch.count_nonzero(model.blocks[0].norm.weight) == 0
    d = 192
    assert abs(layer.proj_up.weight.std().item() - (2 / (5 * d)) ** 0.5) < 5e-3
    assert abs(layer.proj_down.weight.std().item() - 2 / d**0.5) < 1e-2
    assert abs(layer.q_proj.weight.std().item() - (2 / (5 * d)) ** 0.5) < 5e-3
    assert abs(model.cls_token.std().item() - 0.02) < 0.01
    assert not model.pos_embed.requires_grad


@pytest.mark.parametrize("frames", [4, 100, 200, 404, 1000])
@pytest.mark.parametrize("name", ["test_axlstm", "test_ssast"])
def test_any_length(name, frames):
    model = axlstm.create_model(name).eval()
    with torch.no_grad():
        feats = model.forward_features(torch.randn(1, 1, frames, 80))
    assert feats.shape == (1, frames // 4, 5 * model.embed_dim)
    assert torch.isfinite(feats).all()


def test_bad_input_shapes_are_explained():
    model = axlstm.create_model("test_axlstm")
    with pytest.raises(ValueError, match=r"\(B, C, T, F\)"):
        model.forward_features(torch.randn(1, 200, 80))
    with pytest.raises(ValueError, match="time, frequency"):
        model.forward_features(torch.randn(1, 1, 80, 200))
    with pytest.raises(ValueError, match="fewer than one patch"):
        model.forward_features(torch.randn(1, 1, 3, 80))


def test_time_layout_frames_follow_time():
    """With a token-local model (no blocks), input at time patch t changes output frame t only."""
    model = axlstm.create_model("test_axlstm", depth=1).eval()
    model.blocks = torch.nn.ModuleList()  # a depth of 0 is not a valid config
    base = torch.zeros(1, 1, 200, 80)
    bumped = base.clone()
    bumped[..., 40:44, :] = 1.0  # time patch 10
    with torch.no_grad():
        diff = (model.forward_features(bumped) - model.forward_features(base)).abs().sum(-1)[0]
        changed = torch.nonzero(diff > 0).flatten().tolist()
        official = model.forward_features(bumped, frame_layout="official")
        official = (official - model.forward_features(base, frame_layout="official")).abs()
    assert changed == [10]
    assert torch.nonzero(official.sum(-1)[0] > 0).flatten().tolist() == [0, 1, 2, 3, 4]


def test_layer_choice():
    model = axlstm.create_model("test_axlstm", depth=3).eval()
    spec = torch.randn(1, 1, 200, 80)
    with torch.no_grad():
        _, hidden = model.encode(spec, return_hidden=True)
        mid = model.forward_features(spec, layer=1)
        last = model.forward_features(spec, layer=-1)
    torch.testing.assert_close(mid, model.tokens_to_frames(hidden[1][:, 1:]))
    torch.testing.assert_close(last, model.tokens_to_frames(hidden[2][:, 1:]))


def test_mask_tokens_get_positions_by_default():
    """SPEC §4/§9.2: with the official order every masked SSAST output is identical."""
    spec = torch.randn(1, 1, 200, 80)
    torch.manual_seed(0)
    official = axlstm.create_model("test_ssast", mask_token_pos=False).eval()
    fixed = axlstm.create_model("test_ssast").eval()
    fixed.load_state_dict(official.state_dict())
    mask = torch.zeros(1, 250)
    mask[0, ::2] = 1
    with torch.no_grad():
        pred_official = official(spec, mask=mask).pred[0, mask[0].bool()]
        pred_fixed = fixed(spec, mask=mask).pred[0, mask[0].bool()]
    spread = lambda p: (p - p.mean(0)).abs().max().item()  # noqa: E731
    assert spread(pred_official) < 1e-5
    assert spread(pred_fixed) > 1e-2


def test_masked_loss_scope():
    model = axlstm.create_model("test_axlstm", loss_scope="masked")
    spec = torch.randn(2, 1, 200, 80)
    out = model(spec)
    err = (out.pred - out.target).pow(2).mean(-1)
    torch.testing.assert_close(out.loss, err[out.mask.bool()].mean())
    assert not torch.allclose(out.loss, err.mean())


def test_config_round_trip():
    cfg = axlstm.create_model("test_ssast", attn_impl="eager").config
    assert ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_fused_attention_equals_eager():
    eager = axlstm.create_model("test_ssast", attn_impl="eager").eval()
    fused = axlstm.create_model("test_ssast", attn_impl="sdpa").eval()
    fused.load_state_dict(eager.state_dict())
    spec = torch.randn(2, 1, 200, 80)
    with torch.no_grad():
        torch.testing.assert_close(
            fused.forward_features(spec), eager.forward_features(spec), atol=1e-5, rtol=1e-5
        )


def test_load_model_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        axlstm.load_model(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"config\.json"):
        axlstm.load_model(tmp_path / "empty")
    model = axlstm.create_model("test_axlstm")
    model.save_pretrained(tmp_path / "rel")
    (tmp_path / "rel" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="safetensors"):
        axlstm.load_model(tmp_path / "rel")
    model.save_pretrained(tmp_path / "rel2")
    with pytest.raises(ValueError):
        axlstm.load_model(tmp_path / "rel2", embed_dim=64)
    loaded = axlstm.load_model(tmp_path / "rel2", frame_layout="official")
    assert loaded.config.frame_layout == "official"


@pytest.mark.parametrize("name", ["test_axlstm", "test_ssast", "test_ssam", "test_ssast_orig"])
def test_drop_path_in_training_only(name):
    plain = axlstm.create_model(name, depth=3)
    dropped = axlstm.create_model(name, depth=3, drop_path_rate=0.5)
    dropped.load_state_dict(plain.state_dict())  # drop path adds no weights
    assert [b.drop_path for b in dropped.blocks] == [0.0, 0.25, 0.5]  # linear from 0
    assert [b.drop_path for b in plain.blocks] == [0.0, 0.0, 0.0]
    bins = 128 if name == "test_ssast_orig" else 80
    x = torch.randn(16, 1, 64, bins, generator=torch.Generator().manual_seed(0))
    plain.eval(), dropped.eval()
    # evaluation: exactly the model without it
    assert torch.equal(plain.forward_features(x), dropped.forward_features(x))
    dropped.train()
    with torch.no_grad():
        torch.manual_seed(0)
        out = dropped.forward_features(x)
        torch.manual_seed(0)
        again = dropped.forward_features(x)
    assert torch.equal(out, again)  # seeded
    # a block drops its whole branch for some samples (output = input) and scales it by
    # 1 / keep for the others
    block = dropped.blocks[2]  # rate 0.5
    tokens = torch.randn(64, 10, dropped.embed_dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        branch = block.eval()(tokens) - tokens
        torch.manual_seed(0)
        y = block.train()(tokens)
    kept = [not torch.equal(y[i], tokens[i]) for i in range(64)]
    if name in (
        "test_ssast",
        "test_ssast_orig",
    ):  # two branches, each dropped: the input comes out for about 1/4
        assert 4 < 64 - sum(kept) < 32
        return
    assert 10 < sum(kept) < 54  # about half of 64
    k = torch.tensor(kept)
    # tolerance: the branch is recovered as (x + f(x)) - x, exact up to float32 rounding of x
    torch.testing.assert_close(y[k], tokens[k] + branch[k] / 0.5, rtol=1e-5, atol=1e-5)
