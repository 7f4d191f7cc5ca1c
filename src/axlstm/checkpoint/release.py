"""Release folders: ``config.json`` (architecture, front end, provenance) + ``model.safetensors``.

Loading a release never unpickles anything: the weights are safetensors, the config is JSON.
``config.json`` names the model class (``"model_class"``: "masked_spec", "ssast_original" or
"ssamba"; absent in older releases, meaning "masked_spec") and the front end the model needs
(``"front_end"``: the AxLSTM log-mel settings, or ``{"kind": "kaldi_fbank", ...}``; see
:func:`axlstm.audio.build_front_end`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from axlstm.fileio import atomic_write, atomic_write_text
from axlstm.models import MODEL_CLASSES, MaskedSpecModel, model_class_name

logger = logging.getLogger(__name__)

RELEASE_FORMAT = "axlstm-release"
RELEASE_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


def save_release(
    model: MaskedSpecModel, directory: str | Path, provenance: dict[str, Any] | None = None
) -> Path:
    """Write ``model`` as a release folder and return its path."""
    from axlstm import __version__

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = {
        "format": RELEASE_FORMAT,
        "format_version": RELEASE_VERSION,
        "axlstm_version": __version__,
        "model_class": model_class_name(model),
        "model": model.config.to_dict(),
        "front_end": model.front_end_config.to_dict(),
        "provenance": provenance or {},
    }
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    atomic_write(directory / WEIGHTS_NAME, lambda p: save_file(state, p, metadata={"format": "pt"}))
    text = json.dumps(config, indent=2, sort_keys=True) + "\n"
    atomic_write_text(directory / CONFIG_NAME, text)
    logger.info("saved release %s", directory)
    return directory


def read_release_config(directory: str | Path) -> dict[str, Any]:
    """The parsed ``config.json`` of a release folder, validated."""
    directory = Path(directory)
    cfg_path = directory / CONFIG_NAME
    if not directory.is_dir():
        raise FileNotFoundError(f"release folder not found: {directory}")
    if not cfg_path.is_file():
        raise ValueError(f"{directory} is not an axlstm release folder: no {CONFIG_NAME}")
    try:
        config = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{cfg_path}: invalid JSON ({err})") from err
    if config.get("format") != RELEASE_FORMAT or "model" not in config:
        raise ValueError(
            f"{cfg_path}: not an axlstm release config (format {config.get('format')!r})"
        )
    if int(config.get("format_version", 0)) > RELEASE_VERSION:
        raise ValueError(
            f"{cfg_path}: release format version {config['format_version']} is newer than this "
            f"axlstm understands ({RELEASE_VERSION}); upgrade axlstm"
        )
    return config


def load_model(
    directory: str | Path, map_location: str | torch.device = "cpu", **overrides: Any
) -> torch.nn.Module:
    """Load a release folder written by ``save_pretrained`` (any class in ``MODEL_CLASSES``).

    Args:
        directory: the release folder.
        map_location: device for the weights.
        **overrides: config fields to change that leave the weights' shapes alone, e.g.
            ``frame_layout="official"`` or ``attn_impl="eager"``; ``None`` values are ignored.
    """
    directory = Path(directory)
    config = read_release_config(directory)
    weights = directory / WEIGHTS_NAME
    if not weights.is_file():
        raise ValueError(f"{directory} is not a complete release: no {WEIGHTS_NAME}")
    kind = config.get("model_class", "masked_spec")
    if kind not in MODEL_CLASSES:
        raise ValueError(
            f"{directory / CONFIG_NAME}: unknown model_class {kind!r}; this axlstm knows "
            f"{sorted(MODEL_CLASSES)} (upgrade axlstm?)"
        )
    model_type, config_type = MODEL_CLASSES[kind]
    model_cfg = config_type.from_dict(config["model"])
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if overrides:
        model_cfg = model_cfg.replace(**overrides)
    model = model_type(model_cfg)
    try:
        state = load_file(str(weights), device=str(map_location))
    except Exception as err:
        raise ValueError(f"{weights}: cannot read safetensors weights ({err})") from err
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        what = f"its config with {overrides}" if overrides else "its config"
        raise ValueError(f"{weights} does not fit {what}: {err}") from err
    return model.to(map_location).eval()
