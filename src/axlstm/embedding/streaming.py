"""Stream audio files through a causal AxLSTM block by block (``axlstm embed --stream``).

The file is read in blocks, downmixed, resampled incrementally (soxr's streaming resampler) and
pushed through :class:`axlstm.models.streaming.StreamingEmbedder`, so memory stays bounded
however long the file is. The frames equal the offline pass of the same causal model (up to the
difference between streaming and one-shot resampling when the file is not at 16 kHz).
"""

from __future__ import annotations

import logging

import numpy as np
import soundfile as sf
import soxr
import torch

from axlstm.audio.io import open_audio, truncation
from axlstm.core.errors import AudioError, AxlstmError
from axlstm.embedding.files import NON_FINITE, FileEmbedding
from axlstm.models.streaming import StreamingEmbedder

__all__ = ["stream_file_embedding"]

logger = logging.getLogger(__name__)


def stream_file_embedding(
    embedder: StreamingEmbedder,
    path: str,
    block_seconds: float = 1.0,
    allow_truncated: bool = False,
) -> FileEmbedding:
    """Frame and scene embeddings of one file, streamed; failures come back as ``error``.

    The file passes the checks of :func:`axlstm.audio.open_audio` (a named pipe is refused by
    name, an absurd sample rate is refused); a truncated file fails unless
    ``allow_truncated``, and non-finite samples or embeddings fail the file.
    """
    embedder.reset()
    rate = embedder.front_end.config.sample_rate
    try:
        with open_audio(path) as f:
            source_rate = f.samplerate
            block = max(1, int(block_seconds * source_rate))
            resampler = None
            if source_rate != rate:
                resampler = soxr.ResampleStream(source_rate, rate, 1, dtype="float32")
            outs, n_in = [], 0
            for data in f.blocks(blocksize=block, dtype="float32", always_2d=True):
                mono = data.mean(axis=1)
                if not np.isfinite(mono).all():
                    raise AudioError(f"cannot read audio from {path}: NaN or infinite samples")
                n_in += mono.shape[0]
                if resampler is not None:
                    mono = resampler.resample_chunk(mono, last=False)
                if mono.size:
                    outs.append(embedder.push(torch.from_numpy(np.ascontiguousarray(mono))))
            cut = truncation(f, n_in)
            if cut and not allow_truncated:
                raise AudioError(f"cannot read audio from {path}: truncated file: {cut}")
            if cut:
                logger.warning("%s: truncated (%s); embedded the readable part", path, cut)
            if resampler is not None:
                tail = resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
                if tail.size:
                    outs.append(embedder.push(torch.from_numpy(np.ascontiguousarray(tail))))
        if n_in == 0:
            raise AudioError(f"cannot read audio from {path}: contains no samples")
        outs.append(embedder.flush())
    except (AxlstmError, OSError, sf.LibsndfileError) as err:
        return FileEmbedding(path=path, error=str(err))
    except (RuntimeError, ValueError) as err:
        return FileEmbedding(path=path, error=f"{type(err).__name__}: {err}")
    frames = torch.cat(outs, dim=1)[0]  # (T, D)
    if frames.shape[0] == 0:
        return FileEmbedding(path=path, error="too short for one frame embedding")
    if not torch.isfinite(frames).all():
        return FileEmbedding(path=path, error=NON_FINITE)
    times = embedder.timestamps(0, frames.shape[0])
    return FileEmbedding(
        path=path,
        scene=frames.mean(0).float().cpu().numpy(),
        frames=frames.float().cpu().numpy(),
        timestamps=times.float().numpy(),
        duration=n_in / source_rate,
    )
