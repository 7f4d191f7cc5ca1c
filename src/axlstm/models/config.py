"""The one typed configuration every masked-spectrogram model is built from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from axlstm.core.config import ConfigBase
from axlstm.core.errors import ConfigError

FAMILIES = ("axlstm", "ssast", "ssam")
FRAME_LAYOUTS = ("time", "official")
ALTERNATIONS = ("bidirectional", "unidirectional")


@dataclass
class ModelConfig(ConfigBase):
    """Architecture and objective of a masked spectrogram model.

    Attributes:
        family: encoder block family: "axlstm" (bidirectional ViL/mLSTM), "ssast" (transformer)
            or "ssam" (unidirectional Mamba, SPEC §10).
        embed_dim: token width d.
        depth: number of encoder blocks.
        img_size: (frames, mel bins) of one training crop; positions extend past it.
        patch_size: (time, frequency) patch size.
        in_chans: input channels of the spectrogram.
        expansion: inner width factor: mLSTM (axlstm), Mamba ``expand`` (ssam, 3 in the presets).
        mlstm_heads: mLSTM heads (axlstm; the official code always uses 4).
        qkv_block_size: block size of the head-wise q/k/v projections (axlstm).
        conv_kernel_size: causal conv kernel (axlstm; Mamba ``d_conv`` for ssam).
        d_state: Mamba state size per channel (ssam).
        dt_rank: Mamba step-size projection rank (ssam); "auto" is ceil(embed_dim / 16).
        scan_impl: Mamba selective scan (ssam): "auto", "sequential", "chunked" or "cuda"
            (see :func:`axlstm.layers.scan.selective_scan`).
        residual_in_fp32: keep the residual stream in fp32 under autocast (ssam).
        mlstm_backend: how the mLSTM is computed: "auto" (fastest form for the length),
            "parallel" (quadratic, as the official code), "chunkwise" (linear) or "recurrent".
        mlstm_chunk_size: chunk length of the chunkwise form.
        mlstm_segment_size: sequences longer than this many tokens go through each ViL layer
            segment by segment with carried state (exact; bounds the layer's working memory and
            keeps it in cache, which makes long inputs linear in cost); 0 disables.
        alternation: "bidirectional" (odd blocks run right-to-left, as AxLSTM) or
            "unidirectional" (every block runs forward in time: causal, so it can stream).
        num_heads: attention heads (ssast).
        mlp_ratio: MLP hidden width factor (ssast).
        attn_impl: "sdpa" (fused) or "eager" attention (ssast).
        mask_ratio: fraction of patches masked in pretraining.
        masking_mode: "unstructured" or "timestep".
        loss_scope: "all" patches (the official recipe) or "masked" patches only.
        mask_token_pos: give mask tokens their positional embedding (the default, as in the
            original SSAST). False reproduces the official AxLSTM wrapper, which adds positions
            before masking so every mask token is identical (SPEC §4, §9.2).
        frame_layout: "time" returns frames in true time order; "official" reproduces the
            official 'b (f t) d -> b t (f d)' rearrange (SPEC §6.1) for bit-exact comparisons.
        front_end: log-mel front-end settings that differ from the AxLSTM defaults (fields of
            :class:`axlstm.audio.FrontEndConfig`), e.g. fixed normalisation statistics.
        name: preset this config came from, for provenance.
    """

    family: str = "axlstm"
    embed_dim: int = 192
    depth: int = 12
    img_size: tuple[int, int] = (200, 80)
    patch_size: tuple[int, int] = (4, 16)
    in_chans: int = 1
    expansion: int = 2
    mlstm_heads: int = 4
    qkv_block_size: int = 4
    conv_kernel_size: int = 4
    d_state: int = 24
    dt_rank: int | str = "auto"
    scan_impl: str = "auto"
    residual_in_fp32: bool = True
    mlstm_backend: str = "auto"
    mlstm_chunk_size: int = 64
    mlstm_segment_size: int = 1024
    alternation: str = "bidirectional"
    num_heads: int = 3
    mlp_ratio: float = 4.0
    attn_impl: str = "sdpa"
    mask_ratio: float = 0.5
    masking_mode: str = "unstructured"
    loss_scope: str = "all"
    mask_token_pos: bool = True
    frame_layout: str = "time"
    front_end: dict[str, Any] = field(default_factory=dict)
    name: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    CONFIG_LABEL: ClassVar[str] = "model config"

    def __post_init__(self) -> None:
        self.img_size = tuple(int(v) for v in self.img_size)  # JSON gives lists
        self.patch_size = tuple(int(v) for v in self.patch_size)
        if self.family not in FAMILIES:
            raise ConfigError(f"unknown model family {self.family!r}; choose one of {FAMILIES}")
        if self.frame_layout not in FRAME_LAYOUTS:
            raise ConfigError(
                f"unknown frame_layout {self.frame_layout!r}; choose one of {FRAME_LAYOUTS}"
            )
        for s, p in zip(self.img_size, self.patch_size, strict=True):
            if s % p:
                raise ConfigError(
                    f"img_size {self.img_size} is not a multiple of {self.patch_size}"
                )
        if self.alternation not in ALTERNATIONS:
            raise ConfigError(
                f"unknown alternation {self.alternation!r}; choose one of {ALTERNATIONS}"
            )
        if self.embed_dim % 4:
            raise ConfigError(f"embed_dim must be divisible by 4, got {self.embed_dim}")

    @property
    def grid(self) -> tuple[int, int]:
        return self.img_size[0] // self.patch_size[0], self.img_size[1] // self.patch_size[1]

    @property
    def num_patches(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def patch_dim(self) -> int:
        return self.patch_size[0] * self.patch_size[1] * self.in_chans

    @property
    def frame_dim(self) -> int:
        """Width of one output frame: the n_f frequency tokens of a time step concatenated."""
        return self.grid[1] * self.embed_dim
