"""The foundation every other layer may import: errors, typed configs, atomic files, the
release-folder format. It imports nothing else of axlstm."""

from axlstm.core.config import ConfigBase
from axlstm.core.errors import (
    AudioError,
    AxlstmError,
    CheckpointError,
    ConfigError,
    InputError,
    OutputError,
    UsageError,
)

__all__ = [
    "AudioError",
    "AxlstmError",
    "CheckpointError",
    "ConfigBase",
    "ConfigError",
    "InputError",
    "OutputError",
    "UsageError",
]
