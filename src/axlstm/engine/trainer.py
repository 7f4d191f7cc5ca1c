"""The one training loop: distributed set-up, precision, accumulation, clipping, the schedule,
exact checkpoint/resume, bad-data accounting and logging.

What is trained is a *task* (see :class:`TrainTask`): it builds the model and the data stream
and computes the loss of a batch; the pretraining recipe is one
(:class:`axlstm.recipes.pretrain.MaskedSpecTask`).

Exact resume rests on three facts: the data position is part of the checkpoint (see
:mod:`axlstm.data.stream`); the masks come from a generator owned by the trainer and reseeded
from ``(seed, rank, micro-batch)`` before every forward pass; every other RNG state of every
rank is saved and restored too.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import random
import signal
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

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
from axlstm.engine.config import ConfigError, config_to_dict, config_to_yaml, diff_configs
from axlstm.engine.distributed import (
    DistInfo,
    all_gather_objects,
    all_reduce_sum,
    barrier,
    setup_distributed,
    teardown_distributed,
)
from axlstm.engine.metrics import MetricsWriter, read_records
from axlstm.engine.optim import WarmupCosine, WarmupPlateau, build_optimizer
from axlstm.engine.precision import Precision, resolve_precision

__all__ = [
    "NonFiniteLossError",
    "TrainSummary",
    "TrainTask",
    "Trainer",
    "TrainerCallback",
    "mask_seed",
]

logger = logging.getLogger(__name__)

# Config keys that may change between an interrupted run and its resumption without
# affecting exactness (they are not reported as differences).
_BENIGN_CHANGES = ("engine.crash_after_step", "logging.", "data.num_workers", "data.prefetch")


# Skipped files named in the log, per process; later ones are only counted.
_MAX_NAMED_SKIPS = 10_000


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the run stopped before applying that update."""


class TrainTask(Protocol):
    """What the trainer needs from a recipe."""

    def build_model(self) -> nn.Module: ...

    def model_config(self, model: nn.Module) -> dict[str, Any]: ...

    def model_class(self, model: nn.Module) -> str: ...

    def build_data(
        self,
        *,
        seed: int,
        rank: int,
        world: int,
        micro_batch: int,
        states: list[dict[str, Any]] | None,
        pin_memory: bool,
        model: nn.Module,
    ) -> DataStream: ...

    def training_loss(
        self, model: nn.Module, spec: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss of a batch; or ``(loss, metrics)`` with scalar tensors named by
        ``metric_names`` (optional method), which are averaged and logged like the loss."""
        ...

    def finish(self, model: nn.Module, spec: torch.Tensor | None, run_dir: Path) -> None: ...


class TrainerCallback:
    """Hooks for progress display; called on rank 0 only."""

    def on_start(self, trainer: Trainer) -> None:
        pass

    def on_step(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        pass

    def on_log(self, trainer: Trainer, record: dict[str, Any]) -> None:
        pass

    def on_end(self, trainer: Trainer, summary: TrainSummary) -> None:
        pass


@dataclass
class TrainSummary:
    """The outcome of :meth:`Trainer.fit`."""

    run_dir: str
    start_step: int
    steps: int
    total_steps: int
    final_loss: float | None
    wall_s: float
    clips_per_s: float | None
    skipped: dict[str, int] = field(default_factory=dict)
    last_checkpoint: str | None = None
    stopped_early: bool = False


def mask_seed(seed: int, rank: int, micro_batch: int) -> int:
    """Seed of the mask generator for one micro-batch of one rank."""
    ss = np.random.SeedSequence([seed, 0x4D41534B, rank, micro_batch])  # "MASK"
    return int(ss.generate_state(1, np.uint64)[0])


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer:
    """Runs a task under a config with ``optim``, ``schedule``, ``engine`` and ``logging``.

    Args:
        cfg: the run's config tree (a dataclass; written to RUN_DIR/config.yaml).
        run_dir: output folder: config.yaml, run.json, log.jsonl, log.csv, checkpoints/,
            tensorboard/, plots/, summary.json.
        task: the recipe.
        resume: continue from RUN_DIR/checkpoints/last.pt if it exists (start afresh if not).
        callback: progress hooks (rank 0).
    """

    def __init__(
        self,
        cfg: Any,
        run_dir: str | Path,
        task: TrainTask,
        resume: bool = False,
        callback: TrainerCallback | None = None,
    ) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.task = task
        self.resume = resume
        self.callback = callback or TrainerCallback()
        self.step = 0
        self.start_step = 0
        self.micro_batches = 0
        self.total_steps = 0
        self.skip_counts: Counter = Counter()
        self.last_loss: float | None = None
        self.last_checkpoint: Path | None = None
        self._saved_step = -1
        self._last_spec: torch.Tensor | None = None
        # Loss sum and step count since the last log record (saved, so a resumed run logs
        # the same averages as an uninterrupted one).
        self._log_loss, self._log_n = 0.0, 0
        # The same for the task's metrics (e.g. SSAST's nce / mse / acc), and the sum and count
        # of the plateau metric since the last plateau check.
        self.metric_names: list[str] = []
        self._log_metrics: dict[str, float] = {}
        self._plateau_sum, self._plateau_n = 0.0, 0
        self._stop_requested = False
        self._named_skips: set[str] = set()
        self.stopped_early = False

    # ------------------------------------------------------------------------------- set-up
    def _setup(self) -> None:
        cfg, e = self.cfg, self.cfg.engine
        self.dist: DistInfo = setup_distributed(e.device)
        dev = self.dist.device
        if e.num_threads:
            torch.set_num_threads(e.num_threads)
        if e.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        if dev.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = e.tf32
            torch.backends.cudnn.allow_tf32 = e.tf32
        self.precision: Precision = resolve_precision(e.precision, dev)

        world, accum = self.dist.world_size, cfg.optim.grad_accum
        if cfg.optim.global_batch % (world * accum):
            raise ConfigError(
                f"optim.global_batch={cfg.optim.global_batch} is not divisible by "
                f"{world} rank(s) x {accum} accumulation step(s)"
            )
        self.micro_batch = cfg.optim.global_batch // (world * accum)

        self.ckpts = CheckpointManager(
            self.run_dir / "checkpoints", e.keep_last, cleanup=self.dist.is_main
        )
        state = None
        latest = self.ckpts.latest()
        if latest is not None:
            if not self.resume:
                raise ConfigError(
                    f"{self.run_dir} already holds a checkpoint ({latest}); pass "
                    "--resume to continue it or choose another --out folder"
                )
            state = load_checkpoint(latest)
            logger.info("resuming from %s (step %d)", latest, state["step"])
        elif self.resume:
            logger.info("no checkpoint in %s: starting from scratch", self.run_dir)
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)

        # The model is initialised identically on every rank, whatever the world size.
        torch.manual_seed(e.seed)
        model = self.task.build_model()
        if state is not None:
            model.load_state_dict(state["model"])
        self.model = model.to(dev)
        names = getattr(self.task, "metric_names", None)
        self.metric_names = [str(n) for n in names(model)] if callable(names) else []
        self._log_metrics = dict.fromkeys(self.metric_names, 0.0)
        sched = cfg.schedule
        if sched.decay == "plateau" and sched.plateau_metric not in ("loss", *self.metric_names):
            raise ConfigError(
                f"schedule.plateau_metric={sched.plateau_metric!r} is not logged by this model; "
                f"choose one of {['loss', *self.metric_names]}"
            )
        _seed_everything(e.seed + self.dist.rank)  # as officially: seed + rank

        self.data = self.task.build_data(
            seed=e.seed,
            rank=self.dist.rank,
            world=world,
            micro_batch=self.micro_batch,
            states=state["data"] if state is not None else None,
            pin_memory=dev.type == "cuda",
            model=self.model,
        )
        total, warmup, spe = cfg.schedule.resolve(self.data.num_items, cfg.optim.global_batch)
        self.total_steps, self.steps_per_epoch = total, spe
        self.peak_lr = cfg.optim.peak_lr()
        self.optimizer = build_optimizer(
            self.model,
            self.peak_lr,
            cfg.optim.weight_decay,
            cfg.optim.betas,
            cfg.optim.eps,
            name=cfg.optim.name,
            decay_scope=cfg.optim.weight_decay_scope,
        )
        if sched.decay == "plateau":
            self.scheduler = WarmupPlateau(
                self.optimizer,
                self.peak_lr,
                warmup,
                total,
                cfg.optim.min_lr,
                stair=sched.warmup_stair,
                mode=sched.plateau_mode,
                factor=sched.plateau_factor,
                patience=sched.plateau_patience,
                threshold=sched.plateau_threshold,
            )
        else:
            self.scheduler = WarmupCosine(
                self.optimizer, self.peak_lr, warmup, total, cfg.optim.min_lr, sched.warmup_stair
            )
        self.scaler = self.precision.grad_scaler()
        self.mask_generator = torch.Generator(device=dev)
        if state is not None:
            self._restore(state)

        self.train_model: nn.Module = self.model
        if self.dist.distributed:
            self.train_model = DistributedDataParallel(
                self.model,
                device_ids=[dev.index] if dev.type == "cuda" else None,
                gradient_as_bucket_view=True,
            )
        self.metrics: MetricsWriter | None = None
        if self.dist.is_main:
            config_to_yaml(cfg, self.run_dir / "config.yaml")
            self._write_run_info()
            self.metrics = MetricsWriter(
                self.run_dir,
                resume_step=self.step if state is not None else None,
                csv_log=cfg.logging.csv,
                tensorboard=cfg.logging.tensorboard,
                extra_fields=self.metric_names,
            )
        logger.info(
            "training %s on %s: %d rank(s) x %d clips x %d accumulation = %d clips/step, "
            "peak lr %.3g, %d steps (%d warm-up), %s, data: %s",
            type(self.model).__name__,
            dev,
            world,
            self.micro_batch,
            cfg.optim.grad_accum,
            cfg.optim.global_batch,
            self.peak_lr,
            total,
            warmup,
            self.precision.name,
            self.data.description,
        )

    def _restore(self, state: dict[str, Any]) -> None:
        rank, world = self.dist.rank, self.dist.world_size
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler.is_enabled() and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.step = self.start_step = self._saved_step = int(state["step"])
        self.micro_batches = int(state["micro_batches"])
        self.last_loss = state.get("loss")
        self._log_loss, self._log_n = state.get("log_interval", (0.0, 0))
        for name, value in (state.get("log_metrics") or {}).items():
            if name in self._log_metrics:
                self._log_metrics[name] = float(value)
        self._plateau_sum, self._plateau_n = state.get("plateau_interval", (0.0, 0))
        old_sched, new_sched = dict(state.get("scheduler", {})), self.scheduler.state_dict()
        progress = old_sched.pop("progress", None)
        new_sched.pop("progress", None)
        if progress is not None and hasattr(self.scheduler, "load_progress"):
            self.scheduler.load_progress(progress)  # the plateau's best value and reductions
        if old_sched and old_sched != new_sched:
            logger.warning("the schedule changed on resume: %s -> %s", old_sched, new_sched)
        rngs, skips = state.get("rng", []), state.get("skipped", [])
        if len(rngs) == world:
            restore_rng(rngs[rank], {"mask": self.mask_generator})
            self.skip_counts = Counter(skips[rank] if rank < len(skips) else {})
        else:
            logger.warning(
                "the checkpoint was written by %d rank(s), this run has %d: RNG states are "
                "reseeded and the run will not match an uninterrupted one exactly",
                len(rngs),
                world,
            )
            if rank == 0:
                self.skip_counts = sum((Counter(s) for s in skips), Counter())
        old_cfg = state.get("config") or {}
        changes = [
            c
            for c in diff_configs(old_cfg, config_to_dict(self.cfg))
            if not c.startswith(_BENIGN_CHANGES)
        ]
        if changes and self.dist.is_main:
            logger.warning("config differs from the checkpoint's: %s", "; ".join(changes))

    def _write_run_info(self) -> None:
        info = {
            "axlstm_version": __version__,
            "torch_version": str(torch.__version__),
            "python": platform.python_version(),
            "host": platform.node(),
            "command": sys.argv,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "resumed_from_step": self.step if self.step else None,
            "world_size": self.dist.world_size,
            "device": str(self.dist.device),
            "backend": self.dist.backend,
            "precision": self.precision.name,
            "micro_batch": self.micro_batch,
            "global_batch": self.cfg.optim.global_batch,
            "peak_lr": self.peak_lr,
            "total_steps": self.total_steps,
            "warmup_steps": self.scheduler.warmup_steps,
            "steps_per_epoch": self.steps_per_epoch,
            "data": self.data.description,
            "data_items": self.data.num_items,
        }
        (self.run_dir / "run.json").write_text(json.dumps(info, indent=2) + "\n")

    # ------------------------------------------------------------------------------ the loop
    def fit(self) -> TrainSummary:
        """Train to ``total_steps`` (from a checkpoint with ``resume``); returns a summary."""
        t_start = time.perf_counter()
        previous_handler = None
        if threading.current_thread() is threading.main_thread():
            # A scheduler's SIGTERM (pre-emption, time limit) ends the run cleanly: the current
            # step finishes, a checkpoint is written, and --resume continues from it.
            previous_handler = signal.signal(signal.SIGTERM, self._request_stop)
        try:
            self._setup()
            if self.dist.is_main:
                self.callback.on_start(self)
            self._loop()
            if self._saved_step != self.step:
                self._save()
            summary = self._finish(time.perf_counter() - t_start)
        finally:
            if previous_handler is not None:
                signal.signal(signal.SIGTERM, previous_handler)
            if getattr(self, "metrics", None) is not None:
                self.metrics.close()
            if hasattr(self, "dist"):
                teardown_distributed(self.dist)
        return summary

    def _request_stop(self, signum, frame) -> None:
        logger.warning("received signal %d: stopping after this step with a checkpoint", signum)
        self._stop_requested = True

    def _loop(self) -> None:
        cfg, e = self.cfg, self.cfg.engine
        dev, rank = self.dist.device, self.dist.rank
        accum = cfg.optim.grad_accum
        log_every, ckpt_every = cfg.logging.log_every, e.ckpt_every
        if self.step >= self.total_steps:
            logger.info("already at step %d of %d: nothing to train", self.step, self.total_steps)
            return
        batches = iter(self.data)
        loss_acc = torch.zeros((), device=dev)
        bad_acc = torch.zeros((), device=dev)
        metric_acc = torch.zeros(len(self.metric_names), device=dev)
        plateau = cfg.schedule.decay == "plateau"
        plateau_every = cfg.schedule.plateau_every
        acc_steps = 0
        log_clips = 0
        t_log = t_step = time.perf_counter()
        self.model.train()
        while self.step < self.total_steps:
            lr = self.scheduler.apply(self.step)
            step_loss = torch.zeros((), device=dev)
            clips = 0
            for micro in range(accum):
                batch = next(batches)
                self.data.advance(batch)
                self._note_skips(batch["skipped"])
                spec = batch["spec"].to(dev, non_blocking=True)
                self.mask_generator.manual_seed(mask_seed(e.seed, rank, self.micro_batches))
                sync = (
                    self.train_model.no_sync()
                    if self.dist.distributed and micro < accum - 1
                    else contextlib.nullcontext()
                )
                with sync:
                    with self.precision.autocast():
                        loss = self.task.training_loss(self.train_model, spec, self.mask_generator)
                    loss, extra = loss if isinstance(loss, tuple) else (loss, {})
                    self.scaler.scale(loss / accum).backward()
                step_loss += loss.detach().float() / accum
                if self.metric_names:
                    metric_acc += (
                        torch.stack(
                            [extra[n].detach().float().reshape(()) for n in self.metric_names]
                        )
                        / accum
                    )
                self.micro_batches += 1
                clips += spec.shape[0]
            self._last_spec = batch["spec"]
            loss_acc += step_loss
            bad_acc += (~torch.isfinite(step_loss)).float()
            acc_steps += 1

            next_step = self.step + 1
            logging_now = next_step % log_every == 0 or next_step == self.total_steps
            saving_now = next_step % ckpt_every == 0 or next_step == self.total_steps
            plateau_now = plateau and next_step % plateau_every == 0
            stop_now = False
            if (
                next_step % e.check_finite_every == 0
                or logging_now
                or saving_now
                or plateau_now
                or e.crash_after_step == next_step
            ):
                stop = torch.tensor(float(self._stop_requested), device=dev)
                packed = torch.cat([torch.stack([loss_acc, bad_acc, stop]), metric_acc])
                stats = all_reduce_sum(packed, self.dist).tolist()
                if stats[1] > 0:
                    self._non_finite(next_step, stats[0])
                stop_now = stats[2] > 0  # every rank stops at the same step
                world = self.dist.world_size
                self.last_loss = stats[0] / (world * acc_steps)
                self._log_loss += stats[0] / world
                self._log_n += acc_steps
                for name, value in zip(self.metric_names, stats[3:], strict=True):
                    self._log_metrics[name] += value / world
                if plateau:
                    metric = cfg.schedule.plateau_metric
                    value = stats[0] if metric == "loss" else stats[3 + self._metric_index(metric)]
                    self._plateau_sum += value / world
                    self._plateau_n += acc_steps
                loss_acc.zero_()
                bad_acc.zero_()
                metric_acc.zero_()
                acc_steps = 0

            grad_norm = None
            if cfg.optim.clip_grad_norm is not None:
                self.scaler.unscale_(self.optimizer)
                grad_norm = float(
                    torch.nn.utils.clip_grad_norm_(
                        self.model.parameters(), cfg.optim.clip_grad_norm
                    )
                )
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            self.step = next_step
            if plateau_now:
                self._plateau_check()

            now = time.perf_counter()
            log_clips += clips
            if self.dist.is_main:
                rate = clips * self.dist.world_size / max(now - t_step, 1e-9)
                self.callback.on_step(
                    self,
                    {"step": self.step, "loss": self.last_loss, "lr": lr, "clips_per_s": rate},
                )
            t_step = now
            if logging_now:
                n = max(self._log_n, 1)
                loss_mean = self._log_loss / n
                metrics = {k: v / n for k, v in self._log_metrics.items()}
                self._log(lr, loss_mean, log_clips, now - t_log, grad_norm, metrics)
                self._log_loss, self._log_n = 0.0, 0
                self._log_metrics = dict.fromkeys(self.metric_names, 0.0)
                log_clips, t_log = 0, now
            if saving_now or stop_now:
                self._save()
            if e.crash_after_step == self.step:
                self._crash()
            if stop_now:
                logger.warning("stopped at step %d; continue with --resume", self.step)
                self.stopped_early = True
                break

    def _metric_index(self, name: str) -> int:
        return self.metric_names.index(name)

    def _plateau_check(self) -> None:
        """ReduceLROnPlateau on the mean of the plateau metric since the last check."""
        sched = self.cfg.schedule
        value = self._plateau_sum / max(self._plateau_n, 1)
        self._plateau_sum, self._plateau_n = 0.0, 0
        if self.scheduler.plateau_step(value, self.step):
            logger.info(
                "step %d: %s %.6g has not improved on %.6g for %d checks; lr -> %.3g",
                self.step,
                sched.plateau_metric,
                value,
                self.scheduler.best,
                sched.plateau_patience + 1,
                self.scheduler.lr_at(self.step),
            )

    def _note_skips(self, events: list[tuple[str, str]]) -> None:
        """Count skipped items; name each one in the log the first time it is met."""
        for reason, name in events:
            self.skip_counts[reason] += 1
            if name in self._named_skips:
                continue
            where = f"rank {self.dist.rank}: " if self.dist.distributed else ""
            if len(self._named_skips) < _MAX_NAMED_SKIPS:
                self._named_skips.add(name)
                logger.warning("%sskipped %s (%s)", where, name, reason)
            elif len(self._named_skips) == _MAX_NAMED_SKIPS:
                self._named_skips.add(name)
                logger.warning(
                    "%s%d items skipped so far; further ones are counted but not named",
                    where,
                    _MAX_NAMED_SKIPS,
                )

    def _non_finite(self, step: int, value: float) -> None:
        last = (
            f"{self.ckpts.last} (step {self._saved_step})"
            if self._saved_step > 0 and self.ckpts.last.is_file()
            else "none (no checkpoint was written yet)"
        )
        raise NonFiniteLossError(
            f"non-finite loss ({value}) at step {step}: training stopped before applying this "
            f"update. The last good checkpoint is {last}; it was left untouched. Lower the "
            "learning rate, set optim.clip_grad_norm, or use engine.precision=bf16/fp32, then "
            "continue with --resume."
        )

    def _log(
        self,
        lr: float,
        loss: float,
        clips: int,
        seconds: float,
        grad_norm: float | None,
        metrics: dict[str, float] | None = None,
    ) -> None:
        counts = all_gather_objects(dict(self.skip_counts), self.dist)
        totals: Counter = sum((Counter(c) for c in counts), Counter())
        if not self.dist.is_main:
            return
        record: dict[str, Any] = {
            "step": self.step,
            "epoch": round(self.step / self.steps_per_epoch, 4),
            "loss": loss,
            **(metrics or {}),
            "lr": lr,
            "clips_per_s": round(clips * self.dist.world_size / max(seconds, 1e-9), 3),
            "samples": self.micro_batches * self.micro_batch * self.dist.world_size,
            "elapsed_s": round(seconds, 4),
            "skipped": dict(sorted(totals.items())),
            "skipped_total": sum(totals.values()),
        }
        if grad_norm is not None:
            record["grad_norm"] = grad_norm
        self.metrics.write(record)
        self.callback.on_log(self, record)

    def _save(self) -> None:
        mine = {
            "rng": capture_rng({"mask": self.mask_generator}),
            "data": self.data.state_dict(),
            "skipped": dict(self.skip_counts),
        }
        ranks = all_gather_objects(mine, self.dist)
        if self.dist.is_main:
            state = {
                "format": CKPT_FORMAT,
                "format_version": CKPT_VERSION,
                "axlstm_version": __version__,
                "torch_version": str(torch.__version__),
                "step": self.step,
                "micro_batches": self.micro_batches,
                "samples_seen": self.micro_batches * self.micro_batch * self.dist.world_size,
                "world_size": self.dist.world_size,
                "loss": self.last_loss,
                "log_interval": [self._log_loss, self._log_n],
                "log_metrics": dict(self._log_metrics),
                "plateau_interval": [self._plateau_sum, self._plateau_n],
                "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
                "model_class": self.task.model_class(self.model),
                "model_config": self.task.model_config(self.model),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
                "rng": [r["rng"] for r in ranks],
                "data": [r["data"] for r in ranks],
                "skipped": [r["skipped"] for r in ranks],
                "config": config_to_dict(self.cfg),
                "time": time.time(),
            }
            self.last_checkpoint = self.ckpts.save(state, self.step)
            logger.info("saved checkpoint %s", self.last_checkpoint)
        self._saved_step = self.step

    def _crash(self) -> None:
        barrier(self.dist)  # every rank has finished the step and rank 0 its checkpoint
        logger.warning("engine.crash_after_step=%d: killing this process (test hook)", self.step)
        for handler in logging.getLogger().handlers:
            handler.flush()
        if self.metrics is not None:
            self.metrics.close()
        os.kill(os.getpid(), signal.SIGKILL)

    def _finish(self, wall: float) -> TrainSummary:
        counts = all_gather_objects(dict(self.skip_counts), self.dist)
        totals: Counter = sum((Counter(c) for c in counts), Counter())
        trained = self.step - self.start_step
        samples = trained * self.cfg.optim.global_batch
        summary = TrainSummary(
            run_dir=str(self.run_dir),
            start_step=self.start_step,
            steps=self.step,
            total_steps=self.total_steps,
            final_loss=self.last_loss,
            wall_s=round(wall, 3),
            clips_per_s=round(samples / wall, 3) if trained and wall > 0 else None,
            skipped=dict(sorted(totals.items())),
            last_checkpoint=str(self.ckpts.last) if self.ckpts.last.is_file() else None,
            stopped_early=self.stopped_early,
        )
        if self.dist.is_main:
            (self.run_dir / "summary.json").write_text(json.dumps(summary.__dict__, indent=2))
            if self.cfg.logging.plots:
                self._plots()
            self.callback.on_end(self, summary)
        barrier(self.dist)
        return summary

    def _plots(self) -> None:
        from axlstm.engine.plots import plot_loss

        try:
            plot_loss(read_records(self.run_dir / "log.jsonl"), self.run_dir / "plots" / "loss.png")
            self.model.eval()
            self.task.finish(self.model, self._last_spec, self.run_dir)
        except Exception as err:  # a plot must never fail a finished run
            logger.warning("could not write plots: %s", err)

    # ------------------------------------------------------------------------------ helpers
    @property
    def unwrapped_model(self) -> nn.Module:
        return self.model

    def lr_at(self, step: int) -> float:
        return self.scheduler.lr_at(step)
