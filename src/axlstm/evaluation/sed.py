"""Sound-event-detection scores of HEAR timestamp tasks, as sed_eval 0.2.1 computes them for
hear-eval-kit (``heareval/score.py``), without sed_eval.

Events are given per file, as ``(onset_ms, offset_ms, label)`` tuples or as HEAR stores them,
``{"label", "start", "end"}`` dicts in milliseconds (:func:`normalize_events`). Times become
seconds by ``ms / 1000.0`` before any comparison, exactly as hear-eval-kit converts them, so
every count is the one sed_eval finds and every rate is bit-identical with it.

Scores are micro averages: counts are summed over the files, then turned into rates. Every file
of the reference is evaluated; a file the predictions lack predicts nothing; a predicted file
the reference lacks is an error.

**Event-based** (sed_eval ``EventBasedMetrics``, ``event_matching_type="optimal"``). In one file,
a reference event ``r`` and an estimated event ``e`` *hit* when their labels are equal and

* (onset evaluated) ``|r.onset - e.onset| <= t_collar``;
* (offset evaluated) ``|r.offset - e.offset| <= max(t_collar, percentage_of_length *
  (r.offset - r.onset))``.

``Ntp`` is the size of a maximum matching of that hit graph (:func:`maximum_matching`, the same
Hopcroft-Karp search as sed_eval, so even the matching chosen among equally large ones is
sed_eval's). Substitutions ``S``: for every unmatched reference event in list order, the first
not yet counted unmatched estimated event (list order) meeting the onset/offset conditions
*whatever its label* counts one. Then deletions ``D = Nref - Ntp - S`` and insertions
``I = Nsys - Ntp - S``. ``S`` (so ``D``, ``I`` and the error rate) depends on which maximum
matching is found, which is why the search order is sed_eval's.

**Segment-based** (sed_eval ``SegmentBasedMetrics``). A file is cut into segments of
``time_resolution`` seconds; label ``c`` is active in segments ``floor(onset / res)`` up to,
not including, ``ceil(offset / res)`` of each of its events (a zero-length event on a segment
boundary covers none). The file spans ``ceil(L / res)`` segments, ``L`` the largest offset of
either list (0 for an empty list, so two empty lists span no segment). Per segment, with
``Nref``/``Nsys`` the active labels of each side and ``Ntp`` those active in both:
``S = min(Nref, Nsys) - Ntp``, ``D = max(0, Nref - Nsys)``, ``I = max(0, Nsys - Nref)``.

**Rates**, from the summed counts (sed_eval ``metric.py``):

* precision ``Ntp / Nsys`` (NaN when ``Nsys = 0``), recall ``Ntp / Nref`` (NaN when
  ``Nref = 0``); F-measure ``2PR / (P + R)``, 0.0 when ``P = R = 0`` and NaN when either is
  NaN. So the F-measure is NaN when the predictions are empty, or when the reference is.
* substitution, deletion and insertion rates ``S / (Nref + eps)`` etc. with
  ``eps = numpy.spacing(1)`` (one ulp at 1.0: with ``Nref = 1`` the rates are *not* exactly
  ``S``, ``D``, ``I``); the error rate is their sum. No NaN: with an empty reference it is
  ``I / eps``, about ``4.5e15 * I``.

Events must have ``0 <= onset <= offset`` and finite times (sed_eval does not check, and gives
meaningless segment counts otherwise). Labels are compared as strings (``str(label)``, as
hear-eval-kit writes them); unlike dcase_util, surrounding blanks are not stripped.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from axlstm.core.errors import InputError

__all__ = [
    "SCORES",
    "Event",
    "SedCounts",
    "SedScore",
    "event_based_counts",
    "maximum_matching",
    "normalize_event_dict",
    "normalize_events",
    "score_events",
    "sed_breakdown",
    "segment_based_counts",
]

logger = logging.getLogger(__name__)

#: ``(onset_ms, offset_ms, label)``.
Event = tuple[float, float, str]

#: sed_eval's ``eps`` in the error-rate denominators, ``numpy.spacing(1) = 2**-52``.
_EPS = float(np.spacing(1.0))


# ------------------------------------------------------------------------------------ events
def _one_event(item: Any, where: str) -> Event:
    if isinstance(item, Mapping):
        missing = [k for k in ("label", "start", "end") if k not in item]
        if missing:
            raise InputError(f"{where}: event {item!r} lacks {', '.join(missing)}")
        onset, offset, label = item["start"], item["end"], item["label"]
    elif isinstance(item, (tuple, list)) and len(item) == 3:
        onset, offset, label = item
    else:
        raise InputError(
            f"{where}: an event is an (onset_ms, offset_ms, label) triple or a "
            f"{{'label', 'start', 'end'}} dict, got {item!r}"
        )
    try:
        onset, offset = float(onset), float(offset)
    except (TypeError, ValueError):
        raise InputError(f"{where}: event {item!r} has non-numeric times") from None
    if not (math.isfinite(onset) and math.isfinite(offset)):
        raise InputError(f"{where}: event {item!r} has a non-finite time")
    if onset < 0.0 or offset < onset:
        raise InputError(f"{where}: event {item!r} needs 0 <= onset <= offset")
    return (onset, offset, str(label))


def normalize_events(events: Iterable[Any], *, file: str = "?") -> list[Event]:
    """``(onset_ms, offset_ms, label)`` tuples (float, float, str) of one file's events.

    Args:
        events: triples ``(onset_ms, offset_ms, label)`` or HEAR dicts ``{"label", "start",
            "end"}`` (ms), in any mix; their order is kept (it matters for substitutions).
        file: the file's name, for error messages.

    Raises:
        InputError: (a ``ValueError``) on a malformed event, a non-finite time or one that
            breaks ``0 <= onset <= offset``.
    """
    if isinstance(events, (str, bytes, Mapping)):
        raise InputError(f"file {file!r}: events must be a list, got {type(events).__name__}")
    return [_one_event(e, f"file {file!r}") for e in events]


def normalize_event_dict(events: Mapping[str, Iterable[Any]]) -> dict[str, list[Event]]:
    """:func:`normalize_events` of every file of ``{file: events}`` (HEAR's ``<split>.json``)."""
    if not isinstance(events, Mapping):
        raise InputError(f"events must map file names to lists, got {type(events).__name__}")
    return {str(f): normalize_events(ev, file=str(f)) for f, ev in events.items()}


# ---------------------------------------------------------------------------------- matching
_FREE = object()  # the predecessor of a left vertex that starts an alternating path


def maximum_matching(graph: Mapping[Hashable, Sequence[Hashable]]) -> dict[Hashable, Hashable]:
    """A maximum matching of a bipartite graph, found as sed_eval's ``bipartite_match`` does.

    Hopcroft-Karp: a greedy first matching (each left vertex, in order, takes its first free
    neighbour), then phases that layer the graph by breadth-first search from the free left
    vertices up to the first layer reaching a free right vertex and augment along disjoint
    shortest alternating paths, by depth-first search from each free right vertex of that
    layer. The depth-first search keeps an explicit stack (no recursion limit) and visits
    vertices in sed_eval's order, so the matching found is sed_eval's, not only its size.

    Args:
        graph: left vertex -> its right neighbours, both in the order to visit them.

    Returns:
        ``{right: left}`` for every matched pair.
    """
    match: dict[Hashable, Hashable] = {}
    for u, neighbours in graph.items():
        for v in neighbours:
            if v not in match:
                match[v] = u
                break
    while True:
        matched_left = set(match.values())
        # pred[u]: the right vertex u was reached from (_FREE for a free left vertex);
        # preds[v]: the left vertices of the previous layer that reach v.
        pred: dict[Hashable, Any] = {u: _FREE for u in graph if u not in matched_left}
        preds: dict[Hashable, list[Hashable]] = {}
        free_right: list[Hashable] = []
        layer = list(pred)
        while layer and not free_right:
            reached: dict[Hashable, list[Hashable]] = {}
            for u in layer:
                for v in graph[u]:
                    if v not in preds:
                        reached.setdefault(v, []).append(u)
            layer = []
            for v, us in reached.items():
                preds[v] = us
                if v in match:
                    w = match[v]
                    layer.append(w)
                    pred[w] = v
                else:
                    free_right.append(v)
        if not free_right:
            return match
        for v in free_right:
            _augment(v, match, pred, preds)


def _augment(
    start: Hashable,
    match: dict[Hashable, Hashable],
    pred: dict[Hashable, Any],
    preds: dict[Hashable, list[Hashable]],
) -> bool:
    """Depth-first search back through the layers from the free right vertex ``start`` for an
    alternating path to a free left vertex; flips the path into ``match`` when one is found.
    Vertices are consumed (removed from ``pred``/``preds``) whether or not a path is found."""
    if start not in preds:
        return False
    # A frame: [right vertex, its candidate left vertices, next candidate, chosen left vertex].
    stack: list[list[Any]] = [[start, preds.pop(start), 0, None]]
    while stack:
        frame = stack[-1]
        v_cands, pos = frame[1], frame[2]
        descended = False
        while pos < len(v_cands):
            u = v_cands[pos]
            pos += 1
            if u not in pred:
                continue
            before = pred.pop(u)
            if before is _FREE:
                frame[3] = u
                for f in reversed(stack):
                    match[f[0]] = f[3]
                return True
            if before in preds:
                frame[2], frame[3] = pos, u
                stack.append([before, preds.pop(before), 0, None])
                descended = True
                break
        if not descended:
            stack.pop()
    return False


# ------------------------------------------------------------------------------------ counts
@dataclass(frozen=True)
class SedCounts:
    """Summed counts of one evaluation and sed_eval's rates of them (see the module notes).

    ``substitutions``/``deletions``/``insertions`` are sed_eval's ``Nsubs``/``Nfn``/``Nfp`` of
    event-based scores and ``S``/``D``/``I`` of segment-based ones.
    """

    ntp: int
    nref: int
    nsys: int
    substitutions: int
    deletions: int
    insertions: int

    def __add__(self, other: SedCounts) -> SedCounts:
        return SedCounts(*(a + b for a, b in zip(_fields(self), _fields(other), strict=True)))

    @property
    def precision(self) -> float:
        return math.nan if self.nsys == 0 else float(self.ntp) / float(self.nsys)

    @property
    def recall(self) -> float:
        return math.nan if self.nref == 0 else float(self.ntp) / float(self.nref)

    @property
    def f_measure(self) -> float:
        p, r = self.precision, self.recall
        if p == 0 and r == 0:
            return 0.0
        return 2.0 * p * r / (p + r)

    @property
    def substitution_rate(self) -> float:
        return float(self.substitutions) / (float(self.nref) + _EPS)

    @property
    def deletion_rate(self) -> float:
        return float(self.deletions) / (float(self.nref) + _EPS)

    @property
    def insertion_rate(self) -> float:
        return float(self.insertions) / (float(self.nref) + _EPS)

    @property
    def error_rate(self) -> float:
        return self.substitution_rate + self.deletion_rate + self.insertion_rate

    def as_dict(self) -> dict[str, float]:
        """Counts and rates, for reports."""
        rates = ("precision", "recall", "f_measure", "substitution_rate", "deletion_rate")
        rates += ("insertion_rate", "error_rate")
        return {**asdict(self), **{k: getattr(self, k) for k in rates}}


def _fields(c: SedCounts) -> tuple[int, ...]:
    return (c.ntp, c.nref, c.nsys, c.substitutions, c.deletions, c.insertions)


_ZERO = SedCounts(0, 0, 0, 0, 0, 0)


def _prepared(
    reference: Mapping[str, Iterable[Any]],
    predicted: Mapping[str, Iterable[Any]],
    labels: Sequence[str] | None,
) -> tuple[list[tuple[str, list[Event], list[Event]]], list[str]]:
    """Per reference file (in order) its reference and predicted events, and the vocabulary."""
    ref = normalize_event_dict(reference)
    est = normalize_event_dict(predicted)
    extra = [f for f in est if f not in ref]
    if extra:
        shown = ", ".join(repr(f) for f in extra[:5]) + (" ..." if len(extra) > 5 else "")
        raise InputError(f"{len(extra)} predicted file(s) not in the reference: {shown}")
    pairs = [(f, ref[f], est.get(f, [])) for f in ref]
    if labels is None:
        vocab = sorted({e[2] for _, r, p in pairs for e in (*r, *p)})
    else:
        vocab = [str(lab) for lab in labels]
        known = set(vocab)
        for f, r, p in pairs:
            for side, events in (("reference", r), ("predicted", p)):
                for e in events:
                    if e[2] not in known:
                        raise InputError(
                            f"file {f!r}: {side} label {e[2]!r} is not in the vocabulary"
                        )
    return pairs, vocab


def _seconds(events: list[Event], codes: dict[str, int]) -> tuple[np.ndarray, ...]:
    onset = np.array([e[0] / 1000.0 for e in events], dtype=np.float64)
    offset = np.array([e[1] / 1000.0 for e in events], dtype=np.float64)
    label = np.array([codes[e[2]] for e in events], dtype=np.int64)
    return onset, offset, label


def _file_event_counts(
    ref: list[Event],
    est: list[Event],
    codes: dict[str, int],
    *,
    evaluate_onset: bool,
    evaluate_offset: bool,
    t_collar: float,
    percentage_of_length: float,
) -> SedCounts:
    nref, nsys = len(ref), len(est)
    if nref == 0 or nsys == 0:
        return SedCounts(0, nref, nsys, 0, nref, nsys)
    r_on, r_off, r_lab = _seconds(ref, codes)
    e_on, e_off, e_lab = _seconds(est, codes)
    # Time conditions (nref, nsys), label aside; the same float operations as sed_eval.
    timing = np.ones((nref, nsys), dtype=bool)
    if evaluate_onset:
        timing &= np.abs(r_on[:, None] - e_on[None, :]) <= t_collar
    if evaluate_offset:
        tolerance = np.maximum(t_collar, percentage_of_length * (r_off - r_on))
        timing &= np.abs(r_off[:, None] - e_off[None, :]) <= tolerance[:, None]
    hits = timing & (r_lab[:, None] == e_lab[None, :])
    # sed_eval's graph: estimated event -> reference events, keys in the order np.where meets
    # them (reference-major), neighbours ascending.
    graph: dict[int, list[int]] = {}
    for j, i in zip(*np.nonzero(hits), strict=True):
        graph.setdefault(int(i), []).append(int(j))
    matching = maximum_matching(graph)
    ntp = len(matching)
    ref_left = [j for j in range(nref) if j not in matching]
    est_matched = set(matching.values())
    est_left = [i for i in range(nsys) if i not in est_matched]
    counted: set[int] = set()
    subs = 0
    for j in ref_left:
        for i in est_left:
            if i not in counted and timing[j, i]:
                counted.add(i)
                subs += 1
                break
    return SedCounts(ntp, nref, nsys, subs, nref - ntp - subs, nsys - ntp - subs)


def event_based_counts(
    reference: Mapping[str, Iterable[Any]],
    predicted: Mapping[str, Iterable[Any]],
    *,
    evaluate_onset: bool = True,
    evaluate_offset: bool = True,
    t_collar: float = 0.2,
    percentage_of_length: float = 0.5,
    labels: Sequence[str] | None = None,
) -> SedCounts:
    """Event-based counts summed over the reference files (sed_eval ``EventBasedMetrics``).

    Args:
        reference, predicted: ``{file: events}`` (see :func:`normalize_events`).
        evaluate_onset, evaluate_offset: which conditions a hit needs (at least one).
        t_collar: onset (and offset) tolerance in seconds, > 0.
        percentage_of_length: offset tolerance as a fraction of the reference length, [0, 1].
        labels: the label vocabulary; an event with another label is an error.
    """
    if not (evaluate_onset or evaluate_offset):
        raise InputError("evaluate_onset and evaluate_offset cannot both be False")
    if not (math.isfinite(t_collar) and t_collar > 0):
        raise InputError(f"t_collar must be > 0 seconds, got {t_collar}")
    if not 0.0 <= percentage_of_length <= 1.0:
        raise InputError(f"percentage_of_length must be in [0, 1], got {percentage_of_length}")
    pairs, vocab = _prepared(reference, predicted, labels)
    codes = {lab: k for k, lab in enumerate(vocab)}
    total = _ZERO
    for _, ref, est in pairs:
        total = total + _file_event_counts(
            ref,
            est,
            codes,
            evaluate_onset=evaluate_onset,
            evaluate_offset=evaluate_offset,
            t_collar=float(t_collar),
            percentage_of_length=float(percentage_of_length),
        )
    return total


def _event_roll(events: list[Event], codes: dict[str, int], n: int, res: float) -> np.ndarray:
    roll = np.zeros((n, len(codes)), dtype=bool)
    for onset_ms, offset_ms, label in events:
        first = math.floor(onset_ms / 1000.0 * 1 / res)
        stop = math.ceil(offset_ms / 1000.0 * 1 / res)
        roll[first:stop, codes[label]] = True
    return roll


def segment_based_counts(
    reference: Mapping[str, Iterable[Any]],
    predicted: Mapping[str, Iterable[Any]],
    *,
    time_resolution: float = 1.0,
    labels: Sequence[str] | None = None,
) -> SedCounts:
    """Segment-based counts summed over the reference files (sed_eval ``SegmentBasedMetrics``).

    Args:
        reference, predicted: ``{file: events}`` (see :func:`normalize_events`).
        time_resolution: segment length in seconds, > 0.
        labels: the label vocabulary; an event with another label is an error.
    """
    res = float(time_resolution)
    if not (math.isfinite(res) and res > 0):
        raise InputError(f"time_resolution must be > 0 seconds, got {time_resolution}")
    pairs, vocab = _prepared(reference, predicted, labels)
    codes = {lab: k for k, lab in enumerate(vocab)}
    total = _ZERO
    for _, ref, est in pairs:
        # sed_eval's MetaDataContainer.max_offset: the largest offset, 0 for an empty list.
        ref_end = max((e[1] / 1000.0 for e in ref), default=0)
        est_end = max((e[1] / 1000.0 for e in est), default=0)
        length = max(ref_end, est_end)
        n = math.ceil(length * 1 / res)
        a = _event_roll(ref, codes, n, res)
        b = _event_roll(est, codes, n, res)
        n_ref = a.sum(axis=1)
        n_sys = b.sum(axis=1)
        n_tp = (a & b).sum(axis=1)
        total = total + SedCounts(
            int(n_tp.sum()),
            int(n_ref.sum()),
            int(n_sys.sum()),
            int((np.minimum(n_ref, n_sys) - n_tp).sum()),
            int(np.maximum(0, n_ref - n_sys).sum()),
            int(np.maximum(0, n_sys - n_ref).sum()),
        )
    return total


# ------------------------------------------------------------------------------------ scores
@dataclass(frozen=True)
class SedScore:
    """A named score: which counts (``kind`` "event" or "segment") with which parameters, and
    which rate of them (``metric`` "f_measure" or "error_rate")."""

    kind: str
    metric: str
    maximize: bool
    evaluate_onset: bool = True
    evaluate_offset: bool = True
    t_collar: float = 0.2
    percentage_of_length: float = 0.5
    time_resolution: float = 1.0

    def counts(
        self,
        reference: Mapping[str, Iterable[Any]],
        predicted: Mapping[str, Iterable[Any]],
        labels: Sequence[str] | None = None,
    ) -> SedCounts:
        """The summed counts of ``predicted`` against ``reference`` (both ``{file: events}``)."""
        if self.kind == "segment":
            return segment_based_counts(
                reference, predicted, time_resolution=self.time_resolution, labels=labels
            )
        return event_based_counts(
            reference,
            predicted,
            evaluate_onset=self.evaluate_onset,
            evaluate_offset=self.evaluate_offset,
            t_collar=self.t_collar,
            percentage_of_length=self.percentage_of_length,
            labels=labels,
        )


#: HEAR's event scores by name (hear-eval-kit ``available_scores``), plus ``segment_1s_f1``.
SCORES: dict[str, SedScore] = {
    "event_onset_200ms_fms": SedScore(
        "event", "f_measure", True, evaluate_offset=False, t_collar=0.2, percentage_of_length=0.5
    ),
    "event_onset_50ms_fms": SedScore(
        "event", "f_measure", True, evaluate_offset=False, t_collar=0.05
    ),
    "event_onset_offset_50ms_20perc_fms": SedScore(
        "event", "f_measure", True, t_collar=0.05, percentage_of_length=0.2
    ),
    "segment_1s_er": SedScore("segment", "error_rate", False, time_resolution=1.0),
    "segment_1s_f1": SedScore("segment", "f_measure", True, time_resolution=1.0),
}


def _score(name: str) -> SedScore:
    if name not in SCORES:
        raise InputError(f"unknown event score {name!r}; known: {', '.join(SCORES)}")
    return SCORES[name]


def sed_breakdown(
    name: str,
    reference: Mapping[str, Iterable[Any]],
    predicted: Mapping[str, Iterable[Any]],
    labels: Sequence[str] | None = None,
) -> SedCounts:
    """The counts behind the score called ``name`` (a key of :data:`SCORES`); their
    :meth:`SedCounts.as_dict` has Ntp, Nref, Nsys, precision, recall, F, S, D, I and ER."""
    counts = _score(name).counts(reference, predicted, labels)
    logger.debug("%s: %s", name, counts)
    return counts


def score_events(
    name: str,
    reference: Mapping[str, Iterable[Any]],
    predicted: Mapping[str, Iterable[Any]],
    labels: Sequence[str] | None = None,
) -> float:
    """The score called ``name`` (a key of :data:`SCORES`) of ``predicted`` against
    ``reference``, both ``{file: events}``; NaN where sed_eval gives NaN (module notes)."""
    spec = _score(name)
    return float(getattr(sed_breakdown(name, reference, predicted, labels), spec.metric))
