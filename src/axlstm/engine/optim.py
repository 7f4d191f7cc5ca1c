"""Optimisers and per-step learning-rate schedules.

* AdamW with weight decay on weights only (AxLSTM, SPEC §5), or Adam / AdamW over every
  parameter (the original SSAST: Adam, L2-coupled decay 5e-7; SSAMBA: AdamW 5e-8).
* Warm-up (linear, or the official SSAST staircase) followed by a half-cosine
  (:class:`WarmupCosine`) or by ReduceLROnPlateau on a logged metric (:class:`WarmupPlateau`,
  the SSAST/SSAMBA recipe on MPC accuracy).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

__all__ = [
    "OPTIMIZERS",
    "WarmupCosine",
    "WarmupPlateau",
    "WarmupStep",
    "build_optimizer",
    "param_groups_weight_decay",
]

#: Optimisers :func:`build_optimizer` knows.
OPTIMIZERS = ("adamw", "adam")


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
    name: str = "adamw",
    decay_scope: str = "weights",
    groups: list[dict[str, Any]] | None = None,
) -> torch.optim.Optimizer:
    """AdamW (or Adam) over the trainable parameters.

    Args:
        name: "adamw" (decoupled weight decay) or "adam" (``weight_decay`` added to the
            gradient as L2, as ``torch.optim.Adam`` does: the original SSAST).
        decay_scope: "weights" (:func:`param_groups_weight_decay`: no decay for biases and
            tensors with ndim <= 1) or "all" (one group, every trainable parameter decayed, as
            the official SSAST and SSAMBA optimisers over ``model.parameters()``).
        groups: parameter groups made by the caller (each with ``params``, ``weight_decay``
            and optionally ``lr_scale``), used instead of ``decay_scope``.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {OPTIMIZERS}")
    if groups is not None:
        pass
    elif decay_scope == "weights":
        groups = param_groups_weight_decay(model, weight_decay)
    elif decay_scope == "all":
        params = [p for p in model.parameters() if p.requires_grad]
        groups = [{"params": params, "weight_decay": weight_decay}]
    else:
        raise ValueError(f"unknown decay_scope {decay_scope!r}; use 'weights' or 'all'")
    kwargs: dict[str, Any] = {"lr": lr, "betas": tuple(betas), "eps": eps}
    if fused is not None:
        kwargs["fused"] = fused
    cls = torch.optim.AdamW if name == "adamw" else torch.optim.Adam
    return cls(groups, **kwargs)


def _warmup_lr(peak: float, step: int, warmup_steps: int, stair: int) -> float:
    """``peak * s / W`` with ``s`` rounded down to a multiple of ``stair`` (1: linear)."""
    return peak * (step - step % stair) / warmup_steps


class WarmupCosine:
    """Per-step learning rate: linear warm-up from 0, then half-cosine down to ``min_lr``.

    ``lr(s) = peak * s / W`` for ``s < W``, else
    ``min_lr + (peak - min_lr) * (1 + cos(pi * (s - W) / (T - W))) / 2``,
    where ``s`` is the index of the update being made (so the very first update uses lr 0,
    exactly as the official per-iteration schedule does). With ``stair > 1`` the warm-up is a
    staircase: ``s`` is rounded down to a multiple of ``stair`` (SSAST resets the lr to
    ``s / 1000 * peak`` every 50 steps).

    Its state is only the numbers above; the step itself belongs to the trainer.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        peak_lr: float,
        warmup_steps: int,
        total_steps: int,
        min_lr: float = 0.0,
        stair: int = 1,
    ) -> None:
        if total_steps <= 0 or not 0 <= warmup_steps <= total_steps:
            raise ValueError(f"need 0 <= warmup ({warmup_steps}) <= total ({total_steps}) > 0")
        if stair < 1:
            raise ValueError(f"stair must be >= 1, got {stair}")
        self.optimizer = optimizer
        self.peak_lr, self.min_lr = float(peak_lr), float(min_lr)
        self.warmup_steps, self.total_steps = int(warmup_steps), int(total_steps)
        self.stair = int(stair)

    def lr_at(self, step: int) -> float:
        if step < self.warmup_steps:
            return _warmup_lr(self.peak_lr, step, self.warmup_steps, self.stair)
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
        state = {
            "peak_lr": self.peak_lr,
            "min_lr": self.min_lr,
            "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps,
        }
        if self.stair != 1:  # absent from checkpoints of the linear warm-up, as before
            state["stair"] = self.stair
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.peak_lr = float(state["peak_lr"])
        self.min_lr = float(state["min_lr"])
        self.warmup_steps = int(state["warmup_steps"])
        self.total_steps = int(state["total_steps"])
        self.stair = int(state.get("stair", 1))


class WarmupStep(WarmupCosine):
    """Per-step learning rate: linear warm-up, then the peak multiplied by ``factor`` at the
    start of epochs ``start, start + every, ...`` (0-based epoch ``s // steps_per_epoch``), the
    schedule of the SSAST/SSAMBA fine-tuning recipes (``MultiStepLR`` stepped once per epoch
    with milestones ``range(start, 1000, every)``); never below ``min_lr``."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        peak_lr: float,
        warmup_steps: int,
        total_steps: int,
        min_lr: float = 0.0,
        stair: int = 1,
        *,
        steps_per_epoch: int,
        start: float,
        every: float,
        factor: float,
    ) -> None:
        super().__init__(optimizer, peak_lr, warmup_steps, total_steps, min_lr, stair)
        if steps_per_epoch < 1 or every <= 0 or not 0.0 < factor <= 1.0 or start < 0:
            raise ValueError("need steps_per_epoch >= 1, every > 0, 0 < factor <= 1 and start >= 0")
        self.steps_per_epoch = int(steps_per_epoch)
        self.start, self.every, self.factor = float(start), float(every), float(factor)

    def lr_at(self, step: int) -> float:
        if step < self.warmup_steps:
            return _warmup_lr(self.peak_lr, step, self.warmup_steps, self.stair)
        epoch = step // self.steps_per_epoch
        passed = 0 if epoch < self.start else int((epoch - self.start) // self.every) + 1
        return max(self.min_lr, self.peak_lr * self.factor**passed)

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "steps_per_epoch": self.steps_per_epoch,
            "start": self.start,
            "every": self.every,
            "factor": self.factor,
        }


class WarmupPlateau:
    """Warm-up, then the peak learning rate cut by ``factor`` whenever a metric stalls.

    ``lr(s)`` is the warm-up of :class:`WarmupCosine` for ``s < W``, then
    ``max(peak * factor**k, min_lr)`` after ``k`` reductions. :meth:`plateau_step` is called
    with the metric every ``every`` steps and follows ``torch.optim.lr_scheduler.
    ReduceLROnPlateau`` (relative threshold, no cool-down): a value better than the best by
    more than ``threshold`` (relatively) resets the count of bad checks, otherwise it grows, and
    more than ``patience`` bad checks in a row reduce the lr and reset the count. A reduction
    due during the warm-up is dropped, as in the official SSAST loop, whose warm-up overwrites
    the lr every 50 steps up to step 1000.

    State (best value, bad checks, reductions) goes into checkpoints via :meth:`state_dict`
    under "progress"; the other entries are settings.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        peak_lr: float,
        warmup_steps: int,
        total_steps: int,
        min_lr: float = 0.0,
        stair: int = 1,
        mode: str = "max",
        factor: float = 0.5,
        patience: int = 2,
        threshold: float = 1e-4,
    ) -> None:
        if total_steps <= 0 or not 0 <= warmup_steps <= total_steps:
            raise ValueError(f"need 0 <= warmup ({warmup_steps}) <= total ({total_steps}) > 0")
        if mode not in ("max", "min") or not 0.0 < factor < 1.0 or patience < 0 or stair < 1:
            raise ValueError(
                f"bad plateau settings: mode {mode!r}, factor {factor}, patience {patience}, "
                f"stair {stair}"
            )
        self.optimizer = optimizer
        self.peak_lr, self.min_lr = float(peak_lr), float(min_lr)
        self.warmup_steps, self.total_steps = int(warmup_steps), int(total_steps)
        self.stair = int(stair)
        self.mode, self.factor = mode, float(factor)
        self.patience, self.threshold = int(patience), float(threshold)
        self.best = -math.inf if mode == "max" else math.inf
        self.bad_checks = 0
        self.reductions = 0

    def lr_at(self, step: int) -> float:
        if step < self.warmup_steps:
            return _warmup_lr(self.peak_lr, step, self.warmup_steps, self.stair)
        return max(self.peak_lr * self.factor**self.reductions, self.min_lr)

    def apply(self, step: int) -> float:
        """Set every group's lr for update ``step``; returns it."""
        lr = self.lr_at(step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        return lr

    def _better(self, value: float) -> bool:
        """ReduceLROnPlateau's relative test, ``a > best (1 + t)`` (max) or ``a < best (1 - t)``."""
        if self.mode == "max":
            return value > self.best * (1.0 + self.threshold)
        return value < self.best * (1.0 - self.threshold)

    def plateau_step(self, value: float, step: int) -> bool:
        """Record the metric measured over the updates before ``step`` (the number of updates
        made); True when the lr was reduced (from update ``step`` on)."""
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"the plateau metric is not finite at step {step}: {value}")
        if self._better(value):
            self.best, self.bad_checks = value, 0
            return False
        self.bad_checks += 1
        if self.bad_checks <= self.patience:
            return False
        self.bad_checks = 0
        if step <= self.warmup_steps:  # the warm-up owns the lr: the official loop drops it
            return False
        if self.peak_lr * self.factor**self.reductions <= self.min_lr:
            return False
        self.reductions += 1
        return True

    def state_dict(self) -> dict[str, Any]:
        return {
            "peak_lr": self.peak_lr,
            "min_lr": self.min_lr,
            "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps,
            "stair": self.stair,
            "plateau": {
                "mode": self.mode,
                "factor": self.factor,
                "patience": self.patience,
                "threshold": self.threshold,
            },
            "progress": self.progress(),
        }

    def progress(self) -> dict[str, Any]:
        return {"best": self.best, "bad_checks": self.bad_checks, "reductions": self.reductions}

    def load_progress(self, progress: dict[str, Any]) -> None:
        self.best = float(progress["best"])
        self.bad_checks = int(progress["bad_checks"])
        self.reductions = int(progress["reductions"])

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.peak_lr = float(state["peak_lr"])
        self.min_lr = float(state["min_lr"])
        self.warmup_steps = int(state["warmup_steps"])
        self.total_steps = int(state["total_steps"])
        self.stair = int(state.get("stair", 1))
        plateau = state.get("plateau", {})
        self.mode = plateau.get("mode", self.mode)
        self.factor = float(plateau.get("factor", self.factor))
        self.patience = int(plateau.get("patience", self.patience))
        self.threshold = float(plateau.get("threshold", self.threshold))
        if "progress" in state:
            self.load_progress(state["progress"])
