"""Reference values of the event scores and the median filter from sed_eval and scipy, for
``tests/test_sed_scores.py``.

Needs an interpreter with sed_eval 0.2.1 (and dcase_util) and scipy, which axlstm does not
depend on; axlstm itself is not imported. Draws random cases with a fixed seed and writes what
sed_eval and scipy make of them to ``tests/data/sed_eval_cases.json``:

* ``event_cases``: event lists of a few files and labels (boundary-close onsets and offsets,
  splits, merges, wrong labels, overlapping estimates, empty files, a file missing from the
  predictions) scored with sed_eval exactly as hear-eval-kit calls it: one
  ``MetaDataContainer`` of ``{"event_label", "event_onset": start / 1000.0, "event_offset":
  end / 1000.0, "file"}`` items per side, evaluated file by file (``filter(filename=...)``),
  every reference file once;
* ``median_filter_cases``: ``scipy.ndimage.median_filter(x, size=(w, 1))`` of small arrays,
  widths up to beyond twice the length (but below 8 times, see ``make_median_cases``);
* ``frames_to_events_cases``: events of frame probabilities by a plain loop over frames after
  scipy's median filter (the recipe of hear-eval-kit's ``create_events_from_prediction``).

    python benchmarks/sed_eval_crosscheck.py            # rewrites tests/data/sed_eval_cases.json
    python benchmarks/sed_eval_crosscheck.py --check    # compares with the stored file
"""

from __future__ import annotations

import argparse
import json
import math
import random
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "sed_eval_cases.json"
SEED = 20240611
LABELS = ["a", "b", "c"]

#: The named scores and their sed_eval parameters (hear-eval-kit's ``available_scores``).
SCORES = {
    "event_onset_200ms_fms": ("event", {"evaluate_onset": True, "evaluate_offset": False,
                                        "t_collar": 0.2, "percentage_of_length": 0.5}),
    "event_onset_50ms_fms": ("event", {"evaluate_onset": True, "evaluate_offset": False,
                                       "t_collar": 0.05}),
    "event_onset_offset_50ms_20perc_fms": ("event", {"evaluate_onset": True,
                                                     "evaluate_offset": True, "t_collar": 0.05,
                                                     "percentage_of_length": 0.2}),
    "segment_1s_er": ("segment", {"time_resolution": 1.0}),
    "segment_1s_f1": ("segment", {"time_resolution": 1.0}),
}  # fmt: skip


# ------------------------------------------------------------------------------- random cases
def _time(rng: random.Random) -> float:
    """An onset in ms: on the 50 ms grid, whole ms, or with fractions of a ms."""
    kind = rng.random()
    if kind < 0.4:
        return 50.0 * rng.randint(0, 100)
    if kind < 0.7:
        return float(rng.randint(0, 5000))
    return round(rng.uniform(0, 5000), rng.choice([1, 2, 3]))


def _duration(rng: random.Random) -> float:
    kind = rng.random()
    if kind < 0.1:
        return 0.0
    if kind < 0.5:
        return 50.0 * rng.randint(1, 40)
    return round(rng.uniform(1, 3000), rng.choice([0, 1, 3]))


def _near(rng: random.Random, t: float, length: float) -> float:
    """A time close to ``t``: exactly at, or just inside or outside, a collar or 20 % of
    ``length``; or a random shift."""
    base = rng.choice([0.0, 50.0, 200.0, 0.2 * length, 0.5 * length])
    nudge = rng.choice([0.0, 0.0, 1.0, -1.0, 0.001, -0.001, 1e-9, rng.uniform(-300, 300)])
    return max(0.0, t + rng.choice([-1.0, 1.0]) * base + nudge)


def _estimates(rng: random.Random, refs: list[list]) -> list[list]:
    est = []
    for onset, offset, label in refs:
        roll = rng.random()
        if roll < 0.15:
            continue  # missed
        length = offset - onset
        copies = 2 if roll > 0.85 else 1  # a split (or a duplicate)
        for _ in range(copies):
            new_on = _near(rng, onset, length) if rng.random() < 0.8 else onset
            new_off = _near(rng, offset, length) if rng.random() < 0.8 else offset
            new_on, new_off = min(new_on, new_off), max(new_on, new_off)
            new_label = label if rng.random() < 0.8 else rng.choice(LABELS)
            est.append([new_on, new_off, new_label])
    if len(refs) >= 2 and rng.random() < 0.2:  # one estimate spanning two references (merge)
        a, b = rng.sample(refs, 2)
        est.append([min(a[0], b[0]), max(a[1], b[1]), a[2]])
    for _ in range(rng.choice([0, 0, 1, 2])):  # insertions, possibly overlapping others
        onset = _time(rng)
        est.append([onset, onset + _duration(rng), rng.choice(LABELS)])
    rng.shuffle(est)
    return est


def make_event_cases(seed: int, n: int) -> list[dict]:
    """``n`` random cases ``{"reference": {file: events}, "predicted": {file: events}}``,
    events ``[start_ms, end_ms, label]``."""
    rng = random.Random(seed)
    cases = []
    for _ in range(n):
        reference, predicted = {}, {}
        for f in range(rng.randint(1, 3)):
            name = f"file{f}.wav"
            k = rng.choice([0, 1, 1, 2, 3, 4, 6])
            refs = []
            for _ in range(k):
                onset = _time(rng)
                refs.append([onset, onset + _duration(rng), rng.choice(LABELS)])
            if k >= 2 and rng.random() < 0.3:  # two references close together
                onset, offset, label = refs[0]
                shifted = onset + rng.choice([10.0, 40.0, 150.0, 250.0])
                refs[1] = [shifted, max(offset, shifted) + 100.0, label]
            reference[name] = refs
            if rng.random() < 0.05:
                continue  # no predictions for this file
            predicted[name] = [] if rng.random() < 0.1 else _estimates(rng, refs)
        cases.append({"reference": reference, "predicted": predicted})
    return cases


def make_median_cases(seed: int, n: int) -> list[dict]:
    rng = random.Random(seed)
    cases = []
    for _ in range(n):
        T, C = rng.randint(1, 12), rng.randint(1, 3)
        width = rng.choice([1, 2, 3, 4, 5, 6, 7, rng.randint(1, 2 * T + 4), rng.randint(8, 30)])
        if T > 1:
            # From 8T on, scipy's C code maps window positions -2kT (k >= 2) to row -1 and reads
            # memory outside the array: no defined value to compare with.
            width = min(width, 8 * T - 1)
        if rng.random() < 0.5:
            x = [[rng.choice([0.0, 0.25, 0.5, 0.75, 1.0]) for _ in range(C)] for _ in range(T)]
        else:
            x = [[round(rng.random(), 3) for _ in range(C)] for _ in range(T)]
        cases.append({"x": x, "width": width})
    return cases


def make_frame_cases(seed: int, n: int) -> list[dict]:
    rng = random.Random(seed)
    cases = []
    for _ in range(n):
        T, C = rng.randint(1, 40), rng.randint(1, 3)
        hop = rng.choice([50.0, 25.0, 40.0, 12.5])
        start = rng.choice([0.0, 25.0, 12.5])
        timestamps = [start + hop * t for t in range(T)]
        probs = [[round(rng.random(), 2) for _ in range(C)] for _ in range(T)]
        cases.append(
            {
                "probs": probs,
                "timestamps": timestamps,
                "labels": LABELS[:C],
                "median_filter_ms": rng.choice([0.0, 60.0, 100.0, 150.0, 250.0]),
                "min_duration_ms": rng.choice([0.0, 50.0, 60.0, 125.0, 250.0]),
            }
        )
    return cases


# ------------------------------------------------------------------------------ sed_eval / scipy
def _container(events_by_file: dict):
    from dcase_util.containers import MetaDataContainer

    items = []
    for filename, events in events_by_file.items():
        for start, end, label in events:
            items.append(
                {
                    "event_label": str(label),
                    "event_onset": start / 1000.0,
                    "event_offset": end / 1000.0,
                    "file": filename,
                }
            )
    return MetaDataContainer(items)


def _nan_to_none(x):
    x = float(x)
    return None if math.isnan(x) else x


def sed_eval_scores(case: dict) -> dict:
    """Every named score of one case by sed_eval: counts [Ntp, Nref, Nsys, S, D, I] and rates
    [precision, recall, f_measure, substitution, deletion, insertion and error rates]."""
    import sed_eval

    reference = _container(case["reference"])
    estimated = _container(case["predicted"])
    out = {}
    for name, (kind, params) in SCORES.items():
        if kind == "event":
            metrics = sed_eval.sound_event.EventBasedMetrics(event_label_list=LABELS, **params)
        else:
            metrics = sed_eval.sound_event.SegmentBasedMetrics(event_label_list=LABELS, **params)
        for filename in case["reference"]:
            metrics.evaluate(
                reference_event_list=reference.filter(filename=filename),
                estimated_event_list=estimated.filter(filename=filename),
            )
        o = metrics.overall
        if kind == "event":
            counts = [o["Ntp"], o["Nref"], o["Nsys"], o["Nsubs"], o["Nfn"], o["Nfp"]]
        else:
            counts = [o["Ntp"], o["Nref"], o["Nsys"], o["S"], o["D"], o["I"]]
        overall = metrics.results_overall_metrics()
        fm, er = overall["f_measure"], overall["error_rate"]
        rates = [fm["precision"], fm["recall"], fm["f_measure"], er["substitution_rate"]]
        rates += [er["deletion_rate"], er["insertion_rate"], er["error_rate"]]
        out[name] = {
            "counts": [int(c) for c in counts],
            "rates": [_nan_to_none(r) for r in rates],
        }
    return out


def scipy_median(case: dict) -> list:
    import numpy as np
    from scipy.ndimage import median_filter

    x = np.asarray(case["x"], dtype=np.float64)
    return median_filter(x, size=(case["width"], 1)).tolist()


def loop_events(case: dict) -> list:
    """Events of one frame case by a loop over frames (scipy's filter, then runs)."""
    import numpy as np
    from scipy.ndimage import median_filter

    ts = np.asarray(case["timestamps"], dtype=np.float64)
    probs = np.asarray(case["probs"], dtype=np.float64)
    if case["median_filter_ms"] and len(ts) > 1:
        width = int(round(case["median_filter_ms"] / np.mean(np.diff(ts))))  # noqa: RUF046 (as the kit)
        if width:
            probs = median_filter(probs, size=(width, 1))
    events = []
    for c, label in enumerate(case["labels"]):
        t = 0
        while t < len(ts):
            if probs[t, c] > 0.5:
                first = t
                while t + 1 < len(ts) and probs[t + 1, c] > 0.5:
                    t += 1
                if ts[t] - ts[first] >= case["min_duration_ms"]:
                    events.append([float(ts[first]), float(ts[t]), label])
            t += 1
    events.sort(key=lambda e: e[0])  # stable: ties stay in label order
    return events


def build(seed: int = SEED, n_events: int = 200, n_median: int = 80, n_frames: int = 40) -> dict:
    import dcase_util
    import scipy
    import sed_eval

    event_cases = make_event_cases(seed, n_events)
    for case in event_cases:
        case["expected"] = sed_eval_scores(case)
    median_cases = make_median_cases(seed + 1, n_median)
    for case in median_cases:
        case["expected"] = scipy_median(case)
    frame_cases = make_frame_cases(seed + 2, n_frames)
    for case in frame_cases:
        case["expected"] = loop_events(case)
    return {
        "about": "reference values from benchmarks/sed_eval_crosscheck.py; NaN is null",
        "versions": {
            "sed_eval": getattr(sed_eval, "__version__", "0.2.1"),
            "dcase_util": getattr(dcase_util, "__version__", "?"),
            "scipy": scipy.__version__,
        },
        "seed": seed,
        "labels": LABELS,
        "event_cases": event_cases,
        "median_filter_cases": median_cases,
        "frames_to_events_cases": frame_cases,
    }


def _dump(data: dict) -> str:
    # One case per line keeps the file small and its diffs readable.
    lines = ["{"]
    keys = list(data)
    for k, key in enumerate(keys):
        end = "," if k < len(keys) - 1 else ""
        value = data[key]
        if isinstance(value, list) and value and isinstance(value[0], dict):
            lines.append(f"{json.dumps(key)}: [")
            for i, case in enumerate(value):
                sep = "," if i < len(value) - 1 else ""
                lines.append(json.dumps(case, separators=(",", ":"), allow_nan=False) + sep)
            lines.append("]" + end)
        else:
            lines.append(f"{json.dumps(key)}: {json.dumps(value, allow_nan=False)}{end}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare with the stored file")
    args = parser.parse_args()
    text = _dump(build())
    if args.check:
        same = OUT.read_text() == text
        print("stored cases match" if same else "stored cases DIFFER")
        raise SystemExit(0 if same else 1)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)
    print(f"wrote {OUT.relative_to(OUT.parents[2])} ({len(text) // 1024} KiB)")


if __name__ == "__main__":
    main()
