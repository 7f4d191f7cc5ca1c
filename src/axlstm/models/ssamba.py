"""SSAMBA: the SSAST framework with bidirectional Vision-Mamba ("Vim") blocks.

Everything around the encoder is the original SSAST's (:mod:`axlstm.models.ssast_original`):
Kaldi fbank input, 16×16 frequency-major patches, learnable positions added after masking,
cluster masking, MPC + MPG heads, L = L_d + 10 L_g from two passes. Differences
(SPEC-SSAST-SSAMBA §B):

- one cls token (position 0), no dist token;
- 24 Vim blocks ``(h, r) -> (Mixer(Norm(r + h)), r + h)`` with the bidirectional "v2" mixer
  (:class:`axlstm.layers.mamba.BiMambaMixer`: d_state 16, expand 2, dt_rank ceil(D / 16)),
  consumed as 12 parallel pairs: block 2k sees the sequence, block 2k+1 the flipped one, and
  their outputs are summed;
- a final norm ``norm_f``; per-layer drop path (0 … 0.1) in training.

Quirks of the official code are reproduced by default and can be corrected (§D):

============================  ===========================  ===============================
quirk                          parity default               corrected option
============================  ===========================  ===============================
5 residual doubles per pair    ``residual_doubling=True``   ``False``: average the pair
6 final norm applied twice     ``final_norm_twice=True``    ``False``
7 ``dt_proj_b.bias`` zeroed    ``backward_dt_bias="zero"``  ``"mamba"``: standard dt init
8 cls at position 0            ``cls_position="start"``     ``"middle"`` (Vim style)
============================  ===========================  ===============================

The official checkpoints are trained with LayerNorm (``norm="layer"``); SSAMBA's SUPERB
expert builds RMSNorm (``norm="rms"``), which :func:`axlstm.load_official` detects from the
missing norm biases.

References:
    1. Shams et al., "SSAMBA: Self-Supervised Audio Representation Learning with Mamba State
       Space Model", 2024 (arXiv 2405.11831).
    2. Zhu et al., "Vision Mamba", 2024 (arXiv 2401.09417).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from axlstm.core.errors import ConfigError
from axlstm.layers.drop import drop_path
from axlstm.layers.mamba import BiMambaMixer, RMSNorm
from axlstm.layers.scan import SCAN_IMPLS
from axlstm.models.config import check_bool, check_dt_rank, choose, in_range, positive_int
from axlstm.models.registry import build_preset, register_model, register_model_class
from axlstm.models.ssast_config import SSASTFrameworkConfig
from axlstm.models.ssast_framework import SSASTFramework

NORMS = ("layer", "rms")
CLS_POSITIONS = ("start", "middle")


@dataclass
class SSAMBAConfig(SSASTFrameworkConfig):
    """SSAMBA: the shared SSAST framework fields plus the Vim encoder's.

    Attributes:
        d_state: Mamba state size per channel.
        d_conv: causal conv kernel.
        expand: inner width factor (E = expand · D).
        dt_rank: step-size projection rank; "auto" is ceil(D / 16).
        norm: "layer" (LayerNorm with bias, the released models) or "rms" (RMSNorm).
        norm_eps: epsilon of the block norms and ``norm_f``.
        drop_path_rate: stochastic depth: layer l uses ``[0, linspace(0, rate, depth)][l]`` and
            the last hidden state ``rate`` before the final add (training only).
        residual_in_fp32: keep the residual stream in fp32 (the scripts: False).
        residual_doubling: quirk 5; True reproduces ``R <- r_f + flip(r_b)``.
        final_norm_twice: quirk 6; True reproduces ``norm_f(norm_f(R + H))``.
        backward_dt_bias: quirk 7; "zero" (official) or "mamba".
        cls_position: quirk 8; "start" (official) or "middle".
        divide_out: the mixer averages its two directions (Vim's ``if_devide_out``).
        scan_impl: selective-scan implementation (:func:`axlstm.layers.scan.selective_scan`).
        chunk_size: chunk length of the chunked scan.
    """

    family: str = "ssamba"
    embed_dim: int = 192
    depth: int = 24
    num_cls_tokens: int = 1
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    dt_rank: int | str = "auto"
    norm: str = "layer"
    norm_eps: float = 1e-5
    drop_path_rate: float = 0.1
    residual_in_fp32: bool = False
    residual_doubling: bool = True
    final_norm_twice: bool = True
    backward_dt_bias: str = "zero"
    cls_position: str = "start"
    divide_out: bool = True
    scan_impl: str = "auto"
    chunk_size: int = 32

    FAMILY: ClassVar[str] = "ssamba"

    def validate(self) -> None:
        """The framework's checks, then the Vim encoder's (see
        :meth:`SSASTFrameworkConfig.validate`)."""
        super().validate()
        if self.depth % 2:
            raise ConfigError(
                f"SSAMBA runs its blocks in bidirectional pairs: depth must be even, "
                f"got {self.depth}"
            )
        if self.num_cls_tokens != 1:
            raise ConfigError("SSAMBA has exactly one cls token")
        choose("norm", self.norm, NORMS)
        choose("cls_position", self.cls_position, CLS_POSITIONS)
        choose("backward_dt_bias", self.backward_dt_bias, ("zero", "mamba"))
        choose("scan_impl", self.scan_impl, SCAN_IMPLS, "scan impl")
        for name in ("d_state", "d_conv", "expand", "chunk_size"):
            positive_int(name, getattr(self, name))
        check_dt_rank(self.dt_rank)
        in_range("norm_eps", self.norm_eps, 0.0, 1.0, low_open=True)
        in_range("drop_path_rate", self.drop_path_rate, 0.0, 1.0, high_open=True)
        for name in ("residual_in_fp32", "residual_doubling", "final_norm_twice", "divide_out"):
            check_bool(name, getattr(self, name))


class VimBlock(nn.Module):
    """Vision Mamba's block: Add -> Norm -> bidirectional Mixer, the residual carried separately.

    ``forward(h, r)`` returns ``(Mixer(Norm(r')), r')`` with ``r' = h`` when ``r`` is None, else
    ``r + DropPath(h)``.

    Args:
        dim: token width.
        norm: "layer" or "rms".
        norm_eps: norm epsilon.
        drop_path: this block's stochastic-depth rate.
        residual_in_fp32: keep ``r'`` in fp32.
        **mixer_kwargs: :class:`~axlstm.layers.mamba.BiMambaMixer` options.
    """

    def __init__(
        self,
        dim: int,
        norm: str = "layer",
        norm_eps: float = 1e-5,
        drop_path: float = 0.0,
        residual_in_fp32: bool = False,
        **mixer_kwargs,
    ) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=norm_eps) if norm == "layer" else RMSNorm(dim, norm_eps)
        self.mixer = BiMambaMixer(dim, **mixer_kwargs)
        self.drop_path = drop_path
        self.residual_in_fp32 = residual_in_fp32

    def forward(
        self, hidden: torch.Tensor, residual: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if residual is None:
            residual = hidden
        else:
            residual = residual + drop_path(hidden, self.drop_path, self.training)
        hidden = self.mixer(self.norm(residual.to(self.norm.weight.dtype)))
        if self.residual_in_fp32 and residual.dtype != torch.float64:
            residual = residual.float()
        return hidden, residual


@register_model_class
class SSAMBA(SSASTFramework):
    """SSAMBA: the SSAST framework with 24 bidirectional Vim blocks (12 parallel pairs).

    Hidden states (``return_hidden``) are the residual streams ``R + H`` after each pair, so
    :attr:`num_layers` is ``depth // 2``; the final output is ``norm_f`` (twice, by default) of
    the last one.
    """

    config_class: ClassVar[type] = SSAMBAConfig
    release_class: ClassVar[str] = "ssamba"

    blocks_per_layer: ClassVar[int] = 2  # a layer is a pair of Vim blocks

    @property
    def num_layers(self) -> int:
        return self.config.depth // 2

    def build_encoder(self) -> None:
        cfg = self.config
        rates = [0.0, *torch.linspace(0, cfg.drop_path_rate, cfg.depth, device="cpu").tolist()]
        self.layers = nn.ModuleList(
            VimBlock(
                cfg.embed_dim,
                norm=cfg.norm,
                norm_eps=cfg.norm_eps,
                drop_path=rates[i],
                residual_in_fp32=cfg.residual_in_fp32,
                d_state=cfg.d_state,
                d_conv=cfg.d_conv,
                expand=cfg.expand,
                dt_rank=cfg.dt_rank,
                divide_out=cfg.divide_out,
                backward_dt_bias=cfg.backward_dt_bias,
                scan_impl=cfg.scan_impl,
                chunk_size=cfg.chunk_size,
            )
            for i in range(cfg.depth)
        )
        D = cfg.embed_dim
        self.norm_f = (
            nn.LayerNorm(D, eps=cfg.norm_eps) if cfg.norm == "layer" else RMSNorm(D, cfg.norm_eps)
        )

    def init_encoder(self) -> None:
        """Mamba's init per mixer, then Vim's GPT-2 pass: norms 1 / 0 and every ``out_proj``
        re-drawn kaiming-uniform(a=√5) / √depth (SPEC-SSAST-SSAMBA §B6)."""
        for layer in self.layers:
            layer.norm.reset_parameters()
            layer.mixer.reset_parameters()
            layer.mixer.rescale_out_proj(self.config.depth)
        self.norm_f.reset_parameters()

    def encoder_order(self, n_patches: int) -> torch.Tensor | None:
        if self.config.cls_position == "start":
            return None
        k = n_patches // 2  # Vim's middle position: the cls token sits before patch k
        return torch.cat(
            [
                torch.arange(1, k + 1),
                torch.zeros(1, dtype=torch.long),
                torch.arange(k + 1, n_patches + 1),
            ]
        )

    def run_encoder(self, x: torch.Tensor, return_hidden: bool = False):
        cfg = self.config
        H, R = x, None
        hidden = []
        for k in range(0, len(self.layers), 2):
            h_f, r_f = self.layers[k](H, R)
            h_b, r_b = self.layers[k + 1](H.flip(1), None if R is None else R.flip(1))
            H = h_f + h_b.flip(1)
            R = r_f + r_b.flip(1)  # both blocks added the same residual: it doubles (quirk 5)
            if not cfg.residual_doubling:
                R = R / 2
            if return_hidden:
                hidden.append(R + H)
        R = R + drop_path(H, cfg.drop_path_rate, self.training)
        out = self.norm_f(R.to(self.norm_f.weight.dtype))
        if cfg.final_norm_twice:  # quirk 6: AMBAModel applies v.norm_f once more
            out = self.norm_f(out)
        return (out, hidden) if return_hidden else out


# ----------------------------------------------------------------------------------- presets
@register_model
def ssamba_tiny(**kw):
    """SSAMBA-Tiny: D 192, 24 Vim blocks."""
    return build_preset(SSAMBA, "ssamba_tiny", dict(embed_dim=192, depth=24), kw)


@register_model
def ssamba_small(**kw):
    """SSAMBA-Small: D 384, 24 Vim blocks."""
    return build_preset(SSAMBA, "ssamba_small", dict(embed_dim=384, depth=24), kw)


@register_model
def ssamba_base(**kw):
    """SSAMBA-Base: D 768, 24 Vim blocks."""
    return build_preset(SSAMBA, "ssamba_base", dict(embed_dim=768, depth=24), kw)


@register_model
def test_ssamba(**kw):
    """A very small SSAMBA (one bidirectional pair, 128 frames) for fast tests."""
    defaults = dict(embed_dim=64, depth=2, img_size=(128, 128), mask_patch=50)
    return build_preset(SSAMBA, "test_ssamba", defaults, kw)
