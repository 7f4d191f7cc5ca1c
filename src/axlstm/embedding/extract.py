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

Models on the Kaldi fbank front end (the original SSAST and SSAMBA, whose ``front_end_config``
is a :class:`~axlstm.audio.KaldiFbankConfig`) take the same path with their own geometry:

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

import contextlib
import dataclasses
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from axlstm.audio import (
    FrontEndConfig,
    KaldiFbankConfig,
    LogMelFrontEnd,
    build_front_end,
    resample,
)

__all__ = [
    "OFFICIAL_WINDOW",
    "Embeddings",
    "check_clip",
    "embed",
    "front_end_config",
    "layer_labels",
    "model_layers",
    "model_window",
    "num_input_frames",
    "official_window",
    "parse_layers",
    "parse_window",
]

logger = logging.getLogger(__name__)

#: Frames per window of the official HEAR runtime (2 s of 10 ms mel frames). Models on the
#: Kaldi fbank front end use their training length instead (:func:`official_window`).
OFFICIAL_WINDOW = 200
#: Sample rate of the AxLSTM front end (a model's own is ``front_end_config(model).sample_rate``).
MODEL_SAMPLE_RATE = 16000

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
FrontEnd = FrontEndConfig | KaldiFbankConfig


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


# ------------------------------------------------------------------------------------ options
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
            raise ValueError(
                f"unknown window {window!r}; use 'official', 'none' or a number of frames"
            ) from None
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)):
        raise ValueError(f"window must be 'official', 'none' or an int, got {window!r}")
    if window == 0:
        return None
    if window < 0 or window % patch_frames:
        raise ValueError(
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
            raise ValueError(
                f"unknown layer {item!r}; use 'last', 'all', a block index or a list of them"
            ) from None
    if isinstance(item, bool) or not isinstance(item, (int, np.integer)):
        raise ValueError(f"layer must be an int, 'last' or 'all', got {item!r}")
    if not -depth <= item < depth:
        raise ValueError(f"layer {item} is out of range for a model with {depth} blocks")
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
            raise ValueError("empty layer list")
        return [_one_layer(x, depth) for x in layer], False
    return [_one_layer(layer, depth)], True


def layer_labels(indices: Sequence[int | None]) -> list[str]:
    return ["final" if i is None else f"block{i}" for i in indices]


def _is_fbank_model(model) -> bool:
    """The original SSAST / SSAMBA framework (cls tokens in front, frequency-major patches)."""
    from axlstm.models.ssast_original import SSASTFramework

    return isinstance(model, SSASTFramework)


def official_window(model) -> int:
    """Frames of ``window="official"`` for ``model``: the official HEAR runtime's 200 frames
    (2 s) for AxLSTM-style models; the training length ``img_size[0]`` for the original SSAST
    and SSAMBA (1024 frames = 10.24 s for the released models)."""
    if _is_fbank_model(model):
        return int(model.config.img_size[0])
    return OFFICIAL_WINDOW


def model_window(model, window: Any) -> int | None:
    """:func:`parse_window` with the model's patch length and official window."""
    return parse_window(window, model.config.patch_size[0], official_window(model))


def model_layers(model) -> int:
    """Hidden states a layer choice indexes (``model.num_layers``: one per block, one per
    bidirectional pair for SSAMBA)."""
    return int(getattr(model, "num_layers", model.config.depth))


def _autocast(device: torch.device, precision: str | None):
    if precision not in _PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; use 'fp32', 'fp16' or 'bf16'")
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


def front_end_config(model) -> FrontEnd:
    """The front-end settings a model expects: a :class:`~axlstm.audio.FrontEndConfig` (the
    AxLSTM log-mel; the defaults unless its config says more) or a
    :class:`~axlstm.audio.KaldiFbankConfig` (the original SSAST and SSAMBA).

    Raises:
        ValueError: the model takes another kind of input.
    """
    cfg = getattr(model, "front_end_config", None)
    if callable(cfg):
        cfg = cfg()
    if cfg is None:
        return FrontEndConfig()
    if not isinstance(cfg, (FrontEndConfig, KaldiFbankConfig)):
        name = getattr(getattr(model, "config", None), "name", type(model).__name__)
        raise ValueError(
            f"model {name!r} takes {type(cfg).__name__} features; axlstm.embedding handles "
            "models with the log-mel front end (FrontEndConfig) or the Kaldi fbank front end "
            "(KaldiFbankConfig)"
        )
    return cfg


@dataclass(frozen=True)
class _Timing:
    """Where a front end's input frames sit in the audio, in samples at ``sample_rate``.

    Attributes:
        hop: samples between consecutive frames.
        centre0: centre of frame 0 (0 for the centred STFT, half a frame with ``snip_edges``).
        min_samples: shortest clip the front end accepts.
        frame_size: frame length with ``snip_edges`` (only whole frames), 0 for the centred
            STFT (``1 + N // hop`` frames).
    """

    sample_rate: int
    hop: int
    centre0: Fraction
    min_samples: int
    frame_size: int = 0

    def num_frames(self, num_samples: int) -> int:
        if self.frame_size:
            return 1 + (num_samples - self.frame_size) // self.hop
        return 1 + num_samples // self.hop


def _timing(fe: FrontEnd) -> _Timing:
    if isinstance(fe, KaldiFbankConfig):
        size = fe.frame_size
        return _Timing(fe.sample_rate, fe.frame_shift, Fraction(size, 2), size, size)
    return _Timing(fe.sample_rate, fe.hop_length, Fraction(0), fe.n_fft // 2 + 1)


def num_input_frames(fe: FrontEnd, num_samples: int) -> int:
    """Spectrogram frames the front end ``fe`` gives a clip of ``num_samples`` samples."""
    return _timing(fe).num_frames(num_samples)


def check_clip(
    clip: torch.Tensor, sample_rate: float, name: str, front_end: FrontEnd | None = None
) -> torch.Tensor:
    """A (N,) or (C, N) clip as a mono float32 (N,) waveform at the front end's rate, checked.

    Raises:
        ValueError: naming the clip, when it is empty, holds NaN/inf or is too short for the
            front end (at most ``n_fft // 2`` = 200 samples at 16 kHz for the log-mel STFT,
            under one 25 ms frame = 400 samples for the Kaldi fbank).
    """
    fe = front_end or FrontEndConfig()
    rate = fe.sample_rate
    if clip.dim() == 2:
        clip = clip.mean(dim=0)  # (N,) channel average
    n_in = clip.shape[-1]
    if n_in == 0:
        raise ValueError(f"{name}: the clip is empty (0 samples)")
    clip = clip.to(dtype=torch.float32)
    if not bool(torch.isfinite(clip).all()):
        raise ValueError(f"{name}: the clip holds NaN or infinite samples")
    if sample_rate != rate:
        clip = resample(clip.cpu(), sample_rate, rate)
    min_len = _timing(fe).min_samples
    if clip.shape[-1] < min_len:
        at = "" if sample_rate == rate else f" ({n_in} at {sample_rate:g} Hz)"
        what = "the STFT needs" if isinstance(fe, FrontEndConfig) else "one fbank frame needs"
        raise ValueError(
            f"{name}: too short: {clip.shape[-1]} samples at {rate / 1000:g} kHz{at}; {what} "
            f"at least {min_len} ({1000 * min_len / rate:.1f} ms)"
        )
    return clip


def _log_mels(waves: list[torch.Tensor], front_end: LogMelFrontEnd) -> list[torch.Tensor]:
    """Per-clip standardised log-mel (T_i, F) of each wave; equal lengths share one call."""
    out: list[torch.Tensor | None] = [None] * len(waves)
    groups: dict[int, list[int]] = {}
    for i, w in enumerate(waves):
        groups.setdefault(w.shape[-1], []).append(i)
    for idx in groups.values():
        specs = front_end(torch.stack([waves[i] for i in idx]))  # (b, 1, T, F), per-row stats
        for j, i in enumerate(idx):
            out[i] = specs[j, 0]
    return out  # type: ignore[return-value]


def _spectrograms(waves: list[torch.Tensor], fe: FrontEnd, device) -> list[torch.Tensor]:
    """The model input (T_i, F) of each wave: per-clip standardised log-mel, or normalised
    Kaldi fbank of the whole clip (no pad/crop to the training length)."""
    if isinstance(fe, KaldiFbankConfig):
        front_end = build_front_end(dataclasses.replace(fe, target_length=None)).to(device)
        return [front_end(w)[0, 0] for w in waves]  # each clip alone: global DC per clip
    return _log_mels(waves, LogMelFrontEnd(fe).to(device))


def _pad_value(fe: FrontEnd) -> float:
    """What padding frames hold: the clip mean (0) for the standardised log-mel; a zero
    log-mel row normalised for the fbank, as the official SSAST loader pads."""
    return fe.pad_value if isinstance(fe, KaldiFbankConfig) else 0.0


@dataclass(frozen=True)
class _Grid:
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


def _grid(model, window: int | None) -> _Grid:
    pt = int(model.config.patch_size[0])
    st = int(getattr(model.config, "stride", model.config.patch_size)[0])
    if window is None:
        return _Grid(pt, st, None, 0, 0)
    per = int(model.frames_for(window))
    return _Grid(pt, st, window, per, per * st)


# ------------------------------------------------------------------------------------ encoder
def _run(model, specs: torch.Tensor, indices, layout: str, precision) -> torch.Tensor:
    """(N, 1, T, F) spectrograms -> (N, frames_for(T), K, D) float32 frames of the layers."""
    param = next(model.parameters())
    specs = specs.to(device=param.device, dtype=param.dtype)
    need_hidden = any(i is not None for i in indices)
    with _autocast(param.device, precision):
        if need_hidden:
            tokens, hidden = model.encode(specs, return_hidden=True)
        else:
            tokens, hidden = model.encode(specs), []
    outs = []
    for i in indices:
        t = tokens if i is None else hidden[i]
        if _is_fbank_model(model):  # cls (and dist) in front; frames need the input length
            n_cls = model.config.num_cls_tokens
            outs.append(model.tokens_to_frames(t[:, n_cls:].float(), specs.shape[2]))
        else:
            outs.append(model.tokens_to_frames(t[:, 1:].float(), layout))  # (N, n_t, D)
    return torch.stack(outs, dim=2)  # (N, n_t, K, D)


def _encode_windowed(specs, grid: _Grid, batch_size, run, pad_value=0.0) -> list[torch.Tensor]:
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


def _encode_whole(specs, grid: _Grid, batch_size, run, pad_value=0.0) -> list[torch.Tensor]:
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


def _keep_and_times(
    n_in: int,
    n_samples: int,
    sample_rate: float,
    layout: str,
    grid: _Grid,
    timing: _Timing,
) -> tuple[int, np.ndarray]:
    """Number of frames kept and their timestamps (ms) for one clip (see the module doc)."""
    n_max = grid.wanted(n_in)
    duration_ms = Fraction(1000) * n_samples / Fraction(sample_rate)
    if layout == "official":
        step = duration_ms / n_max
        return n_max, np.array([float(i * step) for i in range(n_max)])
    hop_ms = Fraction(1000 * timing.hop, timing.sample_rate)  # 10 ms per input frame
    frame_ms = grid.stride * hop_ms  # 40 ms per frame for AxLSTM, 160 ms for 16x16 patches
    # centre of input frames 0 .. patch - 1: 15 ms for AxLSTM, 87.5 ms for 16x16 fbank patches
    centre_ms = Fraction(1000, timing.sample_rate) * timing.centre0 + (grid.patch - 1) * hop_ms / 2
    inside = math.floor((duration_ms - centre_ms) / frame_ms) + 1
    n = min(max(inside, 1), n_max)
    times = [float(min(centre_ms + t * frame_ms, duration_ms)) for t in range(n)]
    return n, np.array(times)


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
) -> Embeddings:
    """Scene and frame embeddings of audio clips.

    Args:
        model: a :class:`~axlstm.models.MaskedSpecModel`, or an original SSAST / SSAMBA (Kaldi
            fbank front end; see the module doc); it runs where its weights are.
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
        frame_layout: "time" or "official" (AxLSTM-style models only); the model's configured
            layout when None.
        batch_size: windows (with ``window=None``: whole clips) per forward pass.
        precision: None / "fp32", or "fp16" / "bf16" autocast, used on CUDA only.
        names: names of the clips for error messages (default "clip i").

    Returns:
        :class:`Embeddings`; each clip's result equals what it gets alone.

    Raises:
        ValueError: a clip is empty, too short for the front end (at most 200 samples at 16 kHz
            for the log-mel, under 400 for the fbank) or holds NaN/inf; the message names the
            clip.
    """
    config = model.config
    fe = front_end_config(model)
    if sample_rate is None:
        sample_rate = fe.sample_rate
    layout = frame_layout or config.frame_layout
    if layout not in ("time", "official"):
        raise ValueError(f"unknown frame_layout {layout!r}; use 'time' or 'official'")
    if layout == "official" and _is_fbank_model(model):
        raise ValueError(f"{type(model).__name__} supports frame_layout 'time' only")
    win = model_window(model, window)
    grid = _grid(model, win)
    timing = _timing(fe)
    indices, single = parse_layers(layer, model_layers(model))
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
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
    pad = _pad_value(fe)
    try:
        with torch.no_grad():
            specs = _spectrograms(waves, fe, device)
            if win is None:
                frames = _encode_whole(specs, grid, batch_size, run, pad)
            else:
                frames = _encode_windowed(specs, grid, batch_size, run, pad)
    finally:
        model.train(was_training)

    kept, times = [], []
    for spec, f, n in zip(specs, frames, n_samples, strict=True):
        k, ts = _keep_and_times(spec.shape[0], n, sample_rate, layout, grid, timing)
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
