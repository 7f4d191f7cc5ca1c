"""Normalisation layers whose scale is stored as an offset from one.

The ViL/xLSTM code parametrises norm weights as ``1 + gamma`` with ``gamma`` initialised to 0
(so weight decay pulls the scale towards 1, not 0). The stored tensor is ``gamma``; keeping that
convention keeps official checkpoints loadable as they are.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class OffsetLayerNorm(nn.Module):
    """LayerNorm over the last axis with effective weight ``1 + weight`` and optional bias.

    Args:
        dim: normalised size.
        bias: whether to learn an additive bias (ViL blocks use none).
        eps: variance epsilon.
    """

    def __init__(self, dim: int, bias: bool = False, eps: float = 1e-5) -> None:
        super().__init__()
        self.dim = dim
        self.eps = eps
        self.weight = nn.Parameter(torch.zeros(dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if bias else None

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, (self.dim,), 1.0 + self.weight, self.bias, self.eps)


class MultiHeadNorm(nn.Module):
    """Per-head standardisation of a (B, NH, S, DH) tensor, returned as (B, S, NH * DH).

    Each head's DH channels of each token are normalised separately (a group norm with one group
    per head), then scaled by ``1 + weight`` (no bias).
    """

    def __init__(self, dim: int, num_heads: int, eps: float = 1e-5) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.dim = dim
        self.num_heads = num_heads
        self.eps = eps
        self.weight = nn.Parameter(torch.zeros(dim))

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.weight)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        B, NH, S, DH = h.shape
        # a group norm with one group per head == a layer norm over each head's DH channels
        x = F.layer_norm(h, (DH,), eps=self.eps)
        x = x * (1.0 + self.weight).view(NH, 1, DH)
        return x.transpose(1, 2).reshape(B, S, NH * DH)
