"""Audio files in, embeddings out: a robust per-file loop that reports bad files instead of
stopping. Files are named by folders, manifests and paths, read by the package's one reader
(:func:`axlstm.audio.collect_inputs`)."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from axlstm.audio import load_audio
from axlstm.core.errors import AxlstmError
from axlstm.embedding.extract import check_clip, embed, front_end_config
from axlstm.embedding.options import model_window
from axlstm.models import Encoder

__all__ = ["NON_FINITE", "FileEmbedding", "iter_file_embeddings"]

logger = logging.getLogger(__name__)

#: The reason given for a file whose embedding holds NaN or inf (e.g. weights that overflow).
NON_FINITE = "the model gave non-finite embeddings (NaN or inf) for this file"


@dataclass
class FileEmbedding:
    """The result for one file: embeddings, or the reason it failed.

    Attributes:
        path: the file as it was named.
        scene: (D,) or (K, D) numpy float32; None on failure.
        frames: (T, D) or (T, K, D) numpy float32; None on failure.
        timestamps: (T,) numpy float32 frame times in ms; None on failure.
        duration: seconds of audio; None on failure.
        error: why the file failed; None on success.
    """

    path: str
    scene: np.ndarray | None = None
    frames: np.ndarray | None = None
    timestamps: np.ndarray | None = None
    duration: float | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def _reason(err: BaseException) -> str:
    if isinstance(err, (AxlstmError, ValueError, FileNotFoundError)):
        return str(err)
    return f"{type(err).__name__}: {err}"


def iter_file_embeddings(
    model: Encoder,
    paths: Sequence[str],
    *,
    batch_size: int = 16,
    window: Any = "official",
    allow_truncated: bool = False,
    **options: Any,
) -> Iterator[FileEmbedding]:
    """Embed audio files, yielding one :class:`FileEmbedding` per path, in order.

    Files are loaded one by one (any format libsndfile reads, any rate and channel count) and
    grouped so that a forward pass holds about ``batch_size`` windows (whole clips with
    ``window=None``). A file that cannot be read, is too short, fails in the model or gets
    non-finite embeddings is reported with its reason and the others go on: when a group
    fails, its files are retried one by one.

    Args:
        model: the encoder.
        paths: audio files.
        batch_size: windows (or whole clips) per forward pass.
        allow_truncated: embed the readable part of truncated files (with a warning) instead
            of failing them.
        window, **options: passed to :func:`axlstm.embedding.embed` (layer, frame_layout,
            precision).
    """
    win = model_window(model, window)
    fe = front_end_config(model)
    pending: list[tuple[str, torch.Tensor | None, str | None]] = []
    load = 0

    def flush() -> Iterator[FileEmbedding]:
        good = [i for i, (_, _, e) in enumerate(pending) if e is None]
        results: dict[int, FileEmbedding] = {}
        if good:
            try:
                results = _embed_group(model, pending, good, batch_size, window, options)
            except Exception as err:  # find the culprit: one file at a time
                logger.debug("group of %d failed (%s); retrying one by one", len(good), err)
                for i in good:
                    try:
                        results.update(
                            _embed_group(model, pending, [i], batch_size, window, options)
                        )
                    except Exception as one_err:
                        results[i] = FileEmbedding(pending[i][0], error=_reason(one_err))
        for i, (p, _, e) in enumerate(pending):
            yield FileEmbedding(p, error=e) if e is not None else results[i]

    for path in paths:
        path = str(path)
        try:
            # (N,) mono float32 at the model's rate
            wave = load_audio(path, fe.sample_rate, allow_truncated=allow_truncated)
            wave = check_clip(wave, fe.sample_rate, path, fe)  # too short: fail here, not later
            pending.append((path, wave, None))
            n_in = fe.num_frames(wave.shape[0])
            load += 1 if win is None else -(-n_in // win)
        except Exception as err:
            pending.append((path, None, _reason(err)))
        if load >= batch_size or len(pending) >= max(batch_size, 64):
            yield from flush()
            pending, load = [], 0
    if pending:
        yield from flush()


def _embed_group(model, pending, idx, batch_size, window, options) -> dict[int, FileEmbedding]:
    names = [pending[i][0] for i in idx]
    out = embed(
        model,
        [pending[i][1] for i in idx],
        None,  # the model's rate, which load_audio resampled to
        window=window,
        batch_size=batch_size,
        names=names,
        **options,
    )
    results = {}
    for j, i in enumerate(idx):
        frames, ts = out.clip(j)
        scene = out.scene[j].float().cpu().numpy()
        frames = frames.float().cpu().numpy()
        if not (np.isfinite(scene).all() and np.isfinite(frames).all()):
            # never a silent NaN row: the file is reported as failed, with the reason
            results[i] = FileEmbedding(names[j], error=NON_FINITE)
            continue
        results[i] = FileEmbedding(
            names[j],
            scene=scene,
            frames=frames,
            timestamps=ts.float().cpu().numpy(),
            duration=float(out.duration[j]),
        )
    return results
