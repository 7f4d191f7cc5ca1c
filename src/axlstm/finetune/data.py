"""Labelled clips as model inputs: training crops with their targets for the engine's data
stream, and whole clips cut into windows for validation, testing and prediction.

Training: every item is loaded (any format, resampled to the model's rate), turned into the
model's features by its own front end, cropped at random to the clip length (or padded) and
optionally masked (:class:`axlstm.data.ClipProcessor`); its target is the ``(K,)`` one-hot or
multi-hot row. With ``balanced`` sampling an item is drawn by AudioSet-style weights
(:func:`axlstm.data.augment.balanced_weights`) from the sample's own seeded generator, so a
resumed run draws the same clips.

Evaluation and prediction: the model input of the whole clip (the front end's standardisation
over the whole clip, or its fixed statistics), cut into windows of the clip length ``L`` with
hop ``L // 2`` (:func:`window_starts`): a clip of at most ``L`` frames is one window, padded as
training crops are (:func:`pad_input`); a longer one gets full windows at ``0, H, 2H, ...`` and
one last window ending on its last frame. :mod:`axlstm.finetune.predict` uses the same rule, so
``axlstm predict`` reproduces the validation and test scores. A split is read in chunks of
clips (:class:`EvalClips`) and kept in memory between validations only while its windows fit
in a budget, so the memory of evaluation is bounded whatever the split's size.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from axlstm.audio import FrontEndSpec, load_audio
from axlstm.core.errors import AxlstmError, InputError
from axlstm.data.augment import add_noise, balanced_weights, random_gain
from axlstm.data.clips import BadItem, ClipProcessor
from axlstm.data.stream import IndexedStream
from axlstm.finetune.labels import LabelledItem

__all__ = [
    "ClipWindows",
    "EvalClips",
    "LabelledSource",
    "clip_windows",
    "cut_windows",
    "labelled_stream",
    "pad_input",
    "window_starts",
]

logger = logging.getLogger(__name__)


class LabelledSource:
    """Labelled audio files addressed by index, for :class:`axlstm.data.stream.IndexedStream`:
    ``load`` gives ``{"spec": (1, frames, F), "target": (K,)}``.

    Args:
        items: the clips.
        targets: ``(N, K)`` float32 targets, row i for item i.
        balanced: draw the item of each sample by AudioSet-style weights instead.
        noise_snr, gain_db: waveform augmentations (:mod:`axlstm.data.augment`), drawn from
            the sample's generator.
        description: for logs and errors.
    """

    kind = "labelled"

    def __init__(
        self,
        items: Sequence[LabelledItem],
        targets: np.ndarray,
        *,
        balanced: bool = False,
        noise_snr: tuple[float, float] | None = None,
        gain_db: float = 0.0,
        description: str = "labelled clips",
    ) -> None:
        if not items:
            raise InputError(f"no training clips in {description}")
        self.items = list(items)
        self.targets = np.asarray(targets, dtype=np.float32)
        self.description = description
        self.noise_snr, self.gain_db = noise_snr, gain_db
        self.probs = None
        if balanced:
            weights = balanced_weights(torch.from_numpy(self.targets)).numpy()
            self.probs = weights / weights.sum()

    def __len__(self) -> int:
        return len(self.items)

    def name(self, index: int) -> str:
        return self.items[index].path

    def load(self, index: int, processor: ClipProcessor, rng: np.random.Generator) -> dict:
        if self.probs is not None:
            index = int(rng.choice(len(self.items), p=self.probs))
        path = self.items[index].path
        try:
            wave = load_audio(path, processor.sample_rate)
        except FileNotFoundError:
            raise BadItem("missing", path) from None
        except (AxlstmError, OSError) as err:
            raise BadItem("unreadable", path, str(err)) from None
        if self.noise_snr is not None or self.gain_db:
            g = torch.Generator().manual_seed(int(rng.integers(2**62)))
            batch = wave[None]  # (1, N)
            if self.gain_db:
                batch = random_gain(batch, g, max_db=self.gain_db)
            if self.noise_snr is not None:
                low, high = self.noise_snr
                batch = add_noise(batch, g, snr_low=low, snr_high=high)
            wave = batch[0]
        return {
            "spec": processor.from_wave(wave, rng, path),
            "target": torch.from_numpy(self.targets[index]),
        }


def labelled_stream(
    source: LabelledSource,
    processor: ClipProcessor,
    data_cfg,
    *,
    seed: int,
    rank: int,
    world: int,
    micro_batch: int,
    states,
    pin_memory: bool,
) -> IndexedStream:
    """The engine's data stream over labelled clips (exact resume, seeded crops and draws)."""
    return IndexedStream(
        source,
        processor,
        data_cfg,
        seed=seed,
        rank=rank,
        world=world,
        micro_batch=micro_batch,
        states=states,
        pin_memory=pin_memory,
    )


@dataclass
class ClipWindows:
    """The evaluation windows of some clips.

    Attributes:
        windows: ``(W, 1, frames, F)`` model inputs, the clips' windows in order.
        owner: ``(W,)`` index of the clip each window belongs to.
        starts: ``(W,)`` start of each window in seconds.
        durations: ``(n,)`` seconds of each clip.
        failed: ``{path: reason}`` of clips that could not be read.
        kept: indices (into the input list) of the clips that have windows.
    """

    windows: torch.Tensor
    owner: torch.Tensor
    starts: torch.Tensor
    durations: list[float]
    failed: dict[str, str]
    kept: list[int]


def window_starts(n_frames: int, window: int | None, hop: int) -> list[int] | None:
    """First input frame of each window of a clip of ``n_frames`` frames, or None for one pass
    (``window`` None or a clip no longer than it): windows at ``0, hop, 2 hop, ...`` while
    they fit, and a last one ending on the last frame."""
    if window is None or n_frames <= window:
        return None
    last = n_frames - window
    starts = list(range(0, last + 1, hop))
    if starts[-1] != last:
        starts.append(last)  # the final window ends on the last frame
    return starts


def pad_input(spec: torch.Tensor, frames: int, fe: FrontEndSpec) -> torch.Tensor:
    """A (T, F) model input shorter than ``frames`` padded as training crops are
    (:func:`axlstm.data.clips.fit_length` with the front end's ``training_pad``): "tile"
    repeats the clip, "zeros" appends padding frames (``fe.pad_value`` once normalised)."""
    T = spec.shape[0]
    if fe.training_pad == "tile":
        return spec.repeat(math.ceil(frames / T), 1)[:frames]
    return F.pad(spec, (0, 0, 0, frames - T), value=fe.pad_value)


def cut_windows(
    spec: torch.Tensor, frames: int | None, fe: FrontEndSpec, hop: int | None = None
) -> tuple[list[torch.Tensor], list[int]]:
    """``(T, F)`` model input of a whole clip -> its windows and their start frames (hop:
    half a window unless given)."""
    hop = hop or max(1, (frames or 1) // 2)
    starts = window_starts(spec.shape[0], frames, hop)
    if starts is None:
        if frames is not None and spec.shape[0] < frames:
            spec = pad_input(spec, frames, fe)
        return [spec], [0]
    return [spec[s : s + frames] for s in starts], starts


def clip_windows(
    paths: Sequence[str],
    front_end: FrontEndSpec,
    frames: int,
    *,
    allow_truncated: bool = False,
) -> ClipWindows:
    """Load ``paths`` and cut each into evaluation windows of ``frames`` feature frames.

    A file that cannot be read (or is too short for the front end) is listed in ``failed``
    with its reason; the others go on.
    """
    module = front_end.whole_clip().build().eval()
    pieces, owner, starts, durations, failed, kept = [], [], [], [], {}, []
    hop_s = front_end.hop_samples / front_end.sample_rate
    for i, path in enumerate(paths):
        try:
            wave = load_audio(path, front_end.sample_rate, allow_truncated=allow_truncated)
            if wave.numel() < front_end.min_samples:
                raise InputError(
                    f"{path}: too short ({wave.numel()} samples; the front end needs "
                    f"{front_end.min_samples}: {front_end.min_samples_reason})"
                )
            with torch.no_grad():
                spec = module(wave[None])[0, 0]  # (T, F) model input of the whole clip
        except (AxlstmError, OSError) as err:
            failed[path] = str(err)
            continue
        windows, first = cut_windows(spec, frames, front_end)
        pieces.extend(windows)
        owner.extend([len(kept)] * len(windows))
        starts.extend(s * hop_s for s in first)
        durations.append(wave.numel() / front_end.sample_rate)
        kept.append(i)
    if failed:
        reasons = Counter(r.split(":")[-1].strip()[:60] for r in failed.values())
        logger.warning("%d of %d clips could not be read (%s)", len(failed), len(paths), reasons)
    stacked = (
        torch.stack(pieces).unsqueeze(1).float()
        if pieces
        else torch.zeros(0, 1, frames, front_end.n_mels)
    )
    return ClipWindows(
        windows=stacked,
        owner=torch.tensor(owner, dtype=torch.long),
        starts=torch.tensor(starts, dtype=torch.float64),
        durations=durations,
        failed=failed,
        kept=kept,
    )


class EvalClips:
    """The evaluation windows of a split, read ``chunk_clips`` clips at a time.

    :meth:`chunks` yields :class:`ClipWindows` whose ``kept`` indices are into the whole
    ``paths`` list (``owner`` stays local to the chunk). The first full pass keeps the chunks
    in memory while their windows total at most ``cache_bytes``; a larger split is read again
    on every pass instead (bounded memory, at the price of decoding the audio again).
    After a full pass, :attr:`failed` holds the files that could not be read.
    """

    def __init__(
        self,
        paths: Sequence[str],
        front_end: FrontEndSpec,
        frames: int,
        *,
        chunk_clips: int = 256,
        cache_bytes: float = 2 * 2**30,
    ) -> None:
        if chunk_clips < 1:
            raise ValueError(f"chunk_clips must be >= 1, got {chunk_clips}")
        self.paths = list(paths)
        self.front_end = front_end
        self.frames = frames
        self.chunk_clips = chunk_clips
        self.cache_bytes = cache_bytes
        self.failed: dict[str, str] = {}
        self._cache: list[ClipWindows] | None = None
        self._streaming = False

    @property
    def cached(self) -> bool:
        """Whether the windows are held in memory (after a first pass that fitted)."""
        return self._cache is not None

    def _read(self) -> Iterator[ClipWindows]:
        for offset in range(0, len(self.paths), self.chunk_clips):
            chunk = clip_windows(self.paths[offset : offset + self.chunk_clips],
                                 self.front_end, self.frames)  # fmt: skip
            chunk.kept = [offset + i for i in chunk.kept]
            yield chunk

    def chunks(self) -> Iterator[ClipWindows]:
        if self._cache is not None:
            yield from self._cache
            return
        keep: list[ClipWindows] | None = None if self._streaming else []
        size, failed = 0, {}
        for chunk in self._read():
            failed.update(chunk.failed)
            if keep is not None:
                size += chunk.windows.numel() * chunk.windows.element_size()
                if size <= self.cache_bytes:
                    keep.append(chunk)
                else:
                    logger.info(
                        "the evaluation windows of %d clips exceed %.1f GiB: they are read "
                        "again for every evaluation instead of kept in memory",
                        len(self.paths),
                        self.cache_bytes / 2**30,
                    )
                    keep, self._streaming = None, True
            yield chunk
        self.failed = failed
        if keep is not None:
            self._cache = keep
