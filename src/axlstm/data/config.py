"""Settings of the pretraining data pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from axlstm.core.config import ConfigBase


@dataclass
class InputDataConfig(ConfigBase):
    """How clips become training inputs (:mod:`axlstm.data.clips`), for any model. "auto" takes
    the model's front end's own recipe: for the AxLSTM log-mel a random start in
    ``[0, T - L)`` and short clips tiled (the official AxLSTM loader); for the Kaldi fbank of the
    original SSAST and SSAMBA the first ``target_length`` frames and zero log-mel rows appended
    (the official SSAST loader, SPEC-SSAST-SSAMBA §A1-A2). No augmentation by default;
    fine-tuning recipes add SpecAugment and noise.

    Waveform-level mixup (a fine-tuning augmentation, rate 0 in every pretraining script) is
    not offered: it needs a second clip per item.

    Attributes:
        crop: "auto", "start" (keep the first frames), "random" (a uniform start in
            ``[0, T - L]``) or "random_official" (``[0, T - L)``).
        pad: "auto", "zeros" (zero log-mel rows at the end, +0.467 after AudioSet
            normalisation for SSAST) or "tile" (repeat the clip).
        freqm: SpecAugment frequency mask width bound (0: off; fine-tuning 24-48), torchaudio
            semantics: one mask of width ``floor(U * freqm)``, written as 0 before normalising.
        timem: SpecAugment time mask width bound (0: off; fine-tuning 48-192).
        noise: after normalising add ``U(0, 1) * r / 10`` noise (``r ~ U(0, 1)``) and roll the
            clip in time by an integer in [-10, 9] frames, as the official loader's noise.
    """

    crop: Literal["auto", "start", "random", "random_official"] = "auto"
    pad: Literal["auto", "zeros", "tile"] = "auto"
    freqm: int = 0
    timem: int = 0
    noise: bool = False

    def validate(self) -> None:
        if self.freqm < 0 or self.timem < 0:
            raise ValueError("data.input.freqm and data.input.timem must be >= 0")


@dataclass
class DataConfig(ConfigBase):
    """Where training clips come from and how they are read.

    Attributes:
        paths: folders (scanned recursively), manifests (``.csv``/``.tsv``/``.jsonl``), shard
            folders, ``.tar`` files, globs or brace patterns. Empty: the procedural corpus.
        num_workers: DataLoader worker processes per rank (0: load in the training process).
        prefetch_factor: batches each worker prepares ahead.
        pin_memory: pin host batches when training on CUDA.
        crop_frames: frames per training input (200 = 2 s at a 10 ms hop) for front ends
            without a fixed length (the log-mel); the Kaldi fbank pads or crops to its own
            ``target_length`` (the model's training length) instead.
        silence_ptp: peak-to-peak amplitude at or below which a clip counts as silent.
        max_bad_attempts: replacement draws for one sample before the run gives up (the data
            is then mostly unusable and an error says so).
        shuffle_block: shards are read in shuffled order per epoch and, inside each worker's
            stream, in blocks of this many samples shuffled deterministically (0 or 1: no
            in-block shuffle). Memory per worker is about this many encoded samples.
        trust_pickle: allow pickled ``.pyd`` members in shards (the official AudioSet format).
            Unpickling executes code from the file: only for shards you made or trust.
        procedural_size: clips in the procedural corpus (its epoch length).
        procedural_seed: identity of the procedural corpus.
        procedural_seconds: (min, max) duration of procedural clips.
        input: crops, padding and augmentation of the training inputs
            (:class:`InputDataConfig`).
    """

    paths: list[str] = field(default_factory=list)
    num_workers: int = 4
    prefetch_factor: int = 2
    pin_memory: bool = True
    crop_frames: int = 200
    silence_ptp: float = 1e-6
    max_bad_attempts: int = 32
    shuffle_block: int = 256
    trust_pickle: bool = False
    procedural_size: int = 100_000
    procedural_seed: int = 0
    procedural_seconds: tuple[float, float] = (1.0, 4.0)
    input: InputDataConfig = field(default_factory=InputDataConfig)

    def validate(self) -> None:
        if self.num_workers < 0:
            raise ValueError(f"data.num_workers must be >= 0, got {self.num_workers}")
        if self.prefetch_factor < 1:
            raise ValueError(f"data.prefetch_factor must be >= 1, got {self.prefetch_factor}")
        if self.crop_frames <= 0:
            raise ValueError(f"data.crop_frames must be positive, got {self.crop_frames}")
        if self.max_bad_attempts < 1:
            raise ValueError(f"data.max_bad_attempts must be >= 1, got {self.max_bad_attempts}")
        if self.shuffle_block < 0:
            raise ValueError(f"data.shuffle_block must be >= 0, got {self.shuffle_block}")
        if self.procedural_size <= 0 or self.procedural_seed < 0:
            raise ValueError("data.procedural_size must be positive and procedural_seed >= 0")
        lo, hi = self.procedural_seconds
        if not 0 < lo <= hi:
            raise ValueError(f"data.procedural_seconds must be 0 < min <= max, got {lo}, {hi}")
