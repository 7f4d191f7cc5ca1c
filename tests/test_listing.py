"""The one reader of folders and manifests: each real file once, special files skipped,
manifests read as UTF-8 with clear errors."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from axlstm.audio import collect_inputs, read_manifest, scan_folder
from axlstm.core.errors import InputError


def _wav(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.zeros(160, dtype=np.float32), 16000)
    return path


def test_symlink_loops_do_not_multiply_a_folder(tmp_path: Path) -> None:
    root = tmp_path / "data"
    for name in ("a.wav", "b.wav", "sub/c.wav"):
        _wav(root / name)
    os.symlink(root, root / "sub" / "back")  # a loop: data/sub/back -> data
    os.symlink(root / "sub", root / "again")  # the same folder under another name
    os.symlink(root / "a.wav", root / "link_to_a.wav")  # the same file under another name
    found = scan_folder(root)
    assert sorted(os.path.realpath(p) for p in found) == sorted(
        str((root / n).resolve()) for n in ("a.wav", "b.wav", "sub/c.wav")
    )
    assert len(found) == 3


@pytest.mark.timeout(20)
def test_special_files_in_a_folder_are_skipped_with_a_warning(tmp_path: Path, caplog) -> None:
    root = tmp_path / "data"
    good = _wav(root / "a.wav")
    os.mkfifo(root / "pipe.wav")
    os.symlink(root / "missing.wav", root / "broken.wav")
    assert scan_folder(root) == [str(good)]
    assert "pipe.wav (a named pipe (FIFO))" in caplog.text and "broken.wav" in caplog.text


def test_a_file_or_a_loop_is_not_reported_as_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="a file, not a folder"):
        scan_folder(_wav(tmp_path / "a.wav"))
    os.symlink(tmp_path / "l2", tmp_path / "l1")
    os.symlink(tmp_path / "l1", tmp_path / "l2")
    with pytest.raises(InputError, match=r"loop|many levels"):
        scan_folder(tmp_path / "l1")
    with pytest.raises(FileNotFoundError, match="folder not found"):
        scan_folder(tmp_path / "nope")


def test_the_same_file_named_three_ways_is_kept_once(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    _wav(tmp_path / "a.wav")
    (tmp_path / "d").mkdir()
    assert collect_inputs(["a.wav", "./a.wav", "d/../a.wav", str(tmp_path / "a.wav")]) == ["a.wav"]
    assert len(collect_inputs(["a.wav", "./a.wav"], dedupe=False)) == 2


def test_manifest_with_a_byte_order_mark(tmp_path: Path) -> None:
    _wav(tmp_path / "a.wav")
    manifest = tmp_path / "m.csv"
    manifest.write_bytes("\ufeffpath,duration\na.wav,0.01\n".encode())
    assert read_manifest(manifest).paths == [str(tmp_path / "a.wav")]
    jsonl = tmp_path / "m.jsonl"
    jsonl.write_bytes('\ufeff{"path": "a.wav"}\n'.encode())
    assert read_manifest(jsonl).paths == [str(tmp_path / "a.wav")]


def test_manifest_not_in_utf8_is_named(tmp_path: Path) -> None:
    manifest = tmp_path / "latin.csv"
    manifest.write_bytes("path\ncaf\u00e9.wav\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"latin\.csv: not UTF-8 text \(byte 0xe9"):
        read_manifest(manifest)


@pytest.mark.timeout(20)
def test_manifest_that_is_a_pipe_is_refused_by_name(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "m.csv")
    with pytest.raises(InputError, match="named pipe"):
        read_manifest(tmp_path / "m.csv")


def test_must_exist_names_the_problem(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="input not found"):
        collect_inputs([tmp_path / "nope.wav"], must_exist=True)
    os.mkfifo(tmp_path / "p.wav")
    with pytest.raises(InputError, match="named pipe"):
        collect_inputs([tmp_path / "p.wav"], must_exist=True)
