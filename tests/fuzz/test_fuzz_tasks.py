"""Group B: broken HEAR task folders through ``load_task`` and ``axlstm evaluate``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from axlstm.cli.main import main
from axlstm.core.errors import AxlstmError
from axlstm.evaluation import load_task

from .cases import TASK_LABELS, TIMEOUT, TaskCase, assert_clear_error, make_task, task_cases

CASES = task_cases()
timeout = pytest.mark.timeout(TIMEOUT, method="signal")


def read_task(path: Path):
    """What ``axlstm evaluate`` does with a task folder before embedding it."""
    task = load_task(path)
    task.check_audio()
    return task


def check_refused(err: BaseException, case: TaskCase, task: Path, culprit: Path) -> None:
    names_any = case.names_any or (culprit.name,)
    assert_clear_error(err, names=(str(task),), names_any=names_any, words=case.words)


@timeout
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_load_task(case: TaskCase, tmp_path):
    task = make_task(tmp_path, kfold=case.kfold)
    culprit = case.mutate(task)
    if case.valid:
        loaded = read_task(task)
        assert loaded.labels == list(TASK_LABELS)
        assert loaded.num_files() == 9
        return
    if case.either:
        try:
            loaded = read_task(task)
        except AxlstmError as err:
            check_refused(err, case, task, culprit)
        else:
            assert loaded.labels == list(TASK_LABELS)
        return
    with pytest.raises(AxlstmError) as info:
        read_task(task)
    check_refused(info.value, case, task, culprit)


# ---------------------------------------------------------------------------- the CLI
CLI_CASES = [
    "metadata_not_json",
    "metadata_fifo",
    "vocab_one_class",
    "vocab_latin1",
    "split_entry_leaves_task_folder",
    "listed_audio_missing",
]


def _evaluate(task: Path, out: Path, cache: Path) -> int:
    return main(
        [
            "evaluate",
            "--model",
            "test_axlstm",
            "--tasks",
            str(task),
            "--out",
            str(out),
            "--seeds",
            "1",
            "--max-epochs",
            "1",
            "--probe",
            "linear",
            "--cache-dir",
            str(cache),
            "--device",
            "cpu",
            "--jobs",
            "1",
            "--threads",
            "1",
            "--no-charts",
            "--no-progress",
        ]
    )


def _written(out: Path) -> str:
    if not out.is_dir():
        return ""
    return "\n".join(
        p.read_text(errors="replace")
        for p in sorted(out.rglob("*"))
        if p.suffix in (".json", ".md")
    )


@pytest.mark.timeout(2 * TIMEOUT, method="signal")
@pytest.mark.parametrize("case_id", CLI_CASES)
def test_evaluate_refuses_the_broken_task(case_id, tmp_path, capsys, monkeypatch):
    """Exit code 1, no traceback, the bad file named on stderr or in the report, and no score
    for the broken task."""
    monkeypatch.setenv("AXLSTM_CACHE", str(tmp_path / "cache"))
    case = next(c for c in CASES if c.id == case_id)
    task = make_task(tmp_path / "tasks", kfold=case.kfold)
    culprit = case.mutate(task)
    out = tmp_path / "report"
    code = _evaluate(task, out, tmp_path / "cache")
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert code == 1, err
    names = case.names_any or (culprit.name,)
    text = err + _written(out)
    assert any(n in text for n in names), f"neither stderr nor the report names {names}: {err}"
    results = out / "results.json"
    if results.is_file():
        for entry in _scores_for(json.loads(results.read_text()), task.name):
            assert entry.get("mean") is None and not entry.get("scores"), (
                f"a score was reported for the broken task: {entry}"
            )


def _scores_for(data, name: str):
    """Whatever results.json holds under the task's name (empty when it holds nothing)."""
    found = []

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == name and isinstance(value, dict):
                    found.append(value)
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(data)
    return found
