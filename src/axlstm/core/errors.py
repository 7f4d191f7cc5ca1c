"""The one error hierarchy of axlstm.

Every error the package raises on purpose for bad input is an :class:`AxlstmError`, and each
kind is also a ``ValueError`` so that code written against the plain built-in keeps working:

- :class:`ConfigError`: a configuration key or value that does not fit (model configs,
  front-end configs, the pretraining config tree, ``--set`` overrides);
- :class:`AudioError`: audio that cannot be used (a file that is not audio, is empty,
  truncated or non-finite; a clip too short for the front end);
- :class:`CheckpointError`: weights that cannot be read or do not fit (official checkpoints,
  release folders, training checkpoints).

Messages name the file (or the key) and the problem.
"""

from __future__ import annotations

__all__ = ["AudioError", "AxlstmError", "CheckpointError", "ConfigError"]


class AxlstmError(Exception):
    """Base class of the errors axlstm raises for bad input."""


class ConfigError(AxlstmError, ValueError):
    """A configuration key or value that does not fit the typed config."""


class AudioError(AxlstmError, ValueError):
    """Audio that cannot be read or used; the message names the file or clip."""


class CheckpointError(AxlstmError, ValueError):
    """Weights that cannot be read or do not fit: an official checkpoint, a release folder or
    a training checkpoint; the message names the file."""
