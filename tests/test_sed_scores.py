"""Sound-event scores (axlstm.evaluation.sed) and frame post-processing
(axlstm.evaluation.postprocess): hand-worked cases, a property test of the matching, and a
cross-check against sed_eval 0.2.1 and scipy (stored values, and live when sed_eval is here).

Times in the events are ms; sed_eval compares seconds (``ms / 1000.0``).
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from axlstm.evaluation.postprocess import (
    DEFAULT_POSTPROCESSING_GRID,
    PostProcessing,
    choose_postprocessing,
    filter_width,
    frames_to_events,
    median_filter,
    postprocessing_grid,
)
from axlstm.evaluation.sed import (
    SCORES,
    SedCounts,
    event_based_counts,
    maximum_matching,
    normalize_events,
    score_events,
    sed_breakdown,
    segment_based_counts,
)

ROOT = Path(__file__).resolve().parents[1]
CASES = ROOT / "tests" / "data" / "sed_eval_cases.json"
GENERATOR = ROOT / "benchmarks" / "sed_eval_crosscheck.py"
EPS = 2.0**-52  # sed_eval's numpy.spacing(1)
ONSET_200 = "event_onset_200ms_fms"
ONSET_OFFSET = "event_onset_offset_50ms_20perc_fms"


def counts(name, reference, predicted, labels=None):
    c = sed_breakdown(name, reference, predicted, labels)
    return (c.ntp, c.nref, c.nsys, c.substitutions, c.deletions, c.insertions)


# ------------------------------------------------------------------------------ event-based
def test_onset_collar_is_inclusive_and_exact():
    ref = {"f": [(0, 1000, "a")]}
    # |0.0 - 0.2| = 0.2 <= 0.2 exactly: a hit. (0 ms keeps the difference exact in binary.)
    assert counts(ONSET_200, ref, {"f": [(200, 900, "a")]}) == (1, 1, 1, 0, 0, 0)
    assert score_events(ONSET_200, ref, {"f": [(200, 900, "a")]}) == 1.0
    # 0.201 > 0.2: a miss, counted once as a deletion and once as an insertion (the onset
    # condition fails, so it is no substitution). P = R = 0 gives F = 0.0, not NaN.
    assert counts(ONSET_200, ref, {"f": [(201, 900, "a")]}) == (0, 1, 1, 0, 1, 1)
    assert score_events(ONSET_200, ref, {"f": [(201, 900, "a")]}) == 0.0
    # ER = D/(1+eps) + I/(1+eps): with Nref = 1 sed_eval's eps shows in the last bit.
    er = sed_breakdown(ONSET_200, ref, {"f": [(201, 900, "a")]}).error_rate
    assert er == 2 * (1 / (1 + EPS)) == 1.9999999999999996
    # 500 vs 700 ms: 0.7 - 0.5 = 0.19999999999999996 in floats, inside the collar.
    assert score_events(ONSET_200, {"f": [(500, 600, "a")]}, {"f": [(700, 800, "a")]}) == 1.0
    # But 600 vs 800 ms: 0.8 - 0.6 = 0.20000000000000007 > 0.2, a miss, although the two are
    # 200 ms apart in ms: the comparison is in seconds, as in sed_eval.
    assert score_events(ONSET_200, {"f": [(600, 700, "a")]}, {"f": [(800, 900, "a")]}) == 0.0
    # The 50 ms collar: 50 ms away from 0 hits (0.05 <= 0.05), 51 ms away does not, and
    # 90 vs 140 ms misses (0.14 - 0.09 = 0.05000000000000002).
    assert score_events("event_onset_50ms_fms", ref, {"f": [(50, 900, "a")]}) == 1.0
    assert score_events("event_onset_50ms_fms", ref, {"f": [(51, 900, "a")]}) == 0.0
    assert (
        score_events("event_onset_50ms_fms", {"f": [(90, 99, "a")]}, {"f": [(140, 150, "a")]})
        == 0.0
    )


def test_split_reference_one_hit_one_insertion():
    # One reference, two estimates covering its halves: only the first onset is within 200 ms.
    # Ntp 1, Nsys 2 -> P = 1/2, R = 1, F = 2 * 1/2 / (3/2) = 2/3.
    ref = {"f": [(1000, 3000, "a")]}
    est = {"f": [(1000, 2000, "a"), (2000, 3000, "a")]}
    assert counts(ONSET_200, ref, est) == (1, 1, 2, 0, 0, 1)
    assert score_events(ONSET_200, ref, est) == pytest.approx(2 / 3, abs=1e-15)


def test_merged_references():
    # Two references, one estimate spanning both: onset-only matches the first (F = 2/3);
    # with offsets (50 ms or 20 % of 1 s = 200 ms), |2.0 - 3.0| = 1 s misses: F = 0.
    ref = {"f": [(1000, 2000, "a"), (2500, 3000, "a")]}
    est = {"f": [(1000, 3000, "a")]}
    assert counts(ONSET_200, ref, est) == (1, 2, 1, 0, 1, 0)
    assert score_events(ONSET_200, ref, est) == pytest.approx(2 / 3, abs=1e-15)
    assert counts(ONSET_OFFSET, ref, est) == (0, 2, 1, 0, 2, 1)
    assert score_events(ONSET_OFFSET, ref, est) == 0.0


def test_wrong_label_is_a_substitution():
    ref = {"f": [(1000, 2000, "a")]}
    est = {"f": [(1000, 2000, "b")]}
    c = sed_breakdown(ONSET_200, ref, est)
    assert (c.ntp, c.substitutions, c.deletions, c.insertions) == (0, 1, 0, 0)
    assert c.f_measure == 0.0
    assert c.error_rate == 1 / (1 + EPS) == 0.9999999999999998


def test_empty_sides():
    one = {"f": [(0, 100, "a")]}
    empty = {"f": []}
    # Empty reference, one prediction: P = 0, R = NaN -> F NaN; ER = I / eps = 2**52.
    c = sed_breakdown(ONSET_200, empty, one)
    assert c.precision == 0.0 and math.isnan(c.recall) and math.isnan(c.f_measure)
    assert c.error_rate == 2.0**52
    # Reference but no predictions (the file absent from them, or an empty list): P = NaN,
    # R = 0 -> F NaN (sed_eval's "0 and 0 gives 0" rule does not apply to NaN).
    for predicted in ({}, empty):
        c = sed_breakdown(ONSET_200, one, predicted)
        assert math.isnan(c.precision) and c.recall == 0.0 and math.isnan(c.f_measure)
        assert c.error_rate == 1 / (1 + EPS)
        assert math.isnan(score_events(ONSET_200, one, predicted))
    # Both empty: F NaN, ER 0 (0 / eps); segment-based: no segment at all.
    assert math.isnan(score_events(ONSET_200, empty, empty))
    assert sed_breakdown(ONSET_200, empty, empty).error_rate == 0.0
    assert counts("segment_1s_er", empty, empty) == (0, 0, 0, 0, 0, 0)
    assert score_events("segment_1s_er", empty, empty) == 0.0


def test_offset_condition_with_percentage_of_length():
    # 50 ms collar, 20 %: a 1 s reference tolerates max(0.05, 0.2 * 1.0) = 0.2 s at the offset.
    long_ref = {"f": [(0, 1000, "a")]}
    assert score_events(ONSET_OFFSET, long_ref, {"f": [(0, 1200, "a")]}) == 1.0  # 0.19999...
    assert score_events(ONSET_OFFSET, long_ref, {"f": [(0, 1250, "a")]}) == 0.0  # 0.25
    assert score_events(ONSET_OFFSET, long_ref, {"f": [(0, 800, "a")]}) == 1.0  # 0.2 exactly
    # A 100 ms reference: 20 % is 20 ms, so the 50 ms collar rules: |0.1 - 0.15| =
    # 0.04999999999999999 hits, |0.1 - 0.16| = 0.06 misses.
    short_ref = {"f": [(0, 100, "a")]}
    assert score_events(ONSET_OFFSET, short_ref, {"f": [(0, 150, "a")]}) == 1.0
    assert score_events(ONSET_OFFSET, short_ref, {"f": [(0, 160, "a")]}) == 0.0
    # Onset-only scores ignore the offset entirely.
    assert score_events(ONSET_200, short_ref, {"f": [(0, 5000, "a")]}) == 1.0


def test_maximum_matching_beats_greedy():
    # r0 at 0 ms, r1 at 300 ms; e0 at 150 ms hits both, e1 at 50 ms hits r0 only (|0.3-0.05|
    # = 0.25 > 0.2). Greedy in reference order gives r0 the first listed estimate e0 and
    # leaves r1 unmatched (1 hit); the maximum matching pairs r0-e1 and r1-e0 (2 hits).
    ref = {"f": [(0, 100, "a"), (300, 400, "a")]}
    est = {"f": [(150, 250, "a"), (50, 150, "a")]}
    assert counts(ONSET_200, ref, est) == (2, 2, 2, 0, 0, 0)
    assert score_events(ONSET_200, ref, est) == 1.0


def test_substitution_order_follows_sed_eval():
    # An unmatched reference takes the first unmatched, uncounted estimate (list order) that
    # meets the timing whatever its label. Here r0 (a) and r1 (b) both miss by label; e0 (c)
    # meets both timings, e1 (c) meets r1 only: r0 takes e0, r1 takes e1 -> S = 2.
    ref = {"f": [(0, 100, "a"), (300, 400, "b")]}
    est = {"f": [(100, 200, "c"), (400, 500, "c")]}
    assert counts(ONSET_200, ref, est) == (0, 2, 2, 2, 0, 0)
    # Listed the other way round r0 cannot use e1 (400 ms away) and takes e0; same result.
    est_rev = {"f": [(400, 500, "c"), (100, 200, "c")]}
    assert counts(ONSET_200, ref, est_rev) == (0, 2, 2, 2, 0, 0)


def test_multiple_files_are_micro_averaged():
    # f1: a hit; f2: a miss (reference only); f3: no predictions at all.
    # Ntp 1, Nref 3, Nsys 1 -> P = 1, R = 1/3, F = 2 * 1/3 / (4/3) = 0.5, not the mean of
    # per-file F-measures.
    ref = {"f1": [(0, 500, "a")], "f2": [(0, 500, "b")], "f3": [(100, 500, "a")]}
    est = {"f1": [(20, 480, "a")], "f2": []}
    assert counts(ONSET_200, ref, est) == (1, 3, 1, 0, 2, 0)
    assert score_events(ONSET_200, ref, est) == 0.5


def test_event_formats_and_errors():
    hear = {"f": [{"label": "a", "start": 0, "end": 1000}]}
    assert score_events(ONSET_200, hear, {"f": [(10.0, 990.0, "a")]}) == 1.0
    assert normalize_events([{"label": 3, "start": 1, "end": 2}]) == [(1.0, 2.0, "3")]
    with pytest.raises(ValueError, match=r"'ghost\.wav'"):
        score_events(ONSET_200, hear, {"ghost.wav": []})
    with pytest.raises(ValueError, match=r"file 'f'.*label 'z'"):
        score_events(ONSET_200, hear, {"f": [(0, 1, "z")]}, labels=["a", "b"])
    with pytest.raises(ValueError, match="onset <= offset"):
        score_events(ONSET_200, {"f": [(5, 1, "a")]}, {})
    with pytest.raises(ValueError, match="lacks end"):
        normalize_events([{"label": "a", "start": 0}])
    with pytest.raises(ValueError, match="unknown event score"):
        score_events("segment_2s_er", hear, {})
    assert {n: s.maximize for n, s in SCORES.items()} == {
        "event_onset_200ms_fms": True,
        "event_onset_50ms_fms": True,
        "event_onset_offset_50ms_20perc_fms": True,
        "segment_1s_er": False,
        "segment_1s_f1": True,
    }


# ---------------------------------------------------------------------------- segment-based
def test_segment_counts_with_substitution_deletion_insertion():
    # 1 s segments over 4 s (the last offset, 4000 ms, is an estimate's):
    #   seg 0: ref {a}, est {b}   -> Nref 1, Nsys 1, Ntp 0: S 1
    #   seg 1: ref {b}, est {}    -> D 1
    #   seg 2: ref {a,b}, est {a} -> Ntp 1, S = min(2,1) - 1 = 0, D 1
    #   seg 3: ref {}, est {c}    -> I 1
    # Ntp 1, Nref 4, Nsys 3, S 1, D 2, I 1; ER = (1 + 2 + 1) / 4 = 1 (4 + eps == 4);
    # P = 1/3, R = 1/4, F = 2/7.
    ref = {"f": [(0, 1000, "a"), (1000, 2000, "b"), (2000, 3000, "a"), (2000, 3000, "b")]}
    est = {"f": [(0, 1000, "b"), (2000, 3000, "a"), (3000, 4000, "c")]}
    assert counts("segment_1s_er", ref, est) == (1, 4, 3, 1, 2, 1)
    assert score_events("segment_1s_er", ref, est) == 1.0
    assert score_events("segment_1s_f1", ref, est) == pytest.approx(2 / 7, abs=1e-15)


def test_segment_boundaries():
    # floor(onset) to ceil(offset): 500-1500 ms is active in segments 0 and 1; a zero-length
    # event on a boundary (2000-2000) covers no segment but stretches the file to 2 s.
    c = segment_based_counts({"f": [(500, 1500, "a")]}, {"f": [(2000, 2000, "a")]})
    assert (c.ntp, c.nref, c.nsys) == (0, 2, 0)
    # A zero-length event inside a segment (2500-2500) covers it: floor 2, ceil 3.
    c = segment_based_counts({"f": [(2500, 2500, "a")]}, {"f": [(2100, 2900, "a")]})
    assert (c.ntp, c.nref, c.nsys) == (1, 1, 1)
    # 0.5 s segments.
    c = segment_based_counts({"f": [(0, 1000, "a")]}, {"f": []}, time_resolution=0.5)
    assert c.nref == 2


def test_counts_add_and_report():
    c = SedCounts(1, 2, 3, 0, 1, 2) + SedCounts(1, 0, 0, 0, 0, 0)
    assert c == SedCounts(2, 2, 3, 0, 1, 2)
    d = c.as_dict()
    assert d["ntp"] == 2 and d["precision"] == 2 / 3 and d["recall"] == 1.0
    assert set(d) >= {"f_measure", "error_rate", "substitutions", "deletions", "insertions"}
    with pytest.raises(ValueError, match="both be False"):
        event_based_counts({}, {}, evaluate_onset=False, evaluate_offset=False)


# ------------------------------------------------------------------------ matching property
def brute_force_matching_size(edges: set[tuple[int, int]], n_left: int) -> int:
    best = 0
    by_left = [sorted(v for u, v in edges if u == left) for left in range(n_left)]

    def walk(left: int, used: frozenset, size: int) -> None:
        nonlocal best
        best = max(best, size)
        if left == n_left or size + (n_left - left) <= best:
            return
        for v in by_left[left]:
            if v not in used:
                walk(left + 1, used | {v}, size + 1)
        walk(left + 1, used, size)

    walk(0, frozenset(), 0)
    return best


@settings(max_examples=300, deadline=None)
@given(
    st.integers(0, 6).flatmap(
        lambda n: st.tuples(
            st.just(n),
            st.sets(st.tuples(st.integers(0, max(n - 1, 0)), st.integers(0, 6)), max_size=20),
        )
    )
)
def test_maximum_matching_is_maximum(arg):
    n_left, edges = arg
    edges = {(u, v) for u, v in edges if u < n_left}
    graph = {u: sorted(v for x, v in edges if x == u) for u in range(n_left)}
    graph = {u: vs for u, vs in graph.items() if vs}
    match = maximum_matching(graph)  # right -> left
    assert len(set(match.values())) == len(match)
    assert all((u, v) in edges for v, u in match.items())
    assert len(match) == brute_force_matching_size(edges, n_left)


def test_maximum_matching_long_augmenting_path_needs_no_recursion():
    # Left u < n neighbours rights u and u + 1, so the greedy start matches u-u and leaves
    # right n free; left n neighbours right 0 only. The one augmenting path, n-0-0-1-1-...-n,
    # is 2n + 1 edges long: a recursive search would pass Python's recursion limit.
    n = 3000
    graph = {u: [u, u + 1] for u in range(n)}
    graph[n] = [0]
    match = maximum_matching(graph)
    assert len(match) == n + 1
    assert match[0] == n and match[n] == n - 1


# ------------------------------------------------------------------------- median filter
def test_median_filter_by_hand():
    x = np.array([1.0, 5.0, 2.0, 8.0])[:, None]
    # Width 3, reflect: [1 | 1 5 2 8 | 8] -> medians of (1,1,5), (1,5,2), (5,2,8), (2,8,8).
    assert median_filter(x, 3).ravel().tolist() == [1.0, 2.0, 5.0, 8.0]
    # Width 2: offsets -1..0, upper middle: (1,1)->1, (1,5)->5, (5,2)->5, (2,8)->8.
    assert median_filter(x, 2).ravel().tolist() == [1.0, 5.0, 5.0, 8.0]
    # Width 4: offsets -2..1; t=0 sees (5,1,1,5) -> sorted 1 1 5 5 -> index 2 -> 5;
    # t=1 (1,1,5,2) -> 2; t=2 (1,5,2,8) -> 5; t=3 (5,2,8,8) -> 8.
    assert median_filter(x, 4).ravel().tolist() == [5.0, 2.0, 5.0, 8.0]
    # Width 9 > 2T: the reflection repeats with period 8 (1 5 2 8 8 2 5 1 ...); t=0 sees
    # 8 2 5 1 | 1 5 2 8 8 -> sorted 1 1 2 2 5 5 8 8 8 -> 5. (scipy gives 5 2 5 2.)
    assert median_filter(x, 9).ravel().tolist() == [5.0, 2.0, 5.0, 2.0]
    # Columns are filtered independently; the dtype is kept; width <= 1 is the identity.
    y = np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    out = median_filter(y, 3)
    assert out.dtype == np.float32
    assert out.tolist() == [[0.0, 1.0], [0.0, 1.0], [0.0, 1.0]]
    assert median_filter(y, 1) is y and median_filter(y, 0) is y
    assert median_filter(np.array([[3.0]]), 5).tolist() == [[3.0]]


def test_filter_width():
    ts = [0.0, 50.0, 100.0, 150.0]
    assert filter_width(250, ts) == 5
    assert filter_width(150, [0, 100, 200]) == 2  # round(1.5) = 2
    assert filter_width(250, [0, 100, 200]) == 2  # round(2.5) = 2: half to even
    assert filter_width(350, [0, 100, 200]) == 4  # round(3.5) = 4
    assert filter_width(0, ts) == 0
    assert filter_width(250, [10.0]) == 0
    with pytest.raises(ValueError):
        filter_width(-1, ts)


# ------------------------------------------------------------------------- frames -> events
TS = [0.0, 50.0, 100.0, 150.0, 200.0]
PROBS = np.array(
    [[0.6, 0.1], [0.6, 0.9], [0.2, 0.9], [0.7, 0.9], [0.1, 0.5]]  # 0.5 is not > 0.5
)


def test_frames_to_events_runs_and_min_duration():
    ev = frames_to_events(PROBS, TS, ["a", "b"], median_filter_ms=0, min_duration_ms=0)
    # a: frames 0-1 and 3 (a single frame: an event of length 0); b: frames 1-3.
    assert ev == [(0.0, 50.0, "a"), (50.0, 150.0, "b"), (150.0, 150.0, "a")]
    ev = frames_to_events(PROBS, TS, ["a", "b"], median_filter_ms=0, min_duration_ms=50)
    assert ev == [(0.0, 50.0, "a"), (50.0, 150.0, "b")]  # 50 >= 50 is kept
    ev = frames_to_events(PROBS, TS, ["a", "b"], median_filter_ms=0, min_duration_ms=100)
    assert ev == [(50.0, 150.0, "b")]
    # Same onset: label order.
    both = np.array([[0.9, 0.9], [0.9, 0.0]])
    ev = frames_to_events(both, [0, 50], ["x", "y"], median_filter_ms=0, min_duration_ms=0)
    assert ev == [(0.0, 50.0, "x"), (0.0, 0.0, "y")]
    # A threshold parameter, strict.
    ev = frames_to_events(
        PROBS, TS, ["a", "b"], threshold=0.6, median_filter_ms=0, min_duration_ms=0
    )
    assert ev == [(50.0, 150.0, "b"), (150.0, 150.0, "a")]


def test_frames_to_events_median_filter():
    # 150 ms at a 50 ms hop is a 3-frame filter: the one-frame dip at frame 2 is filled and
    # the one-frame blip at frame 7 removed; raw runs 0-1, 3-4, 7 become one run 0-4.
    p = np.array([[1.0], [1.0], [0.0], [1.0], [1.0], [0.0], [0.0], [1.0], [0.0], [0.0]])
    ts = [50.0 * t for t in range(10)]
    ev = frames_to_events(p, ts, ["a"], median_filter_ms=150, min_duration_ms=0)
    assert ev == [(0.0, 200.0, "a")]
    ev = frames_to_events(p, ts, ["a"], median_filter_ms=40, min_duration_ms=0)  # width 1
    assert len(ev) == 3


def test_frames_to_events_errors():
    with pytest.raises(ValueError, match="strictly increasing"):
        frames_to_events(
            PROBS, [0, 50, 50, 100, 150], ["a", "b"], median_filter_ms=0, min_duration_ms=0
        )
    with pytest.raises(ValueError, match="labels"):
        frames_to_events(PROBS, TS, ["a"], median_filter_ms=0, min_duration_ms=0)
    bad = PROBS.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        frames_to_events(bad, TS, ["a", "b"], median_filter_ms=0, min_duration_ms=0)
    assert (
        frames_to_events(np.zeros((0, 2)), [], ["a", "b"], median_filter_ms=250, min_duration_ms=0)
        == []
    )


# -------------------------------------------------------------------------------------- grid
def test_postprocessing_grid():
    assert postprocessing_grid(None) == [PostProcessing(250.0, 125.0), PostProcessing(250.0, 250.0)]
    assert DEFAULT_POSTPROCESSING_GRID == {
        "median_filter_ms": [250.0],
        "min_duration": [125.0, 250.0],
    }
    spec = {"min_duration": [60, 0], "median_filter_ms": [0, 150]}  # key order is irrelevant
    assert postprocessing_grid(spec) == [
        PostProcessing(0.0, 60.0),
        PostProcessing(0.0, 0.0),
        PostProcessing(150.0, 60.0),
        PostProcessing(150.0, 0.0),
    ]
    with pytest.raises(ValueError, match="'hop_ms'"):
        postprocessing_grid({"median_filter_ms": [0], "min_duration": [0], "hop_ms": [1]})
    with pytest.raises(ValueError, match="'min_duration' is empty"):
        postprocessing_grid({"median_filter_ms": [0], "min_duration": []})
    with pytest.raises(ValueError, match="lacks 'min_duration'"):
        postprocessing_grid({"median_filter_ms": [0]})
    for bad in (-1, math.nan, math.inf, True, "10"):
        with pytest.raises(ValueError):
            postprocessing_grid({"median_filter_ms": [bad], "min_duration": [0]})
    with pytest.raises(ValueError, match="must be a list"):
        postprocessing_grid({"median_filter_ms": 250, "min_duration": [0]})


def _validation_set():
    # One file, 30 frames at 50 ms: a real event (frames 2-7, 100-350 ms) and a one-frame
    # blip (frame 25, 1250 ms, in the second 1 s segment).
    ts = [50.0 * t for t in range(30)]
    p = np.zeros((30, 1))
    p[2:8, 0] = 0.9
    p[25, 0] = 0.8
    reference = {"f": [(100.0, 350.0, "a")]}
    return {"f": p}, {"f": ts}, reference


def test_choose_postprocessing_scores_and_ties():
    probs, ts, reference = _validation_set()
    grid = [PostProcessing(0, 0), PostProcessing(0, 50), PostProcessing(0, 100)]
    # min 0: the blip (1250-1250) is an insertion -> F 2/3; min 50 and 100 drop it -> F 1, a tie
    # that the first of the two in grid order wins.
    choice = choose_postprocessing(probs, ts, reference, ["a"], ONSET_200, grid)
    assert choice.best == PostProcessing(0, 50) and choice.score == 1.0
    assert [s for _, s in choice.scores] == pytest.approx([2 / 3, 1.0, 1.0])
    choice = choose_postprocessing(probs, ts, reference, ["a"], ONSET_200, grid[::-1])
    assert choice.best == PostProcessing(0, 100)
    # The scores equal scoring frames_to_events directly.
    for point, value in choice.scores:
        ev = frames_to_events(
            probs["f"],
            ts["f"],
            ["a"],
            median_filter_ms=point.median_filter_ms,
            min_duration_ms=point.min_duration_ms,
        )
        assert value == score_events(ONSET_200, reference, {"f": ev})
    # A minimised score picks the smallest error rate: again min 50 (ER 0 vs 1 insertion).
    choice = choose_postprocessing(probs, ts, reference, ["a"], "segment_1s_er", grid)
    assert choice.best == PostProcessing(0, 50) and choice.score == 0.0


def test_choose_postprocessing_nan_counts_as_zero():
    probs, ts, reference = _validation_set()
    # A 300 ms minimum drops everything: no predictions, F NaN -> 0.0; a 250 ms minimum keeps
    # the real event (100-350 ms): F 1.
    grid = [PostProcessing(0, 300), PostProcessing(0, 250)]
    choice = choose_postprocessing(probs, ts, reference, ["a"], ONSET_200, grid)
    assert choice.scores[0][1] == 0.0
    assert choice.best == PostProcessing(0, 250)
    # Default grid (250 ms filter = 5 frames, then 125 / 250 ms minimum) runs too.
    choice = choose_postprocessing(probs, ts, reference, ["a"], ONSET_200)
    assert [p for p, _ in choice.scores] == postprocessing_grid(None)


# ----------------------------------------------------------------- sed_eval / scipy values
def _check_event_case(case: dict, labels: list[str]) -> None:
    ref = {f: [tuple(e) for e in ev] for f, ev in case["reference"].items()}
    est = {f: [tuple(e) for e in ev] for f, ev in case["predicted"].items()}
    for name, expected in case["expected"].items():
        c = sed_breakdown(name, ref, est, labels)
        got = (c.ntp, c.nref, c.nsys, c.substitutions, c.deletions, c.insertions)
        assert list(got) == expected["counts"], (name, case)
        rates = (c.precision, c.recall, c.f_measure, c.substitution_rate, c.deletion_rate)
        rates += (c.insertion_rate, c.error_rate)
        for ours, theirs in zip(rates, expected["rates"], strict=True):
            if theirs is None:
                assert math.isnan(ours), (name, case)
            else:
                assert ours == theirs, (name, ours, theirs, case)
        metric = SCORES[name].metric
        value = score_events(name, ref, est, labels)
        want = expected["rates"][2 if metric == "f_measure" else 6]
        assert (math.isnan(value) and want is None) or value == want


def _check_median_case(case: dict) -> None:
    out = median_filter(np.asarray(case["x"], dtype=np.float64), case["width"])
    assert out.tolist() == case["expected"], case


def _check_frames_case(case: dict) -> None:
    ev = frames_to_events(
        np.asarray(case["probs"]),
        case["timestamps"],
        case["labels"],
        median_filter_ms=case["median_filter_ms"],
        min_duration_ms=case["min_duration_ms"],
    )
    assert [list(e) for e in ev] == case["expected"], case


@pytest.fixture(scope="module")
def stored_cases() -> dict:
    return json.loads(CASES.read_text())


def test_stored_sed_eval_event_cases(stored_cases):
    cases = stored_cases["event_cases"]
    assert len(cases) >= 200
    for case in cases:
        _check_event_case(case, stored_cases["labels"])
    # The cases do exercise the corners: NaN F, substitutions, missing prediction files.
    nan_f = sum(c["expected"][ONSET_200]["rates"][2] is None for c in cases)
    subs = sum(c["expected"][ONSET_200]["counts"][3] > 0 for c in cases)
    missing = sum(set(c["predicted"]) != set(c["reference"]) for c in cases)
    assert nan_f > 0 and subs > 0 and missing > 0


def test_stored_scipy_median_cases(stored_cases):
    for case in stored_cases["median_filter_cases"]:
        _check_median_case(case)
    assert any(c["width"] > 2 * len(c["x"]) for c in stored_cases["median_filter_cases"])


def test_stored_frames_to_events_cases(stored_cases):
    for case in stored_cases["frames_to_events_cases"]:
        _check_frames_case(case)


def test_live_sed_eval_and_scipy():
    pytest.importorskip("sed_eval", reason="sed_eval is not installed (not an axlstm dependency)")
    pytest.importorskip("scipy", reason="scipy is not installed (not an axlstm dependency)")
    spec = importlib.util.spec_from_file_location("sed_eval_crosscheck", GENERATOR)
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    data = gen.build(seed=7, n_events=60, n_median=40, n_frames=20)
    for case in data["event_cases"]:
        _check_event_case(case, data["labels"])
    for case in data["median_filter_cases"]:
        _check_median_case(case)
    for case in data["frames_to_events_cases"]:
        _check_frames_case(case)


def test_stored_cases_are_small_and_portable():
    text = CASES.read_text()
    assert len(text.encode()) < 300_000
    for marker in ("/work/", "/tmp/", "/home/", "\\\\"):
        assert marker not in text
    assert "/work/" not in GENERATOR.read_text() and "/tmp/" not in GENERATOR.read_text()


def test_product_order_matches_itertools():
    spec = {"median_filter_ms": [0, 60, 150], "min_duration": [0, 60]}
    want = [PostProcessing(m, d) for m, d in itertools.product([0, 60, 150], [0, 60])]
    assert postprocessing_grid(spec) == want
