"""Helpers shared by several sub-commands: device names and checked numeric options."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

import torch

from axlstm.core.errors import UsageError


def parse_device(name: str) -> torch.device:
    """``--device`` value: "auto" (CUDA when available, else CPU) or any torch device name."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise UsageError(f"--device: unknown device {name!r} ({err})") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {name!r} asked for, but CUDA is not available")
    return device


def _number(kind: type, low: float, strict: bool) -> Callable[[str], int | float]:
    """An argparse ``type=`` that parses a finite ``kind`` above ``low`` (or at least it)."""
    bound = f"> {low:g}" if strict else f">= {low:g}"

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'an integer' if kind is int else 'a number'}, got {text!r}"
            ) from None
        if not math.isfinite(value) or (value <= low if strict else value < low):
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text}")
        return value

    parse.__name__ = f"{kind.__name__} {bound}"
    return parse


#: argparse ``type=`` values for numeric options: bad values are refused at parse time with
#: the option's name (exit code 2).
positive_int = _number(int, 0, strict=True)
nonnegative_int = _number(int, 0, strict=False)
positive_float = _number(float, 0.0, strict=True)
nonnegative_float = _number(float, 0.0, strict=False)
