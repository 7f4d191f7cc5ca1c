"""Release folders in and out: ``model.save_pretrained`` writes them
(:mod:`axlstm.core.release_format`), :func:`load_model` builds the class ``config.json`` names
from the registry and loads the safetensors weights. Nothing is unpickled.

A config is never trusted to size a model: before any weight is allocated, the model it
describes is built on the ``meta`` device (shapes only, no memory) and its tensor shapes are
compared with the shapes the weights file declares (the safetensors header, or the tensors of
a training checkpoint). A config that does not fit its weights, e.g. a hostile one with a huge
width or depth, is refused at the cost of the comparison. Non-finite weights are refused too.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from axlstm.audio import FrontEndSpec, front_end_from_dict
from axlstm.checkpoint.files import check_finite
from axlstm.checkpoint.hub import is_hub_name, load_from_hub
from axlstm.checkpoint.remap import shape_differences
from axlstm.core.errors import CheckpointError, ConfigError
from axlstm.core.release_format import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    read_release_config,
    read_release_shapes,
    read_release_weights,
)
from axlstm.models import MODEL_CLASSES, Encoder

__all__ = [
    "CONFIG_NAME",
    "WEIGHTS_NAME",
    "build_checked",
    "build_from_config",
    "load_model",
    "read_release_config",
]

logger = logging.getLogger(__name__)

# What building a model from a bad config may raise, besides ConfigError.
_BUILD_ERRORS = (ValueError, TypeError, ArithmeticError, RuntimeError, AssertionError, KeyError)


def _model_class(kind: Any, source: str) -> tuple[type, type]:
    if not isinstance(kind, str) or kind not in MODEL_CLASSES:
        raise CheckpointError(
            f"{source}: unknown model_class {kind!r}; this axlstm knows "
            f"{sorted(MODEL_CLASSES)} (upgrade axlstm?)"
        )
    return MODEL_CLASSES[kind]


def _construct(model_type: type, config: Any, source: str) -> Encoder:
    try:
        return model_type(config)
    except ConfigError as err:
        raise CheckpointError(f"{source}: invalid model config: {err}") from err
    except _BUILD_ERRORS as err:
        raise CheckpointError(
            f"{source}: invalid model config: {type(err).__name__}: {err}"
        ) from err


def _parse_config(config_type: type, model_config: Any, source: str) -> Any:
    if not isinstance(model_config, Mapping):
        raise CheckpointError(f"{source}: the model config is not a mapping of fields")
    try:
        return config_type.from_dict(dict(model_config))
    except ConfigError as err:
        raise CheckpointError(f"{source}: invalid model config: {err}") from err
    except _BUILD_ERRORS as err:
        raise CheckpointError(
            f"{source}: invalid model config: {type(err).__name__}: {err}"
        ) from err


def build_from_config(kind: str, model_config: dict[str, Any], source: str) -> Encoder:
    """An untrained model of release class ``kind`` from its config dict (allocated at once;
    for weights from a file use :func:`build_checked`).

    Raises:
        CheckpointError: unknown class or invalid config, naming ``source``.
    """
    model_type, config_type = _model_class(kind, source)
    return _construct(model_type, _parse_config(config_type, model_config, source), source)


def build_checked(
    kind: str,
    model_config: dict[str, Any],
    shapes: Mapping[str, Sequence[int]],
    source: str,
    weights: str,
) -> Encoder:
    """An untrained model of class ``kind``, built only after its config was shown to fit the
    weights' tensor ``shapes`` (on the ``meta`` device: no memory, whatever the config says).

    Args:
        kind: the release class ("masked_spec", ...).
        model_config: the config fields, as stored.
        shapes: tensor name -> shape of the weights that will be loaded.
        source: the config's origin, for messages (``config.json``, a checkpoint).
        weights: the weights' origin, for messages.

    Raises:
        CheckpointError: unknown class, invalid config, or a config whose model's tensors
            differ from ``shapes`` (the first differing keys and shapes are named).
    """
    model_type, config_type = _model_class(kind, source)
    config = _parse_config(config_type, model_config, source)
    depth = getattr(config, "depth", None)
    if isinstance(depth, int) and depth > len(shapes):
        # every block holds at least one tensor; refused before building even a skeleton
        raise CheckpointError(
            f"{weights} does not fit {source}: the config asks for depth {depth}, the weights "
            f"hold only {len(shapes)} tensors"
        )
    with torch.device("meta"):
        skeleton = _construct(model_type, config, source)
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    parts = shape_differences(shapes, expected)
    if parts:
        raise CheckpointError(
            f"{weights} does not fit {source} (model {config.name!r}): " + "; ".join(parts)
        )
    return _construct(model_type, config, source)


def _release_front_end(config: Mapping[str, Any], cfg_path: Path) -> FrontEndSpec | None:
    """The release's top-level ``"front_end"`` (what its model expects, recorded for readers
    that build no model), checked like any front-end config; None when absent or empty."""
    recorded = config.get("front_end")
    if not recorded:
        return None
    try:
        return front_end_from_dict(recorded)
    except ConfigError as err:
        raise CheckpointError(f"{cfg_path}: invalid 'front_end': {err}") from err


def load_model(
    directory: str | Path, map_location: str | torch.device = "cpu", **overrides: Any
) -> Encoder:
    """Load a release folder written by ``save_pretrained`` (any class in ``MODEL_CLASSES``),
    or a release on the Hugging Face Hub, ``"hf-hub:ORG/NAME[@REVISION]"`` (through the Hub's
    cache, with the same checks; see :mod:`axlstm.checkpoint.hub`).

    The config is checked against the weights' shapes (read from the safetensors header)
    before any model is allocated, and the weights must be finite. Its ``"front_end"`` (and
    the model section's) must be a valid front-end config, and the recorded one must be the
    model's.

    Args:
        directory: the release folder, or ``"hf-hub:ORG/NAME[@REVISION]"``.
        map_location: device for the weights.
        **overrides: config fields to change that leave the weights' shapes alone, e.g.
            ``frame_layout="official"`` or ``attn_impl="eager"``; ``None`` values are ignored.

    Raises:
        FileNotFoundError: the folder does not exist.
        CheckpointError: naming the file and the problem (not a folder, no or invalid
            ``config.json`` (a bad model or front-end field is named), unknown model class,
            unreadable weights, weights that do not fit the config, non-finite weights); for
            a Hub name also: the repository, revision, file and how to repair the cache.
    """
    if is_hub_name(directory):
        return load_from_hub(directory, lambda d: load_model(d, map_location, **overrides))
    directory = Path(directory)
    config = read_release_config(directory)
    cfg_path, weights = directory / CONFIG_NAME, directory / WEIGHTS_NAME
    overrides = {k: v for k, v in overrides.items() if v is not None}
    source = f"{cfg_path} with {overrides}" if overrides else str(cfg_path)
    front_end = _release_front_end(config, cfg_path)
    model = build_checked(
        config.get("model_class", "masked_spec"),
        {**config["model"], **overrides},
        read_release_shapes(directory),
        source,
        str(weights),
    )
    if front_end is not None and not overrides and front_end != model.front_end_config:
        recorded, own = front_end.to_dict(), model.front_end_config.to_dict()
        differ = ", ".join(
            f"{k}={recorded.get(k)!r} (the model's: {own.get(k)!r})"
            for k in sorted(set(recorded) | set(own))
            if recorded.get(k) != own.get(k)
        )
        raise CheckpointError(
            f"{cfg_path}: 'front_end' contradicts the model section's front end: {differ}; "
            "the file was edited or damaged"
        )
    state = read_release_weights(directory, map_location)
    check_finite(state, weights)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:  # the shapes were checked; kept for dtype surprises
        raise CheckpointError(f"{weights} does not fit {source}: {err}") from err
    return model.to(map_location).eval()
