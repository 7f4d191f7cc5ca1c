"""Group D: command-line misuse, in process through ``axlstm.cli.main.main``.

An expected failure ends in exactly one ``axlstm COMMAND: error: ...`` line on stderr naming the
option or file (argparse-level errors: its usage line and one error line), exit code 2 for a
usage error and 1 for a failure, and never a traceback. Odd but valid calls must work.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from axlstm.cli.main import main

from .cases import SR, TIMEOUT, assert_clear_error, tone

timeout = pytest.mark.timeout(2 * TIMEOUT, method="signal")
ERROR_LINE = re.compile(r"^axlstm(?: [\w-]+)?: error: ")
FAST_PRETRAIN = [
    "logging.tensorboard=false",
    "logging.plots=false",
    "engine.num_threads=1",
    "data.procedural_size=8",
    "data.procedural_seconds=[0.6, 1.0]",
    "optim.global_batch=2",
]


def run_cli(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse
        return exc.code if isinstance(exc.code, int) else 1


def wav(path: Path, seconds: float = 1.0, freq: float = 440.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, tone(round(seconds * SR), SR, 0.3, freq), SR)
    return path


def embed_args(*args: str) -> list[str]:
    return ["embed", *args, "--model", "test_axlstm", "--no-progress", "--device", "cpu"]


def bench_args(tmp: Path, *args: str, out: Path | None = None) -> list[str]:
    base = ["benchmark", "--models", "test_axlstm", "--seconds", "1", "--no-isolate"]
    json_out = str(out or tmp / "bench.json")
    return [*base, "--reps", "1", "--warmup", "0", "--json", json_out, *args]


def eval_args(tmp: Path, *args: str, out: Path | None = None) -> list[str]:
    base = ["evaluate", "--model", "test_axlstm", "--tasks", "builtin:pitch_class"]
    report = str(out or tmp / "report")
    return [*base, "--out", report, "--cache-dir", str(tmp / "cache"), *args]


def pretrain_args(
    tmp: Path, *args: str, sets: tuple[str, ...] = (), out: Path | None = None
) -> list[str]:
    base = ["pretrain", "--config", "debug", "--out", str(out or tmp / "run"), "--max-steps", "1"]
    return [*base, *args, "--set", *FAST_PRETRAIN, *sets]


@dataclass(eq=False)
class Misuse:
    """``make(tmp) -> (argv, names)``: the call and the strings its error line must name (one
    of them); ``codes``: the right exit codes; ``words``: the problem (one of them);
    ``untouched``: outputs (relative to tmp) that must not exist afterwards."""

    id: str
    make: Callable[[Path], tuple[list[str], tuple[str, ...]]]
    codes: tuple[int, ...]
    words: tuple[str, ...] = ()
    untouched: tuple[str, ...] = ()


def _with_audio(tmp: Path) -> Path:
    return wav(tmp / "audio" / "a.wav")


def _embed_out(out: Callable[[Path], Path], *extra: str):
    def make(tmp: Path):
        target = out(tmp)
        return embed_args(str(_with_audio(tmp)), "--out", str(target), *extra), (str(target),)

    return make


def _dir(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


def _under_file(tmp: Path) -> Path:
    (tmp / "plain.txt").write_text("a file")
    return tmp / "plain.txt" / "emb.npz"


def _opt(build: Callable[[Path], list[str]], *names: str):
    return lambda tmp: (build(tmp), names)


def _empty_folder(tmp: Path):
    folder = _dir(tmp / "empty")
    return embed_args(str(folder), "--out", str(tmp / "e.npz")), (str(folder),)


def _resume_empty(tmp: Path):
    _dir(tmp / "run")
    return pretrain_args(tmp, "--resume"), (str(tmp / "run"), "--resume")


def _all_bad_data(tmp: Path):
    data = _dir(tmp / "data")
    (data / "a.wav").write_bytes(b"not audio at all" * 10)
    (data / "b.wav").write_bytes(b"")
    return pretrain_args(tmp, "--data", str(data)), (str(data),)


def _convert_garbage(tmp: Path):
    path = tmp / "weights.pth"
    path.write_bytes(np.random.default_rng(0).bytes(3000))
    return ["convert", str(path), str(tmp / "release"), "--arch", "test_axlstm"], (str(path),)


def _convert_out_under_file(tmp: Path):
    import torch

    import axlstm

    path = tmp / "ok.pth"
    torch.save({"model": axlstm.create_model("test_axlstm").state_dict()}, path)
    (tmp / "plain.txt").write_text("a file")
    out = tmp / "plain.txt" / "release"
    return ["convert", str(path), str(out), "--arch", "test_axlstm"], (str(out), "plain.txt")


def _export_missing(tmp: Path):
    missing = tmp / "no_such_run"
    return ["export", str(missing), str(tmp / "release")], (str(missing),)


def _out_under_file(make_argv: Callable[[Path, Path], list[str]]):
    """A command whose output lies under a regular file: refused before any work."""

    def make(tmp: Path):
        (tmp / "plain.txt").write_text("a file")
        out = tmp / "plain.txt" / "out"
        return make_argv(tmp, out), (str(out), str(tmp / "plain.txt"))

    return make


def _shards_argv(tmp: Path, out: Path) -> list[str]:
    return ["shards", str(_with_audio(tmp).parent), "--out", str(out), "--no-progress"]


def _latin1_manifest(tmp: Path):
    wav(tmp / "café.wav")
    manifest = tmp / "list.csv"
    manifest.write_bytes("path\ncafé.wav\n".encode("latin-1"))
    return embed_args(str(manifest), "--out", str(tmp / "m.npz")), (str(manifest),)


MISUSES = [
    Misuse(
        "benchmark_seconds_negative",
        _opt(lambda t: bench_args(t, "--seconds", "-1"), "--seconds"),
        (2,),
        untouched=("bench.json",),
    ),
    Misuse(
        "benchmark_seconds_zero",
        _opt(lambda t: bench_args(t, "--seconds", "0"), "--seconds"),
        (2,),
        untouched=("bench.json",),
    ),
    Misuse(
        "benchmark_batch_zero",
        _opt(lambda t: bench_args(t, "--batch", "0"), "--batch"),
        (2,),
        untouched=("bench.json",),
    ),
    Misuse(
        "benchmark_reps_zero",
        _opt(lambda t: bench_args(t, "--reps", "0"), "--reps"),
        (2,),
        untouched=("bench.json",),
    ),
    Misuse(
        "benchmark_models_missing_path",
        lambda t: (
            [
                "benchmark",
                "--models",
                str(t / "nope" / "release"),
                "--seconds",
                "1",
                "--no-isolate",
                "--json",
                str(t / "bench.json"),
            ],
            (str(t / "nope" / "release"),),
        ),
        (1, 2),
        untouched=("bench.json",),
    ),
    Misuse(
        "embed_out_is_a_folder",
        _embed_out(lambda t: _dir(t / "out.npz")),
        (1,),
        ("folder", "directory"),
    ),
    Misuse(
        "embed_out_under_a_file", _embed_out(_under_file), (1,), ("file", "folder", "directory")
    ),
    Misuse("embed_out_csv", _embed_out(lambda t: t / "emb.csv"), (2,), ("--out", ".npz")),
    Misuse(
        "embed_batch_size_zero",
        _opt(
            lambda t: embed_args(
                str(_with_audio(t)), "--out", str(t / "e.npz"), "--batch-size", "0"
            ),
            "--batch-size",
        ),
        (2,),
        untouched=("e.npz",),
    ),
    Misuse(
        "embed_layer_99",
        _opt(
            lambda t: embed_args(str(_with_audio(t)), "--out", str(t / "e.npz"), "--layer", "99"),
            "layer",
            "99",
        ),
        (2,),
        untouched=("e.npz",),
    ),
    Misuse(
        "embed_window_negative",
        _opt(
            lambda t: embed_args(str(_with_audio(t)), "--out", str(t / "e.npz"), "--window", "-5"),
            "window",
            "-5",
        ),
        (2,),
        untouched=("e.npz",),
    ),
    Misuse(
        "embed_unknown_preset",
        lambda t: (
            [
                "embed",
                str(_with_audio(t)),
                "--out",
                str(t / "e.npz"),
                "--model",
                "no_such_model",
                "--no-progress",
            ],
            ("no_such_model",),
        ),
        (1, 2),
        untouched=("e.npz",),
    ),
    Misuse("embed_empty_folder", _empty_folder, (1, 2), untouched=("e.npz",)),
    Misuse(
        "embed_latin1_manifest",
        _latin1_manifest,
        (1,),
        ("utf-8", "utf8", "encoding", "decode"),
        untouched=("m.npz",),
    ),
    Misuse("pretrain_resume_empty_run", _resume_empty, (2,), ("checkpoint", "nothing", "resume")),
    Misuse(
        "pretrain_set_unknown_key",
        _opt(lambda t: pretrain_args(t, sets=("optim.no_such_key=1",)), "no_such_key"),
        (2,),
    ),
    Misuse(
        "pretrain_set_bad_value",
        _opt(lambda t: pretrain_args(t, sets=("optim.base_lr=fast",)), "base_lr"),
        (2,),
    ),
    Misuse(
        "pretrain_set_without_equals",
        _opt(lambda t: pretrain_args(t, sets=("optim.base_lr",)), "optim.base_lr"),
        (2,),
    ),
    Misuse("pretrain_all_bad_data", _all_bad_data, (1,)),
    Misuse(
        "evaluate_seeds_zero",
        _opt(lambda t: eval_args(t, "--seeds", "0"), "--seeds"),
        (2,),
        untouched=("report",),
    ),
    Misuse(
        "evaluate_max_epochs_zero",
        _opt(lambda t: eval_args(t, "--max-epochs", "0"), "--max-epochs"),
        (2,),
        untouched=("report",),
    ),
    Misuse(
        "evaluate_batch_size_zero",
        _opt(lambda t: eval_args(t, "--batch-size", "0"), "--batch-size"),
        (2,),
        untouched=("report",),
    ),
    Misuse("convert_not_a_checkpoint", _convert_garbage, (1,), untouched=("release",)),
    Misuse(
        "convert_out_under_a_file", _convert_out_under_file, (1,), ("file", "folder", "directory")
    ),
    Misuse("export_missing_run", _export_missing, (1,), untouched=("release",)),
    Misuse(
        "pretrain_out_under_a_file",
        _out_under_file(lambda t, o: pretrain_args(t, out=o)),
        (1,),
        ("file", "folder", "directory"),
    ),
    Misuse(
        "evaluate_out_under_a_file",
        _out_under_file(lambda t, o: eval_args(t, out=o)),
        (1,),
        ("file", "folder", "directory"),
    ),
    Misuse("shards_out_under_a_file", _out_under_file(_shards_argv), (1,), ("file", "folder")),
    Misuse(
        "benchmark_json_under_a_file",
        _out_under_file(lambda t, o: bench_args(t, out=o / "b.json")),
        (1,),
        ("file", "folder", "directory"),
    ),
    Misuse("unknown_subcommand", _opt(lambda t: ["frobnicate", "--now"], "frobnicate"), (2,)),
    Misuse(
        "unknown_option",
        _opt(
            lambda t: embed_args(str(_with_audio(t)), "--out", str(t / "e.npz"), "--turbo"),
            "--turbo",
        ),
        (2,),
        untouched=("e.npz",),
    ),
]


@timeout
@pytest.mark.parametrize("case", MISUSES, ids=[c.id for c in MISUSES])
def test_misuse_is_one_clear_line(case: Misuse, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("AXLSTM_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("AXLSTM_DEBUG", raising=False)
    argv, names = case.make(tmp_path)
    code = run_cli(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    assert code in case.codes, f"exit code {code}, expected {case.codes}; stderr: {err}"
    lines = [line for line in err.splitlines() if ERROR_LINE.match(line)]
    assert len(lines) == 1, f"expected one error line, got: {err!r}"
    command = argv[0] if not argv[0].startswith("frob") else None
    if command and not lines[0].startswith("axlstm: "):
        assert lines[0].startswith(f"axlstm {command}: error: "), lines[0]
    assert_clear_error(lines[0], names_any=names, words=case.words)
    for rel in case.untouched:
        assert not (tmp_path / rel).exists(), f"{rel} was written by a failed command"


# ------------------------------------------------------------------ odd but valid calls
def _report(out: Path) -> dict:
    return json.loads(out.with_suffix(".json").read_text())


def _embed_ok(capsys, *args: str) -> dict:
    code = run_cli(embed_args(*args))
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert code == 0, err
    out = Path(args[args.index("--out") + 1])
    return _report(out)


@timeout
def test_manifest_with_a_utf8_bom_works(tmp_path, capsys):
    wav(tmp_path / "a.wav")
    wav(tmp_path / "b.wav", freq=880.0)
    manifest = tmp_path / "list.csv"
    manifest.write_text("\ufeffpath,duration\na.wav,1.0\nb.wav,1.0\n", encoding="utf-8")
    report = _embed_ok(capsys, str(manifest), "--out", str(tmp_path / "m.npz"))
    assert sorted(Path(f).name for f in report["files"]) == ["a.wav", "b.wav"]
    assert report["failed"] == []


@timeout
def test_the_same_file_named_three_ways_is_embedded_once(tmp_path, capsys, monkeypatch):
    wav(tmp_path / "a.wav")
    (tmp_path / "d").mkdir()
    monkeypatch.chdir(tmp_path)
    report = _embed_ok(capsys, "a.wav", "./a.wav", "d/../a.wav", "--out", str(tmp_path / "o.npz"))
    assert len(report["files"]) == 1, report["files"]
    assert report["failed"] == []


@timeout
def test_a_folder_with_a_symlink_loop_gives_each_real_file_once(tmp_path, capsys):
    data = tmp_path / "data"
    real = [wav(data / "a.wav"), wav(data / "b.wav", freq=660.0), wav(data / "sub" / "c.wav")]
    (data / "sub" / "loop").symlink_to(data, target_is_directory=True)  # data/sub/loop -> data
    (data / "alias.wav").symlink_to(data / "a.wav")  # a second name of a.wav
    report = _embed_ok(capsys, str(data), "--out", str(tmp_path / "o.npz"))
    embedded = [os.path.realpath(f) for f in report["files"]]
    assert sorted(embedded) == sorted(os.path.realpath(p) for p in real), report["files"]
    assert report["failed"] == []
