"""Clip classifiers on top of any encoder: pooling, the ``mlp_head`` and their composition.

The pieces are family-agnostic, so every fine-tuning model shares them:

- :class:`ClassifierHead`: ``LayerNorm(D) -> Linear(D, num_classes)``, the head of the official
  SSAST and SSAMBA fine-tuning models. It subclasses ``nn.Sequential`` so that its parameters
  are named ``0.*`` (norm) and ``1.*`` (linear); held as ``mlp_head`` they read
  ``mlp_head.0.weight`` ... like the official fine-tuned checkpoints (``module.`` stripped).
- :func:`pool_tokens`: a clip vector from the encoder's tokens, "avgtok" (mean of the patch
  tokens, the official ``ft_avgtok``) or "cls" (mean of the prefix tokens: cls, or cls and
  dist; the official ``ft_cls``).
- :class:`AudioClassifier`: an encoder (anything with ``encode(spec)`` returning
  ``[prefix tokens, patch tokens]`` and ``num_prefix_tokens``, i.e. every
  :class:`~axlstm.models.EncoderBase`), a pooling and a head. Family constructors build it with
  the right geometry (:class:`axlstm.models.ssast_finetune.SSASTClassifier` for the original
  SSAST and SSAMBA).

Shapes: input ``(B, 1, T, F)`` as the encoder takes it; ``pooled`` ``(B, D)``; logits
``(B, num_classes)``.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["POOLINGS", "AudioClassifier", "ClassifierHead", "pool_tokens"]

#: Clip poolings of :func:`pool_tokens` (the official task names without ``ft_``).
POOLINGS = ("avgtok", "cls")


class ClassifierHead(nn.Sequential):
    """``LayerNorm(dim) -> Linear(dim, num_classes)`` with PyTorch's default initialisation.

    Args:
        dim: width D of the pooled vector.
        num_classes: outputs (logits).
        eps: LayerNorm epsilon (PyTorch's default 1e-5, as the official heads).
    """

    def __init__(self, dim: int, num_classes: int, eps: float = 1e-5) -> None:
        if num_classes < 1:
            raise ValueError(f"a classifier head needs at least one class, got {num_classes}")
        super().__init__(nn.LayerNorm(dim, eps=eps), nn.Linear(dim, num_classes))
        self.dim = dim
        self.num_classes = num_classes


def pool_tokens(tokens: torch.Tensor, num_prefix: int, pool: str = "avgtok") -> torch.Tensor:
    """Clip vector from encoder tokens.

    Args:
        tokens: (B, num_prefix + N, D) tokens, prefix tokens (cls, dist) first.
        num_prefix: how many leading tokens are prefix tokens.
        pool: "avgtok" (mean of the N patch tokens) or "cls" (mean of the prefix tokens).

    Returns:
        (B, D).
    """
    if pool not in POOLINGS:
        raise ValueError(f"unknown pool {pool!r}; choose one of {POOLINGS}")
    if pool == "cls":
        if num_prefix < 1:
            raise ValueError("pool 'cls' needs an encoder with a cls token")
        return tokens[:, :num_prefix].mean(dim=1)
    if tokens.shape[1] <= num_prefix:
        raise ValueError("pool 'avgtok' needs at least one patch token")
    return tokens[:, num_prefix:].mean(dim=1)


class AudioClassifier(nn.Module):
    """An encoder, a clip pooling and a :class:`ClassifierHead` named ``mlp_head``.

    Args:
        encoder: the backbone; ``encoder.encode(spec)`` gives (B, n_prefix + N, D) tokens and
            ``encoder.num_prefix_tokens`` says n_prefix.
        num_classes: outputs of the head.
        pool: "avgtok" or "cls" (:func:`pool_tokens`).
        head: an existing head to use (e.g. loaded from a fine-tuned checkpoint) instead of a
            freshly initialised one; its size must match.

    State dict: ``encoder.*`` (the encoder's own names) and ``mlp_head.{0,1}.*``.
    """

    def __init__(
        self,
        encoder: nn.Module,
        num_classes: int,
        pool: str = "avgtok",
        head: ClassifierHead | None = None,
    ) -> None:
        super().__init__()
        if pool not in POOLINGS:
            raise ValueError(f"unknown pool {pool!r}; choose one of {POOLINGS}")
        if pool == "cls" and encoder.num_prefix_tokens < 1:
            raise ValueError("pool 'cls' needs an encoder with a cls token")
        dim = encoder.embed_dim
        if head is None:
            head = ClassifierHead(dim, num_classes)
        elif (head.dim, head.num_classes) != (dim, num_classes):
            raise ValueError(
                f"head is {head.dim} -> {head.num_classes}, the classifier needs "
                f"{dim} -> {num_classes}"
            )
        self.encoder = encoder
        self.mlp_head = head
        self.pool = pool
        self.num_classes = num_classes

    @property
    def embed_dim(self) -> int:
        return self.encoder.embed_dim

    @property
    def front_end_config(self):
        """The encoder's front end: how audio becomes this model's input."""
        return self.encoder.front_end_config

    def pooled(self, spec: torch.Tensor) -> torch.Tensor:
        """(B, 1, T, F) input -> (B, D) clip vector, the head's input."""
        tokens = self.encoder.encode(spec)
        return pool_tokens(tokens, self.encoder.num_prefix_tokens, self.pool)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        """(B, 1, T, F) input -> (B, num_classes) logits."""
        return self.mlp_head(self.pooled(spec))

    def num_parameters(self, part: str = "all") -> int:
        """Parameter counts: "all", "trainable", "encoder" (the encoder's own "encoder" count)
        or "head" (``mlp_head``)."""
        if part == "all":
            return sum(p.numel() for p in self.parameters())
        if part == "trainable":
            return sum(p.numel() for p in self.parameters() if p.requires_grad)
        if part == "encoder":
            return self.encoder.num_parameters("encoder")
        if part == "head":
            return sum(p.numel() for p in self.mlp_head.parameters())
        raise ValueError(f"unknown part {part!r}; use 'all', 'trainable', 'encoder' or 'head'")
