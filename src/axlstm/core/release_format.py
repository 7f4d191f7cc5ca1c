"""The release-folder format: ``config.json`` (architecture, front end, provenance) and
``model.safetensors``. Writing and reading the files only; which class a release builds is the
registry's business (:func:`axlstm.checkpoint.load_model`).

Loading a release never unpickles anything: the weights are safetensors, the config is JSON.
Both files are checked before they are read (a regular, non-empty file; the config at most
:data:`MAX_CONFIG_BYTES`); the tensor shapes can be read from the safetensors header alone
(:func:`read_release_shapes`), so a config can be checked against the weights before any
model is built.
``config.json`` names the model class (``"model_class"``: "masked_spec", "ssast_original" or
"ssamba"; absent in older releases, meaning "masked_spec") and the front end the model needs
(``"front_end"``; see :func:`axlstm.audio.build_front_end`).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import stat
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from axlstm._version import __version__
from axlstm.core.errors import CheckpointError
from axlstm.core.fileio import atomic_write, atomic_write_text, check_input_file, file_kind

__all__ = [
    "CONFIG_NAME",
    "RELEASE_FORMAT",
    "RELEASE_VERSION",
    "WEIGHTS_NAME",
    "check_release_file",
    "read_release_config",
    "read_release_shapes",
    "read_release_weights",
    "unique_keys",
    "write_release",
]

logger = logging.getLogger(__name__)

RELEASE_FORMAT = "axlstm-release"
RELEASE_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
#: A release's config.json is a few kB; anything past this is not one.
MAX_CONFIG_BYTES = 16 * 2**20


def write_release(
    directory: str | Path,
    *,
    model_class: str,
    model_config: dict[str, Any],
    front_end: dict[str, Any],
    state_dict: dict[str, torch.Tensor],
    provenance: dict[str, Any] | None = None,
) -> Path:
    """Write a release folder (atomically, file by file) and return its path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = {
        "format": RELEASE_FORMAT,
        "format_version": RELEASE_VERSION,
        "axlstm_version": __version__,
        "model_class": model_class,
        "model": model_config,
        "front_end": front_end,
        "provenance": provenance or {},
    }
    state = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    atomic_write(directory / WEIGHTS_NAME, lambda p: save_file(state, p, metadata={"format": "pt"}))
    text = json.dumps(config, indent=2, sort_keys=True) + "\n"
    atomic_write_text(directory / CONFIG_NAME, text)
    logger.info("saved release %s", directory)
    return directory


def _check_release_dir(directory: Path) -> None:
    """A release folder must be a folder (a link loop or a file is named as such)."""
    try:
        st = os.stat(directory)
    except FileNotFoundError:
        raise FileNotFoundError(f"release folder not found: {directory}") from None
    except OSError as err:
        reason = "symbolic link loop" if err.errno == errno.ELOOP else err.strerror or str(err)
        raise CheckpointError(f"cannot read release folder {directory}: {reason}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise CheckpointError(
            f"{directory} is not a release folder: it is {file_kind(st.st_mode)} (a release is "
            f"a folder with {CONFIG_NAME} and {WEIGHTS_NAME}; official .pth checkpoints load "
            "with axlstm.load_official or `axlstm convert`)"
        )


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys are all different (a repeated key would silently win)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    """NaN and Infinity are not JSON, and no config field may hold them."""
    raise ValueError(f"{name} is not a valid value")


def check_release_file(
    path: Path, what: str, folder: str = "axlstm release folder"
) -> os.stat_result:
    """A regular, readable, non-empty file of a release folder (checked before any read); a
    missing one means the ``folder`` is incomplete."""
    try:
        st = check_input_file(path, what, error=CheckpointError)
    except FileNotFoundError:
        raise CheckpointError(f"{path.parent} is not a complete {folder}: no {path.name}") from None
    if st.st_size == 0:
        raise CheckpointError(f"cannot read {what} {path}: file is empty (0 bytes)")
    return st


def read_release_config(directory: str | Path) -> dict[str, Any]:
    """The parsed ``config.json`` of a release folder, validated.

    Raises:
        FileNotFoundError: the folder does not exist.
        CheckpointError: not a folder, no or an invalid ``config.json`` (not a regular file,
            too large, not UTF-8 JSON, not a JSON object, fields of the wrong type), or a
            newer format version; the message names the file.
    """
    directory = Path(directory)
    _check_release_dir(directory)
    cfg_path = directory / CONFIG_NAME
    if check_release_file(cfg_path, "release config").st_size > MAX_CONFIG_BYTES:
        raise CheckpointError(
            f"{cfg_path}: {os.path.getsize(cfg_path):,} bytes is far too large for a release "
            f"config (limit {MAX_CONFIG_BYTES:,})"
        )
    try:
        config = json.loads(
            cfg_path.read_bytes().decode("utf-8"),
            object_pairs_hook=unique_keys,
            parse_constant=_no_constant,
        )
    except UnicodeDecodeError as err:
        raise CheckpointError(
            f"{cfg_path}: not UTF-8 text ({err.reason} at byte {err.start})"
        ) from None
    except ValueError as err:  # JSONDecodeError, a duplicate key, NaN or Infinity
        raise CheckpointError(f"{cfg_path}: invalid JSON ({err})") from None
    except RecursionError:
        raise CheckpointError(f"{cfg_path}: invalid JSON (nested too deeply)") from None
    if not isinstance(config, dict):
        raise CheckpointError(
            f"{cfg_path}: not an axlstm release config (a JSON {type(config).__name__}, "
            "not an object)"
        )
    if config.get("format") != RELEASE_FORMAT:
        raise CheckpointError(
            f"{cfg_path}: not an axlstm release config (format {config.get('format')!r})"
        )
    _check_fields(config, cfg_path)
    return config


def _check_fields(config: dict[str, Any], cfg_path: Path) -> None:
    """The top-level fields have the types a release writes."""
    version = config.get("format_version", 0)
    if isinstance(version, bool) or not isinstance(version, int):
        raise CheckpointError(f"{cfg_path}: format_version {version!r} is not an integer")
    if version > RELEASE_VERSION:
        raise CheckpointError(
            f"{cfg_path}: release format version {version} is newer than this axlstm "
            f"understands ({RELEASE_VERSION}); upgrade axlstm"
        )
    if not isinstance(config.get("model"), dict):
        raise CheckpointError(f"{cfg_path}: 'model' must be a JSON object of config fields")
    if not isinstance(config.get("model_class", "masked_spec"), str):
        raise CheckpointError(f"{cfg_path}: 'model_class' must be a string")
    for key in ("front_end", "provenance"):
        if not isinstance(config.get(key, {}), dict):
            raise CheckpointError(f"{cfg_path}: {key!r} must be a JSON object")


def _safetensors_problem(err: Exception) -> str:
    text = str(err)
    if "incomplete metadata" in text or "invalid header length" in text:
        return "truncated or corrupt (the file is shorter than its header declares)"
    if "header too" in text or "Error while deserializing header" in text:
        return f"not a valid safetensors file ({text.split(': ', 1)[-1]})"
    return f"cannot read safetensors weights ({text})"


def read_release_shapes(directory: str | Path) -> dict[str, tuple[int, ...]]:
    """The shape of every tensor in a release's weights, from the safetensors header only
    (no tensor is read: the cost is the header's, whatever sizes it declares).

    Raises:
        CheckpointError: the file is missing, not a regular file, empty, or not safetensors.
    """
    weights = Path(directory) / WEIGHTS_NAME
    check_release_file(weights, "release weights")
    try:
        with safe_open(str(weights), framework="pt") as f:
            names = f.keys()  # a safe_open handle is not iterable
            return {k: tuple(int(n) for n in f.get_slice(k).get_shape()) for k in names}
    except Exception as err:
        raise CheckpointError(f"{weights}: {_safetensors_problem(err)}") from err


def read_release_weights(
    directory: str | Path, device: str | torch.device = "cpu"
) -> dict[str, torch.Tensor]:
    """The safetensors weights of a release folder.

    Raises:
        CheckpointError: the file is missing, not a regular file, empty, or not readable
            safetensors.
    """
    weights = Path(directory) / WEIGHTS_NAME
    check_release_file(weights, "release weights")
    try:
        return load_file(str(weights), device=str(device))
    except Exception as err:
        raise CheckpointError(f"{weights}: {_safetensors_problem(err)}") from err
