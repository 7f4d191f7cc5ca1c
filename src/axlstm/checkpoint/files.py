"""Weight files read safely: the file checks every reader needs, torch files read with the
weights-only unpickler and its failures told in one line, and non-finite weights refused.

Every problem is a :class:`~axlstm.core.errors.CheckpointError` whose message names the file:

* not a readable regular file (a folder, a named pipe, a link loop: refused before any read),
  or an empty one ("file is empty (0 bytes)");
* a torch file cut short or damaged ("truncated or corrupt"), not a torch file at all, or one
  whose pickle names Python objects beyond tensors and plain values ("refused to load ...: it
  holds Python objects, not only tensors (unsupported global: os.system)"); nothing from the
  file is ever run;
* weights holding NaN or infinite values (the first offending tensors are named).
"""

from __future__ import annotations

import errno
import os
import pickle
import re
import struct
import warnings
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from axlstm.core.errors import CheckpointError
from axlstm.core.fileio import check_input_file

__all__ = [
    "check_finite",
    "check_weights_file",
    "describe_load_error",
    "nonfinite_tensors",
    "torch_load_weights",
]

_ZIP_MAGIC = b"PK\x03\x04"
_GLOBAL_RE = re.compile(r"GLOBAL ([\w.]+)")
# Modules that pickles name for functions of os (os.system pickles as posix.system).
_MODULE_ALIASES = {"posix": "os", "nt": "os"}


def check_weights_file(path: str | os.PathLike[str], what: str = "checkpoint") -> os.stat_result:
    """Check, before any read, that ``path`` is a readable, non-empty regular file.

    Raises:
        FileNotFoundError: nothing is there.
        CheckpointError: a folder, a named pipe, a device, a broken link, a link loop, an
            unreadable or an empty file.
    """
    st = check_input_file(path, what, error=CheckpointError)
    if st.st_size == 0:
        raise CheckpointError(f"cannot read {what} {path}: file is empty (0 bytes)")
    return st


def _refused_global(text: str) -> str | None:
    match = _GLOBAL_RE.search(text)
    if match is None:
        return None
    module, _, name = match.group(1).rpartition(".")
    return f"{_MODULE_ALIASES.get(module, module)}.{name}" if module else name


def describe_load_error(err: BaseException) -> str:
    """Why ``torch.load`` failed, in a few words (one line, no advice to unpickle fully)."""
    text = str(err)
    if isinstance(err, pickle.UnpicklingError) and "Weights only load failed" in text:
        refused = _refused_global(text)
        if refused is not None:
            return (
                f"it holds Python objects, not only tensors (unsupported global: {refused}); "
                "axlstm never runs code from checkpoints"
            )
        detail = re.search(r"WeightsUnpickler error:\s*(.+)", text)
        reason = detail.group(1).strip().splitlines()[0] if detail else "refused"
        return f"not a checkpoint of tensors (the safe unpickler stopped: {reason})"
    if isinstance(err, (EOFError, zipfile.BadZipFile)) or (
        isinstance(err, OSError) and err.errno == errno.EINVAL
    ):
        return "truncated or corrupt (the file ends early or its contents are damaged)"
    if isinstance(err, RuntimeError) and (
        "PytorchStreamReader" in text or "inline_container" in text
    ):
        if "failed locating file" in text or "not in a subdirectory" in text:
            return "a zip archive, but not a PyTorch checkpoint"
        return "truncated or corrupt (a damaged PyTorch zip archive)"
    if isinstance(err, (IndexError, struct.error)):
        return "truncated or corrupt (the file ends early or its contents are damaged)"
    if isinstance(err, (pickle.UnpicklingError, KeyError, UnicodeDecodeError)) or (
        isinstance(err, RuntimeError) and "magic number" in text
    ):
        return "not a PyTorch checkpoint (unrecognised contents)"
    first = text.strip().splitlines()[0] if text.strip() else type(err).__name__
    return f"unreadable ({first})"


def torch_load_weights(
    path: str | os.PathLike[str],
    what: str = "checkpoint",
    map_location: str | torch.device = "cpu",
    safe_globals: Iterable[Any] = (),
) -> Any:
    """``torch.load(path, weights_only=True)`` after the file checks, failures in one line.

    Args:
        path: the file.
        what: what it is, for messages ("checkpoint", "training checkpoint").
        map_location: where tensors go.
        safe_globals: extra classes the unpickler may build (inert stand-ins).

    Raises:
        FileNotFoundError: nothing is there.
        CheckpointError: the file cannot be used; the message names it and says why.
    """
    path = Path(path)
    check_weights_file(path, what)
    with open(path, "rb") as f:
        is_zip = f.read(4) == _ZIP_MAGIC
    if is_zip and not zipfile.is_zipfile(path):  # a zip's directory sits at its very end
        raise CheckpointError(
            f"cannot read {what} {path}: truncated or corrupt (the zip archive's end is missing)"
        )
    try:
        with warnings.catch_warnings(), torch.serialization.safe_globals(list(safe_globals)):
            # other pickle protocols are refused or read all the same; the warning is noise
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        reason = describe_load_error(err)
        verb = "refused to load" if reason.startswith("it holds") else f"cannot read {what}"
        raise CheckpointError(f"{verb} {path}: {reason}") from err


def nonfinite_tensors(state: Mapping[str, Any]) -> list[str]:
    """Names of the floating-point tensors of ``state`` that hold NaN or infinite values."""
    return [
        name
        for name, value in state.items()
        if torch.is_tensor(value)
        and (value.is_floating_point() or value.is_complex())
        and value.device.type != "meta"
        and not bool(torch.isfinite(value).all())
    ]


def check_finite(state: Mapping[str, Any], source: str | os.PathLike[str]) -> None:
    """Refuse weights that hold NaN or infinite values.

    Raises:
        CheckpointError: naming ``source`` and the first offending tensors.
    """
    bad = nonfinite_tensors(state)
    if bad:
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise CheckpointError(
            f"{source}: non-finite weights (NaN or infinite values) in {', '.join(bad[:5])}"
            f"{more}; refusing to load them"
        )
