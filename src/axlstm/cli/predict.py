"""``axlstm predict``: label audio files with a fine-tuned classifier release.

Outputs (see docs/finetuning.md, "Prediction"):

* ``.csv``: one row per input file, in input order: ``file``, ``duration`` (seconds),
  ``label_1``, ``score_1``, ... ``label_k``, ``score_k``, ``error``. A file that failed has
  empty label and score cells and its reason in ``error``. With ``--timeline`` a second file
  ``OUT.timeline.csv`` (``preds.csv`` -> ``preds.timeline.csv``) holds one row per window:
  ``file``, ``start``, ``end`` (seconds), then the window's top k as above.
* ``.jsonl``: one JSON object per input file, in input order: ``{"file", "duration",
  "labels", "scores"}`` (with ``--timeline`` also ``"timeline"``: a list of ``{"start", "end",
  "labels", "scores"}``), or ``{"file", "error"}`` for a file that failed.

Rows are written as files are labelled, into ``OUT.partial`` (and ``OUT.timeline.csv.partial``)
renamed to ``OUT`` when every file is done; after Ctrl-C or an error the partial file keeps the
finished rows. ``--out`` is checked for writability before the model is loaded. Exit code 0
when at least one file was labelled, 1 when every file failed.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import logging
import os
import sys
from pathlib import Path

from axlstm.cli.common import parse_device, positive_int
from axlstm.core.errors import OutputError, UsageError
from axlstm.core.fileio import check_output_file
from axlstm.core.interrupt import interrupts_deferred
from axlstm.embedding import collect_inputs
from axlstm.finetune.predict import Prediction, iter_file_predictions
from axlstm.finetune.release import load_classifier

logger = logging.getLogger(__name__)

FORMATS = (".csv", ".jsonl")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "predict",
        help="label audio files with a fine-tuned classifier",
        description=(
            "Label audio files (any format libsndfile reads, any length, rate and channel "
            "count) with a classifier release written by fine-tuning. INPUTs are files, "
            "folders (searched recursively) or manifests. Long files are cut into windows of "
            "the clip length the model was fine-tuned at (half-window hop) and their scores "
            "averaged. Files that cannot be labelled are listed in the output with their "
            "reason. Exit code 0 when at least one file was labelled, 1 when all failed."
        ),
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="audio file, folder or manifest")
    p.add_argument("--model", required=True, help="classifier release folder")
    p.add_argument("--out", required=True, type=Path, help="output file: .csv or .jsonl")
    p.add_argument("--top-k", type=positive_int, default=5, help="labels per file (default 5)")
    p.add_argument(
        "--timeline",
        action="store_true",
        help="also give the scores of every window (JSONL: in each object; CSV: OUT.timeline.csv)",
    )
    p.add_argument(
        "--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda if available)"
    )
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=16,
        help="windows per forward pass (default 16)",
    )
    p.add_argument(
        "--allow-truncated",
        action="store_true",
        help="label the readable part of truncated files (with a warning) instead of failing them",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def timeline_path(out: Path) -> Path:
    """The per-window CSV next to a CSV output: ``preds.csv`` -> ``preds.timeline.csv``."""
    return out.with_name(f"{out.stem}.timeline.csv")


def partial_path(path: Path) -> Path:
    """Where rows go while the run is going: ``OUT.partial``."""
    return path.with_name(f"{path.name}.partial")


def _fmt(score: float) -> str:
    return f"{score:.6g}"


def _top_cells(labels: list[str], scores: list[float], k: int) -> list[str]:
    cells: list[str] = []
    for i in range(k):
        if i < len(labels):
            cells += [labels[i], _fmt(scores[i])]
        else:
            cells += ["", ""]
    return cells


def _top_header(k: int) -> list[str]:
    return [name for i in range(1, k + 1) for name in (f"label_{i}", f"score_{i}")]


class PredictionWriter:
    """Writes predictions as they come into ``OUT.partial`` files, renamed on :meth:`finish`.

    Args:
        out: the output (``.csv`` or ``.jsonl``).
        top_k: label columns of the CSV.
        timeline: also write the windows (JSONL: inside each object; CSV: a second file).
    """

    def __init__(self, out: Path, top_k: int, timeline: bool) -> None:
        self.out = out
        self.csv = out.suffix.lower() == ".csv"
        self.k = top_k
        self.targets = [out]
        if timeline and self.csv:
            self.targets.append(timeline_path(out))
        self.timeline = timeline
        self._stack = contextlib.ExitStack()
        try:
            self._files = [
                self._stack.enter_context(
                    partial_path(target).open("w", encoding="utf-8", newline="")
                )
                for target in self.targets
            ]
        except OSError as err:
            self.close()
            raise OutputError(f"cannot write {err.filename}: {err.strerror or err}") from None
        if self.csv:
            self._rows = csv.writer(self._files[0])
            self._rows.writerow(["file", "duration", *_top_header(top_k), "error"])
            if timeline:
                self._windows = csv.writer(self._files[1])
                self._windows.writerow(["file", "start", "end", *_top_header(top_k)])

    def add(self, result: Prediction) -> None:
        if not self.csv:
            line = json.dumps(result.to_dict(), ensure_ascii=False, allow_nan=False)
            self._files[0].write(line + "\n")
        elif result.ok:
            self._rows.writerow(
                [
                    result.file,
                    f"{result.duration:.6f}",
                    *_top_cells(result.labels, result.scores, self.k),
                    "",
                ]
            )
            for w in result.timeline or []:
                self._windows.writerow(
                    [
                        result.file,
                        f"{w['start']:.6f}",
                        f"{w['end']:.6f}",
                        *_top_cells(w["labels"], w["scores"], self.k),
                    ]
                )
        else:
            self._rows.writerow([result.file, "", *([""] * 2 * self.k), result.error])
        for f in self._files:
            f.flush()

    def close(self) -> None:
        self._stack.close()

    def finish(self) -> list[Path]:
        """Close the partial files and rename them to their targets."""
        self.close()
        for target in self.targets:
            try:
                os.replace(partial_path(target), target)
            except OSError as err:
                raise OutputError(f"cannot write {target}: {err.strerror or err}") from None
        return self.targets


def run(args: argparse.Namespace) -> int:
    out: Path = args.out
    if out.suffix.lower() not in FORMATS:
        raise UsageError(f"--out must end in {' or '.join(FORMATS)}, got {out}")
    targets = [out, timeline_path(out)] if args.timeline and out.suffix.lower() == ".csv" else [out]
    for target in targets:  # before any work, not after it
        check_output_file(target, "--out")
        check_output_file(partial_path(target), "--out")
    device = parse_device(args.device)
    classifier = load_classifier(args.model, device=device)
    paths = collect_inputs(args.inputs)
    if not paths:
        raise UsageError(f"no audio files found in {', '.join(map(str, args.inputs))}")
    top_k = min(args.top_k, len(classifier.labels))
    logger.info(
        "labelling %d files with %s (%d classes) on %s",
        len(paths),
        args.model,
        len(classifier.labels),
        device,
    )
    results = iter_file_predictions(
        classifier,
        paths,
        top_k=top_k,
        timeline=args.timeline,
        batch_size=args.batch_size,
        allow_truncated=args.allow_truncated,
    )
    writer = PredictionWriter(out, top_k, args.timeline)
    labelled, failed = _predict_all(results, writer, len(paths), args.no_progress)
    with interrupts_deferred("renaming the finished output"):  # all targets renamed, or none
        written = writer.finish()
    note = f", {failed} failed (listed in {out})" if failed else ""
    more = f" and {written[1]}" if len(written) > 1 else ""
    print(f"labelled {labelled} of {len(paths)} files -> {out}{more}{note}")
    return 0 if labelled else 1


def _predict_all(results, writer: PredictionWriter, total: int, no_progress: bool):
    """Write every result with a progress bar; on Ctrl-C, SIGTERM or an error keep the
    partial output and say where it is. Returns (labelled, failed) counts."""
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    labelled = failed = 0
    bar = tqdm(total=total, unit="file", disable=no_progress, file=sys.stderr)
    try:
        with logging_redirect_tqdm(), bar:  # log lines do not tear the bar
            for result in results:
                if result.ok:
                    labelled += 1
                else:
                    failed += 1
                    logger.warning("failed %s: %s", result.file, result.error)
                writer.add(result)
                bar.update(1)
    except BaseException:
        writer.close()
        logger.warning(
            "stopped after %d of %d files; their rows are kept in %s",
            labelled + failed,
            total,
            partial_path(writer.out),
        )
        raise
    return labelled, failed
