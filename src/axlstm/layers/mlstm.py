"""The mLSTM cell (matrix-memory LSTM with exponential input gate) in two equivalent forms.

Notation (per head): queries q_t, keys k_t, values v_t of width DH; input-gate preactivation
i_t (used as exp(i_t)); forget-gate preactivation f_t (used as sigmoid(f_t)). With
k̂ = k / sqrt(DH) the recurrence is

    C_t = sigmoid(f_t) C_{t-1} + exp(i_t) v_t k̂_tᵀ
    n_t = sigmoid(f_t) n_{t-1} + exp(i_t) k̂_t
    h_t = C_t q_t / (max(|n_tᵀ q_t|, 1) + eps)        (written here in stabilised form)

References:
    1. Beck et al., "xLSTM: Extended Long Short-Term Memory", 2024 (arXiv 2405.04517).
    2. Alkin et al., "Vision-LSTM: xLSTM as Generic Vision Backbone", 2024 (arXiv 2406.04303).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def mlstm_parallel(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    igate: torch.Tensor,
    fgate: torch.Tensor,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Stabilised parallel (quadratic) mLSTM, the form the official AxLSTM code runs.

    Args:
        q, k, v: (B, NH, S, DH).
        igate, fgate: gate preactivations (B, NH, S).
        eps: added to the normaliser.

    Returns:
        h: (B, NH, S, DH).
    """
    S, DH = q.shape[-2], q.shape[-1]
    log_f = F.logsigmoid(fgate)  # (B, NH, S)
    cum = torch.cumsum(log_f, dim=-1)  # F_t = sum_{s<=t} log f_s
    # log D[t, s] = F_t - F_s + i_s for s <= t: the forget gate of step s does not act on input s
    log_d = cum[..., :, None] - cum[..., None, :] + igate[..., None, :]  # (B, NH, S, S)
    causal = torch.ones(S, S, dtype=torch.bool, device=q.device).tril()
    log_d = log_d.masked_fill(~causal, float("-inf"))
    m = log_d.amax(dim=-1, keepdim=True)  # (B, NH, S, 1) row-wise stabiliser
    d = torch.exp(log_d - m)
    scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(DH)) * d  # (B, NH, S, S)
    normaliser = torch.maximum(scores.sum(dim=-1, keepdim=True).abs(), torch.exp(-m))
    return (scores / (normaliser + eps)) @ v


def mlstm_recurrent(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    igate: torch.Tensor,
    fgate: torch.Tensor,
    eps: float = 1e-6,
    state: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    return_state: bool = False,
):
    """Step-by-step stabilised recurrence; equal to :func:`mlstm_parallel` (same stabiliser).

    The stabiliser m_t = max(m_{t-1} + log sigmoid(f_t), i_t) is exactly the row maximum that the
    parallel form takes, so both forms agree to rounding for any ``eps``.

    Args:
        q, k, v: (B, NH, S, DH).
        igate, fgate: (B, NH, S).
        state: optional carried (C (B, NH, DH, DH), n (B, NH, DH), m (B, NH)).
        return_state: also return the final state.

    Returns:
        h (B, NH, S, DH), and the state when ``return_state``.
    """
    B, NH, S, DH = q.shape
    k = k * (1.0 / math.sqrt(DH))
    log_f = F.logsigmoid(fgate)
    if state is None:
        C = q.new_zeros(B, NH, DH, DH)
        n = q.new_zeros(B, NH, DH)
        m = q.new_full((B, NH), float("-inf"))
    else:
        C, n, m = state
    outs = []
    for t in range(S):
        m_new = torch.maximum(m + log_f[..., t], igate[..., t])  # (B, NH)
        decay = torch.exp(m + log_f[..., t] - m_new)[..., None]  # -inf - finite -> 0 at t = 0
        gain = torch.exp(igate[..., t] - m_new)[..., None]
        C = decay[..., None] * C + gain[..., None] * (v[..., t, :, None] * k[..., t, None, :])
        n = decay * n + gain * k[..., t, :]
        num = (C @ q[..., t, :, None]).squeeze(-1)  # (B, NH, DH)
        den = torch.maximum((n * q[..., t, :]).sum(-1).abs(), torch.exp(-m_new))[..., None]
        outs.append(num / (den + eps))
        m = m_new
    h = torch.stack(outs, dim=2)
    if return_state:
        return h, (C, n, m)
    return h
