"""Scores of a classifier on labelled clips: window logits, clip probabilities, metrics.

A clip's probabilities are the mean over its windows (:mod:`axlstm.finetune.data`) of the
window probabilities: softmax for multiclass, sigmoid per class for multilabel.

Metrics (computed by :mod:`axlstm.evaluation.metrics`, as hear-eval-kit names them):

- multiclass: ``acc`` (top-1) and ``top5`` (a hit when the true class is among the five most
  probable; with five classes or fewer it is 1);
- multilabel: ``mAP`` (macro average precision), ``aucroc`` (macro ROC AUC) and ``d_prime``
  (``sqrt(2) * Phi^-1(aucroc)``: of the macro AUC, as SSAST and AST compute it, not the
  per-class average that HEAR's probe reports), the scores SSAST and SSAMBA report for
  AudioSet. Classes without a positive in the evaluated split are left out of mAP, and
  classes without both positives and negatives out of AUC (hence d-prime). SSAST averages
  over every class: its AudioSet evaluation set has positives and negatives for all 527, so
  on such a split the two agree, and on a split where a class lacks them SSAST's own code
  stops with an error;
- always ``loss``: the mean cross-entropy (multiclass) or binary cross-entropy (multilabel)
  of the clip probabilities.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from axlstm.core.errors import AxlstmError
from axlstm.evaluation.metrics import (
    aucroc,
    d_prime_of_auc,
    mean_average_precision,
    top1_accuracy,
)
from axlstm.finetune.data import ClipWindows

__all__ = [
    "clip_probabilities",
    "score_clips",
    "scores_of",
    "split_probabilities",
    "top_k_accuracy",
    "window_logits",
]


def window_logits(model: nn.Module, windows: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
    """``(W, K)`` float32 CPU logits of ``(W, 1, T, F)`` windows, ``batch_size`` at a time."""
    device = next(model.parameters()).device
    out = []
    with torch.no_grad():
        for i in range(0, windows.shape[0], batch_size):
            out.append(model(windows[i : i + batch_size].to(device)).float().cpu())
    if not out:
        return torch.zeros(0, getattr(model, "num_classes", 0))
    return torch.cat(out)


def clip_probabilities(
    logits: torch.Tensor, owner: torch.Tensor, num_clips: int, multilabel: bool
) -> torch.Tensor:
    """``(n, K)`` clip probabilities: the mean of each clip's window probabilities."""
    probs = torch.sigmoid(logits) if multilabel else torch.softmax(logits, dim=-1)  # (W, K)
    total = torch.zeros(num_clips, probs.shape[1]).index_add_(0, owner, probs)
    count = torch.bincount(owner, minlength=num_clips).clamp(min=1).unsqueeze(1)
    return total / count


def top_k_accuracy(probs: torch.Tensor, targets: torch.Tensor, k: int = 5) -> float:
    """Share of clips whose true class (the target's argmax) is among the ``k`` most probable."""
    k = min(k, probs.shape[1])
    top = probs.topk(k, dim=1).indices  # (n, k)
    truth = targets.argmax(dim=1, keepdim=True)  # (n, 1)
    return float((top == truth).any(dim=1).float().mean())


def _loss(probs: torch.Tensor, targets: torch.Tensor, multilabel: bool) -> float:
    p = probs.double().clamp(1e-12, 1 - 1e-12)
    t = targets.double()
    if multilabel:
        return float(-(t * p.log() + (1 - t) * (1 - p).log()).mean())
    return float(-(t * p.log()).sum(dim=1).mean())


def score_clips(
    model: nn.Module,
    clips: ClipWindows,
    targets: torch.Tensor,
    multilabel: bool,
    batch_size: int = 16,
) -> tuple[dict[str, float], torch.Tensor]:
    """Scores of ``model`` on the readable clips of ``clips``.

    Args:
        targets: ``(n, K)`` targets of the clips in ``clips.kept`` order.

    Returns:
        The scores by name and the ``(n, K)`` clip probabilities.

    Raises:
        AxlstmError: no clip could be read, or the model gave non-finite outputs.
    """
    probs, _ = split_probabilities(model, [clips], multilabel, batch_size)
    return scores_of(probs, targets, multilabel), probs


def split_probabilities(
    model: nn.Module, chunks: Iterable[ClipWindows], multilabel: bool, batch_size: int = 16
) -> tuple[torch.Tensor, list[int]]:
    """``(n, K)`` clip probabilities of the readable clips of ``chunks`` (one
    :class:`ClipWindows`, or the chunks of an :class:`~axlstm.finetune.data.EvalClips`), and
    the clips' ``kept`` indices in the same order.

    Raises:
        AxlstmError: no clip could be read, or the model gave non-finite outputs.
    """
    probs, kept = [], []
    for chunk in chunks:
        if not chunk.kept:
            continue
        logits = window_logits(model, chunk.windows, batch_size)
        if not torch.isfinite(logits).all():
            raise AxlstmError("the classifier gave non-finite outputs (NaN or inf)")
        probs.append(clip_probabilities(logits, chunk.owner, len(chunk.kept), multilabel))
        kept.extend(chunk.kept)
    if not kept:
        raise AxlstmError("no clip of the evaluated split could be read")
    return torch.cat(probs), kept


def scores_of(probs: torch.Tensor, targets: torch.Tensor, multilabel: bool) -> dict[str, float]:
    """The scores (see the module note) of ``(n, K)`` clip probabilities against targets."""
    t = targets.float()
    scores = {"loss": _loss(probs, t, multilabel)}
    if multilabel:
        auc = aucroc(probs, t)
        scores.update(mAP=mean_average_precision(probs, t), aucroc=auc, d_prime=d_prime_of_auc(auc))
    else:
        scores.update(acc=top1_accuracy(probs, t), top5=top_k_accuracy(probs, t, 5))
    return {k: v for k, v in scores.items() if not math.isnan(v)}
