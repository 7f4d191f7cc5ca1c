"""Classifier release folders: a fine-tuned :class:`~axlstm.models.AudioClassifier` with its
label vocabulary, written so that its encoder stays an ordinary release.

Layout (every file written atomically; ``labels.json`` last, so a folder is a classifier only
once it is complete)::

    CLASSIFIER/
      config.json          the encoder's release config  } axlstm.load_model(CLASSIFIER) loads
      model.safetensors    the encoder's weights          } the encoder alone, as any release
      head.safetensors     mlp_head.0.{weight,bias} (LayerNorm), mlp_head.1.{weight,bias} (Linear)
      classifier.json      format, classifier class, pooling, num_classes, head width and eps,
                           clip_seconds, window_frames, hop_frames, aggregation, provenance
      labels.json          {"labels": [...class order...], "multilabel": false}

``window_frames`` is the input length the model was trained on: the fixed input length of a
front end that has one (the original SSAST and SSAMBA pad or crop every clip to it), else
the frames of ``clip_seconds`` of audio as training crops are cut
(``front_end.num_frames(round(clip_seconds * rate))``: 201 for 2 s of log-mel), or null when no
clip length is known (every clip in one pass). ``hop_frames`` is half of it.
Prediction: :mod:`axlstm.finetune.predict`.

Loading checks everything as releases are checked: the encoder through
:func:`axlstm.checkpoint.load_model` (its config against the safetensors header before any
allocation, finite weights); the JSON files (regular files, UTF-8, objects, no duplicate keys,
typed fields); the head's shapes from its safetensors header against the encoder's width and the
number of labels before it is read; finite head weights. Every problem is a
:class:`~axlstm.core.errors.CheckpointError` naming the file.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from axlstm._version import __version__
from axlstm.checkpoint import check_finite, load_model, nonfinite_tensors, shape_differences
from axlstm.checkpoint.hub import RELEASE_FILES, is_hub_name, load_from_hub
from axlstm.core.errors import CheckpointError
from axlstm.core.fileio import atomic_write, atomic_write_text, check_input_file
from axlstm.core.release_format import check_release_file, read_release_config, unique_keys
from axlstm.finetune.predict import AGGREGATION, Classifier
from axlstm.models import POOLINGS, AudioClassifier, ClassifierHead, SSASTClassifier
from axlstm.models.card import write_card_quietly

__all__ = [
    "CLASSIFIER_FORMAT",
    "CLASSIFIER_NAME",
    "CLASSIFIER_VERSION",
    "HEAD_NAME",
    "LABELS_NAME",
    "is_classifier",
    "load_classifier",
    "save_classifier",
]

logger = logging.getLogger(__name__)

CLASSIFIER_FORMAT = "axlstm-classifier"
CLASSIFIER_VERSION = 1
CLASSIFIER_NAME = "classifier.json"
LABELS_NAME = "labels.json"
HEAD_NAME = "head.safetensors"
#: JSON files of a classifier are small; anything past this is not one.
MAX_JSON_BYTES = 16 * 2**20
#: Classifier classes a release may name (the most specific known base is recorded).
CLASSIFIER_CLASSES: dict[str, type[AudioClassifier]] = {
    "SSASTClassifier": SSASTClassifier,
    "AudioClassifier": AudioClassifier,
}


# ------------------------------------------------------------------------------------ saving
def _check_labels(labels: Any, num_classes: int) -> list[str]:
    if isinstance(labels, str) or not isinstance(labels, (list, tuple)):
        raise ValueError(f"labels must be a list of strings, got {type(labels).__name__}")
    for i, label in enumerate(labels):
        if not isinstance(label, str) or not label.strip():
            raise ValueError(f"label {i} must be a non-empty string, got {label!r}")
    seen: set[str] = set()
    for label in labels:
        if label in seen:
            raise ValueError(f"label {label!r} appears twice")
        seen.add(label)
    if len(labels) != num_classes:
        raise ValueError(f"{len(labels)} labels for a head of {num_classes} classes")
    return list(labels)


def _window(classifier: AudioClassifier, clip_seconds: float | None) -> tuple[Any, Any, Any]:
    """(clip_seconds, window_frames, hop_frames) as recorded (see the module doc)."""
    fe = classifier.front_end_config
    frames_per_second = fe.sample_rate / fe.hop_samples
    if clip_seconds is not None:
        if isinstance(clip_seconds, bool) or not isinstance(clip_seconds, (int, float)):
            raise ValueError(f"clip_seconds must be a number or None, got {clip_seconds!r}")
        if not (math.isfinite(clip_seconds) and clip_seconds > 0):
            raise ValueError(f"clip_seconds must be positive and finite, got {clip_seconds}")
        clip_seconds = float(clip_seconds)
    if fe.fixed_length is not None:
        window = int(fe.fixed_length)
        if clip_seconds is None:
            clip_seconds = window / frames_per_second
    elif clip_seconds is not None:  # as training crops are cut
        window = max(1, fe.num_frames(round(clip_seconds * fe.sample_rate)))
    else:
        return None, None, None
    return clip_seconds, window, max(1, window // 2)


def _classifier_class(classifier: AudioClassifier) -> str:
    for cls in type(classifier).__mro__:
        if cls.__name__ in CLASSIFIER_CLASSES and cls is CLASSIFIER_CLASSES[cls.__name__]:
            return cls.__name__
    raise TypeError(f"expected an AudioClassifier, got {type(classifier).__name__}")


def save_classifier(
    classifier: AudioClassifier,
    directory: str | os.PathLike[str],
    *,
    labels: list[str],
    multilabel: bool,
    clip_seconds: float | None,
    provenance: dict[str, Any] | None = None,
) -> Path:
    """Write a classifier release folder (layout in the module doc) and return its path.

    Args:
        classifier: the fine-tuned model (an :class:`~axlstm.models.AudioClassifier` with a
            :class:`~axlstm.models.ClassifierHead`).
        directory: the folder (created; files of an earlier release there are replaced).
        labels: the vocabulary in class order: unique non-empty strings, one per class.
        multilabel: True for independent sigmoid scores, False for a softmax.
        clip_seconds: the clip length it was fine-tuned at; None when unknown (the fixed input
            length of an SSAST/SSAMBA front end is used then).
        provenance: JSON-serialisable facts about the run (data, recipe, epochs, metrics).

    Raises:
        ValueError: bad labels, clip length or provenance, or non-finite weights.
        TypeError: not an AudioClassifier with a ClassifierHead.
    """
    name = _classifier_class(classifier)
    head = classifier.mlp_head
    if not isinstance(head, ClassifierHead):
        raise TypeError(f"expected a ClassifierHead as mlp_head, got {type(head).__name__}")
    labels = _check_labels(labels, classifier.num_classes)
    if not isinstance(multilabel, bool):
        raise ValueError(f"multilabel must be True or False, got {multilabel!r}")
    clip_seconds, window, hop = _window(classifier, clip_seconds)
    provenance = dict(provenance or {})
    try:
        json.dumps(provenance, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ValueError(f"provenance must be JSON-serialisable: {err}") from None
    state = {
        f"mlp_head.{k}": v.detach().to("cpu").contiguous() for k, v in head.state_dict().items()
    }
    bad = nonfinite_tensors({**state, **classifier.encoder.state_dict()})
    if bad:
        raise ValueError(f"refusing to save non-finite weights (NaN or inf) in {bad[:5]}")
    config = {
        "format": CLASSIFIER_FORMAT,
        "format_version": CLASSIFIER_VERSION,
        "axlstm_version": __version__,
        "classifier_class": name,
        "pool": classifier.pool,
        "num_classes": classifier.num_classes,
        "head": {"dim": head.dim, "eps": float(head[0].eps)},
        "clip_seconds": clip_seconds,
        "window_frames": window,
        "hop_frames": hop,
        "aggregation": AGGREGATION,
        "provenance": provenance,
    }
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stale = directory / LABELS_NAME
    if os.path.lexists(stale):
        stale.unlink()  # the folder is no classifier until the new one is complete
    classifier.encoder.save_pretrained(directory, **{str(k): v for k, v in provenance.items()})
    atomic_write(directory / HEAD_NAME, lambda p: save_file(state, p, metadata={"format": "pt"}))
    atomic_write_text(directory / CLASSIFIER_NAME, json.dumps(config, indent=2) + "\n")
    text = json.dumps({"labels": labels, "multilabel": multilabel}, indent=2, ensure_ascii=False)
    atomic_write_text(directory / LABELS_NAME, text + "\n")
    card = {**config, "labels": labels, "multilabel": multilabel}
    write_card_quietly(directory, classifier.encoder, classifier=card)
    logger.info("saved classifier release %s (%d classes)", directory, len(labels))
    return directory


# ----------------------------------------------------------------------------------- loading
def is_classifier(directory: str | os.PathLike[str]) -> bool:
    """Whether ``directory`` looks like a classifier release (it has a ``labels.json``)."""
    return os.path.lexists(Path(directory) / LABELS_NAME)


def _read_json(path: Path, what: str) -> dict[str, Any]:
    """A small UTF-8 JSON object file, checked before it is read."""
    st = check_release_file(path, what, "classifier release")
    if st.st_size > MAX_JSON_BYTES:
        raise CheckpointError(f"{path}: {st.st_size:,} bytes is far too large for a {what}")
    try:
        data = json.loads(path.read_bytes().decode("utf-8"), object_pairs_hook=unique_keys)
    except UnicodeDecodeError as err:
        raise CheckpointError(
            f"{path}: not UTF-8 text ({err.reason} at byte {err.start})"
        ) from None
    except RecursionError:
        raise CheckpointError(f"{path}: invalid JSON (nested too deeply)") from None
    except ValueError as err:  # JSONDecodeError, duplicate keys
        raise CheckpointError(f"{path}: invalid JSON ({err})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: not a {what} (a JSON {type(data).__name__}, not an object)")
    return data


def _read_labels(path: Path) -> tuple[list[str], bool]:
    data = _read_json(path, "label vocabulary")
    labels, multilabel = data.get("labels"), data.get("multilabel")
    if not isinstance(labels, list) or not labels:
        raise CheckpointError(f"{path}: 'labels' must be a non-empty list of label strings")
    if not isinstance(multilabel, bool):
        raise CheckpointError(f"{path}: 'multilabel' must be true or false, got {multilabel!r}")
    seen: set[str] = set()
    for i, label in enumerate(labels):
        if not isinstance(label, str) or not label.strip():
            raise CheckpointError(f"{path}: label {i} must be a non-empty string, got {label!r}")
        if label in seen:
            raise CheckpointError(f"{path}: label {label!r} appears twice")
        seen.add(label)
    return labels, multilabel


def _positive_int(config: dict[str, Any], key: str, path: Path, optional: bool) -> int | None:
    value = config.get(key)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CheckpointError(f"{path}: {key!r} must be a positive integer, got {value!r}")
    return value


def _read_config(path: Path) -> dict[str, Any]:
    config = _read_json(path, "classifier config")
    if config.get("format") != CLASSIFIER_FORMAT:
        raise CheckpointError(
            f"{path}: not an axlstm classifier config (format {config.get('format')!r})"
        )
    version = config.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise CheckpointError(f"{path}: format_version {version!r} is not an integer")
    if version > CLASSIFIER_VERSION:
        raise CheckpointError(
            f"{path}: classifier format version {version} is newer than this axlstm "
            f"understands ({CLASSIFIER_VERSION}); upgrade axlstm"
        )
    if config.get("classifier_class") not in CLASSIFIER_CLASSES:
        raise CheckpointError(
            f"{path}: unknown classifier_class {config.get('classifier_class')!r}; this axlstm "
            f"knows {sorted(CLASSIFIER_CLASSES)}"
        )
    if config.get("pool") not in POOLINGS:
        raise CheckpointError(
            f"{path}: 'pool' must be one of {POOLINGS}, got {config.get('pool')!r}"
        )
    if config.get("aggregation") != AGGREGATION:
        raise CheckpointError(
            f"{path}: unknown aggregation {config.get('aggregation')!r} (this axlstm knows "
            f"{AGGREGATION!r})"
        )
    _positive_int(config, "num_classes", path, optional=False)
    window = _positive_int(config, "window_frames", path, optional=True)
    hop = _positive_int(config, "hop_frames", path, optional=window is None)
    if window is not None and hop > window:  # type: ignore[operator]
        raise CheckpointError(f"{path}: hop_frames {hop} exceeds window_frames {window}")
    clip = config.get("clip_seconds")
    if clip is not None and (
        isinstance(clip, bool)
        or not isinstance(clip, (int, float))
        or not (math.isfinite(clip) and clip > 0)
    ):
        raise CheckpointError(f"{path}: 'clip_seconds' must be a positive number or null")
    head = config.get("head")
    if not isinstance(head, dict):
        raise CheckpointError(f"{path}: 'head' must be a JSON object with 'dim' and 'eps'")
    _positive_int(head, "dim", path, optional=False)
    eps = head.get("eps")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps < 1:
        raise CheckpointError(f"{path}: the head's LayerNorm 'eps' must lie in (0, 1), got {eps!r}")
    if not isinstance(config.get("provenance", {}), dict):
        raise CheckpointError(f"{path}: 'provenance' must be a JSON object")
    return config


def _head_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    st = check_input_file(path, "classifier head", error=CheckpointError)
    if st.st_size == 0:
        raise CheckpointError(f"cannot read classifier head {path}: file is empty (0 bytes)")
    try:
        with safe_open(str(path), framework="pt") as f:
            names = f.keys()
            return {k: tuple(int(n) for n in f.get_slice(k).get_shape()) for k in names}
    except Exception as err:
        raise CheckpointError(f"{path}: not a readable safetensors file ({err})") from err


def _head_expected(dim: int, num_classes: int) -> dict[str, tuple[int, ...]]:
    return {
        "mlp_head.0.weight": (dim,),
        "mlp_head.0.bias": (dim,),
        "mlp_head.1.weight": (num_classes, dim),
        "mlp_head.1.bias": (num_classes,),
    }


def load_classifier(
    directory: str | os.PathLike[str], device: str | torch.device | None = None
) -> Classifier:
    """Load a classifier release written by :func:`save_classifier`.

    Args:
        directory: the release folder, or ``"hf-hub:ORG/NAME[@REVISION]"`` (through the
            Hub's cache, with the same checks; see :mod:`axlstm.checkpoint.hub`).
        device: where the model runs (default CPU).

    Returns:
        A :class:`~axlstm.finetune.predict.Classifier` in eval mode: ``.model`` (the
        AudioClassifier), ``.labels``, ``.multilabel``, ``.clip_seconds`` and
        ``.predict(files_or_waves, top_k=5, timeline=False)``.

    Raises:
        FileNotFoundError: the folder does not exist.
        CheckpointError: naming the file and the problem: not a release, an encoder release
            without labels ("not a classifier"), bad JSON, labels that do not match the head,
            head shapes that do not fit, non-finite weights.
    """
    if is_hub_name(directory):
        files = (*RELEASE_FILES, HEAD_NAME, CLASSIFIER_NAME, LABELS_NAME)
        return load_from_hub(directory, lambda d: load_classifier(d, device), files=files)
    directory = Path(directory)
    device = torch.device("cpu" if device is None else device)
    read_release_config(directory)  # a release folder at all (named errors otherwise)
    labels_path = directory / LABELS_NAME
    if not os.path.lexists(labels_path):
        raise CheckpointError(
            f"{directory} is not a classifier: no {LABELS_NAME}; fine-tune it first with "
            "axlstm finetune (an encoder release loads with axlstm.load_model)"
        )
    cfg_path, head_path = directory / CLASSIFIER_NAME, directory / HEAD_NAME
    config = _read_config(cfg_path)
    labels, multilabel = _read_labels(labels_path)
    num_classes = config["num_classes"]
    if len(labels) != num_classes:
        raise CheckpointError(
            f"{labels_path} lists {len(labels)} labels but the classifier has {num_classes} "
            f"classes ({cfg_path})"
        )
    shapes = _head_shapes(head_path)
    dim = config["head"]["dim"]
    parts = shape_differences(shapes, _head_expected(dim, num_classes))
    if parts:
        raise CheckpointError(f"{head_path} does not fit {cfg_path}: " + "; ".join(parts))
    encoder = load_model(directory, map_location=device)
    if encoder.embed_dim != dim:
        raise CheckpointError(
            f"{head_path}: the head is {dim} wide, the encoder of {directory} gives "
            f"{encoder.embed_dim}"
        )
    try:
        state = load_file(str(head_path), device=str(device))
    except Exception as err:
        raise CheckpointError(f"{head_path}: not a readable safetensors file ({err})") from err
    check_finite(state, head_path)
    head = ClassifierHead(dim, num_classes, eps=float(config["head"]["eps"]))
    head.load_state_dict({k.removeprefix("mlp_head."): v for k, v in state.items()})
    cls = CLASSIFIER_CLASSES[config["classifier_class"]]
    try:
        model = cls(encoder, num_classes, config["pool"], head=head.to(device))
    except ValueError as err:  # e.g. pool "cls" for an encoder without a cls token
        raise CheckpointError(f"{cfg_path}: {err}") from err
    window = config.get("window_frames")
    fixed = model.front_end_config.fixed_length
    if fixed is not None and window != fixed:
        raise CheckpointError(
            f"{cfg_path}: window_frames {window} differs from the encoder's fixed input length "
            f"{fixed}"
        )
    logger.info("loaded classifier %s (%d classes)", directory, num_classes)
    return Classifier(
        model.to(device).eval(),
        labels,
        multilabel=multilabel,
        clip_seconds=config.get("clip_seconds"),
        window_frames=window,
        hop_frames=config.get("hop_frames"),
        config=config,
    )
