"""``axlstm evaluate`` and ``axlstm tasks`` end to end on tiny generated tasks, failures
included; and the demo's pieces."""

from __future__ import annotations

import json

import pytest
import torch

from axlstm.cli.main import main
from test_evaluation_tasks import make_task


@pytest.fixture(autouse=True)
def _one_thread():
    """Small matmuls: one thread is as fast, and far faster on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_tasks(tmp_path_factory):
    root = tmp_path_factory.mktemp("tasks")
    make_task(root, "tones", per_split=3)
    make_task(root, "tones_kfold", split_mode="presplit_kfold", folds=3, per_split=2)
    make_task(root, "tones_ml", prediction_type="multilabel", per_split=3)
    make_task(root, "events", embedding_type="event", evaluation=["event_onset_200ms_fms"])
    return root


def test_evaluate_end_to_end(tiny_tasks, tmp_path, capsys):
    out = tmp_path / "report"
    argv = [
        "evaluate",
        "--model", "rand=test_axlstm",
        "--model", "test_ssast",
        "--model", "no_such_model",
        "--tasks", str(tiny_tasks),
        "--out", str(out),
        "--seeds", "3",
        "--max-epochs", "9",
        "--cache-dir", str(tmp_path / "cache"),
        "--device", "cpu",
        "--jobs", "2",
        "--no-progress",
    ]  # fmt: skip
    assert main(argv) == 1  # a model and a task fail, the rest is reported
    results = json.loads((out / "results.json").read_text())
    assert list(results) == ["rand", "test_ssast", "no_such_model", "logmel"]
    for model in ("rand", "test_ssast", "logmel"):
        entry = results[model]
        assert set(entry) == {"events", "tones", "tones_kfold", "tones_ml"}
        for task in ("tones", "tones_kfold", "tones_ml", "events"):
            e = entry[task]
            assert len(e["scores"]) == 3 and all(0.0 <= s <= 1.0 for s in e["scores"])
            assert e["mean"] == pytest.approx(sum(e["scores"]) / 3)
            assert e["ci95"] >= 0.0
        assert entry["tones_ml"]["metric"] == "mAP" and entry["tones"]["metric"] == "top1_acc"
        assert entry["events"]["metric"] == "event_onset_200ms_fms"
        # the test events of every seed, in HEAR's format, beside the report
        for seed in range(3):
            written = json.loads(
                (out / "events" / model / "events" / f"seed{seed}.json").read_text()
            )
            assert len(written["files"]) == 6 and len(written["postprocessing"]) == 1
    assert "unknown model 'no_such_model'" in results["no_such_model"]["tones"]["error"]
    details = json.loads((out / "details.json").read_text())
    kfold = details["outcomes"]["logmel"]["tones_kfold"]
    assert len(kfold["fold_scores"]["top1_acc"][0]) == 3 and len(kfold["dropout"]) == 3
    assert "d_prime" not in kfold["secondary"]
    assert details["settings"]["seeds"] == [0, 1, 2]
    assert details["aggregate"]["logmel"]["mean"] is not None  # every task scored
    assert (
        details["outcomes"]["logmel"]["events"]["postprocessing"][0][0]["median_filter_ms"] == 250
    )
    report = (out / "report.md").read_text()
    assert "| `rand` |" in report and "## Failures" in report and "placeholder" in report
    assert (out / "chart.png").stat().st_size > 1000
    assert (out / "charts" / "tones_kfold.png").is_file()
    printed = capsys.readouterr().out
    assert "report:" in printed and "failed" in printed

    # A second run reuses every embedding from the cache and gives the same numbers.
    out2 = tmp_path / "again"
    argv[argv.index(str(out))] = str(out2)
    i = argv.index("no_such_model")
    del argv[i - 1 : i + 1]
    assert main(argv) == 0
    again = json.loads((out2 / "details.json").read_text())["outcomes"]
    for task in ("tones", "events"):
        assert all(again[m][task]["embeddings_cached"] for m in ("rand", "test_ssast", "logmel"))
    assert json.loads((out2 / "results.json").read_text())["rand"] == results["rand"]


def test_evaluate_success_exit_code_and_linear_probe(tiny_tasks, tmp_path):
    out = tmp_path / "r"
    code = main(
        [
            "evaluate", "--model", "logmel", "--tasks", str(tiny_tasks / "tones"),
            "--out", str(out), "--seeds", "2", "--probe", "linear", "--max-epochs", "6",
            "--no-cache", "--no-progress", "--no-charts",
        ]
    )  # fmt: skip
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert list(results) == ["logmel"] and results["logmel"]["tones"]["scores"]
    assert not (out / "chart.png").exists()
    details = json.loads((out / "details.json").read_text())
    assert details["settings"]["probe"]["kind"] == "linear"


def test_evaluate_usage_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["evaluate", "--model", "logmel", "--tasks", "x", "--out", "o", "--seeds", "0"])
    assert info.value.code == 2
    assert "argument --seeds: must be > 0, got 0" in capsys.readouterr().err


def test_missing_task_folder_is_reported(tmp_path):
    out = tmp_path / "r"
    code = main(
        ["evaluate", "--model", "logmel", "--tasks", str(tmp_path / "nope"), "--out", str(out),
         "--seeds", "1", "--no-progress", "--no-cache"]
    )  # fmt: skip
    assert code == 1
    entry = json.loads((out / "results.json").read_text())["logmel"]["nope"]
    assert "task folder not found" in entry["error"]


def test_tasks_command(tmp_path, tiny_tasks, capsys):
    assert main(["tasks", "--list"]) == 0
    assert "pitch_class: multiclass, 12 classes" in capsys.readouterr().out
    assert main(["tasks", "--check", str(tiny_tasks)]) == 0
    out = capsys.readouterr().out
    assert "ok tones: scene multiclass" in out and "post-processing grid: median 250 ms" in out
    (tiny_tasks / "broken").mkdir(exist_ok=True)
    (tiny_tasks / "broken" / "task_metadata.json").write_text("{")
    try:
        assert main(["tasks", "--check", str(tiny_tasks)]) == 1
        assert "broken/task_metadata.json: invalid JSON" in capsys.readouterr().err
    finally:
        (tiny_tasks / "broken" / "task_metadata.json").unlink()
        (tiny_tasks / "broken").rmdir()


def test_demo_recipe_and_pieces(tmp_path, monkeypatch):
    from axlstm.recipes import demo, load_config

    cfg = load_config("demo")
    assert cfg.model.name == "axlstm_tiny" and cfg.model.overrides["embed_dim"] == 64
    assert cfg.engine.device == "cpu" and cfg.engine.precision == "fp32"
    assert load_config("demo", ["model.name=ssast_tiny"]).model.name == "ssast_tiny"

    # The whole demo, shrunk: 2 pretraining steps of tiny models, one task, 2 seeds.
    out = tmp_path / "demo"
    code = demo.main(
        [
            "--out", str(out), "--steps", "2", "--seeds", "2", "--tasks", "timbre",
            "--probe-epochs", "6", "--no-progress",
            "--set", "optim.global_batch=2", "model.overrides.embed_dim=16",
            "model.overrides.depth=1", "logging.plots=false",
        ]
    )  # fmt: skip
    assert code == 0
    results = json.loads((out / "report" / "results.json").read_text())
    assert list(results) == ["axlstm", "ssast", "axlstm_random", "logmel"]
    assert all(len(results[m]["timbre"]["scores"]) == 2 for m in results)
    for family in ("axlstm", "ssast", "axlstm_random"):
        assert (out / "models" / family / "model.safetensors").is_file()
    info = json.loads((out / "models" / "ssast" / "config.json").read_text())
    assert info["model"]["family"] == "ssast" and info["model"]["embed_dim"] == 16
    timings = json.loads((out / "report" / "demo_timings.json").read_text())
    assert timings["total"] > 0
    # Run again: pretraining is skipped (finished runs are kept).
    assert demo._finished(out / "pretrain" / "axlstm", 2)
    walls = demo.pretrain_side_by_side(out, 2, 1, False)
    assert walls == {"axlstm": 0.0, "ssast": 0.0}
