"""Metrics and statistics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from axlstm.evaluation import (
    aggregate_over_tasks,
    chroma_accuracy,
    d_prime,
    mean_average_precision,
    mean_ci,
    normalized_scores,
    student_t_ppf,
    top1_accuracy,
)
from axlstm.evaluation.metrics import aucroc, average_precision, roc_auc, score
from axlstm.evaluation.stats import betainc, student_t_cdf


# ----------------------------------------------------------------------------------- metrics
def test_top1_and_chroma_accuracy():
    targets = np.eye(24, dtype=np.float32)[[0, 13, 5, 7]]  # classes 0, 13, 5, 7
    preds = np.eye(24, dtype=np.float32)[[0, 1, 17, 8]]  # right, octave off, octave off, wrong
    assert top1_accuracy(preds, targets) == pytest.approx(0.25)
    assert chroma_accuracy(preds, targets) == pytest.approx(0.75)
    # The first maximum wins a tie, as numpy's argmax in HEAR.
    assert top1_accuracy(np.array([[0.5, 0.5]]), np.array([[1.0, 0.0]])) == 1.0


def test_average_precision_by_hand():
    # Ranking: +, -, +, -  ->  AP = (1/2)(1/1) + (1/2)(2/3) = 5/6.
    s = torch.tensor([0.9, 0.8, 0.7, 0.1])
    y = torch.tensor([1, 0, 1, 0])
    assert average_precision(s, y) == pytest.approx(5 / 6)
    # A tie of one positive and one negative at the top is one threshold: P = 1/2 at R = 1/2;
    # then the second positive: P = 2/3 at R = 1, so AP = 1/4 + 1/3.
    s = torch.tensor([0.9, 0.9, 0.5, 0.1])
    y = torch.tensor([1, 0, 1, 0])
    assert average_precision(s, y) == pytest.approx(0.25 + 1 / 3)
    assert math.isnan(average_precision(s, torch.zeros(4)))


def test_mean_average_precision_skips_classes_without_positives():
    preds = np.array([[0.9, 0.1, 0.3], [0.8, 0.7, 0.2], [0.7, 0.2, 0.1], [0.1, 0.9, 0.0]])
    targets = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 1, 0]])
    # class 0: ranks +,-,+,- -> 5/6; class 1: ranks +(0.9), +(0.7) -> 1; class 2 skipped.
    assert mean_average_precision(preds, targets) == pytest.approx((5 / 6 + 1) / 2)


def test_auc_and_d_prime_by_hand():
    s = torch.tensor([0.9, 0.8, 0.7, 0.1])
    y = torch.tensor([1, 0, 1, 0])
    # Pairs (pos, neg): (0.9, 0.8) yes, (0.9, 0.1) yes, (0.7, 0.8) no, (0.7, 0.1) yes -> 3/4.
    assert roc_auc(s, y) == pytest.approx(0.75)
    assert roc_auc(torch.tensor([0.5, 0.5]), torch.tensor([1, 0])) == pytest.approx(0.5)  # tie
    preds = torch.stack([s, 1 - s], dim=1)
    targets = torch.stack([y, 1 - y], dim=1)
    # Both classes have AUC 3/4; d' = sqrt(2) * Phi^-1(0.75) = sqrt(2) * 0.6744897501960817.
    assert aucroc(preds, targets) == pytest.approx(0.75)
    assert d_prime(preds, targets) == pytest.approx(math.sqrt(2) * 0.6744897501960817)
    assert score("d_prime", preds, targets) == d_prime(preds, targets)
    # A perfectly separated class is clipped to a finite d' (HEAR would give inf).
    assert 7.0 < d_prime(torch.tensor([[1.0], [0.0]]), torch.tensor([[1.0], [0.0]])) < 7.6


def test_metric_input_checks():
    with pytest.raises(ValueError, match="differ"):
        top1_accuracy(np.zeros((2, 3)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="unknown score"):
        score("f1", np.zeros((1, 1)), np.zeros((1, 1)))


# ---------------------------------------------------------------------------------- student t
@pytest.mark.parametrize("p", [0.6, 0.9, 0.975, 0.995, 0.9999])
def test_t_quantile_closed_forms(p):
    # df = 1 is the Cauchy distribution; df = 2 has t = (2p - 1) / sqrt(2 p (1 - p)).
    assert student_t_ppf(p, 1) == pytest.approx(math.tan(math.pi * (p - 0.5)), rel=1e-10)
    expected = (2 * p - 1) / math.sqrt(2 * p * (1 - p))
    assert student_t_ppf(p, 2) == pytest.approx(expected, rel=1e-10)
    assert student_t_ppf(1 - p, 2) == pytest.approx(-expected, rel=1e-10)


@pytest.mark.parametrize(
    ("df", "t975"),
    [(3, 3.182446305284263), (4, 2.776445105197793), (9, 2.262157162798205),
     (30, 2.042272456301238)],
)  # fmt: skip
def test_t_quantile_table(df, t975):
    assert student_t_ppf(0.975, df) == pytest.approx(t975, rel=1e-9)
    assert student_t_cdf(t975, df) == pytest.approx(0.975, abs=1e-12)


def test_t_quantile_large_df():
    # t = z + (z^3 + z) / (4 df) + O(1 / df^2), with z the normal quantile. (At huge df the
    # log-gamma differences cancel, so the precision drops to ~1e-10 there.)
    z, df = 1.959963984540054, 1e6
    assert student_t_ppf(0.975, df) == pytest.approx(z + (z**3 + z) / (4 * df), rel=1e-8)


def test_betainc_identities():
    assert betainc(1.0, 1.0, 0.3) == pytest.approx(0.3)  # uniform
    assert betainc(2.0, 3.0, 0.4) + betainc(3.0, 2.0, 0.6) == pytest.approx(1.0)
    # I_x(a, 1) = x^a
    assert betainc(2.5, 1.0, 0.7) == pytest.approx(0.7**2.5)


def test_mean_ci_by_hand():
    s = mean_ci([0.70, 0.72, 0.74, 0.76])
    # mean 0.73, sd = sqrt(0.002 / 3), half-width = t_{0.975,3} * sd / 2.
    assert s.mean == pytest.approx(0.73)
    assert s.std == pytest.approx(math.sqrt(0.002 / 3))
    assert s.ci95 == pytest.approx(3.182446305284263 * math.sqrt(0.002 / 3) / 2)
    assert s.n == 4
    one = mean_ci([0.5])
    assert one.mean == 0.5 and math.isnan(one.ci95)
    assert mean_ci([0.3, 0.3, 0.3]).ci95 == 0.0
    with pytest.raises(ValueError, match="no scores"):
        mean_ci([])


def test_aggregate_pairs_seeds_across_tasks():
    s = aggregate_over_tasks({"a": [0.6, 0.8], "b": [0.2, 0.4]})
    # per-seed means 0.4 and 0.6 -> mean 0.5, sd sqrt(0.02), half-width t_{.975,1} * 0.1.
    assert s.mean == pytest.approx(0.5)
    assert s.ci95 == pytest.approx(12.706204736174707 * 0.1)
    with pytest.raises(ValueError, match="different numbers of seeds"):
        aggregate_over_tasks({"a": [1.0], "b": [1.0, 2.0]})


def test_normalized_scores():
    means = {"m1": {"t1": 0.5, "t2": 0.9}, "m2": {"t1": 0.7, "t2": 0.8}, "m3": {"t1": 0.6}}
    out = normalized_scores(means)
    # Only t1 is common: (0.5, 0.7, 0.6) -> (0, 1, 0.5).
    assert out == pytest.approx({"m1": 0.0, "m2": 100.0, "m3": 50.0})
    tied = normalized_scores({"a": {"t": 0.5}, "b": {"t": 0.5}})
    assert tied == {"a": 100.0, "b": 100.0}


def test_d_prime_of_the_macro_auc_is_ssasts_and_differs_from_hears_average():
    from axlstm.evaluation.metrics import d_prime_of_auc

    assert d_prime_of_auc(0.75) == pytest.approx(math.sqrt(2) * 0.6744897501960817)
    assert d_prime_of_auc(0.5) == 0.0 and math.isnan(d_prime_of_auc(math.nan))
    assert 7.0 < d_prime_of_auc(1.0) < 7.6  # clipped as the per-class d' is
    # class 0 AUC 3/4, class 1 AUC 1: SSAST d'(mean AUC 7/8) != HEAR mean of per-class d'
    s = torch.tensor([0.9, 0.8, 0.7, 0.1])
    y = torch.tensor([1, 0, 1, 0])
    preds = torch.stack([s, torch.tensor([0.9, 0.1, 0.8, 0.2])], dim=1)
    targets = torch.stack([y, y], dim=1)
    assert aucroc(preds, targets) == pytest.approx(0.875)
    ssast = d_prime_of_auc(aucroc(preds, targets))
    assert ssast == pytest.approx(math.sqrt(2) * 1.1503493803760079)  # Phi^-1(0.875)
    assert d_prime(preds, targets) == pytest.approx(
        (d_prime_of_auc(0.75) + d_prime_of_auc(1.0)) / 2
    )
    assert d_prime(preds, targets) > ssast + 2.0


def test_fine_tuning_scores_report_ssasts_d_prime():
    from axlstm.evaluation.metrics import d_prime_of_auc
    from axlstm.finetune.data import ClipWindows
    from axlstm.finetune.scoring import score_clips

    logits = torch.tensor([[2.0, -1.0], [1.5, 1.0], [0.5, 0.8], [-2.0, -0.5]])  # AUC 3/4 and 1

    class Fixed(torch.nn.Module):  # the window's first input value picks its logits row
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return logits[x[:, 0, 0, 0].long()] + self.w

    windows = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 1, 2, 3).contiguous()
    clips = ClipWindows(windows, torch.arange(4), torch.zeros(4), [1.0] * 4, {}, [0, 1, 2, 3])
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]])
    scores, probs = score_clips(Fixed(), clips, targets, multilabel=True)
    assert scores["aucroc"] == pytest.approx(aucroc(probs, targets))
    assert scores["aucroc"] == pytest.approx(0.875)
    assert scores["d_prime"] == pytest.approx(d_prime_of_auc(0.875))  # not HEAR's d_prime
    assert scores["d_prime"] < d_prime(probs, targets) - 2.0
