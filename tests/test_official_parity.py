"""Numerical parity with golden tensors produced by the official AxLSTM code (SPEC §2-§6)."""

from __future__ import annotations

import os
import pickle
import zipfile

import pytest
import torch

import axlstm
from axlstm.checkpoint import CheckpointError, read_checkpoint
from conftest import fixture_dir, load_fixture

TOL = dict(atol=1e-4, rtol=1e-4)

# name -> (preset, overrides reproducing the fixture's constructor kwargs)
FIXTURES = {
    "axlstm_a": ("axlstm_tiny", dict(embed_dim=64, depth=2)),
    "axlstm_b": ("axlstm_tiny", dict(embed_dim=64, depth=4)),
    "ssast_c": ("ssast_tiny", dict(embed_dim=64, depth=2, num_heads=4)),
}
# The official wrapper's behaviour, needed to reproduce its tensors exactly.
OFFICIAL = dict(frame_layout="official", mask_token_pos=False)


def official_model(name: str, **extra):
    arch, kw = FIXTURES[name]
    path = fixture_dir("official") / name / "state_dict.pth"
    return axlstm.load_official(path, arch, **{**kw, **OFFICIAL, **extra})


def fx(name: str, rel: str):
    return load_fixture("official", f"{name}/{rel}")


@pytest.mark.parametrize("name", list(FIXTURES))
def test_features_match(name):
    model = official_model(name)
    with torch.no_grad():
        feats = model.forward_features(fx(name, "input_lms.pt"))
    torch.testing.assert_close(feats, fx(name, "features.pt"), **TOL)


@pytest.mark.parametrize("name", list(FIXTURES))
def test_block_outputs_match(name):
    model = official_model(name)
    io = fx(name, "block0_io.pt")
    x = fx(name, "input_lms.pt")
    with torch.no_grad():
        tokens, hidden = model.encode(x, return_hidden=True)
        block0 = model.blocks[0](io["input"])
    torch.testing.assert_close(block0, io["output"], **TOL)
    assert len(hidden) == len(io["block_outputs"])
    for ours, ref in zip(hidden, io["block_outputs"], strict=True):
        torch.testing.assert_close(ours, ref, **TOL)
    torch.testing.assert_close(tokens, io["encoder_norm_output"], **TOL)
    if "patch_embed_output" in io:
        with torch.no_grad():
            torch.testing.assert_close(model.patch_embed(x), io["patch_embed_output"], **TOL)


@pytest.mark.parametrize("name", list(FIXTURES))
def test_pretraining_forward_given_mask(name):
    model = official_model(name)
    ref = fx(name, "pretrain_forward.pt")
    with torch.no_grad():
        out = model(fx(name, "input_lms.pt"), mask=ref["mask"])
    torch.testing.assert_close(out.target, ref["target"], **TOL)
    torch.testing.assert_close(out.pred, ref["pred"], **TOL)
    torch.testing.assert_close(out.loss, ref["loss_official_all_patches"], **TOL)
    masked = axlstm.objectives.msm_loss(out.pred, out.target, out.mask, scope="masked")
    torch.testing.assert_close(masked, ref["loss_masked_patches_only"], **TOL)


@pytest.mark.parametrize("name", list(FIXTURES))
def test_seed_reproduces_official_mask(name):
    model = official_model(name)
    ref = fx(name, "pretrain_forward.pt")
    torch.manual_seed(int(ref["seed"]))
    with torch.no_grad():
        out = model(fx(name, "input_lms.pt"))
    assert torch.equal(out.mask, ref["mask"].to(out.mask.dtype))
    assert torch.equal(out.ids_restore, ref["ids_restore"])
    torch.testing.assert_close(out.pred, ref["pred"], **TOL)


@pytest.mark.parametrize("name", ["axlstm_a", "ssast_c"])
def test_gradients_match(name):
    model = official_model(name).train()
    ref = fx(name, "grads.pt")
    torch.manual_seed(42)
    out = model(fx(name, "input_lms.pt"))
    out.loss.backward()
    torch.testing.assert_close(out.loss.detach(), ref["loss"], **TOL)
    grads = {k: p.grad for k, p in model.named_parameters() if p.requires_grad}
    assert set(grads) == set(ref["grads"])
    for key, g in grads.items():
        torch.testing.assert_close(g, ref["grads"][key], **TOL, msg=lambda m, k=key: f"{k}: {m}")


def test_mlstm_block_internals_match():
    """Every intermediate of block 0's mLSTM layer (batch element 0) against the official run.

    The readable reference path of the layer exposes q, k, v and the gates as module outputs;
    the fast path is checked against it in test_mlstm.py.
    """
    model = official_model("axlstm_a")
    ref = fx("axlstm_a", "block0_internals.pt")
    io = fx("axlstm_a", "block0_io.pt")
    layer = model.blocks[0].layer
    seen = {}
    hooks = [
        model.blocks[0].norm.register_forward_hook(lambda m, i, o: seen.update(norm_out=o)),
        layer.conv1d.register_forward_hook(lambda m, i, o: seen.update(conv1d_out=o)),
        layer.q_proj.register_forward_hook(lambda m, i, o: seen.update(q=o)),
        layer.k_proj.register_forward_hook(lambda m, i, o: seen.update(k=o)),
        layer.v_proj.register_forward_hook(lambda m, i, o: seen.update(v=o)),
        layer.mlstm_cell.register_forward_hook(lambda m, i, o: seen.update(mlstm_cell_out=o)),
        layer.proj_down.register_forward_pre_hook(lambda m, i: seen.update(proj_down_in=i[0])),
    ]
    with torch.no_grad():
        block = model.blocks[0]
        out = io["input"] + layer.forward_reference(block.norm(io["input"]))
        torch.testing.assert_close(out, io["output"], **TOL)
        q, k, v = seen["q"], seen["k"], seen["v"]
        igate, fgate = layer.mlstm_cell.gates(q, k, v)
        cell = layer.mlstm_cell
        h = axlstm.layers.mlstm_parallel(cell.heads(q), cell.heads(k), cell.heads(v), igate, fgate)
    for hook in hooks:
        hook.remove()
    for key in ("norm_out", "conv1d_out", "q", "k", "v", "mlstm_cell_out", "proj_down_in"):
        torch.testing.assert_close(seen[key][0], ref[key], **TOL, msg=lambda m, k=key: f"{k}: {m}")
    torch.testing.assert_close(igate[0].T, ref["igate_preact"], **TOL)
    torch.testing.assert_close(fgate[0].T, ref["fgate_preact"], **TOL)
    torch.testing.assert_close(h[0], ref["h_tilde_before_outnorm"], **TOL)


def test_positions_match_official_table():
    model = official_model("axlstm_a")
    ours = axlstm.layers.sincos_pos_embed_2d(50, 5, 64)[None]
    state = torch.load(fixture_dir("official") / "axlstm_a/state_dict.pth", weights_only=True)[
        "model"
    ]
    torch.testing.assert_close(ours, state["pos_embed"], atol=2e-6, rtol=0)
    # positions past the training length extend the same table
    longer = model.pos_embed_for(120)
    torch.testing.assert_close(longer[:, :251], model.pos_embed, atol=2e-6, rtol=0)


def test_full_training_checkpoint_loads_safely():
    """The official full checkpoint pickles argparse/ml_collections objects: read, not run."""
    path = fixture_dir("official") / "axlstm_a/checkpoint_full.pth"
    with pytest.raises(Exception):  # noqa: B017  torch itself refuses it in weights-only mode
        torch.load(path, weights_only=True)
    obj = read_checkpoint(path)
    assert set(obj) >= {"model", "optimizer", "epoch", "args"}
    assert obj["epoch"] == 99
    model = axlstm.load_official(path, "axlstm_tiny", embed_dim=64, depth=2, **OFFICIAL)
    with torch.no_grad():
        feats = model.forward_features(fx("axlstm_a", "input_lms.pt"))
    torch.testing.assert_close(feats, fx("axlstm_a", "features.pt"), **TOL)


class _Exploit:
    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (os.mkdir, (self.target,))


def test_malicious_pickle_is_not_executed(tmp_path):
    """A checkpoint whose pickle calls os.mkdir must not run it."""
    victim = tmp_path / "pwned"
    model = axlstm.create_model("test_axlstm")
    path = tmp_path / "evil.pth"
    torch.save({"model": model.state_dict(), "payload": _Exploit(str(victim))}, path)
    with zipfile.ZipFile(path) as zf:  # the payload really is in the pickle
        assert any(b"mkdir" in zf.read(n) for n in zf.namelist() if n.endswith(".pkl"))
    try:
        loaded = axlstm.load_official(path, "test_axlstm")
    except CheckpointError:
        loaded = None
    assert not victim.exists()
    if loaded is not None:
        for key, value in model.state_dict().items():
            torch.testing.assert_close(loaded.state_dict()[key], value)


def test_architecture_mismatch_is_explained():
    path = fixture_dir("official") / "axlstm_a/state_dict.pth"
    with pytest.raises(CheckpointError, match="embed_dim=64"):
        axlstm.load_official(path, "axlstm_tiny")
    with pytest.raises(CheckpointError, match="family"):
        axlstm.load_official(path, "ssast_tiny", embed_dim=64, depth=2, num_heads=4)


def test_not_a_checkpoint(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(pickle.dumps({"x": 1})[:5])
    with pytest.raises(CheckpointError, match=r"bad\.pth"):
        axlstm.load_official(bad, "test_axlstm")
    with pytest.raises(FileNotFoundError, match=r"missing\.pth"):
        axlstm.load_official(tmp_path / "missing.pth", "test_axlstm")


def test_time_layout_is_a_regrouping_of_official_frames():
    """Default frames hold the n_f tokens of one time step; the official ones mix time steps."""
    official = official_model("axlstm_a")
    fixed = official_model("axlstm_a", frame_layout="time")
    x = fx("axlstm_a", "input_lms.pt")
    with torch.no_grad():
        a = official.forward_features(x)  # (B, 50, 5d)
        b = fixed.forward_features(x)
        tokens = fixed.encode(x)[:, 1:]  # (B, 250, d), time-major n = 5 t + f
    d = 64
    for t in (0, 7, 49):
        torch.testing.assert_close(b[:, t], tokens[:, 5 * t : 5 * t + 5].reshape(2, 5 * d))
    # official frame u = 5 r + g, block j holds token (t = 10 j + r, f = g) (SPEC §6.1)
    for u in (0, 3, 17, 49):
        r, g = divmod(u, 5)
        for j in range(5):
            torch.testing.assert_close(
                a[:, u, j * d : (j + 1) * d], tokens[:, 5 * (10 * j + r) + g]
            )
