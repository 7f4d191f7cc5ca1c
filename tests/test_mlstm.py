"""The mLSTM cell: the parallel form against a step-by-step recurrent reference."""

from __future__ import annotations

import pytest
import torch

from axlstm.layers import ViLLayer
from axlstm.layers.mlstm import (
    mlstm,
    mlstm_chunkwise,
    mlstm_parallel,
    mlstm_recurrent,
    mlstm_step,
)
from tolerances import EPS32, assert_close_rel


def random_inputs(B=2, NH=4, S=37, DH=8, gate_scale=3.0, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(B, NH, S, DH, generator=g, dtype=dtype) for _ in range(3))
    igate = gate_scale * torch.randn(B, NH, S, generator=g, dtype=dtype)
    fgate = gate_scale * torch.randn(B, NH, S, generator=g, dtype=dtype) + 2.0
    return q, k, v, igate, fgate


@pytest.mark.parametrize("gate_scale", [0.1, 1.0, 5.0, 20.0])
@pytest.mark.parametrize("S", [1, 2, 17, 64])
def test_recurrent_equals_parallel_float64(S, gate_scale):
    args = random_inputs(S=S, gate_scale=gate_scale)
    ref = mlstm_parallel(*args)
    diff = (ref - mlstm_recurrent(*args)).abs().max().item()
    # absolute 1e-10 for outputs of order one; extreme gates can make the normaliser nearly
    # cancel and h large, where the same relative precision is asked for
    assert diff <= 1e-10 * max(1.0, ref.abs().max().item())


def test_recurrent_without_eps_matches_textbook_recurrence():
    """SPEC §3.2: with eps = 0 the unstabilised recurrence gives the same h."""
    q, k, v, igate, fgate = random_inputs(S=20, gate_scale=1.0)
    DH = q.shape[-1]
    f, i = torch.sigmoid(fgate), torch.exp(igate)
    kh = k / DH**0.5
    C = torch.zeros(*q.shape[:2], DH, DH, dtype=q.dtype)
    n = torch.zeros(*q.shape[:2], DH, dtype=q.dtype)
    outs = []
    for t in range(q.shape[2]):
        C = f[..., t, None, None] * C + i[..., t, None, None] * (
            v[..., t, :, None] * kh[..., t, None, :]
        )
        n = f[..., t, None] * n + i[..., t, None] * kh[..., t, :]
        den = (n * q[..., t, :]).sum(-1).abs().clamp_min(1.0)
        outs.append((C @ q[..., t, :, None]).squeeze(-1) / den[..., None])
    textbook = torch.stack(outs, 2)
    torch.testing.assert_close(
        mlstm_parallel(q, k, v, igate, fgate, eps=0.0), textbook, atol=1e-10, rtol=1e-10
    )


def test_recurrent_state_carries_over():
    args = random_inputs(S=30)
    full = mlstm_recurrent(*args)
    first = [a[..., :12, :] if a.dim() == 4 else a[..., :12] for a in args]
    rest = [a[..., 12:, :] if a.dim() == 4 else a[..., 12:] for a in args]
    h1, state = mlstm_recurrent(*first, return_state=True)
    h2 = mlstm_recurrent(*rest, state=state)
    torch.testing.assert_close(torch.cat([h1, h2], 2), full, atol=1e-12, rtol=1e-12)


def test_parallel_gradients_are_exact():
    args = [a.requires_grad_() for a in random_inputs(B=1, NH=2, S=6, DH=3, gate_scale=1.0)]
    assert torch.autograd.gradcheck(mlstm_parallel, args)


# ---------------------------------------------------------------------------- the three forms
FORMS = ("parallel", "chunkwise", "recurrent")


@pytest.mark.parametrize("chunk", [1, 7, 16, 64, 300])
@pytest.mark.parametrize("S", [1, 15, 64, 100])
def test_chunkwise_equals_recurrent_float64(S, chunk):
    args = random_inputs(S=S, gate_scale=2.0)
    ref = mlstm_recurrent(*args)
    out = mlstm_chunkwise(*args, chunk_size=chunk)
    assert (out - ref).abs().max().item() <= 1e-10 * max(1.0, ref.abs().max().item())


@pytest.mark.parametrize("S", [5, 70, 251])
def test_forms_agree_in_float32_forward_and_backward(S):
    """Issue #6: the three forms agree in fp32, values and gradients, each within a few ulps of
    the tensor's scale of the float64 result (times the conditioning of the gate exponents)."""
    base = random_inputs(B=2, NH=4, S=S, DH=16, gate_scale=1.0, dtype=torch.float32)
    outs, grads = {}, {}
    weight = torch.randn(2, 4, S, 16, generator=torch.Generator().manual_seed(9))
    for form in (*FORMS, "float64"):
        f64 = form == "float64"
        args = [(a.double() if f64 else a.clone()).requires_grad_() for a in base]
        h = mlstm(*args, backend="parallel" if f64 else form, chunk_size=32)
        (h * (weight.double() if f64 else weight)).sum().backward()
        outs[form], grads[form] = h.detach(), [a.grad for a in args]

    # The forms exponentiate differences of cumulative log-forget sums F_t (|F| up to ~50 at
    # S=251); an fp32 F carries ~eps*|F| absolute error, which becomes that relative error of
    # every decay weight, so the bound is 8 eps (1 + max|F|) of each tensor's scale (measured
    # 0.7-1.4 eps (1 + max|F|) for the parallel form, the worst of the three; 2.4e-6..4.9e-5).
    max_F = torch.nn.functional.logsigmoid(base[4].double()).cumsum(-1).abs().max().item()
    rel = 8 * EPS32 * (1 + max_F)
    for form in FORMS:
        assert_close_rel(outs[form], outs["float64"], rel, what=f"{form} h")
        for n, g, g_ref in zip("qkvif", grads[form], grads["float64"], strict=True):
            assert_close_rel(g, g_ref, rel, what=f"{form} d{n}")


def test_chunkwise_gradients_are_exact():
    args = [a.requires_grad_() for a in random_inputs(B=1, NH=1, S=9, DH=3, gate_scale=1.0, seed=4)]
    assert torch.autograd.gradcheck(lambda *a: mlstm_chunkwise(*a, chunk_size=4), args)


def test_chunkwise_state_carries_over():
    args = random_inputs(S=50)
    full = mlstm_parallel(*args)
    cut = lambda a, sl: a[..., sl, :] if a.dim() == 4 else a[..., sl]  # noqa: E731
    h1, state = mlstm_chunkwise(*[cut(a, slice(0, 21)) for a in args], 1e-6, 8, None, True)
    h2, state2 = mlstm_chunkwise(*[cut(a, slice(21, 50)) for a in args], 1e-6, 8, state, True)
    torch.testing.assert_close(torch.cat([h1, h2], 2), full, atol=1e-10, rtol=1e-10)
    # and the same state as the step-by-step recurrence
    _, ref_state = mlstm_recurrent(*args, return_state=True)
    for a, b in zip(state2, ref_state, strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


def test_step_form_is_constant_memory_state():
    q, k, v, i, f = random_inputs(B=1, NH=2, S=3, DH=4)
    h, state = mlstm_step(q[:, :, 0], k[:, :, 0], v[:, :, 0], i[..., 0], f[..., 0])
    assert [tuple(s.shape) for s in state] == [(1, 2, 4, 4), (1, 2, 4), (1, 2)]
    assert h.shape == (1, 2, 4)


def test_auto_backend_and_unknown_backend():
    args = random_inputs(S=300)
    torch.testing.assert_close(mlstm(*args), mlstm_parallel(*args), atol=1e-10, rtol=1e-10)
    with pytest.raises(ValueError, match="backend"):
        mlstm(*args, backend="fused")


# ---------------------------------------------------------------------------- the ViL layer
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
@pytest.mark.parametrize("S", [3, 64, 251])
def test_fast_layer_equals_reference(dtype, tol, S):
    """The speed-organised ViL layer against the step-by-step one, values and gradients."""
    torch.manual_seed(0)
    layer = ViLLayer(32).to(dtype)
    with torch.no_grad():  # move every weight off its special init so all paths matter
        for p in layer.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = torch.randn(2, S, 32, dtype=dtype)
    fast = layer(x)
    (fast**2).sum().backward()
    g_fast = {n: p.grad.clone() for n, p in layer.named_parameters()}
    layer.zero_grad()
    ref = layer.forward_reference(x)
    (ref**2).sum().backward()
    # Two fp32 orderings of the same layer: the error is rounding relative to each tensor's
    # scale, not per element (a small gradient entry is a cancelling sum over B*S = 502 tokens
    # of terms ~1e3). fp32: 2e-5 (~170 eps) of max|out| and 5e-5 (~400 eps, ~16 eps*sqrt(502))
    # of max|grad|; measured <= 1.5e-6 against float64. fp64: the same in units of 1e-12.
    assert_close_rel(fast, ref, tol, what="output")
    for n, p in layer.named_parameters():
        assert_close_rel(g_fast[n], p.grad, 2.5 * tol, what=f"grad {n}")


@pytest.mark.parametrize("backend", ["parallel", "chunkwise", "recurrent"])
def test_official_features_with_every_backend(backend):
    import axlstm
    from conftest import fixture_dir, load_fixture

    path = fixture_dir("official") / "axlstm_a/state_dict.pth"
    model = axlstm.load_official(
        path, "axlstm_tiny", embed_dim=64, depth=2, frame_layout="official",
        mlstm_backend=backend, mlstm_chunk_size=32,
    )  # fmt: skip
    with torch.no_grad():
        feats = model.forward_features(load_fixture("official", "axlstm_a/input_lms.pt"))
    ref = load_fixture("official", "axlstm_a/features.pt")
    torch.testing.assert_close(feats, ref, atol=1e-4, rtol=1e-4)


def test_chunkwise_keeps_fp32_precision_on_long_sequences():
    """Against float64: chunkwise fp32 stays within 1e-5 where the parallel form drifts, since
    its cumulative log-forget sums run over the whole sequence instead of one chunk."""
    g = torch.Generator().manual_seed(0)
    S = 2000
    q, k, v = (torch.randn(1, 2, S, 16, generator=g) for _ in range(3))
    i = torch.randn(1, 2, S, generator=g)
    f = torch.randn(1, 2, S, generator=g) + 3
    ref = mlstm_chunkwise(*(t.double() for t in (q, k, v, i, f)))
    scale = ref.abs().max()
    chunk_err = ((mlstm_chunkwise(q, k, v, i, f).double() - ref).abs().max() / scale).item()
    par_err = ((mlstm_parallel(q, k, v, i, f).double() - ref).abs().max() / scale).item()
    assert chunk_err < 1e-5
    assert chunk_err < par_err


@pytest.mark.parametrize("segment", [7, 64, 100])
def test_segmented_layer_equals_whole_sequence(segment):
    """Long inputs go through a layer segment by segment with carried state: same result,
    values and gradients."""
    torch.manual_seed(0)
    whole = ViLLayer(16, chunk_size=16).double()
    with torch.no_grad():
        for p in whole.parameters():
            p.add_(0.1 * torch.randn_like(p))
    seg = ViLLayer(16, chunk_size=16, segment_size=segment).double()
    seg.load_state_dict(whole.state_dict())
    x = torch.randn(2, 230, 16, dtype=torch.float64, requires_grad=True)
    a, b = whole(x), seg(x)
    torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)
    ga = torch.autograd.grad(a.square().sum(), x)[0]
    gb = torch.autograd.grad(b.square().sum(), x)[0]
    torch.testing.assert_close(ga, gb, atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("m0", [float("-inf"), 0.7])
def test_closed_form_state_stabilisers_equal_the_loop(m0):
    from axlstm.layers.mlstm_stabiliser import state_stabilisers

    g = torch.Generator().manual_seed(3)
    G = -torch.rand(2, 3, 9, generator=g, dtype=torch.float64) * 4  # chunk totals of log f <= 0
    mu = 3 * torch.randn(2, 3, 9, generator=g, dtype=torch.float64)
    m = torch.full((2, 3), m0, dtype=torch.float64)
    loop = [m]
    for j in range(9):
        m = G[..., j] + torch.maximum(m, mu[..., j])
        loop.append(m)
    P, r, E = state_stabilisers(G, mu, torch.full((2, 3), m0, dtype=torch.float64))
    torch.testing.assert_close(P + E, torch.stack(loop, -1), atol=1e-12, rtol=0)
    assert torch.equal(r, mu - P[..., :-1])
