"""``axlstm`` command-line entry point: one sub-command per module in this package.

Expected failures end in one line on stderr, ``axlstm COMMAND: error: ...``, naming the file
or option and the problem: exit code 2 when the command was asked wrongly (a bad option, a bad
config value), 1 when it could not be done (a file that cannot be read or written, bad
weights, bad audio, a full disk). Ctrl-C and SIGTERM end long jobs with their finished work
kept, exit code 130. A traceback appears only for genuine bugs, or for every error with
``--debug`` (or ``AXLSTM_DEBUG=1``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

import torch

from axlstm._version import __version__
from axlstm.cli import (
    benchmark,
    card,
    convert,
    embed,
    evaluate,
    export,
    export_onnx,
    finetune,
    models,
    predict,
    prepare_data,
    pretrain,
    push,
    shards,
    tasks,
)
from axlstm.core.errors import AxlstmError, ConfigError, UsageError
from axlstm.core.interrupt import Interrupted, terminate_as_interrupt

COMMANDS = (
    benchmark,
    card,
    convert,
    embed,
    evaluate,
    export,
    export_onnx,
    finetune,
    models,
    predict,
    prepare_data,
    pretrain,
    push,
    shards,
    tasks,
)

#: Exit codes.
EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block): ``axlstm CMD: error: ... (see
    axlstm CMD --help)``, exit code 2. Sub-command parsers are of the same class."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="axlstm", description="Self-supervised audio representations: AxLSTM, SSAST."
    )
    parser.add_argument("--version", action="version", version=f"axlstm {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show the full traceback of any error (also: environment AXLSTM_DEBUG=1)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def exit_code(err: BaseException) -> int | None:
    """The exit code of an expected failure; ``None`` for a bug (shown with its traceback)."""
    if isinstance(err, (UsageError, ConfigError)):
        return EXIT_USAGE
    if isinstance(err, (AxlstmError, OSError, ValueError, MemoryError, torch.OutOfMemoryError)):
        return EXIT_FAILURE
    return None


def describe(err: BaseException) -> str:
    """The one-line message of an expected failure."""
    if isinstance(err, OSError) and not isinstance(err, AxlstmError) and err.strerror:
        names = [n for n in (err.filename, err.filename2) if n is not None]
        text = f"{' -> '.join(map(str, names))}: {err.strerror}" if names else err.strerror
    elif isinstance(err, torch.OutOfMemoryError):
        text = "out of GPU memory; try a smaller --batch-size"
    elif isinstance(err, MemoryError):
        text = "out of memory; try a smaller --batch-size or shorter inputs"
    else:
        text = str(err) or type(err).__name__
    return " ".join(text.split())  # one line, whatever the message held


def _debug_wanted(args: argparse.Namespace) -> bool:
    return bool(args.debug) or os.environ.get("AXLSTM_DEBUG", "").strip() not in ("", "0")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2) if args.verbose else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    prefix = f"axlstm {args.command}"
    try:
        with terminate_as_interrupt():
            return int(args.run(args) or 0)
    except KeyboardInterrupt as err:
        if _debug_wanted(args):
            raise
        how = f" by {err.args[0]}" if isinstance(err, Interrupted) else ""
        print(f"{prefix}: interrupted{how}; finished work was kept", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as err:
        code = exit_code(err)
        if code is None or _debug_wanted(args):
            raise
        print(f"{prefix}: error: {describe(err)}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
