"""The original SSAST objective: patch masks, masked patch classification and generation.

Patches are indexed as the official code indexes them: frequency-major on an (F', T') grid,
``p = f * T' + t`` (SPEC-SSAST-SSAMBA §A3). Masks are lists of patch ids drawn with Python's
``random`` in the official call order, so ``random.seed(s)`` (or a ``random.Random(s)``)
reproduces the official masks exactly.

References:
    1. Gong et al., "SSAST: Self-Supervised Audio Spectrogram Transformer", AAAI 2022
       (arXiv 2110.09784).
"""

from __future__ import annotations

import random
from typing import NamedTuple

import torch
import torch.nn.functional as F

MASKINGS = ("cluster", "random", "block")
NCE_DIRECTIONS = ("code", "paper")

__all__ = [
    "MASKINGS",
    "NCE_DIRECTIONS",
    "MPCResult",
    "block_mask_ids",
    "cluster_mask_ids",
    "draw_mask_index",
    "mpc_accuracy",
    "mpc_loss",
    "mpg_loss",
    "random_mask_ids",
]


def _rng(rng: random.Random | None):
    return random if rng is None else rng  # the module functions share the global state


def cluster_mask_ids(
    num_patches: int, num_masked: int, t_dim: int, rng: random.Random | None = None
) -> list[int]:
    """SSAST's cluster masking, exactly as the official generator (SPEC-SSAST-SSAMBA §A5).

    One cluster side c ∈ {3, 4, 5} per clip; then, until more than ``num_masked`` distinct ids
    are collected, a start s uniform in [0, N) adds every ``s + t_dim * i + j`` (i, j < c) with
    ``0 < id < N``: a c×c block towards higher frequency rows and later time in flattened-index
    arithmetic, so it wraps from the end of a row into the next and never masks patch 0. The
    lowest ``num_masked`` distinct ids are kept (the official ``list(set(...))[:M]`` order),
    returned ascending.

    Args:
        num_patches: N, patches of the clip.
        num_masked: M, patches to mask (at most N - 2).
        t_dim: T', patches per frequency row.
        rng: a ``random.Random``; None uses the global ``random`` state, as the official code.
    """
    if not 0 < num_masked <= num_patches - 2:
        raise ValueError(
            f"cluster masking needs 0 < M <= N - 2, got M={num_masked}, N={num_patches}"
        )
    r = _rng(rng)
    side = r.randrange(3) + 3
    ids: set[int] = set()
    while len(ids) <= num_masked:
        start = r.randrange(num_patches)
        for i in range(side):
            for j in range(side):
                cand = start + t_dim * i + j
                if 0 < cand < num_patches:
                    ids.add(cand)
    return sorted(ids)[:num_masked]


def random_mask_ids(
    num_patches: int, num_masked: int, rng: random.Random | None = None
) -> list[int]:
    """Frame-model masking: M distinct ids uniformly (``random.sample``), in draw order."""
    if not 0 < num_masked < num_patches:
        raise ValueError(f"need 0 < M < N, got M={num_masked}, N={num_patches}")
    return _rng(rng).sample(range(num_patches), num_masked)


def block_mask_ids(
    grid: tuple[int, int],
    num_masked: int,
    rng: random.Random | None = None,
    sides: tuple[int, ...] = (3, 4, 5),
) -> list[int]:
    """Uniform block masking on the (F', T') grid, the corrected alternative to cluster masking.

    Blocks of c×c patches (c drawn once per clip from ``sides``) are placed with their corner
    uniform over [-(c-1), F') × [-(c-1), T') and clipped to the grid, so every patch, patch 0
    and the lowest frequency row included, is equally likely to be covered and no block wraps
    across rows. The surplus of the last block is dropped at random (not from the highest ids).

    Returns:
        M distinct ids, ascending.
    """
    n_f, n_t = grid
    n = n_f * n_t
    if not 0 < num_masked < n:
        raise ValueError(f"need 0 < M < N, got M={num_masked}, N={n}")
    r = _rng(rng)
    side = sides[r.randrange(len(sides))]
    ids: set[int] = set()
    while len(ids) < num_masked:
        f0 = r.randrange(-(side - 1), n_f)
        t0 = r.randrange(-(side - 1), n_t)
        block = {
            f * n_t + t
            for f in range(max(f0, 0), min(f0 + side, n_f))
            for t in range(max(t0, 0), min(t0 + side, n_t))
        }
        new = sorted(block - ids)
        room = num_masked - len(ids)
        if len(new) > room:
            new = r.sample(new, room)
        ids.update(new)
    return sorted(ids)


def draw_mask_index(
    batch: int,
    grid: tuple[int, int],
    num_masked: int,
    masking: str = "cluster",
    rng: random.Random | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """One mask per clip, clip 0 first (the official order), as a (B, M) int64 id tensor.

    Args:
        batch: B.
        grid: (F', T') patch grid.
        num_masked: M per clip.
        masking: "cluster" (SSAST's patch models), "random" (its frame models) or "block".
        rng: a ``random.Random``; None uses the global ``random`` state.
    """
    if masking not in MASKINGS:
        raise ValueError(f"unknown masking {masking!r}; choose one of {MASKINGS}")
    n_f, n_t = grid
    rows = []
    for _ in range(batch):
        if masking == "cluster":
            rows.append(cluster_mask_ids(n_f * n_t, num_masked, n_t, rng))
        elif masking == "random":
            rows.append(random_mask_ids(n_f * n_t, num_masked, rng))
        else:
            rows.append(block_mask_ids(grid, num_masked, rng))
    return torch.tensor(rows, dtype=torch.long, device=device)


class MPCResult(NamedTuple):
    """Masked patch classification of one pass.

    Attributes:
        nce: scalar InfoNCE loss (fp32).
        acc: scalar accuracy as the official code logs it (no gradient).
    """

    nce: torch.Tensor
    acc: torch.Tensor


def _scores(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """S[b, j, i] = x_jᵀ c_i in fp32: rows are targets, columns predictions; (B, M, M)."""
    return target.float() @ pred.float().transpose(1, 2)


def mpc_accuracy(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The official MPC accuracy: softmax over each row (target), argmax down each column.

    It is not the plain argmax of the scores: each row has its own normaliser
    (SPEC-SSAST-SSAMBA §F).
    """
    with torch.no_grad():
        probs = _scores(pred, target).softmax(dim=-1)  # (B, M, M)
        hits = probs.argmax(dim=1) == torch.arange(pred.shape[1], device=pred.device)
        return hits.float().mean()


def mpc_loss(pred: torch.Tensor, target: torch.Tensor, direction: str = "code") -> MPCResult:
    """InfoNCE over the masked patches of each clip (negatives: the clip's other masked patches).

    Args:
        pred: (B, M, P) predictions c_i.
        target: (B, M, P) true patches x_i (the caller stops their gradient).
        direction: "code" (the official code: for each target a softmax over the predictions)
            or "paper" (eq. 1: for each prediction a softmax over the targets).

    Returns:
        The loss, averaged over B·M, and the official accuracy; both fp32. No temperature.
    """
    if direction not in NCE_DIRECTIONS:
        raise ValueError(f"unknown InfoNCE direction {direction!r}; use 'code' or 'paper'")
    scores = _scores(pred, target)  # (B, M, M)
    dim = -1 if direction == "code" else 1
    nce = -torch.diagonal(F.log_softmax(scores, dim=dim), dim1=1, dim2=2).mean()
    return MPCResult(nce, mpc_accuracy(pred, target))


def mpg_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Masked patch generation: the mean over (B, M, P) of the squared error, in fp32."""
    return (pred.float() - target.float()).pow(2).mean()
