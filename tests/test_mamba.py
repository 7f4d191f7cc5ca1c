"""Mamba in pure PyTorch: the selective scan's forms agree, the mixers follow the reference."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from axlstm.layers.mamba import (
    BiMambaMixer,
    MambaBlock,
    MambaMixer,
    causal_depthwise_conv1d,
    inverse_softplus,
)
from axlstm.layers.scan import has_cuda_scan, selective_scan
from conftest import load_fixture

TOL = dict(atol=1e-4, rtol=1e-4)


def reference_scan(u, delta, A, B, C, D, z, delta_bias):
    """An independent statement of SPEC-SSAST-SSAMBA §C1, one token at a time (fp64)."""
    u, delta, A, B, C, D, z, delta_bias = (
        t.double() for t in (u, delta, A, B, C, D, z, delta_bias)
    )
    Bsz, E, L = u.shape
    G = 1 if B.dim() == 3 else B.shape[1]
    if B.dim() == 3:
        B, C = B.unsqueeze(1), C.unsqueeze(1)
    group = torch.arange(E) // (E // G)
    h = torch.zeros(Bsz, E, A.shape[1], dtype=torch.float64)
    ys = []
    for t in range(L):
        dt = F.softplus(delta[:, :, t] + delta_bias)  # (B, E)
        B_t, C_t = B[:, group, :, t], C[:, group, :, t]  # (B, E, N)
        h = torch.exp(dt[..., None] * A) * h + (dt * u[:, :, t])[..., None] * B_t
        ys.append((h * C_t).sum(-1) + D * u[:, :, t])
    return torch.stack(ys, dim=-1) * F.silu(z)


def scan_inputs(Bsz=2, E=6, L=37, N=5, groups=1, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype)  # noqa: E731
    bshape = (Bsz, N, L) if groups == 1 else (Bsz, groups, N, L)
    A = -torch.exp(torch.log(torch.arange(1, N + 1, dtype=dtype)).expand(E, N))
    return dict(
        u=r(Bsz, E, L),
        delta=r(Bsz, E, L),
        A=A,
        B=r(*bshape),
        C=r(*bshape),
        D=r(E),
        z=r(Bsz, E, L),
        delta_bias=r(E) - 2,
    )


def run(inputs, impl, **kw):
    x = dict(inputs)
    return selective_scan(**x, delta_softplus=True, impl=impl, **kw)


@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize(
    "impl,chunk",
    [("sequential", 32), ("chunked", 1), ("chunked", 7), ("chunked", 16), ("chunked", 64)],
)
def test_scans_equal_step_by_step_reference(impl, chunk, groups):
    inputs = scan_inputs(groups=groups, E=6 if groups == 1 else 8)
    ref = reference_scan(**inputs)
    with torch.no_grad():
        y = run(inputs, impl, chunk_size=chunk)
    torch.testing.assert_close(y.double(), ref, atol=1e-5, rtol=1e-5)
    grad_inputs = {k: v.clone().requires_grad_() for k, v in inputs.items()}
    y_grad = run(grad_inputs, impl, chunk_size=chunk)  # the autograd path of the same form
    torch.testing.assert_close(y_grad.double(), ref, atol=1e-5, rtol=1e-5)
    f64 = {k: v.double() for k, v in inputs.items()}
    with torch.no_grad():
        torch.testing.assert_close(run(f64, impl, chunk_size=chunk), ref, atol=1e-12, rtol=1e-12)


def test_scan_gradients_agree():
    """fp64: both forms have the reference's gradients; gradcheck of the hand-written backward."""
    inputs = {k: v.double() for k, v in scan_inputs(E=4, L=19, N=3, groups=2).items()}
    grads = {}
    for impl in ("sequential", "chunked", "reference"):
        x = {k: v.clone().requires_grad_() for k, v in inputs.items()}
        y = reference_scan(**x) if impl == "reference" else run(x, impl, chunk_size=4)
        (y * torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y)).sum().backward()
        grads[impl] = {k: v.grad for k, v in x.items()}
    for impl in ("sequential", "chunked"):
        for k, g in grads["reference"].items():
            torch.testing.assert_close(grads[impl][k], g, atol=1e-10, rtol=1e-10, msg=k)
    small = {k: v.double().requires_grad_() for k, v in scan_inputs(1, 3, 6, 2, groups=1).items()}
    names = list(small)

    def f(*xs):
        return run(dict(zip(names, xs, strict=True)), "sequential")

    assert torch.autograd.gradcheck(f, tuple(small.values()))


def test_last_state_and_long_sequences_stay_finite():
    inputs = scan_inputs(L=300, N=8)
    inputs["delta_bias"] = inputs["delta_bias"] + 4  # large steps: products of a underflow to 0
    y_seq, h_seq = run(inputs, "sequential", return_last_state=True)
    y_chk, h_chk = run(inputs, "chunked", return_last_state=True, chunk_size=32)
    assert torch.isfinite(y_chk).all() and torch.isfinite(h_chk).all()
    torch.testing.assert_close(y_chk, y_seq, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(h_chk, h_seq, atol=1e-5, rtol=1e-5)
    assert h_seq.shape == (2, 6, 8)


def test_scan_impl_errors():
    inputs = scan_inputs()
    with pytest.raises(ValueError, match="unknown scan impl"):
        run(inputs, "fast")
    with pytest.raises(RuntimeError, match="mamba_ssm"):
        run(inputs, "cuda")


def test_causal_conv_is_depthwise_and_causal():
    x = torch.randn(2, 5, 11)
    w, b = torch.randn(5, 1, 4), torch.randn(5)
    out = causal_depthwise_conv1d(x, w, b)
    ref = torch.zeros_like(x)
    for t in range(11):
        for k in range(4):
            s = t - 3 + k
            if s >= 0:
                ref[:, :, t] += w[:, 0, k] * x[:, :, s]
    torch.testing.assert_close(out, ref + b[:, None])
    bumped = x.clone()
    bumped[:, :, 6] += 1
    changed = (causal_depthwise_conv1d(bumped, w, b) - out).abs().sum((0, 1)) > 0
    assert changed.nonzero().flatten().tolist() == [6, 7, 8, 9]


def test_standard_initialisation():
    torch.manual_seed(0)
    m = MambaMixer(64, d_state=16, expand=2, dt_min=0.001, dt_max=0.1)
    assert (m.d_inner, m.dt_rank) == (128, 4)
    assert torch.equal(m.A_log, torch.log(torch.arange(1.0, 17.0)).expand(128, 16))
    assert torch.equal(m.D, torch.ones(128))
    dt = F.softplus(m.dt_proj.bias)
    assert dt.min() >= 0.001 * 0.999 and dt.max() <= 0.1 * 1.001
    assert m.dt_proj.weight.abs().max() <= m.dt_rank**-0.5
    assert m.in_proj.bias is None and m.out_proj.bias is None and m.x_proj.bias is None
    x = torch.tensor([1e-3, 0.05, 2.0])
    torch.testing.assert_close(F.softplus(inverse_softplus(x)), x)
    m.rescale_out_proj(24)
    assert m.out_proj.weight.abs().max() <= 1 / math.sqrt(128) / math.sqrt(24) + 1e-7
    bi = BiMambaMixer(64, d_state=16, expand=2)
    assert torch.count_nonzero(bi.dt_proj_b.bias) == 0  # SSAMBA's zeroed backward step bias
    fixed = BiMambaMixer(64, backward_dt_bias="mamba")
    dt_b = F.softplus(fixed.dt_proj_b.bias)
    assert dt_b.min() >= 0.001 * 0.999 and dt_b.max() <= 0.1 * 1.001
    assert torch.equal(bi.A_b_log, bi.A_log) and torch.equal(bi.D_b, torch.ones(128))


def test_bidirectional_mixer_matches_official_internals():
    """Layer 0 of the official SSAMBA fixture: every branch input and the mixer output."""
    state = load_fixture("ssamba", "state_dict.pth")
    ref = load_fixture("ssamba", "mixer0_internals.pt")
    prefix = "module.v.layers.0.mixer."
    mixer = BiMambaMixer(64, d_state=16, expand=2)
    mixer.load_state_dict({k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)})
    with torch.no_grad():
        for impl in ("sequential", "chunked"):
            mixer.scan_impl = impl
            torch.testing.assert_close(mixer(ref["mixer_in"][None])[0], ref["mixer_out"], **TOL)
        x, z = mixer.in_proj(ref["mixer_in"][None]).transpose(1, 2).chunk(2, dim=1)
        torch.testing.assert_close(x[0], ref["conv_in_f"], **TOL)
        torch.testing.assert_close(z[0], ref["z_f"], **TOL)
        fwd = mixer.branch_inputs(x, mixer.conv1d, mixer.x_proj, mixer.dt_proj)
        bwd = mixer.branch_inputs(x.flip(-1), mixer.conv1d_b, mixer.x_proj_b, mixer.dt_proj_b)
    for suffix, (u, delta, B, C) in (("f", fwd), ("b", bwd)):
        for key, value in (("conv_out", u), ("delta_raw", delta), ("B", B), ("C", C)):
            torch.testing.assert_close(value[0], ref[f"{key}_{suffix}"], **TOL)


def test_bidirectional_mixer_is_two_flipped_unidirectional_ones():
    torch.manual_seed(0)
    bi = BiMambaMixer(16, d_state=4, expand=2, divide_out=True, backward_dt_bias="mamba")
    fwd, bwd = MambaMixer(16, d_state=4, expand=2), MambaMixer(16, d_state=4, expand=2)
    sd = bi.state_dict()
    shared = {k: v for k, v in sd.items() if k.startswith(("in_proj", "out_proj"))}
    fwd.load_state_dict(
        {k: v for k, v in sd.items() if not k.endswith("_b") and "_b." not in k and k != "A_b_log"}
    )
    back = {
        k.replace("_b.", ".").replace("A_b_log", "A_log").replace("D_b", "D"): v
        for k, v in sd.items()
        if "_b" in k
    }
    bwd.load_state_dict({**shared, **back})
    x = torch.randn(2, 9, 16)
    with torch.no_grad():
        # out_proj is linear, so the mixer's average of the gated branches equals the average
        # of two complete unidirectional mixers (each with out_proj), the second run flipped
        expected = (fwd(x) + bwd(x.flip(1)).flip(1)) / 2
        torch.testing.assert_close(bi(x), expected, atol=1e-6, rtol=1e-5)


def test_mamba_block_is_pre_norm_residual():
    torch.manual_seed(0)
    block = MambaBlock(16, n_layer=4, d_state=4, expand=3)
    block.reset_parameters()
    assert block.mixer.out_proj.weight.abs().max() <= 1 / math.sqrt(48) / 2 + 1e-7
    x = torch.randn(2, 7, 16)
    torch.testing.assert_close(block(x), x + block.mixer(block.norm(x)))


def test_matches_mambapy_if_installed():
    """Optional cross-check against mambapy (MIT), when it happens to be installed."""
    mamba = pytest.importorskip("mambapy.mamba")
    torch.manual_seed(0)
    ours = MambaMixer(32, d_state=8, expand=2, d_conv=4)
    for pscan in (True, False):
        cfg = mamba.MambaConfig(
            d_model=32, n_layers=1, d_state=8, expand_factor=2, d_conv=4, pscan=pscan
        )
        theirs = mamba.MambaBlock(cfg)
        theirs.load_state_dict(ours.state_dict())
        x = torch.randn(2, 20, 32)
        with torch.no_grad():
            torch.testing.assert_close(ours(x), theirs(x), atol=1e-5, rtol=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_native_scans_on_gpu_match_cpu():
    inputs = scan_inputs(L=150, E=16, groups=2)
    ref = reference_scan(**inputs)
    for impl in ("sequential", "chunked"):
        gpu = {k: v.cuda() for k, v in inputs.items()}
        torch.testing.assert_close(run(gpu, impl).cpu().double(), ref, atol=1e-5, rtol=1e-5)


@pytest.mark.skipif(not has_cuda_scan(), reason="needs a CUDA GPU and the mamba_ssm package")
def test_cuda_fast_path_matches_native():
    torch.manual_seed(0)
    mixer = BiMambaMixer(64, d_state=16, expand=2).cuda()
    x = torch.randn(2, 65, 64, device="cuda", requires_grad=True)
    outs, grads = {}, {}
    for impl in ("cuda", "chunked"):
        mixer.scan_impl = impl
        mixer.zero_grad()
        x.grad = None
        y = mixer(x)
        y.square().sum().backward()
        outs[impl], grads[impl] = y.detach(), x.grad.clone()
    torch.testing.assert_close(outs["cuda"], outs["chunked"], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(grads["cuda"], grads["chunked"], atol=1e-3, rtol=1e-3)
