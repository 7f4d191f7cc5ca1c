"""Read official AxLSTM/SSAST/SSAMBA checkpoints without executing pickled code.

Official files are either ``{'model': state_dict}`` or full training checkpoints
``{'model', 'optimizer', 'epoch', 'scaler', 'args'}`` whose ``args`` pickle references
``argparse.Namespace`` and ``ml_collections.ConfigDict``. PyTorch's ``weights_only`` unpickler
refuses those; instead of falling back to full unpickling (arbitrary code execution), every
foreign class the pickle names is replaced by an inert stand-in that only stores what it is given.

The original SSAST and SSAMBA save raw ``nn.DataParallel`` state dicts (``module.`` prefix)
with frozen geometry tensors (``p_input_fdim``/``p_input_tdim``); their per-family remap turns
those into config (checked, then dropped) and renames the rest.
"""

from __future__ import annotations

import logging
import pickletools
import zipfile
from pathlib import Path
from typing import Any

import torch

from axlstm.checkpoint.files import check_finite, check_weights_file, torch_load_weights
from axlstm.checkpoint.remap import REMAPS
from axlstm.core.errors import CheckpointError, ConfigError
from axlstm.models import Encoder, create_model, is_model, model_class_name

__all__ = ["PickledObject", "extract_state_dict", "load_official", "read_checkpoint"]

logger = logging.getLogger(__name__)

# Official prefixes that wrappers add around the model's own keys.
_PREFIXES = ("module.", "model.", "encoder.")


class PickledObject:
    """Inert stand-in for a class named in an untrusted pickle: stores arguments and state."""

    pickled_name = "?"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.kwargs = kwargs
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<unpickled stand-in for {self.pickled_name}>"


def _pickle_globals(path: Path) -> set[str]:
    """ "module.qualname" of every global a torch zip checkpoint's pickle refers to."""
    try:
        with zipfile.ZipFile(path) as zf:
            name = next(n for n in zf.namelist() if n.endswith("data.pkl"))
            data = zf.read(name)
    except (zipfile.BadZipFile, StopIteration, OSError):
        return set()  # legacy or non-torch format: let torch.load report it
    found: set[str] = set()
    strings: list[str] = []
    for op, arg, _ in pickletools.genops(data):
        if op.name == "GLOBAL":
            module, qualname = str(arg).split(" ", 1)
            found.add(f"{module}.{qualname}")
        elif op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"):
            strings.append(str(arg))
        elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
            found.add(f"{strings[-2]}.{strings[-1]}")
    return found


def _torch_allowed() -> set[str]:
    try:
        from torch._weights_only_unpickler import _get_allowed_globals

        return set(_get_allowed_globals())
    except Exception:  # private API; without it, stub only what is clearly foreign
        return set()


def read_checkpoint(path: str | Path) -> Any:
    """Load a checkpoint object with the weights-only unpickler, foreign classes stubbed.

    Raises:
        FileNotFoundError: the file does not exist.
        CheckpointError: the file is not a readable torch checkpoint (the message names it and
            says why: empty, truncated, not a checkpoint, refused Python objects).
    """
    path = Path(path)
    check_weights_file(path, "checkpoint")
    allowed = _torch_allowed()
    stubs = []
    for name in sorted(_pickle_globals(path)):
        if name.startswith("torch.") or name in allowed:
            continue
        stub = type(f"Stub[{name}]", (PickledObject,), {"pickled_name": name})
        stubs.append((stub, name))
    if stubs:
        logger.info("%s: reading without executing %s", path, ", ".join(n for _, n in stubs))
    return torch_load_weights(path, "checkpoint", safe_globals=stubs)


def extract_state_dict(obj: Any, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The model state dict inside a loaded checkpoint object, wrapper prefixes removed."""
    if isinstance(obj, dict):
        for key in ("model", "state_dict", "model_state_dict"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError(f"{source}: no model state dict found")
    state = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise CheckpointError(f"{source}: the state dict holds no tensors")
    for prefix in _PREFIXES:
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def load_official(path: str | Path, arch: str, **overrides: Any) -> Encoder:
    """Build preset ``arch`` and load an official checkpoint into it (eval mode, CPU).

    Args:
        path: ``{'model': ...}`` state dict, full official training checkpoint, or a raw
            (``module.``-prefixed) SSAST/SSAMBA state dict.
        arch: preset name, e.g. "axlstm_tiny", "ssast_base", "ssast_orig_tiny_patch" or
            "ssamba_tiny".
        **overrides: config changes, e.g. ``embed_dim=64, depth=2`` for a custom size or
            ``frame_layout="official"`` to reproduce the official frame order. For SSAST and
            SSAMBA, what the checkpoint states by itself (pretraining length from
            ``p_input_*``, classifier size, RMSNorm, missing pretraining heads) is taken from it
            unless given; a fine-tuned checkpoint needs its ``patch_stride`` (and ``img_size``).

    Raises:
        FileNotFoundError: the file does not exist.
        CheckpointError: the file cannot be read (see :func:`read_checkpoint`), holds
            non-finite weights, or does not fit the preset (what differs, and what would fit).
    """
    source = str(path)
    state = extract_state_dict(read_checkpoint(path), source=source)
    check_finite(state, source)
    if not is_model(arch):
        create_model(arch)  # raises the registry's error, with the list of presets
    with torch.device("meta"):  # cheap probe of the family, no weights allocated
        family = model_class_name(create_model(arch, **overrides))
    entry = REMAPS[family]
    if not entry.detect(state):
        fits = [f"'{name}'" for name, e in REMAPS.items() if e.detect(state)]
        raise CheckpointError(
            f"{source} is not {entry.description}; arch {arch!r} is a {family!r} model "
            f"(the file fits the {' / '.join(fits) or 'no known'} model classes)"
        )
    try:
        stated = {k: v for k, v in entry.overrides(state).items() if overrides.get(k) is None}
    except (RuntimeError, ValueError, TypeError) as err:  # e.g. a geometry tensor of 2 values
        raise CheckpointError(f"{source}: malformed {entry.description} ({err})") from err
    config = {**overrides, **stated}
    try:
        with torch.device("meta"):  # what the file states is checked before any allocation
            skeleton = create_model(arch, **config)
    except ConfigError as err:
        if not stated:
            raise
        raise CheckpointError(
            f"{source}: the geometry it states ({stated}) is invalid: {err}"
        ) from err
    entry.remap(state, skeleton, source=source)
    model = create_model(arch, **config)
    model.load_state_dict(entry.remap(state, model, source=source))
    model.config.extra["source"] = {"official_checkpoint": Path(path).name}
    logger.info("loaded official checkpoint %s into %s", path, arch)
    return model.eval()
