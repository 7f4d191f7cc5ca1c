"""Evaluation on hostile or broken input, and interrupted: task splits cannot leave the task
folder, one-class tasks are refused, non-finite embeddings fail clearly, finished results are
kept and reused, broken task folders give one clear error, numeric options are checked."""

from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from axlstm.cli.main import main
from axlstm.core.errors import AxlstmError, CheckpointError, InputError
from axlstm.embedding import FileEmbedding
from axlstm.evaluation import (
    DataSplit,
    EmbeddingError,
    LogMelBaseline,
    ModelSpec,
    ProbeConfig,
    ProbeData,
    TaskFormatError,
    evaluate_probe,
    load_task,
    prepare_tasks,
    run_evaluation,
    task_embeddings,
)
from axlstm.evaluation import runner as runner_module
from axlstm.evaluation.probe import _map
from test_evaluation_tasks import make_task

QUICK = ["--seeds", "2", "--max-epochs", "3", "--no-progress", "--no-charts", "--jobs", "1"]


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def _write_json(path: Path, value) -> None:
    path.write_text(json.dumps(value), encoding="utf-8")


def _first_entry(folder: Path, split: str = "train") -> str:
    return next(iter(_json(folder / f"{split}.json")))


# ----------------------------------------------------------- 1. splits stay in the task folder
def _rename_entry(folder: Path, split: str, new: str) -> None:
    data = _json(folder / f"{split}.json")
    old = next(iter(data))
    data = {(new if k == old else k): v for k, v in data.items()}
    _write_json(folder / f"{split}.json", data)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("../../outside.wav", "with '..'"),
        ("sub/../../../outside.wav", "with '..'"),
        ("/etc/passwd", "an absolute path"),
        ("", "an empty file name"),
        ("a\0b.wav", "NUL"),
    ],
)
def test_split_entry_cannot_leave_the_task(tmp_path, entry, message):
    folder = make_task(tmp_path)
    (tmp_path / "outside.wav").write_bytes(b"x")
    _rename_entry(folder, "train", entry)
    with pytest.raises(TaskFormatError, match=message) as info:
        load_task(folder)
    assert str(folder / "train.json") in str(info.value)
    assert repr(entry) in str(info.value)  # the entry is named
    assert isinstance(info.value, InputError) and isinstance(info.value, AxlstmError)


def test_symlink_out_of_the_audio_folder_is_refused(tmp_path):
    folder = make_task(tmp_path / "tasks")
    secret = tmp_path / "secret.wav"
    (folder / "16000" / "train" / "clip000.wav").replace(secret)
    (folder / "16000" / "train" / "clip000.wav").symlink_to(secret)
    with pytest.raises(TaskFormatError, match=r"outside the task's audio folder") as info:
        load_task(folder)
    text = str(info.value)
    assert str(folder / "train.json") in text and "'clip000.wav'" in text

    # A split folder that is a link to elsewhere leaves the folder too.
    folder = make_task(tmp_path / "tasks2")
    elsewhere = tmp_path / "elsewhere"
    (folder / "16000" / "valid").replace(elsewhere)
    (folder / "16000" / "valid").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(TaskFormatError, match=r"valid\.json: entry .* outside"):
        load_task(folder)


def test_links_inside_the_audio_folder_are_fine(tmp_path):
    folder = make_task(tmp_path)
    train = folder / "16000" / "train"
    (train / "clip000.wav").replace(folder / "16000" / "shared.wav")
    (train / "clip000.wav").symlink_to(Path("..") / "shared.wav")
    task = load_task(folder)
    task.check_audio()
    assert task.audio_paths("train")[0].is_file()


def test_split_name_cannot_name_a_path(tmp_path):
    folder = make_task(tmp_path, split_mode="presplit_kfold", folds=3)
    meta = _json(folder / "task_metadata.json")
    meta["splits"] = ["fold00", "fold01", "../../fold02"]
    _write_json(folder / "task_metadata.json", meta)
    with pytest.raises(TaskFormatError, match=r"split name '\.\./\.\./fold02' is not a plain"):
        load_task(folder)


# --------------------------------------------------------------------- 2. one-class tasks
def test_one_label_vocabulary_is_refused(tmp_path):
    folder = make_task(tmp_path)
    (folder / "labelvocabulary.csv").write_text("idx,label\n0,low\n")
    for split in ("train", "valid", "test"):
        data = _json(folder / f"{split}.json")
        _write_json(folder / f"{split}.json", {k: ["low"] for k in data})
    with pytest.raises(TaskFormatError, match=r"a single label .*at least two classes") as info:
        load_task(folder)
    assert "labelvocabulary.csv" in str(info.value)


def test_one_class_training_set_is_refused(tmp_path):
    folder = make_task(tmp_path)
    data = _json(folder / "train.json")
    _write_json(folder / "train.json", {k: ["mid"] for k in data})
    with pytest.raises(TaskFormatError, match=r"every training file in train\.json has the lab"):
        load_task(folder)


def test_kfold_one_class_training_fold_is_refused(tmp_path):
    # Three folds, each of one class: every probe trains on one fold, so on one class.
    folder = make_task(tmp_path, split_mode="new_split_kfold", folds=3)
    for i, label in enumerate(["low", "mid", "high"]):
        path = folder / f"fold{i:02d}.json"
        _write_json(path, {k: [label] for k in _json(path)})
    with pytest.raises(TaskFormatError, match=r"split 0: test fold00, valid fold01\) in fold02"):
        load_task(folder)
    # With four folds two train together and the task is fine.
    folder = make_task(tmp_path / "four", split_mode="new_split_kfold", folds=4)
    for i, label in enumerate(["low", "mid", "low", "mid"]):
        path = folder / f"fold{i:02d}.json"
        _write_json(path, {k: [label] for k in _json(path)})
    assert len(load_task(folder).data_splits()) == 4


def test_probe_refuses_one_class_training_data():
    x = {s: np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32) for s in "abc"}
    y = {s: np.eye(3, dtype=np.float32)[[0, 0, 0, 0, 0, 0]] for s in "abc"}
    data = ProbeData(x, y, "multiclass", ["top1_acc"], [DataSplit(("a",), ("b",), ("c",))])
    with pytest.raises(ValueError, match="single class"):
        evaluate_probe(data, [0], ProbeConfig(max_epochs=3))


def test_one_class_task_never_enters_the_mean(tmp_path):
    good = make_task(tmp_path / "t", "good")
    bad = make_task(tmp_path / "t", "bad")
    for split in ("train", "valid", "test"):
        _write_json(bad / f"{split}.json", {k: ["low"] for k in _json(bad / f"{split}.json")})
    specs = prepare_tasks([tmp_path / "t"])
    assert {s.key: s.task is None for s in specs} == {"bad": True, "good": False}
    assert "two classes" in next(s.error for s in specs if s.key == "bad")
    report = run_evaluation(
        [ModelSpec("logmel", "logmel")],
        specs,
        tmp_path / "r",
        seeds=2,
        probe=ProbeConfig(max_epochs=3),
        charts=False,
    )
    assert report.aggregates()["logmel"]["mean"] is None
    assert report.results()["logmel"]["bad"]["mean"] is None
    assert good.is_dir()


# -------------------------------------------------------------- 3. non-finite embeddings
class _NanEmbedder(LogMelBaseline):
    """The log-mel baseline, with NaN in the embedding of the files named in ``bad``."""

    def __init__(self, bad=()):
        super().__init__("nan")
        self.bad = set(bad)
        self.calls = 0

    def embed_files(self, paths):
        for result in super().embed_files(paths):
            self.calls += 1
            if Path(result.path).name in self.bad:
                scene = result.scene.copy()
                scene[3] = np.nan
                result = FileEmbedding(result.path, scene=scene, duration=result.duration)
            yield result


def test_non_finite_embedding_fails_the_file(tmp_path):
    task = load_task(make_task(tmp_path / "tasks", per_split=1))
    name = task.files("valid")[1]
    with pytest.raises(EmbeddingError, match=rf"1 of 9 files .*{name}: .*non-finite") as info:
        task_embeddings(_NanEmbedder([name]), task, tmp_path / "cache")
    assert isinstance(info.value, AxlstmError)
    assert not list((tmp_path / "cache").rglob("*.npz"))  # nothing wrong was cached


def test_non_finite_cache_entry_is_recomputed(tmp_path):
    task = load_task(make_task(tmp_path / "tasks", per_split=1))
    cache = tmp_path / "cache"
    x, hit = task_embeddings(LogMelBaseline(), task, cache)
    (entry,) = cache.rglob("*.npz")
    with np.load(entry) as data:
        arrays = dict(data)
    arrays["X_train"][0, 0] = np.inf
    with open(entry, "wb") as f:
        np.savez(f, **arrays)
    again, hit = task_embeddings(LogMelBaseline(), task, cache)
    assert not hit and np.isfinite(again["train"]).all()
    np.testing.assert_array_equal(again["train"], x["train"])


def test_model_with_nan_weights_fails_clearly(tmp_path, monkeypatch):
    from axlstm.evaluation import ModelEmbedder
    from axlstm.models import create_model

    torch.manual_seed(0)
    model = create_model("test_axlstm")
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))

    def fake_load(spec, **_):
        if spec.spec == "logmel":
            return LogMelBaseline(spec.label), {"kind": "baseline"}
        return ModelEmbedder(model, spec.label), {"kind": "model"}

    monkeypatch.setattr(runner_module, "load_embedder", fake_load)
    tasks = prepare_tasks([make_task(tmp_path / "tasks", per_split=1)])
    report = run_evaluation(
        [ModelSpec("broken", "x"), ModelSpec("logmel", "logmel")],
        tasks,
        tmp_path / "r",
        seeds=2,
        probe=ProbeConfig(max_epochs=3),
        charts=False,
    )
    results = report.results()
    assert results["broken"]["tones"]["mean"] is None
    assert "non-finite" in results["broken"]["tones"]["error"]
    assert results["logmel"]["tones"]["mean"] is not None
    assert report.aggregates()["broken"]["mean"] is None

    def no_constants(name):
        raise AssertionError(f"results.json holds {name}")

    json.loads((tmp_path / "r" / "results.json").read_text(), parse_constant=no_constants)


def test_probe_refuses_non_finite_embeddings():
    rng = np.random.default_rng(0)
    x = {s: rng.normal(size=(6, 4)).astype(np.float32) for s in "abc"}
    x["c"][2, 1] = np.nan
    y = {s: np.eye(2, dtype=np.float32)[[0, 1, 0, 1, 0, 1]] for s in "abc"}
    data = ProbeData(x, y, "multiclass", ["top1_acc"], [DataSplit(("a",), ("b",), ("c",))])
    with pytest.raises(ValueError, match=r"split c hold 1 non-finite"):
        evaluate_probe(data, [0], ProbeConfig(max_epochs=3))


def test_hear_refuses_non_finite_embeddings():
    from axlstm import hear

    model = hear.load_model("test_axlstm")
    with torch.no_grad():
        next(model.encoder.parameters()).fill_(float("nan"))
    with pytest.raises(CheckpointError, match=r"sounds 0, 1: the model's weights hold NaN"):
        hear.get_scene_embeddings(torch.rand(2, 16000) - 0.5, model)


# ------------------------------------------------------ 4. incremental results, resumable
def _evaluate(task_root: Path, out: Path, *extra: str) -> int:
    return main(
        ["evaluate", "--model", "logmel", "--tasks", str(task_root), "--out", str(out),
         "--no-cache", *QUICK, *extra]
    )  # fmt: skip


@pytest.fixture(scope="module")
def two_tasks(tmp_path_factory):
    root = tmp_path_factory.mktemp("two")
    make_task(root, "a_tones", per_split=2)
    make_task(root, "b_tones", per_split=2)
    return root


def _lines(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines() if x]


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_interrupted_evaluation_keeps_and_reuses_finished_results(
    two_tasks, tmp_path, monkeypatch, capsys, caplog, how
):
    out = tmp_path / "report"
    real = runner_module._probe_outcome
    calls: list[str] = []

    interrupting = [True]

    def interrupt_second(task, *args, **kw):
        calls.append(task.name)
        if task.name == "b_tones" and interrupting[0]:
            if how == "sigterm":
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)  # the handler raises here
            raise KeyboardInterrupt
        return real(task, *args, **kw)

    monkeypatch.setattr(runner_module, "_probe_outcome", interrupt_second)
    assert _evaluate(two_tasks, out) == 130
    assert "interrupted" in capsys.readouterr().err
    assert "run the same evaluation again" in caplog.text
    (line,) = _lines(out)  # the finished task was on disk at once
    assert line["task"] == "a_tones" and len(line["scores"]) == 2
    results = _json(out / "results.json")  # a partial report was written
    assert results["logmel"]["a_tones"]["scores"] == line["scores"]
    assert "interrupted" in results["logmel"]["b_tones"]["error"]

    # The same command continues: a_tones is reused, only b_tones is computed.
    calls.clear()
    interrupting[0] = False
    assert _evaluate(two_tasks, out) == 0
    assert calls == ["b_tones"]
    results = _json(out / "results.json")
    assert results["logmel"]["a_tones"]["scores"] == line["scores"]
    assert len(results["logmel"]["b_tones"]["scores"]) == 2
    details = _json(out / "details.json")["outcomes"]["logmel"]
    assert details["a_tones"]["reused_from"] == str(out / "results.jsonl")
    assert "reused_from" not in details["b_tones"]

    # Other settings (seeds) give other fingerprints: nothing is reused.
    calls.clear()
    assert _evaluate(two_tasks, out, "--seeds", "3") == 0
    assert calls == ["a_tones", "b_tones"]
    # --restart computes everything again.
    calls.clear()
    assert _evaluate(two_tasks, out, "--restart") == 0
    assert calls == ["a_tones", "b_tones"]


def test_results_log_survives_a_cut_line(two_tasks, tmp_path):
    out = tmp_path / "r"
    assert _evaluate(two_tasks / "a_tones", out) == 0
    first = _lines(out)
    assert len(first) == 1
    with open(out / "results.jsonl", "a") as f:
        f.write('{"format": 1, "fingerprint": "cut sh')  # a crash mid-line
    assert _evaluate(two_tasks, out) == 0
    text = (out / "results.jsonl").read_text()
    good = [json.loads(x) for x in text.splitlines() if x.startswith('{"format": 1, "model"')]
    assert [g["task"] for g in good] == ["a_tones", "b_tones"]  # a_tones was reused
    details = _json(out / "details.json")["outcomes"]["logmel"]
    assert "reused_from" in details["a_tones"]


def test_out_is_checked_before_any_work(two_tasks, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cache = tmp_path / "cache"
    code = main(
        ["evaluate", "--model", "logmel", "--tasks", "builtin", "--out", str(blocker / "r"),
         "--cache-dir", str(cache), *QUICK]
    )  # fmt: skip
    assert code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error: cannot write report folder (--out)" in err
    assert str(blocker) in err and "is a file" in err
    assert not cache.exists()  # no built-in task was generated


def test_unwritable_cache_is_checked_first(two_tasks, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code = main(
        ["evaluate", "--model", "logmel", "--tasks", str(two_tasks), "--out", str(tmp_path / "r"),
         "--cache-dir", str(blocker / "c"), *QUICK]
    )  # fmt: skip
    assert code == 1
    assert "cannot write cache folder (--cache-dir)" in capsys.readouterr().err
    assert not (tmp_path / "r" / "results.jsonl").exists()


def test_parallel_trainings_stop_when_one_fails():
    stop = threading.Event()
    started: list[int] = []

    def work(item):
        started.append(item)
        if item == 0:
            raise ValueError("boom")
        for _ in range(500):  # a long training that checks its stop flag every "epoch"
            if stop.is_set():
                raise RuntimeError("stopped")
            time.sleep(0.01)
        return item

    begin = time.perf_counter()
    with pytest.raises(ValueError, match="boom"):
        _map(2, work, list(range(8)), stop)
    assert time.perf_counter() - begin < 4.0  # not 5 s per training
    assert len(started) <= 3  # queued trainings never start


# ------------------------------------------------------------- 5. broken task folders
def _mkfifo(path: Path) -> None:
    if not hasattr(os, "mkfifo"):
        pytest.skip("no named pipes here")
    path.unlink()
    os.mkfifo(path)


def _set_meta(key, value):
    def edit(folder: Path) -> None:
        meta = _json(folder / "task_metadata.json")
        if value is _DROP:
            meta.pop(key)
        else:
            meta[key] = value
        _write_json(folder / "task_metadata.json", meta)

    return edit


_DROP = object()


def _write(name: str, data: bytes):
    def edit(folder: Path) -> None:
        (folder / name).write_bytes(data)

    return edit


def _first_label(folder: Path, value) -> None:
    data = _json(folder / "train.json")
    data[next(iter(data))] = value
    _write_json(folder / "train.json", data)


BROKEN = {
    "metadata missing": (lambda f: (f / "task_metadata.json").unlink(), "not a HEAR task folder"),
    "metadata empty": (_write("task_metadata.json", b""), "task metadata is empty"),
    "metadata not JSON": (_write("task_metadata.json", b"{oops"), "invalid JSON"),
    "metadata a list": (_write("task_metadata.json", b"[1, 2]"), "got a JSON list"),
    "metadata nested deeply": (
        _write("task_metadata.json", b"[" * 100000),
        "invalid JSON",
    ),
    "metadata a folder": (
        lambda f: ((f / "task_metadata.json").unlink(), (f / "task_metadata.json").mkdir()),
        "it is a folder",
    ),
    "metadata a FIFO": (lambda f: _mkfifo(f / "task_metadata.json"), "named pipe"),
    "missing split_mode": (_set_meta("split_mode", _DROP), "missing key 'split_mode'"),
    "embedding_type a number": (_set_meta("embedding_type", 5), "embedding_type is 5"),
    "splits a string": (_set_meta("splits", "train"), "'splits' must be a list"),
    "nfolds a string": (_set_meta("nfolds", "3"), "nfolds must be an integer"),
    "evaluation a string": (_set_meta("evaluation", "top1_acc"), "'evaluation' must be a list"),
    "early stopping a string": (
        _set_meta("use_scoring_for_early_stopping", "false"),
        "must be true or false",
    ),
    "vocabulary missing": (
        lambda f: (f / "labelvocabulary.csv").unlink(),
        "labelvocabulary.csv: file not found",
    ),
    "vocabulary empty": (_write("labelvocabulary.csv", b""), "label vocabulary is empty"),
    "vocabulary header only": (_write("labelvocabulary.csv", b"idx,label\n"), "no labels"),
    "vocabulary duplicate": (
        _write("labelvocabulary.csv", b"idx,label\n0,low\n1,low\n2,high\n"),
        "labels listed twice",
    ),
    "vocabulary Latin-1": (
        _write("labelvocabulary.csv", "idx,label\n0,low\n1,mid\n2,hïgh\n".encode("latin-1")),
        "labelvocabulary.csv: the label vocabulary is not UTF-8",
    ),
    "vocabulary one column": (
        _write("labelvocabulary.csv", b"idx,label\n0,low\n1\n"),
        r"labelvocabulary.csv:3: expected idx and label",
    ),
    "split Latin-1": (
        _write("train.json", '{"é.wav": ["low"]}'.encode("latin-1")),
        "train.json: the split file is not UTF-8",
    ),
    "split a list": (_write("train.json", b'["a.wav"]'), "got a JSON list"),
    "split duplicate key": (
        _write("valid.json", b'{"a.wav": ["low"], "a.wav": ["mid"]}'),
        "the key 'a.wav' appears twice",
    ),
    "split empty object": (_write("test.json", b"{}"), "the split is empty"),
    "split a FIFO": (lambda f: _mkfifo(f / "valid.json"), "named pipe"),
    "label not in vocabulary": (
        lambda f: _first_label(f, ["purple"]),
        r"labels \['purple'\] are not in",
    ),
    "label an object": (lambda f: _first_label(f, [{"x": 1}]), "labels must be label names"),
    "labels not a list": (lambda f: _first_label(f, "low"), "labels must be a list"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_task_folder_gives_one_clear_error(tmp_path, case):
    folder = make_task(tmp_path)
    corrupt, message = BROKEN[case]
    corrupt(folder)
    begin = time.perf_counter()
    with pytest.raises(TaskFormatError, match=message) as info:
        load_task(folder)
    assert time.perf_counter() - begin < 5  # a named pipe is never opened
    assert isinstance(info.value, AxlstmError)
    assert str(folder) in str(info.value)  # the message names the file or folder
    assert "\n" not in str(info.value)


def test_bom_files_are_accepted(tmp_path):
    folder = make_task(tmp_path)
    for name in ("labelvocabulary.csv", "train.json", "task_metadata.json"):
        path = folder / name
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    task = load_task(folder)
    assert task.labels == ["low", "mid", "high"] and len(task.files("train")) == 6


def test_missing_fold_and_missing_or_odd_audio(tmp_path):
    folder = make_task(tmp_path, split_mode="presplit_kfold", folds=3)
    (folder / "fold01.json").unlink()
    with pytest.raises(TaskFormatError, match=r"fold01\.json: file not found"):
        load_task(folder)

    folder = make_task(tmp_path / "b")
    name = _first_entry(folder, "valid")
    (folder / "16000" / "valid" / name).unlink()
    task = load_task(folder)
    with pytest.raises(TaskFormatError, match=rf"1 audio files missing: .*valid/{name}"):
        task.check_audio()

    if hasattr(os, "mkfifo"):
        os.mkfifo(folder / "16000" / "valid" / name)
        with pytest.raises(TaskFormatError, match=r"not regular files: .*named pipe"):
            task.check_audio()


def test_task_folder_that_is_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(TaskFormatError, match="not a task folder"):
        load_task(tmp_path / "f")


def test_broken_tasks_through_the_cli(tmp_path, capsys):
    root = tmp_path / "tasks"
    make_task(root, "good", per_split=1)
    bad = make_task(root, "bad", per_split=1)
    (bad / "labelvocabulary.csv").write_bytes("idx,label\n0,lów\n".encode("latin-1"))
    assert main(["tasks", "--check", str(root)]) == 1
    captured = capsys.readouterr()
    assert "ok good" in captured.out
    (line,) = captured.err.strip().splitlines()
    assert "bad/labelvocabulary.csv" in line and "not UTF-8" in line
    out = tmp_path / "r"
    assert _evaluate(root, out) == 1
    results = _json(out / "results.json")["logmel"]
    assert results["good"]["mean"] is not None and "not UTF-8" in results["bad"]["error"]


# ------------------------------------------------------------------- 6. numeric options
@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--seeds", "0"),
        ("--seeds", "many"),
        ("--max-epochs", "0"),
        ("--batch-size", "-1"),
        ("--jobs", "0"),
        ("--threads", "0"),
        ("--builtin-scale", "0"),
    ],
)
def test_evaluate_numeric_options(tmp_path, capsys, option, value):
    with pytest.raises(SystemExit) as info:
        main(["evaluate", "--model", "logmel", "--tasks", "x", "--out", str(tmp_path / "r"),
              option, value])  # fmt: skip
    assert info.value.code == 2
    assert f"argument {option}" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--window", "sideways"], "--window: unknown window"),
        (["--window", "-4"], "--window: window must be a positive"),
        (["--layer", "all"], "--layer: expected 'last' or one block index"),
        (["--model", ""], "--model: empty model name"),
    ],
)
def test_evaluate_usage_errors_exit_2(tmp_path, capsys, argv, message):
    code = main(["evaluate", "--model", "logmel", "--tasks", "x", "--out", str(tmp_path / "r"),
                 *argv])  # fmt: skip
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--scale", "0"], "argument --scale"),
        (["--seed", "-1"], "argument --seed"),
        (["--sample-rate", "0"], "argument --sample-rate"),
        (["--folds", "-3"], "argument --folds"),
    ],
)
def test_tasks_numeric_options(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as info:
        main(["tasks", "--out", str(tmp_path / "t"), *argv])
    assert info.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--folds", "2"], "--folds must be 0"),
        (["--sample-rate", "8000"], "--sample-rate must be 16000 to 384000"),
        (["--names", "speech"], "unknown built-in tasks ['speech']"),
    ],
)
def test_tasks_usage_errors_exit_2(tmp_path, capsys, argv, message):
    assert main(["tasks", "--out", str(tmp_path / "t"), *argv]) == 2
    assert message in capsys.readouterr().err


def test_tasks_out_under_a_file(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    assert main(["tasks", "--out", str(tmp_path / "f" / "t"), "--names", "timbre"]) == 1
    assert "cannot write task folder (--out)" in capsys.readouterr().err


def test_scores_are_finite_or_failed():
    from axlstm.evaluation import Outcome

    assert not Outcome(metric="mAP", scores=[0.5, math.nan]).ok
    assert Outcome(metric="mAP", scores=[0.5, 0.6]).ok
