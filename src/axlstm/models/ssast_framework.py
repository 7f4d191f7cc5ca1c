"""The framework the original SSAST and SSAMBA share (SPEC-SSAST-SSAMBA §A): Kaldi fbank input,
frequency-major patch tokens behind cls (and dist) tokens, learnable positions added after
masking, cluster or random masks, and the joint MPC + MPG objective. A family subclasses
:class:`SSASTFramework` and builds and runs its encoder (:mod:`axlstm.models.ssast_original`:
DeiT blocks; :mod:`axlstm.models.ssamba`: bidirectional Vim blocks).

Input layout: ``(B, 1, T, F)`` (time, frequency) like every axlstm model; ``(B, T, F)`` (the
official layout) is accepted too. F must be the configured number of mel bins (128).
"""

from __future__ import annotations

import logging
import random
from typing import Any, ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from axlstm.audio.kaldi import KaldiFbankConfig
from axlstm.layers.patch import SpecPatchEmbed, adapt_pos_grid
from axlstm.models.base import EncoderBase
from axlstm.models.ssast_config import SSASTFrameworkConfig
from axlstm.objectives.ssast import draw_mask_index, mpc_loss, mpg_loss

__all__ = ["POOLS", "HeadOutput", "SSASTFramework", "SSASTFrameworkConfig", "SSASTOutput"]

logger = logging.getLogger(__name__)

POOLS = ("mean", "cls")


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

    def metrics(self) -> dict[str, torch.Tensor]:
        """The detached scalars logged beside the loss: nce, mse and acc."""
        return {"nce": self.nce.detach(), "mse": self.mse.detach(), "acc": self.acc.detach()}


class HeadOutput(NamedTuple):
    """One head on one pass: loss, (accuracy), predictions, targets, masked ids, tokens."""

    loss: torch.Tensor
    acc: torch.Tensor | None
    pred: torch.Tensor
    target: torch.Tensor
    mask_index: torch.Tensor
    tokens: torch.Tensor


def _drop_heads_count(config: SSASTFrameworkConfig) -> int:
    """Parameters of the unused official classification heads (Linear(D, 1000) per cls token)."""
    return config.num_cls_tokens * (1000 * config.embed_dim + 1000)


# ----------------------------------------------------------------------------------- model
class SSASTFramework(EncoderBase):
    """Patch tokens, masking, MPC/MPG heads and pooling shared by SSAST and SSAMBA.

    Subclasses build the encoder (:meth:`build_encoder`) and run it (:meth:`run_encoder`).

    Token layout everywhere outside the encoder: ``[cls (, dist), p_0 … p_{N-1}]`` with patch ids
    frequency-major (``p = f * T' + t``).
    """

    config_class: ClassVar[type] = SSASTFrameworkConfig
    release_class: ClassVar[str] = ""
    pretrain_metrics: ClassVar[tuple[str, ...]] = ("nce", "mse", "acc")

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
    def num_prefix_tokens(self) -> int:
        return self.config.num_cls_tokens

    @property
    def frame_span(self) -> int:
        return self.config.patch_size[0]

    @property
    def frame_hop(self) -> int:
        return self.config.stride[0]

    @property
    def embed_window(self) -> int:
        """The training length ``img_size[0]`` (1024 frames = 10.24 s for the releases)."""
        return int(self.config.img_size[0])

    def num_tokens(self, frames: int) -> int:
        n_f, n_t = self.grid_for(frames)
        return self.config.num_cls_tokens + n_f * n_t

    def pretraining_problem(self) -> str | None:
        cfg = self.config
        if not cfg.ssl_heads:
            return "it has no pretraining heads (ssl_heads=false)"
        if tuple(cfg.stride) != tuple(cfg.patch_size):
            return (
                f"masked pretraining needs non-overlapping patches; patch_stride {cfg.stride} "
                f"differs from patch_size {cfg.patch_size}"
            )
        if self.front_end_config.fixed_length is None:
            return "the fbank front end needs a target_length (the training input length)"
        return super().pretraining_problem()

    @property
    def front_end_config(self) -> KaldiFbankConfig:
        """The :class:`axlstm.audio.kaldi.KaldiFbankConfig` this model expects its input from."""
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

    def tokens_to_frames(
        self, tokens: torch.Tensor, frames: int | None = None, frame_layout: str | None = None
    ) -> torch.Tensor:
        """(B, F' T', D) frequency-major patch tokens -> (B, T', F' D) frames.

        Output frame t holds the F' frequency patches of time step t, lowest band first.
        """
        n_f, n_t = self.grid_for(frames)
        B, _, D = tokens.shape
        return tokens.reshape(B, n_f, n_t, D).transpose(1, 2).reshape(B, n_t, n_f * D)

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

    def draw_pretrain_mask(
        self,
        spec: torch.Tensor,
        generator: torch.Generator | None = None,
        rng: random.Random | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """The masks ``self(spec, generator=generator, rng=rng)`` would draw: one (B, M) id
        tensor for one pass, or the pair (MPC mask, MPG mask) when ``config.joint_passes`` is
        2. ``self(spec, masks)`` is then that step with the draw outside (how a compiled step
        runs: the cluster masks come from Python's ``random``)."""
        self._need_ssl_heads()
        idx_c = self.draw_mask_index(spec, rng, generator)
        if self.config.joint_passes != 2:
            return idx_c
        if rng is None and generator is not None:  # a fresh stream for the second mask
            return idx_c, self.draw_mask_index(spec, None, generator)
        return idx_c, self.draw_mask_index(spec, rng)

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
            mask_index = self.draw_pretrain_mask(spec, generator, rng)
        if isinstance(mask_index, (tuple, list)):
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
