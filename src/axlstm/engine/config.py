"""The engine's config sections (optimiser, schedule, engine, logging).

The typed machinery (dataclass trees from YAML mappings, ``key.sub=value`` overrides, checked
conversion, unknown keys) is :mod:`axlstm.core.config`; it is re-exported here.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

from axlstm.core.config import (
    ConfigBase,
    apply_overrides,
    coerce_value,
    config_from_dict,
    config_to_dict,
    config_to_yaml,
    diff_configs,
    parse_value,
    set_value,
    validate_tree,
)
from axlstm.core.errors import ConfigError

__all__ = [
    "ConfigError",
    "EngineConfig",
    "LoggingConfig",
    "OptimConfig",
    "ScheduleConfig",
    "apply_overrides",
    "coerce_value",
    "config_from_dict",
    "config_to_dict",
    "config_to_yaml",
    "diff_configs",
    "parse_value",
    "set_value",
    "validate_tree",
]


# ------------------------------------------------------------------------------- the sections
def _check_finite(section: Any, prefix: str) -> None:
    """Every number of a section (and of its lists) is finite: NaN or inf is a ConfigError
    naming the key, before an optimiser or a schedule is built from it."""
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        for v in value if isinstance(value, (tuple, list)) else (value,):
            if isinstance(v, float) and not math.isfinite(v):
                raise ConfigError(f"{prefix}.{f.name} must be a finite number, got {value!r}")


@dataclass
class OptimConfig(ConfigBase):
    """AdamW and its batch-size rule (SPEC §5); Adam for the original SSAST.

    Attributes:
        name: "adamw" (decoupled weight decay; AxLSTM, SSAMBA) or "adam" (decay added to the
            gradient as L2: the original SSAST, SPEC-SSAST-SSAMBA §A8).
        global_batch: clips per optimiser step over all ranks and accumulation micro-batches.
        base_lr: learning rate per 256 clips: the peak is ``base_lr * global_batch / 256``.
        lr: absolute peak learning rate; overrides the rule when set.
        min_lr: floor the cosine decays to.
        betas, eps: AdamW moments.
        weight_decay: decay strength (see ``weight_decay_scope``).
        weight_decay_scope: "weights" (weight matrices only; tensors with ndim <= 1 and biases
            get none, timm's ``param_groups_weight_decay``) or "all" (every trainable
            parameter, as the SSAST/SSAMBA optimisers over ``model.parameters()``).
        grad_accum: micro-batches per optimiser step.
        clip_grad_norm: clip the global gradient norm to this (None: no clipping, as officially).
    """

    name: Literal["adamw", "adam"] = "adamw"
    global_batch: int = 1024
    base_lr: float = 1.5e-4
    lr: float | None = None
    min_lr: float = 0.0
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    weight_decay: float = 0.05
    weight_decay_scope: Literal["weights", "all"] = "weights"
    grad_accum: int = 1
    clip_grad_norm: float | None = None

    def validate(self) -> None:
        _check_finite(self, "optim")
        if self.global_batch <= 0 or self.grad_accum <= 0:
            raise ConfigError("optim.global_batch and optim.grad_accum must be positive")
        if self.global_batch % self.grad_accum:
            raise ConfigError(
                f"optim.global_batch={self.global_batch} is not divisible by "
                f"optim.grad_accum={self.grad_accum}"
            )
        if self.base_lr < 0 or (self.lr is not None and self.lr < 0) or self.min_lr < 0:
            raise ConfigError("learning rates must be >= 0")
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise ConfigError(f"optim.betas must be in [0, 1), got {self.betas}")
        if self.clip_grad_norm is not None and self.clip_grad_norm <= 0:
            raise ConfigError("optim.clip_grad_norm must be positive (or null for no clipping)")
        if self.weight_decay < 0:
            raise ConfigError(f"optim.weight_decay must be >= 0, got {self.weight_decay}")
        if self.eps < 0:
            raise ConfigError(f"optim.eps must be >= 0, got {self.eps}")

    def peak_lr(self) -> float:
        return self.lr if self.lr is not None else self.base_lr * self.global_batch / 256


@dataclass
class ScheduleConfig(ConfigBase):
    """Length of training and the per-step learning-rate schedule: a warm-up, then a
    half-cosine (AxLSTM) or ReduceLROnPlateau on a logged metric (SSAST/SSAMBA).

    Attributes:
        epochs: training length in epochs.
        steps_per_epoch: optimiser steps per epoch (2003 for AudioSet at batch 1024); null
            derives it from the data size when that is known.
        warmup_epochs: linear warm-up from 0 to the peak.
        max_steps: total steps; overrides ``epochs``. The warm-up then keeps its share of
            the run (``warmup_epochs / epochs``) unless ``warmup_steps`` is given.
        warmup_steps: warm-up length in steps; overrides ``warmup_epochs``.
        warmup_stair: the warm-up lr changes every this many steps (1: a linear ramp; the
            official SSAST/SSAMBA loop resets it to ``step / 1000 * peak`` every 50 steps).
        decay: after the warm-up, "cosine" (half-cosine to ``optim.min_lr`` at the end) or
            "plateau" (the peak, multiplied by ``plateau_factor`` whenever ``plateau_metric``
            has not improved for more than ``plateau_patience`` checks; never below
            ``optim.min_lr``).
        plateau_every: steps between plateau checks (SSAST: 800 tiny, 4000 base). The metric
            is the mean of the training records over those steps: the official code measures
            MPC accuracy on the AudioSet evaluation set instead, which this trainer does not
            hold.
        plateau_metric: a metric the task logs ("acc", "nce", "mse" for SSAST/SSAMBA) or
            "loss".
        plateau_mode: "max" (accuracy) or "min" (a loss).
        plateau_factor, plateau_patience, plateau_threshold: ReduceLROnPlateau's factor (0.5),
            patience (2) and relative threshold (1e-4).
        step_start_epoch, step_every_epochs, step_factor: with ``decay: step`` the lr is
            multiplied by ``step_factor`` at the start of epochs ``start, start + every, ...``
            (0-based; the SSAST/SSAMBA fine-tuning schedule, e.g. x0.85 every epoch from 6).
    """

    epochs: float = 100.0
    steps_per_epoch: int | None = 2003
    warmup_epochs: float = 10.0
    max_steps: int | None = None
    warmup_steps: int | None = None
    warmup_stair: int = 1
    decay: Literal["cosine", "plateau", "step"] = "cosine"
    step_start_epoch: float = 0.0
    step_every_epochs: float = 1.0
    step_factor: float = 0.85
    plateau_every: int = 4000
    plateau_metric: str = "acc"
    plateau_mode: Literal["max", "min"] = "max"
    plateau_factor: float = 0.5
    plateau_patience: int = 2
    plateau_threshold: float = 1e-4

    def validate(self) -> None:
        _check_finite(self, "schedule")
        if self.epochs <= 0 or self.warmup_epochs < 0 or self.warmup_epochs > self.epochs:
            raise ConfigError("need 0 <= schedule.warmup_epochs <= schedule.epochs, epochs > 0")
        if self.steps_per_epoch is not None and self.steps_per_epoch <= 0:
            raise ConfigError("schedule.steps_per_epoch must be positive (or null)")
        if self.max_steps is not None and self.max_steps <= 0:
            raise ConfigError("schedule.max_steps must be positive (or null)")
        if self.warmup_steps is not None and self.warmup_steps < 0:
            raise ConfigError("schedule.warmup_steps must be >= 0 (or null)")
        if self.warmup_stair < 1 or self.plateau_every < 1 or self.plateau_patience < 0:
            raise ConfigError(
                "schedule.warmup_stair and schedule.plateau_every must be >= 1, "
                "schedule.plateau_patience >= 0"
            )
        if self.step_start_epoch < 0 or self.step_every_epochs <= 0:
            raise ConfigError("schedule.step_start_epoch >= 0 and step_every_epochs > 0")
        if not 0.0 < self.step_factor <= 1.0:
            raise ConfigError(f"schedule.step_factor must be in (0, 1], got {self.step_factor}")
        if not 0.0 < self.plateau_factor < 1.0 or self.plateau_threshold < 0:
            raise ConfigError(
                "schedule.plateau_factor must be in (0, 1) and schedule.plateau_threshold >= 0"
            )

    def resolve(self, num_items: int | None, global_batch: int) -> tuple[int, int, int]:
        """``(total_steps, warmup_steps, steps_per_epoch)`` for this run."""
        spe = self.steps_per_epoch
        if spe is None:
            if not num_items:
                if self.max_steps is None or self.warmup_steps is None:
                    raise ConfigError(
                        "schedule.steps_per_epoch is null and the data size is unknown "
                        "(shards without index.json); set schedule.steps_per_epoch, or both "
                        "schedule.max_steps and schedule.warmup_steps"
                    )
                spe = max(1, self.max_steps)
            else:
                spe = max(1, num_items // global_batch)
        total = self.max_steps if self.max_steps is not None else round(self.epochs * spe)
        if self.warmup_steps is not None:
            warmup = self.warmup_steps
        elif self.max_steps is not None:
            warmup = round(total * self.warmup_epochs / self.epochs)
        else:
            warmup = round(self.warmup_epochs * spe)
        return max(1, total), min(warmup, total), spe


@dataclass
class EngineConfig(ConfigBase):
    """Where and how the loop runs, and how it checkpoints.

    Attributes:
        device: "auto" (CUDA when available, one GPU per local rank), "cpu", "cuda" or
            "cuda:N" (single process).
        precision: fp32, bf16 or fp16 (CUDA autocast; fp16 with a GradScaler). On CPU the run
            always uses fp32 and says so when something else was asked.
        seed: base seed; rank r seeds its RNGs with seed + r (as officially). Masks come from
            a generator owned by the trainer, reseeded from (seed, rank, micro-batch).
        deterministic: ask PyTorch for deterministic kernels (slower on CUDA).
        num_threads: torch intra-op threads (0: PyTorch's default).
        tf32: allow TF32 matmuls and convolutions on CUDA (as officially).
        ckpt_every: steps between checkpoints (one is always written at the end).
        keep_last: numbered checkpoints kept besides ``last.pt``.
        check_finite_every: steps between loss finiteness checks (each one syncs the device).
        crash_after_step: testing hook: SIGKILL this process right after step N (and its
            checkpoint, if one is due) to rehearse a crash. Never set it in real runs.
        compile: run the training step under ``torch.compile`` (the masks are drawn
            eagerly, the encoder, heads and loss in one graph; see
            :mod:`axlstm.models.compile`). Checkpoints hold the plain model's weights.
        compile_mode: torch.compile mode: "auto" (CUDA graphs, "reduce-overhead", on CUDA;
            "default" elsewhere), "default", "reduce-overhead", "max-autotune" or
            "max-autotune-no-cudagraphs" (the CUDA-graph modes fall back off CUDA).
    """

    device: str = "auto"
    precision: Literal["fp32", "bf16", "fp16"] = "fp16"
    seed: int = 0
    deterministic: bool = False
    num_threads: int = 0
    tf32: bool = True
    ckpt_every: int = 4006
    keep_last: int = 5
    check_finite_every: int = 1
    crash_after_step: int | None = None
    compile: bool = False
    compile_mode: Literal[
        "auto", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"
    ] = "auto"

    def validate(self) -> None:
        if self.seed < 0:
            raise ConfigError(f"engine.seed must be >= 0, got {self.seed}")
        if self.ckpt_every <= 0 or self.keep_last < 1 or self.check_finite_every < 1:
            raise ConfigError(
                "engine.ckpt_every, engine.keep_last and engine.check_finite_every must be >= 1"
            )
        if self.num_threads < 0:
            raise ConfigError("engine.num_threads must be >= 0")
        dev = self.device
        if not (dev in ("auto", "cpu", "cuda") or dev.startswith("cuda:")):
            raise ConfigError(f"engine.device must be auto, cpu, cuda or cuda:N, got {dev!r}")


@dataclass
class LoggingConfig(ConfigBase):
    """What the run records.

    Attributes:
        log_every: steps between records in log.jsonl / log.csv / TensorBoard.
        tensorboard: write TensorBoard events when the ``tensorboard`` package is installed.
        csv: also write log.csv.
        plots: write plots/loss.png and plots/reconstruction.png at the end.
        recon_clips: clips shown in the reconstruction plot.
    """

    log_every: int = 50
    tensorboard: bool = True
    csv: bool = True
    plots: bool = True
    recon_clips: int = 4

    def validate(self) -> None:
        if self.log_every < 1 or self.recon_clips < 1:
            raise ConfigError("logging.log_every and logging.recon_clips must be >= 1")


# ------------------------------------------------------------------------- typed conversion
