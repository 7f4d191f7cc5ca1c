"""Stochastic depth (drop path) for residual branches."""

from __future__ import annotations

import torch

__all__ = ["drop_path", "drop_path_rates"]


def drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Per-sample stochastic depth: zero whole samples with probability ``rate``, rescale the
    others by 1 / (1 - rate). The identity when ``rate`` is 0 or not ``training``."""
    if rate == 0.0 or not training:
        return x
    keep = 1.0 - rate
    mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
    return x * mask / keep


def drop_path_rates(rate: float, depth: int) -> list[float]:
    """Per-block rates rising linearly from 0 (first block) to ``rate`` (last block), the
    rule of timm's ViT, Audio-MAE and EAT."""
    if depth <= 1:
        return [float(rate)] * depth
    return [float(rate) * i / (depth - 1) for i in range(depth)]
