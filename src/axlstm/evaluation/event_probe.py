"""Frame probes for event (timestamp) tasks, scored as hear-eval-kit scores them.

* Inputs: the task's timestamp embeddings (:func:`~axlstm.evaluation.cache.task_frames`), every
  frame of every training file one example. A frame's target holds the labels of the events
  whose ``[start, end]`` contains its timestamp (ends included, as the kit's interval tree with
  its +0.0001 ms).
* Network, loss and training: the scene probe's (:mod:`.probe`) with sigmoid outputs and BCE,
  whatever the task's ``prediction_type`` (a frame may hold no event).
* Scoring a set of frame probabilities (every validation check, and the test): per file, each
  post-processing point of the grid (median filter, minimum duration; :mod:`.postprocess`)
  turns them into events (threshold 0.5), and the task's scores are computed over all files
  as sed_eval does (:mod:`.sed`). A score that is undefined (NaN: no events predicted, or none
  in the reference) counts as 0.0, as in the kit.
* Early stopping: on the primary score with the best grid point (DCASE 2016 task 2), or on the
  validation loss when the task sets ``use_scoring_for_early_stopping: false`` (MAESTRO). Either
  way the post-processing tested is the one that scored best on validation at the best check.
* Events in the task files: those of one label that overlap are merged
  (:meth:`~axlstm.evaluation.tasks.Task.events`); an event starting after its clip ends is an
  error naming the file; one ending after it is cut at the clip's end (counted in the log).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from axlstm.evaluation.cache import FrameSet
from axlstm.evaluation.postprocess import PostProcessing, frames_to_events
from axlstm.evaluation.probe import ProbeData
from axlstm.evaluation.sed import SCORES as SED_SCORES
from axlstm.evaluation.sed import score_events
from axlstm.evaluation.tasks import DataSplit, Event, Task, TaskFormatError

__all__ = [
    "EventScoring",
    "event_probe_data",
    "events_as_json",
    "frame_targets",
    "reference_events",
]

logger = logging.getLogger(__name__)

THRESHOLD = 0.5


def reference_events(task: Task, split: str, frames: FrameSet) -> dict[str, list[Event]]:
    """The split's events per file (merged as :meth:`Task.events`), ends cut at the clip's end.

    Raises:
        TaskFormatError: an event starts after its clip ends (the message names the file).
    """
    events = task.events(split)
    out: dict[str, list[Event]] = {}
    cut = 0
    for name, seconds in zip(frames.files, frames.durations, strict=True):
        length_ms = 1000.0 * float(seconds)
        kept = []
        for start, end, label in events[name]:
            if start > length_ms:
                raise TaskFormatError(
                    f"{task.audio_path(split, name)}: the event {label!r} at {start:g}-{end:g} ms "
                    f"starts after the clip ends ({length_ms:.1f} ms); check {split}.json"
                )
            if end > length_ms:
                cut += 1
                end = length_ms
            kept.append((start, end, label))
        out[name] = kept
    if cut:
        logger.info(
            "%s/%s: %d events end after their clip; cut at the clip's end", task.name, split, cut
        )
    return out


def frame_targets(
    labels: Sequence[str], frames: FrameSet, events: dict[str, list[Event]]
) -> np.ndarray:
    """(frames, C) float32 multi-hot targets: label c at a frame whose timestamp lies in
    ``[start, end]`` of an event of c in its file."""
    index = {label: i for i, label in enumerate(labels)}
    y = np.zeros((frames.x.shape[0], len(labels)), dtype=np.float32)
    for name, part in zip(frames.files, frames.file_slices(), strict=True):
        ts = frames.timestamps[part]
        rows = y[part]
        for start, end, label in events[name]:
            rows[(ts >= start) & (ts <= end), index[label]] = 1.0
    return y


def _hear_value(value: float) -> float:
    """NaN (nothing predicted, or nothing to find) counts as 0.0, as in hear-eval-kit."""
    return 0.0 if math.isnan(value) else float(value)


class EventScoring:
    """Scores frame probabilities of the validation and test files of one data split as events
    (see the module doc); a :class:`~axlstm.evaluation.probe.Scoring`.

    Args:
        names: score names, primary first (keys of :data:`axlstm.evaluation.sed.SCORES`).
        labels: the label vocabulary (column order of the probabilities).
        grid: post-processing points to choose from on validation.
        valid, test: frames of the validation and test files.
        valid_events, test_events: their reference events per file.
    """

    def __init__(
        self,
        names: Sequence[str],
        labels: Sequence[str],
        grid: Sequence[PostProcessing],
        valid: FrameSet,
        valid_events: dict[str, list[Event]],
        test: FrameSet,
        test_events: dict[str, list[Event]],
    ) -> None:
        if not grid:
            raise ValueError("the post-processing grid is empty")
        self.names = list(names)
        self.labels = list(labels)
        self.grid = list(grid)
        self.valid_frames, self.valid_events = valid, valid_events
        self.test_frames, self.test_events = test, test_events
        self.maximize = SED_SCORES[self.names[0]].maximize

    def events(
        self, probs: torch.Tensor | np.ndarray, frames: FrameSet, post: PostProcessing
    ) -> dict[str, list[Event]]:
        """Events per file from frame probabilities (frames, C) of ``frames``' files."""
        p = probs.detach().cpu().numpy() if isinstance(probs, torch.Tensor) else probs
        out = {}
        for name, part in zip(frames.files, frames.file_slices(), strict=True):
            out[name] = frames_to_events(
                p[part],
                frames.timestamps[part],
                self.labels,
                threshold=THRESHOLD,
                median_filter_ms=post.median_filter_ms,
                min_duration_ms=post.min_duration_ms,
            )
        return out

    def scores(
        self, predicted: dict[str, list[Event]], reference: dict[str, list[Event]]
    ) -> dict[str, float]:
        return {n: _hear_value(score_events(n, reference, predicted)) for n in self.names}

    def valid(self, probs: torch.Tensor) -> tuple[float, dict[str, float], Any]:
        best: tuple[float, dict[str, float], PostProcessing] | None = None
        for post in self.grid:
            predicted = self.events(probs, self.valid_frames, post)
            scores = self.scores(predicted, self.valid_events)
            primary = scores[self.names[0]]
            value = primary if self.maximize else -primary
            if best is None or value > best[0]:  # the first best point on ties
                best = (value, scores, post)
        assert best is not None
        return best

    def test(self, probs: torch.Tensor, chosen: Any) -> tuple[dict[str, float], Any]:
        post = chosen if chosen is not None else self.grid[0]
        predicted = self.events(probs, self.test_frames, post)
        return self.scores(predicted, self.test_events), predicted


def event_probe_data(task: Task, frames: dict[str, FrameSet]) -> ProbeData:
    """The probe inputs of an event task: frames and frame targets by split, and the event
    scoring of each data split."""
    task.require_event()
    events = {s: reference_events(task, s, frames[s]) for s in task.splits}
    grid = task.postprocessing()

    def make_scoring(split: DataSplit) -> EventScoring:
        def joined(names: Sequence[str]) -> tuple[FrameSet, dict[str, list[Event]]]:
            refs: dict[str, list[Event]] = {}
            for n in names:
                refs.update(events[n])
            return FrameSet.concat([frames[n] for n in names]), refs

        valid, valid_events = joined(split.valid)
        test, test_events = joined(split.test)
        return EventScoring(task.scores, task.labels, grid, valid, valid_events, test, test_events)

    return ProbeData(
        x={s: frames[s].x for s in task.splits},
        y={s: frame_targets(task.labels, frames[s], events[s]) for s in task.splits},
        prediction_type="multilabel",
        scores=task.scores,
        splits=task.data_splits(),
        monitor_score=task.monitor_score,
        make_scoring=make_scoring,
    )


def events_as_json(events: dict[str, list[Event]]) -> dict[str, list[dict[str, Any]]]:
    """Events per file in HEAR's format ``{file: [{"label", "start", "end"}, ...]}`` (ms)."""
    return {
        name: [{"label": label, "start": float(a), "end": float(b)} for a, b, label in evs]
        for name, evs in events.items()
    }
