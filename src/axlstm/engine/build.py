"""The parts of a run's set-up that follow from its config: torch's numerics settings, the
split of the global batch into micro-batches, the optimiser and the learning-rate schedule."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from axlstm.engine.config import ConfigError
from axlstm.engine.optim import WarmupCosine, WarmupPlateau, WarmupStep, build_optimizer

__all__ = [
    "build_scheduler",
    "check_plateau_metric",
    "configure_optimizer",
    "configure_torch",
    "micro_batch_size",
]


def configure_torch(engine: Any, device: torch.device) -> None:
    """Apply ``engine.num_threads``, ``engine.deterministic`` and (on CUDA) ``engine.tf32``."""
    if engine.num_threads:
        torch.set_num_threads(engine.num_threads)
    if engine.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = engine.tf32
        torch.backends.cudnn.allow_tf32 = engine.tf32


def micro_batch_size(global_batch: int, world: int, accum: int) -> int:
    """Clips per rank per forward pass, so that ``world x accum`` of them make a step.

    Raises:
        ConfigError: ``global_batch`` does not split evenly.
    """
    if global_batch % (world * accum):
        raise ConfigError(
            f"optim.global_batch={global_batch} is not divisible by "
            f"{world} rank(s) x {accum} accumulation step(s)"
        )
    return global_batch // (world * accum)


def configure_optimizer(
    model: nn.Module, optim: Any, peak_lr: float, groups: list[dict] | None = None
) -> torch.optim.Optimizer:
    """The optimiser ``optim`` (the config's ``optim`` section) names, at ``peak_lr``, over
    ``groups`` when the task made its own parameter groups."""
    return build_optimizer(
        model,
        peak_lr,
        optim.weight_decay,
        optim.betas,
        optim.eps,
        name=optim.name,
        decay_scope=optim.weight_decay_scope,
        groups=groups,
    )


def check_plateau_metric(schedule: Any, metric_names: list[str]) -> None:
    """Raise :class:`ConfigError` if a plateau schedule watches a metric the model does not log
    (it logs the loss and ``metric_names``)."""
    if schedule.decay == "plateau" and schedule.plateau_metric not in ("loss", *metric_names):
        raise ConfigError(
            f"schedule.plateau_metric={schedule.plateau_metric!r} is not logged by this model; "
            f"choose one of {['loss', *metric_names]}"
        )


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    cfg: Any,
    peak_lr: float,
    warmup: int,
    total: int,
    steps_per_epoch: int = 1,
) -> WarmupCosine | WarmupPlateau | WarmupStep:
    """The schedule ``cfg.schedule`` asks for: warm-up, then ReduceLROnPlateau, epoch steps
    or a cosine."""
    sched = cfg.schedule
    if sched.decay == "step":
        return WarmupStep(
            optimizer,
            peak_lr,
            warmup,
            total,
            cfg.optim.min_lr,
            sched.warmup_stair,
            steps_per_epoch=steps_per_epoch,
            start=sched.step_start_epoch,
            every=sched.step_every_epochs,
            factor=sched.step_factor,
        )
    if sched.decay == "plateau":
        return WarmupPlateau(
            optimizer,
            peak_lr,
            warmup,
            total,
            cfg.optim.min_lr,
            stair=sched.warmup_stair,
            mode=sched.plateau_mode,
            factor=sched.plateau_factor,
            patience=sched.plateau_patience,
            threshold=sched.plateau_threshold,
        )
    return WarmupCosine(optimizer, peak_lr, warmup, total, cfg.optim.min_lr, sched.warmup_stair)
