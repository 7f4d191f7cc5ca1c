"""HEAR task folders: every split mode, scene and event tasks, resampled audio, and clear errors
naming the file for malformed ones. ``make_task`` is reused by the other evaluation tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from axlstm.evaluation import (
    DataSplit,
    TaskFormatError,
    UnsupportedTaskError,
    find_tasks,
    load_task,
)

TONES = {"low": 220.0, "mid": 660.0, "high": 1980.0}


def tone(freq: float, sr: int, seconds: float = 0.5, phase: float = 0.0) -> np.ndarray:
    t = np.arange(round(seconds * sr)) / sr
    return (0.4 * np.sin(2 * np.pi * freq * t + phase)).astype(np.float32)


def make_task(
    root: Path,
    name: str = "tones",
    *,
    split_mode: str = "trainvaltest",
    folds: int = 3,
    per_split: int = 2,
    sample_rates: tuple[int, ...] = (16000,),
    prediction_type: str = "multiclass",
    embedding_type: str = "scene",
    evaluation: list[str] | None = None,
) -> Path:
    """A small HEAR task: pure tones of three pitches (``per_split`` clips per class and split).

    Multilabel tasks label each clip with its pitch and "loud"/"soft" from its amplitude.
    Event tasks hold one event per clip.
    """
    task = root / name
    task.mkdir(parents=True)
    labels = list(TONES)
    if prediction_type == "multilabel":
        labels += ["loud", "soft"]
    if split_mode == "trainvaltest":
        splits = ["train", "valid", "test"]
    else:
        splits = [f"fold{i:02d}" for i in range(folds)]
    meta = {
        "task_name": name,
        "version": "test",
        "embedding_type": embedding_type,
        "prediction_type": prediction_type,
        "split_mode": split_mode,
        "sample_duration": 0.5,
        "evaluation": evaluation or (["top1_acc"] if prediction_type == "multiclass" else ["mAP"]),
        "splits": splits,
    }
    if split_mode != "trainvaltest":
        meta["nfolds"] = folds
    (task / "task_metadata.json").write_text(json.dumps(meta))
    (task / "labelvocabulary.csv").write_text(
        "idx,label\n" + "".join(f"{i},{x}\n" for i, x in enumerate(labels))
    )
    rng = np.random.default_rng(0)
    n = 0
    for split in splits:
        entries = {}
        for label, freq in TONES.items():
            for _ in range(per_split):
                fname = f"clip{n:03d}.wav"
                loud = n % 2 == 0
                for sr in sample_rates:
                    folder = task / str(sr) / split
                    folder.mkdir(parents=True, exist_ok=True)
                    wave = tone(freq * rng.uniform(0.98, 1.02), sr) * (1.0 if loud else 0.3)
                    sf.write(folder / fname, wave, sr, subtype="PCM_16")
                if embedding_type == "event":
                    entries[fname] = [{"label": label, "start": 50.0, "end": 400.0}]
                elif prediction_type == "multilabel":
                    entries[fname] = [label, "loud" if loud else "soft"]
                else:
                    entries[fname] = [label]
                n += 1
        (task / f"{split}.json").write_text(json.dumps(entries))
    return task


# ------------------------------------------------------------------------------- split modes
def test_trainvaltest_multiclass(tmp_path):
    task = load_task(make_task(tmp_path))
    assert task.name == "tones"
    assert task.splits == ["train", "valid", "test"]
    assert task.labels == ["low", "mid", "high"]
    assert task.scores == ["top1_acc"] and task.primary_score == "top1_acc"
    assert task.data_splits() == [DataSplit(("train",), ("valid",), ("test",))]
    assert task.sample_rate == 16000
    y = task.targets("train")
    assert y.shape == (6, 3) and (y.sum(axis=1) == 1).all()
    assert y[:2].argmax(1).tolist() == [0, 0]  # rows follow the JSON order
    paths = task.audio_paths("test")
    assert all(p.is_file() and p.parent == tmp_path / "tones" / "16000" / "test" for p in paths)
    assert "trainvaltest" in task.describe()


@pytest.mark.parametrize("mode", ["new_split_kfold", "presplit_kfold"])
def test_kfold_splits_follow_hear(tmp_path, mode):
    task = load_task(make_task(tmp_path, split_mode=mode, folds=4))
    assert task.splits == ["fold00", "fold01", "fold02", "fold03"]
    splits = task.data_splits()
    assert len(splits) == 4
    for i, s in enumerate(splits):  # fold i test, fold i+1 validation, the rest training
        assert s.test == (f"fold{i:02d}",)
        assert s.valid == (f"fold{(i + 1) % 4:02d}",)
        assert set(s.train) == set(task.splits) - {s.test[0], s.valid[0]}
        assert list(s.train) == sorted(s.train)


def test_kfold_folds_are_sorted(tmp_path):
    folder = make_task(tmp_path, split_mode="presplit_kfold", folds=3)
    meta = json.loads((folder / "task_metadata.json").read_text())
    meta["splits"] = ["fold02", "fold00", "fold01"]
    (folder / "task_metadata.json").write_text(json.dumps(meta))
    task = load_task(folder)
    assert task.splits == ["fold00", "fold01", "fold02"]
    assert task.data_splits()[0] == DataSplit(("fold02",), ("fold01",), ("fold00",))


def test_multilabel_targets(tmp_path):
    task = load_task(make_task(tmp_path, prediction_type="multilabel"))
    assert task.scores == ["mAP"]
    y = task.targets("train")
    assert y.shape == (6, 5)
    assert (y.sum(axis=1) == 2).all()


def test_event_task_is_read_and_refused_as_a_scene_task(tmp_path):
    task = load_task(
        make_task(tmp_path, embedding_type="event", evaluation=["event_onset_200ms_fms"])
    )
    assert task.embedding_type == "event"
    first = next(iter(task.entries["train"].values()))
    assert first == [{"label": "low", "start": 50.0, "end": 400.0}]
    with pytest.raises(UnsupportedTaskError, match=r"event \(timestamp\) task"):
        task.require_scene()
    with pytest.raises(UnsupportedTaskError):
        task.targets("train")


def test_48k_only_task_is_read_and_resampled(tmp_path):
    from axlstm.evaluation import LogMelBaseline

    only48 = load_task(make_task(tmp_path / "a", sample_rates=(48000,)))
    assert only48.sample_rate == 48000
    both = load_task(make_task(tmp_path / "b", sample_rates=(48000, 16000)))
    assert both.sample_rate == 16000  # 16 kHz is preferred when present
    baseline = LogMelBaseline()
    a = next(baseline.embed_files([only48.audio_paths("train")[0]]))
    b = next(baseline.embed_files([both.audio_paths("train")[0]]))
    assert a.ok and b.ok and a.scene.shape == b.scene.shape == (320,)
    assert abs(a.duration - 0.5) < 1e-3


def test_find_tasks(tmp_path):
    make_task(tmp_path, "b_task")
    make_task(tmp_path, "a_task")
    assert [p.name for p in find_tasks(tmp_path)] == ["a_task", "b_task"]
    assert find_tasks(tmp_path / "a_task") == [tmp_path / "a_task"]
    with pytest.raises(TaskFormatError, match="neither a HEAR task folder"):
        find_tasks(tmp_path / "a_task" / "16000")


# ----------------------------------------------------------------------------------- errors
def _edit_json(path: Path, fn) -> None:
    path.write_text(json.dumps(fn(json.loads(path.read_text()))))


def _set(key, value):
    def fn(meta):
        meta[key] = value
        return meta

    return fn


def _drop(key):
    def fn(meta):
        meta.pop(key)
        return meta

    return fn


BAD_CASES = [
    ("task_metadata.json", lambda p: p.unlink(), "not a HEAR task folder"),
    ("task_metadata.json", lambda p: p.write_text("{not json"), "task_metadata.json: invalid JSON"),
    ("task_metadata.json", lambda p: p.write_text("[1, 2]"), "expected a JSON object"),
    (
        "task_metadata.json",
        lambda p: _edit_json(p, _set("split_mode", "random")),
        "split_mode is 'random'",
    ),
    (
        "task_metadata.json",
        lambda p: _edit_json(p, _drop("embedding_type")),
        "missing key 'embedding_type'",
    ),
    (
        "task_metadata.json",
        lambda p: _edit_json(p, _set("prediction_type", "regression")),
        "prediction_type is 'regression'",
    ),
    (
        "task_metadata.json",
        lambda p: _edit_json(p, _set("evaluation", ["bleu"])),
        "unknown scores",
    ),
    (
        "task_metadata.json",
        lambda p: _edit_json(p, _set("splits", ["train", "test"])),
        "needs splits train, valid, test",
    ),
    ("labelvocabulary.csv", lambda p: p.unlink(), "labelvocabulary.csv: file not found"),
    ("labelvocabulary.csv", lambda p: p.write_text("id,name\n0,a\n"), "lacks 'idx' and 'label'"),
    (
        "labelvocabulary.csv",
        lambda p: p.write_text("idx,label\n0,low\n2,mid\n3,high\n"),
        "without gaps",
    ),
    (
        "labelvocabulary.csv",
        lambda p: p.write_text("idx,label\n0,low\nx,mid\n"),
        "labelvocabulary.csv:3: idx 'x'",
    ),
    ("train.json", lambda p: p.unlink(), "train.json: file not found"),
    ("valid.json", lambda p: p.write_text('{"a.wav": "low"}'), "labels must be a list"),
    (
        "valid.json",
        lambda p: p.write_text('{"a.wav": ["purple"]}'),
        r"valid.json: a.wav: labels \['purple'\] are not in labelvocabulary.csv",
    ),
    (
        "test.json",
        lambda p: p.write_text('{"a.wav": ["low", "mid"]}'),
        "exactly one label per file",
    ),
    ("16000", lambda p: p.rename(p.parent / "audio"), "no audio folder <rate>/<split>/"),
]


@pytest.mark.parametrize(("target", "corrupt", "message"), BAD_CASES)
def test_bad_task_gives_clear_error(tmp_path, target, corrupt, message):
    folder = make_task(tmp_path)
    corrupt(folder / target)
    with pytest.raises(TaskFormatError, match=message) as info:
        load_task(folder)
    if target != "16000":
        assert str(folder) in str(info.value)  # the message names the file or folder


def test_kfold_errors(tmp_path):
    folder = make_task(tmp_path, split_mode="new_split_kfold", folds=3)
    _edit_json(folder / "task_metadata.json", _set("nfolds", 5))
    with pytest.raises(TaskFormatError, match="nfolds is 5"):
        load_task(folder)
    _edit_json(folder / "task_metadata.json", _set("splits", ["fold00", "fold01"]))
    with pytest.raises(TaskFormatError, match="at least 3 folds"):
        load_task(folder)


def test_duplicate_file_and_missing_audio(tmp_path):
    folder = make_task(tmp_path)
    train = json.loads((folder / "train.json").read_text())
    valid = json.loads((folder / "valid.json").read_text())
    valid.update(dict(list(train.items())[:1]))
    (folder / "valid.json").write_text(json.dumps(valid))
    with pytest.raises(TaskFormatError, match=r"in both train\.json and valid\.json"):
        load_task(folder)

    folder = make_task(tmp_path / "other")
    (folder / "16000" / "test" / "clip012.wav").unlink()
    task = load_task(folder)
    with pytest.raises(TaskFormatError, match=r"1 audio files missing: .*clip012.wav"):
        task.check_audio()


def test_event_with_bad_times(tmp_path):
    folder = make_task(tmp_path, embedding_type="event", evaluation=["event_onset_200ms_fms"])
    (folder / "train.json").write_text('{"a.wav": [{"label": "low", "start": 9, "end": 1}]}')
    with pytest.raises(TaskFormatError, match=r"train\.json: a\.wav: event ends before it starts"):
        load_task(folder)
