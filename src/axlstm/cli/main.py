"""``axlstm`` command-line entry point: one sub-command per module in this package."""

from __future__ import annotations

import argparse
import logging
import sys

from axlstm._version import __version__
from axlstm.cli import (
    benchmark,
    convert,
    embed,
    evaluate,
    export,
    models,
    pretrain,
    shards,
    tasks,
)

COMMANDS = (benchmark, convert, embed, evaluate, export, models, pretrain, shards, tasks)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="axlstm", description="Self-supervised audio representations: AxLSTM, SSAST."
    )
    parser.add_argument("--version", action="version", version=f"axlstm {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2) if args.verbose else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.run(args) or 0)
    except (FileNotFoundError, ValueError) as err:
        # Expected user errors: one clear line, no traceback.
        print(f"axlstm {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
