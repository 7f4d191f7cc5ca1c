"""Helpers shared by several sub-commands."""

from __future__ import annotations

import torch


def parse_device(name: str) -> torch.device:
    """``--device`` value: "auto" (CUDA when available, else CPU) or any torch device name."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"unknown device {name!r} ({err})") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but CUDA is not available")
    return device
