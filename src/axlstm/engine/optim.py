"""AdamW with weight decay on weights only, and the per-step warm-up + cosine schedule."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

__all__ = ["WarmupCosine", "build_optimizer", "param_groups_weight_decay"]


def param_groups_weight_decay(
    model: nn.Module, weight_decay: float, no_decay: Iterable[str] = ()
) -> list[dict[str, Any]]:
    """Two parameter groups, as timm's ``param_groups_weight_decay``.

    Frozen parameters are left out. Tensors with ``ndim <= 1`` (norm scales, biases, scalar
    gates) and every ``*.bias`` get no decay; so do names in ``no_decay``. Everything else,
    including the 3-D cls/mask tokens and head-wise q/k/v blocks, is decayed (SPEC §5).
    """
    skip = set(no_decay)
    decay, plain = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim <= 1 or name.endswith(".bias") or name in skip:
            plain.append(p)
        else:
            decay.append(p)
    return [
        {"params": plain, "weight_decay": 0.0},
        {"params": decay, "weight_decay": weight_decay},
    ]


def build_optimizer(
    model: nn.Module,
    lr: float,
    weight_decay: float = 0.05,
    betas: tuple[float, float] = (0.9, 0.95),
    eps: float = 1e-8,
    fused: bool | None = None,
) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups_weight_decay` groups."""
    groups = param_groups_weight_decay(model, weight_decay)
    kwargs: dict[str, Any] = {"lr": lr, "betas": tuple(betas), "eps": eps}
    if fused is not None:
        kwargs["fused"] = fused
    return torch.optim.AdamW(groups, **kwargs)


class WarmupCosine:
    """Per-step learning rate: linear warm-up from 0, then half-cosine down to ``min_lr``.

    ``lr(s) = peak * s / W`` for ``s < W``, else
    ``min_lr + (peak - min_lr) * (1 + cos(pi * (s - W) / (T - W))) / 2``,
    where ``s`` is the index of the update being made (so the very first update uses lr 0,
    exactly as the official per-iteration schedule does).

    Its state is only the numbers above; the step itself belongs to the trainer.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        peak_lr: float,
        warmup_steps: int,
        total_steps: int,
        min_lr: float = 0.0,
    ) -> None:
        if total_steps <= 0 or not 0 <= warmup_steps <= total_steps:
            raise ValueError(f"need 0 <= warmup ({warmup_steps}) <= total ({total_steps}) > 0")
        self.optimizer = optimizer
        self.peak_lr, self.min_lr = float(peak_lr), float(min_lr)
        self.warmup_steps, self.total_steps = int(warmup_steps), int(total_steps)

    def lr_at(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.peak_lr * step / self.warmup_steps
        span = self.total_steps - self.warmup_steps
        progress = min(1.0, (step - self.warmup_steps) / span) if span > 0 else 1.0
        cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.min_lr + (self.peak_lr - self.min_lr) * cosine

    def apply(self, step: int) -> float:
        """Set every group's lr for update ``step``; returns it."""
        lr = self.lr_at(step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        return lr

    def state_dict(self) -> dict[str, Any]:
        return {
            "peak_lr": self.peak_lr,
            "min_lr": self.min_lr,
            "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.peak_lr = float(state["peak_lr"])
        self.min_lr = float(state["min_lr"])
        self.warmup_steps = int(state["warmup_steps"])
        self.total_steps = int(state["total_steps"])
