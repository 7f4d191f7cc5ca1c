"""``axlstm tasks``: write the built-in procedural tasks, or check HEAR task folders."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from axlstm.cli.common import nonnegative_int, positive_int
from axlstm.core.errors import UsageError


def add_parser(sub) -> None:
    p = sub.add_parser(
        "tasks",
        help="write the built-in evaluation tasks or check HEAR task folders",
        description=(
            "With --out: write the built-in procedural tasks (pitch_class, polyphony, timbre, "
            "sound_types) as HEAR task folders, deterministically. With --check: read HEAR task "
            "folders (or folders of them) and print what they hold, or what is wrong."
        ),
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--out", type=Path, metavar="DIR", help="write the built-in tasks here")
    what.add_argument("--check", nargs="+", type=Path, metavar="TASK_DIR", help="check tasks")
    what.add_argument("--list", action="store_true", help="list the built-in tasks")
    p.add_argument(
        "--scale", type=positive_int, default=1, help="clip count multiplier (default 1)"
    )
    p.add_argument("--seed", type=nonnegative_int, default=0, help="dataset seed (default 0)")
    p.add_argument("--names", nargs="+", metavar="TASK", help="only these built-in tasks")
    p.add_argument(
        "--sample-rate",
        type=positive_int,
        default=16000,
        help="rate of the written audio, 16000 to 384000 (default 16000)",
    )
    p.add_argument(
        "--folds",
        type=nonnegative_int,
        default=0,
        help="write k-fold tasks with this many folds (>= 3)",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace folders written with other settings"
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from axlstm.core.fileio import check_output_dir
    from axlstm.evaluation import BUILTIN_TASKS, find_tasks, load_task, write_builtin_tasks

    if args.folds in (1, 2):
        raise UsageError(
            f"--folds must be 0 (train/valid/test) or at least 3 (test, validation and "
            f"training folds), got {args.folds}"
        )
    if args.list:
        for task in BUILTIN_TASKS.values():
            sizes = task.split_sizes(args.scale, args.folds)
            sizes = ", ".join(f"{s} {n}" for s, n in sizes.items())
            print(
                f"{task.name}: {'event ' if task.embedding_type == 'event' else ''}"
                f"{task.prediction_type}, {len(task.labels)} classes, "
                f"{task.duration:g} s clips ({sizes}): {task.description}"
            )
        return 0
    if args.check:
        bad = 0
        for arg in args.check:
            try:
                folders = find_tasks(arg)
            except (ValueError, OSError) as err:
                print(f"axlstm tasks: error: {err}", file=sys.stderr)
                bad += 1
                continue
            for folder in folders:
                try:
                    task = load_task(folder)
                    task.check_audio()
                    if task.is_event:
                        grid = ", ".join(
                            f"median {g.median_filter_ms:g} ms / min {g.min_duration_ms:g} ms"
                            for g in task.postprocessing()
                        )
                        print(f"ok {task.describe()}; post-processing grid: {grid}")
                    else:
                        print(f"ok {task.describe()}")
                except (ValueError, OSError) as err:
                    print(f"axlstm tasks: error: {err}", file=sys.stderr)
                    bad += 1
        return 1 if bad else 0
    if not 16000 <= args.sample_rate <= 384000:
        raise UsageError(f"--sample-rate must be 16000 to 384000 Hz, got {args.sample_rate}")
    check_output_dir(args.out, "task folder (--out)")
    folders = write_builtin_tasks(
        args.out,
        scale=args.scale,
        seed=args.seed,
        names=args.names,
        sample_rate=args.sample_rate,
        folds=args.folds,
        overwrite=args.overwrite,
        progress=lambda name: print(f"generating {name} ...", file=sys.stderr),
    )
    for folder in folders:
        print(load_task(folder).describe())
    print(f"wrote {len(folders)} tasks to {args.out}")
    return 0
