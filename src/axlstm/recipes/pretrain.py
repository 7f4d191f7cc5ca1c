"""Masked spectrogram pretraining: its config tree, presets and the task the trainer runs.

One task serves every registered model: the AxLSTM-style :class:`axlstm.MaskedSpecModel`
(log-mel crops, masked patch MSE) and the original SSAST and SSAMBA (Kaldi fbank inputs of their
training length, the joint MPC + MPG objective; ``nce``, ``mse`` and ``acc`` are logged beside
the loss). The data pipeline follows the model's ``front_end_config``.

Config flows one way: :class:`PretrainConfig` defaults -> a YAML preset (shipped by name, or
any file) -> ``key.sub=value`` overrides -> validated tree, saved as RUN_DIR/config.yaml.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from axlstm.data.clips import make_processor
from axlstm.data.config import DataConfig
from axlstm.data.stream import DataStream, build_stream
from axlstm.engine.config import (
    ConfigError,
    EngineConfig,
    LoggingConfig,
    OptimConfig,
    ScheduleConfig,
    apply_overrides,
    config_from_dict,
)
from axlstm.engine.trainer import Trainer, TrainerCallback, TrainSummary

__all__ = [
    "MaskedSpecTask",
    "ModelSection",
    "PretrainConfig",
    "list_presets",
    "load_config",
    "pretrain",
]

logger = logging.getLogger(__name__)


@dataclass
class ModelSection:
    """Which registered model to pretrain.

    Attributes:
        name: a preset of :func:`axlstm.create_model` (``axlstm models`` lists them).
        overrides: :class:`axlstm.ModelConfig` fields to change, e.g. ``{depth: 4}``.
    """

    name: str = "axlstm_tiny"
    overrides: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        from axlstm.models import is_model, list_models

        if not is_model(self.name):
            raise ConfigError(
                f"model.name={self.name!r} is not a registered model; choose one of "
                f"{', '.join(list_models())}"
            )


@dataclass
class PretrainConfig:
    """Everything a pretraining run is made of (the defaults are the official recipe)."""

    model: ModelSection = field(default_factory=ModelSection)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)


# ------------------------------------------------------------------------------------ presets
def _preset_files() -> dict[str, Any]:
    folder = resources.files("axlstm.recipes") / "presets"
    return {
        entry.name.rsplit(".", 1)[0]: entry
        for entry in folder.iterdir()
        if entry.name.endswith((".yaml", ".yml"))
    }


def list_presets() -> list[str]:
    """Names of the shipped recipes (``axlstm pretrain --config NAME``)."""
    return sorted(_preset_files())


def load_config(name_or_path: str | Path, overrides: list[str] | None = None) -> PretrainConfig:
    """A config from a shipped preset name or a YAML file, with ``key=value`` overrides."""
    spec = str(name_or_path)
    presets = _preset_files()
    if spec in presets:
        text, origin = presets[spec].read_text(encoding="utf-8"), f"preset {spec}"
    elif Path(spec).is_file():
        text, origin = Path(spec).read_text(encoding="utf-8"), spec
    elif spec.endswith((".yaml", ".yml")):
        raise FileNotFoundError(f"config file not found: {spec}")
    else:
        raise ConfigError(
            f"unknown config {spec!r}: not a shipped preset ({', '.join(sorted(presets))}) "
            "and not a YAML file"
        )
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{origin}: invalid YAML ({err})") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: the top level must be a mapping of sections")
    try:
        cfg = config_from_dict(PretrainConfig, data)
    except ConfigError as err:
        raise ConfigError(f"{origin}: {err}") from err
    return apply_overrides(cfg, overrides or [])


# --------------------------------------------------------------------------------------- task
#: What the original SSAST / SSAMBA joint objective reports besides the loss.
SSAST_METRICS = ("nce", "mse", "acc")


def _is_fbank_model(model: nn.Module) -> bool:
    from axlstm.models.ssast_original import SSASTFramework

    return isinstance(model, SSASTFramework)


class MaskedSpecTask:
    """Masked spectrogram modelling of any registered preset: :class:`axlstm.MaskedSpecModel`
    (log-mel crops) or the original SSAST / SSAMBA (Kaldi fbank inputs, joint MPC + MPG)."""

    def __init__(self, cfg: PretrainConfig, model: nn.Module | None = None) -> None:
        self.cfg = cfg
        self._model = model
        self._front_end = None

    def build_model(self) -> nn.Module:
        if self._model is not None:
            model = self._model
        else:
            from axlstm.models import create_model

            model = create_model(self.cfg.model.name, **self.cfg.model.overrides)
        self._check_front_end(model)
        self._check_objective(model)
        return model

    def _check_front_end(self, model: nn.Module) -> None:
        """Log-mel models get AxLSTM log-mel crops (80 bins); Kaldi fbank models get their own
        front end's inputs (:func:`axlstm.data.clips.make_processor`)."""
        front = getattr(model, "front_end_config", None)
        kind = front.to_dict().get("kind", "log_mel") if front is not None else "log_mel"
        bins = getattr(getattr(model, "config", None), "img_size", (None, 80))[1]
        if kind == "kaldi_fbank":
            if front.target_length is None:
                raise ConfigError(
                    f"model {self.cfg.model.name!r}: the fbank front end needs a target_length "
                    "(the training input length)"
                )
            self._front_end = front
            return
        if kind != "log_mel" or bins != 80:
            raise ConfigError(
                f"model {self.cfg.model.name!r} expects {kind} input with {bins} bins; "
                "`axlstm pretrain` feeds log-mel models the AxLSTM front end (80 mel bins, "
                "per-clip standardisation), so it cannot pretrain this model"
            )
        self._front_end = None

    def _check_objective(self, model: nn.Module) -> None:
        if not _is_fbank_model(model):
            return
        cfg = model.config
        if not cfg.ssl_heads:
            raise ConfigError(
                f"model {self.cfg.model.name!r} has no pretraining heads (ssl_heads=false)"
            )
        if tuple(cfg.stride) != tuple(cfg.patch_size):
            raise ConfigError(
                f"model {self.cfg.model.name!r}: masked pretraining needs non-overlapping "
                f"patches; patch_stride {cfg.stride} differs from patch_size {cfg.patch_size}"
            )

    def metric_names(self, model: nn.Module) -> list[str]:
        """Metrics logged beside the loss: nce, mse and acc for SSAST/SSAMBA."""
        return list(SSAST_METRICS) if _is_fbank_model(model) else []

    def model_config(self, model: nn.Module) -> dict[str, Any]:
        return model.config.to_dict()

    def model_class(self, model: nn.Module) -> str:
        from axlstm.models import model_class_name

        return model_class_name(model)

    def build_data(
        self,
        *,
        seed: int,
        rank: int,
        world: int,
        micro_batch: int,
        states: list[dict[str, Any]] | None,
        pin_memory: bool,
    ) -> DataStream:
        return build_stream(
            self.cfg.data,
            seed=seed,
            rank=rank,
            world=world,
            micro_batch=micro_batch,
            states=states,
            pin_memory=pin_memory and self.cfg.data.pin_memory,
            processor=make_processor(self.cfg.data, self._front_end),
        )

    def training_loss(
        self, model: nn.Module, spec: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        out = model(spec, generator=generator)
        if all(hasattr(out, k) for k in SSAST_METRICS):  # SSASTOutput: log its parts
            return out.loss, {k: getattr(out, k) for k in SSAST_METRICS}
        return out.loss

    def finish(self, model: nn.Module, spec: torch.Tensor | None, run_dir: Path) -> None:
        """plots/reconstruction.png from the last training batch, with a fixed mask draw.

        Not for SSAST/SSAMBA: their predictions cover the masked patches only."""
        if spec is None or _is_fbank_model(model):
            return
        from axlstm.engine.plots import plot_reconstructions

        n = min(self.cfg.logging.recon_clips, spec.shape[0])
        device = next(model.parameters()).device
        x = spec[:n].to(device)
        gen = torch.Generator(device=device).manual_seed(self.cfg.engine.seed)
        with torch.no_grad():
            out = model(x, generator=gen)
        plot_reconstructions(
            x, out.mask, out.pred, model.config.patch_size, run_dir / "plots" / "reconstruction.png"
        )


def pretrain(
    cfg: PretrainConfig,
    run_dir: str | Path,
    resume: bool = False,
    callback: TrainerCallback | None = None,
    model: nn.Module | None = None,
) -> TrainSummary:
    """Run masked spectrogram pretraining; see :class:`axlstm.engine.Trainer`.

    Args:
        model: train this model instead of building ``cfg.model`` (it must be a
            :class:`axlstm.MaskedSpecModel` or behave like one).
    """
    return Trainer(cfg, run_dir, MaskedSpecTask(cfg, model), resume, callback).fit()
