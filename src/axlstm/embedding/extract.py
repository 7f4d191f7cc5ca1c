"""Scene and frame embeddings of raw audio of any length, rate and channel count.

The pipeline for each clip, always as if the clip were alone in its batch:

1. Down-mix to mono, resample to the model's rate (16 kHz; soxr), compute the log-mel
   spectrogram with the model's front-end settings and standardise it over the whole clip.
2. Window the spectrogram. ``window="official"`` cuts it into non-overlapping 200-frame (2 s)
   windows, the last one zero-padded, as the official HEAR runtime does; windows of every clip in
   the call are pooled and run through the encoder ``batch_size`` at a time. ``window=None``
   runs the whole clip in one pass (zero-padded to a whole patch), grouping clips of equal
   padded length.
3. Concatenate the windows' frames (one frame per 4 mel frames = 40 ms) and drop the frames that
   describe padding (see "Trimming" below). Padding therefore never reaches a scene mean and a
   clip's result does not depend on the other clips in the call.
4. Scene embedding = mean of the kept frames.

Trimming and timestamps depend on the frame layout:

* ``"time"`` (the default, corrected): frame ``t`` covers mel frames ``4t .. 4t+3``; mel frame
  ``j`` is centred at ``10 j`` ms (``center=True`` STFT), so the frame is centred at
  ``40 t + 15`` ms, which is its timestamp. A frame is kept when its centre lies inside the clip
  (``40 t + 15 <= duration``). A dropped frame has at most two of its four mel frames in the clip
  and describes only its last 15 ms; keeping it (the ``ceil(T / 4)`` rule) would put the last
  timestamp after the end of the audio for e.g. a 4.0 s clip, which the HEAR validator rejects.
  At least one frame is always kept (a clip of under 15 ms gets one frame stamped at its end).
* ``"official"`` reproduces the official runtime: ``ceil(T / 4)`` frames (what its
  ``int(50 * pad / 200)`` trim leaves), frames in the official scrambled order (SPEC §6.1) and
  timestamps ``i * duration / n_frames``.

Everything model-specific comes from the model's interface (:class:`~axlstm.models.Encoder`:
its front end, frame span and hop, official window, layers). For the original SSAST and
SSAMBA, whose front end is the Kaldi fbank, that means:

* features: 128-bin Kaldi fbank of each whole clip (global DC removal, 25 ms frames every
  10 ms with ``snip_edges``, so ``T = 1 + (N - 400) // 160``), normalised with the model's
  dataset statistics ``(x - mean) / (2 std)``; no pad/crop to the training length here;
* windows: ``window="official"`` is the model's training length ``img_size[0]`` (1024 frames =
  10.24 s for the released models); padding is a zero log-mel row, as in the official data
  loader, i.e. ``-mean / (2 std)`` after normalisation;
* frames: one per ``patch_stride[0]`` input frames (160 ms for 16×16 patch models, 20 ms for
  128×2 frame models); output frame ``t`` concatenates the frequency patches of time step
  ``t``; its timestamp is the centre of the input frames it covers,
  ``12.5 + 10 (s t + (p - 1) / 2)`` ms for patch length ``p`` and stride ``s`` (87.5 + 160 t ms
  for 16×16 patches), and it is kept when that centre lies inside the clip, as above. With an
  overlapping stride (fine-tuned geometries) windows advance by a whole number of strides, so
  the frame grid stays regular;
* layers: ``model.num_layers`` hidden states (12 for SSAST, one per bidirectional pair for
  SSAMBA); only the ``"time"`` frame layout exists.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from axlstm.audio import FrontEndSpec, resample
from axlstm.core.errors import AudioError
from axlstm.embedding.options import (
    LayerSpec,
    check_frame_layout,
    layer_labels,
    model_layers,
    model_window,
    parse_layers,
    precision_context,
)
from axlstm.embedding.windows import (
    encode_offset,
    encode_whole,
    encode_windowed,
    keep_and_times,
    model_grid,
)
from axlstm.models import Encoder

__all__ = ["Embeddings", "check_clip", "embed", "front_end_config"]

logger = logging.getLogger(__name__)


@dataclass
class Embeddings:
    """Embeddings of a batch of clips.

    With one layer (the default) there is no layer axis; with several (``layer="all"`` or a
    list) the axis ``K`` sits just before the feature axis, in the order of ``layers``.

    Attributes:
        scene: (B, D) or (B, K, D) mean of each clip's kept frames.
        frames: (B, T_max, D) or (B, T_max, K, D) frame embeddings, zero past ``num_frames``.
        timestamps: (B, T_max) frame times in ms, NaN past ``num_frames``.
        num_frames: (B,) int64 number of kept frames of each clip.
        duration: (B,) float64 clip durations in seconds.
        layers: label of each layer: "block{i}" (output of block i, before the final norm) or
            "final" (the normalised encoder output).
        frame_layout: "time" or "official".
    """

    scene: torch.Tensor
    frames: torch.Tensor
    timestamps: torch.Tensor
    num_frames: torch.Tensor
    duration: torch.Tensor
    layers: list[str]
    frame_layout: str

    def __len__(self) -> int:
        return self.scene.shape[0]

    @property
    def mask(self) -> torch.Tensor:
        """(B, T_max) bool, True for kept frames."""
        t = torch.arange(self.frames.shape[1], device=self.num_frames.device)
        return t[None, :] < self.num_frames[:, None]

    def clip(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Frames (T_i, [K,] D) and timestamps (T_i,) of clip ``i``, without padding."""
        n = int(self.num_frames[i])
        return self.frames[i, :n], self.timestamps[i, :n]


# ------------------------------------------------------------------------------------- input
def _as_tensor(x: Any, name: str) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch tensor or numpy array, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(
            f"{name}: expected floating-point samples in [-1, 1], got dtype {x.dtype} "
            "(convert integer PCM first, e.g. x / 32768 for int16)"
        )
    return x


def _split_clips(wave: Any, lengths: Any) -> list[torch.Tensor]:
    """The input as a list of (N,) or (C, N) clips.

    (N,) one mono clip; (B, N) B mono clips; (B, C, N) B clips of C channels; a list or tuple of
    (N,) / (C, N) clips of any lengths. ``lengths`` (B,) cuts padded rows of a batch.
    """
    if isinstance(wave, (list, tuple)):
        clips = [_as_tensor(w, f"clip {i}") for i, w in enumerate(wave)]
        for i, c in enumerate(clips):
            if c.dim() not in (1, 2):
                raise ValueError(
                    f"clip {i}: expected a (N,) or (C, N) waveform, got shape {tuple(c.shape)}"
                )
    else:
        wave = _as_tensor(wave, "wave")
        if wave.dim() == 1:
            clips = [wave]
        elif wave.dim() in (2, 3):
            clips = list(wave.unbind(0))
        else:
            raise ValueError(
                f"expected (N,), (B, N) or (B, C, N) audio or a list of clips, got shape "
                f"{tuple(wave.shape)}"
            )
    if lengths is not None:
        lengths = [int(n) for n in torch.as_tensor(lengths).reshape(-1).tolist()]
        if len(lengths) != len(clips):
            raise ValueError(f"got {len(lengths)} lengths for {len(clips)} clips")
        for i, (c, n) in enumerate(zip(clips, lengths, strict=True)):
            if not 0 <= n <= c.shape[-1]:
                raise ValueError(f"clip {i}: length {n} outside [0, {c.shape[-1]}]")
        clips = [c[..., :n] for c, n in zip(clips, lengths, strict=True)]
    return clips


def front_end_config(model: Encoder) -> FrontEndSpec:
    """The front end a model expects (its ``front_end_config``), checked to be one.

    Raises:
        ValueError: the model does not declare a front end (:class:`~axlstm.audio.FrontEndSpec`).
    """
    cfg = model.front_end_config if isinstance(model, Encoder) else None
    if not isinstance(cfg, FrontEndSpec):
        raise ValueError(
            f"{type(model).__name__} declares no front end: axlstm.embedding needs an "
            "axlstm.models.Encoder whose front_end_config is a FrontEndSpec (the log-mel "
            "FrontEndConfig or the Kaldi fbank KaldiFbankConfig)"
        )
    return cfg


def check_clip(
    clip: torch.Tensor, sample_rate: float, name: str, front_end: FrontEndSpec
) -> torch.Tensor:
    """A (N,) or (C, N) clip as a mono float32 (N,) waveform at the front end's rate, checked.

    Raises:
        AudioError: naming the clip, when it is empty, holds NaN/inf or is too short for the
            front end (at most ``n_fft // 2`` = 200 samples at 16 kHz for the log-mel STFT,
            under one 25 ms frame = 400 samples for the Kaldi fbank).
    """
    fe = front_end
    rate = fe.sample_rate
    if clip.dim() == 2:
        clip = clip.mean(dim=0)  # (N,) channel average
    n_in = clip.shape[-1]
    if n_in == 0:
        raise AudioError(f"{name}: the clip is empty (0 samples)")
    clip = clip.to(dtype=torch.float32)
    if not bool(torch.isfinite(clip).all()):
        raise AudioError(f"{name}: the clip holds NaN or infinite samples")
    if sample_rate != rate:
        clip = resample(clip.cpu(), sample_rate, rate)
    min_len = fe.min_samples
    if clip.shape[-1] < min_len:
        at = "" if sample_rate == rate else f" ({n_in} at {sample_rate:g} Hz)"
        raise AudioError(
            f"{name}: too short: {clip.shape[-1]} samples at {rate / 1000:g} kHz{at}; "
            f"{fe.min_samples_reason} at least {min_len} ({1000 * min_len / rate:.1f} ms)"
        )
    return clip


def _spectrograms(waves: list[torch.Tensor], fe: FrontEndSpec, device) -> list[torch.Tensor]:
    """The model input (T_i, F) of each whole wave (no pad/crop to a training length); clips of
    equal length share one call (every front end treats the rows of a batch independently)."""
    front_end = fe.whole_clip().build().to(device)
    out: list[torch.Tensor | None] = [None] * len(waves)
    groups: dict[int, list[int]] = {}
    for i, w in enumerate(waves):
        groups.setdefault(w.shape[-1], []).append(i)
    for idx in groups.values():
        specs = front_end(torch.stack([waves[i] for i in idx]))  # (b, 1, T, F)
        for j, i in enumerate(idx):
            out[i] = specs[j, 0]
    return out  # type: ignore[return-value]


def _run(model: Encoder, specs: torch.Tensor, indices, layout: str, precision) -> torch.Tensor:
    """(N, 1, T, F) spectrograms -> (N, frames_for(T), K, D) float32 frames of the layers."""
    param = next(model.parameters())
    specs = specs.to(device=param.device, dtype=param.dtype)
    with precision_context(param.device, precision):
        frames = model.forward_features(specs, layout, list(indices))
    return torch.stack([f.float() for f in frames], dim=2)  # (N, n_t, K, D)


# --------------------------------------------------------------------------------------- api
def embed(
    model,
    wave: Any,
    sample_rate: float | None = None,
    *,
    lengths: Any = None,
    window: Any = "official",
    layer: LayerSpec = None,
    frame_layout: str | None = None,
    batch_size: int = 16,
    precision: str | None = None,
    names: Sequence[str] | None = None,
    hop_split: int = 1,
) -> Embeddings:
    """Scene and frame embeddings of audio clips.

    Args:
        model: any :class:`~axlstm.models.Encoder` (AxLSTM, SSAST, SSAM, the original SSAST,
            SSAMBA); it runs where its weights are.
        wave: (N,) one mono clip, (B, N) a batch of mono clips, (B, C, N) a batch of
            multi-channel clips (channels are averaged), or a list of (N,) / (C, N) clips of any
            lengths. Floating point, as numpy arrays or torch tensors on any device. A single
            multi-channel clip is ``wave[None]`` or ``[wave]``; soundfile's (N, C) is ``wave.T``.
        sample_rate: rate of ``wave`` in Hz (default: the model's, 16 kHz); other rates are
            resampled with soxr.
        lengths: (B,) valid samples of each row of a zero-padded batch.
        window: "official" (non-overlapping windows of :func:`official_window` frames, the
            default: 2 s for AxLSTM, the training length for SSAST/SSAMBA), "none" / None (one
            pass over each whole clip: context across the whole clip, memory grows with length)
            or a window length in input frames (a multiple of the patch length).
        layer: which output: None / "last" (final normalised output), a block index, "all" or a
            list; see :func:`parse_layers` (indices up to ``model.num_layers``).
        frame_layout: one of ``model.frame_layouts`` ("time"; "official" for AxLSTM-style
            models); the model's configured layout when None.
        batch_size: windows (with ``window=None``: whole clips) per forward pass.
        precision: None / "fp32", or "fp16" / "bf16" autocast, used on CUDA only.
        names: names of the clips for error messages (default "clip i").
        hop_split: frames on a grid this many times finer than the model's hop, from as many
            passes over the clip offset by ``hop / hop_split`` (a divisor of the frame stride;
            see :func:`~axlstm.embedding.hop_split_for`): 4 gives 16x16-patch SSAST/SSAMBA
            models a 40 ms hop, as HEAR's timestamp embeddings require (at most 50 ms). Costs
            ``hop_split`` times the compute; frames of pass 0 are those of ``hop_split=1``.
            "time" frame layout only.

    Returns:
        :class:`Embeddings`; each clip's result equals what it gets alone.

    Raises:
        ValueError: a clip is empty, too short for the front end (at most 200 samples at 16 kHz
            for the log-mel, under 400 for the fbank) or holds NaN/inf; the message names the
            clip.
    """
    fe = front_end_config(model)
    if sample_rate is None:
        sample_rate = fe.sample_rate
    layout = check_frame_layout(model, frame_layout)
    win = model_window(model, window)
    grid = model_grid(model, win)
    indices, single = parse_layers(layer, model_layers(model))
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if isinstance(hop_split, bool) or not isinstance(hop_split, int) or hop_split < 1:
        raise ValueError(f"hop_split must be a positive integer, got {hop_split!r}")
    if hop_split > 1:
        if grid.stride % hop_split:
            raise ValueError(
                f"hop_split {hop_split} does not divide the model's frame stride of "
                f"{grid.stride} input frames"
            )
        if layout != "time":
            raise ValueError(
                f"hop_split needs the 'time' frame layout (got {layout!r}): official-layout "
                "frames are not on a regular grid"
            )
    if isinstance(sample_rate, bool) or not float(sample_rate) > 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate!r}")
    device = next(model.parameters()).device

    clips = _split_clips(wave, lengths)
    if not clips:
        raise ValueError("no clips to embed")
    if names is None:
        names = [f"clip {i}" for i in range(len(clips))]
    elif len(names) != len(clips):
        raise ValueError(f"got {len(names)} names for {len(clips)} clips")
    n_samples = [c.shape[-1] for c in clips]
    waves = [
        check_clip(c, sample_rate, n, fe).to(device) for c, n in zip(clips, names, strict=True)
    ]

    def run(specs: torch.Tensor) -> torch.Tensor:
        return _run(model, specs, indices, layout, precision)

    was_training = model.training
    model.eval()
    pad = fe.pad_value
    try:
        with torch.no_grad():
            specs = _spectrograms(waves, fe, device)
            encode = encode_whole if win is None else encode_windowed
            frames = encode_offset(
                specs, grid, hop_split, lambda s: encode(s, grid, batch_size, run, pad)
            )
    finally:
        model.train(was_training)

    kept, times = [], []
    for spec, f, n in zip(specs, frames, n_samples, strict=True):
        k, ts = keep_and_times(spec.shape[0], n, sample_rate, layout, grid, fe, hop_split)
        kept.append(f[:k])
        times.append(ts)
    B, t_max = len(kept), max(f.shape[0] for f in kept)
    K, D = kept[0].shape[1:]
    out_frames = kept[0].new_zeros(B, t_max, K, D)
    out_times = torch.full((B, t_max), float("nan"), dtype=torch.float32)
    for i, (f, ts) in enumerate(zip(kept, times, strict=True)):
        out_frames[i, : f.shape[0]] = f
        out_times[i, : len(ts)] = torch.from_numpy(ts)
    scene = torch.stack([f.mean(dim=0) for f in kept])  # (B, K, D), kept frames only
    if single:
        scene, out_frames = scene[:, 0], out_frames[:, :, 0]
    return Embeddings(
        scene=scene,
        frames=out_frames,
        timestamps=out_times.to(out_frames.device),
        num_frames=torch.tensor([f.shape[0] for f in kept], device=out_frames.device),
        duration=torch.tensor([n / float(sample_rate) for n in n_samples], dtype=torch.float64),
        layers=layer_labels(indices),
        frame_layout=layout,
    )
