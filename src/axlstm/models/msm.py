"""The masked spectrogram model: patch tokens, positions, an encoder stack and a patch head.

One class serves every encoder family (AxLSTM's ViL blocks, the SSAST-style transformer); the
family only decides what the blocks are. Attribute names follow the official checkpoints.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import torch
from torch import nn

from axlstm.audio.features import FrontEndConfig
from axlstm.layers import (
    PatchEmbed,
    TransformerBlock,
    ViLBlock,
    drop_path_rates,
    patchify,
    sincos_pos_embed_2d,
)
from axlstm.layers.mamba import MambaBlock
from axlstm.models.base import EncoderBase
from axlstm.models.config import ModelConfig
from axlstm.models.interface import Reconstruction
from axlstm.models.registry import register_model_class
from axlstm.objectives import random_masking
from axlstm.objectives.msm import msm_loss

logger = logging.getLogger(__name__)


class MSMOutput(NamedTuple):
    """Result of a pretraining forward pass.

    Attributes:
        loss: scalar MSE (scope as configured).
        pred: (B, L, P) predicted patches (cls dropped).
        target: (B, L, P) true patches.
        mask: (B, L) 1 = masked.
        ids_restore: (B, L) or None when the mask was given.
    """

    loss: torch.Tensor
    pred: torch.Tensor
    target: torch.Tensor
    mask: torch.Tensor
    ids_restore: torch.Tensor | None

    def metrics(self) -> dict[str, torch.Tensor]:
        """Scalars logged beside the loss: none for the masked patch MSE."""
        return {}


def build_blocks(cfg: ModelConfig) -> nn.ModuleList:
    """The encoder stack of a family: tokens (B, S, d) in, tokens (B, S, d) out."""
    rates = drop_path_rates(cfg.drop_path_rate, cfg.depth)
    if cfg.family == "axlstm":
        return nn.ModuleList(
            ViLBlock(
                cfg.embed_dim,
                # odd blocks run right-to-left when "bidirectional"
                reverse=bool(i % 2) and cfg.alternation == "bidirectional",
                drop_path=rates[i],
                expansion=cfg.expansion,
                num_heads=cfg.mlstm_heads,
                qkv_block_size=cfg.qkv_block_size,
                conv_kernel_size=cfg.conv_kernel_size,
                backend=cfg.mlstm_backend,
                chunk_size=cfg.mlstm_chunk_size,
                segment_size=cfg.mlstm_segment_size,
            )
            for i in range(cfg.depth)
        )
    if cfg.family == "ssast":
        return nn.ModuleList(
            TransformerBlock(
                cfg.embed_dim, cfg.num_heads, cfg.mlp_ratio, cfg.attn_impl, drop_path=rates[i]
            )
            for i in range(cfg.depth)
        )
    if cfg.family == "ssam":  # unidirectional Mamba: Add -> LayerNorm -> Mixer, no flipping
        return nn.ModuleList(
            MambaBlock(
                cfg.embed_dim,
                n_layer=cfg.depth,
                residual_in_fp32=cfg.residual_in_fp32,
                d_state=cfg.d_state,
                d_conv=cfg.conv_kernel_size,
                expand=cfg.expansion,
                dt_rank=cfg.dt_rank,
                scan_impl=cfg.scan_impl,
                drop_path=rates[i],
            )
            for i in range(cfg.depth)
        )
    raise ValueError(f"unknown model family {cfg.family!r}")


#: Frames per window of the official HEAR runtime (2 s of 10 ms mel frames).
OFFICIAL_WINDOW = 200


@register_model_class
class MaskedSpecModel(EncoderBase):
    """Masked spectrogram model over (B, 1, T, F) log-mel input in (time, frequency) layout.

    Implements :class:`~axlstm.models.interface.Encoder`: output frame t is the n_f frequency
    tokens of time patch t (``frame_span = frame_hop = patch_size[0]`` input frames), the
    official embedding window is 200 frames (2 s), and layers are the blocks.
    """

    release_class = "masked_spec"
    config_class = ModelConfig
    frame_layouts = ("time", "official")

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        d = config.embed_dim
        self.embed_dim = d
        self.patch_embed = PatchEmbed(config.patch_size, config.in_chans, d)
        n_t, n_f = config.grid
        pos = sincos_pos_embed_2d(n_t, n_f, d, cls_token=True)
        self.pos_embed = nn.Parameter(pos[None], requires_grad=False)  # (1, 1 + L, d), fixed
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, d))
        self.blocks = build_blocks(config)
        self.encoder_norm = nn.LayerNorm(d, eps=1e-6)
        self.pred = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, config.patch_dim))
        self._pos_cache: dict[tuple[int, torch.device], torch.Tensor] = {}
        self.init_weights()

    # ----------------------------------------------------------------------------------- set-up
    def init_weights(self) -> None:
        """The official initialisation (SPEC §2-§3); the pred head keeps PyTorch's default."""
        self.patch_embed.reset_parameters()
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)
        for block in self.blocks:
            block.reset_parameters()
        nn.init.ones_(self.encoder_norm.weight)
        nn.init.zeros_(self.encoder_norm.bias)

    # ------------------------------------------------------------------------ interface
    @property
    def frame_span(self) -> int:
        return self.config.patch_size[0]

    @property
    def frame_hop(self) -> int:
        return self.config.patch_size[0]

    @property
    def embed_window(self) -> int:
        return OFFICIAL_WINDOW

    @property
    def supports_streaming(self) -> bool:
        """A causal AxLSTM (``alternation="unidirectional"``) streams."""
        return self.config.family == "axlstm" and self.config.alternation == "unidirectional"

    def num_tokens(self, frames: int) -> int:
        return 1 + (frames // self.config.patch_size[0]) * self.config.grid[1]

    def example_input(self, batch: int = 2, frames: int | None = None) -> torch.Tensor:
        """A random (B, C, T, F) input of the training shape (or ``frames`` long)."""
        frames = self.config.img_size[0] if frames is None else frames
        return torch.randn(batch, self.config.in_chans, frames, self.config.img_size[1])

    def pretrain_shapes(self, frames: int) -> dict:
        """Per-clip shapes of a pretraining step's outputs for ``frames`` input frames."""
        L = (frames // self.config.patch_size[0]) * self.config.grid[1]
        keep = int(L * (100 - self.config.mask_ratio * 100) / 100)
        return {"pred": (L, self.config.patch_dim), "mask": (L,), "num_masked": L - keep}

    @property
    def front_end_config(self) -> FrontEndConfig:
        """The :class:`axlstm.audio.FrontEndConfig` this model expects its log-mel from."""
        return FrontEndConfig.from_dict(dict(self.config.front_end))

    def num_parameters(self, part: str = "encoder") -> int:
        """Parameter count: "encoder" (trainable, without pred head and mask token),
        "trainable", or "all" (every tensor, the frozen position table included)."""
        params = dict(self.named_parameters())
        if part == "all":
            return sum(p.numel() for p in params.values())
        trainable = {k: p for k, p in params.items() if p.requires_grad}
        if part == "trainable":
            return sum(p.numel() for p in trainable.values())
        if part == "encoder":
            return sum(
                p.numel()
                for k, p in trainable.items()
                if not (k.startswith("pred.") or k == "mask_token")
            )
        raise ValueError(f"unknown part {part!r}; use 'encoder', 'trainable' or 'all'")

    # ---------------------------------------------------------------------------------- helpers
    def _check_input(self, spec: torch.Tensor) -> tuple[int, int]:
        if spec.dim() != 4:
            raise ValueError(f"expected a (B, C, T, F) spectrogram, got shape {tuple(spec.shape)}")
        B, C, T, F = spec.shape
        _, n_bins = self.config.img_size
        pt, pf = self.config.patch_size
        if C != self.config.in_chans or F != n_bins:
            raise ValueError(
                f"expected input (B, {self.config.in_chans}, T, {n_bins}) in (time, frequency) "
                f"layout, got {tuple(spec.shape)}"
            )
        if T < pt:
            raise ValueError(f"input has {T} frames, fewer than one patch ({pt} frames)")
        return T // pt, F // pf

    def pos_embed_for(self, n_t: int) -> torch.Tensor:
        """Positions (1, 1 + n_t * n_f, d) for n_t time patches; extends past the training length.

        The sin-cos table depends on the time index alone, so a shorter input takes a prefix of
        the stored table and a longer one gets the same formula evaluated further.
        """
        n_f = self.config.grid[1]
        if n_t <= self.config.grid[0]:
            return self.pos_embed[:, : 1 + n_t * n_f]
        if torch.compiler.is_compiling():
            # in the graph, for any n_t: a cache keyed by the length would fix it (a recompile
            # per length)
            table = sincos_pos_embed_2d(
                n_t, n_f, self.embed_dim, cls_token=True, device=self.pos_embed.device
            )
            return table[None].to(self.pos_embed.dtype)
        key = (n_t, self.pos_embed.device)
        if key not in self._pos_cache:
            table = sincos_pos_embed_2d(n_t, n_f, self.embed_dim, cls_token=True)
            self._pos_cache[key] = table[None].to(self.pos_embed.device)
        return self._pos_cache[key].to(self.pos_embed.dtype)

    def encode(
        self,
        spec: torch.Tensor,
        mask: torch.Tensor | None = None,
        return_hidden: bool = False,
    ):
        """Run the encoder on patch tokens.

        Args:
            spec: (B, 1, T, F) log-mel.
            mask: optional (B, L) with 1 where a patch is replaced by the mask token.
            return_hidden: also return the output of every block.

        Returns:
            tokens (B, 1 + L, d) after ``encoder_norm`` with cls at index 0; with
            ``return_hidden`` also a list of the depth block outputs (B, 1 + L, d), before the norm.
        """
        n_t, _ = self._check_input(spec)
        x = self.patch_embed(spec)  # (B, L, d), time-major
        pos = self.pos_embed_for(n_t)
        if mask is None:
            x = x + pos[:, 1:]
        else:
            m = mask.to(x.dtype)[..., None]  # (B, L, 1)
            if self.config.mask_token_pos:
                x = x * (1 - m) + self.mask_token * m
                x = x + pos[:, 1:]
            else:  # official: positions first, so mask tokens carry none
                x = x + pos[:, 1:]
                x = x * (1 - m) + self.mask_token * m
        cls = (self.cls_token + pos[:, :1]).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1)  # (B, 1 + L, d)
        hidden = []
        for block in self.blocks:
            x = block(x)
            if return_hidden:
                hidden.append(x)
        x = self.encoder_norm(x)
        return (x, hidden) if return_hidden else x

    def tokens_to_frames(
        self, tokens: torch.Tensor, frames: int | None = None, frame_layout: str | None = None
    ) -> torch.Tensor:
        """(B, n_t * n_f, d) patch tokens -> (B, n_t, n_f * d) frames (``frames``, the input
        length, is implied by the tokens).

        "time" groups the n_f frequency tokens of each time step. "official" reproduces the
        official rearrange, which reads the time-major tokens as frequency-major: output frame
        u then holds one frequency band at n_f time steps spread across the input.
        """
        layout = frame_layout or self.config.frame_layout
        B, L, d = tokens.shape
        n_f = self.config.grid[1]
        n_t = L // n_f
        if layout == "time":
            return tokens.reshape(B, n_t, n_f * d)
        if layout == "official":
            return tokens.reshape(B, n_f, n_t, d).transpose(1, 2).reshape(B, n_t, n_f * d)
        raise ValueError(f"unknown frame_layout {layout!r}; use 'time' or 'official'")

    # ---------------------------------------------------------------------------------- public
    def forward(
        self,
        spec: torch.Tensor,
        mask: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> MSMOutput:
        """Masked spectrogram modelling step.

        Args:
            spec: (B, 1, T, F) log-mel crop.
            mask: (B, L) given mask (1 = masked); drawn at ``config.mask_ratio`` otherwise.
            generator: RNG for the mask draw (the default generator otherwise, as officially).
        """
        self._check_input(spec)
        ids_restore = None
        if mask is None:
            draw = self._draw_mask(spec, generator)
            mask, ids_restore = draw.mask, draw.ids_restore
        tokens = self.encode(spec, mask=mask)
        pred = self.pred(tokens[:, 1:])  # (B, L, P)
        target = patchify(spec, self.config.patch_size)
        loss = msm_loss(pred, target, mask, self.config.loss_scope)
        return MSMOutput(loss, pred, target, mask, ids_restore)

    def _draw_mask(self, spec: torch.Tensor, generator: torch.Generator | None):
        n_t, n_f = self._check_input(spec)
        return random_masking(
            spec.shape[0],
            (n_t, n_f),
            self.config.mask_ratio,
            self.config.masking_mode,
            device=spec.device,
            generator=generator,
        )

    def draw_pretrain_mask(
        self, spec: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """The (B, L) mask ``self(spec, generator=generator)`` would draw; ``self(spec, mask)``
        is then that step with the draw outside (how a compiled step runs)."""
        return self._draw_mask(spec, generator).mask

    def reconstruction(
        self, spec: torch.Tensor, generator: torch.Generator | None = None
    ) -> Reconstruction:
        """Predictions for every patch of ``spec`` under a drawn mask."""
        out = self(spec, generator=generator)
        return Reconstruction(out.mask, out.pred, tuple(self.config.patch_size))
