"""Audio input: file loading, resampling and the AxLSTM log-mel front end."""

from __future__ import annotations

from axlstm.audio.features import FrontEndConfig, LogMelFrontEnd, log_mel
from axlstm.audio.io import AudioLoadError, load_audio, resample, to_mono
from axlstm.audio.kaldi import KaldiFbankConfig, KaldiFbankFrontEnd, build_front_end, kaldi_fbank

#: Lower-case file extensions (with the leading dot, as ``Path.suffix`` gives them) of the
#: audio files that directory scans pick up. All are decoded by libsndfile.
AUDIO_EXTENSIONS: list[str] = [
    ".wav",
    ".flac",
    ".ogg",
    ".opus",
    ".mp3",
    ".aiff",
    ".aif",
    ".au",
    ".caf",
    ".w64",
]

__all__ = [
    "AUDIO_EXTENSIONS",
    "AudioLoadError",
    "FrontEndConfig",
    "KaldiFbankConfig",
    "KaldiFbankFrontEnd",
    "LogMelFrontEnd",
    "build_front_end",
    "kaldi_fbank",
    "load_audio",
    "log_mel",
    "resample",
    "to_mono",
]
