"""``axlstm embed`` keeps finished work: outputs checked before work starts, results kept in
OUT.partial/ as they come, Ctrl-C / SIGTERM lose nothing finished, ``--resume`` continues."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import axlstm
import axlstm.cli.embed as cli_embed
from axlstm.cli.main import main
from axlstm.core.interrupt import interrupts_deferred, terminate_as_interrupt
from axlstm.embedding import iter_file_embeddings
from axlstm.embedding.files import NON_FINITE
from axlstm.embedding.store import partial_dir

N_FILES = 6


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "audio"
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(N_FILES):
        sf.write(root / f"f{i}.wav", 0.1 * rng.standard_normal(8000 + 800 * i), 16000)
    return root


@pytest.fixture()
def release(tmp_path: Path) -> str:
    """Fixed weights, so that two runs give the same numbers."""
    torch.manual_seed(0)
    return str(axlstm.create_model("test_axlstm").save_pretrained(tmp_path / "release"))


def embed(*args: str, model: str = "test_axlstm") -> int:
    return main(["embed", *args, "--model", model, "--no-progress", "--device", "cpu"])


def test_unwritable_out_is_found_before_any_work(folder, tmp_path, capsys, monkeypatch):
    def must_not_run(*a, **k):
        raise AssertionError("embedding started before the output was checked")

    monkeypatch.setattr(cli_embed, "iter_file_embeddings", must_not_run)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert embed(str(folder), "--out", str(blocker / "sub" / "e.npz")) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a file, not a folder" in err and str(blocker) in err
    (tmp_path / "dir.npz").mkdir()
    assert embed(str(folder), "--out", str(tmp_path / "dir.npz")) == 1
    assert "it is a folder" in capsys.readouterr().err


def _interrupt_after(k: int, monkeypatch) -> list[str]:
    """Make the embedding loop raise KeyboardInterrupt after ``k`` files; returns the files the
    real loop was asked for."""
    asked: list[str] = []
    real = cli_embed.iter_file_embeddings

    def interrupted(model, paths, **kw):
        asked.extend(paths)
        for i, result in enumerate(real(model, paths, **kw)):
            if i == k:
                raise KeyboardInterrupt
            yield result

    monkeypatch.setattr(cli_embed, "iter_file_embeddings", interrupted)
    return asked


def test_interrupted_run_keeps_finished_files_and_resumes(
    folder, release, tmp_path, capsys, monkeypatch
):
    reference = tmp_path / "ref.npz"
    assert embed(str(folder), "--out", str(reference), "--frames", model=release) == 0

    out = tmp_path / "e.npz"
    _interrupt_after(4, monkeypatch)
    args = ("--out", str(out), "--frames", "--batch-size", "1")
    assert embed(str(folder), *args, model=release) == 130
    assert not out.exists() and partial_dir(out).is_dir()
    assert embed(str(folder), "--out", str(out), "--frames", model=release) == 2
    err = capsys.readouterr().err
    assert "interrupted" in err and "--resume" in err  # and without --resume no overwrite
    # other settings cannot resume it
    assert embed(str(folder), "--out", str(out), "--resume", model=release) == 2
    assert "other settings (frames)" in capsys.readouterr().err

    asked = _interrupt_after(10**6, monkeypatch)
    assert embed(str(folder), "--out", str(out), "--frames", "--resume", model=release) == 0
    assert len(asked) == N_FILES - 4  # only the files not done yet
    assert not partial_dir(out).exists()
    got, ref = np.load(out), np.load(reference)
    assert list(got["files"]) == list(ref["files"])
    for key in ("scene", "frames", "timestamps", "offsets", "duration"):
        np.testing.assert_array_equal(got[key], ref[key])


def test_resume_without_an_unfinished_run_is_an_error(folder, tmp_path, capsys):
    assert embed(str(folder), "--out", str(tmp_path / "e.npz"), "--resume") == 2
    assert "nothing to resume" in capsys.readouterr().err


def test_a_signal_during_a_deferred_step_is_recorded_not_raised(caplog):
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with terminate_as_interrupt():
        with interrupts_deferred("testing") as arrived:
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGINT)
        assert arrived == [signal.SIGTERM, signal.SIGINT]
        assert "SIGTERM arrived while testing" in caplog.text
        with pytest.raises(KeyboardInterrupt):  # the handlers are back after the block
            os.kill(os.getpid(), signal.SIGTERM)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_sigterm_while_the_output_is_written_finishes_the_run(folder, tmp_path, monkeypatch):
    """The race CI once hit: SIGTERM after the output was written but before OUT.partial was
    deleted left both. Now the last step finishes and the run succeeds."""
    out = tmp_path / "e.npz"
    write = cli_embed.write_outputs

    def write_then_signal(*args, **kwargs):
        written = write(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)
        return written

    monkeypatch.setattr(cli_embed, "write_outputs", write_then_signal)
    assert embed(str(folder), "--out", str(out)) == 0
    assert not partial_dir(out).exists() and len(np.load(out)["files"]) == N_FILES


@pytest.mark.timeout(120)
def test_sigterm_keeps_the_finished_work(tmp_path):
    # enough files (about a second of work here) that SIGTERM lands mid-run, not at the end
    folder, n_files = tmp_path / "many", 150
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n_files):
        sf.write(folder / f"f{i:03d}.wav", 0.1 * rng.standard_normal(16000), 16000)
    out = tmp_path / "e.npz"
    cmd = [sys.executable, "-m", "axlstm.cli.main", "embed", str(folder), "--out", str(out)]
    cmd += ["--model", "test_axlstm", "--device", "cpu", "--no-progress", "--batch-size", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 60
    while not (partial_dir(out) / "settings.json").exists() and time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    if proc.returncode == 0:  # finished before the signal: nothing to check
        pytest.skip("the run finished before SIGTERM arrived")
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted by SIGTERM" in err
    assert partial_dir(out).is_dir() and not out.exists()
    resumed = [*cmd, "--resume"]
    done = subprocess.run(resumed, capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert len(np.load(out)["files"]) == n_files


def test_non_finite_embeddings_mark_the_file_failed(folder):
    model = axlstm.create_model("test_axlstm").eval()
    with torch.no_grad():
        next(p for p in model.parameters() if p.ndim > 1).fill_(float("nan"))
    results = list(iter_file_embeddings(model, [str(folder / "f0.wav")]))
    assert [r.error for r in results] == [NON_FINITE]
