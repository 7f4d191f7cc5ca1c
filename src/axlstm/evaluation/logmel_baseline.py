"""The hand-crafted reference row, model name ``"logmel"``: statistics of the log-mel input.

For each clip (any rate, resampled to 16 kHz; channels averaged) the log-mel spectrogram
L (T, 80) is computed exactly as the encoders get it (``axlstm.audio.log_mel``: 25 ms / 10 ms,
80 bands, standardised over the clip), and its per-band statistics over time are concatenated:

    [ mean_t L,  std_t L,  mean_t |ΔL|,  std_t ΔL ]   ->  320 values

with ΔL the first difference along time (zero for a one-frame clip) and population standard
deviations. For timestamp (event) tasks its frames are four consecutive log-mel frames side by
side (320 values every 40 ms, frame ``t`` = mel frames ``4t .. 4t+3``, timestamped at their
centre ``40 t + 15`` ms and kept while that centre lies inside the clip, as AxLSTM's frames).
No learning is involved, so a learned encoder that does not beat this row has not
learned more than the band energies and their temporal variability.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from axlstm.audio import FrontEndConfig, load_audio, log_mel
from axlstm.embedding import FileEmbedding
from axlstm.embedding.extract import check_clip

__all__ = ["LOGMEL_NAME", "LogMelBaseline", "logmel_frames", "logmel_statistics"]

#: The model name that selects this baseline on the command line.
LOGMEL_NAME = "logmel"
_VERSION = 1
_STATS = ("mean", "std", "mean_abs_delta", "std_delta")
_STACK = 4  # mel frames per timestamp frame: 40 ms, as AxLSTM


def logmel_frames(wave: torch.Tensor) -> tuple[torch.Tensor, np.ndarray]:
    """Frames ``(T', 4 * 80)`` float32 of a mono 16 kHz waveform and their timestamps (ms)."""
    spec = log_mel(wave.to(torch.float32)[None])[0, 0]  # (T, 80), mel frame j centred at 10 j ms
    n_mel = spec.shape[0]
    count = -(-n_mel // _STACK)
    padded = torch.nn.functional.pad(spec, (0, 0, 0, count * _STACK - n_mel))
    frames = padded.reshape(count, _STACK * spec.shape[1])
    duration_ms = 1000.0 * wave.shape[0] / 16000.0
    centres = 15.0 + 40.0 * np.arange(count)
    keep = max(1, int(np.count_nonzero(centres <= duration_ms)))
    times = np.minimum(centres[:keep], duration_ms)
    return frames[:keep], times


def logmel_statistics(wave: torch.Tensor) -> torch.Tensor:
    """(4 * 80,) float32 statistics of a mono 16 kHz waveform ``(N,)`` (N > 200)."""
    spec = log_mel(wave.to(torch.float32)[None])[0, 0]  # (T, 80), standardised over the clip
    delta = spec[1:] - spec[:-1] if spec.shape[0] > 1 else torch.zeros_like(spec)  # (T-1, 80)
    return torch.cat(
        [
            spec.mean(dim=0),
            spec.std(dim=0, correction=0),
            delta.abs().mean(dim=0),
            delta.std(dim=0, correction=0),
        ]
    )


class LogMelBaseline:
    """Embedder of :func:`logmel_statistics` (see :mod:`axlstm.evaluation.embedders`)."""

    def __init__(self, label: str = LOGMEL_NAME) -> None:
        self.label = label
        self.front_end = FrontEndConfig()

    @property
    def dim(self) -> int:
        return len(_STATS) * self.front_end.n_mels

    @property
    def frame_dim(self) -> int:
        return _STACK * self.front_end.n_mels

    def fingerprint(self, timestamps: bool = False) -> dict[str, Any]:
        extra = {"timestamps": True, "stack": _STACK} if timestamps else {}
        return {
            **extra,
            "kind": "logmel",
            "version": _VERSION,
            "statistics": list(_STATS),
            "front_end": self.front_end.to_dict(),
        }

    def embed_files(
        self, paths: Sequence[str], timestamps: bool = False
    ) -> Iterator[FileEmbedding]:
        for path in paths:
            path = str(path)
            try:
                wave = check_clip(
                    load_audio(path, 16000), 16000, path, self.front_end
                )  # (N,) 16 kHz
                feats = logmel_statistics(wave)
                frames, times = logmel_frames(wave) if timestamps else (None, None)
            except (ValueError, FileNotFoundError) as err:
                yield FileEmbedding(path, error=str(err))
                continue
            yield FileEmbedding(
                path,
                scene=feats.numpy(),
                frames=None if frames is None else frames.numpy(),
                timestamps=None if times is None else times.astype(np.float32),
                duration=wave.shape[0] / 16000.0,
            )
