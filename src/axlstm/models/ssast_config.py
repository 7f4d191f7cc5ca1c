"""The config of the SSAST framework (:mod:`axlstm.models.ssast_framework`): what the original
SSAST and SSAMBA share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from axlstm.core.config import ConfigBase
from axlstm.core.errors import ConfigError
from axlstm.layers.patch import POS_ADAPTS
from axlstm.objectives.ssast import MASKINGS, NCE_DIRECTIONS

__all__ = ["SSASTFrameworkConfig"]


# ------------------------------------------------------------------------------------ config
@dataclass
class SSASTFrameworkConfig(ConfigBase):
    """What the original SSAST and SSAMBA share: tokens, positions, masks and objective.

    Sizes are given in axlstm's (time, frequency) order.

    Attributes:
        family: "ssast_orig" or "ssamba" (set by the subclass).
        embed_dim: token width D.
        depth: encoder blocks.
        img_size: (frames, mel bins) the positional table is sized for (1024, 128).
        patch_size: (time, frequency) patch: (16, 16) "patch" or (2, 128) "frame" models.
        patch_stride: (time, frequency) stride; None is ``patch_size`` (pretraining never
            overlaps; fine-tuning uses (10, 10) or (1, 128)).
        num_cls_tokens: tokens in front of the patches: 2 (cls, dist) for SSAST, 1 for SSAMBA.
        masking: "cluster" (official for patch models), "random" (official for frame models) or
            "block" (uniform block masking, the corrected option).
        mask_patch: patches masked per clip at the ``img_size`` geometry (400 of 512); other
            lengths mask the same fraction.
        nce_direction: "code" (official) or "paper" InfoNCE normalisation (§A6).
        joint_passes: 2 = MPC and MPG from separate passes with independent masks (official);
            1 = one pass, one shared mask.
        mpc_weight, mpg_weight: L = mpc_weight L_d + mpg_weight L_g (1 and 10).
        pos_adapt: resizing the positional table for another geometry: "official" (crop or
            bilinear, time first through a hard-coded 8-row grid) or "general".
        keep_unused_heads: keep the unused timm classification heads (Linear(D, 1000) per cls
            token) as parameters, for an exact official state dict; they get no gradient.
        num_classes: size of the fine-tuning head ``mlp_head`` = LayerNorm -> Linear (0: none).
        ssl_heads: have the pretraining parts (``mask_embed``, MPC and MPG heads); official
            fine-tuned checkpoints do not.
        frame_layout: frame order of ``forward_features``; only "time" (each output frame holds
            the frequency patches of one time step).
        front_end: Kaldi fbank settings that differ from the defaults (fields of
            :class:`axlstm.audio.kaldi.KaldiFbankConfig`); the target length defaults to
            ``img_size[0]``.
        name: preset this config came from.
        extra: free-form provenance.
    """

    family: str = "ssast_orig"
    embed_dim: int = 768
    depth: int = 12
    img_size: tuple[int, int] = (1024, 128)
    patch_size: tuple[int, int] = (16, 16)
    patch_stride: tuple[int, int] | None = None
    num_cls_tokens: int = 2
    masking: str = "cluster"
    mask_patch: int = 400
    nce_direction: str = "code"
    joint_passes: int = 2
    mpc_weight: float = 1.0
    mpg_weight: float = 10.0
    pos_adapt: str = "official"
    keep_unused_heads: bool = False
    num_classes: int = 0
    ssl_heads: bool = True
    frame_layout: str = "time"
    front_end: dict[str, Any] = field(default_factory=dict)
    name: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    FAMILY: ClassVar[str] = "ssast_orig"
    CONFIG_LABEL: ClassVar[str] = "model config"

    def __post_init__(self) -> None:
        self.img_size = tuple(int(v) for v in self.img_size)  # JSON gives lists
        self.patch_size = tuple(int(v) for v in self.patch_size)
        if self.patch_stride is not None:
            self.patch_stride = tuple(int(v) for v in self.patch_stride)
        if self.family != self.FAMILY:
            raise ConfigError(
                f"{type(self).__name__} is family {self.FAMILY!r}, not {self.family!r}"
            )
        if self.masking not in MASKINGS:
            raise ConfigError(f"unknown masking {self.masking!r}; choose one of {MASKINGS}")
        if self.nce_direction not in NCE_DIRECTIONS:
            raise ConfigError(
                f"unknown nce_direction {self.nce_direction!r}; use 'code' or 'paper'"
            )
        if self.pos_adapt not in POS_ADAPTS:
            raise ConfigError(f"unknown pos_adapt {self.pos_adapt!r}; choose one of {POS_ADAPTS}")
        if self.joint_passes not in (1, 2):
            raise ConfigError(f"joint_passes must be 1 or 2, got {self.joint_passes}")
        if self.frame_layout != "time":
            raise ConfigError(f"{type(self).__name__} supports frame_layout 'time' only")
        if self.num_cls_tokens not in (1, 2):
            raise ConfigError(f"num_cls_tokens must be 1 or 2, got {self.num_cls_tokens}")
        for s, p, st in zip(self.img_size, self.patch_size, self.stride, strict=True):
            if s < p or st <= 0:
                raise ConfigError(
                    f"img_size {self.img_size} is smaller than the patch {self.patch_size} "
                    f"or the stride {self.stride} is not positive"
                )

    @property
    def stride(self) -> tuple[int, int]:
        return self.patch_stride if self.patch_stride is not None else self.patch_size

    @property
    def grid(self) -> tuple[int, int]:
        """(n_t, n_f) patches along time and frequency at ``img_size``, as ModelConfig.grid."""
        return tuple(
            (s - p) // st + 1
            for s, p, st in zip(self.img_size, self.patch_size, self.stride, strict=True)
        )

    @property
    def num_patches(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def patch_dim(self) -> int:
        return self.patch_size[0] * self.patch_size[1]

    @property
    def frame_dim(self) -> int:
        """Width of one output frame: the n_f frequency patches of a time step, concatenated."""
        return self.grid[1] * self.embed_dim
