"""AxLSTM presets: bidirectional ViL (mLSTM) blocks in the masked spectrogram model."""

from __future__ import annotations

from axlstm.models.msm import MaskedSpecModel
from axlstm.models.registry import build_preset, register_model


@register_model
def axlstm_tiny(**kw):
    return build_preset(
        MaskedSpecModel, "axlstm_tiny", dict(family="axlstm", embed_dim=192, depth=12), kw
    )


@register_model
def axlstm_small(**kw):
    return build_preset(
        MaskedSpecModel, "axlstm_small", dict(family="axlstm", embed_dim=384, depth=12), kw
    )


@register_model
def axlstm_base(**kw):
    return build_preset(
        MaskedSpecModel, "axlstm_base", dict(family="axlstm", embed_dim=768, depth=12), kw
    )


@register_model
def test_axlstm(**kw):
    """A very small AxLSTM for fast tests."""
    return build_preset(
        MaskedSpecModel, "test_axlstm", dict(family="axlstm", embed_dim=32, depth=2), kw
    )
