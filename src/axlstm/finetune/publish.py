"""Publishing a release folder of either kind (an encoder, a fine-tuned classifier): its model
card rebuilt from the folder alone (:func:`write_model_card`, ``axlstm card``) and the upload
to the Hugging Face Hub (:func:`push_release`, ``axlstm push``).

Both live here, above the classifier releases, because both must tell the two kinds apart:
a classifier is an encoder release plus ``head.safetensors``, ``classifier.json`` and
``labels.json`` (:mod:`axlstm.finetune.release`). The card's text is
:mod:`axlstm.models.card`'s; the Hub transfer is :mod:`axlstm.checkpoint.hub`'s.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from axlstm.checkpoint import build_from_config, load_model
from axlstm.checkpoint.hub import (
    RELEASE_FILES,
    is_hub_name,
    parse_hub_name,
    parse_repo_id,
    upload_release,
)
from axlstm.core.errors import UsageError
from axlstm.core.release_format import CONFIG_NAME, read_release_config
from axlstm.finetune.release import (
    CLASSIFIER_NAME,
    HEAD_NAME,
    LABELS_NAME,
    is_classifier,
    load_classifier,
)
from axlstm.models.card import (
    CARD_NAME,
    card_state,
    load_results,
    select_results,
    write_card,
)

__all__ = ["CLASSIFIER_FILES", "push_release", "release_files", "write_model_card"]

logger = logging.getLogger(__name__)

#: every file a classifier release has (an encoder release has RELEASE_FILES)
CLASSIFIER_FILES = (*RELEASE_FILES, HEAD_NAME, CLASSIFIER_NAME, LABELS_NAME)


def release_files(directory: str | os.PathLike[str]) -> list[str]:
    """The release files present in ``directory`` (of the kind the folder is)."""
    directory = Path(directory)
    names = CLASSIFIER_FILES if is_classifier(directory) else RELEASE_FILES
    return [n for n in names if (directory / n).is_file()]


def _card_inputs(directory: Path) -> tuple[Any, dict[str, Any] | None]:
    """The encoder (a skeleton on the meta device for an encoder release: only sizes and the
    front end are read) and, for a classifier, its ``classifier.json`` fields and labels."""
    if is_classifier(directory):
        clf = load_classifier(directory)  # every check of a classifier release
        facts = {**clf.config, "labels": list(clf.labels), "multilabel": clf.multilabel}
        return clf.model.encoder, facts
    config = read_release_config(directory)
    with torch.device("meta"):
        model = build_from_config(
            config.get("model_class", "masked_spec"),
            config["model"],
            str(directory / CONFIG_NAME),
        )
    return model, None


def write_model_card(
    release_dir: str | os.PathLike[str],
    results: str | os.PathLike[str] | None = None,
    *,
    results_model: str | None = None,
    license: str | None = None,  # the Hub's field name
    datasets: Sequence[str] | None = None,
    repo_id: str | None = None,
    revision: str | None = None,
    force: bool = False,
) -> Path:
    """Write (or rewrite) ``release_dir/README.md``, the model card, from the folder alone.

    Args:
        release_dir: an encoder or classifier release folder.
        results: ``results.json`` of ``axlstm evaluate``: its rows for this model become the
            card's evaluation table.
        results_model: the model's label in ``results`` (default: the folder's name, the
            repository as ``hf-hub:ORG/NAME`` or its name, or the only model there besides
            the log-mel baseline).
        license: an SPDX-style licence id for the metadata (e.g. ``apache-2.0``).
        datasets: Hub dataset ids for the metadata.
        repo_id: the repository (``ORG/NAME``) the usage section loads from.
        revision: its branch, if not the default one.
        force: replace a ``README.md`` that was not written by axlstm.

    Inputs not given are kept from the card already there (when axlstm wrote it).

    Raises:
        FileNotFoundError: no such folder or results file.
        CheckpointError: not a loadable release (the message names the file).
        InputError: a bad ``results.json`` or a label not in it.
        UsageError: a ``README.md`` written by a person is there and ``force`` is False.
    """
    directory = Path(release_dir)
    read_release_config(directory)  # a release at all, with the usual messages
    if repo_id is not None:
        repo_id = parse_repo_id(repo_id)
    rows = None
    if results is not None:
        candidates = [directory.resolve().name]
        known = repo_id or (card_state(directory) or {}).get("repo_id")
        if isinstance(known, str) and "/" in known:  # as `axlstm evaluate` labels Hub names
            rev = revision if repo_id else (card_state(directory) or {}).get("revision")
            candidates += [f"hf-hub:{known}@{rev}" if rev else f"hf-hub:{known}"]
            candidates += [f"hf-hub:{known}", known.split("/", 1)[1]]
        rows = select_results(
            load_results(results),
            label=results_model,
            candidates=candidates,
            source=Path(results).name,
        )
    model, classifier = _card_inputs(directory)
    path = write_card(
        directory,
        model,
        classifier=classifier,
        results=rows,
        license=license,
        datasets=datasets,
        repo_id=repo_id,
        revision=revision,
        force=force,
    )
    if path is None:
        raise UsageError(
            f"{directory / CARD_NAME} was not written by axlstm (no axlstm-model-card marker): "
            "it is kept; pass force=True (axlstm card --force) to replace it"
        )
    return path


def push_release(
    release_dir: str | os.PathLike[str],
    repo_id: str,
    *,
    revision: str | None = None,
    private: bool = False,
    token: str | None = None,
    commit_message: str | None = None,
    create: bool = True,
    card: bool = True,
) -> str:
    """Upload a release folder (encoder or classifier) to the Hugging Face Hub; return the
    commit's URL.

    The folder is loaded first with every check (a release that does not load is never
    uploaded); then its model card is refreshed for ``repo_id`` (a ``README.md`` written by a
    person is uploaded as it is); then its release files, and only those, are committed, and
    release files it lacks (e.g. ``labels.json`` of a classifier pushed there before) are
    deleted from the repository in the same commit.

    Args:
        release_dir: the release folder.
        repo_id: ``ORG/NAME`` (``hf-hub:ORG/NAME[@BRANCH]`` is accepted too).
        revision: the branch to push to (created when missing); default: the default branch.
        private: create the repository private (an existing one keeps its visibility).
        token: a Hub token with write access (default: the logged-in user's).
        commit_message: the commit's message.
        create: create the repository (and the branch) when missing.
        card: refresh the model card before the upload.

    Raises:
        FileNotFoundError: no such folder.
        CheckpointError: not a loadable release; ``huggingface_hub`` missing.
        ConfigError: a malformed repository name.
        OutputError: the Hub refused the upload or cannot be reached.
    """
    directory = Path(release_dir)
    if is_hub_name(repo_id):
        name = parse_hub_name(repo_id)
        repo_id, revision = name.repo_id, revision or name.revision
    repo_id = parse_repo_id(repo_id)
    if is_classifier(directory):
        load_classifier(directory)
    else:
        load_model(directory)
    if card:
        if card_state(directory) is not None or not (directory / CARD_NAME).exists():
            write_model_card(directory, repo_id=repo_id, revision=revision)
        else:
            logger.info("uploading %s as it is: it was not written by axlstm", CARD_NAME)
    files = release_files(directory)
    delete = [n for n in CLASSIFIER_FILES if n not in files and n != CARD_NAME]
    return upload_release(
        directory,
        repo_id,
        files,
        revision=revision,
        private=private,
        token=token,
        commit_message=commit_message,
        create=create,
        delete=delete,
    )
