"""How output frames tile a clip: fixed windows pooled across clips or one pass per clip,
which frames are kept and where they sit in time (see :mod:`axlstm.embedding.extract`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import torch
import torch.nn.functional as F

from axlstm.audio.frontend import FrontEndSpec
from axlstm.models import Encoder

__all__ = [
    "Grid",
    "encode_offset",
    "encode_whole",
    "encode_windowed",
    "keep_and_times",
    "model_grid",
]


@dataclass(frozen=True)
class Grid:
    """How output frames tile the input: ``patch`` input frames per output frame, starting
    every ``stride``; a window of ``window`` frames gives ``per_window`` frames and the next
    window starts ``step = per_window * stride`` frames later (``window`` itself when the
    stride is the patch length), so the frame grid is regular across windows."""

    patch: int
    stride: int
    window: int | None
    per_window: int
    step: int

    def wanted(self, n_in: int) -> int:
        """Output frames that start inside ``n_in`` input frames."""
        return max(1, math.ceil(n_in / self.stride))

    def whole_length(self, n_in: int) -> int:
        """Input length that gives exactly :meth:`wanted` frames in one pass."""
        return (self.wanted(n_in) - 1) * self.stride + self.patch


def model_grid(model: Encoder, window: int | None) -> Grid:
    """The frame grid of ``model`` with windows of ``window`` input frames (None: whole clips)."""
    span, hop = int(model.frame_span), int(model.frame_hop)
    if window is None:
        return Grid(span, hop, None, 0, 0)
    per = int(model.frames_for(window))
    return Grid(span, hop, window, per, per * hop)


def encode_windowed(specs, grid: Grid, batch_size, run, pad_value=0.0) -> list[torch.Tensor]:
    """Frames of every clip from fixed windows pooled across clips; (n_w * per_window, K, D)."""
    window, step = grid.window, grid.step
    pieces, counts = [], []
    for spec in specs:
        T, n_bins = spec.shape
        n_w = math.ceil(grid.wanted(T) / grid.per_window)
        length = (n_w - 1) * step + window
        padded = F.pad(spec, (0, 0, 0, length - T), value=pad_value)  # 0 = the clip's mean
        if step == window:
            pieces.append(padded.view(n_w, window, n_bins))
        else:  # overlapping windows: every window ends where the next one's frames begin
            pieces.append(padded.unfold(0, window, step).transpose(1, 2))
        counts.append(n_w)
    windows = torch.cat(pieces).unsqueeze(1)  # (W, 1, window, F)
    outs = [run(windows[s : s + batch_size]) for s in range(0, windows.shape[0], batch_size)]
    frames = torch.cat(outs)  # (W, per_window, K, D)
    per_clip = frames.split(counts)
    return [f.reshape(-1, *f.shape[2:]) for f in per_clip]


def encode_whole(specs, grid: Grid, batch_size, run, pad_value=0.0) -> list[torch.Tensor]:
    """Frames of every clip from one pass each; clips of equal padded length share batches."""
    out: list[torch.Tensor | None] = [None] * len(specs)
    groups: dict[int, list[int]] = {}
    for i, spec in enumerate(specs):
        groups.setdefault(grid.whole_length(spec.shape[0]), []).append(i)
    for length, idx in groups.items():
        for s in range(0, len(idx), batch_size):
            chunk = idx[s : s + batch_size]
            batch = torch.stack(
                [
                    F.pad(specs[i], (0, 0, 0, length - specs[i].shape[0]), value=pad_value)
                    for i in chunk
                ]
            ).unsqueeze(1)  # (b, 1, length, F)
            frames = run(batch)
            for j, i in enumerate(chunk):
                out[i] = frames[j]
    return out  # type: ignore[return-value]


def encode_offset(specs, grid: Grid, split: int, encode) -> list[torch.Tensor]:
    """Frames on a grid ``split`` times finer than the model's: ``split`` passes of
    ``encode(specs) -> [frames per clip]``, pass ``j`` over each spectrogram without its first
    ``j * stride / split`` input frames, interleaved so that frame ``m`` of the result is frame
    ``m // split`` of pass ``m % split`` (it starts at input frame ``m * stride / split``).
    Every pass sees the same features (standardised over the whole clip), so pass 0 is exactly
    the frames of one ordinary pass."""
    if split == 1:
        return encode(specs)
    sub = grid.stride // split
    passes = []
    for j in range(split):
        # a clip shorter than the offset keeps one row: none of its frames is ever kept
        passes.append(encode([s[min(j * sub, s.shape[0] - 1) :] for s in specs]))
    out = []
    for i, spec in enumerate(specs):
        total = max(1, math.ceil(spec.shape[0] / sub))  # frames that start inside the clip
        first = passes[0][i]
        frames = first.new_zeros(total, *first.shape[1:])
        for j in range(split):
            idx = torch.arange(j, total, split)
            frames[idx] = passes[j][i][: idx.numel()]
        out.append(frames)
    return out


def keep_and_times(
    n_in: int,
    n_samples: int,
    sample_rate: float,
    layout: str,
    grid: Grid,
    fe: FrontEndSpec,
    split: int = 1,
) -> tuple[int, np.ndarray]:
    """Number of frames kept and their timestamps (ms) for one clip (see the module doc);
    ``split`` > 1 for the finer grid of :func:`encode_offset`."""
    n_max = grid.wanted(n_in) if split == 1 else max(1, math.ceil(n_in * split / grid.stride))
    duration_ms = Fraction(1000) * n_samples / Fraction(sample_rate)
    if layout == "official":
        step = duration_ms / n_max
        return n_max, np.array([float(i * step) for i in range(n_max)])
    hop_ms = Fraction(1000 * fe.hop_samples, fe.sample_rate)  # 10 ms per input frame
    # 40 ms per frame for AxLSTM, 160 ms for 16x16 patches (40 ms with split 4)
    frame_ms = grid.stride * hop_ms / split
    # centre of input frames 0 .. patch - 1: 15 ms for AxLSTM, 87.5 ms for 16x16 fbank patches
    centre_ms = Fraction(1000, fe.sample_rate) * fe.first_centre + (grid.patch - 1) * hop_ms / 2
    inside = math.floor((duration_ms - centre_ms) / frame_ms) + 1
    n = min(max(inside, 1), n_max)
    times = [float(min(centre_ms + t * frame_ms, duration_ms)) for t in range(n)]
    return n, np.array(times)
