"""The causal AxLSTM's streaming step as an ONNX graph with explicit state, and its driver.

A unidirectional AxLSTM (``alternation="unidirectional"``) embeds a stream chunk by chunk with
carried state (:class:`axlstm.models.streaming.StreamingEncoder`). The exported step is that
carry made explicit: one call takes a chunk of whole time patches (frames, or the samples that
give them) and the state, and returns the chunk's frame embeddings and the new state.

Graph inputs (B streams):

===========  ===========================  ================================================
name         shape                        meaning
===========  ===========================  ================================================
``wave``     (B, (n - 1) hop + n_fft)     the samples of n frames (n a multiple of the
                                          patch's frames), reflect padding already applied
                                          at the stream's start (``from_waveform``)
``spec``     (B, 1, n, F)                 or the n frames themselves
``start``    (B,) bool                    this chunk opens a stream: the state inputs are
                                          ignored and the stream starts from the state
                                          after the cls token (a constant of the model)
``t``        (B,) int64                   time patches emitted so far (positions)
``conv``     (B, depth, k - 1, D)         each block's last causal-conv inputs
``C``        (B, depth, NH, DH, DH)       each block's mLSTM memory (scaled by exp(-m))
``n``        (B, depth, NH, DH)           its normaliser state
``m``        (B, depth, NH)               its log-scale stabiliser
===========  ===========================  ================================================

Outputs: ``frames`` (B, n / patch, D) and the next ``t``, ``conv``, ``C``, ``n``, ``m``
(``*_next``). Memory per stream is the state only (:attr:`OnnxStreamer.state_bytes`).

:class:`OnnxStreamer` is the driver: it buffers samples (the streaming front end's reflect
padding at both ends, as :class:`axlstm.audio.streaming.StreamingLogMel`), runs the step on
every whole patch and carries the state, with numpy and ONNX Runtime only.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from axlstm.core.errors import ConfigError
from axlstm.deploy.export import (
    DEFAULT_OPSET,
    DYNAMIC,
    MAX_BATCH,
    _frozen_copy,
    check_opset,
    model_metadata,
    onnx_modules,
    write_onnx,
)
from axlstm.deploy.frontend import LogMelGraph
from axlstm.deploy.graph import sincos_time_positions, vil_layer_graph
from axlstm.deploy.runtime import onnx_metadata, onnx_session

__all__ = ["STATE_NAMES", "OnnxStreamer", "StreamingStepGraph", "export_streaming_onnx"]

STATE_NAMES = ("conv", "C", "n", "m")
#: The mLSTM's chunk length in the step: a 40 ms chunk is 5 tokens (the offline default of 64
#: would pad them to 64 and do 64² work per head); longer chunks simply take more chunks.
STEP_CHUNK = 8


def streaming_problem(model, from_waveform: bool) -> str | None:
    """Why ``model`` cannot be exported as a streaming step, naming the option, or None."""
    cfg = model.config
    if not getattr(model, "supports_streaming", False):
        return (
            "--streaming needs a causal AxLSTM (family='axlstm', alternation='unidirectional'); "
            f"this model is {type(model).__name__} with family={getattr(cfg, 'family', None)!r}"
            f", alternation={getattr(cfg, 'alternation', None)!r}: its blocks see the future"
        )
    if from_waveform and model.front_end_config.per_clip_normalization:
        return (
            "streaming from the waveform needs a causal front end, but this model's front end "
            "normalises per clip (front_end.norm_mean / norm_std unset): give it fixed "
            "statistics, or export --from-features and normalise the features yourself"
        )
    return None


class StreamingStepGraph(nn.Module):
    """One streaming step of a causal AxLSTM (see the module doc for the inputs and outputs).

    Raises:
        ConfigError: the model cannot stream (:func:`streaming_problem`).
    """

    def __init__(self, model, from_waveform: bool) -> None:
        super().__init__()
        problem = streaming_problem(model, from_waveform)
        if problem is not None:
            raise ConfigError(f"cannot export a streaming step: {problem}")
        self.model = model
        fe = model.front_end_config
        self.front_end = LogMelGraph(fe, center=False) if from_waveform else None
        initial = self._initial_state()
        for name, value in zip(STATE_NAMES, initial, strict=True):
            self.register_buffer(f"{name}0", value, persistent=False)

    @torch.no_grad()
    def _initial_state(self) -> list[torch.Tensor]:
        """The state after the cls token, which opens every stream: (depth, ...) each."""
        model = self.model
        x = model.cls_token + model.pos_embed[:, :1]  # (1, 1, d)
        states = []
        for block in model.blocks:
            y, state = vil_layer_graph(block.layer, block.norm(x), return_state=True)
            x = x + y
            states.append(state)
        return [torch.cat(parts, dim=0) for parts in zip(*states, strict=True)]

    def state_shapes(self) -> dict[str, list[int]]:
        """Per-stream shape of each state tensor (without the batch axis)."""
        return {name: list(getattr(self, f"{name}0").shape) for name in STATE_NAMES}

    def forward(self, x, start, t, conv, C, n, m):
        model = self.model
        spec = x if self.front_end is None else self.front_end(x)
        tokens = model.patch_embed(spec)  # (B, n_t * n_f, d)
        B = tokens.shape[0]
        n_f, d = model.config.grid[1], model.embed_dim
        n_t = tokens.shape[1] // n_f
        t = torch.where(start, torch.zeros_like(t), t)
        index = t[:, None] + torch.arange(n_t, device=t.device)  # (B, n_t)
        pos = sincos_time_positions(model, index, stored=False)  # the formula, as streaming
        h = tokens + pos.reshape(B, n_t * n_f, d)
        begin = start.reshape(B, 1, 1, 1)
        conv = torch.where(begin, self.conv0, conv)
        C = torch.where(begin[..., None], self.C0, C)
        n = torch.where(begin, self.n0, n)
        m = torch.where(start.reshape(B, 1, 1), self.m0, m)
        new = []
        for i, block in enumerate(model.blocks):
            state = (conv[:, i], C[:, i], n[:, i], m[:, i])
            y, state = vil_layer_graph(
                block.layer, block.norm(h), state, return_state=True, chunk_size=STEP_CHUNK
            )
            h = h + y
            new.append(state)
        h = model.encoder_norm(h)
        frames = h.reshape(B, n_t, n_f * d)
        conv, C, n, m = (torch.stack(parts, dim=1) for parts in zip(*new, strict=True))
        return frames, t + n_t, conv, C, n, m

    def example(self, batch: int = 2, patches: int = 3) -> tuple[torch.Tensor, ...]:
        model = self.model
        pt = model.config.patch_size[0]
        frames = patches * pt
        if self.front_end is None:
            x = model.example_input(batch, frames)
        else:
            fe = model.front_end_config
            n = (frames - 1) * fe.hop_length + fe.n_fft
            x = 0.1 * torch.randn(batch, n, generator=torch.Generator().manual_seed(0))
        start = torch.tensor([True, False] * (batch // 2) + [True] * (batch % 2))
        t = torch.arange(batch, dtype=torch.int64) * 7
        states = [
            getattr(self, f"{name}0")[None].expand(batch, *getattr(self, f"{name}0").shape)
            for name in STATE_NAMES
        ]
        return (x, start, t, *[s.contiguous() for s in states])

    def dynamic_shapes(self):
        """The dynamic axes for ``torch.export`` (one batch for every input) and their names."""
        batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
        axis = 2 if self.front_end is None else 1
        shapes = ({0: batch, axis: DYNAMIC}, *[{0: batch}] * (2 + len(STATE_NAMES)))
        names = [{0: "batch", axis: "frames" if self.front_end is None else "samples"}]
        return shapes, names + [{0: "batch"}] * (2 + len(STATE_NAMES))


def export_streaming_onnx(
    model,
    path: str | os.PathLike,
    *,
    from_waveform: bool,
    opset: int = DEFAULT_OPSET,
    optimize: bool | None = None,
) -> Path:
    """Write the streaming step of a causal AxLSTM as an ONNX graph (see the module doc).

    Raises:
        ConfigError: the model cannot stream (bidirectional, not an AxLSTM, or a per-clip
            normalised front end with ``from_waveform``), naming the option; a bad opset.
        UsageError: onnx / onnxscript are not installed.
    """
    check_opset(opset)
    onnx_modules()
    frozen = _frozen_copy(model)
    step = StreamingStepGraph(frozen, from_waveform).eval()
    fe = frozen.front_end_config
    meta = model_metadata(
        frozen,
        "streaming",
        from_waveform,
        opset,
        patch_frames=frozen.config.patch_size[0],
        n_fft=fe.n_fft,
        state_shapes=step.state_shapes(),
    )
    return write_onnx(
        step,
        step.example(),
        *step.dynamic_shapes(),
        path,
        input_names=["wave" if from_waveform else "spec", "start", "t", *STATE_NAMES],
        output_names=["frames", "t_next", *[f"{s}_next" for s in STATE_NAMES]],
        opset=opset,
        metadata=meta,
        optimize=optimize,
    )


class OnnxStreamer:
    """Stream audio (or features) through an exported streaming step in ONNX Runtime.

    ``push(chunk)`` returns the frame embeddings (B, t, D) completed by the chunk (t may be
    0); ``flush()`` ends the streams and returns the last ones. The result equals
    :class:`axlstm.models.streaming.StreamingEmbedder` (``StreamingEncoder`` for a
    features graph). Needs numpy and onnxruntime only.

    Args:
        path: a graph written by :func:`export_streaming_onnx`.
        batch: streams run together (equally long, pushed together).
        threads: ONNX Runtime intra-op threads (None: all cores).
    """

    def __init__(self, path: str | os.PathLike, batch: int = 1, threads: int | None = None):
        self.session = onnx_session(path, threads)
        meta = onnx_metadata(self.session)
        if meta.get("kind") != "streaming":
            raise ConfigError(
                f"{path} is not a streaming step (kind {meta.get('kind')!r}); export it with "
                "axlstm export-onnx MODEL --streaming"
            )
        self.path = Path(path)
        self.batch = int(batch)
        self.input = meta["input"]
        self.sample_rate = int(meta["sample_rate"])
        self.hop = int(meta["hop_samples"])
        self.n_fft = int(meta["n_fft"])
        self.half = self.n_fft // 2
        self.patch = int(meta["patch_frames"])
        self.frame_dim = int(meta["frame_dim"])
        self.n_mels = int(meta["n_mels"])
        self.state_shapes = {k: tuple(v) for k, v in json.loads(meta["state_shapes"]).items()}
        self.reset()

    @property
    def state_bytes(self) -> int:
        """Bytes of state one stream carries (all it needs between chunks)."""
        per_stream = sum(int(np.prod(s)) * 4 for s in self.state_shapes.values())
        return per_stream + 8  # and the int64 time index

    def reset(self) -> None:
        """Start new streams."""
        B = self.batch
        self.state = {k: np.zeros((B, *s), np.float32) for k, s in self.state_shapes.items()}
        self.t = np.zeros(B, np.int64)
        self.started = False
        self._pending: np.ndarray | None = None  # samples before the left padding is known
        self._buf: np.ndarray | None = None  # padded samples (or frames) not yet used
        self._samples = 0
        self._frames = 0

    def _empty(self) -> np.ndarray:
        return np.zeros((self.batch, 0, self.frame_dim), np.float32)

    def _step(self, x: np.ndarray) -> np.ndarray:
        feed = {
            self.input: np.ascontiguousarray(x, np.float32),
            "start": np.full(self.batch, not self.started),
            "t": self.t,
            **self.state,
        }
        out = self.session.run(None, feed)
        frames, self.t = out[0], out[1]
        self.state = dict(zip(STATE_NAMES, out[2:], strict=True))
        self.started = True
        return frames

    def _as_batch(self, x) -> np.ndarray:
        if isinstance(x, torch.Tensor):
            x = x.detach().cpu().numpy()
        x = np.asarray(x, np.float32)
        if self.input == "wave" and x.ndim == 1:
            x = x[None]
        if self.input == "spec" and x.ndim == 3:
            x = x[:, None]
        if x.shape[0] != self.batch:
            raise ValueError(f"expected {self.batch} streams, got a chunk of shape {x.shape}")
        return x

    def push(self, chunk) -> np.ndarray:
        """Feed samples (B, n) or (n,) (a features graph: frames (B, 1, n, F)); returns the
        new frame embeddings (B, t, D)."""
        x = self._as_batch(chunk)
        if self.input == "spec":
            self._buf = x if self._buf is None else np.concatenate([self._buf, x], axis=2)
            n = (self._buf.shape[2] // self.patch) * self.patch
            if n == 0:
                return self._empty()
            out, self._buf = self._step(self._buf[:, :, :n]), self._buf[:, :, n:]
            return out
        self._samples += x.shape[-1]
        if self._buf is None:
            pending = x if self._pending is None else np.concatenate([self._pending, x], -1)
            if pending.shape[-1] <= self.half:
                self._pending = pending
                return self._empty()
            left = pending[:, 1 : self.half + 1][:, ::-1]  # reflect padding at the start
            self._buf, self._pending = np.concatenate([left, pending], -1), None
        else:
            self._buf = np.concatenate([self._buf, x], -1)
        return self._run(final=False)

    def _run(self, final: bool) -> np.ndarray:
        buf = self._buf
        n = 0 if buf.shape[-1] < self.n_fft else 1 + (buf.shape[-1] - self.n_fft) // self.hop
        if final:  # never more than the offline 1 + N // hop frames
            n = min(n, 1 + self._samples // self.hop - self._frames)
        n = (n // self.patch) * self.patch  # whole time patches only
        if n <= 0:
            return self._empty()
        out = self._step(buf[:, : (n - 1) * self.hop + self.n_fft])
        self._buf = buf[:, n * self.hop :]
        self._frames += n
        return out

    def flush(self) -> np.ndarray:
        """End of the streams: the embeddings of the last whole time patches."""
        if self.input == "spec":
            return self._empty()  # frames short of a patch are never embedded
        if self._buf is None:
            raise ValueError(
                f"stream ended after {self._samples} samples; at least {self.half + 1} are needed"
            )
        right = self._buf[:, -self.half - 1 : -1][:, ::-1]  # reflect padding at the end
        self._buf = np.concatenate([self._buf, right], -1)
        return self._run(final=True)

    def stream_file(self, path: str | os.PathLike, chunk_ms: float = 40.0) -> np.ndarray:
        """Embed an audio file chunk by chunk (one stream): (T', D) frame embeddings."""
        from axlstm.audio.io import load_audio

        if self.batch != 1 or self.input != "wave":
            raise ConfigError("stream_file needs a waveform graph and a batch of one stream")
        wave = load_audio(path, self.sample_rate, max_samples=None).numpy()
        step = max(1, round(chunk_ms * self.sample_rate / 1000.0))
        self.reset()
        parts = [self.push(wave[i : i + step]) for i in range(0, wave.shape[-1], step)]
        parts.append(self.flush())
        return np.concatenate(parts, axis=1)[0]


def check_streaming_onnx(
    model, path: str | os.PathLike, *, seconds: float = 2.0, chunk_ms: float = 40.0, seed: int = 0
) -> float:
    """Stream ``seconds`` of noise through an exported step (:class:`OnnxStreamer`) and through
    :class:`~axlstm.models.streaming.StreamingEmbedder` (``StreamingEncoder`` for a features
    graph) in chunks of ``chunk_ms``; returns ``max|onnx - torch| / max|torch|``."""
    from axlstm.audio.streaming import StreamingLogMel
    from axlstm.models.streaming import StreamingEmbedder, StreamingEncoder

    streamer = OnnxStreamer(path, batch=1)
    fe = model.front_end_config
    gen = torch.Generator().manual_seed(seed)
    wave = 0.1 * torch.randn(1, int(seconds * fe.sample_rate), generator=gen)
    step = max(1, round(chunk_ms * fe.sample_rate / 1000.0))
    chunks = [wave[:, i : i + step] for i in range(0, wave.shape[-1], step)]
    if streamer.input == "wave":
        ref_stream = StreamingEmbedder(model)
        ref = [ref_stream.push(c) for c in chunks] + [ref_stream.flush()]
        got = [streamer.push(c) for c in chunks] + [streamer.flush()]
    else:  # the same frames into both: the (fixed-statistics or raw) log-mel of the stream
        logmel = StreamingLogMel(
            fe if not fe.per_clip_normalization else fe.replace(normalize=False)
        )
        specs = [s for s in (logmel.push(c) for c in chunks) if s is not None]
        specs.append(logmel.flush())
        ref_stream = StreamingEncoder(model)
        ref = [ref_stream.push(s) for s in specs]
        got = [streamer.push(s.numpy()) for s in specs]
    ref_all = torch.cat(ref, dim=1).float().numpy()
    got_all = np.concatenate(got, axis=1)
    if got_all.shape != ref_all.shape:
        raise ConfigError(
            f"{path} streamed {got_all.shape[1]} frames, the model {ref_all.shape[1]}: the graph "
            "was exported from another model"
        )
    return float(np.abs(got_all - ref_all).max() / max(np.abs(ref_all).max(), 1e-30))
