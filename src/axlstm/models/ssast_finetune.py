"""The official fine-tuning models of the original SSAST and SSAMBA (SPEC-SSAST-SSAMBA §A9, §B8).

The official fine-tuning constructor (``ASTModel``/``AMBAModel`` with ``pretrain_stage=False``)
turns a pretrained model into a classifier:

1. keep the encoder only: no ``mask_embed``, no MPC/MPG heads, no frozen geometry scalars (the
   unused timm/Vim classification heads ``v.head``/``v.head_dist`` stay in the official model;
   here they are dropped unless ``keep_unused_heads``, and counted by
   ``num_parameters("official")``);
2. a patch convolution with the fine-tuning stride (``fstride``, ``tstride``; e.g. 10 for
   overlapping 16×16 patches, (128, 1) for 128×2 frames) and the same weights;
3. the positional table of the pretraining grid resized to the fine-tuning grid of
   ``input_tdim`` frames: time first (centre crop when shorter, else bilinear to 8 rows), then
   frequency (:func:`axlstm.layers.patch.adapt_pos_grid`, ``pos_adapt="official"``); the cls
   (and dist) rows unchanged;
4. a new ``mlp_head`` = LayerNorm(D) -> Linear(D, num_classes) on the mean of the patch tokens
   (``ft_avgtok``) or of the cls (and dist) tokens (``ft_cls``).

Every other encoder tensor is copied bit for bit. The encoder then runs exactly as in
pretraining, without masks (:meth:`SSASTFramework.encode`).

Usage::

    encoder = axlstm.load_official("SSAST-Base-Patch-400.pth", "ssast_orig_base_patch")
    clf = SSASTClassifier.from_pretrained(
        encoder, num_classes=50, fstride=10, tstride=10, input_tdim=512
    )
    logits = clf(fbank)                                 # (B, 50) from (B, 1, 512, 128)

    # an official fine-tuned checkpoint: its geometry passed to load_official
    ft = axlstm.load_official(path, "ssast_orig_base_patch", patch_stride=(10, 10),
                              img_size=(512, 128))
    clf = SSASTClassifier.from_finetuned(ft)

The same works with our own pretrained SSAST/SSAMBA models (``axlstm.load_model(release)``).
"""

from __future__ import annotations

import logging

import torch

from axlstm.models.classifier import AudioClassifier, ClassifierHead
from axlstm.models.ssast_framework import SSASTFramework

__all__ = ["SSASTClassifier", "finetune_encoder"]

logger = logging.getLogger(__name__)


def _check_family(encoder) -> None:
    if not isinstance(encoder, SSASTFramework):
        raise TypeError(
            f"the official fine-tuning constructor takes an original SSAST or SSAMBA encoder, "
            f"got {type(encoder).__name__}"
        )


def finetune_encoder(
    encoder: SSASTFramework,
    *,
    fstride: int | None = None,
    tstride: int | None = None,
    input_tdim: int | None = None,
    keep_unused_heads: bool | None = None,
) -> SSASTFramework:
    """The encoder of the official fine-tuning model built from ``encoder`` (a new model).

    Args:
        encoder: a pretrained original SSAST or SSAMBA model (official or ours).
        fstride, tstride: patch stride along frequency and time (official names and order);
            None keeps the encoder's.
        input_tdim: input frames the fine-tuning model is sized for; None keeps the encoder's.
        keep_unused_heads: keep the unused classification heads of the official model as
            parameters; None keeps the encoder's setting.

    Returns:
        a model of the same class without pretraining parts and without ``mlp_head``, in the
        same mode, device and dtype as ``encoder``; positions resized as in the module doc.
    """
    _check_family(encoder)
    cfg = encoder.config
    t_stride, f_stride = cfg.stride
    config = cfg.replace(
        patch_stride=(
            t_stride if tstride is None else int(tstride),
            f_stride if fstride is None else int(fstride),
        ),
        img_size=(cfg.img_size[0] if input_tdim is None else int(input_tdim), cfg.img_size[1]),
        ssl_heads=False,
        num_classes=0,
        keep_unused_heads=cfg.keep_unused_heads if keep_unused_heads is None else keep_unused_heads,
    )
    ref = encoder.pos_embed
    new = type(encoder)(config).to(device=ref.device, dtype=ref.dtype)
    ours = new.state_dict()
    state = {k: v for k, v in encoder.state_dict().items() if k in ours}
    n_t, n_f = config.grid
    with torch.no_grad():
        state["pos_embed"] = encoder.pos_embed_for((n_f, n_t)).detach().clone()
    missing = set(ours) - set(state)
    # heads kept here but absent from the source stay freshly initialised: nothing reads them
    if {k for k in missing if not k.startswith(("head.", "head_dist."))}:
        raise ValueError(f"cannot build the fine-tuning encoder: missing {sorted(missing)}")
    new.load_state_dict(state, strict=False)
    logger.info(
        "fine-tuning encoder: stride %s, %d frames, grid %d x %d (was %d x %d)",
        config.stride,
        config.img_size[0],
        n_f,
        n_t,
        cfg.grid[1],
        cfg.grid[0],
    )
    return new.train(encoder.training)


def _unused_head_count(encoder: SSASTFramework) -> int:
    """Parameters of the official model's unused heads (Linear(D, 1000) per prefix token) that
    this encoder does not hold."""
    cfg = encoder.config
    return 0 if cfg.keep_unused_heads else cfg.num_cls_tokens * (1000 * cfg.embed_dim + 1000)


class SSASTClassifier(AudioClassifier):
    """The official fine-tuning model of the original SSAST or SSAMBA (see the module doc).

    Build it with :meth:`from_pretrained` (a pretrained encoder, a new head) or
    :meth:`from_finetuned` (an encoder loaded from an official fine-tuned checkpoint, with its
    ``mlp_head``). Input: ``(B, 1, T, 128)`` fbank (or the official ``(B, T, 128)``), T =
    ``input_tdim`` as officially (other lengths get positions adapted from the fine-tuning
    grid); output: ``(B, num_classes)`` logits.
    """

    @classmethod
    def from_pretrained(
        cls,
        encoder: SSASTFramework,
        num_classes: int,
        *,
        fstride: int | None = None,
        tstride: int | None = None,
        input_tdim: int | None = None,
        pool: str = "avgtok",
        keep_unused_heads: bool | None = None,
    ) -> SSASTClassifier:
        """The official fine-tuning constructor: encoder from :func:`finetune_encoder`, a new
        ``mlp_head`` (PyTorch default init), ``pool`` "avgtok" or "cls"."""
        body = finetune_encoder(
            encoder,
            fstride=fstride,
            tstride=tstride,
            input_tdim=input_tdim,
            keep_unused_heads=keep_unused_heads,
        )
        head = ClassifierHead(body.embed_dim, num_classes).to(
            device=body.pos_embed.device, dtype=body.pos_embed.dtype
        )
        return cls(body, num_classes, pool, head=head).train(encoder.training)

    @classmethod
    def from_finetuned(cls, encoder: SSASTFramework, pool: str = "avgtok") -> SSASTClassifier:
        """A classifier from an encoder that carries a fine-tuned ``mlp_head`` (config
        ``num_classes`` > 0, e.g. :func:`axlstm.load_official` of an official fine-tuned
        checkpoint); the geometry is the encoder's and every tensor is kept."""
        _check_family(encoder)
        num_classes = encoder.config.num_classes
        if not num_classes or not hasattr(encoder, "mlp_head"):
            raise ValueError(
                "the encoder has no fine-tuned head (config.num_classes is 0); use "
                "SSASTClassifier.from_pretrained"
            )
        body = finetune_encoder(encoder)
        ref = body.pos_embed
        head = ClassifierHead(body.embed_dim, num_classes).to(device=ref.device, dtype=ref.dtype)
        head.load_state_dict(encoder.mlp_head.state_dict())
        return cls(body, num_classes, pool, head=head).train(encoder.training)

    def num_parameters(self, part: str = "all") -> int:
        """As :meth:`AudioClassifier.num_parameters`, plus "official": the total of the official
        fine-tuning model (``param_counts.json → fine_tune``), which also holds the unused
        classification heads."""
        if part == "official":
            return self.num_parameters("all") + _unused_head_count(self.encoder)
        return super().num_parameters(part)
