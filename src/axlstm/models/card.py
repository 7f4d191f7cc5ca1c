"""Model cards: the ``README.md`` of a release folder, in the form the Hugging Face Hub reads.

A card is a YAML metadata header (``library_name: axlstm``, ``license``, ``tags``,
``pipeline_tag``, ``datasets`` when known) and a body a person reads: the architecture and
preset, the parameter counts, the front end, where the weights come from (the release's
recorded provenance), evaluation results when ``axlstm evaluate``'s ``results.json`` is given,
how to load the model and embed a file, and its limits.

Everything in a card is read from the release itself (``config.json``) and from the model it
builds, so regenerating a card gives the same text. A generated card carries a marker line
(an HTML comment, invisible on the Hub) with the inputs that are not in the release: licence,
datasets, the evaluation results, the repository it was pushed to. Regenerating keeps them
unless new ones are given; a ``README.md`` without the marker was written by a person and is
never replaced unless asked (``force=True``).

:func:`write_card` is called by every release writer (``save_pretrained``, and through it
``axlstm export``, ``axlstm convert`` and classifier releases) through
:func:`write_card_quietly`: a card that cannot be written is a warning, never a lost release.
Rebuilding a card from a folder alone (``axlstm card``) is
:func:`axlstm.finetune.publish.write_model_card`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from axlstm._version import __version__
from axlstm.core.errors import InputError
from axlstm.core.fileio import atomic_write_text, check_input_file
from axlstm.core.release_format import read_release_config, unique_keys

__all__ = [
    "CARD_NAME",
    "card_state",
    "load_results",
    "render_card",
    "select_results",
    "write_card",
    "write_card_quietly",
]

logger = logging.getLogger(__name__)

CARD_NAME = "README.md"
#: the first word of the marker comment of a generated card
MARKER = "axlstm-model-card"
#: results.json of a large evaluation is a few MB at most
MAX_RESULTS_BYTES = 64 * 2**20
#: the log-mel baseline `axlstm evaluate` adds to every comparison
BASELINE_LABEL = "logmel"
#: placeholder repository in the usage section of a card not (yet) pushed
PLACEHOLDER_REPO = "ORG/NAME"
#: labels listed in a classifier's card before "and N more"
MAX_LABELS_SHOWN = 50

_MARKER_RE = re.compile(rf"^<!-- {MARKER} (\{{.*\}}) -->$", re.MULTILINE)

# family -> (name, block tag, what it is)
_FAMILIES: dict[str, tuple[str, str, str]] = {
    "axlstm": (
        "AxLSTM",
        "xlstm",
        "a masked spectrogram model whose encoder is a stack of xLSTM (mLSTM) blocks",
    ),
    "ssast": (
        "SSAST (masked spectrogram model)",
        "transformer",
        "a masked spectrogram model whose encoder is a stack of Transformer blocks "
        "(the AxLSTM paper's SSAST baseline: AxLSTM's patches, masking and objective)",
    ),
    "ssam": (
        "SSAM",
        "mamba",
        "a masked spectrogram model whose encoder is a stack of Mamba blocks",
    ),
    "ssast_orig": (
        "SSAST",
        "transformer",
        "the original Self-Supervised Audio Spectrogram Transformer (Gong et al., 2022): a ViT "
        "encoder pretrained by joint discriminative and generative masked patch modelling",
    ),
    "ssamba": (
        "SSAMBA",
        "mamba",
        "SSAMBA (Shams et al., 2024): bidirectional Mamba (Vim) blocks in the SSAST framework",
    ),
}

# provenance keys shown in their own sentences, not in the list of other facts
_SHOWN = {
    "source",
    "run_dir",
    "checkpoint",
    "checkpoint_sha256",
    "step",
    "samples_seen",
    "train_config",
    "official_checkpoint",
    "official_checkpoint_sha256",
    "converted_from_arch",
    "overrides",
    "license",
    "datasets",
    "dataset",
    "data",
    "weights",
}


# ------------------------------------------------------------------------------ card state
def _read_card(path: Path) -> str | None:
    """The card's text, or None when there is none (or it cannot be read as text)."""
    if not os.path.lexists(path):
        return None
    try:
        check_input_file(path, "model card")
        return path.read_text(encoding="utf-8")
    except (OSError, ValueError):
        return ""


def card_state(directory: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The inputs recorded in the generated card of ``directory`` (licence, datasets, results,
    repository); ``{}`` for a generated card without them; None when there is no card or it
    was written by a person (no marker line)."""
    text = _read_card(Path(directory) / CARD_NAME)
    if not text:
        return None
    match = _MARKER_RE.search(text)
    if match is None:
        return None
    try:
        state = json.loads(match.group(1))
    except ValueError:
        return {}
    return state if isinstance(state, dict) else {}


def _marker(state: Mapping[str, Any]) -> str:
    # '>' is escaped so that no string in the JSON can end the HTML comment
    text = json.dumps(dict(state), sort_keys=True, ensure_ascii=True).replace(">", "\\u003e")
    return f"<!-- {MARKER} {text} -->"


# -------------------------------------------------------------------------------- results
def _number_or_none(value: Any) -> bool:
    if value is None:
        return True
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def load_results(path: str | os.PathLike[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """The ``results.json`` of ``axlstm evaluate`` (``{model: {task: {"mean", "ci95",
    "scores", "metric"[, "error"]}}}``), checked.

    Raises:
        FileNotFoundError: no such file.
        InputError: not a readable JSON file of that shape; the message names the file and the
            first entry that does not fit.
    """
    path = Path(path)
    st = check_input_file(path, "evaluation results")
    if st.st_size > MAX_RESULTS_BYTES:
        raise InputError(f"{path}: {st.st_size:,} bytes is far too large for a results.json")
    try:
        data = json.loads(path.read_bytes().decode("utf-8"), object_pairs_hook=unique_keys)
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except RecursionError:
        raise InputError(f"{path}: invalid JSON (nested too deeply)") from None
    except ValueError as err:
        raise InputError(f"{path}: invalid JSON ({err})") from None
    what = "the results.json of axlstm evaluate ({model: {task: {mean, ci95, ...}}})"
    if not isinstance(data, dict) or not data:
        raise InputError(f"{path}: not {what}")
    for model, tasks in data.items():
        if not isinstance(tasks, dict):
            raise InputError(f"{path}: model {model!r}: not {what}")
        for task, entry in tasks.items():
            where = f"{path}: model {model!r}, task {task!r}"
            if not isinstance(entry, dict) or "mean" not in entry:
                raise InputError(f"{where}: an entry needs 'mean' and 'ci95' ({what})")
            if not (_number_or_none(entry.get("mean")) and _number_or_none(entry.get("ci95"))):
                raise InputError(f"{where}: 'mean' and 'ci95' must be finite numbers or null")
            if not isinstance(entry.get("scores", []), list):
                raise InputError(f"{where}: 'scores' must be a list of per-seed scores")
            if not isinstance(entry.get("metric", ""), str):
                raise InputError(f"{where}: 'metric' must be a string")
    return data


def _rows(tasks: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    rows = {}
    for task, entry in tasks.items():
        row: dict[str, Any] = {
            "metric": entry.get("metric"),
            "mean": entry.get("mean"),
            "ci95": entry.get("ci95"),
            "seeds": len(entry.get("scores") or []),
        }
        if entry.get("mean") is None:
            row["error"] = str(entry.get("error") or "no score")
        rows[str(task)] = row
    return rows


def select_results(
    results: Mapping[str, Mapping[str, Any]],
    *,
    label: str | None = None,
    candidates: Sequence[str] = (),
    source: str = "results.json",
) -> dict[str, Any]:
    """The rows of one model of a ``results.json`` for a card: ``{"label", "source", "tasks",
    "baseline"}`` (``baseline``: the log-mel reference's rows, when evaluated alongside).

    Args:
        results: from :func:`load_results`.
        label: the model's label in the file (``axlstm evaluate --model LABEL=...``).
        candidates: labels to try when ``label`` is None (the release folder's name, the
            repository's name); failing those, the only model other than the baseline.
        source: the file's name, for messages and the card.

    Raises:
        InputError: the label is not in the file, or the file holds several models and none
            is named; the message lists the labels.
    """
    models = [m for m in results if m != BASELINE_LABEL]
    if label is not None:
        if label not in results:
            raise InputError(
                f"{source}: no model labelled {label!r}; it holds {', '.join(map(repr, results))}"
            )
        chosen = label
    else:
        found = [c for c in candidates if c in results and c != BASELINE_LABEL]
        if found:
            chosen = found[0]
        elif len(models) == 1:
            chosen = models[0]
        else:
            raise InputError(
                f"{source} holds {len(models)} models ({', '.join(map(repr, models))}): name "
                "the one this release is (--results-model LABEL)"
            )
    baseline = results.get(BASELINE_LABEL) if chosen != BASELINE_LABEL else None
    return {
        "label": chosen,
        "source": source,
        "tasks": _rows(results[chosen]),
        "baseline": _rows(baseline) if baseline else None,
    }


def _score(row: Mapping[str, Any] | None) -> str:
    if row is None:
        return "not run"
    if row.get("mean") is None:
        return f"failed ({row.get('error') or 'no score'})"
    text = f"{row['mean']:.3f}"
    if row.get("ci95") is not None:
        text += f" ± {row['ci95']:.3f}"
    return text


def _cell(text: str) -> str:
    return " ".join(str(text).replace("|", "\\|").split())


# ---------------------------------------------------------------------------------- facts
def _family(model: Any) -> tuple[str, str, str]:
    family = str(getattr(model.config, "family", "") or "")
    name, tag, what = _FAMILIES.get(family, (family or type(model).__name__, "", ""))
    if family == "axlstm":
        direction = "causal (streamable)" if model.supports_streaming else "bidirectional"
        what = what.replace("xLSTM (mLSTM) blocks", f"{direction} xLSTM (mLSTM) blocks")
    return name, tag, what


def _seconds(frames: float, per_second: float) -> str:
    return f"{frames / per_second:.2f} s"


def _front_end_lines(model: Any) -> list[str]:
    fe = model.front_end_config
    rate = int(fe.sample_rate)
    hop = int(fe.hop_samples)
    per_second = rate / hop
    out_hop_ms = 1000.0 * hop * int(model.frame_hop) / rate
    kind = getattr(fe, "kind", "")
    if kind == "kaldi_fbank":
        what = (
            f"Kaldi filterbank ({fe.n_mels} bins, {fe.frame_length_ms:g} ms frames every "
            f"{fe.frame_shift_ms:g} ms), as the original SSAST computes it"
        )
    else:
        what = (
            f"log-mel spectrogram ({fe.n_mels} bins, {int(fe.frame_samples)}-sample window, "
            f"hop {hop} samples = {1000.0 * hop / rate:g} ms"
        )
        f_min, f_max = getattr(fe, "f_min", None), getattr(fe, "f_max", None)
        what += f", {f_min:g} to {f_max:g} Hz)" if f_min is not None and f_max else ")"
    if fe.per_clip_normalization:
        norm = "standardised per clip (mean and standard deviation of the whole clip)"
    else:
        norm = "standardised with fixed statistics"
        mean, std = getattr(fe, "mean", None), getattr(fe, "std", None)
        if mean is not None and std is not None:
            norm += f" (mean {mean:g}, std {std:g})"
    lines = [
        f"- input: mono audio at {rate / 1000:g} kHz (other rates are resampled, channels "
        "averaged)",
        f"- features: {what}, {norm}",
        f"- output: one {model.frame_dim}-dimensional frame every {out_hop_ms:g} ms; the scene "
        "embedding is the mean of the frames",
    ]
    fixed = fe.fixed_length
    if fixed is not None:
        lines.append(
            f"- fixed input length: {fixed} frames ({_seconds(fixed, per_second)}); longer audio "
            f"is embedded in windows of that length, shorter audio is padded"
        )
    else:
        window = int(model.embed_window)
        lines.append(
            f'- default window (`window="official"`): {window} frames '
            f"({_seconds(window, per_second)}); `window=None` runs whole clips in one pass"
        )
    return lines


def _short(value: Any, limit: int = 120) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _get(mapping: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(mapping, Mapping):
            return None
        mapping = mapping.get(key)
    return mapping


def _training_lines(provenance: Mapping[str, Any], classifier: bool) -> tuple[list[str], str]:
    """The "Training" section's lines, and what is known of the weights: "trained", "random"
    or "unknown"."""
    lines: list[str] = []
    source = provenance.get("source")
    status = "unknown"
    if "step" in provenance or source == "axlstm pretrain":
        status = "trained"
        step, samples = provenance.get("step"), provenance.get("samples_seen")
        text = "Pretrained with `axlstm pretrain`"
        if isinstance(step, int):
            text += f" for {step:,} steps"
        if isinstance(samples, int) and samples:
            text += f" ({samples:,} training clips seen)"
        lines.append(text + ".")
        cfg = provenance.get("train_config")
        paths = _get(cfg, "data", "paths")
        if isinstance(paths, list) and paths:
            shown = ", ".join(f"`{p}`" for p in paths[:5])
            more = f" and {len(paths) - 5} more" if len(paths) > 5 else ""
            lines.append(f"- pretraining data: {shown}{more}")
        elif isinstance(paths, list):  # no paths: the built-in procedural corpus
            size = _get(cfg, "data", "procedural_size")
            clips = f"{size:,} clips, " if isinstance(size, int) else ""
            seed = _get(cfg, "data", "procedural_seed")
            lines.append(
                f"- pretraining data: axlstm's procedural corpus (synthetic audio, {clips}seed "
                f"{seed}), not recorded sound"
            )
        elif cfg:
            lines.append("- pretraining data: not recorded in the training config")
        recipe = [
            (name, value)
            for name, value in (
                ("preset", _get(cfg, "model", "name")),
                ("global batch", _get(cfg, "optim", "global_batch")),
                ("base learning rate", _get(cfg, "optim", "base_lr")),
                ("epochs", _get(cfg, "schedule", "epochs")),
                ("steps per epoch", _get(cfg, "schedule", "steps_per_epoch")),
                ("max steps", _get(cfg, "schedule", "max_steps")),
                ("precision", _get(cfg, "engine", "precision")),
                ("seed", _get(cfg, "engine", "seed")),
            )
            if value is not None and not isinstance(value, (dict, list))
        ]
        if recipe:
            lines.append("- recipe: " + ", ".join(f"{k} {v}" for k, v in recipe))
        if cfg:
            lines.append("- the whole training config: `provenance.train_config` in `config.json`")
        if provenance.get("run_dir"):
            lines.append(f"- run folder: `{provenance['run_dir']}`")
        if provenance.get("checkpoint_sha256"):
            lines.append(f"- training checkpoint SHA-256: `{provenance['checkpoint_sha256']}`")
    elif provenance.get("official_checkpoint"):
        status = "trained"
        arch = provenance.get("converted_from_arch")
        lines.append(
            f"Converted with `axlstm convert` from the official checkpoint "
            f"`{provenance['official_checkpoint']}`"
            + (f" as preset `{arch}`" if arch else "")
            + ". The weights, their pretraining data and their licence are the original "
            "authors'; see their paper and repository."
        )
        if provenance.get("official_checkpoint_sha256"):
            lines.append(f"- checkpoint SHA-256: `{provenance['official_checkpoint_sha256']}`")
        if provenance.get("overrides"):
            lines.append(f"- config overrides: `{_short(provenance['overrides'])}`")
    elif classifier and source == "axlstm finetune":
        status = "trained"
        lines.append("Fine-tuned with `axlstm finetune`.")
    elif isinstance(source, str) and source:
        status = "random" if "random" in source.lower() else "unknown"
        lines.append(f"Source: {source}.")
    if classifier and provenance.get("data"):
        lines.append(f"- labelled data: `{_short(provenance['data'])}`")
    if classifier and provenance.get("weights"):
        lines.append(f"- released weights: {provenance['weights']}")
    others = [
        f"- {k}: `{_short(v)}`"
        for k, v in provenance.items()
        if k not in _SHOWN and v not in (None, "", [], {})
    ]
    if others:
        lines += ["", "Recorded with the release:", *others]
    if not lines:
        lines.append(
            "No provenance is recorded in `config.json`: where the weights come from is "
            "unknown. A release saved straight from `axlstm.create_model(...)` has **random "
            "weights**, for tests and timings only."
        )
    elif status == "random":
        lines += ["", "**These weights are random (not trained)**: for tests and timings only."]
    return lines, status


def _license(value: Any) -> str | None:
    if isinstance(value, str) and value.strip() and not any(c.isspace() for c in value.strip()):
        return value.strip()
    return None


def _datasets(value: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)):
        return []
    return [v.strip() for v in value if isinstance(v, str) and v.strip()]


# -------------------------------------------------------------------------------- the card
def render_card(
    model: Any,
    config: Mapping[str, Any],
    *,
    classifier: Mapping[str, Any] | None = None,
    state: Mapping[str, Any] | None = None,
    title: str | None = None,
) -> str:
    """The text of a model card.

    Args:
        model: the release's encoder (any :class:`~axlstm.models.Encoder`; a skeleton on the
            ``meta`` device will do: only its config, sizes and front end are read).
        config: the release's parsed ``config.json``.
        classifier: for a classifier release, its ``classifier.json`` fields plus ``labels``
            and ``multilabel``.
        state: the inputs not in the release: ``license``, ``datasets``, ``results`` (from
            :func:`select_results`), ``repo_id``, ``revision``.
        title: the card's heading (default: the repository's name, else the preset's).
    """
    state = dict(state or {})
    provenance = config.get("provenance") or {}
    preset = str(getattr(model.config, "name", "") or "model")
    family_name, block_tag, family_what = _family(model)
    repo = state.get("repo_id") or PLACEHOLDER_REPO
    hub = f"hf-hub:{repo}" + (f"@{state['revision']}" if state.get("revision") else "")
    license_id = _license(state.get("license")) or _license(provenance.get("license"))
    datasets = _datasets(state.get("datasets")) or _datasets(
        provenance.get("datasets") or provenance.get("dataset")
    )
    is_classifier = classifier is not None
    family = str(getattr(model.config, "family", "") or "")
    tags = ["audio", "self-supervised", "axlstm"]
    if is_classifier:
        tags.append("audio-classification")
    for tag in (block_tag, family, preset):
        if tag and tag not in tags:
            tags.append(tag)
    meta: dict[str, Any] = {
        "library_name": "axlstm",
        "license": license_id or "other",
        "tags": tags,
        "pipeline_tag": "audio-classification" if is_classifier else "feature-extraction",
    }
    if datasets:
        meta["datasets"] = datasets
    header = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, default_flow_style=False)

    encoder_params = int(model.num_parameters("encoder"))
    all_params = int(model.num_parameters("all"))
    heading = title or (repo.split("/", 1)[1] if state.get("repo_id") else preset)
    body: list[str] = [f"# {heading}", ""]
    if is_classifier:
        n = int(classifier.get("num_classes") or len(classifier.get("labels") or []))
        kind = "multi-label" if classifier.get("multilabel") else "single-label"
        body.append(
            f"An audio classifier ({n} classes, {kind}) fine-tuned from a self-supervised "
            f"{family_name} encoder, released with the axlstm library."
        )
    else:
        body.append(
            f"A self-supervised audio encoder, {family_name}, released with the axlstm "
            "library: it turns audio into frame and scene "
            "embeddings for probes, fine-tuning or retrieval."
        )
    body += ["", "## Model", ""]
    body += ["| | |", "|---|---|"]
    body.append(f"| architecture | {_cell(family_what or family_name)} |")
    body.append(f"| preset | `{preset}` (release class `{config.get('model_class', '?')}`) |")
    body.append(
        f"| size | width {model.embed_dim}, {model.config.depth} blocks, output frames of "
        f"{model.frame_dim} dimensions |"
    )
    body.append(
        f"| parameters | {encoder_params:,} encoder (the count papers report), "
        f"{all_params:,} in all (with the pretraining heads) |"
    )
    if is_classifier:
        head = classifier.get("head") or {}
        dim = int(head.get("dim") or model.embed_dim)
        n = int(classifier.get("num_classes") or 0)
        head_params = 2 * dim + dim * n + n
        body.append(
            f"| head | LayerNorm + linear on `{classifier.get('pool')}` pooled tokens, "
            f"{head_params:,} parameters |"
        )
    body.append(f"| streaming | {'yes (causal)' if model.supports_streaming else 'no'} |")
    body.append(f"| axlstm version | {config.get('axlstm_version', '?')} |")
    body += ["", "## Front end", ""]
    body += _front_end_lines(model)

    if is_classifier:
        labels = [str(x) for x in classifier.get("labels") or []]
        shown = ", ".join(f"`{x}`" for x in labels[:MAX_LABELS_SHOWN])
        if len(labels) > MAX_LABELS_SHOWN:
            shown += f" and {len(labels) - MAX_LABELS_SHOWN} more (`labels.json`)"
        clip = classifier.get("clip_seconds")
        body += ["", "## Classes", ""]
        body.append(
            f"{len(labels)} labels, "
            + ("independent sigmoid scores" if classifier.get("multilabel") else "a softmax")
            + f": {shown}."
        )
        if clip:
            body.append("")
            body.append(
                f"Fine-tuned on {clip:g} s clips; longer files are scored in windows of "
                f"{classifier.get('window_frames')} frames (hop {classifier.get('hop_frames')}) "
                "and the window scores averaged."
            )

    training, status = _training_lines(provenance, is_classifier)
    body += ["", "## Training", ""]
    for i, line in enumerate(training):  # a blank line between a sentence and its list
        if i and line.startswith("- ") and training[i - 1] and not training[i - 1].startswith("- "):
            body.append("")
        body.append(line)

    results = state.get("results")
    body += ["", "## Evaluation", ""]
    if results and results.get("tasks"):
        baseline = results.get("baseline")
        body.append(
            f"Frozen-embedding probes of `axlstm evaluate` ({results.get('source', 'results.json')}"
            f", model `{results.get('label')}`): mean test score over probe seeds ± half-width "
            "of the 95 % Student-t interval."
        )
        body.append("")
        columns = ["task", "metric", "score", "seeds"]
        if baseline:
            columns.append("log-mel baseline")
        body.append("| " + " | ".join(columns) + " |")
        body.append("|" + "---|" * len(columns))
        for task, row in results["tasks"].items():
            cells = [task, row.get("metric") or "?", _score(row), str(row.get("seeds", "?"))]
            if baseline:
                cells.append(_score(baseline.get(task)))
            body.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    else:
        body.append(
            "No evaluation results are attached to this card. `axlstm evaluate --model RELEASE "
            "--tasks ... --out EVAL` measures them; `axlstm card RELEASE --results "
            "EVAL/results.json` adds them here."
        )

    body += ["", "## Use", ""]
    body.append("Install `pip install 'axlstm[hub]'`, then in Python:")
    body += ["", "```python", "import axlstm", ""]
    if is_classifier:
        body.append(f'classifier = axlstm.load_classifier("{hub}")')
        body.append('for pred in classifier.predict(["clip.wav"], top_k=3):')
        body.append("    print(pred)")
        body += ["", "# its encoder alone, for embeddings:"]
    body.append(f'model = axlstm.load_model("{hub}")')
    body.append(f'wave = axlstm.audio.load_audio("clip.wav", {model.front_end_config.sample_rate})')
    body.append(
        f"out = axlstm.embed(model, wave, sample_rate={model.front_end_config.sample_rate})"
    )
    body.append(f"out.scene   # (1, {model.frame_dim}): the clip's embedding")
    body.append(f"out.frames  # (1, T, {model.frame_dim}), out.timestamps: (1, T) in ms")
    body += ["```", "", "or on the command line:", "", "```bash"]
    if is_classifier:
        body.append(f"axlstm predict clip.wav --model {hub} --out predictions.csv")
    body.append(f"axlstm embed clip.wav --model {hub} --out clip.npz")
    body += ["```", ""]
    if not state.get("repo_id"):
        body.append(
            f"(`{PLACEHOLDER_REPO}` is the repository the release is pushed to with `axlstm "
            'push`; a local copy loads from its folder: `axlstm.load_model("path/to/folder")`.)'
        )
        body.append("")
    body.append(
        "The Hub's cache is used (`HF_HUB_CACHE`, `HF_HOME`); with `HF_HUB_OFFLINE=1` a cached "
        "copy loads without any network access."
    )

    body += ["", "## Limits", ""]
    if status == "random":
        body.append("- Random weights: this release is for tests and timings only.")
    elif status == "unknown":
        body.append("- Where the weights come from is not recorded (see Training).")
    if results and results.get("tasks"):
        body.append(
            f"- Evaluated only on the {len(results['tasks'])} task(s) above, with frozen "
            "embeddings; other domains and fine-tuning are not measured here."
        )
    else:
        body.append("- Not evaluated in this card: nothing here measures its quality.")
    if is_classifier:
        body.append(
            "- It only knows its own labels; scores of audio unlike its training data are "
            "unreliable."
        )
    else:
        body.append(
            "- An encoder, not a classifier: it outputs embeddings, and tasks need a probe or "
            "fine-tuning on labelled data."
        )
    if "official" in tuple(getattr(model, "frame_layouts", ())):
        body.append(
            '- Frames are in time order (`frame_layout="time"`). `frame_layout="official"` '
            "reproduces the official AxLSTM HEAR runtime, whose frame order is not time order; "
            "use it only to compare with published numbers."
        )
    if provenance.get("official_checkpoint"):
        body.append(
            "- Converted weights: the conversion is checked against the official code's outputs, "
            "but the numbers of the original papers were not re-measured with them here."
        )
    if not license_id:
        body.append(
            "- Licence: not recorded in the release (`license: other`). The publisher should "
            "state it: `axlstm card RELEASE --license SPDX-ID` (or a `license` provenance entry)."
        )
    body.append("")

    marker_state = {
        k: v
        for k, v in {
            "license": license_id if state.get("license") else None,
            "datasets": datasets if state.get("datasets") else None,
            "results": results or None,
            "repo_id": state.get("repo_id"),
            "revision": state.get("revision"),
        }.items()
        if v
    }
    lines = [
        "---",
        header.rstrip("\n"),
        "---",
        "",
        _marker({"version": __version__, **marker_state}),
        "<!-- Written by `axlstm card` / `axlstm push` from the release; regenerating replaces "
        "this file. Delete the line above to keep edits of your own. -->",
        "",
        *body,
    ]
    return "\n".join(lines)


def write_card(
    directory: str | os.PathLike[str],
    model: Any,
    *,
    classifier: Mapping[str, Any] | None = None,
    results: Mapping[str, Any] | None = None,
    license: str | None = None,
    datasets: Sequence[str] | None = None,
    repo_id: str | None = None,
    revision: str | None = None,
    force: bool = False,
) -> Path | None:
    """Write (or rewrite) ``directory/README.md``; return its path, or None when a card written
    by a person is there and ``force`` is False (it is kept).

    Inputs not given (``results`` from :func:`select_results`, ``license``, ``datasets``,
    ``repo_id``, ``revision``) are kept from the generated card already there.

    Raises:
        CheckpointError: the folder's ``config.json`` cannot be read.
        OutputError: the card cannot be written.
    """
    directory = Path(directory)
    path = directory / CARD_NAME
    previous = card_state(directory)
    if previous is None and _read_card(path) is not None and not force:
        logger.info("kept %s: it was not written by axlstm", path)
        return None
    previous = previous or {}
    state = {
        "license": license if license is not None else previous.get("license"),
        "datasets": list(datasets) if datasets else previous.get("datasets"),
        "results": dict(results) if results is not None else previous.get("results"),
        "repo_id": repo_id if repo_id is not None else previous.get("repo_id"),
        "revision": revision if repo_id is not None else previous.get("revision"),
    }
    if license is not None and not _license(license):
        raise InputError(f"licence {license!r} is not an identifier such as apache-2.0 or mit")
    config = read_release_config(directory)
    text = render_card(model, config, classifier=classifier, state=state)
    atomic_write_text(path, text)
    logger.info("wrote model card %s", path)
    return path


def write_card_quietly(directory: str | os.PathLike[str], model: Any, **kwargs: Any) -> Path | None:
    """:func:`write_card`, with any failure logged as a warning (the release stays as it is)."""
    try:
        return write_card(directory, model, **kwargs)
    except Exception as err:  # a card must never cost the release it describes
        logger.warning("no model card written for %s: %s", directory, err)
        return None
