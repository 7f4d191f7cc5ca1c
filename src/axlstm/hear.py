"""HEAR 2021 API (https://hearbenchmark.com/hear-api.html) for AxLSTM, SSAST and SSAMBA encoders.

    hear-validator axlstm.hear -m path/to/release_folder --device cpu

``load_model`` takes the same model names as ``axlstm embed --model``: a release folder, a
preset name (random weights, for testing) or, with ``arch=``, an official checkpoint file.
Everything runs where the model is (``model.to("cuda")`` moves it); nothing reads environment
variables or prints. Embeddings are never silently wrong: audio holding NaN/inf is refused, and
an embedding that comes out non-finite (weights that hold NaN, an fp16 overflow) raises an
error naming the sounds, instead of being returned.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from axlstm.core.errors import AudioError, CheckpointError
from axlstm.embedding import (
    embed,
    front_end_config,
    hop_split_for,
    layer_labels,
    model_layers,
    model_window,
    parse_layers,
)
from axlstm.embedding import resolve_model as _resolve_model

__all__ = ["HearModel", "get_scene_embeddings", "get_timestamp_embeddings", "load_model"]

logger = logging.getLogger(__name__)

#: Model used when ``load_model`` gets no path (the validator's default call).
DEFAULT_MODEL = "axlstm_tiny"


class HearModel(nn.Module):
    """An encoder with the attributes the HEAR API asks for and the embedding options to use.

    Attributes:
        encoder: the :class:`~axlstm.models.MaskedSpecModel` (or an original SSAST / SSAMBA,
            on its Kaldi fbank front end).
        sample_rate: the rate the encoder's front end expects (16000).
        scene_embedding_size: width of a scene embedding (``encoder.frame_dim`` per layer:
            5 d for AxLSTM, 8 D for 16×16 patch models, D for frame models; layers
            concatenated).
        timestamp_embedding_size: width of a frame embedding (the same).
        max_hop_ms: the largest hop between timestamp embeddings (HEAR asks for at most
            50 ms); models with a coarser frame grid (16x16-patch SSAST/SSAMBA: 160 ms) get
            ``hop_split`` offset passes (4: a 40 ms hop). None keeps the model's own hop.
        hop_split: offset passes of :func:`get_timestamp_embeddings` (1 for AxLSTM).
    """

    def __init__(
        self,
        encoder: nn.Module,
        *,
        window: Any = "official",
        layer: Any = None,
        batch_size: int = 16,
        precision: str | None = None,
        max_hop_ms: float | None = 50.0,
    ) -> None:
        super().__init__()
        self.encoder = encoder.eval()
        self.sample_rate = int(front_end_config(encoder).sample_rate)
        self.window = window
        self.layer = layer
        self.batch_size = int(batch_size)
        self.precision = precision
        model_window(encoder, window)  # fail early on a bad option
        indices, _ = parse_layers(layer, model_layers(encoder))
        self.layers = layer_labels(indices)
        size = int(encoder.frame_dim * len(indices))
        self.scene_embedding_size = size
        self.timestamp_embedding_size = size
        self.max_hop_ms = max_hop_ms
        self.hop_split = hop_split_for(encoder, max_hop_ms)

    def extra_repr(self) -> str:
        return (
            f"window={self.window!r}, layers={self.layers}, "
            f"frame_layout={self.encoder.config.frame_layout!r}, precision={self.precision!r}, "
            f"hop_split={self.hop_split}"
        )

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return get_timestamp_embeddings(audio, self)

    def _embed(self, audio: torch.Tensor, hop_split: int = 1):
        if not isinstance(audio, torch.Tensor) or audio.dim() != 2:
            shape = tuple(audio.shape) if hasattr(audio, "shape") else type(audio).__name__
            raise ValueError(f"HEAR audio must be a (n_sounds, n_samples) tensor, got {shape}")
        out = embed(
            self.encoder,
            audio,
            self.sample_rate,
            window=self.window,
            layer=self.layer,
            batch_size=self.batch_size,
            precision=self.precision,
            hop_split=hop_split,
        )
        self._check_finite(out.frames)
        return out

    def _check_finite(self, frames: torch.Tensor) -> None:
        """Raise when any embedding is NaN or inf, naming the sounds and the likely cause."""
        finite = torch.isfinite(frames.reshape(frames.shape[0], -1)).all(dim=1)
        if bool(finite.all()):
            return
        bad = [int(i) for i in torch.nonzero(~finite).flatten().tolist()]
        shown = ", ".join(map(str, bad[:10])) + (" ..." if len(bad) > 10 else "")
        weights = [
            name
            for name, t in self.encoder.state_dict().items()
            if t.is_floating_point() and not bool(torch.isfinite(t).all())
        ]
        if weights:
            raise CheckpointError(
                f"non-finite embeddings for sounds {shown}: the model's weights hold NaN or "
                f"inf ({', '.join(weights[:3])}{' ...' if len(weights) > 3 else ''})"
            )
        hint = f" in {self.precision}" if self.precision not in (None, "fp32", "float32") else ""
        raise AudioError(
            f"non-finite embeddings (NaN or inf) for sounds {shown}: the computation "
            f"overflowed{hint}; check the audio's level or use float32"
        )


def load_model(
    model_file_path: str | Path = "",
    *,
    arch: str | None = None,
    frame_layout: str | None = None,
    window: Any = "official",
    layer: Any = None,
    batch_size: int = 16,
    precision: str | None = None,
    device: str | torch.device | None = None,
    max_hop_ms: float | None = 50.0,
    **overrides: Any,
) -> HearModel:
    """Load a model for the HEAR API.

    Args:
        model_file_path: release folder (or a file inside it), preset name, or official
            checkpoint file with ``arch``. Empty: the ``axlstm_tiny`` preset with random
            weights (what ``hear-validator`` without ``-m`` gets), with a warning.
        arch: preset of an official checkpoint, e.g. "axlstm_base".
        frame_layout: "time" (corrected, default of new releases) or "official" (reproduces the
            official AxLSTM runtime's outputs; AxLSTM-style models only).
        window: "official" (the model's windows: 2 s for AxLSTM, the training length, e.g.
            10.24 s, for SSAST/SSAMBA) or "none" (one pass over each clip).
        layer: None (final output), a block index, "all" or a list; several layers are
            concatenated along the feature axis.
        batch_size: windows per forward pass.
        precision: None / "fp32"; "fp16" or "bf16" autocast on CUDA.
        device: where to put the model (default CPU; the validator moves it itself).
        max_hop_ms: the largest hop of timestamp embeddings (HEAR: 50 ms); a model with a
            coarser grid runs offset passes (see :class:`HearModel`). None: the model's hop.
        **overrides: other config overrides (e.g. ``embed_dim``, ``depth`` for an official
            checkpoint of a custom size).
    """
    spec = str(model_file_path).strip() if model_file_path is not None else ""
    if not spec:
        logger.warning(
            "no model path given: using preset %r with random weights (for API checks only)",
            DEFAULT_MODEL,
        )
        spec = DEFAULT_MODEL
    encoder = _resolve_model(spec, arch=arch, frame_layout=frame_layout, **overrides)
    model = HearModel(
        encoder,
        window=window,
        layer=layer,
        batch_size=batch_size,
        precision=precision,
        max_hop_ms=max_hop_ms,
    )
    if device is not None:
        model = model.to(device)
    return model.eval()


def get_timestamp_embeddings(
    audio: torch.Tensor, model: HearModel
) -> tuple[torch.Tensor, torch.Tensor]:
    """Frame embeddings of equal-length clips.

    Args:
        audio: (n_sounds, n_samples) float audio at ``model.sample_rate``, on any device.
        model: from :func:`load_model`.

    Returns:
        float32 embeddings (n_sounds, n_frames, timestamp_embedding_size) and timestamps
        (n_sounds, n_frames) in ms (frame centres; with the official layout the official
        ``i * duration / n_frames``), on the model's device. The hop is at most
        ``model.max_hop_ms`` (50 ms by default: 40 ms for every family).
    """
    out = model._embed(audio, model.hop_split)
    frames = out.frames
    if frames.dim() == 4:  # (B, T, K, D): layers side by side
        frames = frames.flatten(2)
    return frames.float(), out.timestamps.to(frames.device)


def get_scene_embeddings(audio: torch.Tensor, model: HearModel) -> torch.Tensor:
    """One embedding per clip: the mean of its frame embeddings.

    Args:
        audio: (n_sounds, n_samples) float audio at ``model.sample_rate``.
        model: from :func:`load_model`.

    Returns:
        float32 (n_sounds, scene_embedding_size) on the model's device.
    """
    scene = model._embed(audio).scene
    if scene.dim() == 3:  # (B, K, D)
        scene = scene.flatten(1)
    return scene.float()
