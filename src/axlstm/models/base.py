"""What the model families share: the release writer, the frame rule and the generic parts of
:class:`~axlstm.models.interface.Encoder`. A family subclasses :class:`EncoderBase` and
provides ``encode``, ``tokens_to_frames`` and its pretraining objective."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from axlstm.core.release_format import write_release
from axlstm.models.card import write_card_quietly
from axlstm.models.interface import (
    LayerChoice,
    PretrainStep,
    Reconstruction,
    resolve_frame_layout,
)

__all__ = ["EncoderBase"]


class EncoderBase(nn.Module):
    """Shared implementation of the encoder interface.

    Subclasses set ``release_class``, ``config_class`` and ``num_prefix_tokens`` (tokens in
    front of the patches: cls, dist) and implement :meth:`encode` and
    :meth:`tokens_to_frames`, the properties ``front_end_config``, ``frame_span``,
    ``frame_hop``, ``embed_window`` and :meth:`pretrain_step`.
    """

    release_class: ClassVar[str] = ""
    config_class: ClassVar[type] = object
    frame_layouts: ClassVar[tuple[str, ...]] = ("time",)
    pretrain_metrics: ClassVar[tuple[str, ...]] = ()

    config: Any
    embed_dim: int

    # ------------------------------------------------------------------------ geometry
    @property
    def frame_dim(self) -> int:
        return self.config.frame_dim

    @property
    def num_layers(self) -> int:
        return self.config.depth

    #: consecutive ``blocks.N``/``layers.N`` modules that make one of :attr:`num_layers`
    #: (fine-tuning's ``last_k`` and layer-wise lr decay count layers, not modules)
    blocks_per_layer: ClassVar[int] = 1

    @property
    def num_prefix_tokens(self) -> int:
        return 1

    @property
    def supports_streaming(self) -> bool:
        return False

    def frames_for(self, frames: int) -> int:
        """Output frames for ``frames`` input frames: ``(frames - span) // hop + 1``."""
        span, hop = self.frame_span, self.frame_hop
        if frames < span:
            raise ValueError(f"input has {frames} frames, fewer than one patch ({span} frames)")
        return (frames - span) // hop + 1

    # ------------------------------------------------------------------------ features
    def encode(self, spec: torch.Tensor, mask=None, return_hidden: bool = False):
        raise NotImplementedError

    def tokens_to_frames(
        self, tokens: torch.Tensor, frames: int | None = None, frame_layout: str | None = None
    ) -> torch.Tensor:
        """(B, L, d) patch tokens (prefix tokens dropped) of an input of ``frames`` frames ->
        (B, frames_for(frames), frame_dim) frames."""
        raise NotImplementedError

    def forward_features(
        self,
        spec: torch.Tensor,
        frame_layout: str | None = None,
        layer: LayerChoice = None,
    ) -> torch.Tensor | list[torch.Tensor]:
        """Frame features of a spectrogram.

        Args:
            spec: (B, 1, T, F) normalised model input, (time, frequency) layout.
            frame_layout: override the configured layout (see :attr:`frame_layouts`).
            layer: None for the final normalised output; an int for that hidden state
                (0-based, negatives from the end; see :attr:`num_layers`); a list of these for
                several layers from one pass (a list of frame tensors is returned).

        Returns:
            (B, frames_for(T), frame_dim) frames (a list of them for a list of layers).
        """
        layout = resolve_frame_layout(self, frame_layout)
        many = isinstance(layer, (list, tuple))
        indices = list(layer) if many else [layer]
        if any(i is not None for i in indices):
            tokens, hidden = self.encode(spec, return_hidden=True)
        else:
            tokens, hidden = self.encode(spec), []
        n = self.num_prefix_tokens
        frames = spec.shape[-2]
        outs = [
            self.tokens_to_frames((tokens if i is None else hidden[i])[:, n:], frames, layout)
            for i in indices
        ]
        return outs if many else outs[0]

    # ----------------------------------------------------------------------- pretraining
    def pretrain_step(
        self, spec: torch.Tensor, generator: torch.Generator | None = None
    ) -> PretrainStep:
        out = self(spec, generator=generator)
        return PretrainStep(out.loss, out.metrics(), out)

    def pretraining_problem(self) -> str | None:
        fe = self.front_end_config
        bins = self.example_input(1).shape[-1]
        if fe.n_mels != bins:
            return (
                f"the front end gives {fe.n_mels} bins, the model takes {bins}: set the model's "
                f"front_end n_mels to {bins}"
            )
        return None

    def reconstruction(
        self, spec: torch.Tensor, generator: torch.Generator | None = None
    ) -> Reconstruction | None:
        return None

    # ----------------------------------------------------------------------- persistence
    def save_pretrained(self, directory: str | Path, **provenance: Any) -> Path:
        """Write a release folder: ``config.json``, ``model.safetensors`` and a model card
        ``README.md`` (a card that cannot be written is a warning; see
        :mod:`axlstm.models.card`)."""
        path = write_release(
            directory,
            model_class=self.release_class,
            model_config=self.config.to_dict(),
            front_end=self.front_end_config.to_dict(),
            state_dict=self.state_dict(),
            provenance=provenance,
        )
        write_card_quietly(path, self)
        return path
