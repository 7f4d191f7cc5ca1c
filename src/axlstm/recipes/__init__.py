"""Recipes: what to train and how, as typed configs with shipped YAML presets.

cfg = load_config("debug", ["optim.lr=1e-3"])   # a preset name or a YAML path
pretrain(cfg, "runs/debug")
"""

from __future__ import annotations

from axlstm.recipes.pretrain import (
    MaskedSpecTask,
    ModelSection,
    PretrainConfig,
    list_presets,
    load_config,
    pretrain,
)

__all__ = [
    "MaskedSpecTask",
    "ModelSection",
    "PretrainConfig",
    "list_presets",
    "load_config",
    "pretrain",
]
