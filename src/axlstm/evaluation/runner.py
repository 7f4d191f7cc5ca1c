"""The evaluation as a whole: models × tasks → cached embeddings → probes over seeds → report.

Scene tasks are probed on clip embeddings, event (timestamp) tasks on frame embeddings with
the event scoring of :mod:`.event_probe`; the test events of every seed are written to
``REPORT_DIR/events/<model>/<task>/seed<k>.json`` (HEAR's format: ``{file: [{"label",
"start", "end"}]}`` in ms, with the post-processing chosen) so they can be inspected and
re-scored (``axlstm.evaluation.sed.score_events``).

A model or task that fails is recorded with its reason and the others go on. Each finished
(model, task) result is appended to ``REPORT_DIR/results.jsonl`` at once (see
:mod:`.resultlog`); running the same evaluation again reuses the finished results and computes
the rest. On Ctrl-C or SIGTERM the report of what is finished is written before the
interruption goes on.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from axlstm.core.errors import AxlstmError, UsageError
from axlstm.core.fileio import atomic_write_text, check_output_dir
from axlstm.evaluation.builtin import write_builtin_tasks
from axlstm.evaluation.cache import task_embeddings, task_frames
from axlstm.evaluation.embedders import Embedder, ModelEmbedder
from axlstm.evaluation.event_probe import event_probe_data, events_as_json
from axlstm.evaluation.logmel_baseline import LOGMEL_NAME, LogMelBaseline
from axlstm.evaluation.probe import ProbeConfig, ProbeData, evaluate_probe
from axlstm.evaluation.report import Outcome, Report, write_report
from axlstm.evaluation.resultlog import ResultLog, outcome_fingerprint
from axlstm.evaluation.tasks import Task, find_tasks, load_task

__all__ = [
    "BUILTIN",
    "ModelSpec",
    "TaskSpec",
    "default_jobs",
    "load_embedder",
    "model_specs",
    "prepare_tasks",
    "run_evaluation",
]

logger = logging.getLogger(__name__)

#: The ``--tasks`` word that selects the built-in procedural tasks.
BUILTIN = "builtin"
_LABEL = re.compile(r"^[A-Za-z0-9_.+-]+$")


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


ProgressFactory = Callable[..., Any]


def _no_progress(**_: Any) -> _NoBar:
    return _NoBar()


def default_jobs() -> int:
    """Probe trainings to run in parallel: the usable CPU cores, at most 8."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(8, cores))


# ------------------------------------------------------------------------------------ models
@dataclass(frozen=True)
class ModelSpec:
    """A model to evaluate: its report label and how it is named (see ``resolve_model``)."""

    label: str
    spec: str


def _default_label(spec: str) -> str:
    if spec == LOGMEL_NAME:
        return LOGMEL_NAME
    path = Path(spec)
    if path.name in ("config.json", "model.safetensors"):
        path = path.parent
    if path.exists():
        return path.stem if path.is_file() else path.name
    return spec


def model_specs(specs: Sequence[str], *, add_logmel: bool = True) -> list[ModelSpec]:
    """Report labels for model names: ``LABEL=SPEC`` sets one, else the folder or file name or
    the preset name; duplicates get ``-2``, ``-3``... The log-mel baseline is appended when
    absent (``add_logmel``)."""
    out: list[ModelSpec] = []
    used: set[str] = set()
    for raw in specs:
        raw = str(raw).strip()
        label, spec = None, raw
        if "=" in raw and not Path(raw).exists():
            head, tail = raw.split("=", 1)
            if _LABEL.match(head) and tail:
                label, spec = head, tail
        label = label or _default_label(spec)
        base, n = label, 2
        while label in used:
            label, n = f"{base}-{n}", n + 1
        used.add(label)
        out.append(ModelSpec(label, spec))
    if add_logmel and not any(m.spec == LOGMEL_NAME for m in out):
        label = LOGMEL_NAME if LOGMEL_NAME not in used else f"{LOGMEL_NAME}-baseline"
        out.append(ModelSpec(label, LOGMEL_NAME))
    return out


def _provenance(spec: str) -> str:
    """ ", pretrained N steps" / ", <source>" from a release folder's provenance, if any."""
    from axlstm.checkpoint.release import CONFIG_NAME, WEIGHTS_NAME, read_release_config

    folder = Path(spec)
    if folder.name in (CONFIG_NAME, WEIGHTS_NAME):
        folder = folder.parent
    if not (folder / CONFIG_NAME).is_file():
        return ""
    try:
        prov = read_release_config(folder).get("provenance") or {}
    except (OSError, ValueError):
        return ""
    if "step" in prov:
        return f", pretrained {prov['step']} steps ({prov.get('samples_seen', '?')} clips)"
    return f", {prov['source']}" if prov.get("source") else ""


def load_embedder(
    spec: ModelSpec,
    *,
    arch: str | None = None,
    device: str | torch.device | None = None,
    window: Any = "official",
    layer: Any = None,
    frame_layout: str | None = None,
    batch_size: int = 16,
) -> tuple[Embedder, dict[str, Any]]:
    """The embedder a spec names and a description of it for the report.

    A preset name gives random weights drawn with ``torch.manual_seed(0)`` (the global RNG is
    restored afterwards), so the random-weights floor is the same in every run.
    """
    if spec.spec == LOGMEL_NAME:
        embedder = LogMelBaseline(spec.label)
        info = {
            "kind": "baseline",
            "description": f"hand-crafted log-mel statistics ({embedder.dim}-d), reference",
            "dim": embedder.dim,
        }
        return embedder, info
    from axlstm.embedding import resolve_model
    from axlstm.models import is_model

    preset = is_model(spec.spec) and not Path(spec.spec).exists()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = resolve_model(spec.spec, arch=arch, device=device)
    cfg = model.config
    size = f"{cfg.family}, d={cfg.embed_dim}, depth {cfg.depth}, {model.num_parameters():,} params"
    if preset:
        what = f"preset {spec.spec} with random weights (seed 0): a floor"
    elif Path(spec.spec).is_file() and arch:
        what = f"official checkpoint {spec.spec} as {arch}"
    else:
        what = f"release {spec.spec}{_provenance(spec.spec)}"
    embedder = ModelEmbedder(
        model,
        spec.label,
        window=window,
        layer=layer,
        frame_layout=frame_layout,
        batch_size=batch_size,
        source=spec.spec,
    )
    info = {
        "kind": "preset" if preset else "model",
        "source": spec.spec,
        "description": f"{what} ({size}; {embedder.dim}-d)",
        "dim": embedder.dim,
        "parameters": model.num_parameters(),
        "config": cfg.to_dict(),
    }
    return embedder, info


# ------------------------------------------------------------------------------------- tasks
@dataclass
class TaskSpec:
    """A task to evaluate on, or why it cannot be."""

    key: str
    task: Task | None = None
    error: str | None = None


def prepare_tasks(
    args: Sequence[str | Path],
    *,
    builtin_dir: str | Path | None = None,
    builtin_scale: int = 1,
    on_builtin: Callable[[str], None] | None = None,
) -> list[TaskSpec]:
    """Read the named tasks: HEAR task folders, folders of them, :data:`BUILTIN` (all built-in
    tasks) or ``builtin:NAME,NAME`` (some of them), written into ``builtin_dir`` first.
    Unreadable ones come back with their error.

    Raises:
        UsageError: :data:`BUILTIN` without ``builtin_dir``, or unknown built-in task names.
    """
    folders: list[tuple[str, Path | None, str | None]] = []
    for arg in args:
        text = str(arg)
        if text == BUILTIN or text.startswith(f"{BUILTIN}:"):
            if builtin_dir is None:
                raise UsageError("the built-in tasks need a folder to be written to")
            names = [n for n in text[len(BUILTIN) + 1 :].split(",") if n.strip()] or None
            for f in write_builtin_tasks(
                builtin_dir, scale=builtin_scale, names=names, progress=on_builtin
            ):
                folders.append((f.name, f, None))
            continue
        try:
            for f in find_tasks(arg):
                folders.append((f.resolve().name, f, None))
        except (ValueError, OSError) as err:
            folders.append((Path(arg).name or str(arg), None, str(err)))
    names = [n for n, _, _ in folders]
    out: list[TaskSpec] = []
    seen: set[str] = set()
    for name, folder, error in folders:
        key = name
        if names.count(name) > 1 and folder is not None:
            key = f"{folder.resolve().parent.name}/{name}"
        if key in seen:
            continue  # the same folder named twice
        seen.add(key)
        if folder is None:
            out.append(TaskSpec(key, error=error))
            continue
        try:
            task = load_task(folder)
            task.check_audio()
            out.append(TaskSpec(key, task=task))
        except (ValueError, OSError) as err:
            out.append(TaskSpec(key, error=str(err)))
    return out


# ---------------------------------------------------------------------------------- the run
@contextlib.contextmanager
def _torch_threads(n: int | None):
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _probe_data(task: Task, x) -> ProbeData:
    if task.is_event:
        return event_probe_data(task, x)
    return ProbeData(
        x=x,
        y={s: task.targets(s) for s in task.splits},
        prediction_type=task.prediction_type,
        scores=task.scores,
        splits=task.data_splits(),
        monitor_score=task.monitor_score,
    )


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+=-]", "_", text) or "_"


def _write_events(out_dir: str | Path, model: str, task: str, result) -> str:
    """Each seed's test events (all test folds together) as HEAR JSON; returns the folder."""
    folder = Path(out_dir) / "events" / _safe_name(model) / _safe_name(task)
    folder.mkdir(parents=True, exist_ok=True)
    for seed, outputs, chosen in zip(result.seeds, result.outputs, result.chosen, strict=True):
        files: dict[str, Any] = {}
        for events in outputs:
            files.update(events_as_json(events))
        record = {
            "seed": seed,
            "postprocessing": [asdict(c) for c in chosen],
            "files": files,
        }
        atomic_write_text(folder / f"seed{seed}.json", json.dumps(record, indent=1) + "\n")
    return str(folder.relative_to(out_dir))


def _probe_outcome(
    task: Task, x, seeds, probe: ProbeConfig, jobs: int, bar, events_to=None, device=None
) -> Outcome:
    data = _probe_data(task, x)
    result = evaluate_probe(data, seeds, probe, jobs=jobs, on_training=bar.update, device=device)
    primary = task.primary_score
    scores = result.scores[primary]
    bad = [seed for seed, s in zip(seeds, scores, strict=True) if not math.isfinite(s)]
    if bad:
        raise ValueError(
            f"{primary} is undefined (NaN) on the test data for seeds {bad}; does every test "
            "set hold the classes the score needs?"
        )
    extra = {
        "secondary": {k: v for k, v in result.scores.items() if k != primary},
        "fold_scores": result.fold_scores,
        "dropout": result.dropout,
        "grid_valid": result.grid_valid,
        "best_epochs": result.best_epochs,
        "epochs": result.epochs,
    }
    if task.is_event:
        extra["postprocessing"] = [[asdict(c) for c in row] for row in result.chosen]
        if events_to is not None:
            extra["events"] = _write_events(*events_to, result)
    return Outcome(metric=primary, scores=scores, extra=extra)


def _reason(err: BaseException) -> str:
    if isinstance(err, (AxlstmError, ValueError)):
        return str(err)
    return f"{type(err).__name__}: {err}"


def run_evaluation(
    models: Sequence[ModelSpec],
    tasks: Sequence[TaskSpec],
    out_dir: str | Path,
    *,
    seeds: int | Sequence[int] = 10,
    probe: ProbeConfig | None = None,
    cache_dir: str | Path | None = None,
    arch: str | None = None,
    device: str | torch.device | None = None,
    window: Any = "official",
    layer: Any = None,
    frame_layout: str | None = None,
    batch_size: int = 16,
    jobs: int = 1,
    threads: int | None = None,
    probe_device: str | torch.device | None = None,
    charts: bool = True,
    progress: ProgressFactory | None = None,
    settings: dict[str, Any] | None = None,
    resume: bool = True,
) -> Report:
    """Evaluate every model on every task and write the report to ``out_dir``.

    Args:
        models: labelled model names (see :func:`model_specs`).
        tasks: prepared tasks (see :func:`prepare_tasks`).
        out_dir: report folder, checked for writability before any work. Each finished
            (model, task) result is appended to ``out_dir/results.jsonl`` at once, and the
            report is rewritten after every model, so finished work survives an interruption.
        seeds: number of probe seeds (0..N-1) or the seeds themselves.
        probe: probe hyper-parameters.
        cache_dir: embedding cache (None: no cache).
        arch: preset of official checkpoint files (ignored for other model names).
        device: where encoders run.
        window, layer, frame_layout, batch_size: embedding options.
        jobs: probe trainings in parallel (threads; torch intra-op threads are set to 1 while
            probing when above 1).
        threads: torch intra-op threads while embedding (None: leave torch's setting). On a
            small CPU shared with other work, 1 avoids OpenMP oversubscription, which was
            measured to slow a 2-thread run down ten-fold on a busy 2-core machine.
        probe_device: where the probes train (default: the CPU). Like ``jobs`` it is not part
            of a result's fingerprint: a GPU changes scores by floating-point rounding only.
        charts: draw PNG charts.
        progress: a tqdm-like factory ``progress(total=, desc=, unit=, leave=)`` returning an
            object with ``update(n)`` and ``close()``; None shows nothing.
        settings: extra settings to record in details.json.
        resume: reuse the results in ``out_dir/results.jsonl`` whose fingerprint (embeddings,
            probe settings, seeds) matches, instead of computing them again.

    Returns:
        The report (also written to ``out_dir``).

    Raises:
        OutputError: ``out_dir`` cannot be written (checked first), or a result cannot be
            saved.
        KeyboardInterrupt: on Ctrl-C (or SIGTERM under the CLI), after writing the report of
            the finished results.
    """
    progress = progress or _no_progress
    probe = probe or ProbeConfig()
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seed_list:
        raise ValueError("at least one probe seed is needed")
    if len(set(seed_list)) != len(seed_list):
        raise ValueError(f"probe seeds must be distinct, got {seed_list}")
    if not models:
        raise ValueError("no models to evaluate")
    if not tasks:
        raise ValueError("no tasks to evaluate on")
    check_output_dir(out_dir, "report folder")
    log = ResultLog(out_dir, resume=resume)
    if len(log):
        logger.info(
            "%s holds %d finished results; those with the same settings are reused",
            log.path,
            len(log),
        )
    report = Report(
        models=[m.label for m in models],
        tasks=[t.key for t in tasks],
        outcomes={},
        settings={
            "seeds": seed_list,
            "probe": asdict(probe),
            "embedding": {
                "window": str(window),
                "layer": str(layer),
                "frame_layout": frame_layout,
                "batch_size": batch_size,
            },
            "cache_dir": None if cache_dir is None else str(cache_dir),
            "jobs": jobs,
            "threads": threads,
            "probe_device": str(probe_device or "cpu"),
            "tasks": {
                t.key: (t.task.describe().split(": ", 1)[1] if t.task else f"unreadable: {t.error}")
                for t in tasks
            },
            **(settings or {}),
        },
    )
    state = {"finished": 0, "reused": 0}
    try:
        for spec in models:
            _run_model(
                spec,
                tasks,
                report,
                log,
                state,
                out_dir,
                seed_list=seed_list,
                probe=probe,
                cache_dir=cache_dir,
                embed_options={
                    "arch": arch,
                    "device": device,
                    "window": window,
                    "layer": layer,
                    "frame_layout": frame_layout,
                    "batch_size": batch_size,
                },
                jobs=jobs,
                threads=threads,
                probe_device=probe_device,
                progress=progress,
            )
    except KeyboardInterrupt:
        for spec in models:
            outcomes = report.outcomes.setdefault(spec.label, {})
            for t in tasks:
                outcomes.setdefault(t.key, Outcome(error="not run: the evaluation was interrupted"))
        report.settings["interrupted"] = True
        try:
            write_report(report, out_dir, charts=False)
        finally:
            logger.warning(
                "interrupted: %d finished results are kept in %s (partial report in %s); run "
                "the same evaluation again to continue where it stopped",
                state["finished"] + state["reused"],
                log.path,
                Path(out_dir) / "report.md",
            )
        raise
    if state["reused"]:
        logger.info("%d results reused from %s", state["reused"], log.path)
    write_report(report, out_dir, charts=charts)
    return report


def _run_model(
    spec: ModelSpec,
    tasks: Sequence[TaskSpec],
    report: Report,
    log: ResultLog,
    state: dict[str, int],
    out_dir: str | Path,
    *,
    seed_list: list[int],
    probe: ProbeConfig,
    cache_dir: str | Path | None,
    embed_options: dict[str, Any],
    jobs: int,
    threads: int | None,
    probe_device: str | torch.device | None,
    progress: ProgressFactory,
) -> None:
    """One model on every task; each finished result goes to ``log`` at once."""
    outcomes: dict[str, Outcome] = {}
    report.outcomes[spec.label] = outcomes
    try:
        embedder, info = load_embedder(spec, **embed_options)
        report.model_info[spec.label] = info
    except Exception as err:
        reason = f"model could not be loaded: {err}"
        logger.error("%s: %s", spec.label, reason)
        report.model_info[spec.label] = {"source": spec.spec, "error": reason}
        for t in tasks:
            outcomes[t.key] = Outcome(error=reason)
        write_report(report, out_dir, charts=False)
        return
    grid = len(probe.grid())
    for t in tasks:
        if t.task is None:
            outcomes[t.key] = Outcome(error=t.error)
            continue
        task = t.task
        try:
            fingerprint = outcome_fingerprint(embedder, task, seed_list, probe)
        except Exception as err:  # the task's files changed since they were read
            reason = _reason(err)
            logger.error("%s / %s failed: %s", spec.label, t.key, reason)
            outcomes[t.key] = Outcome(metric=task.primary_score, error=reason)
            continue
        reused = log.lookup(fingerprint)
        if reused is not None:
            outcomes[t.key] = reused
            state["reused"] += 1
            logger.info(
                "%s / %s: %s %.4f (finished before, reused from %s)",
                spec.label,
                t.key,
                reused.metric,
                sum(reused.scores) / len(reused.scores),
                log.path,
            )
            continue
        try:
            start = time.perf_counter()
            bar = progress(
                total=task.num_files(),
                desc=f"{spec.label} embed {t.key}",
                unit="file",
                leave=False,
            )
            try:
                with _torch_threads(threads):
                    embeddings = task_frames if task.is_event else task_embeddings
                    x, cached = embeddings(embedder, task, cache_dir, on_file=bar.update)
            finally:
                bar.close()
            embed_s = time.perf_counter() - start
            runs = len(seed_list) * (grid + len(task.data_splits()) - 1)
            bar = progress(
                total=runs, desc=f"{spec.label} probe {t.key}", unit="probe", leave=False
            )
            start = time.perf_counter()
            try:
                cpu_probe = probe_device is None or torch.device(probe_device).type == "cpu"
                with _torch_threads(1 if jobs > 1 and cpu_probe else None):
                    outcome = _probe_outcome(
                        task,
                        x,
                        seed_list,
                        probe,
                        jobs,
                        bar,
                        (out_dir, spec.label, t.key),
                        probe_device,
                    )
            finally:
                bar.close()
            outcome.extra.update(
                {
                    "embed_seconds": round(embed_s, 2),
                    "embeddings_cached": cached,
                    "probe_seconds": round(time.perf_counter() - start, 2),
                }
            )
            logger.info(
                "%s / %s: %s %.4f (%d seeds, embed %.1f s%s, probe %.1f s)",
                spec.label,
                t.key,
                outcome.metric,
                sum(outcome.scores) / len(outcome.scores),
                len(seed_list),
                embed_s,
                " cached" if cached else "",
                outcome.extra["probe_seconds"],
            )
        except Exception as err:
            reason = _reason(err)
            logger.error("%s / %s failed: %s", spec.label, t.key, reason)
            outcome = Outcome(metric=task.primary_score, error=reason)
        outcomes[t.key] = outcome
        log.append(spec.label, t.key, fingerprint, outcome)
        state["finished"] += outcome.ok
    del embedder
    write_report(report, out_dir, charts=False)
