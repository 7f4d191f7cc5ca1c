"""The release-folder format: ``config.json`` (architecture, front end, provenance) and
``model.safetensors``. Writing and reading the files only; which class a release builds is the
registry's business (:func:`axlstm.checkpoint.load_model`).

Loading a release never unpickles anything: the weights are safetensors, the config is JSON.
``config.json`` names the model class (``"model_class"``: "masked_spec", "ssast_original" or
"ssamba"; absent in older releases, meaning "masked_spec") and the front end the model needs
(``"front_end"``; see :func:`axlstm.audio.build_front_end`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from axlstm._version import __version__
from axlstm.core.errors import CheckpointError
from axlstm.core.fileio import atomic_write, atomic_write_text

__all__ = [
    "CONFIG_NAME",
    "RELEASE_FORMAT",
    "RELEASE_VERSION",
    "WEIGHTS_NAME",
    "read_release_config",
    "read_release_weights",
    "write_release",
]

logger = logging.getLogger(__name__)

RELEASE_FORMAT = "axlstm-release"
RELEASE_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


def write_release(
    directory: str | Path,
    *,
    model_class: str,
    model_config: dict[str, Any],
    front_end: dict[str, Any],
    state_dict: dict[str, torch.Tensor],
    provenance: dict[str, Any] | None = None,
) -> Path:
    """Write a release folder (atomically, file by file) and return its path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = {
        "format": RELEASE_FORMAT,
        "format_version": RELEASE_VERSION,
        "axlstm_version": __version__,
        "model_class": model_class,
        "model": model_config,
        "front_end": front_end,
        "provenance": provenance or {},
    }
    state = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    atomic_write(directory / WEIGHTS_NAME, lambda p: save_file(state, p, metadata={"format": "pt"}))
    text = json.dumps(config, indent=2, sort_keys=True) + "\n"
    atomic_write_text(directory / CONFIG_NAME, text)
    logger.info("saved release %s", directory)
    return directory


def read_release_config(directory: str | Path) -> dict[str, Any]:
    """The parsed ``config.json`` of a release folder, validated.

    Raises:
        FileNotFoundError: the folder does not exist.
        CheckpointError: no or an invalid ``config.json``, or a newer format version.
    """
    directory = Path(directory)
    cfg_path = directory / CONFIG_NAME
    if not directory.is_dir():
        raise FileNotFoundError(f"release folder not found: {directory}")
    if not cfg_path.is_file():
        raise CheckpointError(f"{directory} is not an axlstm release folder: no {CONFIG_NAME}")
    try:
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{cfg_path}: invalid JSON ({err})") from err
    if not isinstance(config, dict):
        raise CheckpointError(f"{cfg_path}: not an axlstm release config (not a JSON object)")
    if config.get("format") != RELEASE_FORMAT or not isinstance(config.get("model"), dict):
        raise CheckpointError(
            f"{cfg_path}: not an axlstm release config (format {config.get('format')!r})"
        )
    try:
        version = int(config.get("format_version", 0))
    except (TypeError, ValueError):
        raise CheckpointError(
            f"{cfg_path}: format_version {config.get('format_version')!r} is not a number"
        ) from None
    if version > RELEASE_VERSION:
        raise CheckpointError(
            f"{cfg_path}: release format version {version} is newer than this axlstm "
            f"understands ({RELEASE_VERSION}); upgrade axlstm"
        )
    return config


def read_release_weights(
    directory: str | Path, device: str | torch.device = "cpu"
) -> dict[str, torch.Tensor]:
    """The safetensors weights of a release folder.

    Raises:
        CheckpointError: the file is missing or not readable safetensors.
    """
    weights = Path(directory) / WEIGHTS_NAME
    if not weights.is_file():
        raise CheckpointError(f"{directory} is not a complete release: no {WEIGHTS_NAME}")
    try:
        return load_file(str(weights), device=str(device))
    except Exception as err:
        raise CheckpointError(f"{weights}: cannot read safetensors weights ({err})") from err
