"""The original SSAST (Gong et al.): the SSAST framework with a DeiT encoder.

What differs from :class:`axlstm.MaskedSpecModel` (SPEC-SSAST-SSAMBA §A):

- input: 128-bin Kaldi fbank (:mod:`axlstm.audio.kaldi`), AudioSet-normalised with 2σ, 1024
  frames in pretraining;
- tokens: 16×16 patches (or 128×2 "frames") cut by a convolution on the (frequency, time)
  image, ordered **frequency-major** (``p = f * T' + t``), with cls and dist tokens in front;
- learnable positions, added **after** masking (mask tokens carry positions);
- masks: the official cluster masking (patch models) or uniform sampling (frame models), M =
  400 of 512 patches;
- objective: masked patch classification (InfoNCE inside each clip) and masked patch
  generation (MSE), L = L_d + 10 L_g, from two forward passes with independent masks.

The encoder is a pre-norm ViT/DeiT stack (timm 0.4.5 block, LayerNorm eps 1e-6); the
framework it shares with SSAMBA is :mod:`axlstm.models.ssast_framework`. Official
checkpoints load through :func:`axlstm.load_official` (key maps in :mod:`axlstm.checkpoint.remap`);
fine-tuning geometries (overlapping patches, other lengths) through :meth:`SSASTFramework.adapt`.

Input layout: ``(B, 1, T, F)`` (time, frequency) like every axlstm model; ``(B, T, F)`` (the
official layout) is accepted too. F must be the configured number of mel bins (128).

References:
    1. Gong et al., "SSAST: Self-Supervised Audio Spectrogram Transformer", AAAI 2022
       (arXiv 2110.09784).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from axlstm.layers.attention import TransformerBlock
from axlstm.layers.drop import drop_path_rates
from axlstm.models.config import in_range
from axlstm.models.registry import build_preset, register_model, register_model_class
from axlstm.models.ssast_config import SSASTFrameworkConfig
from axlstm.models.ssast_framework import SSASTFramework

__all__ = ["SSASTOrigConfig", "SSASTOriginal"]


@dataclass
class SSASTOrigConfig(SSASTFrameworkConfig):
    """The original SSAST: a DeiT encoder (pre-norm, LayerNorm eps 1e-6, exact GELU).

    Attributes:
        num_heads: attention heads (head width 64 in the official sizes).
        mlp_ratio: MLP hidden width factor.
        attn_impl: "sdpa" (fused) or "eager" attention.
        drop_path_rate: stochastic depth in training, timm's rule (block ``i`` of ``depth``:
            ``rate * i / (depth - 1)``); 0 in the official SSAST recipes.
    """

    num_heads: int = 12
    mlp_ratio: float = 4.0
    attn_impl: str = "sdpa"
    drop_path_rate: float = 0.0

    def validate(self) -> None:
        super().validate()
        in_range("drop_path_rate", self.drop_path_rate, 0.0, 1.0, high_open=True)


@register_model_class
class SSASTOriginal(SSASTFramework):
    """The original SSAST: DeiT blocks over ``[cls, dist, patches]``, final LayerNorm (eps 1e-6).

    Hidden states (``return_hidden``) are the outputs of the ``depth`` blocks.
    """

    config_class: ClassVar[type] = SSASTOrigConfig
    release_class: ClassVar[str] = "ssast_original"

    def build_encoder(self) -> None:
        cfg = self.config
        self.blocks = nn.ModuleList(
            TransformerBlock(
                cfg.embed_dim, cfg.num_heads, cfg.mlp_ratio, cfg.attn_impl, drop_path=rate
            )
            for rate in drop_path_rates(cfg.drop_path_rate, cfg.depth)
        )
        self.norm = nn.LayerNorm(cfg.embed_dim, eps=1e-6)

    def init_encoder(self) -> None:
        """timm 0.4.5: Linear trunc-normal(0.02) with zero bias, LayerNorm 1 / 0."""
        for m in [*self.blocks.modules(), self.norm]:
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def run_encoder(self, x: torch.Tensor, return_hidden: bool = False):
        hidden = []
        for block in self.blocks:
            x = block(x)
            if return_hidden:
                hidden.append(x)
        x = self.norm(x)
        return (x, hidden) if return_hidden else x


# ----------------------------------------------------------------------------------- presets
_SIZES = {"tiny": (192, 3), "small": (384, 6), "base": (768, 12)}
_VARIANTS = {
    "patch": dict(patch_size=(16, 16), masking="cluster"),
    "frame": dict(patch_size=(2, 128), masking="random"),
}


def _register(size: str, variant: str) -> None:
    name = f"ssast_orig_{size}_{variant}"
    dim, heads = _SIZES[size]

    def preset(**kw):
        defaults = dict(embed_dim=dim, depth=12, num_heads=heads, **_VARIANTS[variant])
        return build_preset(SSASTOriginal, name, defaults, kw)

    preset.__name__ = preset.__qualname__ = name
    preset.__doc__ = f"Original SSAST-{size.capitalize()}-{variant.capitalize()} (Gong et al.)."
    register_model(preset)


for _size in _SIZES:
    for _variant in _VARIANTS:
        _register(_size, _variant)


@register_model
def test_ssast_orig(**kw):
    """A very small original SSAST (patch model on 128 frames) for fast tests."""
    defaults = dict(embed_dim=64, depth=2, num_heads=4, img_size=(128, 128), mask_patch=50)
    return build_preset(SSASTOriginal, "test_ssast_orig", defaults, kw)
