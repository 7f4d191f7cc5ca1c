"""Models: one encoder interface (:class:`Encoder`), the families that implement it (the masked
spectrogram model, the original SSAST, SSAMBA), their configs and the preset registry."""

from axlstm.models import axlstm as _axlstm  # noqa: F401  (registers presets)
from axlstm.models import ssam as _ssam  # noqa: F401
from axlstm.models import ssast as _ssast  # noqa: F401
from axlstm.models.base import EncoderBase
from axlstm.models.classifier import POOLINGS, AudioClassifier, ClassifierHead, pool_tokens
from axlstm.models.config import ModelConfig
from axlstm.models.interface import Encoder, LayerChoice, PretrainStep, Reconstruction
from axlstm.models.msm import MaskedSpecModel, MSMOutput
from axlstm.models.registry import (
    MODEL_CLASSES,
    build_preset,
    create_model,
    is_model,
    list_models,
    model_class_name,
    register_model,
    register_model_class,
)
from axlstm.models.ssamba import SSAMBA, SSAMBAConfig
from axlstm.models.ssast_config import SSASTFrameworkConfig
from axlstm.models.ssast_finetune import SSASTClassifier, finetune_encoder
from axlstm.models.ssast_framework import SSASTFramework, SSASTOutput
from axlstm.models.ssast_original import SSASTOrigConfig, SSASTOriginal

__all__ = [
    "MODEL_CLASSES",
    "POOLINGS",
    "SSAMBA",
    "AudioClassifier",
    "ClassifierHead",
    "Encoder",
    "EncoderBase",
    "LayerChoice",
    "MSMOutput",
    "MaskedSpecModel",
    "ModelConfig",
    "PretrainStep",
    "Reconstruction",
    "SSAMBAConfig",
    "SSASTClassifier",
    "SSASTFramework",
    "SSASTFrameworkConfig",
    "SSASTOrigConfig",
    "SSASTOriginal",
    "SSASTOutput",
    "build_preset",
    "create_model",
    "finetune_encoder",
    "is_model",
    "list_models",
    "model_class_name",
    "pool_tokens",
    "register_model",
    "register_model_class",
]
