"""Mixed precision: which autocast dtype and whether a GradScaler is needed, per device."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

import torch

__all__ = ["Precision", "resolve_precision"]

logger = logging.getLogger(__name__)

_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Precision:
    """The precision a run actually uses.

    Attributes:
        name: "fp32", "bf16" or "fp16".
        device_type: "cuda" or "cpu".
        dtype: autocast dtype, None for fp32.
        use_scaler: fp16 needs loss scaling.
    """

    name: str
    device_type: str
    dtype: torch.dtype | None

    @property
    def use_scaler(self) -> bool:
        return self.dtype is torch.float16

    def autocast(self):
        """Context manager for the forward pass (a no-op for fp32)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        return torch.amp.GradScaler(self.device_type, enabled=self.use_scaler)


def resolve_precision(requested: str, device: torch.device) -> Precision:
    """Autocast only on CUDA: fp16 with a GradScaler, bf16 where the GPU supports it.

    CPU runs are fp32: CPU autocast is slow for these models (bf16 matmuls without AMX run
    hundreds of times slower here), so another request is overridden with a warning.
    """
    if requested not in _DTYPES:
        raise ValueError(f"unknown precision {requested!r}; choose fp32, bf16 or fp16")
    if device.type != "cuda":
        if requested != "fp32":
            logger.warning("precision %s requested on %s: training in fp32", requested, device)
        return Precision("fp32", device.type, None)
    if requested == "bf16" and not torch.cuda.is_bf16_supported():
        logger.warning("this GPU has no bf16 support: training in fp16 with loss scaling")
        requested = "fp16"
    return Precision(requested, "cuda", _DTYPES[requested])
