"""The config of the SSAST framework (:mod:`axlstm.models.ssast_framework`): what the original
SSAST and SSAMBA share."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

from axlstm.audio.kaldi import KaldiFbankConfig
from axlstm.core.config import ConfigBase
from axlstm.core.errors import ConfigError
from axlstm.layers.patch import POS_ADAPTS
from axlstm.models.config import (
    ATTN_IMPLS,
    check_bool,
    check_front_end,
    choose,
    in_range,
    int_pair,
    non_negative_int,
    positive_int,
    sizes,
)
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
        self.img_size = int_pair(self.img_size)  # JSON gives lists
        self.patch_size = int_pair(self.patch_size)
        if self.patch_stride is not None:
            self.patch_stride = int_pair(self.patch_stride)
        self.validate()

    def validate(self) -> None:
        """Refuse impossible values, naming the field: sizes and counts are positive integers,
        the patch fits the input, the width splits into the heads (when the encoder has
        ``num_heads``), the front end is a valid :class:`axlstm.audio.kaldi.KaldiFbankConfig`.

        Raises:
            ConfigError: naming the field and the value.
        """
        if self.family != self.FAMILY:
            raise ConfigError(
                f"{type(self).__name__} is family {self.FAMILY!r}, not {self.family!r}"
            )
        choose("masking", self.masking, MASKINGS)
        choose("nce_direction", self.nce_direction, NCE_DIRECTIONS)
        choose("pos_adapt", self.pos_adapt, POS_ADAPTS)
        if self.joint_passes not in (1, 2) or isinstance(self.joint_passes, bool):
            raise ConfigError(f"joint_passes must be 1 or 2, got {self.joint_passes!r}")
        if self.frame_layout != "time":
            raise ConfigError(
                f"{type(self).__name__} supports frame_layout 'time' only, "
                f"got {self.frame_layout!r}"
            )
        if self.num_cls_tokens not in (1, 2) or isinstance(self.num_cls_tokens, bool):
            raise ConfigError(f"num_cls_tokens must be 1 or 2, got {self.num_cls_tokens!r}")
        positive_int("embed_dim", self.embed_dim)
        positive_int("depth", self.depth)
        positive_int("mask_patch", self.mask_patch)
        non_negative_int("num_classes", self.num_classes)
        check_bool("keep_unused_heads", self.keep_unused_heads)
        check_bool("ssl_heads", self.ssl_heads)
        sizes("img_size", self.img_size)
        sizes("patch_size", self.patch_size)
        if self.patch_stride is not None:
            sizes("patch_stride", self.patch_stride)
        for s, p in zip(self.img_size, self.patch_size, strict=True):
            if s < p:
                raise ConfigError(
                    f"img_size {self.img_size} is smaller than the patch {self.patch_size}"
                )
        in_range("mpc_weight", self.mpc_weight, 0.0, math.inf, high_open=True)
        in_range("mpg_weight", self.mpg_weight, 0.0, math.inf, high_open=True)
        heads = getattr(self, "num_heads", None)  # the attention encoders' (the original SSAST)
        if heads is not None:
            positive_int("num_heads", heads)
            if self.embed_dim % heads:
                raise ConfigError(
                    f"embed_dim={self.embed_dim} is not divisible by num_heads={heads}"
                )
        if hasattr(self, "mlp_ratio"):
            in_range("mlp_ratio", self.mlp_ratio, 0.0, math.inf, low_open=True, high_open=True)
        if hasattr(self, "attn_impl"):
            choose("attn_impl", self.attn_impl, ATTN_IMPLS)
        # the fbank's length and bins default to the model's input, as front_end_config says
        fbank = {"target_length": self.img_size[0], "n_mels": self.img_size[1]}
        check_front_end(KaldiFbankConfig, self.front_end, fbank)

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
