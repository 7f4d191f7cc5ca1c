"""The one typed configuration every masked-spectrogram model is built from."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from axlstm.audio.features import FrontEndConfig
from axlstm.core.config import ConfigBase
from axlstm.core.errors import ConfigError
from axlstm.layers.mlstm import BACKENDS
from axlstm.layers.scan import SCAN_IMPLS
from axlstm.objectives.masking import MASKING_MODES
from axlstm.objectives.msm import LOSS_SCOPES

FAMILIES = ("axlstm", "ssast", "ssam")
FRAME_LAYOUTS = ("time", "official")
ALTERNATIONS = ("bidirectional", "unidirectional")
ATTN_IMPLS = ("sdpa", "eager")


# ------------------------------------------------------------- checks shared by model configs
def int_pair(value: Any) -> Any:
    """A list or tuple of whole numbers as a tuple of ints; anything else as it is (for
    :func:`sizes` to refuse)."""
    if not isinstance(value, (list, tuple)):
        return value
    return tuple(
        int(v)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and float(v).is_integer()
        else v
        for v in value
    )


def positive_int(name: str, value: Any) -> None:
    """``value`` is an integer >= 1, or a :class:`ConfigError` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")


def non_negative_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{name} must be an integer >= 0, got {value!r}")


def check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be true or false, got {value!r}")


def choose(name: str, value: Any, choices: Sequence[str], what: str = "") -> None:
    """``value`` is one of ``choices``; ``what`` names the kind of thing in the message."""
    if value not in choices:
        kind = f"{what} ({name})" if what else name
        raise ConfigError(f"unknown {kind} {value!r}; choose one of {tuple(choices)}")


def sizes(name: str, value: Any) -> None:
    """A (time, frequency) pair of positive integers."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ConfigError(f"{name} must be two positive integers, got {value!r}")
    for v in value:
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"{name} must be two positive integers, got {value!r}")


def in_range(
    name: str,
    value: Any,
    low: float,
    high: float,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    """A finite number in the interval from ``low`` to ``high`` (open ends as flagged)."""
    ok = (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and (value > low if low_open else value >= low)
        and (value < high if high_open else value <= high)
    )
    if not ok:
        where = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ConfigError(f"{name} must be a finite number in {where}, got {value!r}")


def check_dt_rank(value: Any) -> None:
    """Mamba's ``dt_rank``: "auto" or a positive integer."""
    if value != "auto":
        positive_int("dt_rank", value)


def check_front_end(config_class: type, front_end: Any, defaults: Mapping | None = None) -> None:
    """The model's ``front_end`` settings make a valid ``config_class`` (unknown keys and
    impossible values refused), or a :class:`ConfigError` naming ``front_end``."""
    if not isinstance(front_end, Mapping):
        raise ConfigError(f"front_end must be a mapping of front-end fields, got {front_end!r}")
    try:
        config_class.from_dict({**(defaults or {}), **front_end})
    except ConfigError as err:
        raise ConfigError(f"front_end: {err}") from err


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
        drop_path_rate: stochastic depth in training, every family: block ``i`` of ``depth``
            drops its residual branch per sample with probability ``rate * i / (depth - 1)``
            (timm's rule, as Audio-MAE and EAT fine-tune with 0.1). 0 (off) in every official
            recipe; it changes nothing in evaluation.
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
    drop_path_rate: float = 0.0
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
        self.img_size = int_pair(self.img_size)  # JSON gives lists
        self.patch_size = int_pair(self.patch_size)
        self.validate()

    def validate(self) -> None:
        """Refuse impossible values, naming the field: sizes and counts are positive integers,
        the patch fits (and tiles) the crop, the widths split into the heads, ratios lie in
        their ranges, the front end is a valid :class:`axlstm.audio.FrontEndConfig`.

        Raises:
            ConfigError: naming the field and the value.
        """
        choose("family", self.family, FAMILIES)
        choose("frame_layout", self.frame_layout, FRAME_LAYOUTS)
        choose("alternation", self.alternation, ALTERNATIONS)
        choose("mlstm_backend", self.mlstm_backend, BACKENDS, "mLSTM backend")
        choose("scan_impl", self.scan_impl, SCAN_IMPLS, "scan impl")
        choose("attn_impl", self.attn_impl, ATTN_IMPLS)
        choose("masking_mode", self.masking_mode, MASKING_MODES, "masking mode")
        choose("loss_scope", self.loss_scope, LOSS_SCOPES, "loss scope")
        for name in (
            "embed_dim", "depth", "in_chans", "expansion", "mlstm_heads", "qkv_block_size",
            "conv_kernel_size", "d_state", "mlstm_chunk_size", "num_heads",
        ):  # fmt: skip
            positive_int(name, getattr(self, name))
        non_negative_int("mlstm_segment_size", self.mlstm_segment_size)
        check_dt_rank(self.dt_rank)
        check_bool("residual_in_fp32", self.residual_in_fp32)
        check_bool("mask_token_pos", self.mask_token_pos)
        sizes("img_size", self.img_size)
        sizes("patch_size", self.patch_size)
        for s, p in zip(self.img_size, self.patch_size, strict=True):
            if p > s or s % p:
                raise ConfigError(
                    f"img_size {self.img_size} is not a multiple of patch_size {self.patch_size}"
                )
        if self.embed_dim % 4:
            raise ConfigError(f"embed_dim must be divisible by 4, got {self.embed_dim}")
        if self.family == "axlstm":
            inner = self.expansion * self.embed_dim  # the mLSTM width
            for name in ("mlstm_heads", "qkv_block_size"):
                if inner % getattr(self, name):
                    raise ConfigError(
                        f"{name}={getattr(self, name)} does not divide the mLSTM width "
                        f"expansion * embed_dim = {inner}"
                    )
        if self.family == "ssast" and self.embed_dim % self.num_heads:
            raise ConfigError(
                f"embed_dim={self.embed_dim} is not divisible by num_heads={self.num_heads}"
            )
        in_range("drop_path_rate", self.drop_path_rate, 0.0, 1.0, high_open=True)
        in_range("mlp_ratio", self.mlp_ratio, 0.0, math.inf, low_open=True)
        in_range("mask_ratio", self.mask_ratio, 0.0, 1.0, low_open=True, high_open=True)
        check_front_end(FrontEndConfig, self.front_end)

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
