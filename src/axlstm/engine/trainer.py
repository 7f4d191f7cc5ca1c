"""The one training loop: distributed set-up, precision, accumulation, clipping, the schedule,
exact checkpoint/resume, bad-data accounting and logging.

What is trained is a *task* (see :class:`TrainTask`): it builds the model and the data stream
and computes the loss of a batch; the pretraining recipe is one
(:class:`axlstm.recipes.pretrain.MaskedSpecTask`).

Exact resume rests on three facts: the data position is part of the checkpoint (see
:mod:`axlstm.data.stream`); the masks come from a generator owned by the trainer and reseeded
from ``(seed, rank, micro-batch)`` before every forward pass; every other RNG state of every
rank is saved and restored too.

The pieces live beside this module: the types a recipe sees in :mod:`axlstm.engine.task`,
checkpoint assembly and resume in :mod:`axlstm.engine.resume`, the set-up that follows from
the config in :mod:`axlstm.engine.build`, the logged averages, skip accounting and run.json
in :mod:`axlstm.engine.progress`, and the seeds in :mod:`axlstm.engine.seeding`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from axlstm.core.fileio import check_output_dir
from axlstm.engine.build import (
    build_scheduler,
    check_plateau_metric,
    configure_optimizer,
    configure_torch,
    micro_batch_size,
)
from axlstm.engine.checkpoint import CheckpointManager
from axlstm.engine.config import ConfigError, config_to_yaml
from axlstm.engine.distributed import (
    DistInfo,
    all_gather_objects,
    all_reduce_sum,
    barrier,
    setup_distributed,
    teardown_distributed,
)
from axlstm.engine.metrics import MetricsWriter, read_records
from axlstm.engine.plots import plot_loss
from axlstm.engine.precision import Precision, resolve_precision
from axlstm.engine.progress import IntervalSums, note_skips, run_info, skip_totals
from axlstm.engine.resume import (
    checkpoint_state,
    config_changes,
    find_resume_state,
    load_model_state,
    rank_state,
    restore_rank,
    restore_schedule,
    stop_on_signals,
)
from axlstm.engine.seeding import mask_seed, seed_everything
from axlstm.engine.task import NonFiniteLossError, TrainSummary, TrainTask
from axlstm.models.compile import compile_pretraining

__all__ = [
    "NonFiniteLossError",
    "TrainSummary",
    "TrainTask",
    "Trainer",
    "TrainerCallback",
    "mask_seed",
]

logger = logging.getLogger(__name__)


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


class Trainer:
    """Runs a task under a config with ``optim``, ``schedule``, ``engine`` and ``logging``.

    Args:
        cfg: the run's config tree (a dataclass; written to RUN_DIR/config.yaml).
        run_dir: output folder: config.yaml, run.json, log.jsonl, log.csv, checkpoints/,
            tensorboard/, plots/, summary.json.
        task: the recipe.
        resume: continue from the newest intact checkpoint in RUN_DIR/checkpoints (an error
            when there is none).
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
        # The task's metrics (e.g. SSAST's nce / mse / acc), logged like the loss; the sums
        # behind the logged averages and the plateau checks (saved in checkpoints).
        self.metric_names: list[str] = []
        self._intervals = IntervalSums([])
        self._stop_requested = False
        self._named_skips: set[str] = set()
        self.stopped_early = False

    # ------------------------------------------------------------------------------- set-up
    def _setup(self) -> None:
        cfg, e = self.cfg, self.cfg.engine
        self.dist: DistInfo = setup_distributed(e.device)
        dev = self.dist.device
        configure_torch(e, dev)
        self.precision: Precision = resolve_precision(e.precision, dev)

        world = self.dist.world_size
        self.micro_batch = micro_batch_size(cfg.optim.global_batch, world, cfg.optim.grad_accum)

        self.ckpts = CheckpointManager(
            self.run_dir / "checkpoints", e.keep_last, cleanup=self.dist.is_main
        )
        found = find_resume_state(self.ckpts, self.run_dir, self.resume)
        state = found[0] if found is not None else None
        if self.dist.is_main:  # an unwritable run folder fails now, not at the first save
            check_output_dir(self.ckpts.directory, "run folder")

        # The model is initialised identically on every rank, whatever the world size.
        torch.manual_seed(e.seed)
        model = self.task.build_model()
        if found is not None:
            load_model_state(model, *found)
        self.model = model.to(dev)
        names = getattr(self.task, "metric_names", None)
        self.metric_names = [str(n) for n in names(model)] if callable(names) else []
        check_plateau_metric(cfg.schedule, self.metric_names)
        plateau = cfg.schedule.plateau_metric if cfg.schedule.decay == "plateau" else None
        self._intervals = IntervalSums(self.metric_names, plateau)
        seed_everything(e.seed + self.dist.rank)  # as officially: seed + rank

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
        make_groups = getattr(self.task, "param_groups", None)
        groups = make_groups(self.model) if callable(make_groups) else None
        self.optimizer = configure_optimizer(self.model, cfg.optim, self.peak_lr, groups)
        self.scheduler = build_scheduler(self.optimizer, cfg, self.peak_lr, warmup, total, spe)
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
        self._ddp_model = self.train_model
        if e.compile:
            self.train_model = self._compiled(self.train_model)
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

    def _compiled(self, train_model: nn.Module) -> nn.Module:
        """``engine.compile``: the training step under torch.compile (the model itself, and so
        every checkpoint, stays uncompiled)."""
        if not callable(getattr(self.model, "draw_pretrain_mask", None)):
            raise ConfigError(
                f"engine.compile: {type(self.model).__name__} cannot draw its masks apart from "
                "its training step, so the step cannot be compiled; set engine.compile=false"
            )
        # training crops have one shape: a static graph (CUDA graphs under mode "auto")
        mode = self.cfg.engine.compile_mode
        return compile_pretraining(self.model, train_model, mode=mode, dynamic=False)

    def _restore(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler.is_enabled() and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.step = self.start_step = self._saved_step = int(state["step"])
        self.micro_batches = int(state["micro_batches"])
        self.last_loss = state.get("loss")
        self._intervals.load_state_dict(state)
        if state.get("task") is not None and hasattr(self.task, "load_state_dict"):
            self.task.load_state_dict(state["task"])  # e.g. best score, weight averages
        restore_schedule(self.scheduler, state.get("scheduler", {}))
        rank, world = self.dist.rank, self.dist.world_size
        self.skip_counts = restore_rank(state, rank, world, self.mask_generator)
        changes = config_changes(state.get("config") or {}, self.cfg)
        if changes and self.dist.is_main:
            logger.warning("config differs from the checkpoint's: %s", "; ".join(changes))

    def _write_run_info(self) -> None:
        info = run_info(
            cfg=self.cfg,
            dist=self.dist,
            precision=self.precision,
            data=self.data,
            resumed_from_step=self.step if self.step else None,
            micro_batch=self.micro_batch,
            peak_lr=self.peak_lr,
            total_steps=self.total_steps,
            warmup_steps=self.scheduler.warmup_steps,
            steps_per_epoch=self.steps_per_epoch,
        )
        (self.run_dir / "run.json").write_text(json.dumps(info, indent=2) + "\n")

    # ------------------------------------------------------------------------------ the loop
    def fit(self) -> TrainSummary:
        """Train to ``total_steps`` (from a checkpoint with ``resume``); returns a summary."""
        t_start = time.perf_counter()
        try:
            # Ctrl-C or a scheduler's SIGTERM (pre-emption, time limit) ends the run cleanly:
            # the current step finishes, a checkpoint is written, --resume continues from it;
            # a second signal aborts at once.
            with stop_on_signals(self._request_stop):
                self._setup()
                if self.dist.is_main:
                    self.callback.on_start(self)
                self._loop()
                if self._saved_step != self.step:
                    self._save()
                summary = self._finish(time.perf_counter() - t_start)
        finally:
            if getattr(self, "metrics", None) is not None:
                self.metrics.close()
            if hasattr(self, "dist"):
                teardown_distributed(self.dist)
        return summary

    def _request_stop(self, signum: int) -> None:
        logger.warning(
            "received %s: stopping after this step with a checkpoint (again: abort at once)",
            signal.Signals(signum).name,
        )
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
        validate_every = int(getattr(self.task, "validate_every", 0) or 0)
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
                note_skips(batch["skipped"], self.skip_counts, self._named_skips, self.dist)
                spec = batch["spec"].to(dev, non_blocking=True)
                labelled = {"target": batch["target"].to(dev)} if "target" in batch else {}
                self.mask_generator.manual_seed(mask_seed(e.seed, rank, self.micro_batches))
                sync = (
                    self._ddp_model.no_sync()
                    if self.dist.distributed and micro < accum - 1
                    else contextlib.nullcontext()
                )
                with sync:
                    with self.precision.autocast():
                        loss = self.task.training_loss(
                            self.train_model, spec, self.mask_generator, **labelled
                        )
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
            final = next_step == self.total_steps
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
                self._intervals.add(stats[0], stats[3:], acc_steps, world)
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
                loss_mean, metrics = self._intervals.take_log_means()
                self._log(lr, loss_mean, log_clips, now - t_log, grad_norm, metrics)
                log_clips, t_log = 0, now
            paused = time.perf_counter()
            if validate_every and (self.step % validate_every == 0 or final):
                self._validate()  # before saving: the task's state follows the validation
            if saving_now or stop_now:
                self._save()
            spent = time.perf_counter() - paused  # not training: kept out of the clips/s
            t_step += spent
            t_log += spent
            if e.crash_after_step == self.step:
                self._crash()
            if stop_now:
                logger.warning("stopped at step %d; continue with --resume", self.step)
                self.stopped_early = True
                break

    def _plateau_check(self) -> None:
        """ReduceLROnPlateau on the mean of the plateau metric since the last check."""
        sched = self.cfg.schedule
        value = self._intervals.take_plateau_mean()
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
        totals = skip_totals(self.skip_counts, self.dist)
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

    def _validate(self) -> None:
        """The task's validation (rank 0; the others wait), logged to valid.jsonl."""
        if self.dist.is_main:
            self.model.eval()
            with torch.no_grad():
                scores = self.task.validate(self.model, self.step, self.run_dir)
            self.model.train()
            record = {"step": self.step, "epoch": round(self.step / self.steps_per_epoch, 4)}
            self.metrics.write_valid({**record, **scores})
        barrier(self.dist)

    def _save(self) -> None:
        mine = rank_state(self.mask_generator, self.data, self.skip_counts)
        ranks = all_gather_objects(mine, self.dist)
        if self.dist.is_main:
            progress = {
                "step": self.step,
                "micro_batches": self.micro_batches,
                "samples_seen": self.micro_batches * self.micro_batch * self.dist.world_size,
                "world_size": self.dist.world_size,
                "loss": self.last_loss,
                **self._intervals.state_dict(),
            }
            state = checkpoint_state(
                progress,
                cfg=self.cfg,
                task=self.task,
                model=self.model,
                optimizer=self.optimizer,
                scheduler=self.scheduler,
                scaler=self.scaler,
                ranks=ranks,
            )
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
        totals = skip_totals(self.skip_counts, self.dist)
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
