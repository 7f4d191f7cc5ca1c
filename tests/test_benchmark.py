"""``axlstm benchmark``: the JSON contract, reports and the isolated measurement."""

from __future__ import annotations

import json

import pytest

from axlstm.benchmark import measure_isolated
from axlstm.cli.main import main


def test_benchmark_cli_writes_contract_json_and_reports(tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = main(
        [
            "benchmark", "--models", "test_axlstm", "test_ssast", "--seconds", "0.5", "1",
            "--mode", "inference", "train", "--reps", "1", "--warmup", "0", "--threads", "1",
            "--no-isolate", "--json", str(out), "--markdown", str(tmp_path / "b.md"),
            "--csv", str(tmp_path / "b.csv"), "--plot", str(tmp_path / "b.png"),
        ]
    )  # fmt: skip
    assert code == 0
    results = json.loads(out.read_text())
    assert len(results) == 2 * 2 * 2
    for r in results:
        assert {"model", "seconds", "mode", "batch", "time_s", "peak_mem_bytes"} <= set(r)
        assert r["time_s"] > 0 and r["peak_mem_bytes"] > 0 and r["batch"] == 1
    assert {(r["model"], r["mode"], r["seconds"]) for r in results} == {
        (m, mode, s)
        for m in ("test_axlstm", "test_ssast")
        for mode in ("inference", "train")
        for s in (0.5, 1.0)
    }
    assert "| test_axlstm | train | 1 |" in (tmp_path / "b.md").read_text()
    assert (tmp_path / "b.csv").read_text().startswith("model,")
    assert (tmp_path / "b.png").read_bytes()[:4] == b"\x89PNG"
    assert "test_ssast" in capsys.readouterr().out


def test_isolated_measurement_reports_its_own_peak():
    r = measure_isolated(model="test_axlstm", seconds=1.0, mode="inference", reps=1, warmup=0)
    assert r["frames"] == 100 and r["tokens"] == 1 + 25 * 5
    assert r["peak_mem_bytes"] >= r["baseline_mem_bytes"] > 0
    assert r["mem_kind"] == "process_peak_rss"


def test_benchmark_of_fbank_models(tmp_path, capsys):
    """SSAST/SSAMBA get their own inputs (128 fbank bins) and the joint loss in train mode."""
    out = tmp_path / "x.json"
    code = main(
        [
            "benchmark", "--models", "test_ssast_orig", "test_ssamba", "--seconds", "2", "10",
            "--mode", "inference", "train", "--reps", "1", "--warmup", "0", "--threads", "1",
            "--no-isolate", "--json", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    results = json.loads(out.read_text())
    assert len(results) == 8 and all(r["time_s"] > 0 for r in results)
    tokens = {(r["model"], r["seconds"]): r["tokens"] for r in results}
    # 2 s = 192 frames (whole 16-frame patches): 8 x 12 patches; 10 s = 992 frames: 8 x 62
    assert tokens[("test_ssast_orig", 2.0)] == 2 + 8 * 12  # cls and dist
    assert tokens[("test_ssamba", 10.0)] == 1 + 8 * 62  # cls
    assert {r["frames"] for r in results} == {192, 992}
    assert "test_ssamba" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--seconds", "-1", "argument --seconds: must be > 0"),
        ("--seconds", "nan", "argument --seconds: must be > 0"),
        ("--batch", "0", "argument --batch: must be > 0"),
        ("--reps", "0", "argument --reps: must be > 0"),
        ("--warmup", "-1", "argument --warmup: must be >= 0"),
        ("--threads", "two", "argument --threads: expected an integer"),
    ],
)
def test_impossible_settings_are_refused_at_parse_time(tmp_path, capsys, option, value, message):
    args = ["benchmark", "--models", "test_axlstm", "--json", str(tmp_path / "r.json")]
    with pytest.raises(SystemExit) as info:
        main([*args, option, value])
    assert info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()


def test_unknown_model_and_bad_settings_fail_before_any_measurement(tmp_path, capsys):
    from axlstm.benchmark import run
    from axlstm.core.errors import UsageError

    out = tmp_path / "r.json"
    args = ["benchmark", "--models", "test_axlstm", str(tmp_path / "nope"), "--json", str(out)]
    assert main([*args, "--seconds", "0.5", "--no-isolate"]) == 2
    err = capsys.readouterr().err
    assert "unknown model" in err and "nope" in err and "Traceback" not in err
    assert not out.exists()
    with pytest.raises(UsageError, match="batch must be an integer >= 1"):
        run(["test_axlstm"], [1.0], batch=0)
    with pytest.raises(UsageError, match="seconds must be positive"):
        run(["test_axlstm"], [-1.0])


def test_flops_mfu_and_throughput_are_reported(tmp_path):
    out = tmp_path / "f.json"
    code = main(
        [
            "benchmark", "--models", "test_axlstm", "--seconds", "1", "--mode", "inference",
            "train", "--reps", "1", "--warmup", "0", "--threads", "1", "--no-isolate",
            "--batch", "2", "--flops", "--peak-tflops", "0.1", "--json", str(out),
            "--markdown", str(tmp_path / "f.md"),
        ]
    )  # fmt: skip
    assert code == 0
    inf, train = json.loads(out.read_text())
    for r in (inf, train):
        assert r["clips_per_s"] == pytest.approx(2 / r["time_s"])
        assert r["tflops_per_s"] == pytest.approx(r["flops"] / r["time_s"] / 1e12)
        assert r["mfu"] == pytest.approx(r["tflops_per_s"] / 0.1)
    # a training step is the forward plus a backward of about twice its matmul work
    assert 2.5 * inf["flops"] < train["flops"] < 4 * inf["flops"]
    assert "MFU" in (tmp_path / "f.md").read_text()


def test_peak_tflops_of_known_gpus():
    from axlstm.benchmark import peak_tflops

    assert peak_tflops("NVIDIA H200", "bf16") == 989.4
    assert peak_tflops("NVIDIA H100 80GB HBM3", "fp16") == 989.4
    assert peak_tflops("Some GPU", "bf16") is None and peak_tflops(None, "fp32") is None


def test_compiled_measurement_matches_eager_work(monkeypatch):
    """--compile times the compiled encoder / step (a cheap backend here; inductor on a GPU)
    and reports the compile time apart; the FLOPs are those of the same eager computation."""
    from axlstm.benchmark import measure
    from axlstm.models import compile as compile_mod

    monkeypatch.setattr(compile_mod, "DEFAULT_BACKEND", "aot_eager")
    for mode in ("inference", "train"):
        kw = dict(seconds=1.0, mode=mode, reps=1, warmup=0, threads=1, flops=True)
        eager = measure("test_axlstm", **kw)
        compiled = measure("test_axlstm", compile="default", **kw)
        assert compiled["compile"] == "default" and compiled["compile_s"] > 0
        assert compiled["flops"] == eager["flops"] and compiled["time_s"] > 0


def test_a_failed_measurement_keeps_the_finished_ones(tmp_path, monkeypatch):
    """The JSON grows result by result: a run cut short (a failure here; a time limit in
    benchmarks/gpu_check.sh) keeps what it measured."""
    import axlstm.benchmark as bench

    measure, calls = bench.measure, []

    def second_fails(**kwargs):
        calls.append(kwargs)
        if len(calls) == 2:
            raise MemoryError
        return measure(**kwargs)

    monkeypatch.setattr(bench, "measure", second_fails)
    out = tmp_path / "r.json"
    args = ["benchmark", "--models", "test_axlstm", "--seconds", "0.5", "1", "--reps", "1"]
    code = main([*args, "--warmup", "0", "--threads", "1", "--no-isolate", "--json", str(out)])
    assert code == 1  # "out of memory" from the CLI's error handling
    (kept,) = json.loads(out.read_text())
    assert (kept["model"], kept["seconds"]) == ("test_axlstm", 0.5) and kept["time_s"] > 0
