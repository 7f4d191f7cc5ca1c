"""``axlstm shards``: WebDataset tar shards from a folder or manifest of audio files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


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
    p.add_argument("--shard-size", type=int, default=1000, help="samples per shard (1000)")
    p.add_argument(
        "--dtype", choices=("float16", "float32"), default="float16", help="feature dtype"
    )
    p.add_argument("--prefix", default="shard", help="shard file name prefix")
    p.add_argument("--workers", type=int, default=0, help="decoding processes (0: none)")
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar (default: when stderr is a terminal)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    from axlstm.data import list_inputs, write_shards

    inputs, root = list_inputs(args.input)
    if not inputs:
        raise ValueError(f"no audio files found in {args.input}")
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
    skipped = sum(report.skipped.values())
    kind = f"log-mel {args.dtype}" if args.features else "FLAC"
    print(
        f"wrote {report.written} samples ({kind}) in {len(report.shards)} shard(s) to "
        f"{args.out}; skipped {skipped}" + (f" {dict(report.skipped)}" if skipped else "")
    )
    return 0
