"""Pretraining and shard inputs: each real file used once, special files refused by kind, a
full disk named, shard prefixes checked, an input naming no file a usage error."""

from __future__ import annotations

import builtins
import errno
import gc
import io
import json
import logging
import os
import sys
from pathlib import Path

import pytest
import webdataset

from axlstm.cli.main import main
from axlstm.core.errors import InputError, OutputError, UsageError
from axlstm.data import DataConfig, list_inputs, resolve_data, write_shards
from axlstm.data.shards import expand_shards
from test_data import make_good_files

FAST = [
    "logging.tensorboard=false",
    "logging.plots=false",
    "engine.num_threads=1",
    "optim.global_batch=4",
]


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and "Exception ignored" not in err, err
    lines = err.splitlines()
    assert lines, "no error message"
    return lines[-1]


def pretrain_argv(tmp: Path, *data: str) -> list[str]:
    out = ["pretrain", "--config", "debug", "--out", str(tmp / "run"), "--max-steps", "1"]
    return [*out, "--no-progress", "--data", *data, "--set", *FAST]


def files(kind_source) -> list[str]:
    kind, source = kind_source
    assert kind == "files"
    return [source.name(i) for i in range(len(source))]


@pytest.fixture
def loopd(tmp_path) -> Path:
    """A folder of 3 real files, one of them in a sub-folder, with a link loop inside."""
    folder = tmp_path / "loopd"
    good = make_good_files(folder, n=2)  # good_00.wav, good_01.wav, sub/stereo_22k.flac
    assert len(good) == 3
    (folder / "sub" / "back").symlink_to(folder)  # loop: loopd/sub/back -> loopd
    return folder


# ------------------------------------------------------------------ 1. each real file once
def test_pretrain_data_named_several_ways_is_used_once(loopd, tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    caplog.set_level(logging.INFO)
    got = files(resolve_data(DataConfig(paths=["loopd", "loopd/sub", "loopd/good_00.wav"])))
    assert got == ["loopd/good_00.wav", "loopd/good_01.wav", "loopd/sub/stereo_22k.flac"]
    assert "dropped 4 duplicate inputs" in caplog.text

    a = loopd / "good_00.wav"
    (tmp_path / "d").mkdir()
    (tmp_path / "link.wav").symlink_to(a)
    names = ["loopd/good_00.wav", "./loopd/good_00.wav", "d/../loopd/good_00.wav", "link.wav"]
    assert files(resolve_data(DataConfig(paths=names))) == ["loopd/good_00.wav"]
    manifest = tmp_path / "dupman.csv"
    manifest.write_text("path\n" + "".join(f"{n}\n" for n in names))
    listed = files(resolve_data(DataConfig(paths=[str(manifest)])))
    assert listed == [str(tmp_path / "loopd/good_00.wav")]
    # a manifest and a folder naming the same files
    both = files(resolve_data(DataConfig(paths=[str(manifest), "loopd"])))
    assert len(both) == 3 and both[0] == str(tmp_path / "loopd/good_00.wav")


def test_shards_of_a_file_named_several_ways_hold_it_once(loopd, tmp_path, capsys):
    (tmp_path / "link.wav").symlink_to(loopd / "good_00.wav")
    manifest = tmp_path / "dupman.csv"
    names = ["loopd/good_00.wav", "./loopd/good_00.wav", "loopd/sub/../good_00.wav", "link.wav"]
    manifest.write_text("path\n" + "".join(f"{n}\n" for n in names))
    out = tmp_path / "shards"
    assert main(["shards", str(manifest), "--out", str(out), "--no-progress"]) == 0
    assert "wrote 1 samples" in capsys.readouterr().out
    assert json.loads((out / "index.json").read_text())["samples"] == 1
    inputs, root = list_inputs(loopd)
    assert len(inputs) == 3 and root == str(loopd)


# ------------------------------------------------------------------ 2. refused by kind
def _special(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"{kind}.wav"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "loop":
        path.symlink_to(path)
    elif kind == "broken":
        path.symlink_to(tmp_path / "nowhere.wav")
    elif kind == "manifest_fifo":
        path = tmp_path / "list.csv"
        os.mkfifo(path)
    return path


SPECIAL = {
    "fifo": "named pipe",
    "loop": "link loop",
    "broken": "broken symbolic link",
    "manifest_fifo": "named pipe",
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", SPECIAL)
def test_special_data_paths_are_named_by_kind(tmp_path, kind):
    path = _special(tmp_path, kind)
    with pytest.raises(InputError, match=SPECIAL[kind]) as info:
        resolve_data(DataConfig(paths=[str(path)]))
    assert str(path) in str(info.value)
    with pytest.raises(InputError, match=SPECIAL[kind]):
        list_inputs(path)
    with pytest.raises(FileNotFoundError, match="data file not found"):
        resolve_data(DataConfig(paths=[str(tmp_path / "missing.wav")]))


@pytest.mark.timeout(60)
def test_special_shard_files_are_named_by_kind(tmp_path):
    os.mkfifo(tmp_path / "pipe.tar")
    with pytest.raises(InputError, match="named pipe"):
        expand_shards(tmp_path / "pipe.tar")
    with pytest.raises(FileNotFoundError, match="shard not found"):
        expand_shards(tmp_path / "none.tar")


@pytest.mark.timeout(120)
def test_pretrain_and_shards_name_a_fifo(tmp_path, capsys):
    fifo = _special(tmp_path, "fifo")
    assert main(pretrain_argv(tmp_path, str(fifo))) == 1
    line = one_line_error(capsys)
    assert f"cannot read data file {fifo}: it is a named pipe (FIFO)" in line, line
    assert main(["shards", str(fifo), "--out", str(tmp_path / "sh"), "--no-progress"]) == 1
    assert f"cannot read input {fifo}: it is a named pipe (FIFO)" in one_line_error(capsys)
    assert not (tmp_path / "sh").exists()


# ------------------------------------------------------------------ 3. a full disk
@pytest.fixture
def unraisable(monkeypatch) -> list:
    """What Python reports as "Exception ignored in ..." (errors raised in __del__)."""
    seen: list = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    return seen


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_full_disk_in_the_tar_writer_is_one_output_error(loopd, tmp_path, monkeypatch, unraisable):
    monkeypatch.setattr(webdataset.TarWriter, "write", _enospc)
    inputs, root = list_inputs(loopd)
    out = tmp_path / "shards"
    with pytest.raises(OutputError, match="No space left on device") as info:
        write_shards(inputs, out, root=root, shard_size=2)
    assert str(out / "shard-000000.tar") in str(info.value)
    gc.collect()
    assert unraisable == [] and os.listdir(out) == []


class _FullDisk(io.RawIOBase):
    """A file on a disk with ``disk["room"]`` bytes free: a write beyond fails with ENOSPC."""

    def __init__(self, path, disk: dict) -> None:
        self.raw = io.FileIO(path, "w")
        self.disk = disk

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        if len(data) > self.disk["room"]:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.disk["room"] -= len(data)
        return self.raw.write(data)

    def fileno(self) -> int:
        return self.raw.fileno()

    def close(self) -> None:
        self.raw.close()
        super().close()


@pytest.mark.parametrize("room", [0, 30_000, 55_000, 90_000])
def test_full_disk_in_a_shard_file_is_one_line(
    loopd, tmp_path, monkeypatch, capsys, room, unraisable
):
    """The disk fills while a shard is written (first shard or a later one, during a sample or
    when the tar is closed): one line naming the shard, no temporary file, no noise."""
    real_open = builtins.open
    disk = {"room": room}

    def full_open(path, mode="r", *args, **kwargs):
        if "w" in mode and str(path).endswith(".tar.tmp"):
            return io.BufferedWriter(_FullDisk(path, disk))
        return real_open(path, mode, *args, **kwargs)

    import axlstm.data.shards as shards_module

    monkeypatch.setattr(shards_module, "open", full_open, raising=False)
    out = tmp_path / "shards"
    argv = ["shards", str(loopd), "--out", str(out), "--shard-size", "2", "--no-progress"]
    assert main(argv) == 1
    line = one_line_error(capsys)
    assert line.startswith("axlstm shards: error: cannot write shard ")
    assert line.endswith(".tar: No space left on device"), line
    gc.collect()
    assert unraisable == []
    left = os.listdir(out) if out.exists() else []
    assert not [n for n in left if n.endswith(".tmp")] and "index.json" not in left
    first = room < 61440  # the first shard takes 61440 bytes
    assert f"shard-00000{0 if first else 1}.tar" in line
    assert left == ([] if first else ["shard-000000.tar"])


# ------------------------------------------------------------------ 4. --prefix
@pytest.mark.parametrize("prefix", ["../../evil", "a/b", "", ".hidden", "/abs"])
def test_shard_prefix_is_checked_when_parsed(tmp_path, capsys, monkeypatch, prefix):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in").mkdir()
    with pytest.raises(SystemExit) as info:
        main(["shards", "in", "--out", "out", f"--prefix={prefix}"])
    assert info.value.code == 2
    assert "argument --prefix: shard prefix" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    with pytest.raises(UsageError, match="shard prefix"):
        write_shards([], tmp_path / "lib", prefix=prefix)


# ------------------------------------------------------------------ 5. no files: usage error
@pytest.mark.timeout(120)
def test_an_input_naming_no_file_is_a_usage_error(tmp_path, capsys):
    manifest = tmp_path / "header.csv"
    manifest.write_text("path,duration\n")
    embed = ["embed", str(manifest), "--model", "test_axlstm", "--out", str(tmp_path / "e.npz")]
    assert main(embed) == 2
    assert str(manifest) in one_line_error(capsys)
    assert main(pretrain_argv(tmp_path, str(manifest))) == 2
    assert f"no audio or .npy feature files found in {manifest}" in one_line_error(capsys)
    out = tmp_path / "shards"
    assert main(["shards", str(manifest), "--out", str(out), "--no-progress"]) == 2
    assert f"no audio or .npy feature files found in {manifest}" in one_line_error(capsys)
    assert not out.exists()
    with pytest.raises(UsageError, match=r"no audio or \.npy feature files found in"):
        resolve_data(DataConfig(paths=[str(manifest)]))
