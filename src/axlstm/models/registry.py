"""Registry of model classes (by release name) and of named presets; the one factory,
:func:`create_model`, and the one preset builder, :func:`build_preset`."""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Callable
from typing import Any

from axlstm.core.errors import ConfigError
from axlstm.models.interface import Encoder

__all__ = [
    "MODEL_CLASSES",
    "build_preset",
    "create_model",
    "is_model",
    "list_models",
    "model_class_name",
    "register_model",
    "register_model_class",
]

_PRESETS: dict[str, Callable[..., Encoder]] = {}

#: Release ``config.json`` "model_class" -> (model class, config class). Releases written before
#: the key existed are "masked_spec".
MODEL_CLASSES: dict[str, tuple[type, type]] = {}


def register_model_class(cls: type) -> type:
    """Register a model class under its ``release_class`` (class decorator)."""
    name = cls.release_class
    if not name or name in MODEL_CLASSES:
        raise ValueError(f"model class {cls.__name__}: release_class {name!r} is empty or taken")
    MODEL_CLASSES[name] = (cls, cls.config_class)
    return cls


def model_class_name(model) -> str:
    """The "model_class" a release of ``model`` records."""
    name = getattr(type(model), "release_class", "")
    if name not in MODEL_CLASSES:
        raise ValueError(f"no release model class for {type(model).__name__}")
    return name


def register_model(fn: Callable[..., Encoder]) -> Callable[..., Encoder]:
    """Register a preset function under its own name."""
    if fn.__name__ in _PRESETS:
        raise ValueError(f"model preset {fn.__name__!r} is registered twice")
    _PRESETS[fn.__name__] = fn
    return fn


def list_models(pattern: str = "*") -> list[str]:
    """Registered preset names matching a shell-style pattern, sorted."""
    return sorted(n for n in _PRESETS if fnmatch.fnmatch(n, pattern))


def is_model(name: str) -> bool:
    return name in _PRESETS


def create_model(name: str, **overrides: Any) -> Encoder:
    """Build a registered preset with random (officially initialised) weights.

    Args:
        name: preset name, e.g. "axlstm_tiny" (see :func:`list_models`).
        **overrides: config fields to change; ``None`` values are dropped so that unset
            command-line options never clobber a preset.
    """
    if name not in _PRESETS:
        raise ConfigError(f"unknown model {name!r}; registered: {', '.join(list_models())}")
    unset = [k for k, v in overrides.items() if v is None]
    known = {f.name for _, cfg in MODEL_CLASSES.values() for f in dataclasses.fields(cfg)}
    unknown = [k for k in unset if k not in known]
    if unknown:  # e.g. YAML's "{num_heads:0}" (no space): a key "num_heads:0" with no value
        raise ConfigError(
            f"unknown model config field {unknown[0]!r} (with no value); did you mean "
            "'key: value' with a space after the colon?"
        )
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return _PRESETS[name](**overrides)


def build_preset(
    model_class: type, name: str, defaults: dict[str, Any], overrides: dict[str, Any]
) -> Encoder:
    """For preset functions: defaults, then overrides, into the class's config and a model."""
    merged = {**defaults, **overrides, "name": name}
    return model_class(model_class.config_class.from_dict(merged))
