"""Frame probabilities to sound events, as hear-eval-kit's ``create_events_from_prediction``,
and the choice of its post-processing on validation data.

For one file with frame probabilities ``probs`` (T, C) at ``timestamps`` (ms, increasing):

1. Median filter along time (:func:`median_filter`, identical to
   ``scipy.ndimage.median_filter(probs, size=(width, 1))``) of ``width =
   round(median_filter_ms / mean frame step)`` frames (:func:`filter_width`); widths 0 and 1
   leave the probabilities as they are.
2. A frame is active for a label when its probability is ``> threshold`` (strictly; 0.5).
3. Each run of consecutive active frames of a label is one event ``(timestamps[first],
   timestamps[last], label)``, kept when ``last - first >= min_duration_ms``: a single active
   frame is an event of length 0, kept when ``min_duration_ms`` is 0.
4. Events are sorted by onset, then by label index (the kit's stable sort by onset).

The median filter follows scipy's defaults: mode "reflect", which extends the signal
half-sample symmetrically (``d c b a | a b c d | d c b a``) and, for windows longer than the
signal, periodically with period ``2T`` (``... a b c d d c b a a b c d ...``); origin 0, so a
window of even width ``w`` spans offsets ``-w // 2`` to ``w - w // 2 - 1``; and the median of an
even window is its upper middle value (sorted index ``w // 2``). scipy computes exactly this
for every width below ``8T`` (and any width when ``T = 1``); from ``8T`` on, its C code maps the
window positions ``-2kT`` (``k >= 2``) to row -1 and reads memory outside the array, so its
result is undefined there, and :func:`median_filter` keeps the periodic rule. (HEAR's filters
span a few frames; only a file of a frame or two could meet this.)

Post-processing is chosen over a grid (HEAR's ``event_postprocessing_grid`` metadata,
:func:`postprocessing_grid`) by the primary score on the validation files
(:func:`choose_postprocessing`). Where this differs from hear-eval-kit, on purpose:

* A tie goes to the first grid point in grid order. The kit sorts ``(score, point)`` pairs in
  descending order, so its ties go to the largest point (largest median filter, then largest
  minimum duration).
* A minimised score (``segment_1s_er``) is minimised; the kit always takes the largest value.
  A NaN score counts as 0.0 for a maximised score (as in the kit) and as the worst value for a
  minimised one (sed_eval's error rate is never NaN).
* A grid that lacks one of its two keys is an error; the kit would fall back to the defaults of
  ``create_events_from_prediction`` (150 ms, 60 ms).
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from axlstm.core.errors import InputError
from axlstm.evaluation.sed import SCORES, Event, score_events

__all__ = [
    "DEFAULT_POSTPROCESSING_GRID",
    "PostProcessing",
    "PostProcessingChoice",
    "choose_postprocessing",
    "filter_width",
    "frames_to_events",
    "median_filter",
    "postprocessing_grid",
]

logger = logging.getLogger(__name__)

#: HEAR 2021's final default ``event_postprocessing_grid``.
DEFAULT_POSTPROCESSING_GRID: dict[str, list[float]] = {
    "median_filter_ms": [250.0],
    "min_duration": [125.0, 250.0],
}

_GRID_KEYS = ("median_filter_ms", "min_duration")  # the first one varies slowest
_CHUNK_ELEMENTS = 1 << 22  # window elements sorted at once by median_filter


# ------------------------------------------------------------------------------ median filter
def median_filter(probs: np.ndarray, width: int) -> np.ndarray:
    """Median of each column over a window of ``width`` frames, as
    ``scipy.ndimage.median_filter(probs, size=(width, 1))`` (module notes: reflect mode,
    origin 0, upper middle for even widths).

    Args:
        probs: (T, C) array without NaN; the result has its dtype (values are only selected).
        width: window length in frames; ``width <= 1`` returns ``probs`` itself.
    """
    x = np.asarray(probs)
    if x.ndim != 2:
        raise InputError(f"probs must be (T, C), got shape {x.shape}")
    width = int(width)
    T = x.shape[0]
    if width <= 1 or T == 0 or x.shape[1] == 0:
        return x
    before = width // 2
    index = np.arange(-before, T + width - before - 1)
    index = np.mod(index, 2 * T)
    index = np.where(index >= T, 2 * T - 1 - index, index)
    padded = x[index]  # (T + width - 1, C)
    windows = sliding_window_view(padded, width, axis=0)  # (T, C, width), a view
    k = width // 2
    out = np.empty_like(x)
    rows = max(1, _CHUNK_ELEMENTS // (x.shape[1] * width))
    for start in range(0, T, rows):
        chunk = windows[start : start + rows]
        out[start : start + rows] = np.partition(chunk, k, axis=-1)[..., k]
    return out


def filter_width(median_filter_ms: float, timestamps_ms: Sequence[float] | np.ndarray) -> int:
    """Median filter width in frames: ``int(round(median_filter_ms / mean(diff(timestamps))))``,
    Python's round (half to even) as in the kit. 0 (no filter) for a 0 ms filter or fewer than
    two timestamps."""
    ms = float(median_filter_ms)
    if not (math.isfinite(ms) and ms >= 0):
        raise InputError(f"median_filter_ms must be a finite number >= 0, got {median_filter_ms}")
    ts = np.asarray(timestamps_ms, dtype=np.float64)
    if ms == 0 or ts.size < 2:
        return 0
    ratio = float(ms / np.mean(np.diff(ts)))
    if not (math.isfinite(ratio) and ratio >= 0):
        raise InputError("timestamps must be strictly increasing")
    return round(ratio)


# ------------------------------------------------------------------------------------- events
def _checked_frames(
    probs: Any, timestamps_ms: Any, labels: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(probs)
    if p.ndim != 2:
        raise InputError(f"probs must be (T, C), got shape {p.shape}")
    ts = np.asarray(timestamps_ms, dtype=np.float64)
    if ts.ndim != 1 or ts.shape[0] != p.shape[0]:
        raise InputError(f"{ts.shape} timestamps for {p.shape[0]} frames")
    if p.shape[1] != len(labels):
        raise InputError(f"probs have {p.shape[1]} classes but there are {len(labels)} labels")
    if not np.all(np.isfinite(ts)):
        raise InputError("timestamps must be finite")
    if ts.size > 1 and not np.all(np.diff(ts) > 0):
        raise InputError("timestamps must be strictly increasing")
    if not np.all(np.isfinite(p)):
        raise InputError("probs must be finite")
    return p, ts


def _runs(active: np.ndarray, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs of active frames as (start ms, end ms, label index) arrays, sorted by start, then
    label. ``active`` is (T, C) boolean."""
    edges = np.diff(np.pad(active.astype(np.int8), ((1, 1), (0, 0))), axis=0).T  # (C, T + 1)
    # Row-major over (label, time): the k-th rise and the k-th fall bound the same run.
    label, first = np.nonzero(edges == 1)
    _, stop = np.nonzero(edges == -1)
    starts, ends = ts[first], ts[stop - 1]
    order = np.lexsort((label, starts))
    return starts[order], ends[order], label[order]


def _events(
    runs: tuple[np.ndarray, np.ndarray, np.ndarray], labels: Sequence[str], min_duration_ms: float
) -> list[Event]:
    starts, ends, label = runs
    keep = (ends - starts) >= min_duration_ms
    return [
        (float(s), float(e), labels[c])
        for s, e, c in zip(starts[keep], ends[keep], label[keep], strict=True)
    ]


def _nonnegative(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InputError(f"{name} must be a number, got {value!r}")
    v = float(value)
    if not (math.isfinite(v) and v >= 0):
        raise InputError(f"{name} must be a finite number >= 0, got {value!r}")
    return v


def frames_to_events(
    probs: np.ndarray,
    timestamps_ms: Sequence[float] | np.ndarray,
    labels: Sequence[str],
    *,
    threshold: float = 0.5,
    median_filter_ms: float,
    min_duration_ms: float,
) -> list[Event]:
    """Events ``(onset_ms, offset_ms, label)`` of one file's frame probabilities (module notes).

    Args:
        probs: (T, C) finite probabilities (or any scores compared with ``threshold``).
        timestamps_ms: (T,) frame times in ms, strictly increasing.
        labels: the C label names, in column order.
        threshold: a frame is active when its filtered probability is ``> threshold``.
        median_filter_ms: median filter length in ms (0: none).
        min_duration_ms: shortest kept event, ``offset - onset >= min_duration_ms``.

    Raises:
        InputError: (a ``ValueError``) on mismatched shapes, non-finite values or timestamps
            that do not strictly increase.
    """
    p, ts = _checked_frames(probs, timestamps_ms, labels)
    min_ms = _nonnegative(min_duration_ms, "min_duration_ms")
    width = filter_width(_nonnegative(median_filter_ms, "median_filter_ms"), ts)
    active = median_filter(p, width) > threshold
    return _events(_runs(active, ts), [str(lab) for lab in labels], min_ms)


# --------------------------------------------------------------------------------------- grid
@dataclass(frozen=True)
class PostProcessing:
    """One point of the post-processing grid (both in ms)."""

    median_filter_ms: float
    min_duration_ms: float


def postprocessing_grid(spec: Mapping[str, Iterable[Any]] | None = None) -> list[PostProcessing]:
    """The grid points of HEAR's ``event_postprocessing_grid`` metadata.

    Args:
        spec: ``{"median_filter_ms": [...], "min_duration": [...]}``, both lists non-empty, of
            finite numbers >= 0; None for :data:`DEFAULT_POSTPROCESSING_GRID`.

    Returns:
        The product of the two lists, ``median_filter_ms`` varying slowest, each list in its
        given order (the order of scikit-learn's ``ParameterGrid`` in the kit).

    Raises:
        InputError: (a ``ValueError``) naming an unknown or missing key or a bad value.
    """
    if spec is None:
        spec = DEFAULT_POSTPROCESSING_GRID
    if not isinstance(spec, Mapping):
        raise InputError(f"event_postprocessing_grid must be a mapping, got {spec!r}")
    for key in spec:
        if key not in _GRID_KEYS:
            raise InputError(
                f"unknown event_postprocessing_grid key {key!r}; known: {', '.join(_GRID_KEYS)}"
            )
    values: list[list[float]] = []
    for key in _GRID_KEYS:
        if key not in spec:
            raise InputError(f"event_postprocessing_grid lacks {key!r}")
        items = spec[key]
        if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Iterable):
            raise InputError(f"event_postprocessing_grid {key!r} must be a list, got {items!r}")
        items = list(items)
        if not items:
            raise InputError(f"event_postprocessing_grid {key!r} is empty")
        values.append([_nonnegative(v, f"event_postprocessing_grid {key!r} value") for v in items])
    return [PostProcessing(m, d) for m, d in itertools.product(*values)]


@dataclass(frozen=True)
class PostProcessingChoice:
    """The chosen grid point, its score and every point's score (NaN already replaced, as used
    for the choice), in grid order."""

    best: PostProcessing
    score: float
    scores: tuple[tuple[PostProcessing, float], ...]


def choose_postprocessing(
    probs: Mapping[str, np.ndarray],
    timestamps_ms: Mapping[str, Sequence[float] | np.ndarray],
    reference: Mapping[str, Iterable[Any]],
    labels: Sequence[str],
    score_name: str,
    grid: Sequence[PostProcessing] | None = None,
    *,
    threshold: float = 0.5,
) -> PostProcessingChoice:
    """The grid point whose events score best against ``reference`` (module notes on ties).

    Args:
        probs: ``{file: (T, C) frame probabilities}`` of the validation files.
        timestamps_ms: ``{file: (T,) timestamps}``, the same files.
        reference: ``{file: events}`` (a file without predictions predicts nothing).
        labels: the C label names (also the scoring vocabulary).
        score_name: a key of :data:`axlstm.evaluation.sed.SCORES`.
        grid: the points to try; None for :func:`postprocessing_grid` ``(None)``.
        threshold: activity threshold of :func:`frames_to_events`.
    """
    if score_name not in SCORES:
        raise InputError(f"unknown event score {score_name!r}; known: {', '.join(SCORES)}")
    maximize = SCORES[score_name].maximize
    points = postprocessing_grid(None) if grid is None else list(grid)
    if not points:
        raise InputError("the post-processing grid is empty")
    if set(probs) != set(timestamps_ms):
        raise InputError("probs and timestamps_ms must have the same files")
    names = [str(lab) for lab in labels]
    frames = {f: _checked_frames(probs[f], timestamps_ms[f], names) for f in probs}
    # Runs depend on the median width only, which grid points (and files) often share.
    runs_cache: dict[tuple[str, int], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    scores: list[tuple[PostProcessing, float]] = []
    for point in points:
        median_ms = _nonnegative(point.median_filter_ms, "median_filter_ms")
        min_ms = _nonnegative(point.min_duration_ms, "min_duration_ms")
        predicted: dict[str, list[Event]] = {}
        for f, (p, ts) in frames.items():
            width = filter_width(median_ms, ts)
            key = (f, width if width > 1 else 0)
            if key not in runs_cache:
                runs_cache[key] = _runs(median_filter(p, width) > threshold, ts)
            predicted[f] = _events(runs_cache[key], names, min_ms)
        value = score_events(score_name, reference, predicted, labels=names)
        if math.isnan(value):
            value = 0.0 if maximize else math.inf
        scores.append((point, value))
        logger.debug("post-processing %s: %s = %s", point, score_name, value)
    best_point, best_value = scores[0]
    for point, value in scores[1:]:
        if (value > best_value) if maximize else (value < best_value):
            best_point, best_value = point, value
    logger.info("chose post-processing %s (%s = %.6g)", best_point, score_name, best_value)
    return PostProcessingChoice(best_point, best_value, tuple(scores))
