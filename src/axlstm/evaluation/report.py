"""Reports of an evaluation: ``results.json``, ``details.json``, ``report.md`` and PNG charts.

``results.json`` is the stable contract, one entry per model and task::

    {model: {task: {"mean": float, "ci95": float, "scores": [per seed], "metric": str}}}

(``mean``/``ci95`` are null and ``"error"`` says why when the task failed for that model;
``ci95`` is null with a single seed). Everything else (settings, per-fold and secondary
scores, chosen dropout, timings, across-task aggregates, the normalised score) is in
``details.json``.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from axlstm.core.fileio import atomic_write_text
from axlstm.evaluation.stats import aggregate_over_tasks, mean_ci, normalized_scores

__all__ = ["Outcome", "Report", "write_report"]

logger = logging.getLogger(__name__)

NORMALIZED_NOTE = (
    "s(m) is the min-max normalised score over the compared models, averaged over tasks "
    "(0 = worst model on every task, 100 = best on every task). This is SPEC §7.2's "
    "placeholder: the AxLSTM paper's definition could not be confirmed, and the value depends "
    "on which models are compared."
)


@dataclass
class Outcome:
    """The result of one model on one task.

    Attributes:
        metric: the primary score's name.
        scores: per-seed primary test scores (empty on failure).
        error: why the task failed for this model (None on success).
        extra: everything else worth keeping (secondary scores, folds, dropout, timings).
    """

    metric: str | None = None
    scores: list[float] = field(default_factory=list)
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Succeeded with scores, every one finite (a NaN never enters a mean)."""
        return (
            self.error is None
            and bool(self.scores)
            and all(math.isfinite(float(s)) for s in self.scores)
        )


@dataclass
class Report:
    """All outcomes, ``outcomes[model][task]``, plus the run's settings."""

    models: list[str]
    tasks: list[str]
    outcomes: dict[str, dict[str, Outcome]]
    settings: dict[str, Any] = field(default_factory=dict)
    model_info: dict[str, dict[str, Any]] = field(default_factory=dict)

    def outcome(self, model: str, task: str) -> Outcome:
        return self.outcomes.get(model, {}).get(task) or Outcome(error="not run")

    # --------------------------------------------------------------------------- statistics
    def results(self) -> dict[str, dict[str, dict[str, Any]]]:
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for model in self.models:
            out[model] = {}
            for task in self.tasks:
                o = self.outcome(model, task)
                entry: dict[str, Any] = {"mean": None, "ci95": None, "scores": list(o.scores)}
                if o.metric:
                    entry["metric"] = o.metric
                if o.ok:
                    s = mean_ci(o.scores)
                    entry["mean"] = s.mean
                    entry["ci95"] = None if math.isnan(s.ci95) else s.ci95
                else:
                    entry["error"] = o.error or ("non-finite scores" if o.scores else "no scores")
                out[model][task] = entry
        return out

    def aggregates(self) -> dict[str, dict[str, Any]]:
        """Per model, the across-task mean ± CI (over seeds of the per-seed task mean), only
        for models that succeeded on every task with the same number of seeds."""
        out: dict[str, dict[str, Any]] = {}
        for model in self.models:
            per_task = {t: self.outcome(model, t) for t in self.tasks}
            if not per_task or not all(o.ok for o in per_task.values()):
                out[model] = {"mean": None, "ci95": None, "error": "not every task succeeded"}
                continue
            try:
                s = aggregate_over_tasks({t: o.scores for t, o in per_task.items()})
            except ValueError as err:
                out[model] = {"mean": None, "ci95": None, "error": str(err)}
                continue
            out[model] = {"mean": s.mean, "ci95": None if math.isnan(s.ci95) else s.ci95}
        return out

    def normalized(self) -> dict[str, float | None]:
        means = {
            m: {
                t: mean_ci(self.outcome(m, t).scores).mean
                for t in self.tasks
                if self.outcome(m, t).ok
            }
            for m in self.models
        }
        values = normalized_scores(means)
        return {m: None if math.isnan(v) else v for m, v in values.items()}


# -------------------------------------------------------------------------------------- files
def _json_safe(value: Any) -> Any:
    """NaN/inf become null (strict JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _cell(mean: float | None, ci: float | None, percent: bool) -> str:
    if mean is None:
        return "failed"
    k = 100.0 if percent else 1.0
    if ci is None:
        return f"{mean * k:.1f}" if percent else f"{mean:.3f}"
    return f"{mean * k:.1f} ± {ci * k:.1f}" if percent else f"{mean:.3f} ± {ci:.3f}"


_PERCENT = {
    "top1_acc",
    "pitch_acc",
    "chroma_acc",
    "mAP",
    "aucroc",
    "event_onset_200ms_fms",
    "event_onset_50ms_fms",
    "event_onset_offset_50ms_20perc_fms",
    "segment_1s_f1",
}


def _markdown(report: Report, results, aggregates, normalized, charts: list[str]) -> str:
    s = report.settings
    metric_of = {}
    for task in report.tasks:
        metric_of[task] = next(
            (
                report.outcome(m, task).metric
                for m in report.models
                if report.outcome(m, task).metric
            ),
            None,
        )
    all_percent = all(metric_of[t] in _PERCENT for t in report.tasks)
    lines = ["# Evaluation report", ""]
    seeds = s.get("seeds")
    lines.append(
        f"Frozen scene embeddings, {s.get('probe', {}).get('kind', 'mlp')} probe (SPEC §7.2), "
        f"{len(seeds) if seeds else '?'} probe seeds ({_seed_text(seeds)}). Each cell: mean over "
        "seeds ± half-width of the 95% Student-t interval (t at N-1 degrees of freedom times "
        "sd/√N), test score in % "
        "(k-fold tasks: mean over folds per seed)."
    )
    lines.append("")
    header = ["model"] + [f"{t} ({metric_of[t] or '?'})" for t in report.tasks]
    header += ["mean over tasks", "s(m)"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for model in report.models:
        row = [f"`{model}`"]
        for task in report.tasks:
            entry = results[model][task]
            row.append(_cell(entry["mean"], entry["ci95"], metric_of[task] in _PERCENT))
        agg = aggregates[model]
        row.append(
            _cell(agg["mean"], agg["ci95"], all_percent) if agg["mean"] is not None else "n/a"
        )
        norm = normalized.get(model)
        row.append("n/a" if norm is None else f"{norm:.0f}")
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines.append(
        "*mean over tasks*: per seed, the average of the task scores; then mean ± 95% CI over "
        "seeds (only for models that completed every task). "
        f"{NORMALIZED_NOTE}"
    )
    failures = [
        (m, t, results[m][t].get("error"))
        for m in report.models
        for t in report.tasks
        if results[m][t].get("error")
    ]
    if failures:
        lines += ["", "## Failures", ""]
        lines += [f"- `{m}` on `{t}`: {err}" for m, t, err in failures]
    if report.model_info:
        lines += ["", "## Models", ""]
        for model in report.models:
            info = report.model_info.get(model, {})
            desc = info.get("description") or info.get("source") or ""
            lines.append(f"- `{model}`: {desc}")
    lines += ["", "## Tasks", ""]
    for task, info in s.get("tasks", {}).items():
        lines.append(f"- `{task}`: {info}")
    if charts:
        lines += ["", "## Charts", ""]
        lines += [f"![{Path(c).stem}]({c})" for c in charts]
    lines += ["", "Files: `results.json` (per-seed scores), `details.json` (everything else).", ""]
    return "\n".join(lines)


def _seed_text(seeds) -> str:
    if not seeds:
        return "none"
    if list(seeds) == list(range(len(seeds))):
        return f"0…{len(seeds) - 1}" if len(seeds) > 1 else "0"
    return ", ".join(str(x) for x in seeds)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "task"


def _charts(report: Report, results, aggregates, out_dir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    panels = [(t, {m: results[m][t] for m in report.models}) for t in report.tasks]
    if any(a["mean"] is not None for a in aggregates.values()):
        panels.append(("mean over tasks", aggregates))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]

    def draw(ax, title, entries):
        names = list(report.models)
        means = [entries[m]["mean"] for m in names]
        cis = [entries[m].get("ci95") or 0.0 for m in names]
        xs = range(len(names))
        for i, (mu, ci) in enumerate(zip(means, cis, strict=True)):
            if mu is None:
                ax.text(i, 0.02, "failed", ha="center", va="bottom", rotation=90, fontsize=8)
                continue
            ax.bar(i, mu, yerr=ci, capsize=4, color=colors[i % len(colors)])
        metric = next((e.get("metric") for e in entries.values() if e.get("metric")), "")
        ax.set_title(f"{title}" + (f" ({metric})" if metric else ""), fontsize=10)
        ax.set_xticks(list(xs), names, rotation=30, ha="right", fontsize=8)
        ax.set_ylim(0, 1.0 if all(m is None or m <= 1 for m in means) else None)
        ax.grid(axis="y", alpha=0.3)

    written = []
    chart_dir = out_dir / "charts"
    chart_dir.mkdir(parents=True, exist_ok=True)
    for title, entries in panels:
        fig, ax = plt.subplots(figsize=(1.2 + 0.8 * len(report.models), 3.6))
        draw(ax, title, entries)
        fig.tight_layout()
        path = chart_dir / f"{_slug(title)}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(cols * (1.4 + 0.8 * len(report.models)), rows * 3.6), squeeze=False
    )
    for ax, (title, entries) in zip(axes.flat, panels, strict=False):
        draw(ax, title, entries)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.suptitle("test score per task: mean ± 95% CI over probe seeds", fontsize=11)
    fig.tight_layout()
    fig.savefig(out_dir / "chart.png", dpi=110)
    plt.close(fig)
    written.append("chart.png")
    written += [f"charts/{_slug(t)}.png" for t, _ in panels]
    return written


def write_report(report: Report, out_dir: str | Path, *, charts: bool = True) -> dict[str, Path]:
    """Write results.json, details.json, report.md and (with ``charts``) chart.png and
    charts/<task>.png; return the paths by kind."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = report.results()
    aggregates = report.aggregates()
    normalized = report.normalized()
    paths = {"results": out / "results.json", "details": out / "details.json"}
    atomic_write_text(paths["results"], json.dumps(_json_safe(results), indent=2) + "\n")
    details = {
        "settings": report.settings,
        "models": report.model_info,
        "aggregate": aggregates,
        "normalized_score": normalized,
        "normalized_score_note": NORMALIZED_NOTE,
        "outcomes": {
            m: {
                t: {"metric": o.metric, "scores": o.scores, "error": o.error, **o.extra}
                for t, o in ((t, report.outcome(m, t)) for t in report.tasks)
            }
            for m in report.models
        },
    }
    atomic_write_text(
        paths["details"], json.dumps(_json_safe(details), indent=2, default=str) + "\n"
    )
    chart_files: list[str] = []
    if charts:
        try:
            chart_files = _charts(report, results, aggregates, out)
            paths["chart"] = out / "chart.png"
        except Exception as err:  # a plotting problem must not lose the numbers
            logger.warning("could not draw the charts: %s", err)
    paths["report"] = out / "report.md"
    atomic_write_text(
        paths["report"], _markdown(report, results, aggregates, normalized, chart_files)
    )
    return paths
