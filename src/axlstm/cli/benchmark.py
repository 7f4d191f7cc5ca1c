"""``axlstm benchmark``: time and memory of models against input length."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from axlstm.benchmark import (
    FORM_LENGTHS,
    forms_markdown,
    markdown_table,
    measure_forms,
    run,
    write_form_table,
    write_reports,
)
from axlstm.cli.common import nonnegative_int, positive_float, positive_int
from axlstm.core.errors import UsageError
from axlstm.core.fileio import atomic_write_text, check_output_file
from axlstm.models.compile import COMPILE_MODES


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
    p.add_argument(
        "--models", nargs="+",
        help="presets or release folders (with --forms: the AxLSTM whose mLSTM shape is timed, "
        "default axlstm_tiny)",
    )  # fmt: skip
    p.add_argument(
        "--seconds", nargs="+", type=positive_float, default=[2.0, 10.0, 60.0, 300.0],
        help="input lengths in seconds of audio (default: 2 10 60 300)",
    )  # fmt: skip
    p.add_argument(
        "--batch", type=positive_int,
        help="clips per pass (default 1; with --forms 8 sequences of the model's heads each)",
    )  # fmt: skip
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
        "--flops", action="store_true",
        help="count each pass's FLOPs (matmuls, convs, attention) and report TFLOP/s and the "
        "model FLOP utilisation against the GPU's peak",
    )  # fmt: skip
    p.add_argument(
        "--peak-tflops", type=positive_float,
        help="the device's peak TFLOP/s for MFU (default: the data-sheet figure of known GPUs)",
    )  # fmt: skip
    p.add_argument(
        "--compile", nargs="?", const="auto", choices=COMPILE_MODES, metavar="MODE",
        help="run compiled (torch.compile, static shapes): the encoder for inference, the whole "
        "step for training; MODE as in pretrain --compile-mode (default auto: CUDA graphs on "
        "CUDA). The compile time is reported apart",
    )  # fmt: skip
    p.add_argument(
        "--no-isolate", action="store_true",
        help="run every configuration in this process (CPU peak memory then accumulates)",
    )  # fmt: skip
    forms = p.add_argument_group("mLSTM forms (the table mlstm_backend='auto' chooses from)")
    forms.add_argument(
        "--forms", action="store_true",
        help="time the exact mLSTM forms (parallel, chunkwise, triton where available) at "
        "--lengths, forward and forward+backward, instead of whole models",
    )  # fmt: skip
    forms.add_argument(
        "--lengths", nargs="+", type=positive_int, default=list(FORM_LENGTHS),
        help="sequence lengths in tokens for --forms (default: "
        + " ".join(map(str, FORM_LENGTHS)) + ")",
    )  # fmt: skip
    forms.add_argument(
        "--forms-table", type=Path,
        help="write (or update) the form table JSON; use it with AXLSTM_MLSTM_FORMS=PATH",
    )  # fmt: skip
    p.add_argument("--json", type=Path, required=True, help="results as a JSON list")
    p.add_argument("--markdown", type=Path, help="results as a Markdown table")
    p.add_argument("--csv", type=Path, help="results as CSV")
    p.add_argument("--plot", type=Path, help="PNG of time and memory vs length")
    p.set_defaults(run=main)


def _keeping(path: Path, show):
    """An ``on_result`` that prints a result and rewrites ``path`` with every result so far:
    a run stopped by a time limit or a failure keeps the figures it finished."""
    done: list[dict] = []

    def on_result(r: dict) -> None:
        done.append(r)
        atomic_write_text(path, json.dumps(done, indent=2) + "\n")
        show(r)

    return on_result


def main(args: argparse.Namespace) -> int:
    def show(r: dict) -> None:
        print(
            f"{r['model']:<22} {r['mode']:<9} {r['seconds']:>7g} s  batch {r['batch']:<3} "
            f"{r['time_s']:9.3f} s  {r['peak_mem_bytes'] / 2**30:7.2f} GiB",
            flush=True,
        )

    for option in ("json", "markdown", "csv", "plot", "forms_table"):
        if getattr(args, option, None) is not None:
            check_output_file(getattr(args, option), "--" + option.replace("_", "-"))
    if args.forms:
        return forms_main(args)
    if not args.models:
        raise UsageError("--models is required (or --forms to time the mLSTM forms)")
    results = run(
        args.models, args.seconds, args.mode, batch=args.batch or 1, device=args.device,
        reps=args.reps, warmup=args.warmup, threads=args.threads, precision=args.precision,
        isolate=False if args.no_isolate else None, on_result=_keeping(args.json, show),
        flops=args.flops, peak=args.peak_tflops, compile=args.compile,
    )  # fmt: skip
    write_reports(results, args.json, args.markdown, args.csv, args.plot)
    if args.markdown is None:
        sys.stdout.write("\n" + markdown_table(results))
    return 0


def forms_main(args: argparse.Namespace) -> int:
    def show(r: dict) -> None:
        t = "failed" if r["time_s"] is None else f"{1e3 * r['time_s']:9.2f} ms"
        kind = "fwd+bwd" if r["grad"] else "fwd"
        print(f"{r['form']:<10} {kind:<8} {r['tokens']:>6} tokens  {t}", flush=True)

    models = args.models or ["axlstm_tiny"]
    if len(models) != 1:
        raise UsageError(f"--forms times one model's mLSTM shape, got {len(models)} models")
    results = measure_forms(
        models[0], args.lengths, batch=args.batch or 8, device=args.device,
        precision=args.precision, reps=args.reps, warmup=args.warmup, threads=args.threads,
        on_result=_keeping(args.json, show),
    )  # fmt: skip
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    table = forms_markdown(results)
    if args.markdown is not None:
        args.markdown.write_text(table)
    else:
        sys.stdout.write("\n" + table)
    if args.forms_table is not None:
        write_form_table(results, args.forms_table)
    return 0
