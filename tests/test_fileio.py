"""Files in and out: special files refused by name, outputs checked before work, atomic
writes that follow the umask and name the file when they fail; the CLI's one-line errors."""

from __future__ import annotations

import errno
import os
import stat
from collections import namedtuple
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


def test_permissions_hold_when_the_writer_makes_its_own_file(tmp_path: Path) -> None:
    def private_writer(tmp: str) -> None:  # as safetensors does: a new file, mode 0600
        os.unlink(tmp)
        fd = os.open(tmp, os.O_CREAT | os.O_WRONLY, 0o600)
        os.write(fd, b"x")
        os.close(fd)

    old = os.umask(0o022)
    try:
        path = atomic_write(tmp_path / "w.bin", private_writer)
        import axlstm

        release = axlstm.create_model("test_axlstm").save_pretrained(tmp_path / "rel")
        from axlstm.evaluation import write_builtin_tasks

        task = write_builtin_tasks(tmp_path / "tasks", names=["timbre"])[0]
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    for name in ("model.safetensors", "config.json"):
        assert stat.S_IMODE((release / name).stat().st_mode) == 0o644, name
    assert stat.S_IMODE(task.stat().st_mode) == 0o755  # a folder: 0777 less the umask


def test_a_full_disk_is_named_whatever_library_reports_it(tmp_path: Path, monkeypatch) -> None:
    import axlstm.core.fileio as fileio

    def torch_like(tmp: str) -> None:
        raise RuntimeError("[enforce fail at inline_container.cc] unexpected pos 64 vs 0")

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(fileio.shutil, "disk_usage", lambda p: usage(1 << 20, 1 << 20, 1024))
    with pytest.raises(OutputError, match=r"cannot write .*ckpt\.pt: no space left on device"):
        atomic_write(tmp_path / "ckpt.pt", torch_like)
    monkeypatch.setattr(fileio.shutil, "disk_usage", lambda p: usage(1 << 41, 0, 1 << 40))
    with pytest.raises(RuntimeError, match="unexpected pos"):  # not a full disk: a bug, kept
        atomic_write(tmp_path / "ckpt.pt", torch_like)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.timeout(20)
def test_config_files_are_checked_before_reading(tmp_path: Path) -> None:
    from axlstm.recipes import load_config

    os.mkfifo(tmp_path / "pipe.yaml")
    (tmp_path / "dir.yaml").mkdir()
    (tmp_path / "latin.yaml").write_bytes("model:\n  name: caf\xe9\n".encode("latin-1"))
    (tmp_path / "huge.yaml").write_bytes(b"#" * (2 << 20))
    for name, words in (("pipe.yaml", "named pipe"), ("dir.yaml", "a folder"),
                        ("latin.yaml", "not UTF-8 text (byte 0xe9"),
                        ("huge.yaml", "far too large")):  # fmt: skip
        with pytest.raises(ConfigError) as info:
            load_config(tmp_path / name)
        assert words in str(info.value) and name in str(info.value)


def test_argparse_errors_are_one_line(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["embed", "x.wav", "--model", "test_axlstm", "--out", "x.npz", "--batch-size", "0"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("axlstm embed: error: argument --batch-size")


def test_release_config_refuses_duplicate_keys_and_nan(tmp_path: Path) -> None:
    import axlstm

    release = axlstm.create_model("test_axlstm").save_pretrained(tmp_path / "rel")
    text = (release / "config.json").read_text()
    duplicate = text.replace("{", '{"format": 1, ', 1)
    nan = text.replace('"provenance": {}', '"provenance": {"x": NaN}')
    assert nan != text
    for bad, words in ((duplicate, "duplicate key 'format'"), (nan, "NaN")):
        (release / "config.json").write_text(bad)
        with pytest.raises(CheckpointError, match=words):
            axlstm.load_model(release)
