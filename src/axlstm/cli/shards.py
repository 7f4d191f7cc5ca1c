"""``axlstm shards``: WebDataset tar shards from a folder or manifest of audio files."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from axlstm.cli.common import nonnegative_int, positive_int
from axlstm.core.errors import InputError, UsageError
from axlstm.core.fileio import new_output_dir


def add_parser(sub) -> None:
    p = sub.add_parser(
        "shards",
        help="write WebDataset shards (FLAC audio or log-mel arrays) for pretraining",
        description=(
            "Read every audio file of a folder (recursively) or manifest, resample to 16 kHz "
            "mono and write SHARD_DIR/shard-000000.tar, ... with one .flac (or, with "
            "--features, one unnormalised log-mel .npy array (T, 80)) and one .json per "
            "sample, plus SHARD_DIR/index.json. Unreadable, empty, silent and NaN files are "
            "skipped and reported."
        ),
    )
    p.add_argument("input", type=Path, help="folder of audio files, or a .csv/.tsv/.jsonl manifest")
    p.add_argument("--out", type=Path, required=True, metavar="SHARD_DIR", help="output folder")
    p.add_argument("--features", action="store_true", help="store log-mel arrays, not audio")
    p.add_argument("--shard-size", type=positive_int, default=1000, help="samples per shard (1000)")
    p.add_argument(
        "--dtype", choices=("float16", "float32"), default="float16", help="feature dtype"
    )
    p.add_argument(
        "--prefix",
        type=shard_prefix,
        default="shard",
        help="shard file name prefix: a plain name, no folder, no leading dot (shard)",
    )
    p.add_argument(
        "--workers", type=nonnegative_int, default=0, help="decoding processes (0: none)"
    )
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar (default: when stderr is a terminal)",
    )
    p.set_defaults(run=run)


def shard_prefix(text: str) -> str:
    """``--prefix``: checked when parsed, so ``../x`` or ``.x`` exit with code 2 at once."""
    from axlstm.data.shards import check_prefix

    try:
        return check_prefix(text)
    except UsageError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def run(args: argparse.Namespace) -> int:
    from axlstm.data import list_inputs
    from axlstm.data.sources import TRAINING_EXTENSIONS

    if not os.path.lexists(args.input):
        raise FileNotFoundError(f"input not found: {args.input}")
    with new_output_dir(args.out, "shard folder"):
        inputs, root = list_inputs(args.input)
        if not inputs:  # as `axlstm embed`: an input naming no file is a usage error
            raise UsageError(
                f"no audio or .npy feature files found in {args.input} (0 files with the "
                f"extensions {', '.join(TRAINING_EXTENSIONS)})"
            )
        report = _write(args, inputs, root)
        if report.written == 0:
            (args.out / "index.json").unlink(missing_ok=True)  # an empty set is no set
            raise InputError(
                f"none of the {len(inputs)} files of {args.input} could be used "
                f"({', '.join(f'{n} {r}' for r, n in sorted(report.skipped.items()))}); "
                "no shard was written"
            )
    skipped = sum(report.skipped.values())
    kind = f"log-mel {args.dtype}" if args.features else "FLAC"
    print(
        f"wrote {report.written} samples ({kind}) in {len(report.shards)} shard(s) to "
        f"{args.out}; skipped {skipped}" + (f" {dict(report.skipped)}" if skipped else "")
    )
    return 0


def _write(args: argparse.Namespace, inputs: list[str], root: str):
    from tqdm.auto import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    from axlstm.data import write_shards

    show = sys.stderr.isatty() if args.progress is None else args.progress
    with (
        tqdm(total=len(inputs), unit="file", disable=not show, desc="shards") as bar,
        logging_redirect_tqdm(),
    ):
        report = write_shards(
            inputs,
            args.out,
            features=args.features,
            shard_size=args.shard_size,
            dtype=args.dtype,
            prefix=args.prefix,
            workers=args.workers,
            root=root,
            progress=bar.update,
        )
    return report
