"""Embeddings are computed once per model and task; the key follows weights, config, front end,
options and the task's files. Also the built-in tasks: deterministic HEAR folders."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from axlstm.evaluation import (
    BUILTIN_TASKS,
    EmbeddingError,
    LogMelBaseline,
    ModelEmbedder,
    load_task,
    logmel_statistics,
    state_dict_sha256,
    task_embeddings,
    write_builtin_tasks,
)
from axlstm.models import create_model
from test_evaluation_tasks import make_task


@pytest.fixture(autouse=True)
def _one_thread():
    """Small matmuls: one thread is as fast, and far faster on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class CountingEmbedder(ModelEmbedder):
    calls = 0

    def embed_files(self, paths):
        CountingEmbedder.calls += len(paths)
        yield from super().embed_files(paths)


def _model(seed=0, **overrides):
    torch.manual_seed(seed)
    return create_model("test_axlstm", **overrides)


def test_cache_hit_and_key_changes(tmp_path):
    task = load_task(make_task(tmp_path / "tasks", per_split=1))
    cache = tmp_path / "cache"
    model = _model()
    emb = CountingEmbedder(model, "m")
    x, hit = task_embeddings(emb, task, cache)
    assert not hit and CountingEmbedder.calls == 9
    assert set(x) == {"train", "valid", "test"} and x["train"].shape == (3, model.frame_dim)
    # Same weights under another label and a fresh object: a hit, nothing embedded.
    again, hit = task_embeddings(CountingEmbedder(_model(), "other"), task, cache)
    assert hit and CountingEmbedder.calls == 9
    np.testing.assert_array_equal(again["test"], x["test"])
    entries = list((cache / "tones").glob("*.npz"))
    assert len(entries) == 1 and entries[0].with_suffix(".json").is_file()

    # Changed weights, front end or options: new keys.
    changed = _model()
    with torch.no_grad():
        next(changed.parameters()).add_(0.01)
    variants = [
        CountingEmbedder(changed, "m"),
        CountingEmbedder(_model(front_end={"norm_mean": -4.0, "norm_std": 4.0}), "m"),
        CountingEmbedder(_model(), "m", window="none"),
        CountingEmbedder(_model(), "m", frame_layout="official"),
    ]
    keys = {entries[0].name}
    for i, emb in enumerate(variants, start=1):
        _, hit = task_embeddings(emb, task, cache)
        assert not hit
        assert CountingEmbedder.calls == 9 * (i + 1)
        keys = {p.name for p in (cache / "tones").glob("*.npz")}
        assert len(keys) == i + 1

    # Changing the task's audio changes its key too.
    path = task.audio_paths("train")[0]
    path.write_bytes(path.read_bytes())  # same bytes, new modification time
    import os

    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    _, hit = task_embeddings(CountingEmbedder(_model(), "m"), load_task(task.path), cache)
    assert not hit


def test_state_dict_hash():
    a, b = _model(0), _model(0)
    assert state_dict_sha256(a) == state_dict_sha256(b)
    assert state_dict_sha256(a) != state_dict_sha256(_model(1))


def test_no_cache_and_failures(tmp_path):
    task = load_task(make_task(tmp_path / "t", per_split=1))
    x, hit = task_embeddings(LogMelBaseline(), task, None)
    assert not hit and x["valid"].shape == (3, 320)
    bad = task.audio_paths("test")[1]
    bad.write_bytes(b"not audio at all")
    with pytest.raises(
        EmbeddingError, match=r"1 of 9 files of tones could not be embedded: .*clip"
    ):
        task_embeddings(LogMelBaseline(), task, tmp_path / "cache")
    assert not list((tmp_path / "cache").rglob("*.npz"))  # failures are not cached


def test_logmel_statistics():
    t = torch.arange(16000) / 16000
    wave = 0.3 * torch.sin(2 * torch.pi * 440 * t)
    feats = logmel_statistics(wave)
    assert feats.shape == (320,) and torch.isfinite(feats).all()
    # A stationary tone has little frame-to-frame change compared with its spread over bands.
    assert feats[160:].abs().mean() < feats[:80].abs().mean()
    assert LogMelBaseline().fingerprint()["kind"] == "logmel"


# ------------------------------------------------------------------------------- built-in
def test_builtin_tasks_are_deterministic_hear_folders(tmp_path):
    a = write_builtin_tasks(tmp_path / "a", names=["timbre"])[0]
    b = write_builtin_tasks(tmp_path / "b", names=["timbre"])[0]
    task = load_task(a)
    assert task.describe().startswith("timbre: scene multiclass, 6 classes, trainvaltest")
    assert [len(task.entries[s]) for s in task.splits] == [120, 48, 48]
    counts = task.targets("train").sum(axis=0)
    assert (counts == 20).all()  # balanced classes
    for rel in ["train.json", "labelvocabulary.csv", "16000/test/00170.wav"]:
        assert (a / rel).read_bytes() == (b / rel).read_bytes()
    meta_a = json.loads((a / "task_metadata.json").read_text())
    assert meta_a == json.loads((b / "task_metadata.json").read_text())
    # Written again with the same settings: kept as is.
    mtime = (a / "train.json").stat().st_mtime_ns
    write_builtin_tasks(tmp_path / "a", names=["timbre"])
    assert (a / "train.json").stat().st_mtime_ns == mtime
    with pytest.raises(ValueError, match="not written with these settings"):
        write_builtin_tasks(tmp_path / "a", names=["timbre"], seed=1)
    other = write_builtin_tasks(tmp_path / "a", names=["timbre"], seed=1, overwrite=True)[0]
    assert (other / "16000/test/00170.wav").read_bytes() != (
        b / "16000/test/00170.wav"
    ).read_bytes()


def test_builtin_kfold_and_rate(tmp_path):
    folder = write_builtin_tasks(tmp_path, names=["polyphony"], folds=3, sample_rate=22050)[0]
    task = load_task(folder)
    assert task.split_mode == "new_split_kfold" and task.splits == ["fold00", "fold01", "fold02"]
    assert task.sample_rate == 22050 and len(task.data_splits()) == 3
    assert all(len(task.entries[s]) == 84 for s in task.splits)
    with pytest.raises(ValueError, match="folds must be 0 or at least 3"):
        write_builtin_tasks(tmp_path / "x", names=["timbre"], folds=2)
    with pytest.raises(ValueError, match="unknown built-in tasks"):
        write_builtin_tasks(tmp_path / "x", names=["speech"])


def test_builtin_generators_label_what_they_say():
    rng = np.random.default_rng(0)
    for task in BUILTIN_TASKS.values():
        wave, labels = task.make(rng, 3, task.duration, 16000)
        assert wave.dtype == np.float32 and len(wave) == round(task.duration * 16000)
        assert 0.1 < np.abs(wave).max() <= 0.9 + 1e-6
        if task.embedding_type == "event":
            labels = [e["label"] for e in labels]
        assert set(labels) <= set(task.labels) and labels
    assert BUILTIN_TASKS["pitch_class"].make(rng, 14, 1.0, 16000)[1] == ["D"]
    assert BUILTIN_TASKS["polyphony"].make(rng, 2, 1.5, 16000)[1] == ["3"]


def test_builtin_event_task_marks_where_the_sounds_are():
    """sound_events: events lie inside the clip, one label's events never overlap, and the
    audio is far louder inside events than outside (the noise floor is 20-35 dB down)."""
    task = BUILTIN_TASKS["sound_events"]
    assert task.embedding_type == "event"
    louder = []
    for index in range(12):
        rng = np.random.default_rng([0, index])
        wave, events = task.make(rng, index, task.duration, 16000)
        assert events and all(0 <= e["start"] < e["end"] <= 4000.0 for e in events)
        for label in task.labels:
            spans = sorted((e["start"], e["end"]) for e in events if e["label"] == label)
            assert all(a[1] < b[0] for a, b in itertools.pairwise(spans))
        inside = np.zeros(len(wave), dtype=bool)
        for e in events:
            inside[round(e["start"] * 16) : round(e["end"] * 16)] = True
        if (~inside).sum() > 1600:
            louder.append(np.sqrt(np.mean(wave[inside] ** 2) / np.mean(wave[~inside] ** 2)))
    assert louder and min(louder) > 3.0
