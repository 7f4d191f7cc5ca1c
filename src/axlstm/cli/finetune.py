"""``axlstm finetune``: adapt a pretrained encoder to labelled audio, test it, release it."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from axlstm.cli.common import positive_float, positive_int
from axlstm.cli.pretrain import ProgressBar
from axlstm.engine.config import config_to_yaml, set_value, validate_tree

EXAMPLES = """\
examples:
  axlstm finetune --config debug --out runs/ft_debug     # built-in task, CPU, a minute
  axlstm finetune --config esc50 --model runs/tiny/release --data esc50_manifests/esc50.csv \\
      --out runs/esc50
  axlstm finetune --config audioset_20k --model SSAST-Base-Patch-400.pth \\
      --arch ssast_orig_base_patch --data as20k/ --out runs/as20k
  torchrun --nproc-per-node=4 -m axlstm.cli.main finetune --config esc50 ...   # 4 GPUs
  axlstm finetune --out runs/esc50 --config esc50 ... --resume    # continue where it stopped

--data takes a HEAR task folder, a manifest (.csv/.tsv/.jsonl with path and label columns,
optionally split), a folder of class sub-folders, or builtin:NAME; see
`axlstm prepare-data` for ESC-50, Speech Commands v2 and AudioSet.
"""


def add_parser(sub) -> None:
    p = sub.add_parser(
        "finetune",
        help="fine-tune a model on labelled audio",
        description=(
            "Fine-tune an encoder with a classification head on labelled audio (full, last "
            "blocks, or frozen), validate every epoch, test, and write a classifier release "
            "(OUT/classifier, or OUT/<fold>/classifier for k-fold data) for `axlstm predict`."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", default="debug", help="shipped preset or YAML file (default debug)")
    p.add_argument("--model", help="release folder, preset, or official checkpoint (with --arch)")
    p.add_argument("--arch", help="the preset an official checkpoint follows")
    p.add_argument("--data", help="labelled data (sets data.source)")
    p.add_argument("--out", type=Path, required=True, metavar="OUT", help="run folder")
    p.add_argument("--epochs", type=positive_float, help="training epochs (schedule.epochs)")
    p.add_argument("--max-steps", type=positive_int, help="total steps (schedule.max_steps)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run")
    p.add_argument(
        "--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
        help="config overrides, e.g. model.mode=frozen optim.lr=1e-4 augment.mixup=0.5",
    )  # fmt: skip
    p.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=None,
        help="progress bar (default: when stderr is a terminal)",
    )  # fmt: skip
    p.add_argument("--print-config", action="store_true", help="print the resolved config")
    p.set_defaults(run=run)


def resolve_config(args: argparse.Namespace):
    from axlstm.recipes.finetune import load_finetune_config

    cfg = load_finetune_config(args.config, list(args.overrides))
    for flag, key in (("model", "model.source"), ("arch", "model.arch"), ("data", "data.source")):
        if getattr(args, flag) is not None:
            set_value(cfg, key, str(getattr(args, flag)))
    if args.epochs is not None:
        set_value(cfg, "schedule.epochs", args.epochs)
    if args.max_steps is not None:
        set_value(cfg, "schedule.max_steps", args.max_steps)
    validate_tree(cfg)
    return cfg


def run(args: argparse.Namespace) -> int:
    from tqdm.contrib.logging import logging_redirect_tqdm

    from axlstm.recipes.finetune import finetune

    cfg = resolve_config(args)
    if args.print_config:
        sys.stdout.write(config_to_yaml(cfg))
        return 0
    show = sys.stderr.isatty() if args.progress is None else args.progress
    callback = ProgressBar(enabled=show)
    try:
        with logging_redirect_tqdm():
            summary = finetune(cfg, args.out, resume=args.resume, callback=callback)
    finally:
        callback.on_end(None, None)
    if int(os.environ.get("RANK", "0") or 0) != 0:
        return 0  # rank 0 reports
    for name, s in summary["scores"].items():
        ci = f" ± {s['ci95']:.4f}" if s["ci95"] is not None else ""
        print(f"{name}: {s['mean']:.4f}{ci} ({s['n']} run{'s' if s['n'] > 1 else ''})")
    print(f"report: {args.out / 'report.md'}")
    return 0
