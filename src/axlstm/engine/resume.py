"""The checkpoint side of the trainer: which checkpoint a run continues from (the newest
intact one), what a checkpoint holds, the parts of a resume that need care, and stopping on
a signal with a checkpoint to resume from.

Exact resume rests on the checkpoint holding, besides the model, optimiser, scheduler and
scaler, every rank's data position, RNG states (the mask generator's included) and skip
counts, and the running sums of the current log and plateau intervals. A checkpoint written
by another number of ranks still resumes, but not exactly: the RNGs are then reseeded.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from axlstm._version import __version__
from axlstm.core.errors import CheckpointError, UsageError
from axlstm.core.interrupt import Interrupted
from axlstm.data.stream import DataStream
from axlstm.engine.checkpoint import (
    CKPT_FORMAT,
    CKPT_VERSION,
    CheckpointManager,
    capture_rng,
    load_checkpoint,
    restore_rng,
)
from axlstm.engine.config import config_to_dict, diff_configs
from axlstm.engine.optim import WarmupCosine, WarmupPlateau
from axlstm.engine.task import TrainTask

__all__ = [
    "checkpoint_state",
    "config_changes",
    "find_resume_state",
    "load_model_state",
    "rank_state",
    "restore_rank",
    "restore_schedule",
    "stop_on_signals",
]

logger = logging.getLogger(__name__)

# Config keys that may change between an interrupted run and its resumption without
# affecting exactness (they are not reported as differences).
_BENIGN_CHANGES = ("engine.crash_after_step", "logging.", "data.num_workers", "data.prefetch")
# What a resume reads besides the model weights and the step.
_RESUME_KEYS = ("micro_batches", "optimizer", "data")


def find_resume_state(
    ckpts: CheckpointManager, run_dir: Path, resume: bool
) -> tuple[dict[str, Any], Path] | None:
    """The loaded checkpoint to continue from and its path, or ``None`` to start afresh.

    The newest checkpoint is tried first (see :meth:`CheckpointManager.candidates`); one that
    cannot be used (truncated, corrupt, not a training checkpoint, non-finite weights) is
    passed over for the newest intact one, with a warning naming both.

    Raises:
        UsageError: ``run_dir`` holds a checkpoint but ``resume`` is off, or ``resume`` is on
            and it holds none.
        CheckpointError: every checkpoint is damaged (each is named, with its problem).
    """
    candidates = ckpts.candidates()
    if not resume:
        if candidates:
            raise UsageError(
                f"{run_dir} already holds a checkpoint ({candidates[0]}); pass --resume to "
                "continue it or choose another --out folder"
            )
        return None
    if not candidates:
        raise UsageError(
            f"--resume: {run_dir} holds no checkpoint to continue from (nothing in "
            f"{ckpts.directory}); run without --resume to start a new run there"
        )
    damaged: list[tuple[Path, str]] = []
    for path in candidates:
        try:
            state = load_checkpoint(path)
            missing = [k for k in _RESUME_KEYS if k not in state]
            if missing:
                raise CheckpointError(f"{path}: damaged training checkpoint (no {missing})")
        except (CheckpointError, OSError) as err:
            damaged.append((path, str(err)))
            continue
        for bad, problem in damaged:
            logger.warning(
                "checkpoint %s cannot be used (%s); resuming from %s (step %d) instead",
                bad,
                problem,
                path,
                state["step"],
            )
        last = ckpts.last
        tried = {p for p, _ in damaged} | {path}
        if last not in tried and last.is_file() and not zipfile.is_zipfile(last):
            # not read (a newer file was intact), but the user should know it is broken
            logger.warning(
                "checkpoint %s is damaged (not a complete checkpoint file); it is replaced at "
                "the next save",
                last,
            )
        logger.info("resuming from %s (step %d)", path, state["step"])
        return state, path
    listed = "; ".join(problem for _, problem in damaged)
    raise CheckpointError(
        f"--resume: no intact checkpoint in {ckpts.directory}; all {len(damaged)} are "
        f"damaged: {listed}"
    )


@contextmanager
def stop_on_signals(request_stop: Callable[[int], None]) -> Iterator[None]:
    """Within the block the first SIGINT (Ctrl-C) or SIGTERM calls ``request_stop(signum)``:
    the run finishes its step, writes a checkpoint and ends, to be continued with
    ``--resume``. A second signal raises :class:`~axlstm.core.interrupt.Interrupted` (a
    ``KeyboardInterrupt``) at once. A no-op off the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        if received:
            raise Interrupted(signum)
        received.append(signum)
        request_stop(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, signal.SIG_DFL if old is None else old)


def load_model_state(model: nn.Module, state: dict[str, Any], path: Path) -> None:
    """Load a checkpoint's weights into the run's model, or say why they do not fit."""
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        text = " ".join(str(err).split())
        raise CheckpointError(
            f"{path} does not fit the model of this run's config (was the model changed with "
            f"--set?): {text}"
        ) from err


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
        "task": task.state_dict() if hasattr(task, "state_dict") else None,
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
