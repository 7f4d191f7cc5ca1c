"""Streaming log-mel: frames as soon as their samples have arrived, equal to the offline ones.

The offline front end reflect-pads the clip by n_fft // 2 at both ends (``center=True``) and
frames the padded signal. Streaming reproduces that exactly: the left padding is the mirror of
samples 1 .. n_fft // 2, available once that many samples have arrived; the right padding is the
mirror of the last samples, known only when the stream ends (:meth:`StreamingLogMel.flush`).
Normalisation must be causal, so a streaming front end needs fixed statistics
(``FrontEndConfig(norm_mean=..., norm_std=...)``) or ``normalize=False``.
"""

from __future__ import annotations

import torch

from axlstm.audio.features import FrontEndConfig, LogMelFrontEnd


class StreamingLogMel:
    """Incremental log-mel of a batch of equally long streams.

    Args:
        config: front-end settings; per-clip normalisation is refused (it needs the whole clip).
        device, dtype: where the frames are computed.
    """

    def __init__(
        self,
        config: FrontEndConfig | None = None,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        config = config or FrontEndConfig()
        if config.normalize and config.norm_mean is None:
            raise ValueError(
                "per-clip normalisation needs the whole clip and cannot stream: give the front "
                "end fixed statistics (norm_mean, norm_std) or normalize=False"
            )
        self.front_end = LogMelFrontEnd(config).to(device=device, dtype=dtype)
        self.config = config
        self.half = config.n_fft // 2
        self.reset()

    def reset(self) -> None:
        self._pending: torch.Tensor | None = None  # samples before the left padding is known
        self._buf: torch.Tensor | None = None  # padded signal from the next frame's start on
        self._frames = 0  # frames emitted
        self._samples = 0  # samples received

    def _frames_from_buffer(self, final: bool) -> torch.Tensor:
        cfg, buf = self.config, self._buf
        n = (
            0
            if buf is None or buf.shape[-1] < cfg.n_fft
            else 1 + (buf.shape[-1] - cfg.n_fft) // cfg.hop_length
        )
        if final:  # never more than the offline 1 + N // hop frames
            n = min(n, 1 + self._samples // cfg.hop_length - self._frames)
        if n <= 0:
            return buf.new_zeros(buf.shape[0], 1, 0, cfg.n_mels) if buf is not None else None
        fe = self.front_end
        span = (n - 1) * cfg.hop_length + cfg.n_fft
        logmel = fe.frames_log_mel(buf[:, :span], fe.window, fe.filterbank, center=False)
        if cfg.normalize:
            logmel = fe.standardise(logmel)
        self._buf = buf[:, n * cfg.hop_length :]
        self._frames += n
        return logmel.unsqueeze(1)  # (B, 1, n, M)

    def push(self, wave: torch.Tensor) -> torch.Tensor | None:
        """Feed samples (B, n) or (n,); returns the new frames (B, 1, t, M) (t may be 0), or
        None while fewer than n_fft // 2 + 1 samples have arrived."""
        wave = wave.to(self.front_end.window.dtype)
        if wave.dim() == 1:
            wave = wave[None]
        self._samples += wave.shape[-1]
        if self._buf is None:
            pending = wave if self._pending is None else torch.cat([self._pending, wave], dim=-1)
            if pending.shape[-1] <= self.half:
                self._pending = pending
                return None
            left = pending[:, 1 : self.half + 1].flip(-1)  # reflect padding at the start
            self._buf = torch.cat([left, pending], dim=-1)
            self._pending = None
        else:
            self._buf = torch.cat([self._buf, wave], dim=-1)
        return self._frames_from_buffer(final=False)

    def flush(self) -> torch.Tensor:
        """End of stream: the last frames, with the reflect padding at the end."""
        if self._buf is None:
            raise ValueError(
                f"stream ended after {self._samples} samples; at least {self.half + 1} are needed"
            )
        # the buffer always ends with the latest > n_fft // 2 real samples
        right = self._buf[:, -self.half - 1 : -1].flip(-1)
        self._buf = torch.cat([self._buf, right], dim=-1)
        return self._frames_from_buffer(final=True)
