"""Registry of named model presets and the one factory, :func:`create_model`."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import Any

from axlstm.models.config import ModelConfig
from axlstm.models.msm import MaskedSpecModel

_PRESETS: dict[str, Callable[..., MaskedSpecModel]] = {}


def register_model(fn: Callable[..., MaskedSpecModel]) -> Callable[..., MaskedSpecModel]:
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


def create_model(name: str, **overrides: Any) -> MaskedSpecModel:
    """Build a registered preset with random (officially initialised) weights.

    Args:
        name: preset name, e.g. "axlstm_tiny" (see :func:`list_models`).
        **overrides: :class:`ModelConfig` fields to change; ``None`` values are dropped so that
            unset command-line options never clobber a preset.
    """
    if name not in _PRESETS:
        raise ValueError(f"unknown model {name!r}; registered: {', '.join(list_models())}")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return _PRESETS[name](**overrides)


def build_preset(name: str, defaults: dict[str, Any], overrides: dict[str, Any]):
    """Helper for preset functions: defaults, then overrides, into one config and a model."""
    merged = {**defaults, **overrides, "name": name}
    return MaskedSpecModel(ModelConfig.from_dict(merged))
