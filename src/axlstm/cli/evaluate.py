"""``axlstm evaluate``: probe frozen embeddings of several models on HEAR tasks, over seeds."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

from axlstm.cli.common import positive_int
from axlstm.core.errors import OutputError, UsageError

logger = logging.getLogger(__name__)

EXAMPLES = """\
examples:
  axlstm evaluate --model runs/my_release --model axlstm_tiny --tasks builtin --out runs/eval
  axlstm evaluate --model ours=release_a --model base=release_b \\
      --tasks ~/hear/tasks/esc50-v2.0.0-full ~/hear/tasks/nsynth_pitch-v2.2.3-5h --out runs/hear
  axlstm evaluate --model checkpoint-99.pth --arch axlstm_tiny --tasks ~/hear/tasks --out r

MODEL is a release folder, a preset name (random weights: a floor), an official checkpoint
file with --arch, or "logmel" (the hand-crafted log-mel statistics baseline, always added as
a reference row); LABEL=MODEL names its row. TASK_DIR is a HEAR task folder, a folder of task
folders, "builtin" (the procedural tasks, generated into the cache folder on first use) or
"builtin:NAME,..." (some of them: pitch_class, polyphony, timbre, sound_types).
Writes OUT/results.json, OUT/details.json, OUT/report.md, OUT/chart.png, OUT/charts/*.png,
and OUT/results.jsonl: each finished (model, task) result as soon as it is done. Interrupted
(Ctrl-C, SIGTERM)? Run the same command again: finished results are reused (--restart computes
everything again). Exit code 0 when every model succeeded on every task, 1 when something
failed (the report lists why), 2 on a usage error, 130 when interrupted.
"""


def add_parser(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="probe frozen embeddings on HEAR tasks and compare models",
        description=(
            "HEAR-protocol evaluation (SPEC §7): scene embeddings are computed once per model "
            "and task (cached), a probe is trained over N distinct seeds, and the report gives "
            "mean ± 95% Student-t interval per task and across tasks."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--model",
        dest="models",
        action="append",
        required=True,
        metavar="MODEL",
        help="model to evaluate (repeat for several); [LABEL=]release|preset|checkpoint|logmel",
    )
    p.add_argument(
        "--tasks",
        nargs="+",
        required=True,
        metavar="TASK_DIR",
        help="task folders, 'builtin' or 'builtin:NAME,...'",
    )
    p.add_argument("--out", type=Path, required=True, metavar="REPORT_DIR", help="report folder")
    p.add_argument("--seeds", type=positive_int, default=10, help="probe seeds 0..N-1 (default 10)")
    p.add_argument("--arch", help="preset of official checkpoint files, e.g. axlstm_tiny")
    p.add_argument(
        "--probe",
        choices=("mlp", "linear"),
        default="mlp",
        help="mlp: SPEC §7.2's one-hidden-layer probe (default); linear: a linear probe",
    )
    p.add_argument(
        "--no-shuffle",
        action="store_true",
        help="do not reshuffle training data each epoch (reproduces HEAR's kit)",
    )
    p.add_argument("--max-epochs", type=positive_int, help="probe epochs at most (default 500)")
    p.add_argument(
        "--cache-dir",
        type=Path,
        metavar="DIR",
        help="cache root: embeddings in DIR/embeddings, built-in tasks in DIR/tasks (default "
        "$AXLSTM_CACHE or ~/.cache/axlstm)",
    )
    p.add_argument("--no-cache", action="store_true", help="always recompute embeddings")
    p.add_argument(
        "--restart",
        action="store_true",
        help="compute every result again, ignoring the finished ones in REPORT_DIR/results.jsonl",
    )
    p.add_argument(
        "--builtin-scale",
        type=positive_int,
        default=1,
        help="size multiplier of the built-in tasks",
    )
    p.add_argument(
        "--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda if available)"
    )
    p.add_argument(
        "--probe-device",
        default="cpu",
        help="where the probes train: cpu (default) or cuda...; a GPU pays off on large event "
        "tasks (DCASE 2016 task 2: about 216,000 training frames per epoch)",
    )
    p.add_argument(
        "--batch-size", type=positive_int, default=16, help="2 s windows per forward pass"
    )
    p.add_argument(
        "--window", default="official", help="'official' (2 s windows), 'none' or frames"
    )
    p.add_argument("--layer", default="last", help="'last' (default) or a block index")
    p.add_argument(
        "--frame-layout", choices=("time", "official"), help="frame order (default: the model's)"
    )
    p.add_argument(
        "--jobs",
        type=positive_int,
        help="probe trainings in parallel (default: CPU cores, at most 8); results do not "
        "depend on it",
    )
    p.add_argument(
        "--threads",
        type=positive_int,
        help="torch threads while embedding (default: torch's); 1 is best on a busy small CPU",
    )
    p.add_argument("--no-charts", action="store_true", help="skip the PNG charts")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(run=run)


def _check_options(args: argparse.Namespace) -> None:
    """Refuse option values that cannot work with any model, before any work."""
    from axlstm.embedding import parse_window

    for spec in args.models:
        text = spec.strip()
        if not text or text.endswith("="):
            raise UsageError(f"--model: empty model name in {spec!r}")
    for task in args.tasks:
        if not str(task).strip():
            raise UsageError("--tasks: empty task folder name")
    try:
        parse_window(args.window, 1, 1)
    except ValueError as err:
        raise UsageError(f"--window: {err}") from None
    layer = str(args.layer).strip().lower()
    if layer not in ("last", "final"):
        try:
            int(layer.removeprefix("block"))
        except ValueError:
            raise UsageError(
                f"--layer: expected 'last' or one block index (the probe reads one layer), "
                f"got {args.layer!r}"
            ) from None


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    from axlstm.cli.common import parse_device
    from axlstm.core.fileio import check_output_dir
    from axlstm.evaluation import (
        BUILTIN,
        ProbeConfig,
        default_cache_dir,
        default_jobs,
        model_specs,
        prepare_tasks,
        run_evaluation,
    )
    from axlstm.evaluation.builtin import builtin_tasks_dir

    _check_options(args)
    probe = ProbeConfig(kind=args.probe, shuffle=not args.no_shuffle)
    if args.max_epochs is not None:
        probe = dataclasses.replace(probe, max_epochs=args.max_epochs)
    device = parse_device(args.device)
    probe_device = parse_device(args.probe_device)
    root = args.cache_dir if args.cache_dir is not None else default_cache_dir()
    cache_dir = None if args.no_cache else root / "embeddings"
    builtin = any(t == BUILTIN or t.startswith(f"{BUILTIN}:") for t in map(str, args.tasks))
    builtin_dir = builtin_tasks_dir(root, args.builtin_scale)
    # Every output is proved writable before any work.
    check_output_dir(args.out, "report folder (--out)")
    if cache_dir is not None or builtin:
        hint = "" if args.cache_dir is not None else "; choose one with --cache-dir"
        try:
            check_output_dir(root, "cache folder (--cache-dir)")
        except OutputError as err:
            raise OutputError(f"{err}{hint}") from None
    models = model_specs(args.models)

    def progress(**kw):
        return tqdm(disable=args.no_progress, file=sys.stderr, dynamic_ncols=True, **kw)

    with logging_redirect_tqdm():
        tasks = prepare_tasks(
            args.tasks,
            builtin_dir=builtin_dir if builtin else None,
            builtin_scale=args.builtin_scale,
            on_builtin=lambda name: logger.info("generating built-in task %s", name),
        )
        for t in tasks:
            if t.task is not None:
                logger.info("task %s", t.task.describe())
            else:
                logger.warning("task %s cannot be used: %s", t.key, t.error)
        report = run_evaluation(
            models,
            tasks,
            args.out,
            seeds=args.seeds,
            probe=probe,
            cache_dir=cache_dir,
            arch=args.arch,
            device=device,
            window=args.window,
            layer=None if args.layer in ("last", "final") else args.layer,
            frame_layout=args.frame_layout,
            batch_size=args.batch_size,
            jobs=args.jobs or default_jobs(),
            threads=args.threads,
            probe_device=probe_device,
            charts=not args.no_charts,
            progress=progress,
            settings={"command": " ".join(sys.argv)},
            resume=not args.restart,
        )
    failed = [(m, t) for m in report.models for t in report.tasks if not report.outcome(m, t).ok]
    print((args.out / "report.md").read_text(encoding="utf-8").split("\n*mean over tasks*")[0])
    note = f"; {len(failed)} model/task pairs failed (see report.md)" if failed else ""
    also = "results.json" if args.no_charts else "results.json, chart.png"
    print(f"report: {args.out / 'report.md'} ({also}){note}")
    return 1 if failed else 0
