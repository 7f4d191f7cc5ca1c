"""Weights in and out: official checkpoints (read safely) and our release folders."""

from axlstm.checkpoint.official import (
    CheckpointError,
    extract_state_dict,
    load_official,
    read_checkpoint,
    remap_official_state_dict,
)
from axlstm.checkpoint.release import load_model, save_release

__all__ = [
    "CheckpointError",
    "extract_state_dict",
    "load_model",
    "load_official",
    "read_checkpoint",
    "remap_official_state_dict",
    "save_release",
]
