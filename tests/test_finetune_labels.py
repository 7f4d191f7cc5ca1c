"""Labelled data for fine-tuning (``axlstm.finetune.labels``): manifests, class folders and HEAR
task folders, the valid draw, k-fold arrangements, and every bad input named clearly or
skipped and counted."""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from axlstm.core.errors import InputError, UsageError
from axlstm.finetune.labels import LabelledItem, load_labelled, subset_training
from test_evaluation_tasks import make_task


def wav(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.zeros(160, dtype=np.float32), 16000, subtype="PCM_16")
    return path


def manifest(root: Path, rows: list[tuple], name: str = "data.csv", header="path,label,split"):
    """A CSV manifest; the audio of every row is written, except rows whose path starts
    with "missing"."""
    lines = [header]
    for row in rows:
        if not str(row[0]).startswith("missing"):
            wav(root / row[0])
        lines.append(",".join(str(x) for x in row))
    (root / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root / name


def labelled(root: Path, n: int, label: str, split: str | None = None) -> list[tuple]:
    return [
        (f"{label}{i}.wav", label, split) if split else (f"{label}{i}.wav", label) for i in range(n)
    ]


# -------------------------------------------------------------------------------- manifests
def test_manifest_with_splits(tmp_path):
    rows = labelled(tmp_path, 2, "dog", "train") + labelled(tmp_path, 2, "cat", "training")
    rows += [("v/dog.wav", "dog", "validation"), ("t/cat.wav", "cat", "Test")]
    data = load_labelled(manifest(tmp_path, rows))
    assert data.vocabulary == ["cat", "dog"]  # sorted
    assert not data.multilabel and data.folds is None
    assert list(data.splits) == ["train", "valid", "test"]
    assert [len(v) for v in data.splits.values()] == [4, 1, 1]
    assert data.splits["train"][0] == LabelledItem(str(tmp_path / "dog0.wav"), (1,))
    assert data.splits["valid"][0].path == str(tmp_path / "v" / "dog.wav")  # from the manifest
    y = data.targets(data.splits["train"])
    assert y.dtype == np.float32 and y.tolist() == [[0, 1], [0, 1], [1, 0], [1, 0]]
    assert data.counts("train").tolist() == [2, 2] and data.counts("test").tolist() == [1, 0]
    assert data.skipped == {}
    assert "multiclass, 2 classes" in data.describe() and "train 4, valid 1, test 1" in (
        data.describe()
    )


def test_valid_split_drawn_stratified_and_seeded(tmp_path):
    rows = labelled(tmp_path, 10, "a") + labelled(tmp_path, 20, "b") + labelled(tmp_path, 1, "c")
    path = manifest(tmp_path, rows, header="file,label")
    data = load_labelled(path, valid_fraction=0.2, seed=3)
    assert data.counts("valid").tolist() == [2, 4, 0]  # 20 % of each class; c keeps its clip
    assert data.counts("train").tolist() == [8, 16, 1]
    every = sorted(i.path for s in data.splits.values() for i in s)
    assert every == sorted(str(tmp_path / r[0]) for r in rows)
    again = load_labelled(path, valid_fraction=0.2, seed=3)
    assert again.splits == data.splits
    other = load_labelled(path, valid_fraction=0.2, seed=4)
    assert other.splits["valid"] != data.splits["valid"]
    assert "seed 3" in data.source
    assert list(load_labelled(path, valid_fraction=0.0).splits) == ["train"]


def test_valid_draw_keeps_every_class_in_training_for_multilabel(tmp_path):
    # "x" appears only on clips whose rarest label is "r": the draw must leave one in train
    rows = [(f"r{i}.wav", "r;x") for i in range(2)] + labelled(tmp_path, 10, "y")
    data = load_labelled(manifest(tmp_path, rows, header="path,label"), valid_fraction=0.5)
    assert data.multilabel
    assert (data.counts("train") > 0).all()
    assert data.counts("valid").sum() > 0


def test_multilabel_inferred_and_refused_when_multiclass_forced(tmp_path):
    rows = [("a.wav", "dog; cat", "train"), ("b.wav", "cat", "train"), ("c.wav", "dog;", "train")]
    path = manifest(tmp_path, [*rows, ("d.wav", "cat", "test")])
    data = load_labelled(path, valid_fraction=0)
    assert data.multilabel and data.vocabulary == ["cat", "dog"]
    assert data.targets(data.splits["train"]).tolist() == [[1, 1], [1, 0], [0, 1]]
    with pytest.raises(InputError, match=r"data\.csv:2: 2 labels .* multiclass"):
        load_labelled(path, multilabel=False)
    other = load_labelled(path, label_delimiter="|", valid_fraction=0)
    assert other.vocabulary == ["cat", "dog;", "dog; cat"] and not other.multilabel


def test_jsonl_lists_and_fold_numbers(tmp_path):
    lines = []
    for fold in (1, 2, 3):
        for label in ("a", "b"):
            name = f"f{fold}{label}.wav"
            wav(tmp_path / name)
            lines.append(json.dumps({"path": name, "label": [label, "z"], "split": fold}))
    (tmp_path / "m.jsonl").write_text("\n".join(lines) + "\n\n")
    data = load_labelled(tmp_path / "m.jsonl")
    assert data.folds == ["fold01", "fold02", "fold03"] and list(data.splits) == data.folds
    assert data.multilabel and data.vocabulary == ["a", "b", "z"]
    split = data.fold_split("fold2")  # the manifest's spelling works too
    assert set(split) == {"train", "test"}
    assert [Path(i.path).name for i in split["test"]] == ["f2a.wav", "f2b.wav"]
    assert len(split["train"]) == 4 and split == data.fold_split("fold02")
    assert split == data.fold_split("2")
    with_valid = data.fold_split("fold01", valid_fraction=0.5, seed=0)
    assert list(with_valid) == ["train", "valid", "test"] and len(with_valid["valid"]) == 2
    with pytest.raises(UsageError, match="unknown fold"):
        data.fold_split("fold07")
    with pytest.raises(UsageError, match="no split 'train'"):
        data.counts("train")


def test_tsv_with_byte_order_mark_and_other_encodings(tmp_path):
    wav(tmp_path / "é.wav")
    wav(tmp_path / "b.wav")
    text = "path\tgenre\né.wav\tjazz\nb.wav\tpop\n"
    (tmp_path / "m.tsv").write_bytes(b"\xef\xbb\xbf" + text.encode())
    data = load_labelled(tmp_path / "m.tsv", label_column="genre", valid_fraction=0)
    assert data.vocabulary == ["jazz", "pop"]
    (tmp_path / "l.tsv").write_bytes(text.encode("latin-1"))
    with pytest.raises(InputError, match=r"l\.tsv: not UTF-8 text \(byte 0xe9"):
        load_labelled(tmp_path / "l.tsv", label_column="genre")


def test_not_k_fold_data_has_no_fold_split(tmp_path):
    data = load_labelled(
        manifest(
            tmp_path, labelled(tmp_path, 2, "a") + labelled(tmp_path, 2, "b"), header="path,label"
        )
    )
    with pytest.raises(UsageError, match="not k-fold"):
        data.fold_split("fold01")


# ------------------------------------------------------------------------ bad manifest rows
BAD_MANIFESTS = {
    "empty label": ("path,label\na.wav,x\nb.wav,\n", r"m\.csv:3: empty label \(column 'label'\)"),
    "only delimiters": ("path,label\na.wav,x\nb.wav, ; \n", r"m\.csv:3: empty label"),
    "no label column": (
        "path,class\na.wav,x\n",
        r"no label column 'label'; the columns are \['path', 'class'\]",
    ),
    "no path column": ("name,label\na.wav,x\n", r"m\.csv: the header needs a 'path' column"),
    "unknown split": (
        "path,label,split\na.wav,x,train\nb.wav,y,holdout\n",
        r"m\.csv:3: split 'holdout'",
    ),
    "empty split": ("path,label,split\na.wav,x,train\nb.wav,y,\n", r"m\.csv:3: split ''"),
    "unquoted delimiter": ("path,label\na.wav,x,y\n", r"m\.csv:2: 3 fields but the header has 2"),
    "no rows": ("path,label\n\n", r"m\.csv: the manifest lists no clips"),
    "class only in test": (
        "path,label,split\na.wav,x,train\nb.wav,y,train\nc.wav,z,test\n",
        r"m\.csv: class 'z' has no training clip \(only test: 1\)",
    ),
    "class only in valid": (
        "path,label,split\na.wav,x,train\nb.wav,y,train\nc.wav,z,valid\n",
        r"m\.csv: class 'z' has no training clip \(only valid: 1\)",
    ),
    "no train split": ("path,label,split\na.wav,x,test\nb.wav,y,test\n", "no training clips"),
    "single class": ("path,label\na.wav,x\nb.wav,x\n", r"a single class \['x'\]"),
    "missing fold": (
        "path,label,split\na.wav,x,fold1\nb.wav,y,fold2\nc.wav,x,4\nd.wav,y,4\n",
        "fold 3 is missing",
    ),
    "one fold": ("path,label,split\na.wav,x,fold1\nb.wav,y,fold1\n", "one fold"),
    "class in one fold": (
        "path,label,split\na.wav,x,1\nb.wav,y,1\nc.wav,x,2\nd.wav,y,2\ne.wav,z,2\n",
        r"m\.csv: class 'z' has clips only in fold02",
    ),
    "folds mixed with splits": (
        "path,label,split\na.wav,x,fold1\nb.wav,y,train\n",
        r"m\.csv:3: split 'train' in k-fold data",
    ),
    "header names a column twice": ("path,label,label\na.wav,x,y\n", "names a column twice"),
    "bad JSON label": (None, r"m\.jsonl:1: labels must be names"),
}


@pytest.mark.parametrize("case", sorted(BAD_MANIFESTS))
def test_bad_manifests_are_named(tmp_path, case):
    text, pattern = BAD_MANIFESTS[case]
    for name in "abcde":
        wav(tmp_path / f"{name}.wav")
    if text is None:
        path = tmp_path / "m.jsonl"
        path.write_text(json.dumps({"path": "a.wav", "label": {"x": 1}}) + "\n")
    else:
        path = tmp_path / "m.csv"
        path.write_text(text)
    with pytest.raises(InputError, match=pattern):
        load_labelled(path)


def test_missing_files_are_skipped_and_counted_or_refused(tmp_path, caplog):
    rows = labelled(tmp_path, 3, "a", "train") + labelled(tmp_path, 3, "b", "train")
    rows += [("missing1.wav", "a", "train"), ("missing2.wav", "b", "test"), ("t.wav", "a", "test")]
    os.mkfifo(tmp_path / "pipe.wav")
    rows.append(("pipe.wav", "b", "train"))
    path = manifest(tmp_path, rows[:-1])
    with open(path, "a") as f:
        f.write("pipe.wav,b,train\n")
    with caplog.at_level(logging.WARNING):
        data = load_labelled(path)
    assert data.skipped["missing file"] == [
        str(tmp_path / "missing1.wav"),
        str(tmp_path / "missing2.wav"),
    ]
    assert data.skipped["unusable file"] == [str(tmp_path / "pipe.wav")]
    assert len(data.splits["train"]) == 6  # too few clips per class to draw a valid split
    assert len(data.splits["test"]) == 1
    assert "skipped 3 (missing file 2, unusable file 1)" in data.describe()
    assert "skipped 2 (missing file)" in caplog.text and "missing1.wav" in caplog.text
    with pytest.raises(InputError, match=r"data\.csv:8: audio file not found: .*missing1\.wav"):
        load_labelled(path, missing="error")


def test_duplicates_kept_once(tmp_path):
    rows = labelled(tmp_path, 2, "a") + labelled(tmp_path, 2, "b")
    os.symlink(tmp_path / "a0.wav", tmp_path / "link.wav")
    rows += [("./a0.wav", "b"), ("sub/../a1.wav", "a"), ("link.wav", "a")]
    (tmp_path / "sub").mkdir()
    data = load_labelled(manifest(tmp_path, rows, header="path,label"), valid_fraction=0)
    assert len(data.splits["train"]) == 4
    assert data.splits["train"][0].path == str(tmp_path / "a0.wav")  # the first name is kept
    assert len(data.skipped["duplicate"]) == 3


def test_skips_that_empty_a_class_a_fold_or_everything(tmp_path):
    rows = [*labelled(tmp_path, 2, "a", "train"), ("missing.wav", "b", "train")]
    with pytest.raises(InputError, match="class 'b': all its clips were skipped"):
        load_labelled(manifest(tmp_path, rows))
    rows = [("a.wav", "x", 1), ("b.wav", "y", 1), ("c.wav", "x", 2), ("d.wav", "y", 2)]
    rows += [("missing.wav", "x", 3)]
    with pytest.raises(InputError, match="fold fold03 has no usable clip"):
        load_labelled(manifest(tmp_path, rows))
    rows = [("missing1.wav", "x", "train"), ("missing2.wav", "y", "train")]
    with pytest.raises(InputError, match=r"no usable clips \(2 skipped\)"):
        load_labelled(manifest(tmp_path, rows))


def test_arguments_and_sources_checked(tmp_path):
    path = manifest(
        tmp_path, labelled(tmp_path, 1, "a") + labelled(tmp_path, 1, "b"), header="path,label"
    )
    with pytest.raises(UsageError, match="missing must be"):
        load_labelled(path, missing="ignore")
    with pytest.raises(UsageError, match="valid_fraction"):
        load_labelled(path, valid_fraction=1.0)
    with pytest.raises(FileNotFoundError, match="labelled data not found"):
        load_labelled(tmp_path / "nothing")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="not a manifest"):
        load_labelled(tmp_path / "notes.txt")
    with pytest.raises(FileNotFoundError):
        load_labelled(tmp_path / "nothing.csv")


# ------------------------------------------------------------------------------ class folders
def test_class_folders(tmp_path, caplog):
    for name in ("dog/a.wav", "dog/deep/b.flac", "cat/c.wav", ".hidden/d.wav", "loose.wav"):
        wav(tmp_path / name)
    (tmp_path / "dog" / "notes.txt").write_text("not audio")
    (tmp_path / "empty").mkdir()
    with caplog.at_level(logging.WARNING):
        data = load_labelled(tmp_path, valid_fraction=0)
    assert data.vocabulary == ["cat", "dog"] and list(data.splits) == ["train"]
    assert sorted(Path(i.path).name for i in data.splits["train"]) == ["a.wav", "b.flac", "c.wav"]
    assert data.skipped == {"not in a class folder": [str(tmp_path / "loose.wav")]}
    assert "class folder; ignored" in caplog.text and "empty" in caplog.text
    assert data.source.startswith("class folders ")


def test_split_folders_of_class_folders(tmp_path):
    for name in (
        "train/a/1.wav",
        "train/a/2.wav",
        "train/b/3.wav",
        "validation/a/4.wav",
        "test/b/5.wav",
    ):
        wav(tmp_path / name)
    data = load_labelled(tmp_path)
    assert list(data.splits) == ["train", "valid", "test"]
    assert data.counts("valid").tolist() == [1, 0] and data.counts("test").tolist() == [0, 1]
    wav(tmp_path / "test" / "c" / "6.wav")
    with pytest.raises(InputError, match=r"class 'c' has no training clip \(only test: 1\)"):
        load_labelled(tmp_path)


def test_folder_without_class_folders(tmp_path):
    wav(tmp_path / "a.wav")
    with pytest.raises(InputError, match="no sub-folders"):
        load_labelled(tmp_path)


# ------------------------------------------------------------------------------------- HEAR
def test_hear_trainvaltest_task(tmp_path):
    folder = make_task(tmp_path)
    data = load_labelled(folder)
    assert data.vocabulary == ["low", "mid", "high"]  # the task's own class order
    assert list(data.splits) == ["train", "valid", "test"] and data.folds is None
    assert [len(v) for v in data.splits.values()] == [6, 6, 6]
    assert data.targets(data.splits["train"]).sum(axis=1).tolist() == [1.0] * 6
    assert all(Path(i.path).is_file() and os.path.isabs(i.path) for i in data.splits["test"])
    assert data.source.startswith("HEAR task ")


def test_hear_kfold_and_multilabel_tasks(tmp_path):
    data = load_labelled(make_task(tmp_path, "k", split_mode="new_split_kfold", folds=3))
    assert data.folds == ["fold00", "fold01", "fold02"]
    split = data.fold_split("fold01")
    assert len(split["train"]) == 12 and len(split["test"]) == 6
    multi = load_labelled(make_task(tmp_path, "m", prediction_type="multilabel"))
    assert multi.multilabel and multi.vocabulary[-2:] == ["loud", "soft"]
    assert (multi.targets(multi.splits["train"]).sum(axis=1) == 2).all()
    with pytest.raises(InputError, match="multiclass data"):
        load_labelled(tmp_path / "m", multilabel=False)


def test_hear_missing_audio_skipped_or_refused_and_event_tasks_refused(tmp_path):
    folder = make_task(tmp_path)
    victim = sorted((folder / "16000" / "valid").iterdir())[0]
    victim.unlink()
    data = load_labelled(folder)
    assert data.skipped == {"missing file": [str(victim)]} and len(data.splits["valid"]) == 5
    with pytest.raises(InputError, match=rf"valid\.json: {victim.name}: audio file not found"):
        load_labelled(folder, missing="error")
    with pytest.raises(InputError, match=r"event .* task"):
        load_labelled(
            make_task(tmp_path, "ev", embedding_type="event", evaluation=["event_onset_200ms_fms"])
        )


# ------------------------------------------------------------------ training subsets
def _items(draw_labels: list[tuple[int, ...]]) -> list[LabelledItem]:
    return [LabelledItem(f"clip{i}.wav", labels) for i, labels in enumerate(draw_labels)]


_multiclass = st.lists(st.integers(0, 5).map(lambda c: (c,)), min_size=1, max_size=60)
_multilabel = st.lists(
    st.sets(st.integers(0, 5), min_size=1, max_size=3).map(lambda s: tuple(sorted(s))),
    min_size=1,
    max_size=60,
)


@settings(max_examples=60, deadline=None)
@given(
    labels=st.one_of(_multiclass, _multilabel),
    fraction=st.sampled_from([0.05, 0.3, 0.5, 1.0]),
    per_class=st.one_of(st.none(), st.integers(1, 5)),
    seed=st.integers(0, 3),
)
def test_subset_keeps_every_class_the_source_order_and_its_seed(labels, fraction, per_class, seed):
    items = _items(labels)
    sub = subset_training(items, fraction=fraction, per_class=per_class, seed=seed)
    # a sub-list in source order, every class still trained on
    positions = [items.index(it) for it in sub]
    assert positions == sorted(set(positions))
    assert {c for it in sub for c in it.labels} == {c for it in items for c in it.labels}
    assert sub == subset_training(items, fraction=fraction, per_class=per_class, seed=seed)
    if fraction == 1.0 and per_class is None:
        assert sub == items
    if all(len(it.labels) == 1 for it in items):  # multiclass: the cap and the share hold
        full = Counter(it.labels[0] for it in items)
        got = Counter(it.labels[0] for it in sub)
        for c, n in full.items():
            want = max(1, int(fraction * n + 0.5))
            if per_class is not None:
                want = min(want, per_class)
            assert got[c] == want, (c, n)


def test_subset_differs_by_seed_and_caps_per_class():
    items = _items([(c,) for c in range(4) for _ in range(10)])
    a = subset_training(items, per_class=3, seed=0)
    b = subset_training(items, per_class=3, seed=1)
    assert len(a) == len(b) == 12 and a != b
    assert Counter(it.labels[0] for it in a) == {0: 3, 1: 3, 2: 3, 3: 3}
    half = subset_training(items, fraction=0.5, seed=0)
    assert Counter(it.labels[0] for it in half) == {0: 5, 1: 5, 2: 5, 3: 5}
