"""axlstm: self-supervised audio representation learning with AxLSTM, SSAST and friends.

Entry points:
    create_model(name, **overrides)       a registered preset with fresh weights
    load_official(path, arch, **overrides) an official AxLSTM/SSAST checkpoint
    load_model(dir)                        a release folder (config.json + model.safetensors)
    axlstm.audio.load_audio / log_mel      audio in, log-mel features out
"""

from __future__ import annotations

__version__ = "0.1.0"

from axlstm import audio, layers, objectives  # noqa: F401  (subpackages as attributes)
from axlstm.checkpoint import load_model, load_official
from axlstm.models import MaskedSpecModel, ModelConfig, create_model, list_models

__all__ = [
    "MaskedSpecModel",
    "ModelConfig",
    "__version__",
    "audio",
    "create_model",
    "list_models",
    "load_model",
    "load_official",
]
