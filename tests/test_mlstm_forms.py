"""mlstm_backend="auto": the measured form table, its reading, and the choice it drives."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

from axlstm.benchmark import forms_markdown, measure_forms, write_form_table
from axlstm.layers import mlstm_forms
from axlstm.layers.mlstm import auto_form, mlstm, mlstm_chunkwise, mlstm_parallel
from axlstm.layers.mlstm_forms import (
    DEFAULT_PARALLEL_MAX_TOKENS,
    FormTableError,
    choose_form,
    crossovers,
    derive_rows,
    read_table,
    set_form_table,
    table_rows,
)

ROOT = Path(__file__).resolve().parents[1]


def table(*rows):
    return {"format": 1, "rows": list(rows)}


def row(device="cpu", dtype="float32", grad=False, lengths=(64, 256, 1024), **times):
    return {"device": device, "dtype": dtype, "grad": grad, "lengths": list(lengths),
            "times": {f: list(t) for f, t in times.items()}}  # fmt: skip


@pytest.fixture
def restore_table():
    yield
    set_form_table(None)


def test_packaged_table_is_valid_and_has_the_cpu_rows():
    rows = read_table(mlstm_forms.PACKAGED_TABLE)
    for grad in (False, True):
        r = rows[("cpu", "float32", grad)]
        assert {"parallel", "chunkwise"} <= set(r["times"])
        assert r["measured"]["by"] == "axlstm benchmark --forms"
        # the quadratic form loses at the longest measured length: the table measured a crossover
        assert crossovers(r)[-1][1] == "chunkwise"


def test_choice_follows_the_table_nearest_length_on_a_log_scale(restore_table):
    set_form_table(table(row(parallel=[1.0, 3.0, 50.0], chunkwise=[2.0, 2.0, 5.0])))
    assert choose_form("cpu", torch.float32, 64, False) == "parallel"
    assert choose_form("cpu", torch.float32, 127, False) == "parallel"  # 127² < 64·256
    assert choose_form("cpu", torch.float32, 129, False) == "chunkwise"
    assert choose_form("cpu", "float32", 100_000, False) == "chunkwise"
    # a form not available here is passed over
    assert choose_form("cpu", torch.float32, 64, False, available=("chunkwise",)) == "chunkwise"


def test_parallel_is_never_extrapolated_past_the_table(restore_table):
    set_form_table(table(row(lengths=(64, 128), parallel=[1.0, 1.0], chunkwise=[2.0, 2.0])))
    assert choose_form("cpu", torch.float32, 128, False) == "parallel"
    assert choose_form("cpu", torch.float32, 129, False) == "chunkwise"


def test_triton_wins_only_where_available(restore_table):
    set_form_table(table(row(device="cuda", parallel=[1.0, 3, 9], chunkwise=[2.0, 2, 4],
                             triton=[0.5, 0.5, 0.5])))  # fmt: skip
    assert choose_form("cuda", torch.float32, 256, False, ("parallel", "chunkwise")) == "chunkwise"
    both = ("parallel", "chunkwise", "triton")
    assert choose_form("cuda", torch.float32, 256, False, both) == "triton"


def test_unmeasured_device_dtype_or_pass_falls_back_to_the_cpu_rule(restore_table):
    set_form_table(table())
    n = DEFAULT_PARALLEL_MAX_TOKENS
    for device, dtype in (("cuda", torch.bfloat16), ("mps", torch.float32)):
        assert choose_form(device, dtype, n, True) == "parallel"
        assert choose_form(device, dtype, n + 1, True) == "chunkwise"


def test_rows_are_keyed_by_pass_kind(restore_table):
    set_form_table(table(
        row(grad=False, parallel=[1.0, 1.0, 1.0], chunkwise=[2.0, 2.0, 2.0]),
        row(grad=True, parallel=[2.0, 2.0, 2.0], chunkwise=[1.0, 1.0, 1.0]),
    ))  # fmt: skip
    assert choose_form("cpu", torch.float32, 64, False) == "parallel"
    assert choose_form("cpu", torch.float32, 64, True) == "chunkwise"
    q = torch.zeros(1, 1, 64, 4)
    assert auto_form(q) == "parallel"  # no grad needed
    assert auto_form(q.requires_grad_()) == "chunkwise"
    with torch.no_grad():
        assert auto_form(q) == "parallel"
    assert auto_form(q, stateful=True) == "chunkwise"  # carried state: chunk-state forms only


def test_environment_table_overrides_the_packaged_rows(tmp_path, monkeypatch, restore_table):
    path = tmp_path / "forms.json"
    path.write_text(json.dumps(table(row(parallel=[9.0, 9, 9], chunkwise=[1.0, 1, 1]))))
    monkeypatch.setenv(mlstm_forms.ENV_TABLE, str(path))
    set_form_table(None)  # re-read at the next choice
    assert choose_form("cpu", torch.float32, 64, False) == "chunkwise"
    kept = [r for r in table_rows() if r["grad"]]  # the packaged fwd+bwd row is still there
    assert kept and kept[0]["device"] == "cpu"


@pytest.mark.parametrize(
    "bad,message",
    [
        ({"format": 2, "rows": []}, "format 1"),
        (table({"device": "cpu"}), "without 'dtype'"),
        (table(row(lengths=(256, 64), parallel=[1, 1], chunkwise=[1, 1])), "increasing"),
        (table(row(fused=[1.0, 1, 1])), "unknown form 'fused'"),
        (table(row(parallel=[1.0, 1])), "one per length"),
        (table(row(parallel=[1.0, math.nan, 1])), "nan"),
        (table(row(grad="yes", parallel=[1.0, 1, 1])), "'grad'"),
    ],
)
def test_bad_tables_are_refused_naming_the_problem(bad, message, tmp_path):
    path = tmp_path / "t.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(FormTableError, match=message) as e:
        read_table(path)
    assert str(path) in str(e.value)


def test_unreadable_table_names_the_file(tmp_path):
    path = tmp_path / "t.json"
    path.write_text("{ not json")
    with pytest.raises(FormTableError, match="cannot read"):
        read_table(path)


def test_auto_runs_what_the_table_chooses(restore_table):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 40, 8, generator=g, dtype=torch.float64) for _ in range(3))
    i, f = torch.randn(1, 2, 40, generator=g, dtype=torch.float64), torch.full((1, 2, 40), 3.0)
    args = (q, k, v, i, f.double())
    # the two forms differ by rounding only; with the table forcing one, auto equals it bit for bit
    set_form_table(table(row(dtype="float64", parallel=[1.0, 1, 1], chunkwise=[2.0, 2, 2])))
    assert torch.equal(mlstm(*args), mlstm_parallel(*args))
    set_form_table(table(row(dtype="float64", parallel=[2.0, 2, 2], chunkwise=[1.0, 1, 1])))
    assert torch.equal(mlstm(*args, chunk_size=16), mlstm_chunkwise(*args, chunk_size=16))


def test_measure_forms_writes_a_table_auto_can_use(tmp_path, restore_table):
    results = measure_forms("test_axlstm", lengths=(16, 48), batch=1, reps=1, warmup=0)
    assert {(r["grad"], r["tokens"], r["form"]) for r in results} == {
        (g, n, f) for g in (False, True) for n in (16, 48) for f in ("parallel", "chunkwise")
    }
    assert all(r["time_s"] > 0 for r in results)
    path = tmp_path / "forms.json"
    write_form_table(results, path)
    write_form_table(results, path)  # updating keeps one row per key
    rows = read_table(path)
    assert set(rows) == {("cpu", "float32", False), ("cpu", "float32", True)}
    assert rows[("cpu", "float32", True)]["measured"]["shape"][1:] == [4, results[0]["head_dim"]]
    set_form_table(path)
    best = min(
        ("parallel", "chunkwise"), key=lambda f: rows[("cpu", "float32", False)]["times"][f][0]
    )
    assert choose_form("cpu", torch.float32, 16, False) == best
    text = forms_markdown(results)
    assert "forward + backward" in text and "| 48 |" in text


def test_derive_rows_keeps_failed_forms_as_gaps():
    results = [
        {
            "device": "cuda:0",
            "dtype": "bfloat16",
            "grad": True,
            "tokens": 64,
            "form": f,
            "time_s": t,
        }
        for f, t in (("parallel", None), ("chunkwise", 0.5))
    ]
    (r,) = derive_rows(results)
    assert (r["device"], r["dtype"], r["times"]["parallel"]) == ("cuda", "bfloat16", [None])
    assert crossovers(r) == [(64, "chunkwise")]


def _precision_curves():
    spec = importlib.util.spec_from_file_location(
        "precision_curves", ROOT / "benchmarks" / "precision_curves.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _write_log(run: Path, losses) -> Path:
    run.mkdir()
    lines = [json.dumps({"step": 5 * (n + 1), "loss": x}) for n, x in enumerate(losses)]
    (run / "log.jsonl").write_text("\n".join(lines) + "\n")
    return run


def test_precision_curves_judges_within_noise_and_non_finite(tmp_path):
    pc = _precision_curves()
    g = torch.Generator().manual_seed(0)
    base = [2.0 * math.exp(-n / 60) + 0.5 for n in range(200)]
    noisy = lambda: [b + 0.02 * float(torch.randn(1, generator=g)) for b in base]  # noqa: E731
    ref = _write_log(tmp_path / "fp32", noisy())
    same = _write_log(tmp_path / "bf16", noisy())
    off = _write_log(tmp_path / "off", [x + 0.2 for x in noisy()])  # 10x the noise: a real gap
    bad = _write_log(tmp_path / "nan", [*noisy()[:150], math.nan, *noisy()[151:]])
    assert pc.main([str(ref), str(same), "--json", str(tmp_path / "c.json")]) == 0
    result = json.loads((tmp_path / "c.json").read_text())
    assert result["within_noise"] and result["steps"] == 200 and len(result["windows"]) == 10
    assert pc.main([str(ref), str(off)]) == 1
    verdict = pc.compare(pc.read_losses(ref), pc.read_losses(bad))
    assert not verdict["finite"] and not verdict["within_noise"]


def test_benchmark_forms_cli(tmp_path, capsys):
    from axlstm.cli.main import main

    out, tab = tmp_path / "forms.json", tmp_path / "table.json"
    args = ["benchmark", "--forms", "--models", "test_axlstm", "--lengths", "16", "32",
            "--reps", "1", "--warmup", "0", "--batch", "1", "--json", str(out)]  # fmt: skip
    assert main([*args, "--forms-table", str(tab)]) == 0
    assert len(json.loads(out.read_text())) == 2 * 2 * 2
    assert set(read_table(tab)) == {("cpu", "float32", False), ("cpu", "float32", True)}
    assert "| 32 |" in capsys.readouterr().out
    assert main([*args[:3], "test_ssast", *args[4:]]) == 2  # not an mLSTM model
    assert "ssast" in capsys.readouterr().err
    assert main(["benchmark", "--json", str(out)]) == 2  # neither models nor --forms
    assert "--models is required" in capsys.readouterr().err
