"""Audio input: file loading, resampling, listing audio files, and the front ends (the AxLSTM
log-mel and the Kaldi fbank) behind one interface (:class:`FrontEndSpec`)."""

from __future__ import annotations

from axlstm.audio.build import build_front_end, front_end_from_dict
from axlstm.audio.features import FrontEndConfig, LogMelFrontEnd, log_mel
from axlstm.audio.frontend import FrontEndSpec
from axlstm.audio.io import AudioError, AudioLoadError, load_audio, resample, to_mono
from axlstm.audio.kaldi import KaldiFbankConfig, KaldiFbankFrontEnd, kaldi_fbank
from axlstm.audio.listing import (
    AUDIO_EXTENSIONS,
    MANIFEST_EXTENSIONS,
    Manifest,
    collect_inputs,
    read_manifest,
    scan_folder,
)

__all__ = [
    "AUDIO_EXTENSIONS",
    "MANIFEST_EXTENSIONS",
    "AudioError",
    "AudioLoadError",
    "FrontEndConfig",
    "FrontEndSpec",
    "KaldiFbankConfig",
    "KaldiFbankFrontEnd",
    "LogMelFrontEnd",
    "Manifest",
    "build_front_end",
    "collect_inputs",
    "front_end_from_dict",
    "kaldi_fbank",
    "load_audio",
    "log_mel",
    "read_manifest",
    "resample",
    "scan_folder",
    "to_mono",
]
