"""Release folders in and out: ``model.save_pretrained`` writes them
(:mod:`axlstm.core.release_format`), :func:`load_model` builds the class ``config.json`` names
from the registry and loads the safetensors weights. Nothing is unpickled."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from axlstm.core.errors import CheckpointError, ConfigError
from axlstm.core.release_format import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    read_release_config,
    read_release_weights,
)
from axlstm.models import MODEL_CLASSES, Encoder

__all__ = ["CONFIG_NAME", "WEIGHTS_NAME", "build_from_config", "load_model", "read_release_config"]

logger = logging.getLogger(__name__)


def build_from_config(kind: str, model_config: dict[str, Any], source: str) -> Encoder:
    """An untrained model of release class ``kind`` from its config dict."""
    if kind not in MODEL_CLASSES:
        raise CheckpointError(
            f"{source}: unknown model_class {kind!r}; this axlstm knows "
            f"{sorted(MODEL_CLASSES)} (upgrade axlstm?)"
        )
    model_type, config_type = MODEL_CLASSES[kind]
    try:
        return model_type(config_type.from_dict(model_config))
    except ConfigError as err:
        raise CheckpointError(f"{source}: invalid model config: {err}") from err


def load_model(
    directory: str | Path, map_location: str | torch.device = "cpu", **overrides: Any
) -> Encoder:
    """Load a release folder written by ``save_pretrained`` (any class in ``MODEL_CLASSES``).

    Args:
        directory: the release folder.
        map_location: device for the weights.
        **overrides: config fields to change that leave the weights' shapes alone, e.g.
            ``frame_layout="official"`` or ``attn_impl="eager"``; ``None`` values are ignored.

    Raises:
        FileNotFoundError: the folder does not exist.
        CheckpointError: naming the file and the problem (no or invalid ``config.json``,
            unknown model class, unreadable weights, weights that do not fit the config).
    """
    directory = Path(directory)
    config = read_release_config(directory)
    cfg_path = directory / CONFIG_NAME
    overrides = {k: v for k, v in overrides.items() if v is not None}
    model_config = {**config["model"], **overrides}
    model = build_from_config(config.get("model_class", "masked_spec"), model_config, str(cfg_path))
    state = read_release_weights(directory, map_location)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        what = f"its config with {overrides}" if overrides else "its config"
        raise CheckpointError(f"{directory / WEIGHTS_NAME} does not fit {what}: {err}") from err
    return model.to(map_location).eval()
