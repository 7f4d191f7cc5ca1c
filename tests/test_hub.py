"""Hugging Face Hub releases (issue 14, items 1 and 7): loading ``hf-hub:`` names from a
pre-filled Hub cache in offline mode (no network: every socket connection fails the test),
revisions, classifiers, damaged caches, a missing ``huggingface_hub``, and pushing with a
mocked ``HfApi``."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import soundfile as sf
import torch

import axlstm
from axlstm.checkpoint.hub import (
    HubName,
    download_release,
    hub_cache_dir,
    is_hub_name,
    parse_hub_name,
)
from axlstm.cli.main import main
from axlstm.core.errors import CheckpointError, ConfigError, OutputError
from axlstm.embedding import resolve_model
from axlstm.finetune.publish import push_release
from axlstm.finetune.release import load_classifier, save_classifier
from axlstm.models import AudioClassifier

hf = pytest.importorskip("huggingface_hub")

FAMILIES = ["test_axlstm", "test_ssast", "test_ssast_orig", "test_ssamba", "test_ssam"]
SR = 16000
COMMIT_A = "a" * 40
COMMIT_B = "b" * 40


# ------------------------------------------------------------------------------- helpers
def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def fill_cache(
    cache: Path,
    repo_id: str,
    folder: Path,
    *,
    ref: str | None = "main",
    commit: str = COMMIT_A,
    skip: tuple[str, ...] = (),
) -> Path:
    """Lay ``folder``'s files out as huggingface_hub caches a download: blobs named by their
    ETag (SHA-256 for LFS files such as safetensors, the Git blob hash otherwise), snapshot
    links to them, and ``refs/REF`` holding the commit. Returns the snapshot folder."""
    root = cache / f"models--{repo_id.replace('/', '--')}"
    snap = root / "snapshots" / commit
    snap.mkdir(parents=True)
    (root / "blobs").mkdir(exist_ok=True)
    if ref is not None:
        (root / "refs").mkdir(exist_ok=True)
        (root / "refs" / ref).write_text(commit)
    for path in sorted(folder.iterdir()):
        if path.name in skip:
            continue
        data = path.read_bytes()
        lfs = path.suffix == ".safetensors"
        etag = hashlib.sha256(data).hexdigest() if lfs else git_blob_sha1(data)
        (root / "blobs" / etag).write_bytes(data)
        os.symlink(f"../../blobs/{etag}", snap / path.name)
    return snap


def blob_of(snapshot: Path, name: str) -> Path:
    return (snapshot / name).resolve()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty Hub cache in offline mode, with every network connection refused."""
    root = tmp_path / "hf_cache"
    root.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(root))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def no_network(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket.socket, "connect_ex", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    return root


@pytest.fixture(scope="module")
def releases(tmp_path_factory):
    """A release folder of every encoder family (fixed seeds)."""
    out = {}
    for i, name in enumerate(FAMILIES):
        torch.manual_seed(10 + i)
        model = axlstm.create_model(name).eval()
        out[name] = model.save_pretrained(tmp_path_factory.mktemp("rel") / name, source="test")
    return out


@pytest.fixture(scope="module")
def wave():
    rng = np.random.default_rng(0)
    return (0.1 * rng.standard_normal(SR)).astype(np.float32)


def scene(model, wave) -> torch.Tensor:
    with torch.no_grad():
        return axlstm.embed(model, wave, sample_rate=SR).scene


# ----------------------------------------------------------------------------------- names
def test_names_parse():
    assert parse_hub_name("hf-hub:org/name") == HubName("org/name", None)
    assert parse_hub_name(" hf-hub:my-org/a_b.c@v1.0 ") == HubName("my-org/a_b.c", "v1.0")
    assert str(HubName("org/name", "dev")) == "hf-hub:org/name@dev"
    assert is_hub_name("hf-hub:org/name") and not is_hub_name(Path("hf-hub:org/name"))
    assert not is_hub_name("runs/release")


@pytest.mark.parametrize(
    "name",
    ["hf-hub:", "hf-hub:name", "hf-hub:a/b/c", "hf-hub:org/na me", "hf-hub:org/--x", "hf-hub:o/n@"],
)
def test_bad_names_are_config_errors(name, cache):
    with pytest.raises(ConfigError, match=r"hf-hub|repository|revision"):
        axlstm.load_model(name)


def test_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    assert hub_cache_dir() == tmp_path / "home" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "direct"))
    assert hub_cache_dir() == tmp_path / "direct"


# --------------------------------------------------------------------------------- loading
@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_loads_from_the_cache_as_the_local_release(family, releases, cache, wave):
    fill_cache(cache, f"org/{family}", releases[family])
    local = axlstm.load_model(releases[family])
    hub = axlstm.load_model(f"hf-hub:org/{family}")
    assert type(hub) is type(local) and hub.config == local.config
    for (k, a), (k2, b) in zip(local.state_dict().items(), hub.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(a, b)
    assert torch.equal(scene(hub, wave), scene(local, wave))


def test_resolve_model_hear_and_the_cli_take_hub_names(releases, cache, wave, tmp_path):
    fill_cache(cache, "org/enc", releases["test_axlstm"])
    local = axlstm.load_model(releases["test_axlstm"])
    model = resolve_model("hf-hub:org/enc")
    assert torch.equal(scene(model, wave), scene(local, wave))
    from axlstm import hear

    assert hear.load_model("hf-hub:org/enc").sample_rate == SR
    sf.write(tmp_path / "clip.wav", wave, SR, subtype="FLOAT")
    out = tmp_path / "emb.npz"
    args = ["embed", str(tmp_path / "clip.wav"), "--model", "hf-hub:org/enc", "--out", str(out)]
    assert main([*args, "--device", "cpu", "--no-progress"]) == 0
    with np.load(out) as data:
        assert np.allclose(data["scene"], scene(local, wave).numpy(), atol=1e-6)


def test_revisions_branch_tag_and_commit(releases, cache, wave):
    fill_cache(cache, "org/rev", releases["test_axlstm"], ref="main", commit=COMMIT_A)
    fill_cache(cache, "org/rev", releases["test_ssam"], ref="v2", commit=COMMIT_B)
    assert axlstm.load_model("hf-hub:org/rev").config.family == "axlstm"
    assert axlstm.load_model("hf-hub:org/rev@v2").config.family == "ssam"
    assert axlstm.load_model(f"hf-hub:org/rev@{COMMIT_B}").config.family == "ssam"
    with pytest.raises(CheckpointError, match=r"hf-hub:org/rev@v3 is not in the Hub cache"):
        axlstm.load_model("hf-hub:org/rev@v3")


def test_download_returns_the_cached_snapshot(releases, cache):
    """The snapshot folder of the cache itself is returned, nothing is copied."""
    snap = fill_cache(cache, "org/enc", releases["test_ssast"])
    found = download_release("hf-hub:org/enc")
    assert found.path == snap and found.commit == COMMIT_A and found.offline


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory):
    torch.manual_seed(3)
    clf = AudioClassifier(axlstm.create_model("test_axlstm"), 3).eval()
    out = tmp_path_factory.mktemp("clf") / "clf"
    save_classifier(clf, out, labels=["a", "b", "c"], multilabel=False, clip_seconds=0.5)
    return out


def test_classifier_release_loads_from_the_cache(classifier_dir, cache, wave):
    fill_cache(cache, "org/clf", classifier_dir)
    local, hub = load_classifier(classifier_dir), axlstm.load_classifier("hf-hub:org/clf")
    assert hub.labels == ["a", "b", "c"] and not hub.multilabel
    (p_local,), (p_hub,) = local.predict([wave]), hub.predict([wave])
    assert p_hub.labels == p_local.labels and np.allclose(p_hub.scores, p_local.scores)
    assert axlstm.load_model("hf-hub:org/clf").config.family == "axlstm"  # its encoder


def test_an_encoder_repository_is_not_a_classifier(releases, cache):
    fill_cache(cache, "org/enc", releases["test_axlstm"])
    with pytest.raises(CheckpointError, match=r"hf-hub:org/enc .*not a classifier") as err:
        load_classifier("hf-hub:org/enc")
    assert "delete" not in str(err.value)


# -------------------------------------------------------------------------- damaged caches
def test_missing_file_is_an_incomplete_cache(releases, cache):
    fill_cache(cache, "org/part", releases["test_axlstm"], skip=("model.safetensors",))
    with pytest.raises(CheckpointError) as err:
        axlstm.load_model("hf-hub:org/part")
    text = str(err.value)
    assert "hf-hub:org/part (commit aaaaaaaaaaaa" in text and "no model.safetensors" in text
    assert "incomplete" in text and "HF_HUB_OFFLINE" in text


def test_missing_classifier_file(classifier_dir, cache):
    fill_cache(cache, "org/clf", classifier_dir, skip=("head.safetensors",))
    with pytest.raises(CheckpointError, match=r"hf-hub:org/clf .*head\.safetensors"):
        axlstm.load_classifier("hf-hub:org/clf")


def test_truncated_weights_fail_their_checksum(releases, cache):
    snap = fill_cache(cache, "org/cut", releases["test_ssamba"])
    blob = blob_of(snap, "model.safetensors")
    blob.write_bytes(blob.read_bytes()[:1000])
    with pytest.raises(CheckpointError) as err:
        axlstm.load_model("hf-hub:org/cut")
    text = str(err.value)
    assert "hf-hub:org/cut" in text and "model.safetensors is damaged" in text
    assert f"delete {cache / 'models--org--cut'}" in text


def test_truncated_weights_without_a_checksum_are_named_too(releases, cache):
    """A file damaged before it was cached (its blob name is its own hash) still fails the
    release checks, reported as coming from the Hub cache."""
    snap = fill_cache(cache, "org/cut", releases["test_axlstm"])
    link = snap / "model.safetensors"
    data = link.resolve().read_bytes()[:1000]
    etag = hashlib.sha256(data).hexdigest()
    (link.resolve().parent / etag).write_bytes(data)
    link.unlink()
    os.symlink(f"../../blobs/{etag}", link)
    with pytest.raises(CheckpointError) as err:
        axlstm.load_model("hf-hub:org/cut")
    text = str(err.value)
    assert "hf-hub:org/cut (commit" in text and "model.safetensors: truncated or corrupt" in text
    assert "delete" in text


def test_corrupt_config_is_named(releases, cache):
    snap = fill_cache(cache, "org/cfg", releases["test_ssast"])
    blob = blob_of(snap, "config.json")
    blob.write_text('{"format": "axlstm-release", ')
    with pytest.raises(CheckpointError, match=r"hf-hub:org/cfg .*config\.json is damaged"):
        axlstm.load_model("hf-hub:org/cfg")
    # the same damage with a consistent name: the release check names the file
    data = blob.read_bytes()
    etag = git_blob_sha1(data)
    blob.rename(blob.parent / etag)
    (snap / "config.json").unlink()
    os.symlink(f"../../blobs/{etag}", snap / "config.json")
    with pytest.raises(CheckpointError, match=r"hf-hub:org/cfg .*config\.json: invalid JSON"):
        axlstm.load_model("hf-hub:org/cfg")


def test_deleted_blob_is_named(releases, cache):
    snap = fill_cache(cache, "org/gone", releases["test_axlstm"])
    blob_of(snap, "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"hf-hub:org/gone .*model\.safetensors.*broken"):
        axlstm.load_model("hf-hub:org/gone")


def test_not_cached_offline(cache, tmp_path, capsys):
    with pytest.raises(CheckpointError, match=r"not in the Hub cache .*HF_HUB_OFFLINE=1"):
        axlstm.load_model("hf-hub:org/absent")
    out = str(tmp_path / "never.npz")
    assert main(["embed", "x.wav", "--model", "hf-hub:org/absent", "--out", out]) == 1
    assert (
        "axlstm embed: error: hf-hub:org/absent is not in the Hub cache" in capsys.readouterr().err
    )


@pytest.mark.parametrize(
    ("kind", "offline", "match"),
    [
        ("RepositoryNotFoundError", False, "no such repository"),
        ("GatedRepoError", False, "gated"),
        ("RevisionNotFoundError", False, "has no revision 'v9'"),
        ("IncompleteSnapshotError", True, "incomplete copy"),
        ("LocalEntryNotFoundError", False, "cannot be reached"),
        ("ConnectError", False, "cannot download it: ConnectError"),
    ],
)
def test_download_errors_are_one_clear_line(kind, offline, match, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    base = type("RepositoryNotFoundError", (Exception,), {})
    parent = base if kind == "GatedRepoError" else Exception
    error = type(kind, (parent,), {})

    def fail(*args, **kwargs):
        raise error("details\nmore")

    monkeypatch.setattr(hf, "snapshot_download", fail)
    with pytest.raises(CheckpointError, match=match) as err:
        download_release("hf-hub:org/name@v9", local_files_only=offline)
    assert "hf-hub:org/name@v9" in str(err.value) and "\n" not in str(err.value)


def test_without_huggingface_hub_the_message_says_how_to_install(releases, monkeypatch, cache):
    fill_cache(cache, "org/enc", releases["test_axlstm"])
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import fails
    with pytest.raises(CheckpointError, match=r"pip install 'axlstm\[hub\]'"):
        axlstm.load_model("hf-hub:org/enc")
    with pytest.raises(CheckpointError, match=r"pip install 'axlstm\[hub\]'"):
        push_release(releases["test_axlstm"], "org/enc")
    assert axlstm.load_model(releases["test_axlstm"]) is not None  # local paths need nothing


# ------------------------------------------------------------------------------------ push
class FakeApi:
    """Records what ``push_release`` asks of the Hub; nothing leaves the machine."""

    calls: ClassVar[list[tuple[str, tuple, dict]]] = []
    fail: ClassVar[Exception | None] = None

    def __init__(self, token=None):
        self.calls.append(("init", (), {"token": token}))

    def create_repo(self, *args, **kwargs):
        self.calls.append(("create_repo", args, kwargs))

    def create_branch(self, *args, **kwargs):
        self.calls.append(("create_branch", args, kwargs))

    def upload_folder(self, **kwargs):
        if self.fail is not None:
            raise self.fail
        folder = Path(kwargs["folder_path"])
        kwargs["present"] = sorted(p.name for p in folder.iterdir())
        kwargs["card"] = (folder / "README.md").read_text()
        self.calls.append(("upload_folder", (), kwargs))
        return type("Info", (), {"commit_url": "https://huggingface.co/org/name/commit/c0ffee"})()


@pytest.fixture
def api(monkeypatch, cache):
    FakeApi.calls, FakeApi.fail = [], None
    monkeypatch.setattr(hf, "HfApi", FakeApi)
    return FakeApi


def _call(api, name):
    (found,) = [c for c in api.calls if c[0] == name]
    return found


def test_push_an_encoder(api, releases, tmp_path):
    rel = tmp_path / "rel"
    rel.mkdir()
    for p in releases["test_axlstm"].iterdir():
        (rel / p.name).write_bytes(p.read_bytes())
    url = axlstm.push_release(rel, "org/name", revision="v1", private=True, commit_message="hello")
    assert url.endswith("/commit/c0ffee")
    _, args, kwargs = _call(api, "create_repo")
    assert args == ("org/name",) and kwargs["private"] is True and kwargs["exist_ok"]
    _, args, kwargs = _call(api, "create_branch")
    assert args == ("org/name",) and kwargs["branch"] == "v1"
    _, _, up = _call(api, "upload_folder")
    assert up["repo_id"] == "org/name" and up["revision"] == "v1"
    assert up["commit_message"] == "hello" and up["folder_path"] == str(rel)
    assert sorted(up["allow_patterns"]) == ["README.md", "config.json", "model.safetensors"]
    assert sorted(up["delete_patterns"]) == ["classifier.json", "head.safetensors", "labels.json"]
    assert 'axlstm.load_model("hf-hub:org/name@v1")' in up["card"]  # the card was refreshed


def test_push_a_classifier_with_the_cli(api, classifier_dir, capsys):
    assert main(["push", str(classifier_dir), "hf-hub:org/clf", "--no-create"]) == 0
    assert "c0ffee" in capsys.readouterr().out
    assert not [c for c in api.calls if c[0] in ("create_repo", "create_branch")]
    _, _, up = _call(api, "upload_folder")
    assert up["repo_id"] == "org/clf" and up["revision"] is None
    assert sorted(up["allow_patterns"]) == [
        "README.md",
        "classifier.json",
        "config.json",
        "head.safetensors",
        "labels.json",
        "model.safetensors",
    ]
    assert up["delete_patterns"] is None
    assert 'axlstm.load_classifier("hf-hub:org/clf")' in up["card"]


def test_push_refuses_a_broken_release(api, releases, tmp_path):
    rel = tmp_path / "rel"
    rel.mkdir()
    (rel / "config.json").write_bytes((releases["test_ssast"] / "config.json").read_bytes())
    (rel / "model.safetensors").write_bytes(b"\0" * 10)
    with pytest.raises(CheckpointError, match=r"model\.safetensors"):
        push_release(rel, "org/name")
    assert not [c for c in api.calls if c[0] == "upload_folder"]
    with pytest.raises(ConfigError, match="not a Hub repository name"):
        push_release(releases["test_ssast"], "not-a-repo")


def test_push_errors_are_one_line(api, releases, capsys):
    err = type("HfHubHTTPError", (Exception,), {})("401 Client Error: Unauthorized")
    err.response = type("R", (), {"status_code": 401})()
    api.fail = err
    with pytest.raises(OutputError, match="not logged in or no write access"):
        push_release(releases["test_axlstm"], "org/name")
    assert main(["push", str(releases["test_axlstm"]), "org/name"]) == 1
    assert "axlstm push: error: cannot push to org/name" in capsys.readouterr().err


def test_pushed_card_keeps_hand_written_readme(api, releases, tmp_path):
    rel = tmp_path / "rel"
    rel.mkdir()
    for p in releases["test_axlstm"].iterdir():
        (rel / p.name).write_bytes(p.read_bytes())
    (rel / "README.md").write_text("# mine\n")
    push_release(rel, "org/name")
    assert _call(api, "upload_folder")[2]["card"] == "# mine\n"
    assert json.loads((rel / "config.json").read_text())["provenance"] == {"source": "test"}
