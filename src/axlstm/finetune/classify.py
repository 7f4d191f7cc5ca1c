"""Building the classifier that is fine-tuned, and how its weights train.

- :func:`build_classifier`: an encoder (release, preset or official checkpoint) plus a head.
  The original SSAST and SSAMBA go through their official fine-tuning constructor
  (:class:`axlstm.models.SSASTClassifier`: overlapping patches, resized position grid) sized
  for the clip length; every other family (AxLSTM, the SSAST-wrapper transformer) through
  :class:`axlstm.models.AudioClassifier`, whose encoder takes any length.
- :func:`set_trainable`: which weights train in each mode ("full", "last_k", "frozen");
  weights that take no part in classification (masked-prediction heads, mask tokens) never
  do, found by one forward/backward pass rather than by name.
- :func:`param_groups`: optimiser groups with weight decay on matrices only, the head's
  learning-rate multiplier and layer-wise decay, as ``lr_scale`` factors the engine's
  schedules apply.
"""

from __future__ import annotations

import logging
import re

import torch
from torch import nn

from axlstm.core.errors import ConfigError
from axlstm.models import AudioClassifier
from axlstm.models.ssast_finetune import SSASTClassifier
from axlstm.models.ssast_framework import SSASTFramework

__all__ = ["block_index", "build_classifier", "param_groups", "set_trainable"]

logger = logging.getLogger(__name__)

_BLOCK = re.compile(r"^encoder\.(?:[\w.]*\.)?(?:blocks|layers)\.(\d+)\.")


def build_classifier(
    model_cfg, encoder: nn.Module, num_classes: int, clip_frames: int
) -> AudioClassifier:
    """The classifier of a run's ``model`` section on ``encoder`` (resolved from
    ``model_cfg.source``) for ``num_classes`` classes, sized for crops of ``clip_frames``
    feature frames."""
    if isinstance(encoder, SSASTFramework):
        clf: AudioClassifier = SSASTClassifier.from_pretrained(
            encoder,
            num_classes,
            fstride=model_cfg.fstride,
            tstride=model_cfg.tstride,
            input_tdim=clip_frames,
            pool=model_cfg.pool,
        )
    else:
        clf = AudioClassifier(encoder, num_classes, pool=model_cfg.pool)
    return clf.train()


def block_index(name: str, num_layers: int, blocks_per_layer: int = 1) -> int:
    """Depth of a classifier parameter for layer-wise decay: 0 for the embeddings (patch
    projection, positions, cls tokens), ``i + 1`` for layer ``i`` (blocks
    ``i * blocks_per_layer`` ... of it: SSAMBA's layer is a pair of Vim blocks),
    ``num_layers + 1`` for the final norm and the head."""
    if name.startswith("mlp_head."):
        return num_layers + 1
    m = _BLOCK.match(name)
    if m:
        return int(m.group(1)) // blocks_per_layer + 1
    if re.search(r"(patch_embed|pos_embed|cls_token|dist_token)", name):
        return 0
    return num_layers + 1  # final norms


def _layers(model: AudioClassifier) -> tuple[int, int]:
    """(layers, blocks per layer) of the classifier's encoder."""
    encoder = model.encoder
    return int(encoder.num_layers), int(getattr(encoder, "blocks_per_layer", 1))


def _used_parameters(model: AudioClassifier, example: torch.Tensor) -> set[str]:
    """Names of the parameters that receive a gradient from the logits."""
    for p in model.parameters():
        p.grad = None
    was_training = model.training
    model.eval()  # no dropout or drop path: any path taken is found
    model(example).sum().backward()
    model.train(was_training)
    used = {n for n, p in model.named_parameters() if p.grad is not None}
    for p in model.parameters():
        p.grad = None
    return used


def set_trainable(
    model: AudioClassifier, mode: str, last_k: int, example: torch.Tensor
) -> dict[str, int]:
    """Freeze what ``mode`` keeps fixed; returns the parameter counts (trainable, frozen).

    Args:
        model: the classifier.
        mode: "full", "last_k" or "frozen" (see :class:`FinetuneModelConfig`).
        last_k: blocks trained in "last_k" mode.
        example: one ``(1, 1, T, F)`` input, for finding the weights classification uses.
    """
    if mode not in ("full", "last_k", "frozen"):
        raise ConfigError(f"unknown model.mode {mode!r}; use full, last_k or frozen")
    num_layers, per = _layers(model)
    if mode == "last_k" and last_k > num_layers:
        raise ConfigError(f"model.last_k={last_k} but the encoder has {num_layers} layers")
    for p in model.parameters():
        p.requires_grad_(True)
    used = _used_parameters(model, example)
    first_trained = {"full": 0, "last_k": num_layers - last_k + 1, "frozen": num_layers + 1}[mode]
    counts = {"trainable": 0, "frozen": 0, "unused": 0}
    for name, p in model.named_parameters():
        if name not in used:
            p.requires_grad_(False)
            counts["unused"] += p.numel()
            continue
        train = block_index(name, num_layers, per) >= first_trained
        if mode == "frozen":
            train = name.startswith("mlp_head.")
        p.requires_grad_(train)
        counts["trainable" if train else "frozen"] += p.numel()
    logger.info(
        "fine-tuning mode %s: %d trainable, %d frozen, %d unused parameters",
        mode,
        counts["trainable"],
        counts["frozen"],
        counts["unused"],
    )
    return counts


def param_groups(
    model: AudioClassifier,
    weight_decay: float,
    head_lr_mult: float,
    layer_decay: float,
    decay_all: bool = False,
) -> list[dict]:
    """Optimiser groups of the trainable parameters: one per (depth, decay) pair, with
    ``lr_scale = layer_decay ** (L + 1 - depth)`` (times ``head_lr_mult`` for the head) and
    weight decay on matrices only (not on biases, norms and 1-d tensors), or on every
    parameter with ``decay_all`` (the SSAST/SSAMBA optimisers)."""
    num_layers, per = _layers(model)
    groups: dict[tuple[int, bool, bool], dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        depth = block_index(name, num_layers, per)
        head = name.startswith("mlp_head.")
        decay = decay_all or (p.ndim > 1 and not name.endswith(".bias"))
        key = (depth, head, decay)
        if key not in groups:
            scale = layer_decay ** (num_layers + 1 - depth) * (head_lr_mult if head else 1.0)
            groups[key] = {
                "params": [],
                "weight_decay": weight_decay if decay else 0.0,
                "lr_scale": scale,
            }
        groups[key]["params"].append(p)
    if not groups:
        raise ConfigError("nothing to train: every parameter is frozen")
    return [groups[k] for k in sorted(groups)]
