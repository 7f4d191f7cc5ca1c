"""One way to name a model everywhere (CLI, HEAR module, evaluation).

A model is named by

* a release folder (``config.json`` + ``model.safetensors``, as written by ``axlstm convert``
  or ``model.save_pretrained``), or a file inside one;
* a release on the Hugging Face Hub, ``hf-hub:ORG/NAME`` or ``hf-hub:ORG/NAME@REVISION``
  (through the Hub's cache; see :mod:`axlstm.checkpoint.hub`);
* a registered preset name such as ``axlstm_tiny`` (random weights: for tests and timing);
* an official AxLSTM/SSAST checkpoint file, only when ``arch`` names its preset.
"""

from __future__ import annotations

import difflib
import logging
import os
from pathlib import Path
from typing import Any

import torch

from axlstm.checkpoint import load_model, load_official
from axlstm.checkpoint.hub import is_hub_name
from axlstm.core.errors import CheckpointError, ConfigError
from axlstm.core.fileio import check_input_file
from axlstm.core.release_format import CONFIG_NAME, WEIGHTS_NAME
from axlstm.models import Encoder, create_model, is_model, list_models

__all__ = ["resolve_model"]

logger = logging.getLogger(__name__)


def _release_dir(path: Path) -> Path | None:
    """The release folder ``path`` names (the folder, or its config or weights file), or None.

    A ``config.json`` that is there but cannot be read (a pipe, a link loop) still makes the
    folder a release, so that loading it reports the precise problem."""
    if path.is_dir() and os.path.lexists(path / CONFIG_NAME):
        return path
    has_config = os.path.lexists(path.parent / CONFIG_NAME)
    if path.name in (CONFIG_NAME, WEIGHTS_NAME) and has_config and os.path.lexists(path):
        return path.parent
    return None


def resolve_model(
    spec: str | Path,
    *,
    arch: str | None = None,
    device: str | torch.device | None = None,
    **overrides: Any,
) -> Encoder:
    """The model a name refers to, in eval mode.

    Args:
        spec: release folder (or its ``config.json`` / ``model.safetensors``),
            ``hf-hub:ORG/NAME[@REVISION]``, preset name, or official checkpoint file (with
            ``arch``).
        arch: preset an official checkpoint was trained as, e.g. "axlstm_base"; required for
            official checkpoints, ignored otherwise.
        device: where to put the model (default: CPU).
        **overrides: config fields, e.g. ``frame_layout="official"``; for presets and official
            checkpoints also sizes such as ``embed_dim``. ``None`` values are ignored.

    Raises:
        ConfigError: the name is empty or matches nothing; the message says what is accepted.
    """
    overrides = {k: v for k, v in overrides.items() if v is not None}
    text = str(spec).strip() if spec is not None else ""
    if not text:
        raise ConfigError(
            "no model given: pass a release folder, hf-hub:ORG/NAME, a preset name "
            f"({', '.join(list_models())}) or an official checkpoint with arch="
        )
    path = Path(text).expanduser()
    release = None if is_hub_name(text) else _release_dir(path)
    if is_hub_name(text):
        model = load_model(text, **overrides)
    elif release is not None:
        model = load_model(release, **overrides)
        logger.info("loaded release %s", release)
    elif path.is_file():
        if arch is None:
            raise ConfigError(
                f"{path} is a file, not a release folder: export a training checkpoint of "
                f"`axlstm pretrain` with `axlstm export {path} OUT_DIR`; convert an official "
                f"checkpoint with `axlstm convert {path} OUT_DIR --arch PRESET`, or pass "
                "arch='PRESET' to load it directly"
            )
        model = load_official(path, arch, **overrides)
    elif os.path.lexists(path) and not path.is_dir():
        check_input_file(path, "model file", CheckpointError)  # a pipe, device, link loop
        raise ConfigError(f"{path} cannot be used as a model")
    elif is_model(text):
        model = create_model(text, **overrides)
        logger.warning("model %r is a preset with random weights (not a trained model)", text)
    else:
        if path.is_dir():
            raise ConfigError(f"{path} is a folder but not a release: no {CONFIG_NAME} in it")
        close = difflib.get_close_matches(text, list_models(), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(
            f"unknown model {text!r}: not a release folder, hf-hub:ORG/NAME, checkpoint file or "
            f"preset (presets: {', '.join(list_models())}){hint}"
        )
    if device is not None:
        model = model.to(device)
    return model.eval()
