"""Embedding options: windows, layers, frame layouts and precision, checked against a model's
interface (:class:`~axlstm.models.Encoder`)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from axlstm.core.errors import UsageError
from axlstm.models import Encoder
from axlstm.models.interface import resolve_frame_layout as check_frame_layout
from axlstm.models.msm import OFFICIAL_WINDOW

__all__ = [
    "OFFICIAL_WINDOW",
    "LayerSpec",
    "check_frame_layout",
    "hop_split_for",
    "layer_labels",
    "model_layers",
    "model_window",
    "official_window",
    "parse_layers",
    "parse_window",
    "precision_context",
]

logger = logging.getLogger(__name__)

_PRECISIONS = {
    None: None,
    "fp32": None,
    "float32": None,
    "fp16": torch.float16,
    "float16": torch.float16,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
}
_WARNED: set[tuple[str, str]] = set()

LayerSpec = int | str | None | Sequence[int | str | None]


def parse_window(window: Any, patch_frames: int = 4, official: int = OFFICIAL_WINDOW) -> int | None:
    """Window length in mel frames, or None for one pass over the whole clip.

    Accepts "official" (``official`` frames: 200 for AxLSTM, see :func:`official_window`),
    None / "none" / "full" / 0 (no windowing), or a positive number of frames that is a
    multiple of the patch length.
    """
    if window is None:
        return None
    if isinstance(window, str):
        w = window.strip().lower()
        if w == "official":
            return int(official)
        if w in ("none", "full", "0"):
            return None
        try:
            window = int(w)
        except ValueError:
            raise UsageError(
                f"unknown window {window!r}; use 'official', 'none' or a number of frames"
            ) from None
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)):
        raise UsageError(f"window must be 'official', 'none' or an int, got {window!r}")
    if window == 0:
        return None
    if window < 0 or window % patch_frames:
        raise UsageError(
            f"window must be a positive multiple of {patch_frames} frames, got {window}"
        )
    return int(window)


def _one_layer(item: Any, depth: int) -> int | None:
    if item is None:
        return None
    if isinstance(item, str):
        s = item.strip().lower()
        if s in ("last", "final", "output"):
            return None
        if s.startswith("block"):
            s = s[len("block") :]
        try:
            item = int(s)
        except ValueError:
            raise UsageError(
                f"unknown layer {item!r}; use 'last', 'all', a block index or a list of them"
            ) from None
    if isinstance(item, bool) or not isinstance(item, (int, np.integer)):
        raise UsageError(f"layer must be an int, 'last' or 'all', got {item!r}")
    if not -depth <= item < depth:
        raise UsageError(f"layer {item} is out of range for a model with {depth} blocks")
    return int(item) % depth


def parse_layers(layer: LayerSpec, depth: int) -> tuple[list[int | None], bool]:
    """Resolve a layer choice into block indices (None = the final normalised output).

    Args:
        layer: None / "last" / "final" (the encoder output after its norm, the default); an int
            (output of that block, 0-based, negatives count from the end, before the final
            norm); "all" (every block, then the final output); a list of these or a
            comma-separated string such as "3,last".
        depth: number of blocks of the model.

    Returns:
        The indices, and whether the choice was a single layer (outputs without a layer axis).
    """
    if isinstance(layer, str) and layer.strip().lower() == "all":
        return [*range(depth), None], False
    if isinstance(layer, str) and "," in layer:
        layer = [p for p in layer.split(",") if p.strip()]
    if isinstance(layer, (list, tuple)):
        if not layer:
            raise UsageError("empty layer list")
        return [_one_layer(x, depth) for x in layer], False
    return [_one_layer(layer, depth)], True


def layer_labels(indices: Sequence[int | None]) -> list[str]:
    return ["final" if i is None else f"block{i}" for i in indices]


def official_window(model: Encoder) -> int:
    """Frames of ``window="official"`` for ``model``: its ``embed_window`` (the official HEAR
    runtime's 200 frames = 2 s for AxLSTM-style models; the training length ``img_size[0]`` for
    the original SSAST and SSAMBA, 1024 frames = 10.24 s for the released models)."""
    return int(model.embed_window)


def model_window(model: Encoder, window: Any) -> int | None:
    """:func:`parse_window` with the model's patch length and official window."""
    return parse_window(window, model.frame_span, official_window(model))


def hop_split_for(model: Encoder, max_hop_ms: float | None) -> int:
    """The number of offset passes (``embed(..., hop_split=n)``) that brings ``model``'s frame
    hop to at most ``max_hop_ms``: the smallest divisor ``n`` of the frame stride (in input
    frames) with ``stride * input_hop / n <= max_hop_ms``; 1 when the hop already is that fine
    or ``max_hop_ms`` is None. 16x16-patch SSAST/SSAMBA models (160 ms) need 4 (40 ms);
    AxLSTM (40 ms) and 128x2 frame models (20 ms) need 1.

    Raises:
        ValueError: ``max_hop_ms`` is not positive, or not even one input frame reaches it.
    """
    if max_hop_ms is None:
        return 1
    if isinstance(max_hop_ms, bool) or not float(max_hop_ms) > 0:
        raise ValueError(f"max_hop_ms must be positive, got {max_hop_ms!r}")
    fe = model.front_end_config
    input_ms = 1000.0 * fe.hop_samples / fe.sample_rate  # 10 ms per input frame
    stride = int(model.frame_hop)
    for n in range(1, stride + 1):
        if stride % n == 0 and stride * input_ms / n <= float(max_hop_ms) + 1e-9:
            return n
    raise ValueError(
        f"no frame hop of at most {max_hop_ms:g} ms: the model's finest grid is one input "
        f"frame ({input_ms:g} ms)"
    )


def model_layers(model: Encoder) -> int:
    """Hidden states a layer choice indexes (``model.num_layers``: one per block, one per
    bidirectional pair for SSAMBA)."""
    return int(model.num_layers)


def precision_context(device: torch.device, precision: str | None):
    if precision not in _PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}; use 'fp32', 'fp16' or 'bf16'")
    dtype = _PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=dtype)
    key = (device.type, str(precision))
    if key not in _WARNED:  # once per process: the CLI calls this for every batch
        _WARNED.add(key)
        logger.warning(
            "precision %s uses autocast on CUDA only; computing in float32 on %s",
            precision,
            device.type,
        )
    return contextlib.nullcontext()
