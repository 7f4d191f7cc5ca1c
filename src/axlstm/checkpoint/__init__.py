"""Weights in and out: official checkpoints (read safely, remapped per family) and our release
folders."""

from axlstm.checkpoint.official import extract_state_dict, load_official, read_checkpoint
from axlstm.checkpoint.release import build_from_config, load_model
from axlstm.checkpoint.remap import REMAPS, OfficialRemap, check_state, infer_architecture
from axlstm.core.errors import CheckpointError

__all__ = [
    "REMAPS",
    "CheckpointError",
    "OfficialRemap",
    "build_from_config",
    "check_state",
    "extract_state_dict",
    "infer_architecture",
    "load_model",
    "load_official",
    "read_checkpoint",
]
