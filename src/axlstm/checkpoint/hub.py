"""Releases on the Hugging Face Hub: ``hf-hub:ORG/NAME[@REVISION]`` names, downloads through
the Hub's cache, uploads. ``huggingface_hub`` is optional (``pip install 'axlstm[hub]'``) and
imported only when a Hub name is used.

Loading downloads only the files of a release (``config.json``, ``model.safetensors``,
``README.md``; a classifier's files too when a classifier is loaded) into the Hub's cache
(``HF_HUB_CACHE``, else ``HF_HOME/hub``, else ``~/.cache/huggingface/hub``) and then loads the
cached snapshot with the ordinary release loaders, so every check of a local release runs.
With ``HF_HUB_OFFLINE=1`` nothing is fetched: the cached snapshot of the revision is used, or
the load fails with a message saying so.

A cached file is checked against the hash the cache names it by (the Hub's ETag: the SHA-256
of a Git LFS file such as the weights, the Git blob hash of a small file), so a truncated or
altered download is refused before it is read. Every problem of a cached release is a
:class:`~axlstm.core.errors.CheckpointError` naming the repository, the revision and commit,
the file, and what to do (usually: delete the cached repository and download it again); a
model is returned whole or not at all.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from axlstm._version import __version__
from axlstm.core.errors import CheckpointError, ConfigError, OutputError
from axlstm.core.release_format import CONFIG_NAME, WEIGHTS_NAME
from axlstm.models.card import CARD_NAME

__all__ = [
    "HUB_PREFIX",
    "INSTALL_HINT",
    "RELEASE_FILES",
    "HubName",
    "HubSnapshot",
    "download_release",
    "hub_cache_dir",
    "hub_offline",
    "is_hub_name",
    "load_from_hub",
    "parse_hub_name",
    "parse_repo_id",
    "upload_release",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

HUB_PREFIX = "hf-hub:"
INSTALL_HINT = "pip install 'axlstm[hub]'"
#: the files of an encoder release (README.md, the model card, is optional)
RELEASE_FILES = (CONFIG_NAME, WEIGHTS_NAME, CARD_NAME)
_TRUE = {"1", "ON", "YES", "TRUE"}
_PART = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9_])?")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_GIT_SHA1 = re.compile(r"[0-9a-f]{40}")


# ------------------------------------------------------------------------------------ names
@dataclass(frozen=True)
class HubName:
    """A release on the Hub: ``repo_id`` ("ORG/NAME") and a ``revision`` (branch, tag or
    commit; None for the default branch)."""

    repo_id: str
    revision: str | None = None

    def __str__(self) -> str:
        at = f"@{self.revision}" if self.revision else ""
        return f"{HUB_PREFIX}{self.repo_id}{at}"


def is_hub_name(name: object) -> bool:
    """Whether ``name`` is a Hub name (a string starting with ``hf-hub:``); a local folder of
    that name is reached as ``./hf-hub:...``."""
    return isinstance(name, str) and name.strip().startswith(HUB_PREFIX)


def parse_repo_id(text: str, what: str = "repository") -> str:
    """``ORG/NAME`` checked as the Hub checks repository names (letters, digits, ``-``, ``_``,
    ``.``; at most 96 characters a part; no ``--`` or ``..``).

    Raises:
        ConfigError: anything else, with the expected form.
    """
    repo = str(text).strip()
    parts = repo.split("/")
    ok = (
        len(parts) == 2
        and all(_PART.fullmatch(p) for p in parts)
        and "--" not in repo
        and ".." not in repo
        and not repo.endswith(".git")
    )
    if not ok:
        raise ConfigError(
            f"{what} {text!r} is not a Hub repository name: expected ORG/NAME (letters, "
            "digits, '-', '_' and '.')"
        )
    return repo


def parse_hub_name(name: str | HubName) -> HubName:
    """``hf-hub:ORG/NAME`` or ``hf-hub:ORG/NAME@REVISION`` as a :class:`HubName`.

    Raises:
        ConfigError: not of that form (the message shows the form).
    """
    if isinstance(name, HubName):
        return name
    text = str(name).strip()
    if not text.startswith(HUB_PREFIX):
        raise ConfigError(f"{name!r} is not a Hub name: expected hf-hub:ORG/NAME[@REVISION]")
    body = text[len(HUB_PREFIX) :]
    repo, at, revision = body.partition("@")
    if at and (not revision or any(c.isspace() for c in revision) or ".." in revision):
        raise ConfigError(
            f"{name!r}: the revision after '@' must be a branch, tag or commit, got {revision!r}"
        )
    repo_id = parse_repo_id(repo, f"{name!r}: the repository")
    return HubName(repo_id, revision or None)


# ------------------------------------------------------------------------------ environment
def _hub_module(action: str) -> Any:
    """``huggingface_hub``, or an error saying how to install it."""
    try:
        import huggingface_hub
    except ImportError:
        raise CheckpointError(
            f"{action} needs the huggingface_hub package, which is not installed: {INSTALL_HINT}"
        ) from None
    return huggingface_hub


def _expand(path: str) -> Path:
    return Path(os.path.expandvars(os.path.expanduser(path)))


def hub_cache_dir() -> Path:
    """The Hub's cache folder, read from the environment now (as ``huggingface_hub`` reads it
    at import): ``HF_HUB_CACHE``, else ``HUGGINGFACE_HUB_CACHE``, else ``HF_HOME/hub``, else
    ``XDG_CACHE_HOME/huggingface/hub``, else ``~/.cache/huggingface/hub``."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return _expand(os.environ[var])
    home = os.environ.get("HF_HOME")
    if not home:
        cache = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
        home = os.path.join(cache, "huggingface")
    return _expand(home) / "hub"


def hub_offline() -> bool:
    """Whether the environment asks for offline mode now (``HF_HUB_OFFLINE`` or
    ``TRANSFORMERS_OFFLINE`` set to 1/ON/YES/TRUE)."""
    return any(
        os.environ.get(var, "").strip().upper() in _TRUE
        for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


# -------------------------------------------------------------------------------- download
@dataclass(frozen=True)
class HubSnapshot:
    """A release's files in the Hub cache.

    Attributes:
        name: what was asked for.
        path: the snapshot folder (a release folder).
        commit: the commit the snapshot is of.
        repo_cache: the cache folder of the repository (``models--ORG--NAME``): deleting it
            removes every cached revision.
        offline: whether the Hub was not asked (offline mode).
    """

    name: HubName
    path: Path
    commit: str
    repo_cache: Path
    offline: bool

    def describe(self) -> str:
        return f"{self.name} (commit {self.commit[:12]} in the Hub cache {self.repo_cache})"

    def fix(self) -> str:
        return (
            f"delete {self.repo_cache} and load {self.name} again with network access "
            "(HF_HUB_OFFLINE unset) to download it afresh"
        )


def _classes(err: BaseException) -> set[str]:
    return {c.__name__ for c in type(err).__mro__}


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _download_error(err: Exception, name: HubName, cache: Path, offline: bool) -> Exception:
    """One clear error for a failed ``snapshot_download``."""
    kinds = _classes(err)
    repo_cache = cache / f"models--{name.repo_id.replace('/', '--')}"
    if "GatedRepoError" in kinds:
        return CheckpointError(
            f"{name}: the repository is gated: accept its conditions on "
            f"https://huggingface.co/{name.repo_id} and log in (`hf auth login` or HF_TOKEN)"
        )
    if "RepositoryNotFoundError" in kinds:
        return CheckpointError(
            f"{name}: no such repository on the Hugging Face Hub (or it is private and no valid "
            "token was given: log in with `hf auth login` or set HF_TOKEN)"
        )
    if "RevisionNotFoundError" in kinds:
        return CheckpointError(
            f"{name}: the repository {name.repo_id} has no revision {name.revision!r}"
        )
    if "IncompleteSnapshotError" in kinds:
        return CheckpointError(
            f"{name}: the Hub cache holds an incomplete copy ({_first_line(err)}); load it "
            f"again with network access (HF_HUB_OFFLINE unset) to complete it, or delete "
            f"{repo_cache}"
        )
    if "LocalEntryNotFoundError" in kinds:
        if offline:
            return CheckpointError(
                f"{name} is not in the Hub cache {cache} and offline mode is on "
                "(HF_HUB_OFFLINE=1): load it once with network access, or point HF_HUB_CACHE "
                "at a cache that holds it"
            )
        return CheckpointError(
            f"{name}: the Hugging Face Hub cannot be reached and the release is not in the "
            f"Hub cache {cache} ({_first_line(err)})"
        )
    if "HFValidationError" in kinds:
        return ConfigError(f"{name}: {_first_line(err)}")
    if "HfHubHTTPError" in kinds:
        return CheckpointError(f"{name}: the Hugging Face Hub refused: {_first_line(err)}")
    return CheckpointError(f"{name}: cannot download it: {type(err).__name__}: {_first_line(err)}")


def _git_blob_sha1(path: Path) -> str:
    digest = hashlib.sha1(usedforsecurity=False)
    digest.update(b"blob %d\0" % path.stat().st_size)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            digest.update(chunk)
    return digest.hexdigest()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            digest.update(chunk)
    return digest.hexdigest()


def _verify(snapshot: HubSnapshot, files: Sequence[str]) -> None:
    """Each cached file that is a link to a blob named by its hash has that hash.

    Raises:
        CheckpointError: a file whose content differs from its blob name (truncated, altered).
    """
    for name in files:
        link = snapshot.path / name
        if not link.is_symlink():
            continue  # not there (the loaders name it), or a copy (no symlinks on this system)
        try:
            blob = link.resolve(strict=True)
        except (OSError, RuntimeError):
            continue  # a broken link or a loop: the loaders name it
        if blob.parent.name != "blobs" or not blob.is_file():
            continue
        if _SHA256.fullmatch(blob.name):
            kind, actual = "SHA-256", _sha256(blob)
        elif _GIT_SHA1.fullmatch(blob.name):
            kind, actual = "Git blob hash", _git_blob_sha1(blob)
        else:
            continue
        if actual != blob.name:
            raise CheckpointError(
                f"{snapshot.describe()}: {name} is damaged: its content does not match the "
                f"{kind} the cache recorded for it ({blob.name[:12]}…, the content gives "
                f"{actual[:12]}…; {blob.stat().st_size:,} bytes): the download was cut short "
                f"or the file was changed; {snapshot.fix()}"
            )


def download_release(
    name: str | HubName,
    *,
    files: Sequence[str] = RELEASE_FILES,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool | None = None,
    token: str | bool | None = None,
    force_download: bool = False,
    verify: bool = True,
) -> HubSnapshot:
    """The cached snapshot of a Hub release, downloading the missing ``files`` (only those).

    Args:
        name: ``hf-hub:ORG/NAME[@REVISION]`` or a :class:`HubName`.
        files: the release's file names to fetch.
        cache_dir: the Hub cache (default :func:`hub_cache_dir`).
        local_files_only: never ask the Hub (default: :func:`hub_offline`, or the offline
            mode ``huggingface_hub`` was imported with).
        token: a Hub token (default: the logged-in user's, or none).
        force_download: download the files again even if cached.
        verify: check cached files against the hashes they are stored under.

    Raises:
        ConfigError: a malformed name.
        CheckpointError: ``huggingface_hub`` missing; the repository or revision does not
            exist; offline and not cached; an incomplete or damaged cache (the message names
            the file and what to do).
    """
    hub_name = parse_hub_name(name)
    hf = _hub_module(f"loading {hub_name}")
    cache = Path(cache_dir) if cache_dir is not None else hub_cache_dir()
    if local_files_only is None:
        constants = getattr(hf, "constants", None)
        local_files_only = hub_offline() or bool(getattr(constants, "HF_HUB_OFFLINE", False))
    try:
        folder = hf.snapshot_download(
            hub_name.repo_id,
            revision=hub_name.revision,
            cache_dir=str(cache),
            local_files_only=local_files_only,
            allow_patterns=list(files),
            token=token,
            force_download=force_download,
            library_name="axlstm",
            library_version=__version__,
        )
    except Exception as err:  # huggingface_hub's and httpx's errors, mapped to one line
        raise _download_error(err, hub_name, cache, local_files_only) from err
    path = Path(folder)
    snapshot = HubSnapshot(
        hub_name,
        path,
        commit=path.name,
        repo_cache=path.parent.parent if path.parent.name == "snapshots" else path,
        offline=local_files_only,
    )
    if verify:
        _verify(snapshot, files)
    return snapshot


@contextmanager
def _from_cache(snapshot: HubSnapshot) -> Iterator[None]:
    """Errors of loading a cached snapshot, said to come from the Hub cache, with the fix."""
    try:
        yield
    except (CheckpointError, FileNotFoundError) as err:
        text = str(err).replace(f"{snapshot.path}{os.sep}", "")
        text = text.replace(str(snapshot.path), "the snapshot")
        if "is not a complete" in text and not snapshot.offline:
            hint = (
                "the repository at that revision lacks the file (it is not a complete axlstm "
                "release); if it is there on the Hub, " + snapshot.fix()
            )
        elif "is not a complete" in text:
            hint = (
                "the Hub cache holds an incomplete copy: load it again with network access "
                "(HF_HUB_OFFLINE unset) to complete it"
            )
        elif "is not a classifier" in text:
            hint = ""  # the repository holds an encoder: the message says how to load it
        else:
            hint = f"if the cached copy is damaged, {snapshot.fix()}"
        hint = f"; {hint}" if hint else ""
        raise CheckpointError(f"{snapshot.describe()}: {text}{hint}") from err


def load_from_hub(
    name: str | HubName,
    load: Callable[[Path], T],
    *,
    files: Sequence[str] = RELEASE_FILES,
    **download: Any,
) -> T:
    """``load(folder)`` of the cached snapshot of a Hub release (downloaded as needed); any
    problem of the cached files is one :class:`CheckpointError` naming the repository,
    revision, commit and file.

    Args:
        name: ``hf-hub:ORG/NAME[@REVISION]``.
        load: a release loader, e.g. ``lambda d: axlstm.checkpoint.release.load_model(d)``.
        files: the files ``load`` reads.
        **download: options of :func:`download_release`.
    """
    snapshot = download_release(name, files=files, **download)
    with _from_cache(snapshot):
        result = load(snapshot.path)
    logger.info("loaded %s", snapshot.describe())
    return result


# ---------------------------------------------------------------------------------- upload
def _upload_error(err: Exception, repo_id: str, revision: str | None) -> Exception:
    kinds = _classes(err)
    where = f"{repo_id}" + (f"@{revision}" if revision else "")
    status = getattr(getattr(err, "response", None), "status_code", None)
    if "RepositoryNotFoundError" in kinds:
        return OutputError(
            f"cannot push to {where}: no such repository, or no write access to it (log in "
            "with `hf auth login` or set HF_TOKEN; without --no-create it is created)"
        )
    if "RevisionNotFoundError" in kinds:
        return OutputError(f"cannot push to {where}: no branch {revision!r}")
    if status in (401, 403) or "LocalTokenNotFoundError" in kinds:
        return OutputError(
            f"cannot push to {where}: not logged in or no write access (`hf auth login`, "
            f"HF_TOKEN or token=...): {_first_line(err)}"
        )
    if "HFValidationError" in kinds:
        return ConfigError(f"cannot push to {where}: {_first_line(err)}")
    return OutputError(f"cannot push to {where}: {type(err).__name__}: {_first_line(err)}")


def upload_release(
    folder: str | os.PathLike[str],
    repo_id: str,
    files: Sequence[str],
    *,
    revision: str | None = None,
    private: bool = False,
    token: str | None = None,
    commit_message: str | None = None,
    create: bool = True,
    delete: Sequence[str] = (),
) -> str:
    """Upload ``files`` of ``folder`` to the model repository ``repo_id`` in one commit; return
    the commit's URL. Checking that the folder is a release is the caller's
    (:func:`axlstm.finetune.publish.push_release`).

    Args:
        folder: the release folder.
        repo_id: ``ORG/NAME``.
        files: names of the files to upload.
        revision: the branch to commit to (created from the default branch when ``create``);
            None for the default branch.
        private: create the repository private (an existing one keeps its visibility).
        token: a Hub token with write access (default: the logged-in user's).
        commit_message: default "Upload axlstm release".
        create: create the repository (and branch) when missing.
        delete: names of files to remove from the repository in the same commit (release
            files this release does not have, e.g. a former classifier's ``labels.json``).

    Raises:
        CheckpointError: ``huggingface_hub`` missing.
        OutputError: the Hub refused or cannot be reached; the message says why.
    """
    repo_id = parse_repo_id(repo_id)
    hf = _hub_module(f"pushing to {repo_id}")
    api = hf.HfApi(token=token)
    try:
        if create:
            api.create_repo(
                repo_id, repo_type="model", private=True if private else None, exist_ok=True
            )
            if revision:
                api.create_branch(repo_id, branch=revision, repo_type="model", exist_ok=True)
        info = api.upload_folder(
            repo_id=repo_id,
            folder_path=str(folder),
            repo_type="model",
            revision=revision,
            allow_patterns=list(files),
            delete_patterns=list(delete) or None,
            commit_message=commit_message or "Upload axlstm release",
        )
    except Exception as err:  # huggingface_hub's and httpx's errors, mapped to one line
        raise _upload_error(err, repo_id, revision) from err
    url = getattr(info, "commit_url", None) or str(info)
    logger.info("pushed %s to %s: %s", folder, repo_id, url)
    return url
