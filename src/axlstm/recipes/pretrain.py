"""Masked spectrogram pretraining: its config tree, presets and the task the trainer runs.

One task serves every registered model through the encoder interface
(:class:`axlstm.models.Encoder`): training inputs come from the model's own front end, the loss
and its metrics from ``model.pretrain_step`` (the masked patch MSE of AxLSTM-style models; the
joint MPC + MPG of the original SSAST and SSAMBA, with ``nce``, ``mse`` and ``acc`` logged beside
the loss).

Config flows one way: :class:`PretrainConfig` defaults -> a YAML preset (shipped by name, or
any file) -> ``key.sub=value`` overrides -> validated tree, saved as RUN_DIR/config.yaml.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch
import yaml

from axlstm.core.config import ConfigBase
from axlstm.core.fileio import check_input_file
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
from axlstm.engine.plots import plot_reconstructions
from axlstm.engine.trainer import Trainer, TrainerCallback, TrainSummary
from axlstm.models import Encoder, create_model, is_model, list_models, model_class_name

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
class ModelSection(ConfigBase):
    """Which registered model to pretrain.

    Attributes:
        name: a preset of :func:`axlstm.create_model` (``axlstm models`` lists them).
        overrides: :class:`axlstm.ModelConfig` fields to change, e.g. ``{depth: 4}``.
    """

    name: str = "axlstm_tiny"
    overrides: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        if not is_model(self.name):
            raise ConfigError(
                f"model.name={self.name!r} is not a registered model; choose one of "
                f"{', '.join(list_models())}"
            )


@dataclass
class PretrainConfig(ConfigBase):
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


#: Largest config file read (a config is a few KiB; a huge one is a mistake or an attack).
MAX_CONFIG_BYTES = 1 << 20


def _read_config_file(path: Path) -> str:
    """A YAML config file's text, after the file checks (a pipe or folder is named, not
    read), a size limit and UTF-8 decoding that names the file and the byte."""
    size = check_input_file(path, "config file", ConfigError).st_size
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{path}: {size:,} bytes is far too large for a config file "
            f"(limit {MAX_CONFIG_BYTES:,})"
        )
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte 0x{raw[err.start]:02x} at offset {err.start}); "
            "save the config as UTF-8"
        ) from None


def read_config(
    cls: type,
    spec: str | Path,
    presets: dict[str, Any],
    overrides: list[str] | None = None,
    adapt: Callable[[dict[str, Any], str], None] | None = None,
):
    """A ``cls`` config tree from a preset name (a key of ``presets``, whose values have
    ``read_text``) or a YAML file, with ``key=value`` overrides; ``adapt(data, origin)`` may
    rewrite the parsed mapping first (older layouts)."""
    spec = str(spec)
    if spec in presets:
        text, origin = presets[spec].read_text(encoding="utf-8"), f"preset {spec}"
    elif os.path.lexists(spec) or spec.endswith((".yaml", ".yml")):
        text, origin = _read_config_file(Path(spec)), spec
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
    if adapt is not None:
        adapt(data, origin)
    try:
        cfg = config_from_dict(cls, data)
    except ConfigError as err:
        raise ConfigError(f"{origin}: {err}") from err
    return apply_overrides(cfg, overrides or [])


def _data_fbank_is_input(data: dict[str, Any], origin: str) -> None:
    section = data.get("data")
    if isinstance(section, dict) and "fbank" in section and "input" not in section:
        # run folders written before data.fbank became data.input (same fields) still resume
        logger.warning("%s: data.fbank is now data.input; reading it as data.input", origin)
        data["data"] = {("input" if k == "fbank" else k): v for k, v in section.items()}


def load_config(name_or_path: str | Path, overrides: list[str] | None = None) -> PretrainConfig:
    """A config from a shipped preset name or a YAML file, with ``key=value`` overrides."""
    return read_config(
        PretrainConfig, name_or_path, _preset_files(), overrides, _data_fbank_is_input
    )


# --------------------------------------------------------------------------------------- task
class MaskedSpecTask:
    """Masked spectrogram pretraining of any registered model, through the encoder interface
    (:class:`axlstm.models.Encoder`): training inputs from the model's own front end, the
    model's own objective (``pretrain_step``) and the metrics it names."""

    def __init__(self, cfg: PretrainConfig, model: Encoder | None = None) -> None:
        self.cfg = cfg
        self._model = model

    def build_model(self) -> Encoder:
        model = self._model
        if model is None:
            model = create_model(self.cfg.model.name, **self.cfg.model.overrides)
        problem = model.pretraining_problem()
        if problem is not None:
            raise ConfigError(
                f"model {self.cfg.model.name!r}: {problem}; `axlstm pretrain` cannot pretrain "
                "this model as configured"
            )
        return model

    def metric_names(self, model: Encoder) -> list[str]:
        """Metrics logged beside the loss (e.g. nce, mse and acc for SSAST/SSAMBA)."""
        return list(model.pretrain_metrics)

    def model_config(self, model: Encoder) -> dict[str, Any]:
        return model.config.to_dict()

    def model_class(self, model: Encoder) -> str:
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
        model: Encoder,
    ) -> DataStream:
        return build_stream(
            self.cfg.data,
            seed=seed,
            rank=rank,
            world=world,
            micro_batch=micro_batch,
            states=states,
            pin_memory=pin_memory and self.cfg.data.pin_memory,
            processor=make_processor(self.cfg.data, model.front_end_config),
        )

    def training_loss(
        self, model: torch.nn.Module, spec: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        out = model(spec, generator=generator)  # the pretraining step; ``model`` may be DDP
        return out.loss, out.metrics()

    def finish(self, model: Encoder, spec: torch.Tensor | None, run_dir: Path) -> None:
        """plots/reconstruction.png from the last training batch, with a fixed mask draw,
        for models that predict every patch."""
        if spec is None:
            return
        n = min(self.cfg.logging.recon_clips, spec.shape[0])
        device = next(model.parameters()).device
        x = spec[:n].to(device)
        gen = torch.Generator(device=device).manual_seed(self.cfg.engine.seed)
        with torch.no_grad():
            rec = model.reconstruction(x, generator=gen)
        if rec is None:
            return
        plot_reconstructions(
            x, rec.mask, rec.pred, rec.patch_size, run_dir / "plots" / "reconstruction.png"
        )


def pretrain(
    cfg: PretrainConfig,
    run_dir: str | Path,
    resume: bool = False,
    callback: TrainerCallback | None = None,
    model: Encoder | None = None,
) -> TrainSummary:
    """Run masked spectrogram pretraining; see :class:`axlstm.engine.Trainer`.

    Args:
        run_dir: the run folder (created; checked for writability before any work).
        resume: continue from the newest intact checkpoint in ``run_dir/checkpoints``
            (damaged ones are passed over with a warning).
        model: train this model instead of building ``cfg.model`` (any
            :class:`axlstm.models.Encoder`).

    Ctrl-C or SIGTERM ends the run after the current step with a checkpoint
    (``summary.stopped_early``); a second signal raises ``KeyboardInterrupt`` at once.

    Raises:
        UsageError: ``resume`` without a checkpoint in ``run_dir``, or a checkpoint there
            without ``resume``.
        CheckpointError: every checkpoint is damaged, or the one found does not fit the model.
        OutputError: ``run_dir`` cannot be written.
        InputError: the data holds no usable clip.
        NonFiniteLossError: the loss became NaN or infinite (the last good checkpoint is kept).
    """
    return Trainer(cfg, run_dir, MaskedSpecTask(cfg, model), resume, callback).fit()
