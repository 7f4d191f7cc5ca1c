"""SSAM (Audio Mamba) presets: unidirectional Mamba blocks in the masked spectrogram model.

SPEC §10: the AxLSTM wrapper and recipe unchanged (patch embedding, sin-cos positions, cls,
mask tokens, MSE patch head), with mamba_ssm ``Mamba`` mixers (d_state 24, d_conv 4, expand 3,
dt_rank ceil(d / 16)) in Add -> LayerNorm -> Mixer blocks, residual in fp32, GPT-2-style init
with ``out_proj`` rescaled by 1/sqrt(depth). No sequence flipping.

Reference: Yadav & Tan, "Audio Mamba: Selective State Spaces for Self-Supervised Audio
Representations", 2024 (arXiv 2406.02178).
"""

from __future__ import annotations

from axlstm.models.msm import MaskedSpecModel
from axlstm.models.registry import build_preset, register_model

_MAMBA = dict(family="ssam", d_state=24, conv_kernel_size=4, expansion=3, dt_rank="auto")


@register_model
def ssam_tiny(**kw):
    return build_preset(MaskedSpecModel, "ssam_tiny", dict(_MAMBA, embed_dim=192, depth=12), kw)


@register_model
def ssam_small(**kw):
    return build_preset(MaskedSpecModel, "ssam_small", dict(_MAMBA, embed_dim=384, depth=12), kw)


@register_model
def ssam_base(**kw):
    return build_preset(MaskedSpecModel, "ssam_base", dict(_MAMBA, embed_dim=768, depth=12), kw)


@register_model
def test_ssam(**kw):
    """A very small SSAM for fast tests."""
    return build_preset(MaskedSpecModel, "test_ssam", dict(_MAMBA, embed_dim=32, depth=2), kw)
