"""Statistics over probe seeds: mean ± 95% Student-t half-width, aggregates across tasks and
the min-max normalised overall score.

The interval follows the official ``stats_aggregation.py`` (SPEC §7.2): for the N per-seed
scores x_1..x_N of a task, ``mean ± t_{0.975, N-1} · s / sqrt(N)`` with s the sample standard
deviation (ddof 1), i.e. scipy's ``t.interval(0.95, N - 1, loc=mean, scale=sem)``. The t
quantile is computed here (inverse of the regularised incomplete beta function), so there is no
scipy dependency.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "Summary",
    "aggregate_over_tasks",
    "betainc",
    "mean_ci",
    "normalized_scores",
    "student_t_cdf",
    "student_t_ppf",
]

_TINY = 1e-300


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz), x < (a+1)/(a+b+2)."""
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        # Even step: d_{2m} = m (b - m) x / ((a + 2m - 1)(a + 2m)).
        coef = m * (b - m) * x / ((a + m2 - 1.0) * (a + m2))
        d = 1.0 + coef * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + coef / c
        c = c if abs(c) > _TINY else _TINY
        h *= d * c
        # Odd step: d_{2m+1} = -(a + m)(a + b + m) x / ((a + 2m)(a + 2m + 1)).
        coef = -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1.0))
        d = 1.0 + coef * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + coef / c
        c = c if abs(c) > _TINY else _TINY
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-16:
            return h
    raise ArithmeticError(f"incomplete beta continued fraction did not converge (a={a}, b={b})")


def betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta function I_x(a, b) for a, b > 0 and 0 <= x <= 1."""
    if a <= 0 or b <= 0:
        raise ValueError(f"betainc needs a, b > 0, got {a}, {b}")
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"betainc needs 0 <= x <= 1, got {x}")
    if x in (0.0, 1.0):
        return x
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def student_t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` > 0 degrees of freedom."""
    if df <= 0:
        raise ValueError(f"degrees of freedom must be positive, got {df}")
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))  # P(T > |t|)
    return 1.0 - tail if t >= 0 else tail


def student_t_ppf(p: float, df: float) -> float:
    """Quantile t with P(T <= t) = p, for 0 < p < 1 and df > 0 (exact to ~1e-12 relative).

    Solved on x = df / (df + t²), where ``2 P(T > t) = I_x(df/2, 1/2)`` is monotone in x, by
    bisection: slow but unconditionally convergent, and this is called a handful of times.
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    if df <= 0:
        raise ValueError(f"degrees of freedom must be positive, got {df}")
    if p == 0.5:
        return 0.0
    target = 2.0 * (1.0 - p if p > 0.5 else p)  # two-sided tail mass beyond |t|
    lo, hi = 0.0, 1.0  # I_x is increasing in x; I_0 = 0 < target <= 1 = I_1
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        if betainc(df / 2.0, 0.5, mid) < target:
            lo = mid
        else:
            hi = mid
    x = 0.5 * (lo + hi)
    t = math.sqrt(df * (1.0 - x) / x)
    return t if p > 0.5 else -t


@dataclass(frozen=True)
class Summary:
    """Mean of per-seed scores and the half-width of their two-sided confidence interval.

    Attributes:
        mean: average score.
        ci95: half-width (``t_{0.975, n-1} · sd / sqrt(n)``); NaN with fewer than 2 scores.
        n: number of scores.
        std: sample standard deviation (ddof 1); NaN with fewer than 2 scores.
    """

    mean: float
    ci95: float
    n: int
    std: float


def mean_ci(scores: Sequence[float], confidence: float = 0.95) -> Summary:
    """Mean ± Student-t half-width of ``scores`` (one per seed).

    Raises:
        ValueError: no scores, a NaN score, or a confidence outside (0, 1).
    """
    xs = [float(x) for x in scores]
    if not xs:
        raise ValueError("no scores to summarise")
    if any(math.isnan(x) for x in xs):
        raise ValueError(f"NaN among the scores {xs}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    n = len(xs)
    mean = math.fsum(xs) / n
    if n < 2:
        return Summary(mean, math.nan, n, math.nan)
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1))
    half = student_t_ppf(0.5 + confidence / 2.0, n - 1) * std / math.sqrt(n)
    return Summary(mean, half, n, std)


def aggregate_over_tasks(per_task: Mapping[str, Sequence[float]]) -> Summary:
    """The across-task score: per seed, the mean over tasks; then mean ± CI over seeds.

    Seed i of every task is paired (the same seed index), so the interval reflects the seed
    variation of the average, not that of each task.

    Raises:
        ValueError: no tasks, or tasks with different numbers of seeds.
    """
    if not per_task:
        raise ValueError("no tasks to aggregate")
    lengths = {len(v) for v in per_task.values()}
    if len(lengths) != 1:
        raise ValueError(f"tasks have different numbers of seeds: {sorted(lengths)}")
    n = lengths.pop()
    per_seed = [math.fsum(v[i] for v in per_task.values()) / len(per_task) for i in range(n)]
    return mean_ci(per_seed)


def normalized_scores(means: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """The min-max normalised overall score s(m) of every model, in [0, 100].

    ``s(m) = 100 / |T| · Σ_t (x_t(m) - min_m' x_t(m')) / (max_m' x_t(m') - min_m' x_t(m'))``
    over the tasks T that every model has a score for; a task where all models tie counts 1
    for each. This is SPEC §7.2's *placeholder*: the paper's definition is unconfirmed.

    Args:
        means: ``{model: {task: mean score}}``.
    """
    models = list(means)
    if not models:
        return {}
    common = [t for t in means[models[0]] if all(t in means[m] for m in models)]
    if not common:
        return {m: math.nan for m in models}
    total = dict.fromkeys(models, 0.0)
    for task in common:
        values = {m: means[m][task] for m in models}
        lo, hi = min(values.values()), max(values.values())
        for m in models:
            total[m] += 1.0 if hi == lo else (values[m] - lo) / (hi - lo)
    return {m: 100.0 * total[m] / len(common) for m in models}
