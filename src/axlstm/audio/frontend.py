"""The one front-end interface: how a waveform becomes a model's input.

Every front-end config (:class:`~axlstm.audio.FrontEndConfig`, the AxLSTM log-mel;
:class:`~axlstm.audio.KaldiFbankConfig`, the Kaldi fbank of the original SSAST and SSAMBA)
derives from :class:`FrontEndSpec` and answers the same questions, so embedding, streaming,
pretraining data and evaluation never ask which one they hold:

- the sample rate, the bins, where its frames sit in the audio (hop, centre of frame 0) and how
  many frames a clip of N samples gives; the shortest clip it accepts;
- what padding frames hold in the model input (:attr:`FrontEndSpec.pad_value`);
- how it normalises: per clip (statistics of the whole clip, so before any crop) or with fixed
  statistics (elementwise, so after crops and padding, as SSAST's loader does);
- the input length it pads or crops to, if any, and its version without that
  (:meth:`FrontEndSpec.whole_clip`) for embedding clips of any length;
- how training crops are cut by default (:attr:`FrontEndSpec.training_crop`,
  :attr:`FrontEndSpec.training_pad`);
- :meth:`FrontEndSpec.build`: the ``nn.Module`` that computes it, with ``forward(wave)`` (the
  normalised model input ``(B, 1, T, F)``), ``raw_features(wave)`` (one clip's unnormalised
  ``(T, F)``) and ``normalize(feats)``.

Crop policies (``training_crop``): "start" keeps the first frames; "random" starts uniformly
anywhere in ``[0, T - L]``; "random_official" starts in ``[0, T - L)`` as the official AxLSTM
loader does (never the very last start). Pad policies (``training_pad``): "tile" repeats a short
clip, "zeros" appends zero rows before normalisation (SSAST's loader).
"""

from __future__ import annotations

from fractions import Fraction
from typing import ClassVar

from torch import nn

from axlstm.core.config import ConfigBase

__all__ = ["CROP_POLICIES", "PAD_POLICIES", "FrontEndSpec"]

CROP_POLICIES = ("start", "random", "random_official")
PAD_POLICIES = ("tile", "zeros")


class FrontEndSpec(ConfigBase):
    """Base of every front-end config (a dataclass with ``sample_rate`` and ``n_mels``)."""

    kind: str
    sample_rate: int
    n_mels: int

    #: how training crops are cut and short clips padded by default (see the module doc)
    training_crop: ClassVar[str] = "start"
    training_pad: ClassVar[str] = "zeros"
    #: what needs :attr:`min_samples` samples, for error messages
    min_samples_reason: ClassVar[str] = "the front end needs"

    @property
    def hop_samples(self) -> int:
        """Samples between consecutive frames."""
        raise NotImplementedError

    @property
    def frame_samples(self) -> int:
        """Samples one analysis frame spans (the STFT window, the fbank frame)."""
        raise NotImplementedError

    @property
    def first_centre(self) -> Fraction:
        """Centre of frame 0 in samples (0 for a centred STFT)."""
        raise NotImplementedError

    @property
    def min_samples(self) -> int:
        """Shortest clip (samples) that gives a frame."""
        raise NotImplementedError

    def num_frames(self, num_samples: int) -> int:
        """Frames of a whole clip of ``num_samples`` samples, before any pad or crop."""
        raise NotImplementedError

    @property
    def pad_value(self) -> float:
        """What a padding frame holds in the (normalised) model input."""
        raise NotImplementedError

    @property
    def per_clip_normalization(self) -> bool:
        """True when normalising needs the statistics of the whole clip."""
        raise NotImplementedError

    @property
    def fixed_length(self) -> int | None:
        """Frames the front end pads or crops every clip to (None: the clip's own length)."""
        return None

    def whole_clip(self) -> FrontEndSpec:
        """This front end without padding or cropping to a fixed length."""
        return self

    def build(self) -> nn.Module:
        """The module computing this front end (``forward``, ``raw_features``, ``normalize``)."""
        raise NotImplementedError
