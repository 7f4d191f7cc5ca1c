"""Scores of probe predictions, named and computed as hear-eval-kit does (``heareval/score.py``).

Every score takes ``predictions`` (N, C) (probabilities or logits: only their order matters
within a row or a column) and ``targets`` (N, C) multi-hot (one-hot for multiclass tasks) and
returns a float. Written in torch, with no scikit-learn / scipy.

Differences from HEAR, all at degenerate inputs only:

* ``mAP`` averages the per-class average precision over the classes that have at least one
  positive target; scikit-learn (HEAR) gives such a class an AP of 0 or NaN depending on
  its version. NaN when no class has a positive.
* ``d_prime`` and ``aucroc`` average over the classes that have both positives and negatives;
  HEAR returns NaN for the whole score as soon as one class lacks either. The AUC is clipped
  to ``[1e-7, 1 - 1e-7]`` before ``Φ⁻¹`` so a perfectly separated class gives d′ ≈ 7.4 where
  HEAR gives ``inf``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

__all__ = [
    "SCORES",
    "aucroc",
    "average_precision",
    "chroma_accuracy",
    "d_prime",
    "d_prime_of_auc",
    "mean_average_precision",
    "roc_auc",
    "score",
    "top1_accuracy",
]

_AUC_EPS = 1e-7


def _as_2d(x: Any, name: str) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.asarray(x))
    x = torch.as_tensor(x)
    if x.dim() != 2:
        raise ValueError(f"{name} must be (N, C), got shape {tuple(x.shape)}")
    return x.to(torch.float64)


def _pair(predictions: Any, targets: Any) -> tuple[torch.Tensor, torch.Tensor]:
    p, t = _as_2d(predictions, "predictions"), _as_2d(targets, "targets")
    if p.shape != t.shape:
        raise ValueError(f"predictions {tuple(p.shape)} and targets {tuple(t.shape)} differ")
    if p.shape[0] == 0:
        raise ValueError("no examples to score")
    return p, t


def top1_accuracy(predictions: Any, targets: Any) -> float:
    """Fraction of rows whose highest prediction is the target class (first maximum wins)."""
    p, t = _pair(predictions, targets)
    return float((p.argmax(dim=1) == t.argmax(dim=1)).double().mean())


def chroma_accuracy(predictions: Any, targets: Any) -> float:
    """Top-1 accuracy up to octaves: predicted and target class *indices* agree modulo 12.

    As in HEAR, this relies on the label vocabulary listing pitches in semitone order.
    """
    p, t = _pair(predictions, targets)
    return float((p.argmax(dim=1) % 12 == t.argmax(dim=1) % 12).double().mean())


def average_precision(scores: torch.Tensor, positives: torch.Tensor) -> float:
    """Average precision of one class, ``sum_n (R_n - R_{n-1}) P_n`` over distinct thresholds.

    Tied scores form one threshold (as scikit-learn's ``average_precision_score``).

    Args:
        scores: (N,) higher means more likely positive.
        positives: (N,) 0/1 targets.

    Returns:
        The AP, or NaN when there is no positive.
    """
    pos = positives.to(torch.float64)
    n_pos = float(pos.sum())
    if n_pos == 0:
        return math.nan
    order = torch.argsort(scores, descending=True, stable=True)
    s, y = scores[order], pos[order]
    tp, fp = torch.cumsum(y, 0), torch.cumsum(1.0 - y, 0)
    # The last index of each run of equal scores closes one threshold.
    last = torch.ones_like(s, dtype=torch.bool)
    last[:-1] = s[1:] != s[:-1]
    tp, fp = tp[last], fp[last]
    precision = tp / (tp + fp)
    recall = tp / n_pos
    gain = torch.diff(recall, prepend=recall.new_zeros(1))
    return float((gain * precision).sum())


def roc_auc(scores: torch.Tensor, positives: torch.Tensor) -> float:
    """Area under the ROC curve of one class: the Mann-Whitney probability that a positive
    scores above a negative, ties counting one half. NaN without positives or negatives."""
    pos = positives.to(torch.bool)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    # Average ranks (1-based) handle ties exactly.
    s = scores.to(torch.float64)
    uniq, inverse, counts = torch.unique(s, return_inverse=True, return_counts=True)
    first = torch.cumsum(counts, 0) - counts  # 0-based rank of each value's first copy
    avg_rank = first.to(torch.float64) + (counts.to(torch.float64) + 1.0) / 2.0
    ranks = avg_rank[inverse]
    u = float(ranks[pos].sum()) - n_pos * (n_pos + 1) / 2.0
    return u / (n_pos * n_neg)


def mean_average_precision(predictions: Any, targets: Any) -> float:
    """Macro mAP: per-class AP averaged over the classes with at least one positive."""
    p, t = _pair(predictions, targets)
    aps = [average_precision(p[:, c], t[:, c]) for c in range(p.shape[1])]
    aps = [a for a in aps if not math.isnan(a)]
    return float(np.mean(aps)) if aps else math.nan


def _class_aucs(predictions: Any, targets: Any) -> list[float]:
    p, t = _pair(predictions, targets)
    aucs = [roc_auc(p[:, c], t[:, c]) for c in range(p.shape[1])]
    return [a for a in aucs if not math.isnan(a)]


def aucroc(predictions: Any, targets: Any) -> float:
    """Macro ROC AUC over the classes with both positives and negatives."""
    aucs = _class_aucs(predictions, targets)
    return float(np.mean(aucs)) if aucs else math.nan


def d_prime(predictions: Any, targets: Any) -> float:
    """Macro d′: per class ``sqrt(2) Φ⁻¹(AUC)``, averaged (see the module note on clipping)."""
    aucs = _class_aucs(predictions, targets)
    if not aucs:
        return math.nan
    auc = torch.tensor(aucs, dtype=torch.float64).clamp(_AUC_EPS, 1.0 - _AUC_EPS)
    return float((math.sqrt(2.0) * torch.special.ndtri(auc)).mean())


def d_prime_of_auc(auc: float) -> float:
    """``sqrt(2) Φ⁻¹(auc)`` of one AUC, clipped as :func:`d_prime` clips. SSAST and AST
    report this of the macro AUC (``d_prime(mAUC)``), where HEAR averages per-class d′."""
    if math.isnan(auc):
        return math.nan
    a = min(max(float(auc), _AUC_EPS), 1.0 - _AUC_EPS)
    return float(math.sqrt(2.0) * torch.special.ndtri(torch.tensor(a, dtype=torch.float64)))


#: Scene scores by their HEAR names (``task_metadata.json`` "evaluation"); all are maximised.
SCORES: dict[str, Callable[[Any, Any], float]] = {
    "top1_acc": top1_accuracy,
    "pitch_acc": top1_accuracy,
    "chroma_acc": chroma_accuracy,
    "mAP": mean_average_precision,
    "d_prime": d_prime,
    "aucroc": aucroc,
}


def score(name: str, predictions: Any, targets: Any) -> float:
    """The score called ``name`` (a key of :data:`SCORES`)."""
    if name not in SCORES:
        raise ValueError(f"unknown score {name!r}; known: {', '.join(SCORES)}")
    return SCORES[name](predictions, targets)
