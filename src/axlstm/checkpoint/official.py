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

from axlstm.models import MaskedSpecModel, create_model, is_model, model_class_name

logger = logging.getLogger(__name__)

# Official prefixes that wrappers add around the model's own keys.
_PREFIXES = ("module.", "model.", "encoder.")


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the requested architecture."""


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
        CheckpointError: the file is not a readable torch checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    allowed = _torch_allowed()
    stubs = []
    for name in sorted(_pickle_globals(path)):
        if name.startswith("torch.") or name in allowed:
            continue
        stub = type(f"Stub[{name}]", (PickledObject,), {"pickled_name": name})
        stubs.append((stub, name))
    if stubs:
        logger.info("%s: reading without executing %s", path, ", ".join(n for _, n in stubs))
    try:
        with torch.serialization.safe_globals(stubs):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"cannot read checkpoint {path}: {err}") from err


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


def infer_architecture(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Family, width and depth that an official state dict was trained with."""
    depth = 1 + max((int(k.split(".")[1]) for k in state if k.startswith("blocks.")), default=-1)
    family = "axlstm" if any(".layer.mlstm_cell." in k for k in state) else "ssast"
    out: dict[str, Any] = {"family": family, "depth": depth}
    if "cls_token" in state:
        out["embed_dim"] = int(state["cls_token"].shape[-1])
    return out


def remap_official_state_dict(
    state: dict[str, torch.Tensor], model: MaskedSpecModel, source: str = "checkpoint"
) -> dict[str, torch.Tensor]:
    """Map official keys onto ``model``'s and check every shape.

    Our modules keep the official attribute names, so the map is the identity; what this adds
    is a complete check with an error that says what does not fit.
    """
    ours = model.state_dict()
    found = infer_architecture(state)
    want = {"family": model.config.family, "depth": model.config.depth}
    want["embed_dim"] = model.config.embed_dim
    diff = {k: (found[k], want[k]) for k in want if k in found and found[k] != want[k]}
    if diff:
        hint = ", ".join(f"{k}={v[0]!r}" for k, v in diff.items())
        raise CheckpointError(
            f"{source} does not fit model {model.config.name!r}: "
            + "; ".join(
                f"{k} is {a!r} in the checkpoint, {b!r} in the model" for k, (a, b) in diff.items()
            )
            + f" (pass {hint})"
        )
    missing = sorted(set(ours) - set(state))
    unexpected = sorted(set(state) - set(ours))
    wrong = sorted(k for k in set(ours) & set(state) if ours[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {missing[:8]}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:8]}")
        if wrong:
            parts.append(
                "shape mismatch "
                + ", ".join(
                    f"{k}: {tuple(state[k].shape)} vs {tuple(ours[k].shape)}" for k in wrong[:8]
                )
            )
        raise CheckpointError(
            f"{source} does not fit model {model.config.name!r}: " + "; ".join(parts)
        )
    return {k: state[k].to(ours[k].dtype) for k in ours}


def remap_ssast_original_state_dict(
    state: dict[str, torch.Tensor], model, source: str = "checkpoint"
) -> dict[str, torch.Tensor]:
    """An official SSAST state dict (``module.`` stripped) onto an
    :class:`~axlstm.models.SSASTOriginal`: ``v.`` dropped, timm block names renamed,
    ``cpredlayer``/``gpredlayer`` -> ``mpc_head``/``mpg_head``, the frozen geometry scalars
    checked against the config and dropped, the unused DeiT heads dropped unless kept."""
    return model.remap_official(state, source)


def remap_ssamba_state_dict(
    state: dict[str, torch.Tensor], model, source: str = "checkpoint"
) -> dict[str, torch.Tensor]:
    """An official SSAMBA state dict (``module.`` stripped) onto an :class:`~axlstm.models.SSAMBA`:
    Vim's layer and mixer names are kept, ``v.`` is dropped, the rest as for SSAST."""
    return model.remap_official(state, source)


#: Per-family remap: release model class -> pure function (state, model, source) -> state.
REMAPS = {
    "masked_spec": remap_official_state_dict,
    "ssast_original": remap_ssast_original_state_dict,
    "ssamba": remap_ssamba_state_dict,
}


def _looks_like_ssast_family(state: dict[str, torch.Tensor]) -> bool:
    return any(k.startswith(("v.blocks.", "v.layers.")) for k in state) or "p_input_tdim" in state


def load_official(path: str | Path, arch: str, **overrides: Any):
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
    """
    source = str(path)
    state = extract_state_dict(read_checkpoint(path), source=source)
    if not is_model(arch):
        create_model(arch)  # raises the registry's error, with the list of presets
    with torch.device("meta"):  # cheap probe of the family, no weights allocated
        family = model_class_name(create_model(arch, **overrides))
    if family == "masked_spec":
        if _looks_like_ssast_family(state):
            raise CheckpointError(
                f"{source} is an original SSAST/SSAMBA checkpoint; load it with an "
                "'ssast_orig_*' or 'ssamba_*' arch"
            )
        model = create_model(arch, **overrides)
    else:
        from axlstm.models import MODEL_CLASSES

        stated = MODEL_CLASSES[family][0].official_overrides(state)
        stated = {k: v for k, v in stated.items() if overrides.get(k) is None}
        model = create_model(arch, **{**overrides, **stated})
    model.load_state_dict(REMAPS[family](state, model, source=source))
    model.config.extra["source"] = {"official_checkpoint": Path(path).name}
    logger.info("loaded official checkpoint %s into %s", path, arch)
    return model.eval()
