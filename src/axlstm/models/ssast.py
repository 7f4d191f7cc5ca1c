"""SSAST-style transformer presets in the same masked spectrogram model (the AxLSTM baseline)."""

from __future__ import annotations

from axlstm.models.msm import MaskedSpecModel
from axlstm.models.registry import build_preset, register_model


@register_model
def ssast_tiny(**kw):
    return build_preset(
        MaskedSpecModel,
        "ssast_tiny",
        dict(family="ssast", embed_dim=192, depth=12, num_heads=3),
        kw,
    )


@register_model
def ssast_small(**kw):
    return build_preset(
        MaskedSpecModel,
        "ssast_small",
        dict(family="ssast", embed_dim=384, depth=12, num_heads=6),
        kw,
    )


@register_model
def ssast_base(**kw):
    return build_preset(
        MaskedSpecModel,
        "ssast_base",
        dict(family="ssast", embed_dim=768, depth=12, num_heads=12),
        kw,
    )


@register_model
def test_ssast(**kw):
    """A very small SSAST for fast tests."""
    return build_preset(
        MaskedSpecModel, "test_ssast", dict(family="ssast", embed_dim=32, depth=2, num_heads=2), kw
    )
