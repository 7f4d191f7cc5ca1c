"""Finished (model, task) results, one JSON line each, so that an evaluation keeps its work.

``REPORT_DIR/results.jsonl`` gets a line as soon as a model is done with a task (appended,
flushed and synced): on Ctrl-C, SIGTERM, a crash or a power loss every finished result is on
disk. Running the same evaluation again reuses each result whose **fingerprint** matches and
computes only the rest. The fingerprint is the SHA-256 of

* the embedding cache key (the embedder: config, weights, front end, embedding options; the
  task: metadata, vocabulary, split files, audio file stats; see :mod:`.cache`),
* the probe configuration and the seeds, and a format version (for event tasks the frame
  embeddings' key and the post-processing grid),

which together decide the scores (the number of parallel jobs does not). Only successful
results are reused; failed ones are computed again. A line cut short by a crash is skipped
with a warning.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from axlstm.core.errors import OutputError
from axlstm.core.fileio import check_input_file
from axlstm.evaluation.cache import cache_key, task_fingerprint
from axlstm.evaluation.embedders import Embedder
from axlstm.evaluation.probe import ProbeConfig
from axlstm.evaluation.report import Outcome
from axlstm.evaluation.tasks import Task

__all__ = ["RESULTS_LOG", "ResultLog", "outcome_fingerprint"]

logger = logging.getLogger(__name__)

#: The file name in the report folder.
RESULTS_LOG = "results.jsonl"
#: Bump when the probe or the scores change what they compute, to retire every old line.
RESULT_FORMAT = 1


def outcome_fingerprint(
    embedder: Embedder, task: Task, seeds: Sequence[int], probe: ProbeConfig
) -> str:
    """What decides a (model, task) result: embeddings, probe settings and seeds."""
    event = task.is_event
    extra = {"postprocessing": [asdict(p) for p in task.postprocessing()]} if event else {}
    blob = json.dumps(
        {
            "format": RESULT_FORMAT,
            "embeddings": cache_key(embedder.fingerprint(timestamps=event), task_fingerprint(task)),
            "probe": asdict(probe),
            "seeds": [int(s) for s in seeds],
            **extra,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def _finite_scores(scores: Any) -> bool:
    return (
        isinstance(scores, list)
        and bool(scores)
        and all(
            isinstance(s, (int, float)) and not isinstance(s, bool) and math.isfinite(s)
            for s in scores
        )
    )


class ResultLog:
    """The results of finished (model, task) pairs in ``out_dir/results.jsonl``.

    Args:
        out_dir: the report folder (must exist and be writable).
        resume: read the successful results already there, for :meth:`lookup`; False ignores
            them (they stay in the file, and new lines are appended).
    """

    def __init__(self, out_dir: str | Path, *, resume: bool = True) -> None:
        self.path = Path(out_dir) / RESULTS_LOG
        self._done: dict[str, dict[str, Any]] = {}
        self._needs_newline = False
        if os.path.lexists(self.path):
            self._read(resume)

    def __len__(self) -> int:
        return len(self._done)

    def _read(self, resume: bool) -> None:
        try:
            check_input_file(self.path, "results log")
            data = self.path.read_bytes()
        except (OSError, ValueError) as err:
            raise OutputError(f"cannot use the results log {self.path}: {err}") from None
        self._needs_newline = bool(data) and not data.endswith(b"\n")
        if not resume:
            return
        text = data.decode("utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, RecursionError):
                logger.warning("%s:%d: unreadable line skipped (cut short?)", self.path, number)
                continue
            if (
                isinstance(record, dict)
                and record.get("format") == RESULT_FORMAT
                and isinstance(record.get("fingerprint"), str)
                and record.get("error") is None
                and _finite_scores(record.get("scores"))
                and isinstance(record.get("extra", {}), dict)
            ):
                self._done[record["fingerprint"]] = record

    def lookup(self, fingerprint: str) -> Outcome | None:
        """The finished outcome with this fingerprint, or None."""
        record = self._done.get(fingerprint)
        if record is None:
            return None
        extra = dict(record.get("extra") or {})
        extra["reused_from"] = str(self.path)
        return Outcome(
            metric=record.get("metric"),
            scores=[float(s) for s in record["scores"]],
            extra=extra,
        )

    def append(self, model: str, task: str, fingerprint: str, outcome: Outcome) -> None:
        """Add a finished outcome, on disk before this returns.

        Raises:
            OutputError: the line cannot be written (the message names the file).
        """
        record = {
            "format": RESULT_FORMAT,
            "model": model,
            "task": task,
            "fingerprint": fingerprint,
            "metric": outcome.metric,
            "scores": list(outcome.scores),
            "error": outcome.error,
            "extra": outcome.extra,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        line = json.dumps(record, default=str) + "\n"
        if self._needs_newline:
            line = "\n" + line  # after a line cut short, start a fresh one
        try:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
        except OSError as err:
            raise OutputError(f"cannot write {self.path}: {err.strerror or err}") from err
        self._needs_newline = False
        if outcome.ok:
            self._done[fingerprint] = record
