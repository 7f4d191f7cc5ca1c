"""axlstm: self-supervised audio representation learning with AxLSTM, SSAST and friends.

Entry points:
    create_model(name, **overrides)       a registered preset with fresh weights
    load_official(path, arch, **overrides) an official AxLSTM/SSAST/SSAMBA checkpoint
    load_model(dir)                        a release folder (config.json + model.safetensors)
    embed(model, wave, sample_rate=...)    scene and frame embeddings of any audio
    load_classifier(dir).predict(files)    labels from a fine-tuned classifier release
    load_model("hf-hub:ORG/NAME")          a release on the Hugging Face Hub (load_classifier too)
    push_release(dir, "ORG/NAME")          upload a release with its model card (axlstm[hub])
    axlstm.audio.load_audio / log_mel      audio in, log-mel features out

Every model implements one interface, :class:`axlstm.models.Encoder`.
"""

from __future__ import annotations

from axlstm import audio, layers, objectives  # noqa: F401  (subpackages as attributes)
from axlstm._version import __version__
from axlstm.checkpoint import load_model, load_official
from axlstm.core.errors import AudioError, AxlstmError, CheckpointError, ConfigError
from axlstm.embedding import embed
from axlstm.models import Encoder, MaskedSpecModel, ModelConfig, create_model, list_models

__all__ = [
    "AudioError",
    "AxlstmError",
    "CheckpointError",
    "ConfigError",
    "Encoder",
    "MaskedSpecModel",
    "ModelConfig",
    "__version__",
    "audio",
    "create_model",
    "embed",
    "list_models",
    "load_classifier",
    "load_model",
    "load_official",
    "push_release",
]


def __getattr__(name: str):
    # imported on first use: fine-tuning pulls in the training engine and evaluation
    if name == "load_classifier":
        from axlstm.finetune.release import load_classifier

        return load_classifier
    if name == "push_release":
        from axlstm.finetune.publish import push_release

        return push_release
    raise AttributeError(f"module 'axlstm' has no attribute {name!r}")
