"""The chunk-state stabilisers of the chunkwise mLSTM in closed form (no loop over chunks).

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
