"""Files in and out: special files refused by name, outputs checked before work, atomic
writes that follow the umask and name the file when they fail; the CLI's one-line errors."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from axlstm.cli.main import describe, exit_code, main
from axlstm.core.errors import (
    AudioError,
    CheckpointError,
    ConfigError,
    InputError,
    OutputError,
    UsageError,
)
from axlstm.core.fileio import (
    atomic_write,
    atomic_write_text,
    check_input_file,
    check_output_dir,
    check_output_file,
)


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_written_files_follow_the_umask(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        path = atomic_write_text(tmp_path / "f.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_a_failed_write_names_the_file_and_leaves_nothing(tmp_path: Path) -> None:
    def full_disk(tmp: str) -> None:
        Path(tmp).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    target = tmp_path / "out.npz"
    with pytest.raises(OutputError, match=r"cannot write .*out\.npz: No space left on device"):
        atomic_write(target, full_disk)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.timeout(20)
def test_input_checks_name_each_kind(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "dir").mkdir()
    os.symlink(tmp_path / "b", tmp_path / "a")
    os.symlink(tmp_path / "a", tmp_path / "b")
    (tmp_path / "ok").write_text("x")
    assert check_input_file(tmp_path / "ok").st_size == 1
    with pytest.raises(InputError, match="named pipe"):
        check_input_file(tmp_path / "pipe")
    with pytest.raises(CheckpointError, match=r"cannot read checkpoint .*dir: it is a folder"):
        check_input_file(tmp_path / "dir", "checkpoint", CheckpointError)
    with pytest.raises(AudioError, match="symbolic link loop"):
        check_input_file(tmp_path / "a", "audio file", AudioError)
    with pytest.raises(FileNotFoundError, match="manifest not found"):
        check_input_file(tmp_path / "nope", "manifest")


def test_output_checks(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="is a file, not a folder"):
        check_output_file(tmp_path / "file" / "deeper" / "x.npz")
    with pytest.raises(OutputError, match="it is a folder"):
        check_output_file(tmp_path)
    with pytest.raises(OutputError, match="it is a file, not a folder"):
        check_output_dir(tmp_path / "file")
    assert check_output_dir(tmp_path / "new" / "run").is_dir()
    assert check_output_file(tmp_path / "a" / "b.npz").parent.is_dir()
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == []  # the probe is gone


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write to read-only folders")
def test_read_only_folder_is_found_before_work(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(OutputError, match="not writable"):
            check_output_file(ro / "x.npz")
    finally:
        ro.chmod(0o700)


def test_exit_codes_and_one_line_messages() -> None:
    assert exit_code(UsageError("x")) == exit_code(ConfigError("x")) == 2
    for err in (AudioError("x"), CheckpointError("x"), OutputError("x"), PermissionError()):
        assert exit_code(err) == 1
    assert exit_code(KeyError("bug")) is None  # genuine bugs keep their traceback
    err = PermissionError(errno.EACCES, "Permission denied", "/x/y")
    assert describe(err) == "/x/y: Permission denied"
    assert describe(ValueError("two\nlines")) == "two lines"


def test_debug_shows_the_traceback(tmp_path: Path, capsys, monkeypatch) -> None:
    args = ["convert", str(tmp_path / "missing.pth"), str(tmp_path / "o"), "--arch", "test_ssast"]
    assert main(args) == 1
    assert "Traceback" not in capsys.readouterr().err
    with pytest.raises(FileNotFoundError):
        main(["--debug", *args])
    monkeypatch.setenv("AXLSTM_DEBUG", "1")
    with pytest.raises(FileNotFoundError):
        main(args)
