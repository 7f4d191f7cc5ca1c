"""Official state dicts onto our models' keys, for every family, with one complete check.

Each family has a :class:`OfficialRemap`, looked up by the model's ``release_class``:

- ``overrides(state)``: config values the official state dict states by itself (pretraining
  geometry, classifier size, RMSNorm, missing pretraining heads);
- ``remap(state, model, source)``: the pure key map onto ``model``, then :func:`check_state`;
- ``detect(state)``: whether a state dict looks like this family's.

The masked spectrogram model keeps the official attribute names, so its map is the identity
(after a family/width/depth check); the original SSAST drops ``v.`` and renames timm's block
names and the MPC/MPG heads; SSAMBA keeps Vim's names and drops ``v.``. The frozen geometry
tensors of SSAST/SSAMBA files (``p_input_fdim``/``p_input_tdim``) are checked against the
config and dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import torch
from torch import nn

from axlstm.core.errors import CheckpointError

__all__ = ["REMAPS", "OfficialRemap", "check_state", "infer_architecture", "shape_differences"]


# ----------------------------------------------------------------------------- the check
def shape_differences(
    found: Mapping[str, Sequence[int]], expected: Mapping[str, Sequence[int]], limit: int = 8
) -> list[str]:
    """What differs between the tensor shapes of a file (``found``) and of a model
    (``expected``): missing and unexpected keys, then shape mismatches (the first ``limit``
    of each, sorted); empty when they agree."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong = sorted(k for k in set(expected) & set(found) if tuple(expected[k]) != tuple(found[k]))
    parts = []
    if missing:
        parts.append(f"missing {missing[:limit]}" + (" ..." if len(missing) > limit else ""))
    if unexpected:
        more = " ..." if len(unexpected) > limit else ""
        parts.append(f"unexpected {unexpected[:limit]}{more}")
    if wrong:
        parts.append(
            "shape mismatch "
            + ", ".join(
                f"{k}: {tuple(found[k])} in the file vs {tuple(expected[k])} in the model"
                for k in wrong[:limit]
            )
        )
    return parts


def check_state(
    mapped: dict[str, torch.Tensor],
    model: nn.Module,
    source: str,
    hints: Sequence[str] = (),
) -> dict[str, torch.Tensor]:
    """Every key of ``model`` present in ``mapped`` and every shape equal, else a
    :class:`CheckpointError` naming ``source`` and saying what differs (with ``hints``: config
    values that would fit). Returns the state in the model's dtypes."""
    ours = model.state_dict()
    parts = shape_differences(
        {k: v.shape for k, v in mapped.items()}, {k: v.shape for k, v in ours.items()}
    )
    if parts:
        hint = f" (try {', '.join(hints)})" if hints else ""
        raise CheckpointError(
            f"{source} does not fit model {model.config.name!r}: " + "; ".join(parts) + hint
        )
    return {k: mapped[k].to(ours[k].dtype) for k in ours}


# ------------------------------------------------------------------- masked spectrogram model
def infer_architecture(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Family, width and depth that an official AxLSTM/SSAST-wrapper state dict was trained
    with."""
    depth = 1 + max((int(k.split(".")[1]) for k in state if k.startswith("blocks.")), default=-1)
    family = "axlstm" if any(".layer.mlstm_cell." in k for k in state) else "ssast"
    out: dict[str, Any] = {"family": family, "depth": depth}
    if "cls_token" in state:
        out["embed_dim"] = int(state["cls_token"].shape[-1])
    return out


def remap_masked_spec(
    state: dict[str, torch.Tensor], model: nn.Module, source: str = "checkpoint"
) -> dict[str, torch.Tensor]:
    """Official AxLSTM/SSAST-wrapper keys onto a :class:`~axlstm.models.MaskedSpecModel`: the
    identity, after checking family, width and depth (with a hint that fits)."""
    found = infer_architecture(state)
    cfg = model.config
    want = {"family": cfg.family, "depth": cfg.depth, "embed_dim": cfg.embed_dim}
    diff = {k: (found[k], want[k]) for k in want if k in found and found[k] != want[k]}
    if diff:
        hint = ", ".join(f"{k}={v[0]!r}" for k, v in diff.items())
        raise CheckpointError(
            f"{source} does not fit model {cfg.name!r}: "
            + "; ".join(
                f"{k} is {a!r} in the checkpoint, {b!r} in the model" for k, (a, b) in diff.items()
            )
            + f" (pass {hint})"
        )
    return check_state(state, model, source)


def _looks_like_ssast_family(state: dict[str, torch.Tensor]) -> bool:
    return any(k.startswith(("v.blocks.", "v.layers.")) for k in state) or "p_input_tdim" in state


# ----------------------------------------------------------------------- SSAST / SSAMBA
def ssast_overrides(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Config values an official SSAST/SSAMBA state dict (prefix stripped) states by itself."""
    out: dict[str, Any] = {}
    if "p_input_fdim" in state and "p_input_tdim" in state:
        out["img_size"] = (int(state["p_input_tdim"]), int(state["p_input_fdim"]))
    if "mlp_head.1.weight" in state:
        out["num_classes"] = int(state["mlp_head.1.weight"].shape[0])
    if "cpredlayer.0.weight" not in state:
        out["ssl_heads"] = False
    return out


def ssamba_overrides(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    out = ssast_overrides(state)
    if "v.layers.0.norm.weight" in state and "v.layers.0.norm.bias" not in state:
        out["norm"] = "rms"  # trained (or built, as the SUPERB expert) with RMSNorm
    return out


def _framework_key(key: str, keep_unused_heads: bool) -> str | None:
    """Our name of an official SSAST-framework key (prefix stripped); None drops it."""
    if key in ("p_input_fdim", "p_input_tdim"):
        return None
    if key.startswith(("v.head.", "v.head_dist.")) and not keep_unused_heads:
        return None
    key = key.replace("cpredlayer.", "mpc_head.").replace("gpredlayer.", "mpg_head.")
    return key[2:] if key.startswith("v.") else key


#: timm 0.4.5 block names of the official SSAST -> ours
_DEIT_BLOCK_NAMES = (
    (".attn.qkv.", ".attn.qkv_layer."),
    (".attn.proj.", ".attn.proj_layer."),
    (".mlp.fc1.", ".mlp.layer1."),
    (".mlp.fc2.", ".mlp.layer2."),
)


def _ssast_key(key: str, keep_unused_heads: bool) -> str | None:
    ours = _framework_key(key, keep_unused_heads)
    if ours is not None and ours.startswith("blocks."):
        for official, mine in _DEIT_BLOCK_NAMES:
            ours = ours.replace(official, mine)
    return ours


def _framework_hints(mapped: dict[str, torch.Tensor], model: nn.Module) -> list[str]:
    """Config values that would make ``mapped`` fit (width, patch, depth, geometry)."""
    cfg = model.config
    hints = []
    if "cls_token" in mapped and mapped["cls_token"].shape[-1] != cfg.embed_dim:
        hints.append(f"embed_dim={mapped['cls_token'].shape[-1]}")
    if "patch_embed.proj.weight" in mapped:
        pf, pt = mapped["patch_embed.proj.weight"].shape[-2:]
        if (pt, pf) != tuple(cfg.patch_size):
            hints.append(f"patch_size={(pt, pf)}")
    blocks = {int(k.split(".")[1]) for k in mapped if k.startswith(("blocks.", "layers."))}
    if blocks and max(blocks) + 1 != cfg.depth:
        hints.append(f"depth={max(blocks) + 1}")
    ours = model.state_dict()
    pos = mapped.get("pos_embed")
    if pos is not None and "pos_embed" in ours and pos.shape[1] != ours["pos_embed"].shape[1]:
        rows = pos.shape[1] - cfg.num_cls_tokens
        hints.append(
            f"img_size/patch_stride giving {rows} patches (the model has {cfg.num_patches})"
        )
    return hints


def _remap_framework(key_map: Callable[[str, bool], str | None]):
    def remap(
        state: dict[str, torch.Tensor], model: nn.Module, source: str = "checkpoint"
    ) -> dict[str, torch.Tensor]:
        cfg = model.config
        if "p_input_tdim" in state:
            stored = (int(state["p_input_tdim"]), int(state["p_input_fdim"]))
            if stored != tuple(cfg.img_size):
                raise CheckpointError(
                    f"{source} was pretrained on {stored[0]} frames x {stored[1]} bins, the model "
                    f"is configured for {cfg.img_size} (pass img_size={stored})"
                )
        mapped = {}
        for key, value in state.items():
            ours = key_map(key, cfg.keep_unused_heads)
            if ours is not None:
                mapped[ours] = value
        return check_state(mapped, model, source, _framework_hints(mapped, model))

    return remap


#: An official SSAST state dict (``module.`` stripped) onto an
#: :class:`~axlstm.models.SSASTOriginal`: ``v.`` dropped, timm block names renamed,
#: ``cpredlayer``/``gpredlayer`` -> ``mpc_head``/``mpg_head``, the frozen geometry scalars
#: checked and dropped, the unused DeiT heads dropped unless kept.
remap_ssast_original = _remap_framework(_ssast_key)
#: An official SSAMBA state dict onto an :class:`~axlstm.models.SSAMBA`: Vim's layer and mixer
#: names kept, ``v.`` dropped, the rest as for SSAST.
remap_ssamba = _remap_framework(_framework_key)


# ------------------------------------------------------------------------------ the table
class OfficialRemap(NamedTuple):
    """How official checkpoints of one family load (see the module doc)."""

    overrides: Callable[[dict[str, torch.Tensor]], dict[str, Any]]
    remap: Callable[..., dict[str, torch.Tensor]]
    detect: Callable[[dict[str, torch.Tensor]], bool]
    description: str


#: release class -> how its official checkpoints load
REMAPS: dict[str, OfficialRemap] = {
    "masked_spec": OfficialRemap(
        lambda state: {},
        remap_masked_spec,
        lambda state: not _looks_like_ssast_family(state),
        "an AxLSTM / SSAST-wrapper checkpoint",
    ),
    "ssast_original": OfficialRemap(
        ssast_overrides,
        remap_ssast_original,
        _looks_like_ssast_family,
        "an original SSAST checkpoint",
    ),
    "ssamba": OfficialRemap(
        ssamba_overrides,
        remap_ssamba,
        _looks_like_ssast_family,
        "an SSAMBA checkpoint",
    ),
}
