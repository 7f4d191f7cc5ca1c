"""``axlstm benchmark``: time and memory of models against input length."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from axlstm.benchmark import markdown_table, run, write_reports
from axlstm.cli.common import nonnegative_int, positive_float, positive_int
from axlstm.core.fileio import check_output_file


def add_parser(sub) -> None:
    p = sub.add_parser(
        "benchmark",
        help="time and peak memory of models against input length",
        description=(
            "Measure inference (one forward_features pass over the whole input) or training "
            "steps (masked forward + loss + backward) for each model and input length, with "
            "warm-up and repetitions; write JSON/Markdown/CSV tables and a PNG of cost vs "
            "length."
        ),
    )
    p.add_argument("--models", nargs="+", required=True, help="presets or release folders")
    p.add_argument(
        "--seconds", nargs="+", type=positive_float, default=[2.0, 10.0, 60.0, 300.0],
        help="input lengths in seconds of audio (default: 2 10 60 300)",
    )  # fmt: skip
    p.add_argument("--batch", type=positive_int, default=1, help="clips per pass (default 1)")
    p.add_argument("--mode", nargs="+", choices=("inference", "train"), default=["inference"])
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument(
        "--reps", type=positive_int, default=3, help="timed repetitions (median reported)"
    )
    p.add_argument("--warmup", type=nonnegative_int, default=1, help="untimed passes before timing")
    p.add_argument("--threads", type=positive_int, help="torch CPU threads (default: torch's)")
    p.add_argument(
        "--precision", choices=("fp32", "bf16", "fp16"), default="fp32",
        help="fp32, or bf16/fp16 autocast (CUDA only)",
    )  # fmt: skip
    p.add_argument(
        "--no-isolate", action="store_true",
        help="run every configuration in this process (CPU peak memory then accumulates)",
    )  # fmt: skip
    p.add_argument("--json", type=Path, required=True, help="results as a JSON list")
    p.add_argument("--markdown", type=Path, help="results as a Markdown table")
    p.add_argument("--csv", type=Path, help="results as CSV")
    p.add_argument("--plot", type=Path, help="PNG of time and memory vs length")
    p.set_defaults(run=main)


def main(args: argparse.Namespace) -> int:
    def show(r: dict) -> None:
        print(
            f"{r['model']:<22} {r['mode']:<9} {r['seconds']:>7g} s  batch {r['batch']:<3} "
            f"{r['time_s']:9.3f} s  {r['peak_mem_bytes'] / 2**30:7.2f} GiB",
            flush=True,
        )

    for option in ("json", "markdown", "csv", "plot"):
        if getattr(args, option) is not None:
            check_output_file(getattr(args, option), f"--{option}")
    results = run(
        args.models, args.seconds, args.mode, batch=args.batch, device=args.device,
        reps=args.reps, warmup=args.warmup, threads=args.threads, precision=args.precision,
        isolate=False if args.no_isolate else None, on_result=show,
    )  # fmt: skip
    write_reports(results, args.json, args.markdown, args.csv, args.plot)
    if args.markdown is None:
        sys.stdout.write("\n" + markdown_table(results))
    return 0
