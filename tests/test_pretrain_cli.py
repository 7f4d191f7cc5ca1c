"""``axlstm pretrain / export / shards`` end to end, including crashes and resumption."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

import axlstm
from axlstm.cli.main import main
from axlstm.engine import CheckpointManager, load_checkpoint
from axlstm.engine.metrics import read_records
from axlstm.recipes import load_config
from test_data import make_bad_files, make_good_files

FAST = [
    "logging.tensorboard=false",
    "logging.plots=false",
    "engine.num_threads=1",
    "data.procedural_size=64",
    "data.procedural_seconds=[0.6, 2.5]",
    "optim.global_batch=4",
]


def pretrain_args(out, *extra_set, steps=8):
    return [
        "pretrain",
        "--config",
        "debug",
        "--out",
        str(out),
        "--max-steps",
        str(steps),
        "--set",
        *FAST,
        *extra_set,
    ]


def run_cli_subprocess(args, **kwargs):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "axlstm.cli.main", *args]
    return subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs
    )


def weights(run_dir):
    return load_checkpoint(run_dir / "checkpoints" / "last.pt")["model"]


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs"


def losses(run_dir):
    return [(r["step"], r["loss"]) for r in read_records(run_dir / "log.jsonl")]


# ------------------------------------------------------------------------- the debug recipe
@pytest.fixture(scope="module")
def debug_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("debug") / "run"
    t0 = time.perf_counter()
    code = main(["pretrain", "--config", "debug", "--out", str(out)])
    return out, code, time.perf_counter() - t0


def test_debug_recipe_end_to_end(debug_run, capsys):
    out, code, wall = debug_run
    assert code == 0
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["model"]["name"] == "test_axlstm" and cfg["schedule"]["max_steps"] == 30
    assert load_config(str(out / "config.yaml")).optim.lr == 1e-3  # a loadable preset
    records = read_records(out / "log.jsonl")
    assert [r["step"] for r in records] == [5, 10, 15, 20, 25, 30]
    for r in records:
        assert math.isfinite(r["loss"]) and r["lr"] >= 0 and r["clips_per_s"] > 0
        assert r["skipped_total"] == 0
    assert records[-1]["loss"] < records[0]["loss"]  # it learns something
    assert (out / "log.csv").read_text().startswith("step,epoch,loss,lr,clips_per_s")
    ck = load_checkpoint(out / "checkpoints" / "last.pt")
    assert ck["step"] == 30 and ck["samples_seen"] == 240
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "last.pt",
        "step_000000020.pt",
        "step_000000030.pt",
    ]
    assert (out / "plots" / "loss.png").stat().st_size > 1000
    assert (out / "plots" / "reconstruction.png").stat().st_size > 1000
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert json.loads((out / "run.json").read_text())["total_steps"] == 30
    assert "saved checkpoint" in (out / "train.log").read_text()
    print(f"debug recipe wall time: {wall:.1f} s")


def test_export_gives_a_loadable_release(debug_run, tmp_path, capsys):
    out, _, _ = debug_run
    assert main(["export", str(out / "checkpoints" / "last.pt"), str(tmp_path / "rel")]) == 0
    assert "step 30" in capsys.readouterr().out
    model = axlstm.load_model(tmp_path / "rel")
    assert_same_weights(model.state_dict(), weights(out))
    prov = json.loads((tmp_path / "rel" / "config.json").read_text())["provenance"]
    assert prov["step"] == 30 and prov["run_dir"] == str(out.resolve())
    assert prov["train_config"]["model"]["name"] == "test_axlstm"
    assert len(prov["checkpoint_sha256"]) == 64
    assert main(["export", str(out), str(tmp_path / "rel2")]) == 0  # a run folder works too


def test_cli_errors_are_clear(debug_run, tmp_path, capsys):
    out, _, _ = debug_run
    assert main(["pretrain", "--config", "debug", "--out", str(out)]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main([*pretrain_args(tmp_path / "x"), "optim.lrr=1"]) == 2
    assert "did you mean 'lr'" in capsys.readouterr().err
    assert main(["pretrain", "--out", str(tmp_path / "y")]) == 2
    assert "--config is required" in capsys.readouterr().err
    assert main([*pretrain_args(tmp_path / "z", "optim.lr=5e-4"), "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["optim"]["lr"] == 5e-4 and printed["schedule"]["max_steps"] == 8
    assert not (tmp_path / "z").exists()


# ------------------------------------------------------------------------- crash and resume
@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """An uninterrupted 8-step run with one DataLoader worker."""
    out = tmp_path_factory.mktemp("ref") / "run"
    assert main(pretrain_args(out, "engine.ckpt_every=2", "data.num_workers=1")) == 0
    return out


def test_kill_after_a_checkpoint_and_resume_is_exact(reference_run, tmp_path):
    out = tmp_path / "run"
    args = pretrain_args(out, "engine.ckpt_every=2", "data.num_workers=1")
    proc = run_cli_subprocess([*args, "engine.crash_after_step=4"])
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL, err
    assert load_checkpoint(out / "checkpoints" / "last.pt")["step"] == 4
    assert main([*args, "--resume"]) == 0  # without the crash hook: a benign config change
    assert_same_weights(weights(reference_run), weights(out))
    assert losses(out) == losses(reference_run)  # same curve, no duplicated records


def test_external_sigkill_at_any_moment_then_resume_is_exact(tmp_path):
    steps = ["engine.ckpt_every=2"]
    ref = tmp_path / "ref"
    assert main(pretrain_args(ref, *steps, steps=24)) == 0
    out = tmp_path / "run"
    proc = run_cli_subprocess(pretrain_args(out, *steps, steps=24))
    first = out / "checkpoints" / "step_000000002.pt"
    deadline = time.monotonic() + 240
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)  # wherever it is: mid-step, mid-write, mid-log
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"the run ended before the kill: {err}"
    # The newest complete checkpoint (last.pt, or step_N.pt if the kill fell between writing
    # it and re-linking last.pt).
    killed_at = load_checkpoint(CheckpointManager(out / "checkpoints").latest())["step"]
    assert 2 <= killed_at < 24
    assert main(["pretrain", "--out", str(out), "--resume"]) == 0  # config from the run folder
    assert_same_weights(weights(ref), weights(out))


# --------------------------------------------------------------------------- data on disk
def test_bad_files_are_skipped_and_named_while_training(tmp_path):
    make_good_files(tmp_path / "data", n=3)
    bad = make_bad_files(tmp_path / "data")
    out = tmp_path / "run"
    assert main([*pretrain_args(out, steps=3), "--data", str(tmp_path / "data")]) == 0
    record = read_records(out / "log.jsonl")[-1]
    assert record["skipped_total"] > 0 and set(record["skipped"]) <= set(bad.values())
    log = (out / "train.log").read_text()
    named = [n for n in bad if n in log]
    assert named and all(f"({bad[n]})" in log for n in named)


def test_shards_command_and_training_on_shards(tmp_path, capsys):
    make_good_files(tmp_path / "audio", n=6)
    make_bad_files(tmp_path / "audio")
    for features in (False, True):
        shard_dir = tmp_path / ("feats" if features else "wav")
        flag = ["--features"] if features else []
        assert (
            main(
                [
                    "shards",
                    str(tmp_path / "audio"),
                    "--out",
                    str(shard_dir),
                    *flag,
                    "--shard-size",
                    "3",
                ]
            )
            == 0
        )
        printed = capsys.readouterr().out
        assert "wrote 7 samples" in printed and "skipped 8" in printed
        out = tmp_path / f"run_{features}"
        args = [*pretrain_args(out, "data.num_workers=1", steps=2), "--data", str(shard_dir)]
        assert main(args) == 0
        assert load_checkpoint(out / "checkpoints" / "last.pt")["data"][0]["kind"] == "shards"
