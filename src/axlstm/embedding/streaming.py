"""Stream audio files through a causal AxLSTM block by block (``axlstm embed --stream``).

The file is read in blocks, downmixed, resampled incrementally (soxr's streaming resampler) and
pushed through :class:`axlstm.models.streaming.StreamingEmbedder`, so memory stays bounded
however long the file is. The frames equal the offline pass of the same causal model (up to the
difference between streaming and one-shot resampling when the file is not at 16 kHz).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch

from axlstm.embedding.files import FileEmbedding
from axlstm.models.streaming import StreamingEmbedder

__all__ = ["stream_file_embedding"]

logger = logging.getLogger(__name__)


def stream_file_embedding(
    embedder: StreamingEmbedder, path: str, block_seconds: float = 1.0
) -> FileEmbedding:
    """Frame and scene embeddings of one file, streamed; failures come back as ``error``."""
    embedder.reset()
    rate = embedder.front_end.config.sample_rate
    try:
        if not Path(path).is_file():
            raise FileNotFoundError(f"audio file not found: {path}")
        with sf.SoundFile(path) as f:
            block = max(1, int(block_seconds * f.samplerate))
            resampler = None
            if f.samplerate != rate:
                resampler = soxr.ResampleStream(f.samplerate, rate, 1, dtype="float32")
            outs, n_in = [], 0
            for data in f.blocks(blocksize=block, dtype="float32", always_2d=True):
                mono = data.mean(axis=1)
                if not np.isfinite(mono).all():
                    raise ValueError("contains NaN or infinite samples")
                n_in += mono.shape[0]
                if resampler is not None:
                    mono = resampler.resample_chunk(mono, last=False)
                if mono.size:
                    outs.append(embedder.push(torch.from_numpy(np.ascontiguousarray(mono))))
            if resampler is not None:
                tail = resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
                if tail.size:
                    outs.append(embedder.push(torch.from_numpy(np.ascontiguousarray(tail))))
        if n_in == 0:
            raise ValueError("contains no samples")
        outs.append(embedder.flush())
    except (OSError, RuntimeError, ValueError, sf.LibsndfileError) as err:
        return FileEmbedding(path=path, error=f"{type(err).__name__}: {err}")
    frames = torch.cat(outs, dim=1)[0]  # (T, D)
    if frames.shape[0] == 0:
        return FileEmbedding(path=path, error="too short for one frame embedding")
    times = embedder.timestamps(0, frames.shape[0])
    return FileEmbedding(
        path=path,
        scene=frames.mean(0).float().cpu().numpy(),
        frames=frames.float().cpu().numpy(),
        timestamps=times.float().numpy(),
        duration=n_in / f.samplerate,
    )
