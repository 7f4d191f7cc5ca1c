"""Weights in and out: official checkpoints (read safely, remapped per family), release
folders, and the checks every weight file goes through (file kind, one-line reasons for
unreadable files, finite values, configs checked against the weights' shapes)."""

from axlstm.checkpoint.files import (
    check_finite,
    check_weights_file,
    nonfinite_tensors,
    torch_load_weights,
)
from axlstm.checkpoint.official import extract_state_dict, load_official, read_checkpoint
from axlstm.checkpoint.release import build_checked, build_from_config, load_model
from axlstm.checkpoint.remap import (
    REMAPS,
    OfficialRemap,
    check_state,
    infer_architecture,
    shape_differences,
)
from axlstm.core.errors import CheckpointError

__all__ = [
    "REMAPS",
    "CheckpointError",
    "OfficialRemap",
    "build_checked",
    "build_from_config",
    "check_finite",
    "check_state",
    "check_weights_file",
    "extract_state_dict",
    "infer_architecture",
    "load_model",
    "load_official",
    "nonfinite_tensors",
    "read_checkpoint",
    "shape_differences",
    "torch_load_weights",
]
