"""The fine-tuning config tree (``axlstm finetune --config PRESET --set key=value``).

Sections: ``model`` (what to fine-tune and how much of it), ``data`` (the labelled audio and
the clip length), ``augment``, ``loss``, ``validation`` (how often, which score, weight
averaging), and the engine's ``optim`` (with a head learning-rate multiplier and layer-wise
decay), ``schedule``, ``engine`` and ``logging``. Every field is documented on its class;
presets are YAML files in ``axlstm/recipes/presets/finetune/*.yaml``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from axlstm.core.config import ConfigBase
from axlstm.core.errors import ConfigError
from axlstm.engine.config import EngineConfig, LoggingConfig, OptimConfig, ScheduleConfig

__all__ = [
    "AugmentConfig",
    "FinetuneConfig",
    "FinetuneDataConfig",
    "FinetuneModelConfig",
    "FinetuneOptimConfig",
    "LossConfig",
    "ValidationConfig",
]

MODES = ("full", "last_k", "frozen")


@dataclass
class FinetuneModelConfig(ConfigBase):
    """What is fine-tuned.

    Attributes:
        source: a release folder, a preset name (random weights: a from-scratch baseline) or
            an official checkpoint file (with ``arch``).
        arch: the preset an official checkpoint's architecture follows.
        overrides: model config fields changed when the encoder is built (e.g. drop path).
        pool: clip pooling: "avgtok" (mean of the patch tokens) or "cls" (the prefix tokens).
        fstride, tstride: patch strides of the original SSAST/SSAMBA fine-tuning model
            (overlapping patches, 10 in the papers' recipes); null keeps the pretraining ones.
            Other families ignore them.
        mode: "full" (every encoder weight trains), "last_k" (the last ``last_k`` layers, the
            final norm and the head) or "frozen" (the head only: a linear probe through
            LayerNorm).
        last_k: layers trained with ``mode: last_k``, counted as ``num_layers`` counts them
            (a block; for SSAMBA a pair of Vim blocks).
    """

    source: str = "test_axlstm"
    arch: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    pool: Literal["avgtok", "cls"] = "avgtok"
    fstride: int | None = None
    tstride: int | None = None
    mode: Literal["full", "last_k", "frozen"] = "full"
    last_k: int = 2

    def validate(self) -> None:
        if not str(self.source).strip():
            raise ConfigError("model.source is empty: name a release folder, preset or checkpoint")
        if self.last_k < 1:
            raise ConfigError(f"model.last_k must be >= 1, got {self.last_k}")
        for name in ("fstride", "tstride"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"model.{name} must be >= 1, got {value}")


@dataclass
class FinetuneDataConfig(ConfigBase):
    """The labelled audio (see :func:`axlstm.finetune.labels.load_labelled`).

    Attributes:
        source: a HEAR task folder, a manifest (.csv/.tsv/.jsonl with path and label columns
            and an optional split column), a folder of class sub-folders, or
            ``builtin:NAME`` for a built-in procedural task (written to the cache once).
        label_column, split_column, label_delimiter: manifest columns; several labels in one
            cell are split by the delimiter (multilabel).
        multilabel: force the task type (null: inferred).
        valid_fraction: share of the training clips held out for validation when the source
            has no valid split (stratified, seeded by ``engine.seed``).
        missing: "skip" (count and report rows whose file is missing) or "error".
        clip_seconds: training crop length; evaluation uses whole clips, cut into windows of
            this length whose scores are averaged.
        balanced: draw training clips with AudioSet-style weights (rare labels more often).
        train_fraction, train_per_class: train on a seeded subset of the training clips
            (label-efficiency studies): about this share of them, stratified by class, then
            at most this many per class (null: no cap). Every class keeps a clip; validation
            and test splits are untouched. The draw is seeded by ``subset_seed`` (null:
            ``engine.seed``, so a seed sweep also varies the subset).
        folds: for k-fold data, the held-out folds to run: "all", or a list of folds named
            as the manifest writes them (``fold1``, ``1``) or as the run does (``fold01``).
        num_workers, prefetch_factor, pin_memory, max_bad_attempts: the loader.
    """

    source: str = "builtin:timbre"
    label_column: str = "label"
    split_column: str = "split"
    label_delimiter: str = ";"
    multilabel: bool | None = None
    valid_fraction: float = 0.1
    missing: Literal["skip", "error"] = "skip"
    clip_seconds: float = 2.0
    balanced: bool = False
    train_fraction: float = 1.0
    train_per_class: int | None = None
    subset_seed: int | None = None
    folds: Any = "all"
    num_workers: int = 0
    prefetch_factor: int = 2
    pin_memory: bool = True
    max_bad_attempts: int = 32

    def validate(self) -> None:
        if not (math.isfinite(self.clip_seconds) and self.clip_seconds > 0):
            raise ConfigError(f"data.clip_seconds must be positive, got {self.clip_seconds}")
        if not 0.0 <= self.valid_fraction < 1.0:
            raise ConfigError(f"data.valid_fraction must be in [0, 1), got {self.valid_fraction}")
        if not 0.0 < self.train_fraction <= 1.0:
            raise ConfigError(f"data.train_fraction must be in (0, 1], got {self.train_fraction}")
        if self.train_per_class is not None and (
            isinstance(self.train_per_class, bool)
            or not isinstance(self.train_per_class, int)
            or self.train_per_class < 1
        ):
            raise ConfigError(
                f"data.train_per_class must be a positive integer or null, "
                f"got {self.train_per_class!r}"
            )
        if self.num_workers < 0 or self.prefetch_factor < 1 or self.max_bad_attempts < 1:
            raise ConfigError("data.num_workers >= 0, prefetch_factor >= 1, max_bad_attempts >= 1")
        if self.folds != "all" and not (
            isinstance(self.folds, list)
            and all(isinstance(f, str | int) and not isinstance(f, bool) for f in self.folds)
        ):
            raise ConfigError(f"data.folds must be 'all' or a list of fold names, got {self.folds}")


@dataclass
class AugmentConfig(ConfigBase):
    """Training augmentations (:mod:`axlstm.data.augment`); 0 turns each off.

    Attributes:
        mixup: probability that a training example is mixed with another (inputs and labels).
        mixup_alpha: Beta(alpha, alpha) of the mixing weight (SSAST: 10).
        freqm, timem: SpecAugment band widths (bins, frames).
        shift: largest circular time shift in frames.
        noise_snr: additive white noise at an SNR drawn from [low, high] dB (null: off).
        gain_db: random gain within +-gain_db dB.
        ssast_noise: the SSAST loader's noise: ``U(0, 1) * r / 10`` added after normalising
            (``r ~ U(0, 1)`` per clip), then a circular time roll by [-10, 9] frames.
    """

    mixup: float = 0.0
    mixup_alpha: float = 10.0
    freqm: int = 0
    timem: int = 0
    shift: int = 0
    noise_snr: tuple[float, float] | None = None
    gain_db: float = 0.0
    ssast_noise: bool = False

    def validate(self) -> None:
        if not 0.0 <= self.mixup <= 1.0 or self.mixup_alpha <= 0:
            raise ConfigError("augment.mixup must be in [0, 1] and augment.mixup_alpha > 0")
        if min(self.freqm, self.timem, self.shift) < 0 or self.gain_db < 0:
            raise ConfigError("augment widths, shift and gain_db must be >= 0")
        if self.noise_snr is not None and self.noise_snr[0] > self.noise_snr[1]:
            raise ConfigError(f"augment.noise_snr must be [low, high], got {self.noise_snr}")


@dataclass
class LossConfig(ConfigBase):
    """The training loss.

    Attributes:
        kind: "auto" (cross-entropy for multiclass, binary cross-entropy per class for
            multilabel), "ce" or "bce" (SSAST trains Speech Commands with BCE).
        label_smoothing: targets become ``(1 - e) y + e / K`` (multiclass cross-entropy only).
    """

    kind: Literal["auto", "ce", "bce"] = "auto"
    label_smoothing: float = 0.0

    def validate(self) -> None:
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"loss.label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.kind == "bce" and self.label_smoothing:
            raise ConfigError(
                "loss.label_smoothing applies to multiclass cross-entropy only; "
                "with loss.kind=bce set it to 0"
            )


@dataclass
class ValidationConfig(ConfigBase):
    """Validation during training, the best checkpoint and weight averaging.

    Attributes:
        every_epochs: validate every this many epochs (and at the end).
        monitor: the score that picks the best checkpoint: "auto" (accuracy for multiclass,
            mAP for multilabel), or "acc", "top5", "mAP", "aucroc", "d_prime", "loss"
            (lowest wins for "loss").
        average_from, average_to: average the weights of the validations within these epochs
            (SSAST/SSAMBA's weight averaging; null: off). The averaged model is saved and
            tested beside the best one.
        batch_size: windows per forward pass when scoring.
        cache_gb: the valid (and test) split's evaluation windows stay in memory between
            validations up to this size; a larger split is read again, 256 clips at a time,
            for every validation (bounded memory; AudioSet's evaluation set at 10 s is about
            9 GB of windows).
    """

    every_epochs: float = 1.0
    monitor: str = "auto"
    average_from: float | None = None
    average_to: float | None = None
    batch_size: int = 16
    cache_gb: float = 2.0

    def validate(self) -> None:
        if not (self.every_epochs > 0):
            raise ConfigError(f"validation.every_epochs must be > 0, got {self.every_epochs}")
        if self.monitor not in ("auto", "acc", "top5", "mAP", "aucroc", "d_prime", "loss"):
            raise ConfigError(f"unknown validation.monitor {self.monitor!r}")
        if (self.average_from is None) != (self.average_to is None):
            raise ConfigError("set both validation.average_from and average_to, or neither")
        if self.average_from is not None and self.average_from > self.average_to:
            raise ConfigError("validation.average_from must be <= average_to")
        if self.batch_size < 1:
            raise ConfigError(f"validation.batch_size must be >= 1, got {self.batch_size}")
        if not (isinstance(self.cache_gb, int | float) and self.cache_gb >= 0):
            raise ConfigError(f"validation.cache_gb must be >= 0, got {self.cache_gb!r}")


@dataclass
class FinetuneOptimConfig(OptimConfig):
    """The engine's optimiser settings plus the fine-tuning learning-rate layout.

    Attributes:
        head_lr_mult: the head's learning rate is this times the encoder's (SSAMBA: 3).
        layer_decay: layer-wise decay: block i of L gets ``layer_decay ** (L + 1 - i)`` times
            the peak, the embeddings ``layer_decay ** (L + 1)`` (Audio-MAE/EAT: 0.65-0.75;
            1: off).
    """

    head_lr_mult: float = 1.0
    layer_decay: float = 1.0

    def validate(self) -> None:
        super().validate()
        if self.head_lr_mult <= 0 or not 0.0 < self.layer_decay <= 1.0:
            raise ConfigError("optim.head_lr_mult must be > 0 and optim.layer_decay in (0, 1]")


@dataclass
class FinetuneConfig(ConfigBase):
    """Everything one fine-tuning run needs."""

    model: FinetuneModelConfig = field(default_factory=FinetuneModelConfig)
    data: FinetuneDataConfig = field(default_factory=FinetuneDataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    optim: FinetuneOptimConfig = field(default_factory=FinetuneOptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
