"""Streaming embeddings from a causal AxLSTM: chunk by chunk with carried state.

A model built with ``alternation="unidirectional"`` runs every block forward in time, so the
embedding of time step t depends on the input up to t only. :class:`StreamingEncoder` feeds such
a model log-mel frames in chunks, carrying per block the causal conv inputs and the mLSTM state,
and returns each time step's frame embedding once its four frames have arrived. The result equals
the offline ``forward_features`` of the whole input (tested).

:class:`StreamingEmbedder` adds the streaming log-mel front end, so raw audio can be pushed.
"""

from __future__ import annotations

import torch

from axlstm.audio.streaming import StreamingLogMel
from axlstm.layers import sincos_pos_embed_2d
from axlstm.models.msm import MaskedSpecModel


class StreamingEncoder:
    """Frame embeddings of log-mel streams, one chunk at a time.

    Args:
        model: an AxLSTM model with ``alternation="unidirectional"``.
    """

    def __init__(self, model: MaskedSpecModel) -> None:
        cfg = model.config
        if not model.supports_streaming:
            raise ValueError(
                "streaming needs a causal AxLSTM: build it with alternation='unidirectional' "
                f"(this model is {type(model).__name__}, family={cfg.family!r}, "
                f"alternation={getattr(cfg, 'alternation', None)!r})"
            )
        self.model = model
        self.reset()

    def reset(self) -> None:
        """Start new streams."""
        self._states: list | None = None
        self._frames: torch.Tensor | None = None  # frames not yet making a whole patch
        self._t = 0  # time patches emitted

    @torch.no_grad()
    def push(self, spec: torch.Tensor) -> torch.Tensor:
        """Feed log-mel frames (B, 1, t, F) of any count t.

        Returns:
            (B, n, frame_dim) embeddings of the n time steps completed by this chunk (n may be 0).
        """
        model = self.model
        pt, _ = model.config.patch_size
        n_f = model.config.grid[1]
        frames = spec if self._frames is None else torch.cat([self._frames, spec], dim=2)
        n = frames.shape[2] // pt
        self._frames = frames[:, :, n * pt :]
        B = frames.shape[0]
        if n == 0:
            return frames.new_zeros(B, 0, model.frame_dim)
        model._check_input(frames[:, :, : n * pt])
        x = model.patch_embed(frames[:, :, : n * pt])  # (B, n * n_f, d)
        pos = sincos_pos_embed_2d(n, n_f, model.embed_dim, cls_token=False, t_offset=self._t)
        x = x + pos.to(x)[None]
        if self._states is None:  # the cls token opens the sequence
            cls = (model.cls_token + model.pos_embed[:, :1]).expand(B, -1, -1)
            x = torch.cat([cls, x], dim=1)
            self._states = [None] * len(model.blocks)
        for i, block in enumerate(model.blocks):
            x, self._states[i] = block(x, self._states[i], return_state=True)
        x = model.encoder_norm(x)
        if self._t == 0:
            x = x[:, 1:]  # drop cls
        self._t += n
        return x.reshape(B, n, model.frame_dim)


class StreamingEmbedder:
    """Frame embeddings of raw 16 kHz audio streams: streaming log-mel + :class:`StreamingEncoder`.

    Args:
        model: a causal AxLSTM (see :class:`StreamingEncoder`).
        front_end: the front end; by default the model's own, which must use fixed
            normalisation statistics to stream.
    """

    def __init__(self, model: MaskedSpecModel, front_end=None) -> None:
        self.encoder = StreamingEncoder(model)
        p = next(model.parameters())
        self.front_end = StreamingLogMel(
            front_end or model.front_end_config, device=p.device, dtype=p.dtype
        )
        self.hop_ms = 1000.0 * self.front_end.config.hop_length / self.front_end.config.sample_rate
        self.reset()

    def reset(self) -> None:
        self.encoder.reset()
        self.front_end.reset()

    def push(self, wave: torch.Tensor) -> torch.Tensor:
        """Feed samples (B, n) or (n,); returns new frame embeddings (B, t, frame_dim)."""
        window = self.front_end.front_end.window
        spec = self.front_end.push(wave.to(window.device))
        if spec is None:  # not enough samples yet for the first frame
            B = 1 if wave.dim() == 1 else wave.shape[0]
            spec = window.new_zeros(B, 1, 0, self.front_end.config.n_mels)
        return self.encoder.push(spec)

    def flush(self) -> torch.Tensor:
        """End of stream: the embeddings of the last complete time steps."""
        return self.encoder.push(self.front_end.flush())

    def timestamps(self, start: int, count: int) -> torch.Tensor:
        """Centre times (ms) of time steps start .. start + count - 1."""
        pt = self.encoder.model.config.patch_size[0]
        t = torch.arange(start, start + count, dtype=torch.float64)
        return (t * pt + (pt - 1) / 2.0) * self.hop_ms
