"""Fine-tuning as a task of the one training engine (:class:`axlstm.engine.Trainer`).

The engine brings DDP (torchrun), AMP on CUDA, accumulation, the warm-up + cosine or plateau
schedule, atomic checkpoints with exact resume, logs and plots; this task brings the
classifier, the labelled data stream, the loss with its augmentations, and the validation:

- every ``validation.every_epochs`` epochs (and at the end) the classifier scores the valid
  split (whole clips, windows averaged; :mod:`axlstm.finetune.scoring`), logged to
  ``valid.jsonl``;
- the best validation so far (``validation.monitor``) keeps its weights in ``best.pt``;
- with ``validation.average_from/average_to`` the weights of the validations in that epoch
  range are averaged (SSAST/SSAMBA's weight averaging) into ``averaged.pt``;
- the best score, the running average and its count are the task's state, saved in every
  checkpoint, so a resumed run ends exactly as an uninterrupted one.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from axlstm.core.errors import AxlstmError
from axlstm.data.augment import mixup, time_shift
from axlstm.data.clips import ClipProcessor
from axlstm.embedding import resolve_model
from axlstm.engine.checkpoint import atomic_save
from axlstm.finetune.classify import build_classifier, param_groups, set_trainable
from axlstm.finetune.config import FinetuneConfig
from axlstm.finetune.data import EvalClips, LabelledSource, labelled_stream
from axlstm.finetune.labels import LabelledData, LabelledItem
from axlstm.finetune.scoring import scores_of, split_probabilities
from axlstm.models import AudioClassifier
from axlstm.models.registry import model_class_name

__all__ = ["AVERAGED_NAME", "BEST_NAME", "FineTuneTask", "clip_frames"]

logger = logging.getLogger(__name__)

BEST_NAME = "best.pt"
AVERAGED_NAME = "averaged.pt"
_LOWER_IS_BETTER = ("loss",)


def clip_frames(front_end, seconds: float) -> int:
    """Feature frames of ``seconds`` of audio through ``front_end``."""
    return max(1, front_end.num_frames(round(seconds * front_end.sample_rate)))


class FineTuneTask:
    """One fine-tuning run: train on ``splits["train"]``, validate on ``splits["valid"]``.

    Args:
        cfg: the run's config.
        data: the labelled data (vocabulary, task type).
        splits: ``train`` and ``valid`` items (``valid`` may be empty: no validation, the
            last weights are the best).
    """

    def __init__(
        self, cfg: FinetuneConfig, data: LabelledData, splits: dict[str, list[LabelledItem]]
    ) -> None:
        self.cfg = cfg
        self.data = data
        self.train_items = list(splits["train"])
        self.valid_items = list(splits.get("valid") or [])
        self.num_classes = len(data.vocabulary)
        self.multilabel = data.multilabel
        if self.multilabel and cfg.loss.kind == "auto" and cfg.loss.label_smoothing:
            logger.warning(
                "loss.label_smoothing=%g is not used: %s is multilabel (binary cross-entropy)",
                cfg.loss.label_smoothing,
                data.source,
            )
        monitor = cfg.validation.monitor
        if monitor == "auto":
            monitor = "mAP" if self.multilabel else "acc"
        self.monitor = monitor
        self.validate_every = 0
        self.best: float | None = None
        self.best_step = -1
        self.avg: dict[str, torch.Tensor] | None = None
        self.avg_count = 0
        self._valid: EvalClips | None = None
        self.frames = 0

    # --------------------------------------------------------------------------- the model
    def build_model(self) -> AudioClassifier:
        m = self.cfg.model
        encoder = resolve_model(m.source, arch=m.arch, **m.overrides)
        fe = encoder.front_end_config
        self.frames = clip_frames(fe, self.cfg.data.clip_seconds)
        model = build_classifier(m, encoder, self.num_classes, self.frames)
        example = torch.zeros(1, 1, self.frames, fe.n_mels)
        set_trainable(model, m.mode, m.last_k, example)
        return model

    def model_config(self, model: AudioClassifier) -> dict[str, Any]:
        return {
            "encoder_class": model_class_name(model.encoder),
            "encoder": model.encoder.config.to_dict(),
            "num_classes": self.num_classes,
            "pool": model.pool,
            "vocabulary": list(self.data.vocabulary),
            "multilabel": self.multilabel,
            "clip_seconds": self.cfg.data.clip_seconds,
        }

    def model_class(self, model: AudioClassifier) -> str:
        return "classifier"

    def param_groups(self, model: AudioClassifier) -> list[dict]:
        o = self.cfg.optim
        decay_all = o.weight_decay_scope == "all"
        return param_groups(model, o.weight_decay, o.head_lr_mult, o.layer_decay, decay_all)

    # ---------------------------------------------------------------------------- the data
    def build_data(self, *, seed, rank, world, micro_batch, states, pin_memory, model):
        d, a = self.cfg.data, self.cfg.augment
        fe = model.front_end_config
        processor = ClipProcessor(
            fe, frames=self.frames, crop="random", pad=fe.training_pad, freqm=a.freqm,
            timem=a.timem, noise=a.ssast_noise,
        )  # fmt: skip
        source = LabelledSource(
            self.train_items,
            self.data.targets(self.train_items),
            balanced=d.balanced,
            noise_snr=tuple(a.noise_snr) if a.noise_snr is not None else None,
            gain_db=a.gain_db,
            description=f"training clips of {self.data.source}",
        )
        _, _, per_epoch = self.cfg.schedule.resolve(len(source), self.cfg.optim.global_batch)
        every = self.cfg.validation.every_epochs * per_epoch
        self.steps_per_epoch = per_epoch
        self.validate_every = max(1, round(every)) if self.valid_items else 0
        return labelled_stream(
            source, processor, d, seed=seed, rank=rank, world=world, micro_batch=micro_batch,
            states=states, pin_memory=pin_memory and d.pin_memory,
        )  # fmt: skip

    # ---------------------------------------------------------------------------- the loss
    def training_loss(
        self,
        model: torch.nn.Module,
        spec: torch.Tensor,
        generator: torch.Generator,
        target: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if target is None:
            raise AxlstmError("fine-tuning batches must carry targets")
        a = self.cfg.augment
        # a CPU generator reseeded with the engine's per-micro-batch seed: exact on resume
        g = torch.Generator().manual_seed(generator.initial_seed())
        x, y = spec, target.float()
        if a.shift:
            x = time_shift(x, g, max_shift=a.shift)
        if a.mixup:
            x, y = mixup(x, y, g, alpha=a.mixup_alpha, prob=a.mixup)
        logits = model(x).float()
        kind = self.cfg.loss.kind
        if kind == "bce" or (kind == "auto" and self.multilabel):
            return F.binary_cross_entropy_with_logits(logits, y)
        if self.multilabel:
            raise AxlstmError("loss.kind=ce needs multiclass data; this data is multilabel")
        eps = self.cfg.loss.label_smoothing
        if eps:
            y = (1 - eps) * y + eps / y.shape[1]
        return -(y * F.log_softmax(logits, dim=1)).sum(dim=1).mean()

    # -------------------------------------------------------------------------- validation
    def valid_clips(self, model: AudioClassifier) -> EvalClips:
        if self._valid is None:
            paths = [it.path for it in self.valid_items]
            self._valid = EvalClips(paths, model.front_end_config, self.frames,
                                    cache_bytes=self.cfg.validation.cache_gb * 2**30)  # fmt: skip
        return self._valid

    def validate(self, model: AudioClassifier, step: int, run_dir: Path) -> dict[str, float]:
        clips = self.valid_clips(model)
        probs, kept = split_probabilities(
            model, clips.chunks(), self.multilabel, self.cfg.validation.batch_size
        )
        targets = torch.from_numpy(self.data.targets([self.valid_items[i] for i in kept]))
        scores = scores_of(probs, targets, self.multilabel)
        value = scores.get(self.monitor, math.nan)
        if math.isnan(value):
            raise AxlstmError(f"validation.monitor={self.monitor!r} is not among {list(scores)}")
        lower = self.monitor in _LOWER_IS_BETTER
        if self.best is None or (value < self.best if lower else value > self.best):
            self.best, self.best_step = value, step
            atomic_save(_weights(model), run_dir / BEST_NAME)
            logger.info("step %d: best %s so far, %.4f (kept in %s)", step, self.monitor,
                        value, BEST_NAME)  # fmt: skip
        v = self.cfg.validation
        epoch = step / max(self.steps_per_epoch, 1)
        if v.average_from is not None and v.average_from <= epoch <= v.average_to:
            self._accumulate(model, run_dir)
        scores[f"best_{self.monitor}"] = self.best
        return scores

    def _accumulate(self, model: AudioClassifier, run_dir: Path) -> None:
        weights = _weights(model)
        if self.avg is None:
            self.avg = {k: v.double().clone() for k, v in weights.items()}
        else:
            for k, v in weights.items():
                self.avg[k] += v.double()
        self.avg_count += 1
        averaged = {k: (v / self.avg_count).to(weights[k].dtype) for k, v in self.avg.items()}
        atomic_save(averaged, run_dir / AVERAGED_NAME)

    # ------------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return {
            "best": self.best,
            "best_step": self.best_step,
            "avg": self.avg,
            "avg_count": self.avg_count,
            "vocabulary": list(self.data.vocabulary),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("vocabulary") not in (None, list(self.data.vocabulary)):
            raise AxlstmError(
                "the label vocabulary differs from the checkpoint's (the data changed since "
                "the run started); fine-tune into a new --out folder"
            )
        self.best, self.best_step = state.get("best"), int(state.get("best_step", -1))
        self.avg, self.avg_count = state.get("avg"), int(state.get("avg_count", 0))

    def finish(self, model, spec, run_dir: Path) -> None:
        """plots/validation.png: the validation scores over training."""
        from axlstm.finetune.plots import plot_validation

        plot_validation(run_dir / "valid.jsonl", run_dir / "plots" / "validation.png")


def _weights(model: AudioClassifier) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
