"""Run records: RUN_DIR/log.jsonl, RUN_DIR/log.csv and TensorBoard events.

One JSON object per logged step (at least ``step`` and ``loss``). On resume the files are
cut back to the resumed step first, so a record never appears twice and the curves of an
interrupted-and-resumed run look like those of an uninterrupted one.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
from pathlib import Path
from typing import Any

__all__ = ["CSV_FIELDS", "MetricsWriter", "read_records"]

logger = logging.getLogger(__name__)

CSV_FIELDS = (
    "step",
    "epoch",
    "loss",
    "lr",
    "clips_per_s",
    "samples",
    "elapsed_s",
    "skipped_total",
    "grad_norm",
)


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Records of a log.jsonl (a torn last line, from a crash, is ignored)."""
    path = Path(path)
    if not path.is_file():
        return []
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def _json_safe(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)  # JSON has no NaN/inf
    if isinstance(v, dict):
        return {k: _json_safe(x) for k, x in v.items()}
    return v


class MetricsWriter:
    """Append-only metric logs of rank 0.

    Args:
        run_dir: the run folder.
        resume_step: keep existing records up to this step (None: start the logs afresh).
        csv_log: also write log.csv.
        tensorboard: write TensorBoard events under RUN_DIR/tensorboard when available.
        extra_fields: metrics of the task (e.g. "nce", "mse", "acc" for SSAST/SSAMBA), written
            as extra CSV columns and TensorBoard scalars.
    """

    def __init__(
        self,
        run_dir: str | Path,
        resume_step: int | None = None,
        csv_log: bool = True,
        tensorboard: bool = True,
        extra_fields: tuple[str, ...] | list[str] = (),
    ) -> None:
        self.run_dir = Path(run_dir)
        self.extra_fields = tuple(f for f in extra_fields if f not in CSV_FIELDS)
        self.fields = (*CSV_FIELDS, *self.extra_fields)
        self.jsonl_path = self.run_dir / "log.jsonl"
        self.csv_path = self.run_dir / "log.csv"
        kept = []
        if resume_step is not None:
            kept = [r for r in read_records(self.jsonl_path) if r.get("step", 0) <= resume_step]
        self._rewrite(kept, csv_log)
        self._jsonl = open(self.jsonl_path, "a", encoding="utf-8")  # noqa: SIM115
        # validation records (tasks that validate, e.g. fine-tuning) go to valid.jsonl
        self.valid_path = self.run_dir / "valid.jsonl"
        valid_kept = []
        if resume_step is not None:
            valid_kept = [
                r for r in read_records(self.valid_path) if r.get("step", 0) <= resume_step
            ]
        if valid_kept or self.valid_path.exists():
            tmp = self.valid_path.with_name(".valid.jsonl.tmp")
            tmp.write_text("".join(json.dumps(r) + "\n" for r in valid_kept), encoding="utf-8")
            os.replace(tmp, self.valid_path)
        self._valid = None
        self._valid_records = valid_kept
        self._csv_log = csv_log
        self._csv_file = None
        self._csv = None
        if csv_log:
            self._csv_file = open(self.csv_path, "a", encoding="utf-8", newline="")  # noqa: SIM115
            self._csv = csv.DictWriter(self._csv_file, self.fields, extrasaction="ignore")
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard not installed: the optional extra
                logger.info("tensorboard is not installed; no TensorBoard events are written")
            else:
                purge = resume_step + 1 if resume_step is not None else None
                self.tb = SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=purge)

    def _rewrite(self, records: list[dict[str, Any]], csv_log: bool) -> None:
        tmp = self.jsonl_path.with_name(".log.jsonl.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            for r in records:
                f.write(json.dumps(r) + "\n")
        os.replace(tmp, self.jsonl_path)
        if csv_log:
            tmp = self.csv_path.with_name(".log.csv.tmp")
            with open(tmp, "w", encoding="utf-8", newline="") as f:
                writer = csv.DictWriter(f, self.fields, extrasaction="ignore")
                writer.writeheader()
                writer.writerows(records)
            os.replace(tmp, self.csv_path)

    def write(self, record: dict[str, Any]) -> None:
        record = _json_safe(record)
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()
        if self._csv is not None:
            self._csv.writerow(record)
            self._csv_file.flush()
        if self.tb is not None:
            step = int(record["step"])
            for key in ("loss", "lr", "clips_per_s", "grad_norm", "epoch", *self.extra_fields):
                value = record.get(key)
                if isinstance(value, (int, float)):
                    self.tb.add_scalar(f"train/{key}", value, step)
            for reason, n in (record.get("skipped") or {}).items():
                self.tb.add_scalar(f"skipped/{reason}", n, step)

    def write_valid(self, record: dict[str, Any]) -> None:
        """A validation record (``step``, ``epoch`` and scores) to valid.jsonl, valid.csv and
        TensorBoard (as ``valid/NAME``)."""
        record = _json_safe(record)
        if self._valid is None:
            self._valid = open(self.valid_path, "a", encoding="utf-8")  # noqa: SIM115
        self._valid.write(json.dumps(record) + "\n")
        self._valid.flush()
        self._valid_records.append(record)
        if self._csv_log:  # valid.csv: few rows (one per validation), rewritten whole
            fields = list(dict.fromkeys(k for r in self._valid_records for k in r))
            tmp = self.run_dir / ".valid.csv.tmp"
            with open(tmp, "w", encoding="utf-8", newline="") as f:
                writer = csv.DictWriter(f, fields)
                writer.writeheader()
                writer.writerows(self._valid_records)
            os.replace(tmp, self.run_dir / "valid.csv")
        if self.tb is not None:
            for key, value in record.items():
                if key not in ("step", "epoch") and isinstance(value, (int, float)):
                    self.tb.add_scalar(f"valid/{key}", value, int(record["step"]))

    def close(self) -> None:
        self._jsonl.close()
        if self._valid is not None:
            self._valid.close()
        if self._csv_file is not None:
            self._csv_file.close()
        if self.tb is not None:
            self.tb.close()
