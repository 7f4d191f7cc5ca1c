"""The encoder interface every model family implements and every preset returns.

Consumers (embedding, HEAR, evaluation, the pretraining recipe, the benchmark, the CLI) use a
model through this interface only. The families: :class:`~axlstm.models.MaskedSpecModel`
(AxLSTM, the SSAST-style transformer and SSAM on the AxLSTM log-mel), and the SSAST framework
(:class:`~axlstm.models.SSASTOriginal`, :class:`~axlstm.models.SSAMBA`, on the Kaldi fbank).

Shapes (B clips, T input frames of F bins, T' output frames, D = ``frame_dim``):

- input: ``(B, 1, T, F)`` in (time, frequency) layout, made from audio by the model's
  :attr:`Encoder.front_end_config` (an :class:`~axlstm.audio.FrontEndSpec`);
- ``forward_features(spec, layer=...)``: ``(B, T', D)`` frames, ``T' = frames_for(T)``: output
  frame t covers input frames ``t * frame_hop .. t * frame_hop + frame_span - 1``;
- ``pretrain_step(spec)``: the scalar loss and a dict of scalar metrics. Calling the model,
  ``model(spec, generator=...)``, is the same step (so that wrappers such as
  ``DistributedDataParallel`` see it): its output has ``.loss`` and ``.metrics()``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple, Protocol, runtime_checkable

import torch

from axlstm.audio.frontend import FrontEndSpec

__all__ = ["Encoder", "LayerChoice", "PretrainStep", "Reconstruction", "resolve_frame_layout"]

#: None: the final normalised output; an int: the hidden state of that layer (0-based,
#: negatives count from the end); a list or tuple of these: several, from one pass.
LayerChoice = int | None | list[int | None] | tuple[int | None, ...]


class PretrainStep(NamedTuple):
    """One pretraining step: ``loss`` to back-propagate, and detached scalar ``metrics`` (named
    by :attr:`Encoder.pretrain_metrics`) to log beside it; ``output`` is the family's full
    output (e.g. :class:`~axlstm.models.MSMOutput`)."""

    loss: torch.Tensor
    metrics: dict[str, torch.Tensor]
    output: Any


class Reconstruction(NamedTuple):
    """What a masked model predicts for every patch: ``mask`` (B, L) with 1 = masked, ``pred``
    (B, L, P) patches of ``patch_size`` (time, frequency), in the time-major patch order of
    :func:`axlstm.layers.patchify`."""

    mask: torch.Tensor
    pred: torch.Tensor
    patch_size: tuple[int, int]


@runtime_checkable
class Encoder(Protocol):
    """What every model is. See the module doc for the shapes."""

    #: the family's config (``name``, ``family``, ``frame_layout``, ``to_dict()``, ...)
    config: Any
    #: the ``"model_class"`` a release of the model records
    release_class: str

    @property
    def front_end_config(self) -> FrontEndSpec:
        """How a waveform becomes this model's input (sample rate, frames per second, the
        shortest clip; see :class:`~axlstm.audio.FrontEndSpec`)."""
        ...

    @property
    def embed_dim(self) -> int:
        """Token width."""
        ...

    @property
    def frame_dim(self) -> int:
        """Width D of one output frame."""
        ...

    @property
    def num_layers(self) -> int:
        """Hidden states a layer choice can index."""
        ...

    @property
    def frame_span(self) -> int:
        """Input frames one output frame covers (also the shortest input)."""
        ...

    @property
    def frame_hop(self) -> int:
        """Input frames between consecutive output frames."""
        ...

    @property
    def embed_window(self) -> int:
        """Input frames of the official embedding window (``window="official"``)."""
        ...

    @property
    def frame_layouts(self) -> tuple[str, ...]:
        """Frame layouts ``forward_features`` accepts ("time" always comes first)."""
        ...

    @property
    def pretrain_metrics(self) -> tuple[str, ...]:
        """Names of the metrics :meth:`pretrain_step` returns beside the loss."""
        ...

    @property
    def supports_streaming(self) -> bool:
        """True when the model is causal and can embed a stream chunk by chunk."""
        ...

    def frames_for(self, frames: int) -> int:
        """Output frames for ``frames`` input frames."""
        ...

    def num_tokens(self, frames: int) -> int:
        """Length of the token sequence the encoder runs on for ``frames`` input frames."""
        ...

    def forward_features(
        self,
        spec: torch.Tensor,
        frame_layout: str | None = None,
        layer: LayerChoice = None,
    ) -> torch.Tensor | list[torch.Tensor]:
        """Frames ``(B, frames_for(T), frame_dim)`` of one layer, or a list of them for a
        list of layers (one encoder pass)."""
        ...

    def pretrain_step(
        self, spec: torch.Tensor, generator: torch.Generator | None = None
    ) -> PretrainStep:
        """One masked pretraining step on ``(B, 1, T, F)`` training inputs (``self(spec,
        generator=generator)``, whose output has ``.loss`` and ``.metrics()``)."""
        ...

    def pretraining_problem(self) -> str | None:
        """Why this model cannot be pretrained as configured, or None."""
        ...

    def reconstruction(
        self, spec: torch.Tensor, generator: torch.Generator | None = None
    ) -> Reconstruction | None:
        """Predicted patches for every patch of a masked input, or None where the objective
        does not predict every patch."""
        ...

    def example_input(self, batch: int = 2, frames: int | None = None) -> torch.Tensor:
        """A random valid input ``(batch, 1, frames, F)`` (a default length when None)."""
        ...

    def num_parameters(self, part: str = "encoder") -> int:
        """Parameter count; "encoder" is the count papers report."""
        ...

    def save_pretrained(self, directory: str | Path, **provenance: Any) -> Path:
        """Write a release folder (``config.json`` + ``model.safetensors``)."""
        ...


def resolve_frame_layout(model: Encoder, frame_layout: str | None) -> str:
    """The frame layout to use (the model's configured one when None), checked against
    ``model.frame_layouts``."""
    layout = frame_layout or model.config.frame_layout
    layouts = tuple(model.frame_layouts)
    if layout not in layouts:
        if len(layouts) == 1:
            raise ValueError(f"{type(model).__name__} supports frame_layout {layouts[0]!r} only")
        raise ValueError(f"unknown frame_layout {layout!r}; use {' or '.join(map(repr, layouts))}")
    return layout
