"""The original SSAST: official-checkpoint parity, geometry conversion, objective, presets.

Also the model contract for every SSAST-framework preset (original SSAST and SSAMBA), on the
short inputs the models themselves propose (``example_input``).
"""

from __future__ import annotations

import json
import random

import pytest
import torch

import axlstm
from axlstm.checkpoint import CheckpointError
from axlstm.layers.patch import adapt_pos_grid
from axlstm.models import SSASTOriginal
from axlstm.objectives.ssast import (
    block_mask_ids,
    cluster_mask_ids,
    mpc_accuracy,
    mpc_loss,
    random_mask_ids,
)
from conftest import fixture_dir, load_fixture
from tolerances import EPS32, assert_close_rel

TOL = dict(atol=1e-4, rtol=1e-4)
LOSS_TOL = dict(atol=1e-5, rtol=0)
VARIANTS = {
    "patch": ("ssast_orig_tiny_patch", "ft_s10_t128"),
    "frame": ("ssast_orig_tiny_frame", "ft_s1_t128"),
}
REDUCED = dict(embed_dim=64, depth=2, num_heads=4, mask_patch=50)  # the fixtures' reduction


def official(variant: str, **extra) -> SSASTOriginal:
    path = fixture_dir("ssast") / variant / "state_dict.pth"
    return axlstm.load_official(path, VARIANTS[variant][0], **{**REDUCED, **extra})


def fx(variant: str, name: str):
    return load_fixture("ssast", f"{variant}/{name}")


# ------------------------------------------------------------------------------------ parity
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_checkpoint_loads_with_its_geometry(variant):
    model = official(variant)
    assert model.config.img_size == (128, 128)  # from the frozen p_input_* tensors
    assert not model.training
    assert "p_input_tdim" not in model.state_dict()
    state = load_fixture("ssast", f"{variant}/state_dict.pth")
    torch.testing.assert_close(model.pos_embed, state["module.v.pos_embed"], atol=0, rtol=0)
    kept = official(variant, keep_unused_heads=True)
    torch.testing.assert_close(kept.head_dist.weight, state["module.v.head_dist.weight"])


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_encoder_matches_official(variant):
    model = official(variant)
    x, io, ref = (
        fx(variant, "input_fbank.pt"),
        fx(variant, "block_io.pt"),
        fx(variant, "pretrain_mpc.pt"),
    )
    with torch.no_grad():
        patches = model.patch_embed(model._to_image(x))
        block0_in = model.embed_tokens(x, ref["mask_index"])
        tokens, hidden = model.encode(x, ref["mask_index"], return_hidden=True)
    torch.testing.assert_close(patches, io["patch_embed_output"], **TOL)
    torch.testing.assert_close(block0_in, io["block0_input"], **TOL)
    torch.testing.assert_close(hidden[0], io["block0_output"], **TOL)
    torch.testing.assert_close(hidden[1], io["block1_output"], **TOL)
    torch.testing.assert_close(tokens, ref["encoder_output"], **TOL)
    # the official (B, T, F) layout and ours (B, 1, T, F) are the same input
    with torch.no_grad():
        torch.testing.assert_close(model.encode(x[:, None]), model.encode(x))


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_pretraining_heads_and_losses_match_official(variant):
    model = official(variant)
    x, mpc, mpg = (
        fx(variant, "input_fbank.pt"),
        fx(variant, "pretrain_mpc.pt"),
        fx(variant, "pretrain_mpg.pt"),
    )
    with torch.no_grad():
        c = model.mpc(x, mpc["mask_index"])
        g = model.mpg(x, mpg["mask_index"])
        joint = model(x, mask_index=(mpc["mask_index"], mpg["mask_index"]))
    torch.testing.assert_close(c.pred, mpc["pred"], **TOL)
    torch.testing.assert_close(c.target, mpc["target"], **TOL)
    torch.testing.assert_close(c.loss, mpc["nce"], **LOSS_TOL)
    assert c.acc.item() == pytest.approx(mpc["acc"].item(), abs=1e-7)  # official: softmax first
    torch.testing.assert_close(g.pred, mpg["pred"], **TOL)
    torch.testing.assert_close(g.tokens, mpg["encoder_output"], **TOL)
    torch.testing.assert_close(g.loss, mpg["mse"], **LOSS_TOL)
    torch.testing.assert_close(joint.loss, mpg["loss_joint"], **LOSS_TOL)
    torch.testing.assert_close(joint.nce, mpc["nce"], **LOSS_TOL)
    assert joint.pred.shape == joint.target.shape == (2, 50, 256)
    assert joint.mask.shape == (2, 64) and joint.mask.sum() == 100


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_seeded_masks_reproduce_official(variant):
    model = official(variant)
    x = fx(variant, "input_fbank.pt")
    for name in ("pretrain_mpc.pt", "pretrain_mpg.pt"):
        ref = fx(variant, name)
        random.seed(int(ref["seed"]))  # the official code draws from the global state
        assert torch.equal(model.draw_mask_index(x), ref["mask_index"])
        assert torch.equal(
            model.draw_mask_index(x, rng=random.Random(int(ref["seed"]))), ref["mask_index"]
        )


def test_mask_generators_match_official_cases():
    cases = json.loads((fixture_dir("ssast") / "mask_generator_cases.json").read_text())["cases"]
    assert len(cases) == 13
    for case in cases:
        rng = random.Random(case["seed"])
        if case["kind"] == "patch":
            ids = cluster_mask_ids(case["sequence_len"], case["mask_size"], case["p_t_dim"], rng)
        else:
            ids = random_mask_ids(case["sequence_len"], case["mask_size"], rng)
        assert ids == case["mask_id"], case["seed"]


# --------------------------------------------------------------------------- fine-tuning
def _load_head(model, params):
    with torch.no_grad():
        for i in (0, 1):
            model.mlp_head[i].weight.copy_(params[f"module.mlp_head.{i}.weight"])
            model.mlp_head[i].bias.copy_(params[f"module.mlp_head.{i}.bias"])


def _check_finetuned(model, ref, x):
    with torch.no_grad():
        torch.testing.assert_close(model.classify(x), ref["ft_avgtok"], **TOL)
        torch.testing.assert_close(model.classify(x, pool="cls"), ref["ft_cls"], **TOL)
        torch.testing.assert_close(model.pooled(x), ref["pooled_avgtok"], **TOL)
        torch.testing.assert_close(model.encode(x), ref["encoder_output"], **TOL)
        torch.testing.assert_close(
            model.patch_embed(model._to_image(x)), ref["patch_embed_output"], **TOL
        )


def test_official_finetuned_checkpoint_loads():
    path = fixture_dir("ssast") / "patch/ft_s10_t128_state_dict.pth"
    kw = dict(REDUCED, img_size=(128, 128), patch_stride=(10, 10))
    model = axlstm.load_official(path, "ssast_orig_tiny_patch", **kw)
    assert model.config.num_classes == 10 and not model.config.ssl_heads  # stated by the file
    _check_finetuned(model, fx("patch", "ft_s10_t128_forward.pt"), fx("patch", "input_fbank.pt"))
    with pytest.raises(ValueError, match="no pretraining heads"):
        model(fx("patch", "input_fbank.pt"))
    with pytest.raises(CheckpointError, match="patch_stride"):
        axlstm.load_official(path, "ssast_orig_tiny_patch", **REDUCED)


@pytest.mark.parametrize(
    "variant,name,change,crop",
    [
        ("patch", "ft_s10_t128", dict(patch_stride=(10, 10)), None),
        ("patch", "ft_s16_t64", dict(img_size=(64, 128)), 64),
        ("frame", "ft_s1_t128", dict(patch_stride=(1, 128)), None),
    ],
)
def test_adapt_reproduces_official_finetuning_conversion(variant, name, change, crop):
    """Stride change, centre crop and bilinear resizing of positions, as officially."""
    model = official(variant).adapt(num_classes=10, **change).eval()
    saved = "state_dict" if variant == "patch" and crop is None else "converted_params"
    params = load_fixture("ssast", f"{variant}/{name}_{saved}.pth")
    # bilinear resizing is a convex sum of <= 4 table entries with fp32 weights whose rounding
    # depends on the CPU kernel set (1-2 ulps off the fixture under ATEN_CPU_CAPABILITY=default):
    # 8 eps of the table scale; a wrong crop/stride/align_corners is off by ~1e-2 of it
    assert_close_rel(model.pos_embed, params["module.v.pos_embed"], 8 * EPS32, what="pos_embed")
    _load_head(model, params)
    x = fx(variant, "input_fbank.pt")
    _check_finetuned(model, fx(variant, f"{name}_forward.pt"), x[:, :crop] if crop else x)


def test_positions_for_other_lengths_follow_the_conversion():
    model = official("patch")
    table = model.pos_embed[:, 2:].transpose(1, 2).reshape(1, 64, 8, 8)
    longer = model.pos_embed_for((8, 20))  # input of 320 frames: bilinear in time
    assert longer.shape == (1, 2 + 160, 64)
    torch.testing.assert_close(
        longer[:, 2:].transpose(1, 2).reshape(1, 64, 8, 20), adapt_pos_grid(table, (8, 20))
    )
    shorter = model.pos_embed_for((8, 4))  # centre crop [2:6]
    torch.testing.assert_close(shorter[:, 2:].transpose(1, 2).reshape(1, 64, 8, 4), table[..., 2:6])
    with torch.no_grad():
        feats = model.forward_features(torch.randn(1, 1, 320, 128))
    assert feats.shape == (1, 20, 8 * 64)
    general = adapt_pos_grid(table[:, :, :1], (1, 20), mode="general")
    torch.testing.assert_close(general, adapt_pos_grid(table[:, :, :1], (1, 20)), atol=1e-6, rtol=0)


# -------------------------------------------------------------------------- objective
def test_mpc_directions_and_accuracy():
    torch.manual_seed(0)
    pred, target = torch.randn(2, 7, 16), torch.randn(2, 7, 16)
    scores = target @ pred.transpose(1, 2)  # rows: targets, columns: predictions
    code = -torch.diagonal(scores.log_softmax(-1), dim1=1, dim2=2).mean()
    paper = -torch.diagonal(scores.log_softmax(1), dim1=1, dim2=2).mean()
    torch.testing.assert_close(mpc_loss(pred, target).nce, code)
    torch.testing.assert_close(mpc_loss(pred, target, "paper").nce, paper)
    assert not torch.allclose(code, paper)
    official_acc = (scores.softmax(-1).argmax(1) == torch.arange(7)).float().mean()
    assert mpc_accuracy(pred, target) == official_acc
    with pytest.raises(ValueError, match="direction"):
        mpc_loss(pred, target, "both")


def test_cluster_masking_properties():
    rng = random.Random(0)
    counts = torch.zeros(512)
    for _ in range(200):
        ids = cluster_mask_ids(512, 400, 64, rng)
        assert ids == sorted(set(ids)) and len(ids) == 400 and 0 not in ids
        counts[ids] += 1
    rows = counts.view(8, 64).mean(1) / 200
    assert rows[0] < 0.5 < 0.8 < rows[3]  # the lowest band is under-masked (SPEC §A5)


def test_block_masking_is_uniform_and_does_not_wrap():
    rng = random.Random(0)
    counts = torch.zeros(8, 64)
    for _ in range(200):
        ids = block_mask_ids((8, 64), 400, rng)
        assert len(ids) == len(set(ids)) == 400
        counts.view(-1)[ids] += 1
    rows = counts.mean(1) / 200
    assert rows.min() > 0.6 and counts[0, 0] > 0  # patch 0 and the lowest band get masked
    assert block_mask_ids((2, 5), 9, random.Random(1)) != list(range(1, 10))


def test_objective_options():
    torch.manual_seed(0)
    x = torch.randn(2, 1, 128, 128)
    model = axlstm.create_model("test_ssast_orig").eval()
    with torch.no_grad():
        two = model(x, rng=random.Random(3))
        assert not torch.equal(two.mask_index, two.mask_index_c)  # independent masks
        one = axlstm.create_model("test_ssast_orig", joint_passes=1).eval()
        one.load_state_dict(model.state_dict())
        shared = one(x, rng=random.Random(3))
        assert torch.equal(shared.mask_index, shared.mask_index_c)
        given = model(x, mask_index=shared.mask_index)
        torch.testing.assert_close(given.loss, shared.loss)
        torch.testing.assert_close(given.loss, given.nce + 10 * given.mse)
        gen = [model(x, generator=torch.Generator().manual_seed(5)).mask_index for _ in range(2)]
        assert torch.equal(*gen)
    block = axlstm.create_model("test_ssast_orig", masking="block")
    assert block(x).mask.sum() == 100
    assert set(block(x).metrics()) == {"nce", "mse", "acc"}
    overlapping = axlstm.create_model("test_ssast_orig", patch_stride=(10, 10))
    with pytest.raises(ValueError, match="non-overlapping"):
        overlapping(x)
    assert model.num_masked(64) == 50 and model.num_masked(128) == 100
    with torch.device("meta"):
        full = axlstm.create_model("ssast_orig_tiny_patch", depth=2)
    assert full.num_masked(512) == 400 and full.num_masked(64) == 50


# ----------------------------------------------------------------------------- presets
OFFICIAL_COUNTS = {  # fixtures/ssast/param_counts.json: (encoder, total incl. frozen scalars)
    "tiny": (5_487_168, 6_046_290),
    "small": (21_591_168, 22_854_354),
    "base": (85_649_664, 88_763_346),
}


@pytest.mark.parametrize("size", list(OFFICIAL_COUNTS))
@pytest.mark.parametrize("variant", ["patch", "frame"])
def test_parameter_counts_match_official(size, variant):
    encoder, total = OFFICIAL_COUNTS[size]
    with torch.device("meta"):
        model = axlstm.create_model(f"ssast_orig_{size}_{variant}")
        kept = axlstm.create_model(f"ssast_orig_{size}_{variant}", keep_unused_heads=True)
    assert model.num_parameters("encoder") == encoder
    assert model.num_parameters("official") == total
    assert kept.num_parameters("all") + 2 == total == kept.num_parameters("official")
    D = model.embed_dim
    assert model.num_parameters("heads") == 2 * (D * D + D + 256 * D + 256) + D


def test_official_initialisation():
    torch.manual_seed(0)
    model = axlstm.create_model("ssast_orig_tiny_patch", depth=2)
    qkv = model.blocks[0].attn.qkv_layer
    assert abs(qkv.weight.std().item() - 0.02) < 2e-3 and torch.count_nonzero(qkv.bias) == 0
    assert qkv.weight.abs().max() <= 2.0
    assert abs(model.pos_embed.std().item() - 0.02) < 2e-3
    assert abs(model.mask_embed.std().item() - 192**-0.5) < 0.02
    bound = 1 / 16  # PyTorch's default conv init: U(±1/sqrt(256))
    assert model.patch_embed.proj.weight.abs().max() <= bound
    assert model.norm.eps == 1e-6 and model.blocks[0].norm1.eps == 1e-6


def test_wrong_checkpoint_is_explained():
    path = fixture_dir("ssast") / "patch/state_dict.pth"
    with pytest.raises(CheckpointError, match="embed_dim=64, depth=2"):
        axlstm.load_official(path, "ssast_orig_tiny_patch")
    with pytest.raises(CheckpointError, match=r"patch_size=\(16, 16\)"):
        axlstm.load_official(path, "ssast_orig_tiny_frame", **REDUCED)
    with pytest.raises(CheckpointError, match="ssast_orig"):
        axlstm.load_official(path, "ssast_tiny", embed_dim=64, depth=2, num_heads=4)
    with pytest.raises(CheckpointError, match="pretrained on 128 frames"):
        axlstm.load_official(path, "ssast_orig_tiny_patch", img_size=(1024, 128), **REDUCED)


# The encoder contract (shapes, gradients, release round trip) runs on every preset in
# tests/test_encoder_contract.py.


def test_bad_inputs_are_explained():
    model = axlstm.create_model("test_ssast_orig")
    with pytest.raises(ValueError, match=r"\(B, 1, T, 128\)"):
        model.forward_features(torch.randn(1, 1, 200, 80))
    with pytest.raises(ValueError, match="fewer than one patch"):
        model.forward_features(torch.randn(1, 1, 8, 128))
    with pytest.raises(ValueError, match="unknown model config keys"):
        axlstm.create_model("test_ssast_orig", frame_layout_x="time")
    with pytest.raises(ValueError, match="masking"):
        axlstm.create_model("test_ssast_orig", masking="spiral")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_official_fixture_on_gpu(variant):
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        model = official(variant).cuda()
        x, mpc, mpg = (
            fx(variant, "input_fbank.pt"),
            fx(variant, "pretrain_mpc.pt"),
            fx(variant, "pretrain_mpg.pt"),
        )
        with torch.no_grad():
            out = model(x.cuda(), mask_index=(mpc["mask_index"].cuda(), mpg["mask_index"].cuda()))
            feats = model.forward_features(x.cuda())
        torch.testing.assert_close(out.pred_c.cpu(), mpc["pred"], **TOL)
        torch.testing.assert_close(out.loss.cpu(), mpg["loss_joint"], **LOSS_TOL)
        with torch.no_grad():
            torch.testing.assert_close(feats.cpu(), official(variant).forward_features(x), **TOL)
        gen = torch.Generator(device="cuda").manual_seed(0)
        assert model.train()(x.cuda(), generator=gen).mask.device.type == "cuda"
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old
