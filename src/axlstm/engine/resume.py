"""The checkpoint side of the trainer: which checkpoint a run continues from, what a
checkpoint holds, and the parts of a resume that need care.

Exact resume rests on the checkpoint holding, besides the model, optimiser, scheduler and
scaler, every rank's data position, RNG states (the mask generator's included) and skip
counts, and the running sums of the current log and plateau intervals. A checkpoint written
by another number of ranks still resumes, but not exactly: the RNGs are then reseeded.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from torch import nn

from axlstm._version import __version__
from axlstm.data.stream import DataStream
from axlstm.engine.checkpoint import (
    CKPT_FORMAT,
    CKPT_VERSION,
    CheckpointManager,
    capture_rng,
    load_checkpoint,
    restore_rng,
)
from axlstm.engine.config import ConfigError, config_to_dict, diff_configs
from axlstm.engine.optim import WarmupCosine, WarmupPlateau
from axlstm.engine.task import TrainTask

__all__ = [
    "checkpoint_state",
    "config_changes",
    "find_resume_state",
    "rank_state",
    "restore_rank",
    "restore_schedule",
]

logger = logging.getLogger(__name__)

# Config keys that may change between an interrupted run and its resumption without
# affecting exactness (they are not reported as differences).
_BENIGN_CHANGES = ("engine.crash_after_step", "logging.", "data.num_workers", "data.prefetch")


def find_resume_state(
    ckpts: CheckpointManager, run_dir: Path, resume: bool
) -> dict[str, Any] | None:
    """The loaded checkpoint to continue from, or ``None`` to start from scratch.

    Raises:
        ConfigError: ``run_dir`` already holds a checkpoint but ``resume`` is off.
    """
    state = None
    latest = ckpts.latest()
    if latest is not None:
        if not resume:
            raise ConfigError(
                f"{run_dir} already holds a checkpoint ({latest}); pass "
                "--resume to continue it or choose another --out folder"
            )
        state = load_checkpoint(latest)
        logger.info("resuming from %s (step %d)", latest, state["step"])
    elif resume:
        logger.info("no checkpoint in %s: starting from scratch", run_dir)
    return state


def rank_state(
    mask_generator: torch.Generator, data: DataStream, skip_counts: Counter
) -> dict[str, Any]:
    """What one rank contributes to a checkpoint: its RNG states, data position and skips."""
    return {
        "rng": capture_rng({"mask": mask_generator}),
        "data": data.state_dict(),
        "skipped": dict(skip_counts),
    }


def checkpoint_state(
    progress: dict[str, Any],
    *,
    cfg: Any,
    task: TrainTask,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: WarmupCosine | WarmupPlateau,
    scaler: torch.amp.GradScaler,
    ranks: list[dict[str, Any]],
) -> dict[str, Any]:
    """Everything a training checkpoint holds.

    Args:
        progress: where the run stands (step, micro-batches, samples seen, world size, last
            loss, the running log and plateau sums), stored as given after the format fields.
        ranks: every rank's :func:`rank_state`, in rank order.
    """
    return {
        "format": CKPT_FORMAT,
        "format_version": CKPT_VERSION,
        "axlstm_version": __version__,
        "torch_version": str(torch.__version__),
        **progress,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "model_class": task.model_class(model),
        "model_config": task.model_config(model),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "rng": [r["rng"] for r in ranks],
        "data": [r["data"] for r in ranks],
        "skipped": [r["skipped"] for r in ranks],
        "config": config_to_dict(cfg),
        "time": time.time(),
    }


def restore_schedule(scheduler: WarmupCosine | WarmupPlateau, saved: dict[str, Any]) -> None:
    """Restore the plateau's progress (best value, reductions) from a checkpoint's scheduler
    state; warn when the schedule itself was configured differently."""
    old_sched, new_sched = dict(saved), scheduler.state_dict()
    progress = old_sched.pop("progress", None)
    new_sched.pop("progress", None)
    if progress is not None and hasattr(scheduler, "load_progress"):
        scheduler.load_progress(progress)  # the plateau's best value and reductions
    if old_sched and old_sched != new_sched:
        logger.warning("the schedule changed on resume: %s -> %s", old_sched, new_sched)


def restore_rank(
    state: dict[str, Any], rank: int, world: int, mask_generator: torch.Generator
) -> Counter:
    """Restore this rank's RNG states (the mask generator's included); return its skip counts.

    With a different number of ranks than the checkpoint's, the RNGs are left as seeded and
    rank 0 takes over the skip counts of all the old ranks (the others start from none).
    """
    rngs, skips = state.get("rng", []), state.get("skipped", [])
    if len(rngs) == world:
        restore_rng(rngs[rank], {"mask": mask_generator})
        return Counter(skips[rank] if rank < len(skips) else {})
    logger.warning(
        "the checkpoint was written by %d rank(s), this run has %d: RNG states are "
        "reseeded and the run will not match an uninterrupted one exactly",
        len(rngs),
        world,
    )
    if rank == 0:
        return sum((Counter(s) for s in skips), Counter())
    return Counter()


def config_changes(saved: dict[str, Any], cfg: Any) -> list[str]:
    """The differences between a checkpoint's config and ``cfg`` that may affect exactness."""
    return [
        c for c in diff_configs(saved, config_to_dict(cfg)) if not c.startswith(_BENIGN_CHANGES)
    ]
