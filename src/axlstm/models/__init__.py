"""Models: the masked spectrogram model, the original SSAST and SSAMBA, configs and registry."""

from axlstm.models import axlstm as _axlstm  # noqa: F401  (registers presets)
from axlstm.models import ssam as _ssam  # noqa: F401
from axlstm.models import ssast as _ssast  # noqa: F401
from axlstm.models.config import ModelConfig
from axlstm.models.msm import MaskedSpecModel, MSMOutput
from axlstm.models.registry import create_model, is_model, list_models, register_model
from axlstm.models.ssamba import SSAMBA, SSAMBAConfig
from axlstm.models.ssast_original import SSASTOrigConfig, SSASTOriginal, SSASTOutput

#: Release ``config.json`` "model_class" -> (model class, config class). Releases written before
#: the key existed are "masked_spec".
MODEL_CLASSES: dict[str, tuple[type, type]] = {
    "masked_spec": (MaskedSpecModel, ModelConfig),
    "ssast_original": (SSASTOriginal, SSASTOrigConfig),
    "ssamba": (SSAMBA, SSAMBAConfig),
}


def model_class_name(model) -> str:
    """The "model_class" a release of ``model`` records."""
    for name, (cls, _) in MODEL_CLASSES.items():
        if type(model) is cls:
            return name
    for name, (cls, _) in MODEL_CLASSES.items():
        if isinstance(model, cls):
            return name
    raise ValueError(f"no release model class for {type(model).__name__}")


__all__ = [
    "MODEL_CLASSES",
    "SSAMBA",
    "MSMOutput",
    "MaskedSpecModel",
    "ModelConfig",
    "SSAMBAConfig",
    "SSASTOrigConfig",
    "SSASTOriginal",
    "SSASTOutput",
    "create_model",
    "is_model",
    "list_models",
    "model_class_name",
    "register_model",
]
