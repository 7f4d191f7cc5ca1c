"""Hardening of weights and training runs (issue 11): resume needs a checkpoint and falls back
to the newest intact one, checkpoints are independent files, non-finite weights are refused,
a release config is checked against its weights before anything is allocated, broken weight
files and refused pickles are told in one line, Ctrl-C stops a run with a checkpoint, an
all-bad data folder is one error, outputs and numeric options are checked before work."""

from __future__ import annotations

import json
import logging
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import axlstm
from axlstm.cli.main import main
from axlstm.core import CheckpointError, UsageError
from axlstm.engine import CheckpointManager, TrainerCallback, load_checkpoint
from axlstm.models import MODEL_CLASSES
from axlstm.recipes import load_config, pretrain
from test_data import make_bad_files

FAST = [
    "logging.tensorboard=false",
    "logging.plots=false",
    "engine.num_threads=1",
    "data.procedural_size=64",
    "data.procedural_seconds=[0.6, 2.5]",
    "optim.global_batch=4",
]


def fast_config(*overrides: str):
    return load_config("debug", [*FAST, *overrides])


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    lines = err.splitlines()
    assert lines, "no error message"
    return lines[-1]


@pytest.fixture(scope="module")
def ref_run(tmp_path_factory) -> Path:
    """An uninterrupted 6-step run with checkpoints at steps 2, 4 and 6."""
    out = tmp_path_factory.mktemp("ref") / "run"
    over = ["schedule.max_steps=6", "engine.ckpt_every=2", "engine.keep_last=5"]
    pretrain(fast_config(*over), out)
    return out


def partial_run(ref_run: Path, dest: Path, step: int) -> Path:
    """A copy of ``ref_run`` as it was when it stopped after step ``step``."""
    shutil.copytree(ref_run / "checkpoints", dest / "checkpoints")
    for s, path in CheckpointManager(dest / "checkpoints").numbered():
        if s > step:
            path.unlink()
    shutil.copyfile(dest / "checkpoints" / f"step_{step:09d}.pt", dest / "checkpoints" / "last.pt")
    return dest


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def poison(path: Path, key: str | None = None) -> str:
    """Put a NaN into the model weights of a training checkpoint; returns the tensor's name."""
    state = torch.load(path, weights_only=True)
    key = key or sorted(state["model"])[0]
    state["model"][key] = state["model"][key].clone().fill_(float("nan"))
    torch.save(state, path)
    return key


def official_file(path: Path, **changes: float) -> Path:
    state = axlstm.create_model("test_axlstm").state_dict()
    for key, value in changes.items():
        state[key] = state[key].clone().fill_(value)
    torch.save({"model": state}, path)
    return path


# ---------------------------------------------------------------------------- resume
def test_resume_without_a_checkpoint_is_an_error(tmp_path, capsys):
    with pytest.raises(UsageError, match=r"holds no checkpoint"):
        pretrain(fast_config("schedule.max_steps=1"), tmp_path / "api", resume=True)
    assert not (tmp_path / "api" / "checkpoints" / "last.pt").exists()

    missing = tmp_path / "missing"
    assert main(["pretrain", "--config", "debug", "--out", str(missing), "--resume"]) == 2
    assert "missing does not exist" in one_line_error(capsys) and not missing.exists()
    (tmp_path / "empty" / "checkpoints").mkdir(parents=True)
    (tmp_path / "empty" / "config.yaml").write_text("model:\n  name: test_axlstm\n")
    assert main(["pretrain", "--out", str(tmp_path / "empty"), "--resume"]) == 2
    line = one_line_error(capsys)
    assert "--resume" in line and "empty holds no checkpoint" in line
    assert not list((tmp_path / "empty").glob("*.log"))  # refused before anything was done


def test_checkpoints_are_independent_files(ref_run):
    ckpts = ref_run / "checkpoints"
    newest, last = ckpts / "step_000000006.pt", ckpts / "last.pt"
    assert last.read_bytes() == newest.read_bytes()
    assert not os.path.samefile(last, newest)
    assert all(p.stat().st_nlink == 1 for p in ckpts.iterdir())
    assert oct(last.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_resume_falls_back_to_the_newest_intact_checkpoint(ref_run, tmp_path, caplog):
    run = partial_run(ref_run, tmp_path / "run", step=4)
    ckpts = run / "checkpoints"
    truncate(ckpts / "step_000000004.pt")  # the newest step file, not its copy last.pt
    over = ["schedule.max_steps=6", "engine.ckpt_every=2", "engine.keep_last=5"]
    with caplog.at_level(logging.WARNING, logger="axlstm"):
        summary = pretrain(fast_config(*over), run, resume=True)
    assert summary.start_step == 4 and summary.steps == 6
    assert "step_000000004.pt cannot be used (" in caplog.text
    assert "truncated or corrupt" in caplog.text and "resuming from" in caplog.text
    assert str(ckpts / "last.pt") in caplog.text

    # last.pt cut short while the newest step file is intact: it is named, not read
    run = partial_run(ref_run, tmp_path / "run_last", step=4)
    truncate(run / "checkpoints" / "last.pt")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="axlstm"):
        summary = pretrain(fast_config(*over), run, resume=True)
    assert summary.start_step == 4
    assert f"checkpoint {run / 'checkpoints' / 'last.pt'} is damaged" in caplog.text

    # Both copies of step 4 damaged (one cut short, one with NaN weights): step 2 it is, and
    # the resumed run still ends exactly where the uninterrupted one did.
    run = partial_run(ref_run, tmp_path / "run2", step=4)
    ckpts = run / "checkpoints"
    truncate(ckpts / "step_000000004.pt")
    bad_key = poison(ckpts / "last.pt")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="axlstm"):
        summary = pretrain(fast_config(*over), run, resume=True)
    assert summary.start_step == 2 and summary.steps == 6
    assert f"non-finite weights (NaN or infinite values) in {bad_key}" in caplog.text
    assert "step_000000002.pt (step 2) instead" in caplog.text
    ref, got = (
        load_checkpoint(ref_run / "checkpoints" / "last.pt"),
        load_checkpoint(ckpts / "last.pt"),
    )
    for key, value in ref["model"].items():
        assert torch.equal(got["model"][key], value), key


def test_resume_with_every_checkpoint_damaged_lists_them(ref_run, tmp_path, capsys):
    run = partial_run(ref_run, tmp_path / "run", step=4)
    ckpts = run / "checkpoints"
    for path in ckpts.iterdir():
        path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="no intact checkpoint") as info:
        pretrain(fast_config("schedule.max_steps=6"), run, resume=True)
    for name in ("step_000000004.pt", "last.pt", "step_000000002.pt"):
        assert f"{name}: file is empty (0 bytes)" in str(info.value)
    args = ["pretrain", "--config", "debug", "--out", str(run), "--resume", "--set", *FAST]
    assert main(args) == 1
    assert "no intact checkpoint" in one_line_error(capsys)


def test_a_checkpoint_of_another_model_is_one_error(ref_run, tmp_path):
    run = partial_run(ref_run, tmp_path / "run", step=2)
    with pytest.raises(CheckpointError, match=r"does not fit the model of this run's config"):
        pretrain(fast_config("schedule.max_steps=6", "model.overrides.depth=3"), run, resume=True)


# ----------------------------------------------------------------------- non-finite weights
def test_non_finite_weights_are_refused_at_load(ref_run, tmp_path, capsys):
    # a release folder
    release = axlstm.create_model("test_axlstm").save_pretrained(tmp_path / "rel")
    state = load_file(release / "model.safetensors")
    state["cls_token"][..., 3] = float("inf")
    save_file(state, release / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"rel/model\.safetensors: non-finite .* cls_token"):
        axlstm.load_model(release)
    # an official checkpoint, through the API and `axlstm convert`
    official = official_file(tmp_path / "nan.pth", mask_token=float("nan"))
    with pytest.raises(CheckpointError, match=r"nan\.pth: non-finite .* mask_token"):
        axlstm.load_official(official, "test_axlstm")
    out = tmp_path / "converted"
    assert main(["convert", str(official), str(out), "--arch", "test_axlstm"]) == 1
    assert "mask_token" in one_line_error(capsys) and not out.exists()
    # a training checkpoint, through `axlstm export`
    ckpt = tmp_path / "step.pt"
    shutil.copyfile(ref_run / "checkpoints" / "step_000000002.pt", ckpt)
    key = poison(ckpt)
    with pytest.raises(CheckpointError, match=rf"step\.pt: non-finite .* {key}"):
        load_checkpoint(ckpt)
    assert main(["export", str(ckpt), str(tmp_path / "exported")]) == 1
    assert key in one_line_error(capsys) and not (tmp_path / "exported").exists()


# ------------------------------------------------------------------------ release configs
def _release(tmp_path: Path, name: str = "rel") -> tuple[Path, dict]:
    path = axlstm.create_model("test_axlstm").save_pretrained(tmp_path / name)
    return path, json.loads((path / "config.json").read_text())


class _Recorder:
    """Model classes that note the default device each model is built on."""

    def __init__(self, monkeypatch) -> None:
        self.devices: list[str] = []
        for kind, (model_type, config_type) in list(MODEL_CLASSES.items()):
            spy = type(model_type.__name__, (model_type,), {"__init__": self._init(model_type)})
            monkeypatch.setitem(MODEL_CLASSES, kind, (spy, config_type))

    def _init(self, model_type):
        def init(model, config):
            self.devices.append(str(torch.get_default_device()))
            model_type.__init__(model, config)

        return init


def test_hostile_config_is_refused_before_any_allocation(tmp_path, monkeypatch):
    """A config asking for a huge model is compared with the safetensors header on the meta
    device: nothing is allocated (a real test_axlstm of width 2**20 would need over a
    terabyte) and the refusal costs milliseconds, whatever the config says."""
    path, cfg = _release(tmp_path)
    axlstm.load_model(path)  # the meta device's one-time set-up, outside the timings
    recorder = _Recorder(monkeypatch)
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for change, expected in [
        ({"embed_dim": 2**20, "num_heads": 1}, r"shape mismatch blocks\.0\..*\(2097152,\) in the"),
        ({"depth": 10**6}, r"depth 1000000, the weights hold only \d+ tensors"),
        ({"depth": 4000, "embed_dim": 2**16}, r"depth 4000, the weights hold only"),
        ({"depth": 3}, r"missing \['blocks\.2\."),
    ]:
        (path / "config.json").write_text(json.dumps({**cfg, "model": {**cfg["model"], **change}}))
        t0 = time.perf_counter()
        with pytest.raises(CheckpointError, match=expected) as info:
            axlstm.load_model(path)
        assert time.perf_counter() - t0 < 5.0, change  # measured: ~0.02 s
        assert str(path / "model.safetensors") in str(info.value)
        assert str(path / "config.json") in str(info.value)
    assert set(recorder.devices) <= {"meta"}
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    assert grown_mib < 200  # kilobytes on Linux: no allocation of the model's size
    # with the right config, one skeleton on meta, then the real model
    (path / "config.json").write_text(json.dumps(cfg))
    recorder.devices.clear()
    axlstm.load_model(path)
    assert recorder.devices == ["meta", "cpu"]


def _bad_config(path: Path, cfg: dict, case: str) -> None:
    target = path / "config.json"
    if case == "list":
        target.write_text(json.dumps([cfg]))
    elif case == "string_width":
        target.write_text(json.dumps({**cfg, "model": {**cfg["model"], "embed_dim": "wide"}}))
    elif case == "model_class_list":
        target.write_text(json.dumps({**cfg, "model_class": ["masked_spec"]}))
    elif case == "unknown_class":
        target.write_text(json.dumps({**cfg, "model_class": "martian"}))
    elif case == "no_model":
        target.write_text(json.dumps({k: v for k, v in cfg.items() if k != "model"}))
    elif case == "model_list":
        target.write_text(json.dumps({**cfg, "model": [1, 2]}))
    elif case == "version_text":
        target.write_text(json.dumps({**cfg, "format_version": "one"}))
    elif case == "provenance_list":
        target.write_text(json.dumps({**cfg, "provenance": ["x"]}))
    elif case == "latin1":
        target.write_bytes(json.dumps({**cfg, "note": "é"}, ensure_ascii=False).encode("latin-1"))
    elif case == "deep":
        target.write_text("[" * 100_000 + "]" * 100_000)
    elif case == "empty":
        target.write_text("")
    elif case == "folder":
        target.unlink()
        target.mkdir()
    elif case == "fifo":
        target.unlink()
        os.mkfifo(target)
    elif case == "loop":
        target.unlink()
        target.symlink_to(target)
    else:
        raise AssertionError(case)


@pytest.mark.parametrize(
    "case, expected",
    [
        ("list", "a JSON list, not an object"),
        ("string_width", "embed_dim: expected an integer"),
        ("model_class_list", "'model_class' must be a string"),
        ("unknown_class", "unknown model_class 'martian'"),
        ("no_model", "'model' must be a JSON object"),
        ("model_list", "'model' must be a JSON object"),
        ("version_text", "format_version 'one' is not an integer"),
        ("provenance_list", "'provenance' must be a JSON object"),
        ("latin1", "not UTF-8 text"),
        ("deep", "nested too deeply"),
        ("empty", "file is empty"),
        ("folder", "it is a folder, not a regular file"),
        ("fifo", "named pipe"),
        ("loop", "symbolic link loop"),
    ],
)
def test_bad_release_configs_are_one_clear_error(tmp_path, case, expected):
    path, cfg = _release(tmp_path)
    _bad_config(path, cfg, case)
    t0 = time.perf_counter()
    with pytest.raises(CheckpointError, match=expected) as info:
        axlstm.load_model(path)
    assert time.perf_counter() - t0 < 5.0  # a pipe is refused, never opened
    assert "config.json" in str(info.value) and "\n" not in str(info.value)


def test_release_folder_itself_is_checked(tmp_path):
    path, _ = _release(tmp_path)
    with pytest.raises(CheckpointError, match="it is a regular file"):
        axlstm.load_model(path / "config.json")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    with pytest.raises(CheckpointError, match="symbolic link loop"):
        axlstm.load_model(tmp_path / "loop")
    # a config with a number written as text still means that number
    cfg = json.loads((path / "config.json").read_text())
    cfg["model"]["embed_dim"] = str(cfg["model"]["embed_dim"])
    (path / "config.json").write_text(json.dumps(cfg))
    assert axlstm.load_model(path).config.embed_dim == 32


# ------------------------------------------------------------------- broken weight files
def _damage(path: Path, how: str, good: bytes) -> None:
    if how == "empty":
        path.write_bytes(b"")
    elif how == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif how == "garbage":
        path.write_bytes(b"\x00\x17not a checkpoint\xff" * 64)
    elif how == "fifo":
        os.mkfifo(path)
    elif how == "folder":
        path.mkdir()
    elif how == "loop":
        path.symlink_to(path)


_EXPECTED = {
    "empty": re.escape("file is empty (0 bytes)"),
    "truncated": "truncated or corrupt",
    "garbage": "(not a PyTorch checkpoint|not a checkpoint of tensors|truncated or corrupt|"
    "not a valid safetensors)",
    "fifo": re.escape("it is a named pipe (FIFO), not a regular file"),
    "folder": "it is a folder, not a regular file",
    "loop": "symbolic link loop",
}


@pytest.mark.parametrize("how", list(_EXPECTED))
@pytest.mark.parametrize("kind", ["official .pth", "training .pt", "release .safetensors"])
def test_broken_weight_files_are_one_line(ref_run, tmp_path, kind, how):
    if kind == "official .pth":
        good = official_file(tmp_path / "good.pth").read_bytes()
        path = tmp_path / "model.pth"
        load = lambda: axlstm.load_official(path, "test_axlstm")  # noqa: E731
    elif kind == "training .pt":
        good = (ref_run / "checkpoints" / "step_000000002.pt").read_bytes()
        path = tmp_path / "step.pt"
        load = lambda: load_checkpoint(path)  # noqa: E731
    else:
        release, _ = _release(tmp_path)
        path = release / "model.safetensors"
        good = path.read_bytes()
        path.unlink()
        load = lambda: axlstm.load_model(release)  # noqa: E731
    _damage(path, how, good)
    with pytest.raises(CheckpointError, match=_EXPECTED[how]) as info:
        load()
    message = str(info.value)
    assert path.name in message and "\n" not in message
    assert "Errno" not in message and "weights_only" not in message


class _System:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_refused_pickles_are_one_line_without_advice(ref_run, tmp_path, capsys):
    victim = tmp_path / "pwned"
    model = axlstm.create_model("test_axlstm")
    evil = tmp_path / "evil.pth"
    torch.save({"model": model.state_dict(), "run": _System(f"touch {victim}")}, evil)
    state = torch.load(ref_run / "checkpoints" / "step_000000002.pt", weights_only=True)
    state["extra"] = _System(f"touch {victim}")
    evil_pt = tmp_path / "evil.pt"
    torch.save(state, evil_pt)
    expected = (
        r"refused to load .*evil\.pth?: it holds Python objects, not only tensors "
        r"\(unsupported global: os\.system\); axlstm never runs code from checkpoints"
    )
    for load in (
        lambda: axlstm.load_official(evil, "test_axlstm"),
        lambda: load_checkpoint(evil_pt),
    ):
        with pytest.raises(CheckpointError, match=expected) as info:
            load()
        assert "\n" not in str(info.value) and "weights_only" not in str(info.value)
    assert main(["convert", str(evil), str(tmp_path / "out"), "--arch", "test_axlstm"]) == 1
    line = one_line_error(capsys)
    assert "unsupported global: os.system" in line and "weights_only" not in line
    assert main(["export", str(evil_pt), str(tmp_path / "out")]) == 1
    assert "unsupported global: os.system" in one_line_error(capsys)
    assert not victim.exists() and not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- Ctrl-C
class _Signals(TrainerCallback):
    def __init__(self, at_step: int, count: int) -> None:
        self.at_step, self.count = at_step, count

    def on_step(self, trainer, metrics):
        if metrics["step"] == self.at_step:
            for _ in range(self.count):
                os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C sends


def test_ctrl_c_stops_after_the_step_with_a_checkpoint(tmp_path):
    before = signal.getsignal(signal.SIGINT)
    cfg = fast_config("schedule.max_steps=6", "engine.ckpt_every=5")
    summary = pretrain(cfg, tmp_path / "run", callback=_Signals(at_step=2, count=1))
    assert summary.stopped_early and summary.steps == 3  # the step after the signal
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["step"] == 3
    assert signal.getsignal(signal.SIGINT) is before
    resumed = pretrain(cfg, tmp_path / "run", resume=True)
    assert resumed.start_step == 3 and resumed.steps == 6


def test_second_ctrl_c_aborts_at_once(tmp_path):
    before = signal.getsignal(signal.SIGINT)
    cfg = fast_config("schedule.max_steps=6", "engine.ckpt_every=2")
    with pytest.raises(KeyboardInterrupt):
        pretrain(cfg, tmp_path / "run", callback=_Signals(at_step=3, count=2))
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["step"] == 2
    assert signal.getsignal(signal.SIGINT) is before


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_cli_ctrl_c_keeps_a_checkpoint_and_exits_130(tmp_path, signum):
    out = tmp_path / "run"
    args = ["--config", "debug", "--out", str(out), "--max-steps", "500", "--set", *FAST]
    args += ["data.num_workers=1", "engine.ckpt_every=1000", "logging.log_every=1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "axlstm.cli.main", "pretrain", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    log = out / "log.jsonl"
    deadline = time.monotonic() + 120
    while not (log.exists() and log.stat().st_size) and proc.poll() is None:
        assert time.monotonic() < deadline, "the run did not start"
        time.sleep(0.02)
    # a terminal's Ctrl-C, or a scheduler's SIGTERM, reaches the DataLoader worker too
    os.killpg(proc.pid, signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "continue with: axlstm pretrain" in err
    step = load_checkpoint(out / "checkpoints" / "last.pt")["step"]
    assert 1 <= step < 500


# ------------------------------------------------------------------ data, outputs, options
@pytest.mark.parametrize("workers", [0, 1])
def test_all_bad_data_folder_is_one_error(tmp_path, capsys, workers):
    make_bad_files(tmp_path / "bad")
    args = ["pretrain", "--config", "debug", "--out", str(tmp_path / "run"), "--max-steps", "2"]
    args += ["--data", str(tmp_path / "bad"), "--set", *FAST, f"data.num_workers={workers}"]
    assert main(args) == 1
    line = one_line_error(capsys)
    assert f"no usable clip in {tmp_path / 'bad'} (8 files)" in line
    assert "8 different files" in line and "2 silent" in line
    (tmp_path / "none").mkdir()
    (tmp_path / "none" / "notes.txt").write_text("no audio here")
    args[args.index(str(tmp_path / "bad"))] = str(tmp_path / "none")
    args[4] = str(tmp_path / "run2")
    assert main(args) == 2  # a usage error, as in embed
    assert f"no audio or .npy feature files found in {tmp_path / 'none'}" in one_line_error(capsys)


def test_outputs_are_checked_before_any_work(ref_run, tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    official = official_file(tmp_path / "off.pth")
    ckpt = ref_run / "checkpoints" / "last.pt"
    (tmp_path / "audio").mkdir()

    def must_not_run(*args, **kwargs):
        raise AssertionError("work started before the output was checked")

    monkeypatch.setattr("axlstm.cli.convert.load_official", must_not_run)
    monkeypatch.setattr("axlstm.engine.export_release", must_not_run)
    monkeypatch.setattr("axlstm.data.list_inputs", must_not_run)
    monkeypatch.setattr("axlstm.recipes.pretrain", must_not_run)
    for args in [
        ["pretrain", "--config", "debug", "--out", str(blocker / "run")],
        ["pretrain", "--config", "debug", "--out", str(blocker)],
        ["convert", str(official), str(blocker / "rel"), "--arch", "test_axlstm"],
        ["convert", str(official), str(blocker), "--arch", "test_axlstm"],
        ["export", str(ckpt), str(blocker / "rel")],
        ["shards", str(tmp_path / "audio"), "--out", str(blocker / "shards")],
    ]:
        assert main(args) == 1, args
        line = one_line_error(capsys)
        assert "cannot write" in line and str(blocker) in line, line


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into read-only folders")
def test_read_only_outputs_are_refused(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        official = official_file(tmp_path / "off.pth")
        assert main(["convert", str(official), str(locked / "rel"), "--arch", "test_axlstm"]) == 1
        assert "cannot write release folder" in one_line_error(capsys)
        assert main(["pretrain", "--config", "debug", "--out", str(locked / "run")]) == 1
        assert "cannot write run folder" in one_line_error(capsys)
    finally:
        locked.chmod(0o755)


@pytest.mark.parametrize(
    "args, option",
    [
        (["pretrain", "--config", "debug", "--out", "x", "--max-steps", "0"], "--max-steps"),
        (["pretrain", "--config", "debug", "--out", "x", "--max-steps", "2.5"], "--max-steps"),
        (["convert", "a.pth", "out", "--arch", "test_axlstm", "--depth", "0"], "--depth"),
        (["convert", "a.pth", "out", "--arch", "test_axlstm", "--embed-dim", "-8"], "--embed-dim"),
        (["convert", "a.pth", "out", "--arch", "test_axlstm", "--num-heads", "x"], "--num-heads"),
        (["shards", "in", "--out", "out", "--shard-size", "0"], "--shard-size"),
        (["shards", "in", "--out", "out", "--workers", "-1"], "--workers"),
    ],
)
def test_numeric_options_are_checked(tmp_path, capsys, monkeypatch, args, option):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2
    assert f"argument {option}:" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and not (tmp_path / "x").exists()


def test_shards_of_unusable_inputs_is_an_error(tmp_path, capsys):
    make_bad_files(tmp_path / "bad")
    out = tmp_path / "shards"
    assert main(["shards", str(tmp_path / "bad"), "--out", str(out)]) == 1
    line = one_line_error(capsys)
    assert "none of the 8 files" in line and "no shard was written" in line
    assert not out.exists()
    (tmp_path / "none").mkdir()
    assert main(["shards", str(tmp_path / "none"), "--out", str(out)]) == 2
    assert "no audio or .npy feature files found" in one_line_error(capsys)
