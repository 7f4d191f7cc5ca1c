"""SSAMBA: official-checkpoint parity block by block, its quirks and their corrections, presets."""

from __future__ import annotations

import math
import random

import pytest
import torch
import torch.nn.functional as F

import axlstm
from axlstm.models import SSAMBA
from conftest import fixture_dir, load_fixture
from tolerances import EPS32, assert_close_rel

TOL = dict(atol=1e-4, rtol=1e-4)
LOSS_TOL = dict(atol=1e-5, rtol=0)
REDUCED = dict(embed_dim=64, depth=4, mask_patch=50)  # the fixture's reduction


def official(**extra) -> SSAMBA:
    path = fixture_dir("ssamba") / "state_dict.pth"
    return axlstm.load_official(path, "ssamba_tiny", **{**REDUCED, **extra})


def fx(name: str):
    return load_fixture("ssamba", name)


def test_blocks_pairs_and_norms_match_official():
    """Every stored intermediate: the pairing, the flips, the doubling residual, norm_f twice."""
    model = official()
    x, io, mpc = fx("input_fbank.pt"), fx("block_io.pt"), fx("pretrain_mpc.pt")
    L = model.layers
    with torch.no_grad():
        X = model.embed_tokens(x, mpc["mask_index"])
        h0, r0 = L[0](X)
        h1, r1 = L[1](X.flip(1))
        H1, R1 = h0 + h1.flip(1), r0 + r1.flip(1)
        h2, r2 = L[2](H1, R1)
        h3, r3 = L[3](H1.flip(1), R1.flip(1))
        R2 = r2 + r3.flip(1)
        final_in = R2 + h2 + h3.flip(1)
    torch.testing.assert_close(
        model.patch_embed(model._to_image(x)), io["patch_embed_output"], **TOL
    )
    torch.testing.assert_close(X, io["block0_input"], **TOL)
    torch.testing.assert_close(h0, io["block0_output_hidden"], **TOL)
    torch.testing.assert_close(r0, io["block0_output_residual"], **TOL)
    torch.testing.assert_close(h1, io["layer1_out_hidden"], **TOL)  # in flipped token order
    torch.testing.assert_close(H1, io["layer2_in_hidden"], **TOL)
    assert torch.equal(R1, 2 * X)  # the residual doubles after the first pair (quirk 5)
    torch.testing.assert_close(r2, io["layer2_out_residual"], **TOL)
    torch.testing.assert_close(h2, io["layer2_out_hidden"], **TOL)
    torch.testing.assert_close(h3, io["layer3_out_hidden"], **TOL)
    torch.testing.assert_close(final_in, io["norm_f_first_in"], **TOL)
    with torch.no_grad():
        tokens, hidden = model.encode(x, mpc["mask_index"], return_hidden=True)
        first = model.norm_f(final_in)
    torch.testing.assert_close(hidden[-1], io["norm_f_first_in"], **TOL)
    torch.testing.assert_close(first, io["norm_f_first_out"], **TOL)
    torch.testing.assert_close(tokens, model.norm_f(first), **TOL)  # applied twice (quirk 6)
    torch.testing.assert_close(tokens, mpc["encoder_output"], **TOL)
    assert model.num_layers == len(hidden) == 2


def test_pretraining_heads_and_losses_match_official():
    model = official()
    x, mpc, mpg = fx("input_fbank.pt"), fx("pretrain_mpc.pt"), fx("pretrain_mpg.pt")
    with torch.no_grad():
        c = model.mpc(x, mpc["mask_index"])
        g = model.mpg(x, mpg["mask_index"])
        joint = model(x, mask_index=(mpc["mask_index"], mpg["mask_index"]))
    torch.testing.assert_close(c.pred, mpc["pred"], **TOL)
    torch.testing.assert_close(c.target, mpc["target"], **TOL)
    torch.testing.assert_close(c.loss, mpc["nce"], **LOSS_TOL)
    assert c.acc.item() == pytest.approx(mpc["acc"].item(), abs=1e-7)
    torch.testing.assert_close(g.pred, mpg["pred"], **TOL)
    torch.testing.assert_close(g.tokens, mpg["encoder_output"], **TOL)
    torch.testing.assert_close(g.loss, mpg["mse"], **LOSS_TOL)
    torch.testing.assert_close(joint.loss, mpg["loss_joint"], **LOSS_TOL)
    for ref in (mpc, mpg):
        random.seed(int(ref["seed"]))
        assert torch.equal(model.draw_mask_index(x), ref["mask_index"])


def test_chunked_scan_gives_the_same_model_outputs():
    model = official(scan_impl="chunked", chunk_size=16)
    x, mpc = fx("input_fbank.pt"), fx("pretrain_mpc.pt")
    with torch.no_grad():
        torch.testing.assert_close(model.encode(x, mpc["mask_index"]), mpc["encoder_output"], **TOL)


def test_official_finetuned_checkpoint_and_conversion():
    x, ref = fx("input_fbank.pt"), fx("ft_s10_t128_forward.pt")
    path = fixture_dir("ssamba") / "ft_s10_t128_state_dict.pth"
    model = axlstm.load_official(
        path, "ssamba_tiny", **REDUCED, img_size=(128, 128), patch_stride=(10, 10)
    )
    assert model.config.num_classes == 10 and not model.config.ssl_heads
    with torch.no_grad():
        torch.testing.assert_close(model.classify(x), ref["ft_avgtok"], **TOL)
        torch.testing.assert_close(model.classify(x, pool="cls"), ref["ft_cls"], **TOL)
        torch.testing.assert_close(model.pooled(x, "cls"), ref["pooled_cls"], **TOL)
        tokens = model.encode(x)
        torch.testing.assert_close(tokens, ref["encoder_output"], **TOL)
        torch.testing.assert_close(model.embed_tokens(x), ref["block0_input"], **TOL)
    converted = official().adapt(patch_stride=(10, 10), num_classes=10)
    # bilinear resizing with fp32 weights: CPU-dependent to 1-2 ulps (see test_ssast_original)
    assert_close_rel(converted.pos_embed, model.pos_embed, 8 * EPS32, what="pos_embed")


def test_rmsnorm_checkpoint_is_detected():
    path = fixture_dir("ssamba") / "rmsnorm_d2/state_dict.pth"
    model = axlstm.load_official(path, "ssamba_tiny", embed_dim=64, depth=2, mask_patch=50)
    assert model.config.norm == "rms" and not hasattr(model.norm_f, "bias")
    ref = fx("rmsnorm_d2/pretrain_mpc.pt")
    with torch.no_grad():
        out = model.mpc(fx("input_fbank.pt"), ref["mask_index"])
    torch.testing.assert_close(out.tokens, ref["encoder_output"], **TOL)
    torch.testing.assert_close(out.pred, ref["pred"], **TOL)
    torch.testing.assert_close(out.loss, ref["nce"], **LOSS_TOL)


# ---------------------------------------------------------------------- quirks, corrected
def test_corrected_options():
    base = official()
    x, mask = fx("input_fbank.pt"), fx("pretrain_mpc.pt")["mask_index"]
    state = base.state_dict()

    def variant(**kw):
        m = axlstm.create_model("ssamba_tiny", **REDUCED, img_size=(128, 128), **kw).eval()
        m.load_state_dict(state)
        return m

    with torch.no_grad():
        ref_tokens, ref_hidden = base.encode(x, mask, return_hidden=True)
        once = variant(final_norm_twice=False).encode(x, mask)
        torch.testing.assert_close(base.norm_f(once), ref_tokens, **TOL)
        X = base.embed_tokens(x, mask)
        _, hidden = variant(residual_doubling=False).encode(x, mask, return_hidden=True)
        _, r0 = base.layers[0](X)
        h0, _ = base.layers[0](X)
        h1, _ = base.layers[1](X.flip(1))
        torch.testing.assert_close(hidden[0], X + h0 + h1.flip(1), **TOL)  # R1 = X, not 2X
        middle = variant(cls_position="middle")
        order = middle.encoder_order(64)
        assert order[32] == 0 and sorted(order.tolist()) == list(range(65))
        mid = middle.encode(x, mask)
        assert mid.shape == ref_tokens.shape and not torch.allclose(mid, ref_tokens, atol=1e-3)
    fixed = axlstm.create_model("ssamba_tiny", backward_dt_bias="mamba", depth=2)
    dt_b = F.softplus(fixed.layers[0].mixer.dt_proj_b.bias)
    assert 0.0009 < dt_b.min() and dt_b.max() < 0.1001
    with pytest.raises(ValueError, match="even"):
        axlstm.create_model("ssamba_tiny", depth=3)


def test_drop_path_only_in_training():
    model = axlstm.create_model("test_ssamba", depth=4, drop_path_rate=0.5)
    assert [round(layer.drop_path, 4) for layer in model.layers] == [0.0, 0.0, 0.1667, 0.3333]
    x = model.example_input(2)
    with torch.no_grad():
        model.eval()
        a, b = model.encode(x), model.encode(x)
        assert torch.equal(a, b)
        model.train()
        torch.manual_seed(0)
        outs = [model.encode(x) for _ in range(4)]
    assert any(not torch.equal(outs[0], o) for o in outs[1:])


# ----------------------------------------------------------------------------- presets
OFFICIAL_COUNTS = {  # fixtures/ssamba/param_counts.json: (encoder, total incl. frozen scalars)
    "tiny": (6_922_176, 7_288_298),
    "small": (25_345_920, 26_224_106),
    "base": (96_698_112, 99_042_794),
}


@pytest.mark.parametrize("size", list(OFFICIAL_COUNTS))
def test_parameter_counts_match_official(size):
    encoder, total = OFFICIAL_COUNTS[size]
    with torch.device("meta"):
        model = axlstm.create_model(f"ssamba_{size}")
        kept = axlstm.create_model(f"ssamba_{size}", keep_unused_heads=True)
        rms = axlstm.create_model(f"ssamba_{size}", norm="rms")
    assert model.num_parameters("encoder") == encoder
    assert model.num_parameters("official") == total == kept.num_parameters("all") + 2
    assert rms.num_parameters("official") == total - 25 * model.embed_dim


def test_official_initialisation():
    torch.manual_seed(0)
    model = axlstm.create_model("ssamba_tiny", depth=4)
    E, depth = 384, model.config.depth
    for layer in model.layers:
        mixer = layer.mixer
        assert torch.count_nonzero(mixer.dt_proj_b.bias) == 0  # zeroed by Vim's init (quirk 7)
        dt = F.softplus(mixer.dt_proj.bias)
        assert 0.0009 < dt.min() and dt.max() < 0.1001
        assert torch.equal(mixer.A_log, torch.log(torch.arange(1.0, 17.0)).expand(E, 16))
        assert torch.equal(mixer.A_b_log, mixer.A_log)
        assert torch.equal(mixer.D, torch.ones(E)) and torch.equal(mixer.D_b, torch.ones(E))
        bound = 1 / math.sqrt(E) / math.sqrt(depth)  # GPT-2 rescale by the model's depth
        assert mixer.out_proj.weight.abs().max() <= bound + 1e-7
        assert mixer.in_proj.bias is None and layer.norm.eps == 1e-5
    assert model.norm_f.eps == 1e-5
    assert abs(model.pos_embed.std().item() - 0.02) < 2e-3


# --------------------------------------------------------------------------------- GPU
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("scan_impl", ["auto", "sequential", "chunked"])
def test_official_fixture_on_gpu(scan_impl):
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        model = official(scan_impl=scan_impl).cuda()
        mpc = fx("pretrain_mpc.pt")
        with torch.no_grad():
            out = model.mpc(fx("input_fbank.pt").cuda(), mpc["mask_index"].cuda())
        torch.testing.assert_close(out.tokens.cpu(), mpc["encoder_output"], **TOL)
        torch.testing.assert_close(out.loss.cpu(), mpc["nce"], **LOSS_TOL)
        cpu, gpu = official(), official(scan_impl=scan_impl).cuda().train()
        cpu.train()
        x = fx("input_fbank.pt")
        masks = (mpc["mask_index"], fx("pretrain_mpg.pt")["mask_index"])
        torch.manual_seed(0)  # drop path draws differ between devices: compare without it
        for m in (cpu, gpu):
            for layer in m.layers:
                layer.drop_path = 0.0
            m.config.drop_path_rate = 0.0
        cpu(x, mask_index=masks).loss.backward()
        gpu(x.cuda(), mask_index=tuple(i.cuda() for i in masks)).loss.backward()
        for (k, p_c), p_g in zip(cpu.named_parameters(), gpu.parameters(), strict=True):
            torch.testing.assert_close(p_g.grad.cpu(), p_c.grad, atol=1e-4, rtol=1e-3, msg=k)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_training_step_on_gpu(dtype):
    model = axlstm.create_model("ssamba_tiny", depth=4).cuda().train()
    spec = model.example_input(4, frames=256).cuda()
    with torch.autocast("cuda", dtype=dtype):
        out = model(spec)
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
