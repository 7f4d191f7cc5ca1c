"""The mLSTM cell: the parallel form against a step-by-step recurrent reference."""

from __future__ import annotations

import pytest
import torch

from axlstm.layers import mlstm_parallel, mlstm_recurrent


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
