"""``axlstm pretrain``: masked spectrogram pretraining, from one CPU to many GPUs."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from axlstm.cli.common import positive_int
from axlstm.core.errors import UsageError
from axlstm.core.fileio import check_output_dir
from axlstm.engine import CheckpointManager, NonFiniteLossError, TrainerCallback
from axlstm.engine.config import config_to_yaml, set_value, validate_tree
from axlstm.models.compile import COMPILE_MODES

#: Exit code of a run stopped by Ctrl-C or SIGTERM with its checkpoint written (as the
#: command line's other interrupted jobs).
EXIT_INTERRUPTED = 130

EXAMPLES = """\
examples:
  axlstm pretrain --config debug --out runs/debug          # procedural audio, CPU, seconds
  axlstm pretrain --config axlstm_tiny --data /data/audio --out runs/tiny \\
      --set optim.global_batch=256 data.num_workers=8
  torchrun --nproc-per-node=4 -m axlstm.cli.main pretrain --config axlstm_tiny \\
      --data /data/shards --out runs/tiny                   # 4 GPUs (DDP)
  axlstm pretrain --out runs/tiny --resume                  # continue where it stopped

--data takes folders (scanned recursively), manifests (.csv/.tsv/.jsonl with a 'path'
column), WebDataset shards (a folder of .tar, a .tar, a glob or a {000..099} pattern);
without --data the built-in procedural corpus is used.
"""


def add_parser(sub) -> None:
    p = sub.add_parser(
        "pretrain",
        help="pretrain a model by masked spectrogram modelling",
        description=(
            "Train by masked spectrogram patch modelling. Writes RUN_DIR/config.yaml, "
            "log.jsonl, log.csv, checkpoints/last.pt, tensorboard/ and plots/."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--config",
        help="shipped preset (axlstm_tiny ... ssast_base, debug) or a YAML file; with "
        "--resume it defaults to RUN_DIR/config.yaml",
    )
    p.add_argument("--out", type=Path, required=True, metavar="RUN_DIR", help="run folder")
    p.add_argument(
        "--data", nargs="+", action="extend", metavar="PATH", help="data (sets data.paths)"
    )
    p.add_argument("--max-steps", type=positive_int, help="total steps (sets schedule.max_steps)")
    p.add_argument(
        "--compile",
        action="store_true",
        help="run the training step under torch.compile (sets engine.compile=true; needs a C++ "
        "compiler on the CPU, Triton on CUDA; the first steps are slow while it compiles)",
    )
    p.add_argument(
        "--compile-mode",
        choices=COMPILE_MODES,
        help="torch.compile mode (sets engine.compile_mode; default auto: CUDA graphs on CUDA)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from the newest intact checkpoint in RUN_DIR/checkpoints (an error "
        "when there is none)",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help="config overrides, e.g. optim.base_lr=3e-4 engine.precision=bf16",
    )
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar (default: when stderr is a terminal)",
    )
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.set_defaults(run=run)


class ProgressBar(TrainerCallback):
    """A tqdm bar with step, loss, learning rate and clips/s."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar = None

    def on_start(self, trainer) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(
            total=trainer.total_steps,
            initial=trainer.step,
            unit="step",
            dynamic_ncols=True,
            disable=not self.enabled,
            desc="pretrain",
        )

    def on_step(self, trainer, metrics) -> None:
        if self.bar is None:
            return
        loss = metrics.get("loss")
        self.bar.set_postfix(
            loss="?" if loss is None else f"{loss:.4f}",
            lr=f"{metrics['lr']:.2e}",
            clips_s=f"{metrics['clips_per_s']:.1f}",
            refresh=False,
        )
        self.bar.update(1)

    def on_end(self, trainer, summary) -> None:
        if self.bar is not None:
            self.bar.close()


def check_resumable(run_dir: Path) -> None:
    """``--resume`` needs a checkpoint to continue from (checked before anything is done)."""
    if not run_dir.is_dir():
        raise UsageError(f"--resume: the run folder {run_dir} does not exist; nothing to continue")
    ckpts = CheckpointManager(run_dir / "checkpoints", cleanup=False)
    if not ckpts.candidates():
        raise UsageError(
            f"--resume: {run_dir} holds no checkpoint to continue from (nothing in "
            f"{ckpts.directory}); run without --resume to start a new run there"
        )


def resolve_config(args: argparse.Namespace):
    from axlstm.recipes import load_config

    if args.resume:
        check_resumable(args.out)
    source = args.config
    if source is None:
        saved = args.out / "config.yaml"
        if not (args.resume and saved.is_file()):
            raise UsageError("--config is required (a preset name or a YAML file)")
        source = str(saved)
    cfg = load_config(source, list(args.overrides))
    # The flags win over --set; they are set as values, so paths need no YAML quoting.
    if args.data:
        set_value(cfg, "data.paths", [str(p) for p in args.data])
    if args.max_steps is not None:
        set_value(cfg, "schedule.max_steps", args.max_steps)
    if args.compile:
        set_value(cfg, "engine.compile", True)
    if args.compile_mode is not None:
        set_value(cfg, "engine.compile_mode", args.compile_mode)
    validate_tree(cfg)
    return cfg


def _log_file(run_dir: Path, rank: int) -> logging.Handler | None:
    """RUN_DIR/train.log (INFO and up) on rank 0; other ranks report warnings and errors only."""
    root = logging.getLogger()
    if rank > 0:
        root.setLevel(max(root.level, logging.WARNING))
        return None
    run_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(run_dir / "train.log", encoding="utf-8")
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    return handler


def run(args: argparse.Namespace) -> int:
    from tqdm.contrib.logging import logging_redirect_tqdm

    from axlstm.recipes import pretrain

    cfg = resolve_config(args)
    if args.print_config:
        sys.stdout.write(config_to_yaml(cfg))
        return 0
    rank = int(os.environ.get("RANK", "0") or 0)
    if rank == 0:
        check_output_dir(args.out, "run folder")
    handler = _log_file(args.out, rank)
    package_logger = logging.getLogger("axlstm")
    package_level = package_logger.level
    if handler is not None and package_logger.getEffectiveLevel() > logging.INFO:
        package_logger.setLevel(logging.INFO)  # the run log always has the INFO records
    show = sys.stderr.isatty() if args.progress is None else args.progress
    callback = ProgressBar(enabled=show and rank == 0)
    try:
        with logging_redirect_tqdm():
            summary = pretrain(cfg, args.out, resume=args.resume, callback=callback)
    except NonFiniteLossError as err:
        print(f"axlstm pretrain: error: {err}", file=sys.stderr)
        return 3
    finally:
        callback.on_end(None, None)  # the bar is closed however the run ended
        if handler is not None:
            logging.getLogger().removeHandler(handler)
            handler.close()
            package_logger.setLevel(package_level)
    if rank == 0:
        rate = f", {summary.clips_per_s:.1f} clips/s" if summary.clips_per_s else ""
        loss = f"{summary.final_loss:.4f}" if summary.final_loss is not None else "n/a"
        skipped = sum(summary.skipped.values())
        print(
            f"trained steps {summary.start_step}->{summary.steps} of {summary.total_steps} in "
            f"{summary.wall_s:.1f} s{rate}; final loss {loss}; skipped items {skipped}"
            + (f" {summary.skipped}" if skipped else "")
        )
        print(f"run folder: {args.out} (checkpoint: {summary.last_checkpoint})")
    if summary.stopped_early:
        if rank == 0:
            print(
                f"axlstm pretrain: interrupted at step {summary.steps}; the checkpoint was "
                f"written; continue with: axlstm pretrain --out {args.out} --resume",
                file=sys.stderr,
            )
        return EXIT_INTERRUPTED
    return 0
