"""Bookkeeping of the trainer's logs: the sums behind the logged averages, the account of
skipped (bad) data items, and the description of a run written to RUN_DIR/run.json."""

from __future__ import annotations

import logging
import platform
import sys
import time
from collections import Counter
from typing import Any

import torch

from axlstm._version import __version__
from axlstm.data.stream import DataStream
from axlstm.engine.distributed import DistInfo, all_gather_objects
from axlstm.engine.precision import Precision

__all__ = ["IntervalSums", "note_skips", "run_info", "skip_totals"]

logger = logging.getLogger(__name__)

# Skipped files named in the log, per process; later ones are only counted.
_MAX_NAMED_SKIPS = 10_000


def note_skips(
    events: list[tuple[str, str]], counts: Counter, named: set[str], dist: DistInfo
) -> None:
    """Count skipped items by reason in ``counts``; name each one in the log the first time
    it is met (``named`` holds the names already logged by this process)."""
    for reason, name in events:
        counts[reason] += 1
        if name in named:
            continue
        where = f"rank {dist.rank}: " if dist.distributed else ""
        if len(named) < _MAX_NAMED_SKIPS:
            named.add(name)
            logger.warning("%sskipped %s (%s)", where, name, reason)
        elif len(named) == _MAX_NAMED_SKIPS:
            named.add(name)
            logger.warning(
                "%s%d items skipped so far; further ones are counted but not named",
                where,
                _MAX_NAMED_SKIPS,
            )


def skip_totals(counts: Counter, dist: DistInfo) -> Counter:
    """The skip counts of all ranks added up; every rank must call it (it gathers)."""
    gathered = all_gather_objects(dict(counts), dist)
    return sum((Counter(c) for c in gathered), Counter())


def run_info(
    *,
    cfg: Any,
    dist: DistInfo,
    precision: Precision,
    data: DataStream,
    resumed_from_step: int | None,
    micro_batch: int,
    peak_lr: float,
    total_steps: int,
    warmup_steps: int,
    steps_per_epoch: int,
) -> dict[str, Any]:
    """What RUN_DIR/run.json records: versions, host, command line, and how the run is set up."""
    return {
        "axlstm_version": __version__,
        "torch_version": str(torch.__version__),
        "python": platform.python_version(),
        "host": platform.node(),
        "command": sys.argv,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "resumed_from_step": resumed_from_step,
        "world_size": dist.world_size,
        "device": str(dist.device),
        "backend": dist.backend,
        "precision": precision.name,
        "micro_batch": micro_batch,
        "global_batch": cfg.optim.global_batch,
        "peak_lr": peak_lr,
        "total_steps": total_steps,
        "warmup_steps": warmup_steps,
        "steps_per_epoch": steps_per_epoch,
        "data": data.description,
        "data_items": data.num_items,
    }


class IntervalSums:
    """The sums behind the logged averages: of the loss and the task's metrics since the last
    log record, and of the plateau metric since the last plateau check.

    They are part of the checkpoint (:meth:`state_dict`), so a resumed run logs, and reduces
    the learning rate on, the same averages as an uninterrupted one.

    Args:
        metric_names: the task's metrics, in the order :meth:`add` receives them.
        plateau_metric: ``"loss"`` or one of ``metric_names``; ``None`` without a plateau
            schedule.
    """

    def __init__(self, metric_names: list[str], plateau_metric: str | None = None) -> None:
        self.metric_names = list(metric_names)
        self.plateau_metric = plateau_metric
        self.loss, self.n = 0.0, 0
        self.metrics = dict.fromkeys(self.metric_names, 0.0)
        self.plateau_sum, self.plateau_n = 0.0, 0

    def add(self, loss: float, metrics: list[float], steps: int, world: int) -> None:
        """Add ``steps`` steps, given the sums over ``world`` ranks of their mean loss and of
        their mean metrics."""
        self.loss += loss / world
        self.n += steps
        for name, value in zip(self.metric_names, metrics, strict=True):
            self.metrics[name] += value / world
        if self.plateau_metric is not None:
            if self.plateau_metric == "loss":
                value = loss
            else:
                value = metrics[self.metric_names.index(self.plateau_metric)]
            self.plateau_sum += value / world
            self.plateau_n += steps

    def take_log_means(self) -> tuple[float, dict[str, float]]:
        """The mean loss and metrics since the last log record; starts the next interval."""
        n = max(self.n, 1)
        loss = self.loss / n
        metrics = {k: v / n for k, v in self.metrics.items()}
        self.loss, self.n = 0.0, 0
        self.metrics = dict.fromkeys(self.metric_names, 0.0)
        return loss, metrics

    def take_plateau_mean(self) -> float:
        """The mean plateau metric since the last check; starts the next interval."""
        value = self.plateau_sum / max(self.plateau_n, 1)
        self.plateau_sum, self.plateau_n = 0.0, 0
        return value

    def state_dict(self) -> dict[str, Any]:
        return {
            "log_interval": [self.loss, self.n],
            "log_metrics": dict(self.metrics),
            "plateau_interval": [self.plateau_sum, self.plateau_n],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from a checkpoint (missing keys leave the sums at zero; metrics this run
        does not log are dropped)."""
        self.loss, self.n = state.get("log_interval", (0.0, 0))
        for name, value in (state.get("log_metrics") or {}).items():
            if name in self.metrics:
                self.metrics[name] = float(value)
        self.plateau_sum, self.plateau_n = state.get("plateau_interval", (0.0, 0))
