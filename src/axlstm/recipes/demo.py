"""``make demo``: the project end to end on a CPU in about ten minutes, with no download.

    python -m axlstm.recipes.demo --out runs/demo

1. writes the built-in procedural tasks (HEAR folders) to ``OUT/tasks``;
2. pretrains a small AxLSTM and a small SSAST (``demo`` recipe: width 64, depth 4, the same
   clips, batches and schedule) side by side, one core each, on the procedural corpus;
3. exports both to release folders under ``OUT/models``, plus the AxLSTM with its random
   initial weights (``axlstm_random``, the floor);
4. evaluates the three and the log-mel statistics baseline on the built-in tasks with the HEAR
   probe protocol over 10 seeds, and writes ``OUT/report`` (report.md, results.json,
   chart.png).

Finished steps are kept: running it again reuses the pretrained runs and cached embeddings.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

PRESETS = {"axlstm": "axlstm_tiny", "ssast": "ssast_tiny"}


def _finished(run_dir: Path, steps: int) -> bool:
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return summary.get("steps") == steps and (run_dir / "checkpoints" / "last.pt").is_file()


def _last_step(run_dir: Path) -> int:
    try:
        lines = (run_dir / "log.jsonl").read_text().strip().splitlines()
        return int(json.loads(lines[-1])["step"]) if lines else 0
    except (OSError, ValueError, KeyError, IndexError):
        return 0


def pretrain_side_by_side(
    out: Path, steps: int, threads: int, show: bool, overrides: list[str] | None = None
) -> dict[str, float]:
    """Pretrain both families as parallel subprocesses; return each one's wall time (s).

    ``overrides`` (``key=value``) are applied to both runs after the demo recipe.
    """
    from tqdm import tqdm

    procs, bars, logs, started, walls = {}, {}, {}, {}, {}
    for i, (label, preset) in enumerate(PRESETS.items()):
        run_dir = out / "pretrain" / label
        if _finished(run_dir, steps):
            logger.info("%s: pretraining already done in %s", label, run_dir)
            walls[label] = 0.0
            continue
        cmd = [
            sys.executable, "-m", "axlstm.cli.main", "pretrain", "--config", "demo",
            "--out", str(run_dir), "--max-steps", str(steps), "--no-progress",
            "--set", f"model.name={preset}", f"engine.num_threads={threads}", *(overrides or []),
        ]  # fmt: skip
        if (run_dir / "checkpoints" / "last.pt").is_file():
            cmd.append("--resume")
        run_dir.mkdir(parents=True, exist_ok=True)
        logs[label] = open(out / "pretrain" / f"{label}.log", "w")  # noqa: SIM115
        procs[label] = subprocess.Popen(cmd, stdout=logs[label], stderr=subprocess.STDOUT)
        started[label] = time.perf_counter()
        bars[label] = tqdm(
            total=steps, desc=f"pretrain {label}", unit="step", position=i, disable=not show
        )
    try:
        while procs:
            time.sleep(2.0)
            for label in list(procs):
                run_dir = out / "pretrain" / label
                bar = bars[label]
                bar.update(max(0, _last_step(run_dir) - bar.n))
                code = procs[label].poll()
                if code is None:
                    continue
                walls[label] = time.perf_counter() - started[label]
                bar.update(steps - bar.n if code == 0 else 0)
                bar.close()
                logs[label].close()
                del procs[label]
                if code != 0:
                    raise RuntimeError(
                        f"pretraining {label} failed (exit {code}); see "
                        f"{out / 'pretrain' / f'{label}.log'}"
                    )
    finally:
        for proc in procs.values():
            proc.terminate()
        for f in logs.values():
            f.close()
    return walls


def export_models(out: Path, overrides: list[str] | None = None) -> dict[str, Path]:
    """Release folders of the two pretrained models and of the random-weights AxLSTM (the
    pretrained AxLSTM's architecture: the demo recipe with the same ``overrides``)."""
    from axlstm.engine import export_release
    from axlstm.models import create_model
    from axlstm.recipes import load_config

    models = {}
    for label in PRESETS:
        ckpt = out / "pretrain" / label / "checkpoints" / "last.pt"
        models[label] = export_release(ckpt, out / "models" / label)
    sizes = load_config("demo", [*(overrides or []), f"model.name={PRESETS['axlstm']}"]).model
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        random_model = create_model(sizes.name, **sizes.overrides)
    models["axlstm_random"] = random_model.eval().save_pretrained(
        out / "models" / "axlstm_random",
        source="random initialisation (torch.manual_seed(0)), no training",
    )
    return models


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m axlstm.recipes.demo",
        description="Pretrain a small AxLSTM and SSAST on CPU and compare them on built-in tasks.",
    )
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder")
    p.add_argument("--steps", type=int, default=160, help="pretraining steps per model")
    p.add_argument("--seeds", type=int, default=10, help="probe seeds")
    p.add_argument("--scale", type=int, default=1, help="size multiplier of the built-in tasks")
    p.add_argument(
        "--tasks",
        nargs="+",
        metavar="NAME",
        help="built-in tasks to evaluate on (default: the scene tasks; add sound_events for "
        "the timestamp task, whose frame probes take minutes more on a CPU)",
    )
    p.add_argument("--probe-epochs", type=int, help="cap on probe epochs (default 500)")
    p.add_argument(
        "--set",
        dest="overrides",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="pretraining overrides for both models, e.g. optim.global_batch=8",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    from axlstm.evaluation import (
        BUILTIN_TASKS,
        ProbeConfig,
        default_jobs,
        model_specs,
        prepare_tasks,
        run_evaluation,
    )

    show = not args.no_progress
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    cores = default_jobs()
    times: dict[str, float] = {}
    t0 = time.perf_counter()

    print(f"[1/4] built-in tasks -> {out / 'tasks'}", flush=True)
    start = time.perf_counter()
    with logging_redirect_tqdm():
        names = args.tasks or [
            name for name, task in BUILTIN_TASKS.items() if task.embedding_type == "scene"
        ]
        which = "builtin:" + ",".join(names)
        tasks = prepare_tasks([which], builtin_dir=out / "tasks", builtin_scale=args.scale)
    times["tasks"] = time.perf_counter() - start

    threads = max(1, cores // 2)
    print(
        f"[2/4] pretraining AxLSTM and SSAST side by side ({args.steps} steps each, "
        f"{threads} thread(s) each; logs in {out / 'pretrain'})",
        flush=True,
    )
    start = time.perf_counter()
    walls = pretrain_side_by_side(out, args.steps, threads, show, args.overrides)
    times["pretrain"] = time.perf_counter() - start
    times.update({f"pretrain_{k}": v for k, v in walls.items()})

    print(f"[3/4] exporting release folders -> {out / 'models'}", flush=True)
    models = export_models(out, args.overrides)

    print(f"[4/4] evaluating on {len(tasks)} tasks, {args.seeds} probe seeds", flush=True)
    start = time.perf_counter()
    specs = model_specs([f"{name}={path}" for name, path in models.items()])

    def progress(**kw):
        return tqdm(disable=not show, file=sys.stderr, dynamic_ncols=True, **kw)

    with logging_redirect_tqdm():
        report = run_evaluation(
            specs,
            tasks,
            out / "report",
            seeds=args.seeds,
            probe=ProbeConfig(max_epochs=args.probe_epochs or ProbeConfig.max_epochs),
            cache_dir=out / "cache",
            jobs=cores,
            threads=threads,
            progress=progress,
            settings={"command": "make demo", "pretrain_steps": args.steps},
        )
    times["evaluate"] = time.perf_counter() - start
    times["total"] = time.perf_counter() - t0
    (out / "report" / "demo_timings.json").write_text(
        json.dumps({k: round(v, 1) for k, v in times.items()}, indent=2) + "\n"
    )
    table = (out / "report" / "report.md").read_text(encoding="utf-8")
    print()
    print(table.split("\n*mean over tasks*")[0].split("\n\n", 2)[-1])
    print()
    print(
        "timings: "
        + ", ".join(
            f"{k} {v / 60:.1f} min" for k, v in times.items() if not k.startswith("pretrain_")
        )
    )
    failed = [(m, t) for m in report.models for t in report.tasks if not report.outcome(m, t).ok]
    if failed:
        print(f"{len(failed)} model/task pairs failed; see the report")
    print(f"report: {out / 'report' / 'report.md'} (chart: {out / 'report' / 'chart.png'})")
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
