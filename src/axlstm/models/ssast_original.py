"""The original SSAST (Gong et al.) and the framework SSAMBA shares with it.

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

The encoder is a pre-norm ViT/DeiT stack (timm 0.4.5 block, LayerNorm eps 1e-6). Official
checkpoints load through :func:`axlstm.load_official` (``remap_official``), official
fine-tuning geometries (overlapping patches, other lengths) through :meth:`SSASTFramework.adapt`.

Input layout: ``(B, 1, T, F)`` (time, frequency) like every axlstm model; ``(B, T, F)`` (the
official layout) is accepted too. F must be the configured number of mel bins (128).

References:
    1. Gong et al., "SSAST: Self-Supervised Audio Spectrogram Transformer", AAAI 2022
       (arXiv 2110.09784).
"""

from __future__ import annotations

import dataclasses
import logging
import random
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from axlstm.layers.attention import TransformerBlock
from axlstm.models.registry import register_model
from axlstm.objectives.ssast import (
    MASKINGS,
    NCE_DIRECTIONS,
    draw_mask_index,
    mpc_loss,
    mpg_loss,
)

logger = logging.getLogger(__name__)

POS_ADAPTS = ("official", "general")
POOLS = ("mean", "cls")


# ------------------------------------------------------------------------------------ config
@dataclass
class SSASTFrameworkConfig:
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

    def __post_init__(self) -> None:
        self.img_size = tuple(int(v) for v in self.img_size)  # JSON gives lists
        self.patch_size = tuple(int(v) for v in self.patch_size)
        if self.patch_stride is not None:
            self.patch_stride = tuple(int(v) for v in self.patch_stride)
        if self.family != self.FAMILY:
            raise ValueError(
                f"{type(self).__name__} is family {self.FAMILY!r}, not {self.family!r}"
            )
        if self.masking not in MASKINGS:
            raise ValueError(f"unknown masking {self.masking!r}; choose one of {MASKINGS}")
        if self.nce_direction not in NCE_DIRECTIONS:
            raise ValueError(f"unknown nce_direction {self.nce_direction!r}; use 'code' or 'paper'")
        if self.pos_adapt not in POS_ADAPTS:
            raise ValueError(f"unknown pos_adapt {self.pos_adapt!r}; choose one of {POS_ADAPTS}")
        if self.joint_passes not in (1, 2):
            raise ValueError(f"joint_passes must be 1 or 2, got {self.joint_passes}")
        if self.frame_layout != "time":
            raise ValueError(f"{type(self).__name__} supports frame_layout 'time' only")
        if self.num_cls_tokens not in (1, 2):
            raise ValueError(f"num_cls_tokens must be 1 or 2, got {self.num_cls_tokens}")
        for s, p, st in zip(self.img_size, self.patch_size, self.stride, strict=True):
            if s < p or st <= 0:
                raise ValueError(
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

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["img_size"] = list(self.img_size)
        d["patch_size"] = list(self.patch_size)
        if self.patch_stride is not None:
            d["patch_stride"] = list(self.patch_stride)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown model config keys {unknown}; known keys: {sorted(known)}")
        return cls(**d)

    def replace(self, **changes: Any):
        return type(self).from_dict({**self.to_dict(), **changes})


@dataclass
class SSASTOrigConfig(SSASTFrameworkConfig):
    """The original SSAST: a DeiT encoder (pre-norm, LayerNorm eps 1e-6, exact GELU).

    Attributes:
        num_heads: attention heads (head width 64 in the official sizes).
        mlp_ratio: MLP hidden width factor.
        attn_impl: "sdpa" (fused) or "eager" attention.
    """

    num_heads: int = 12
    mlp_ratio: float = 4.0
    attn_impl: str = "sdpa"


# ------------------------------------------------------------------------------------ output
class SSASTOutput(NamedTuple):
    """Result of a joint pretraining step.

    ``pred``/``target``/``mask`` are those of the generative (MPG) pass, so the fields shared
    with :class:`axlstm.models.MSMOutput` mean "predicted patches, their targets, the mask".
    Predictions exist for the masked patches only, in mask order, in the official patch layout
    (frequency-major patch ids; inside a patch the values are ordered (Δf, Δt)).

    Attributes:
        loss: mpc_weight · nce + mpg_weight · mse.
        nce: InfoNCE of the MPC pass (fp32).
        mse: MSE of the MPG pass (fp32).
        acc: the official MPC accuracy (no gradient).
        pred: (B, M, P) MPG predictions.
        target: (B, M, P) their true patches.
        mask: (B, N) 1 = masked in the MPG pass.
        mask_index: (B, M) patch ids of the MPG pass, the row order of ``pred``.
        pred_c: (B, M, P) MPC predictions.
        target_c: (B, M, P) their true patches.
        mask_index_c: (B, M) patch ids of the MPC pass (== ``mask_index`` with one pass).
    """

    loss: torch.Tensor
    nce: torch.Tensor
    mse: torch.Tensor
    acc: torch.Tensor
    pred: torch.Tensor
    target: torch.Tensor
    mask: torch.Tensor
    mask_index: torch.Tensor
    pred_c: torch.Tensor
    target_c: torch.Tensor
    mask_index_c: torch.Tensor

    def metrics(self) -> dict[str, float]:
        """Scalars worth logging."""
        return {k: float(getattr(self, k).detach()) for k in ("loss", "nce", "mse", "acc")}


class HeadOutput(NamedTuple):
    """One head on one pass: loss, (accuracy), predictions, targets, masked ids, tokens."""

    loss: torch.Tensor
    acc: torch.Tensor | None
    pred: torch.Tensor
    target: torch.Tensor
    mask_index: torch.Tensor
    tokens: torch.Tensor


# --------------------------------------------------------------------------------- helpers
class SpecPatchEmbed(nn.Module):
    """``Conv2d(1, D, (f, t), stride)`` on the (B, 1, F, T) image; the official weight layout."""

    def __init__(self, embed_dim: int, patch_ft: tuple[int, int], stride_ft: tuple[int, int]):
        super().__init__()
        self.proj = nn.Conv2d(1, embed_dim, kernel_size=patch_ft, stride=stride_ft)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, F' T', D), frequency-major


def adapt_pos_grid(
    pos: torch.Tensor, size: tuple[int, int], mode: str = "official"
) -> torch.Tensor:
    """Resize a patch positional grid (1, D, F0, T0) to (1, D, F1, T1) as SSAST's fine-tuning does.

    Time first: a centre crop when shorter, else bilinear interpolation to (8, T1) ("official",
    the hard-coded 8 rows; a lossless detour for the 1-row frame models) or (F0, T1)
    ("general"). Then frequency: a centre crop when fewer rows, else bilinear to (F1, T1).
    The official frequency crop ends its slice at ``start + T1`` (a bug that is unreachable for
    128 mel bins); "official" reproduces it and fails where the official code would.
    """
    if mode not in POS_ADAPTS:
        raise ValueError(f"unknown pos_adapt {mode!r}; choose one of {POS_ADAPTS}")
    f0, t0 = pos.shape[-2:]
    f1, t1 = size
    if (f0, t0) == (f1, t1):
        return pos
    if t1 < t0:
        start = t0 // 2 - t1 // 2
        pos = pos[..., start : start + t1]
    else:
        rows = 8 if mode == "official" else f0
        pos = F.interpolate(pos, size=(rows, t1), mode="bilinear")
    if f1 < f0:  # the official code compares with (and centres on) the pretraining rows
        start = f0 // 2 - f1 // 2
        pos = pos[..., start : start + (t1 if mode == "official" else f1), :]
        if pos.shape[-2] != f1:
            raise ValueError(
                "the official positional-embedding crop keeps t_dim frequency rows here and "
                "fails; use pos_adapt='general'"
            )
    else:
        pos = F.interpolate(pos, size=(f1, t1), mode="bilinear")
    return pos


def _drop_heads_count(config: SSASTFrameworkConfig) -> int:
    """Parameters of the unused official classification heads (Linear(D, 1000) per cls token)."""
    return config.num_cls_tokens * (1000 * config.embed_dim + 1000)


# ----------------------------------------------------------------------------------- model
class SSASTFramework(nn.Module):
    """Patch tokens, masking, MPC/MPG heads and pooling shared by SSAST and SSAMBA.

    Subclasses build the encoder (:meth:`build_encoder`) and run it (:meth:`run_encoder`).

    Token layout everywhere outside the encoder: ``[cls (, dist), p_0 … p_{N-1}]`` with patch ids
    frequency-major (``p = f * T' + t``).
    """

    config_class: ClassVar[type] = SSASTFrameworkConfig
    release_class: ClassVar[str] = ""

    def __init__(self, config: SSASTFrameworkConfig) -> None:
        super().__init__()
        self.config = config
        D = config.embed_dim
        self.embed_dim = D
        n_cls = config.num_cls_tokens
        pt, pf = config.patch_size
        st, sf = config.stride
        self.patch_embed = SpecPatchEmbed(D, (pf, pt), (sf, st))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D))
        if n_cls == 2:
            self.dist_token = nn.Parameter(torch.zeros(1, 1, D))
        self.pos_embed = nn.Parameter(torch.zeros(1, n_cls + config.num_patches, D))
        self.build_encoder()
        if config.ssl_heads:
            P = config.patch_dim
            self.mask_embed = nn.Parameter(torch.zeros(1, 1, D))
            self.mpc_head = nn.Sequential(nn.Linear(D, D), nn.ReLU(), nn.Linear(D, P))
            self.mpg_head = nn.Sequential(nn.Linear(D, D), nn.ReLU(), nn.Linear(D, P))
        if config.keep_unused_heads:
            self.head = nn.Linear(D, 1000)
            if n_cls == 2:
                self.head_dist = nn.Linear(D, 1000)
        if config.num_classes:
            self.mlp_head = nn.Sequential(nn.LayerNorm(D), nn.Linear(D, config.num_classes))
        self.init_weights()

    # ---------------------------------------------------------------------- to override
    def build_encoder(self) -> None:
        raise NotImplementedError

    def init_encoder(self) -> None:
        raise NotImplementedError

    def run_encoder(self, x: torch.Tensor, return_hidden: bool = False):
        """(B, S, D) tokens in encoder order -> final tokens (and per-layer hidden states)."""
        raise NotImplementedError

    def encoder_order(self, n_patches: int) -> torch.Tensor | None:
        """Permutation from the canonical [cls…, patches] order to the encoder's (None: same)."""
        return None

    @property
    def num_layers(self) -> int:
        """Number of hidden states ``encode(..., return_hidden=True)`` returns."""
        return self.config.depth

    # ----------------------------------------------------------------------------- init
    def init_weights(self) -> None:
        """The official initialisation (SPEC-SSAST-SSAMBA §A4, §B6)."""
        self.patch_embed.proj.reset_parameters()  # PyTorch default: SSAST replaces the conv
        for p in (self.cls_token, self.pos_embed, getattr(self, "dist_token", None)):
            if p is not None:
                nn.init.trunc_normal_(p, std=0.02)
        self.init_encoder()
        if self.config.ssl_heads:
            nn.init.xavier_normal_(self.mask_embed)
            for head in (self.mpc_head, self.mpg_head):
                for m in head:
                    if isinstance(m, nn.Linear):
                        m.reset_parameters()
        for name in ("head", "head_dist"):
            if hasattr(self, name):
                nn.init.trunc_normal_(getattr(self, name).weight, std=0.02)
                nn.init.zeros_(getattr(self, name).bias)
        if hasattr(self, "mlp_head"):
            self.mlp_head[0].reset_parameters()
            self.mlp_head[1].reset_parameters()

    # ------------------------------------------------------------------------ geometry
    @property
    def frame_dim(self) -> int:
        return self.config.frame_dim

    @property
    def front_end_config(self):
        """The :class:`axlstm.audio.kaldi.KaldiFbankConfig` this model expects its input from."""
        from axlstm.audio.kaldi import KaldiFbankConfig

        cfg = {"target_length": self.config.img_size[0], "n_mels": self.config.img_size[1]}
        return KaldiFbankConfig.from_dict({**cfg, **self.config.front_end})

    def grid_for(self, frames: int) -> tuple[int, int]:
        """(F', T') patch grid of an input of ``frames`` frames (frequency rows, time columns)."""
        pt, pf = self.config.patch_size
        st, sf = self.config.stride
        n_bins = self.config.img_size[1]
        if frames < pt:
            raise ValueError(f"input has {frames} frames, fewer than one patch ({pt} frames)")
        return (n_bins - pf) // sf + 1, (frames - pt) // st + 1

    def frames_for(self, frames: int) -> int:
        """Output frames of :meth:`forward_features` for ``frames`` input frames."""
        return self.grid_for(frames)[1]

    def num_masked(self, num_patches: int) -> int:
        """Patches masked per clip: ``mask_patch`` at the configured geometry, else the same
        fraction of ``num_patches``."""
        if num_patches == self.config.num_patches:
            return self.config.mask_patch
        return max(1, round(self.config.mask_patch * num_patches / self.config.num_patches))

    def example_input(self, batch: int = 2, frames: int = 128) -> torch.Tensor:
        """A short valid input (B, 1, frames, n_bins) for tests: 128 frames give 64 patches."""
        return torch.randn(batch, 1, frames, self.config.img_size[1])

    def pretrain_shapes(self, frames: int) -> dict[str, Any]:
        """Shapes of ``model(spec)`` for ``frames`` input frames: pred/target rows are the M
        masked patches of each clip; mask has one entry per patch."""
        n_f, n_t = self.grid_for(frames)
        n = n_f * n_t
        m = self.num_masked(n)
        return {"pred": (m, self.config.patch_dim), "mask": (n,), "num_masked": m}

    def _to_image(self, spec: torch.Tensor) -> torch.Tensor:
        """(B, 1, T, F) or the official (B, T, F) -> the (B, 1, F, T) image the conv runs on."""
        if spec.dim() == 3:
            spec = spec.unsqueeze(1)
        n_bins = self.config.img_size[1]
        if spec.dim() != 4 or spec.shape[1] != 1 or spec.shape[-1] != n_bins:
            raise ValueError(
                f"expected a (B, 1, T, {n_bins}) fbank in (time, frequency) layout, "
                f"got shape {tuple(spec.shape)}"
            )
        self.grid_for(spec.shape[2])  # raises on too few frames
        return spec.transpose(2, 3)

    def pos_embed_for(self, grid: tuple[int, int]) -> torch.Tensor:
        """Positions (1, n_cls + F' T', D) for a patch grid; other grids adapt the table."""
        n_cls = self.config.num_cls_tokens
        n_t, n_f = self.config.grid
        if grid == (n_f, n_t):
            return self.pos_embed
        D = self.embed_dim
        table = self.pos_embed[:, n_cls:].transpose(1, 2).reshape(1, D, n_f, n_t)
        table = adapt_pos_grid(table, grid, self.config.pos_adapt)
        return torch.cat([self.pos_embed[:, :n_cls], table.flatten(2).transpose(1, 2)], dim=1)

    def patches(self, spec: torch.Tensor) -> torch.Tensor:
        """(B, N, P) input patches in token order, values (Δf, Δt) row-major (``nn.Unfold``)."""
        image = self._to_image(spec)
        pt, pf = self.config.patch_size
        st, sf = self.config.stride
        return F.unfold(image, kernel_size=(pf, pt), stride=(sf, st)).transpose(1, 2)

    # ------------------------------------------------------------------------- encoder
    def embed_tokens(
        self, spec: torch.Tensor, mask_index: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Patch embeddings, masked patches replaced by ``mask_embed``, tokens prepended,
        positions added: (B, n_cls + N, D) in canonical order."""
        image = self._to_image(spec)
        grid = self.grid_for(image.shape[-1])
        x = self.patch_embed(image)  # (B, N, D)
        B, N, _ = x.shape
        if mask_index is not None:
            self._need_ssl_heads()
            masked = torch.zeros(B, N, dtype=torch.bool, device=x.device)
            masked.scatter_(1, mask_index.to(x.device), True)
            x = torch.where(masked.unsqueeze(-1), self.mask_embed.to(x.dtype), x)
        tokens = [self.cls_token.expand(B, -1, -1)]
        if self.config.num_cls_tokens == 2:
            tokens.append(self.dist_token.expand(B, -1, -1))
        x = torch.cat([*tokens, x], dim=1)
        return x + self.pos_embed_for(grid)

    def encode(
        self,
        spec: torch.Tensor,
        mask_index: torch.Tensor | None = None,
        return_hidden: bool = False,
    ):
        """Run the encoder.

        Args:
            spec: (B, 1, T, F) normalised fbank.
            mask_index: optional (B, M) patch ids replaced by the mask embedding.
            return_hidden: also return every layer's hidden state.

        Returns:
            tokens (B, n_cls + N, D) after the final norm, canonical order ``[cls (, dist),
            patches]``; with ``return_hidden`` also a list of :attr:`num_layers` hidden states
            (B, n_cls + N, D) before the final norm.
        """
        x = self.embed_tokens(spec, mask_index)
        order = self.encoder_order(x.shape[1] - self.config.num_cls_tokens)
        if order is not None:
            x = x[:, order.to(x.device)]
        out = self.run_encoder(x, return_hidden)
        tokens, hidden = out if return_hidden else (out, None)
        if order is not None:
            inverse = torch.argsort(order).to(x.device)
            tokens = tokens[:, inverse]
            hidden = None if hidden is None else [h[:, inverse] for h in hidden]
        return (tokens, hidden) if return_hidden else tokens

    def tokens_to_frames(self, tokens: torch.Tensor, frames: int) -> torch.Tensor:
        """(B, F' T', D) frequency-major patch tokens -> (B, T', F' D) frames.

        Output frame t holds the F' frequency patches of time step t, lowest band first.
        """
        n_f, n_t = self.grid_for(frames)
        B, _, D = tokens.shape
        return tokens.reshape(B, n_f, n_t, D).transpose(1, 2).reshape(B, n_t, n_f * D)

    def forward_features(
        self, spec: torch.Tensor, frame_layout: str | None = None, layer: int | None = None
    ) -> torch.Tensor:
        """Frame features of a normalised fbank.

        Args:
            spec: (B, 1, T, F) normalised Kaldi fbank (or the official (B, T, F)).
            frame_layout: only "time" (or None).
            layer: take this hidden state (0-based, negatives from the end) instead of the
                final normalised output; see :attr:`num_layers`.

        Returns:
            (B, T', F' D) frames, T' = :meth:`frames_for` (T): frame t concatenates the F'
            frequency patches of time step t (lowest band first); cls/dist are dropped.
        """
        if frame_layout not in (None, "time"):
            raise ValueError(f"{type(self).__name__} supports frame_layout 'time' only")
        frames = spec.shape[-2]
        if layer is None:
            tokens = self.encode(spec)
        else:
            _, hidden = self.encode(spec, return_hidden=True)
            tokens = hidden[layer]
        return self.tokens_to_frames(tokens[:, self.config.num_cls_tokens :], frames)

    def pooled(self, spec: torch.Tensor, pool: str = "mean") -> torch.Tensor:
        """Clip embedding (B, D): "mean" over the patch tokens (official ``ft_avgtok``) or
        "cls", the mean of the cls (and dist) outputs (``ft_cls``)."""
        if pool not in POOLS:
            raise ValueError(f"unknown pool {pool!r}; use 'mean' or 'cls'")
        tokens = self.encode(spec)
        n_cls = self.config.num_cls_tokens
        if pool == "mean":
            return tokens[:, n_cls:].mean(dim=1)
        return tokens[:, :n_cls].mean(dim=1)

    def classify(self, spec: torch.Tensor, pool: str = "mean") -> torch.Tensor:
        """Fine-tuning logits (B, num_classes) from ``mlp_head`` on :meth:`pooled`."""
        if not hasattr(self, "mlp_head"):
            raise ValueError("this model has no classification head (config.num_classes is 0)")
        return self.mlp_head(self.pooled(spec, pool))

    # --------------------------------------------------------------------- objective
    def _need_ssl_heads(self) -> None:
        if not self.config.ssl_heads:
            raise ValueError(
                "this model has no pretraining heads (config.ssl_heads is False, e.g. an "
                "official fine-tuned checkpoint)"
            )

    def draw_mask_index(
        self,
        spec: torch.Tensor,
        rng: random.Random | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """(B, M) masked patch ids for a batch, one clip after the other.

        Args:
            rng: a ``random.Random``; when neither it nor ``generator`` is given, Python's
                global ``random`` state is used, so ``random.seed(s)`` reproduces the official
                masks.
            generator: a torch generator to derive a ``random.Random`` from (reproducible
                training).
        """
        if self.config.stride != self.config.patch_size:
            raise ValueError(
                "masked pretraining needs non-overlapping patches (patch_stride == patch_size), "
                f"got patch {self.config.patch_size} and stride {self.config.stride}"
            )
        if rng is None and generator is not None:
            seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
            rng = random.Random(seed)
        grid = self.grid_for(spec.shape[-2])
        m = self.num_masked(grid[0] * grid[1])
        return draw_mask_index(
            spec.shape[0], grid, m, self.config.masking, rng=rng, device=spec.device
        )

    def _masked_outputs(self, spec, tokens, mask_index):
        """Encoder outputs at the masked patches and their true patches, each (B, M, ·)."""
        idx = mask_index.to(tokens.device)
        picked = torch.gather(
            tokens,
            1,
            (idx + self.config.num_cls_tokens).unsqueeze(-1).expand(-1, -1, self.embed_dim),
        )
        target = torch.gather(
            self.patches(spec).detach(), 1, idx.unsqueeze(-1).expand(-1, -1, self.config.patch_dim)
        )
        return picked, target

    def mpc(self, spec: torch.Tensor, mask_index: torch.Tensor) -> HeadOutput:
        """Masked patch classification on one pass with the given (B, M) mask."""
        tokens = self.encode(spec, mask_index)
        picked, target = self._masked_outputs(spec, tokens, mask_index)
        pred = self.mpc_head(picked)
        nce, acc = mpc_loss(pred, target, self.config.nce_direction)
        return HeadOutput(nce, acc, pred, target, mask_index, tokens)

    def mpg(self, spec: torch.Tensor, mask_index: torch.Tensor) -> HeadOutput:
        """Masked patch generation on one pass with the given (B, M) mask."""
        tokens = self.encode(spec, mask_index)
        picked, target = self._masked_outputs(spec, tokens, mask_index)
        pred = self.mpg_head(picked)
        return HeadOutput(mpg_loss(pred, target), None, pred, target, mask_index, tokens)

    def forward(
        self,
        spec: torch.Tensor,
        mask_index: torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None = None,
        generator: torch.Generator | None = None,
        rng: random.Random | None = None,
    ) -> SSASTOutput:
        """Joint pretraining step: L = mpc_weight · L_d + mpg_weight · L_g.

        Args:
            spec: (B, 1, T, F) normalised fbank.
            mask_index: given masks: one (B, M) tensor shared by both heads (one pass), or a
                pair (MPC mask, MPG mask) for two passes; drawn otherwise (two independent
                masks when ``config.joint_passes == 2``).
            generator, rng: randomness of the mask draw (see :meth:`draw_mask_index`).
        """
        self._need_ssl_heads()
        if mask_index is None:
            idx_c = self.draw_mask_index(spec, rng, generator)
            if self.config.joint_passes == 2:
                if rng is None and generator is not None:  # a fresh stream for the second mask
                    idx_g = self.draw_mask_index(spec, None, generator)
                else:
                    idx_g = self.draw_mask_index(spec, rng)
            else:
                idx_g = idx_c
        elif isinstance(mask_index, (tuple, list)):
            idx_c, idx_g = mask_index
        else:
            idx_c = idx_g = mask_index
        if idx_g is idx_c:  # one pass feeds both heads
            tokens = self.encode(spec, idx_c)
            picked, target = self._masked_outputs(spec, tokens, idx_c)
            pred_c, pred_g = self.mpc_head(picked), self.mpg_head(picked)
            nce, acc = mpc_loss(pred_c, target, self.config.nce_direction)
            out_c = HeadOutput(nce, acc, pred_c, target, idx_c, tokens)
            out_g = HeadOutput(mpg_loss(pred_g, target), None, pred_g, target, idx_g, tokens)
        else:
            out_c = self.mpc(spec, idx_c)
            out_g = self.mpg(spec, idx_g)
        loss = self.config.mpc_weight * out_c.loss + self.config.mpg_weight * out_g.loss
        mask = torch.zeros(idx_g.shape[0], out_g.tokens.shape[1] - self.config.num_cls_tokens)
        mask = mask.to(out_g.pred.device).scatter_(1, idx_g.to(out_g.pred.device), 1.0)
        return SSASTOutput(
            loss,
            out_c.loss,
            out_g.loss,
            out_c.acc,
            out_g.pred,
            out_g.target,
            mask,
            idx_g,
            out_c.pred,
            out_c.target,
            idx_c,
        )

    # --------------------------------------------------------------------- conversion
    def adapt(self, **changes: Any) -> SSASTFramework:
        """A copy for another geometry, as the official fine-tuning constructor builds it.

        E.g. ``model.adapt(patch_stride=(10, 10), img_size=(512, 128), num_classes=50)``: the
        patch conv keeps its weights with the new stride, the positional table is cropped or
        interpolated (:func:`adapt_pos_grid`), a new ``mlp_head`` is created when
        ``num_classes`` changes; everything else is copied.
        """
        config = self.config.replace(**changes)
        new = type(self)(config).to(self.pos_embed.device)
        state = {k: v for k, v in self.state_dict().items() if not k.startswith("mlp_head.")}
        if config.num_classes == self.config.num_classes:
            state.update({k: v for k, v in self.state_dict().items() if k.startswith("mlp_head.")})
        n_t, n_f = config.grid
        with torch.no_grad():
            state["pos_embed"] = self.pos_embed_for((n_f, n_t)).detach().clone()
        missing, unexpected = new.load_state_dict(state, strict=False)
        allowed = {k for k in new.state_dict() if k.startswith(("mlp_head.", "head"))}
        if set(missing) - allowed or unexpected:
            raise ValueError(f"cannot adapt: missing {missing}, unexpected {unexpected}")
        return new

    # ------------------------------------------------------------------------- counts
    def num_parameters(self, part: str = "encoder") -> int:
        """Parameter counts.

        Args:
            part: "encoder" (patch conv, tokens, positions, blocks, final norm: the official
                "encoder" count), "heads" (MPC + MPG heads and ``mask_embed``), "trainable",
                "all" (every tensor here), or "official": the total the official pretraining
                model reports, which adds the unused classification heads (unless kept) and the
                two frozen geometry scalars the official checkpoints store (here config).
        """
        params = dict(self.named_parameters())
        if part == "all":
            return sum(p.numel() for p in params.values())
        if part == "trainable":
            return sum(p.numel() for p in params.values() if p.requires_grad)
        if part == "heads":
            return sum(
                p.numel()
                for k, p in params.items()
                if k.startswith(("mpc_head.", "mpg_head.")) or k == "mask_embed"
            )
        if part == "encoder":
            skip = ("mpc_head.", "mpg_head.", "mask_embed", "head.", "head_dist.", "mlp_head.")
            return sum(p.numel() for k, p in params.items() if not k.startswith(skip))
        if part == "official":
            extra = 0 if self.config.keep_unused_heads else _drop_heads_count(self.config)
            return sum(p.numel() for p in params.values()) + extra + 2
        raise ValueError(
            f"unknown part {part!r}; use 'encoder', 'heads', 'trainable', 'all' or 'official'"
        )

    # ------------------------------------------------------------------------- official
    @classmethod
    def official_overrides(cls, state: dict[str, torch.Tensor]) -> dict[str, Any]:
        """Config values an official state dict (prefix stripped) states by itself."""
        out: dict[str, Any] = {}
        if "p_input_fdim" in state and "p_input_tdim" in state:
            out["img_size"] = (int(state["p_input_tdim"]), int(state["p_input_fdim"]))
        if "mlp_head.1.weight" in state:
            out["num_classes"] = int(state["mlp_head.1.weight"].shape[0])
        if "cpredlayer.0.weight" not in state:
            out["ssl_heads"] = False
        return out

    def official_key_map(self, key: str) -> str | None:
        """Our name of an official key (prefix stripped); None drops it."""
        if key in ("p_input_fdim", "p_input_tdim"):
            return None
        if key.startswith(("v.head.", "v.head_dist.")) and not self.config.keep_unused_heads:
            return None
        key = key.replace("cpredlayer.", "mpc_head.").replace("gpredlayer.", "mpg_head.")
        return key[2:] if key.startswith("v.") else key

    def remap_official(
        self, state: dict[str, torch.Tensor], source: str = "checkpoint"
    ) -> dict[str, torch.Tensor]:
        """Pure map of an official state dict (``module.`` stripped) onto this model's keys.

        Frozen geometry tensors (``p_input_fdim``/``p_input_tdim``) are checked against the
        config and dropped; every shape is checked.
        """
        from axlstm.checkpoint.official import CheckpointError

        cfg = self.config
        if "p_input_tdim" in state:
            stored = (int(state["p_input_tdim"]), int(state["p_input_fdim"]))
            if stored != tuple(cfg.img_size):
                raise CheckpointError(
                    f"{source} was pretrained on {stored[0]} frames x {stored[1]} bins, the model "
                    f"is configured for {cfg.img_size} (pass img_size={stored})"
                )
        mapped: dict[str, torch.Tensor] = {}
        for key, value in state.items():
            ours = self.official_key_map(key)
            if ours is not None:
                mapped[ours] = value
        return _check_state(mapped, self, source)

    # ------------------------------------------------------------------------ persistence
    def embed(self, wave, sample_rate: int = 16000, **options):
        """Scene and frame embeddings of raw audio (:func:`axlstm.embedding.embed`)."""
        from axlstm.embedding import embed

        return embed(self, wave, sample_rate, **options)

    def save_pretrained(self, directory, **provenance) -> None:
        """Write a release folder: ``config.json`` and ``model.safetensors``."""
        from axlstm.checkpoint.release import save_release

        save_release(self, directory, provenance=provenance)


def _check_state(mapped, model: nn.Module, source: str) -> dict[str, torch.Tensor]:
    """Every key present and every shape equal, else a CheckpointError saying what differs."""
    from axlstm.checkpoint.official import CheckpointError

    ours = model.state_dict()
    cfg = model.config
    hints = []
    if "cls_token" in mapped and mapped["cls_token"].shape[-1] != cfg.embed_dim:
        hints.append(f"embed_dim={mapped['cls_token'].shape[-1]}")
    if "patch_embed.proj.weight" in mapped:
        pf, pt = mapped["patch_embed.proj.weight"].shape[-2:]
        if (pt, pf) != tuple(cfg.patch_size):
            hints.append(f"patch_size={(pt, pf)}")
    blocks = {int(k.split(".")[1]) for k in mapped if k.startswith(("blocks.", "layers."))}
    if blocks and max(blocks) + 1 != cfg.depth:
        hints.append(f"depth={max(blocks) + 1}")
    missing = sorted(set(ours) - set(mapped))
    unexpected = sorted(set(mapped) - set(ours))
    wrong = sorted(k for k in set(ours) & set(mapped) if ours[k].shape != mapped[k].shape)
    if "pos_embed" in wrong and mapped["pos_embed"].shape[1] != ours["pos_embed"].shape[1]:
        rows = mapped["pos_embed"].shape[1] - cfg.num_cls_tokens
        hints.append(
            f"img_size/patch_stride giving {rows} patches (the model has {cfg.num_patches})"
        )
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {missing[:8]}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:8]}")
        if wrong:
            parts.append(
                "shape mismatch "
                + ", ".join(
                    f"{k}: {tuple(mapped[k].shape)} vs {tuple(ours[k].shape)}" for k in wrong[:8]
                )
            )
        hint = f" (try {', '.join(hints)})" if hints else ""
        raise CheckpointError(
            f"{source} does not fit model {cfg.name!r}: " + "; ".join(parts) + hint
        )
    return {k: mapped[k].to(ours[k].dtype) for k in ours}


class SSASTOriginal(SSASTFramework):
    """The original SSAST: DeiT blocks over ``[cls, dist, patches]``, final LayerNorm (eps 1e-6).

    Hidden states (``return_hidden``) are the outputs of the ``depth`` blocks.
    """

    config_class: ClassVar[type] = SSASTOrigConfig
    release_class: ClassVar[str] = "ssast_original"

    def build_encoder(self) -> None:
        cfg = self.config
        self.blocks = nn.ModuleList(
            TransformerBlock(cfg.embed_dim, cfg.num_heads, cfg.mlp_ratio, cfg.attn_impl)
            for _ in range(cfg.depth)
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

    _BLOCK_NAMES = (
        (".attn.qkv.", ".attn.qkv_layer."),
        (".attn.proj.", ".attn.proj_layer."),
        (".mlp.fc1.", ".mlp.layer1."),
        (".mlp.fc2.", ".mlp.layer2."),
    )

    def official_key_map(self, key: str) -> str | None:
        ours = super().official_key_map(key)
        if ours is not None and ours.startswith("blocks."):
            for official, mine in self._BLOCK_NAMES:
                ours = ours.replace(official, mine)
        return ours


# ----------------------------------------------------------------------------------- presets
_SIZES = {"tiny": (192, 3), "small": (384, 6), "base": (768, 12)}
_VARIANTS = {
    "patch": dict(patch_size=(16, 16), masking="cluster"),
    "frame": dict(patch_size=(2, 128), masking="random"),
}


def build_ssast_orig(name: str, defaults: dict[str, Any], overrides: dict[str, Any]):
    merged = {**defaults, **overrides, "name": name}
    return SSASTOriginal(SSASTOrigConfig.from_dict(merged))


def _register(size: str, variant: str) -> None:
    name = f"ssast_orig_{size}_{variant}"
    dim, heads = _SIZES[size]

    def preset(**kw):
        defaults = dict(embed_dim=dim, depth=12, num_heads=heads, **_VARIANTS[variant])
        return build_ssast_orig(name, defaults, kw)

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
    return build_ssast_orig("test_ssast_orig", defaults, kw)
