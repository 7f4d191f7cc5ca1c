"""What the evaluation embeds task audio with: an encoder (through :mod:`axlstm.embedding`) or
the hand-crafted log-mel baseline (:mod:`axlstm.evaluation.logmel_baseline`).

An embedder has a ``label`` (its row in the report), a ``dim``, a JSON-able
``fingerprint(timestamps=False)`` that changes whenever its output could (weights, config, front
end, options), and ``embed_files(paths, timestamps=False)`` yielding one
:class:`~axlstm.embedding.FileEmbedding` per path, in order, failures included: scene
embeddings only, or with ``timestamps=True`` the frame embeddings and their timestamps too, at
a hop of at most :data:`MAX_HOP_MS` (HEAR's timestamp embeddings, as
:func:`axlstm.hear.get_timestamp_embeddings` gives them).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import torch

from axlstm.embedding import (
    FileEmbedding,
    hop_split_for,
    iter_file_embeddings,
    model_layers,
    model_window,
    parse_layers,
)
from axlstm.models import Encoder

__all__ = [
    "EMBED_PIPELINE_VERSION",
    "MAX_HOP_MS",
    "Embedder",
    "ModelEmbedder",
    "state_dict_sha256",
]

logger = logging.getLogger(__name__)

#: Bump when the embedding pipeline changes what it computes, to invalidate every cache entry.
EMBED_PIPELINE_VERSION = 1
#: The largest hop between timestamp embeddings (HEAR's rule), in ms.
MAX_HOP_MS = 50.0


class Embedder(Protocol):
    label: str

    @property
    def dim(self) -> int: ...

    def fingerprint(self, timestamps: bool = False) -> dict[str, Any]: ...

    def embed_files(
        self, paths: Sequence[str], timestamps: bool = False
    ) -> Iterator[FileEmbedding]: ...


def state_dict_sha256(module: torch.nn.Module) -> str:
    """SHA-256 of a module's state dict: every tensor's name, dtype, shape and bytes, in key
    order. Any change to any weight or buffer changes it."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class ModelEmbedder:
    """Scene embeddings of any :class:`~axlstm.models.Encoder`.

    Args:
        model: the encoder (its device is where it runs).
        label: its name in the report.
        window, layer, frame_layout: embedding options (see :func:`axlstm.embedding.embed`);
            one layer only.
        batch_size: windows per forward pass.
        source: where the model came from (for the record only; not part of the fingerprint).
    """

    def __init__(
        self,
        model: Encoder,
        label: str,
        *,
        window: Any = "official",
        layer: Any = None,
        frame_layout: str | None = None,
        batch_size: int = 16,
        source: str | None = None,
    ) -> None:
        model_window(model, window)
        _, single = parse_layers(layer, model_layers(model))
        if not single:
            raise ValueError(f"evaluation probes one layer at a time; got layer={layer!r}")
        self.model = model
        self.label = label
        self.window = window
        self.layer = layer
        self.frame_layout = frame_layout or model.config.frame_layout
        self.batch_size = int(batch_size)
        self.source = source
        self.hop_split = hop_split_for(model, MAX_HOP_MS)
        self._weights: str | None = None

    @property
    def dim(self) -> int:
        return int(self.model.frame_dim)

    def fingerprint(self, timestamps: bool = False) -> dict[str, Any]:
        if self._weights is None:
            self._weights = state_dict_sha256(self.model)
        extra = {"timestamps": True, "hop_split": self.hop_split} if timestamps else {}
        return {
            **extra,
            "kind": "model",
            "pipeline_version": EMBED_PIPELINE_VERSION,
            "config": self.model.config.to_dict(),
            "front_end": self.model.front_end_config.to_dict(),
            "weights_sha256": self._weights,
            "window": str(self.window),
            "layer": str(self.layer),
            "frame_layout": self.frame_layout,
        }

    def embed_files(
        self, paths: Sequence[str], timestamps: bool = False
    ) -> Iterator[FileEmbedding]:
        for result in iter_file_embeddings(
            self.model,
            [str(p) for p in paths],
            batch_size=self.batch_size,
            window=self.window,
            layer=self.layer,
            frame_layout=self.frame_layout,
            hop_split=self.hop_split if timestamps else 1,
        ):
            if not timestamps:
                result.frames = result.timestamps = None  # scene embeddings only
            yield result
