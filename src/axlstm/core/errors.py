"""The one error hierarchy of axlstm.

Every error the package raises on purpose for bad input is an :class:`AxlstmError`, and each
kind is also a ``ValueError`` so that code written against the plain built-in keeps working:

- :class:`ConfigError`: a configuration key or value that does not fit (model configs,
  front-end configs, the pretraining config tree, ``--set`` overrides);
- :class:`AudioError`: audio that cannot be used (a file that is not audio, is empty,
  truncated or non-finite; a clip too short for the front end);
- :class:`CheckpointError`: weights that cannot be read or do not fit (official checkpoints,
  release folders, training checkpoints);
- :class:`InputError`: any other input file or folder that cannot be used (a manifest, a task
  folder, a named pipe given as a file, a symlink loop);
- :class:`UsageError`: a command-line option or argument that makes no sense (a negative
  duration, a zero batch size, ``--resume`` with nothing to resume).

:class:`OutputError` (an ``OSError``) is raised when an output cannot be written; it is
checked before long work starts.

Messages name the file (or the key or option) and the problem. The command line turns these
errors into one line: exit code 2 for :class:`UsageError` and :class:`ConfigError` (the
command was asked wrongly), 1 for the others (it could not be done).
"""

from __future__ import annotations

__all__ = [
    "AudioError",
    "AxlstmError",
    "CheckpointError",
    "ConfigError",
    "InputError",
    "OutputError",
    "UsageError",
]


class AxlstmError(Exception):
    """Base class of the errors axlstm raises for bad input."""


class ConfigError(AxlstmError, ValueError):
    """A configuration key or value that does not fit the typed config."""


class AudioError(AxlstmError, ValueError):
    """Audio that cannot be read or used; the message names the file or clip."""


class CheckpointError(AxlstmError, ValueError):
    """Weights that cannot be read or do not fit: an official checkpoint, a release folder or
    a training checkpoint; the message names the file."""


class InputError(AxlstmError, ValueError):
    """An input file or folder that cannot be used (other than audio and weights); the
    message names it."""


class UsageError(AxlstmError, ValueError):
    """A command-line option or argument that makes no sense; the message names it."""


class OutputError(AxlstmError, OSError):
    """An output that cannot be written (an unwritable or read-only folder, a path under a
    file, a folder where a file should go, a full disk); the message names it."""
