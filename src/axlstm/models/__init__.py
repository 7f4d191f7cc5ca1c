"""Models: the masked spectrogram model, its config, and the preset registry."""

from axlstm.models import axlstm as _axlstm  # noqa: F401  (registers presets)
from axlstm.models import ssast as _ssast  # noqa: F401
from axlstm.models.config import ModelConfig
from axlstm.models.msm import MaskedSpecModel, MSMOutput
from axlstm.models.registry import create_model, is_model, list_models, register_model

__all__ = [
    "MSMOutput",
    "MaskedSpecModel",
    "ModelConfig",
    "create_model",
    "is_model",
    "list_models",
    "register_model",
]
