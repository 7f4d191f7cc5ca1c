"""The mLSTM cell (matrix-memory LSTM with exponential input gate) in three equivalent forms.

Notation (per head): queries q_t, keys k_t, values v_t of width DH; input-gate preactivation
i_t (used as exp(i_t)); forget-gate preactivation f_t (used as sigmoid(f_t)). With
k̂ = k / sqrt(DH) the recurrence is

    C_t = sigmoid(f_t) C_{t-1} + exp(i_t) v_t k̂_tᵀ
    n_t = sigmoid(f_t) n_{t-1} + exp(i_t) k̂_t
    h_t = C_t q_t / (max(|n_tᵀ q_t|, 1) + eps)        (written here in stabilised form)

Forms:
    parallel   quadratic in S, one (S, S) matrix per head; what the official code runs.
    chunkwise  linear in S: exact parallel work inside chunks of ``chunk_size`` tokens, a
               recurrence over chunk states between them.
    recurrent  one token at a time with a constant-size state (C, n, m); streaming.
    triton     the chunkwise form as fused Triton kernels (:mod:`axlstm.layers.mlstm_triton`,
               the optional ``triton`` extra; CUDA, or CPU under Triton's interpreter).

"auto" runs the fastest form measured for the device, dtype, pass kind and length
(:mod:`axlstm.layers.mlstm_forms`).

All forms use the same stabiliser, the row maximum m_t = max_{s<=t} log D[t, s] that the
parallel form takes, so they agree to rounding for any ``eps``. It has the closed form
m_t = F_t + cummax(i - F)_t with F the cumulative log forget gate, which the parallel and
chunkwise forms use instead of an (S, S) max. Gradients of the PyTorch forms are plain
autograd, hence exact; the Triton kernel's backward is written out and tested against them.

References:
    1. Beck et al., "xLSTM: Extended Long Short-Term Memory", 2024 (arXiv 2405.04517).
    2. Alkin et al., "Vision-LSTM: xLSTM as Generic Vision Backbone", 2024 (arXiv 2406.04303).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from axlstm.layers.mlstm_forms import choose_form
from axlstm.layers.mlstm_stabiliser import chunk_gates, state_stabilisers

MLSTMState = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
"""Carried state (C (B, NH, DH, DH), n (B, NH, DH), m (B, NH)), C and n scaled by exp(-m)."""

BACKENDS = ("auto", "parallel", "chunkwise", "recurrent", "triton")


def initial_state(like: torch.Tensor, B: int, NH: int, DH: int) -> MLSTMState:
    """The empty state: no memory, and a stabiliser of -inf (nothing seen yet)."""
    return (
        like.new_zeros(B, NH, DH, DH),
        like.new_zeros(B, NH, DH),
        like.new_full((B, NH), float("-inf")),
    )


def _causal_weights(a: torch.Tensor, M: torch.Tensor) -> torch.Tensor:
    """exp(a_s - M_t) for s <= t, else 0; a, M (..., S) -> (..., S, S).

    M_t >= a_s for s <= t, so the exponent is <= 0 there; above the diagonal it is clamped
    before the exponential so that no inf appears, not even in the backward pass.
    """
    S = a.shape[-1]
    causal = torch.ones(S, S, dtype=torch.bool, device=a.device).tril()
    x = (a[..., None, :] - M[..., :, None]).clamp_max(0.0)
    return torch.exp(x).masked_fill(~causal, 0.0)


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
    DH = q.shape[-1]
    cum = torch.cumsum(F.logsigmoid(fgate), dim=-1)  # F_t = sum_{s<=t} log f_s
    # log D[t, s] = F_t - F_s + i_s = F_t + a_s; its row max is m_t = F_t + cummax(a)_t
    a = igate - cum
    M = torch.cummax(a, dim=-1).values
    d = _causal_weights(a, M)  # exp(log D - m), (B, NH, S, S)
    scores = (q @ k.transpose(-2, -1)) * d * (1.0 / math.sqrt(DH))
    floor = torch.exp(-(cum + M))  # exp(-m_t)
    normaliser = torch.maximum(scores.sum(dim=-1).abs(), floor)[..., None]
    return (scores @ v) / (normaliser + eps)


def mlstm_chunkwise(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    igate: torch.Tensor,
    fgate: torch.Tensor,
    eps: float = 1e-6,
    chunk_size: int = 64,
    state: MLSTMState | None = None,
    return_state: bool = False,
):
    """Chunkwise-parallel mLSTM: cost and memory linear in S, equal to :func:`mlstm_parallel`.

    Args:
        q, k, v: (B, NH, S, DH).
        igate, fgate: (B, NH, S).
        eps: added to the normaliser.
        chunk_size: tokens per chunk L; the quadratic work is (S / L) blocks of (L, L).
        state: optional carried state from an earlier segment (see :data:`MLSTMState`).
        return_state: also return the state after the last token.

    Returns:
        h (B, NH, S, DH), and the final state when ``return_state``.
    """
    B, NH, S, DH = q.shape
    L = max(1, min(chunk_size, S))
    K = -(-S // L)
    pad = K * L - S
    if pad:  # padded steps neither decay nor write (see chunk_gates)
        q, k, v = (F.pad(x, (0, 0, 0, pad)) for x in (q, k, v))
    k = k * (1.0 / math.sqrt(DH))
    q, k, v = (x.reshape(B, NH, K, L, DH) for x in (q, k, v))
    # local cumulative log f, a = i - g (B, NH, K, L); chunk totals G and maxima mu (B, NH, K)
    g, a, G, mu = chunk_gates(igate, fgate, K, L)

    # Chunk-local contributions to the carried state, each with its own stabiliser mu.
    w = torch.exp(a - mu[..., None])[..., None]  # (B, NH, K, L, 1)
    C_loc = (v * w).transpose(-2, -1) @ k  # sum_s w_s v_s k_s^T, (B, NH, K, DH, DH)
    n_loc = (k * w).sum(dim=-2)  # (B, NH, K, DH)

    # Recurrence over chunks: the state entering each chunk (a short loop of small ops).
    C, n, m = state if state is not None else initial_state(q, B, NH, DH)
    if torch.compiler.is_compiling():
        # Under torch.compile the same states in closed form, without a loop over the K
        # chunks: a loop's trip count would fix S in the graph (a recompile per chunk count).
        # With P_j = sum_{r<j} G_r and r_i = mu_i - P_i, the state entering chunk j
        # (j = 0..K, K: after the last) has m_j = P_j + E_j, E_j = max(m_0, max_{i<j} r_i),
        # and C_j = sum_{i<j} exp(r_i - E_j) C_loc_i + exp(m_0 - E_j) C_0 (n alike): every
        # weight is <= 1, as in the loop.
        P, r, E = state_stabilisers(G, mu, m)  # (B, NH, K + 1), (B, NH, K), (B, NH, K + 1)
        before = torch.ones(K + 1, K, dtype=torch.bool, device=q.device).tril(-1)  # i < j
        W = torch.exp((r[..., None, :] - E[..., :, None]).clamp_max(0.0)).masked_fill(~before, 0.0)
        C_all = (W @ C_loc.flatten(-2)).unflatten(-1, (DH, DH))  # (B, NH, K + 1, DH, DH)
        n_all = W @ n_loc  # (B, NH, K + 1, DH)
        if state is not None:  # the carried state decays into every chunk (0 when empty)
            w0 = torch.exp(m[..., None] - E).nan_to_num(nan=0.0)  # (B, NH, K + 1)
            C_all = C_all + w0[..., None, None] * C[:, :, None]
            n_all = n_all + w0[..., None] * n[:, :, None]
        m_all = P + E
        C_in, n_in, m_in = C_all[:, :, :-1], n_all[:, :, :-1], m_all[..., :-1]
        C, n, m = C_all[:, :, -1], n_all[:, :, -1], m_all[..., -1]
    else:
        Cs, ns, ms = [], [], []
        for j in range(K):
            Cs.append(C)
            ns.append(n)
            ms.append(m)
            if j == K - 1 and not return_state:
                break  # the state after the last chunk is not needed
            M = torch.maximum(m, mu[..., j])
            old, new = torch.exp(m - M), torch.exp(mu[..., j] - M)
            C = torch.addcmul(new[..., None, None] * C_loc[:, :, j], old[..., None, None], C)
            n = torch.addcmul(new[..., None] * n_loc[:, :, j], old[..., None], n)
            m = G[..., j] + M
        C_in = torch.stack(Cs, dim=2)  # (B, NH, K, DH, DH)
        n_in = torch.stack(ns, dim=2)  # (B, NH, K, DH)
        m_in = torch.stack(ms, dim=2)  # (B, NH, K)

    # Outputs: the stabiliser of token t is g_t + M_t with M_t = max(m_in, cummax(a)_t).
    M = torch.maximum(m_in[..., None], torch.cummax(a, dim=-1).values)  # (B, NH, K, L)
    w_in = torch.exp(m_in[..., None] - M)[..., None]  # weight of the carried state
    scores = (q @ k.transpose(-2, -1)) * _causal_weights(a, M)  # (B, NH, K, L, L)
    num = scores @ v + w_in * (q @ C_in.transpose(-2, -1))
    den = scores.sum(dim=-1) + w_in[..., 0] * (q * n_in[..., None, :]).sum(dim=-1)
    floor = torch.exp(-(g + M))
    h = num / (torch.maximum(den.abs(), floor)[..., None] + eps)
    h = h.reshape(B, NH, K * L, DH)[:, :, :S]
    if return_state:
        return h, (C, n, m)
    return h


def mlstm_step(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    igate: torch.Tensor,
    fgate: torch.Tensor,
    state: MLSTMState | None = None,
    eps: float = 1e-6,
) -> tuple[torch.Tensor, MLSTMState]:
    """One recurrent step: q, k, v (B, NH, DH), gates (B, NH) -> h (B, NH, DH), new state."""
    B, NH, DH = q.shape
    C, n, m = state if state is not None else initial_state(q, B, NH, DH)
    k = k * (1.0 / math.sqrt(DH))
    log_f = F.logsigmoid(fgate)
    m_new = torch.maximum(m + log_f, igate)  # (B, NH)
    decay = torch.exp(m + log_f - m_new)[..., None]  # -inf - finite -> 0 at the first step
    gain = torch.exp(igate - m_new)[..., None]
    C = decay[..., None] * C + gain[..., None] * (v[..., :, None] * k[..., None, :])
    n = decay * n + gain * k
    num = (C @ q[..., None]).squeeze(-1)  # (B, NH, DH)
    den = torch.maximum((n * q).sum(-1).abs(), torch.exp(-m_new))[..., None]
    return num / (den + eps), (C, n, m_new)


def mlstm_recurrent(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    igate: torch.Tensor,
    fgate: torch.Tensor,
    eps: float = 1e-6,
    state: MLSTMState | None = None,
    return_state: bool = False,
):
    """Step-by-step recurrence (:func:`mlstm_step` over S); the reference for the other forms.

    Args:
        q, k, v: (B, NH, S, DH).
        igate, fgate: (B, NH, S).
        state: optional carried state.
        return_state: also return the final state.

    Returns:
        h (B, NH, S, DH), and the state when ``return_state``.
    """
    outs = []
    for t in range(q.shape[2]):
        h, state = mlstm_step(
            q[:, :, t], k[:, :, t], v[:, :, t], igate[..., t], fgate[..., t], state, eps
        )
        outs.append(h)
    h = torch.stack(outs, dim=2)
    if return_state:
        return h, state
    return h


def available_forms(x: torch.Tensor) -> tuple[str, ...]:
    """The forms "auto" may choose for tensors like ``x``: the Triton kernel joins the two
    pure-PyTorch forms on CUDA when the ``triton`` extra is installed, except inside a
    ``torch.compile`` trace (the compiler fuses the PyTorch form itself, and the kernel's
    Python launcher is not traceable)."""
    if x.device.type == "cuda" and not torch.compiler.is_compiling():
        from axlstm.layers import mlstm_triton

        if mlstm_triton.available():
            return ("parallel", "chunkwise", "triton")
    return ("parallel", "chunkwise")


def auto_form(q: torch.Tensor, stateful: bool = False) -> str:
    """The form "auto" runs for q (B, NH, S, DH) here (device, dtype, grad mode, length), from
    the measured table of :mod:`axlstm.layers.mlstm_forms`. With carried state only the
    chunk-state forms qualify (chunkwise, triton)."""
    forms = available_forms(q)
    if stateful:
        forms = tuple(f for f in forms if f != "parallel")
    grad = torch.is_grad_enabled() and q.requires_grad
    return choose_form(q.device.type, q.dtype, q.shape[2], grad, forms)


def mlstm(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    igate: torch.Tensor,
    fgate: torch.Tensor,
    backend: str = "auto",
    chunk_size: int = 64,
    eps: float = 1e-6,
) -> torch.Tensor:
    """mLSTM with a chosen form; "auto" picks the fastest measured for device, dtype and length."""
    if backend == "auto":
        backend = auto_form(q)
    if backend == "parallel":
        return mlstm_parallel(q, k, v, igate, fgate, eps)
    if backend == "chunkwise":
        return mlstm_chunkwise(q, k, v, igate, fgate, eps, chunk_size)
    if backend == "triton":
        from axlstm.layers.mlstm_triton import mlstm_chunkwise_triton

        return mlstm_chunkwise_triton(q, k, v, igate, fgate, eps, chunk_size)
    if backend == "recurrent":
        return mlstm_recurrent(q, k, v, igate, fgate, eps)
    raise ValueError(f"unknown mLSTM backend {backend!r}; choose one of {BACKENDS}")


def mlstm_carried(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    igate: torch.Tensor,
    fgate: torch.Tensor,
    state: MLSTMState | None,
    backend: str = "auto",
    chunk_size: int = 64,
    eps: float = 1e-6,
) -> tuple[torch.Tensor, MLSTMState]:
    """A segment of a longer sequence: h and the state after it, from the state before it.

    Runs a chunk-state form: the Triton kernel when ``backend`` is "triton" (or "auto" picks
    it), else the pure-PyTorch chunkwise form; both carry the state exactly.
    """
    form = auto_form(q, stateful=True) if backend == "auto" else backend
    if form == "triton":
        from axlstm.layers.mlstm_triton import mlstm_chunkwise_triton

        return mlstm_chunkwise_triton(
            q, k, v, igate, fgate, eps, chunk_size, state=state, return_state=True
        )
    return mlstm_chunkwise(q, k, v, igate, fgate, eps, chunk_size, state=state, return_state=True)
