"""The chunkwise mLSTM's per-chunk gate quantities and chunk-state stabilisers, shared by the
PyTorch chunkwise form and the Triton wrapper; the stabilisers in closed form (no chunk loop).

With chunks j = 0..K-1, G_j the total log forget gate of chunk j and mu_j the maximum of its
local log weights a = i - g, the carried state's stabiliser follows m_{j+1} = G_j +
max(m_j, mu_j) from the incoming m_0. Written as a scan: with P_j = sum_{r<j} G_r (P_0 = 0) and
r_j = mu_j - P_j, m_j = P_j + E_j where E_j = max(m_0, max_{i<j} r_i), a cumulative maximum.
That is a handful of tensor ops for any K (one GPU launch each instead of a few per chunk, and
a graph that ``torch.compile`` does not unroll); it equals the loop up to the rounding of P
(a sum over chunk totals, so its error grows with the segment, not per token).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def state_stabilisers(
    G: torch.Tensor, mu: torch.Tensor, m0: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(P, r, E) of the module docstring from G, mu (..., K) and m0 (...).

    Returns:
        P (..., K + 1), r (..., K), E (..., K + 1); the stabiliser of the state entering chunk
        j is ``P[..., j] + E[..., j]`` (j = K: after the last chunk). ``m0 = -inf`` (no state
        yet) is allowed.
    """
    P = F.pad(torch.cumsum(G, dim=-1), (1, 0))
    r = mu - P[..., :-1]
    E = torch.maximum(m0[..., None], F.pad(torch.cummax(r, dim=-1).values, (1, 0), value=-math.inf))
    return P, r, E


def chunk_gates(
    igate: torch.Tensor, fgate: torch.Tensor, K: int, L: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The chunkwise form's per-chunk gate quantities from preactivations (B, NH, S).

    The sequence is padded to K chunks of L tokens with steps that neither decay (log f = 0)
    nor write (i = -huge), so carried states and real outputs are untouched.

    Returns:
        g (B, NH, K, L) the chunk-local cumulative log forget gate, a = i - g (B, NH, K, L),
        G = g at each chunk's end (B, NH, K), and mu = each chunk's maximum of a (B, NH, K).
    """
    B, NH, S = igate.shape
    pad = K * L - S
    log_f = F.logsigmoid(fgate)
    if pad:
        log_f = F.pad(log_f, (0, pad))
        igate = F.pad(igate, (0, pad), value=torch.finfo(igate.dtype).min / 4)
    g = torch.cumsum(log_f.view(B, NH, K, L), dim=-1)
    a = igate.view(B, NH, K, L) - g
    return g, a, g[..., -1], a.amax(dim=-1)
