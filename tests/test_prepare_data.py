"""``axlstm prepare-data``: tiny fake trees with the official layouts of ESC-50, Speech Commands
v0.02 and AudioSet; the manifests written must round-trip through ``load_labelled``, and
absent audio and malformed lists must be counted or named."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from axlstm.cli import prepare_data as cli_prepare_data
from axlstm.cli.main import main
from axlstm.core.errors import InputError, OutputError, UsageError
from axlstm.finetune.labels import load_labelled
from axlstm.finetune.prepare import DATASETS, prepare_data


def wav(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.zeros(160, dtype=np.float32), 16000, subtype="PCM_16")
    return path


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


# ------------------------------------------------------------------------------------ ESC-50
ESC_HEADER = "filename,fold,target,category,esc10,src_file,take\n"


def esc50_tree(root: Path, absent: bool = True) -> Path:
    lines = [ESC_HEADER]
    for fold in range(1, 6):
        for target, category in ((0, "dog"), (1, "rain")):
            name = f"{fold}-{100 + target}-A-{target}.wav"
            wav(root / "audio" / name)
            lines.append(f"{name},{fold},{target},{category},True,{100 + target},A\n")
    if absent:
        lines.append("5-999-A-0.wav,5,0,dog,True,999,A\n")  # listed, audio absent
    (root / "meta").mkdir(parents=True)
    (root / "meta" / "esc50.csv").write_text("".join(lines))
    return root


def test_esc50_round_trip(tmp_path):
    root = esc50_tree(tmp_path / "ESC-50-master")
    result = prepare_data("esc50", root, tmp_path / "manifests")
    assert result.manifest == tmp_path / "manifests" / "esc50.csv"
    rows = read_rows(result.manifest)
    assert len(rows) == 10 and set(rows[0]) == {"path", "label", "split"}
    assert rows[0] == {
        "path": str(root / "audio" / "1-100-A-0.wav"),
        "label": "dog",
        "split": "fold1",
    }
    assert result.summary_lines() == [
        *(f"esc50 fold{i}: 2 clips, 2 classes, 0 skipped" for i in range(1, 5)),
        "esc50 fold5: 2 clips, 2 classes, 1 skipped (audio absent 1)",
    ]
    assert result.skipped == {"audio absent": [str(root / "audio" / "5-999-A-0.wav")]}
    data = load_labelled(result.manifest)
    assert data.folds == [f"fold0{i}" for i in range(1, 6)] and data.vocabulary == ["dog", "rain"]
    assert not data.multilabel and data.skipped == {}
    split = data.fold_split("fold1")
    assert len(split["train"]) == 8 and len(split["test"]) == 2


@pytest.mark.parametrize(
    ("line", "pattern"),
    [
        ("1-1-A-0.wav,x,0,dog,True,1,A\n", r"esc50\.csv:12: fold 'x' is not a fold number"),
        ("1-1-A-0.wav,1,0,cat,True,1,A\n", r"esc50\.csv:12: target 0 is 'cat' here but 'dog'"),
        ("../x.wav,1,0,dog,True,1,A\n", r"esc50\.csv:12: filename '\.\./x\.wav'"),
        ("1-1-A-0.wav,1,0,,True,1,A\n", r"esc50\.csv:12: empty category"),
    ],
)
def test_esc50_malformed_metadata_is_named(tmp_path, line, pattern):
    root = esc50_tree(tmp_path, absent=False)
    with open(root / "meta" / "esc50.csv", "a") as f:
        f.write(line)
    with pytest.raises(InputError, match=pattern):
        prepare_data("esc50", root, tmp_path / "out")
    assert not (tmp_path / "out" / "esc50.csv").exists()


def test_esc50_missing_metadata_or_no_audio(tmp_path):
    with pytest.raises(InputError, match=r"meta/esc50\.csv: not found; expected the ESC-50"):
        prepare_data("esc50", tmp_path, tmp_path / "out")
    root = esc50_tree(tmp_path / "e")
    for path in (root / "audio").iterdir():
        path.unlink()
    with pytest.raises(InputError, match=r"no usable esc50 clip \(audio absent 11\)"):
        prepare_data("esc50", root, tmp_path / "out")
    assert not (tmp_path / "out" / "esc50.csv").exists()


# --------------------------------------------------------------------------- Speech Commands
# fmt: off
WORDS = [
    "backward", "bed", "bird", "cat", "dog", "down", "eight", "five", "follow", "forward", "four",
    "go", "happy", "house", "learn", "left", "marvin", "nine", "no", "off", "on", "one", "right",
    "seven", "sheila", "six", "stop", "three", "tree", "two", "up", "visual", "wow", "yes", "zero",
]
# fmt: on


def speechcommands_tree(root: Path, words=WORDS) -> Path:
    for word in words:
        for i in range(3):
            wav(root / word / f"{i:08x}_nohash_0.wav")
    wav(root / "_background_noise_" / "white_noise.wav")
    (root / "LICENSE").write_text("cc-by 4.0")
    valid = [f"{w}/00000001_nohash_0.wav" for w in words] + ["yes/ffffffff_nohash_0.wav"]
    (root / "validation_list.txt").write_text("\n".join(valid) + "\n")
    (root / "testing_list.txt").write_text("".join(f"{w}/00000002_nohash_0.wav\n" for w in words))
    return root


def test_speechcommands_v2_round_trip(tmp_path):
    root = speechcommands_tree(tmp_path / "sc")
    result = prepare_data("speechcommands_v2", root, tmp_path / "m")
    assert result.summary_lines() == [
        "speechcommands_v2 train: 35 clips, 35 classes, 0 skipped",
        "speechcommands_v2 valid: 35 clips, 35 classes, 1 skipped (listed but absent 1)",
        "speechcommands_v2 test: 35 clips, 35 classes, 0 skipped",
    ]
    rows = read_rows(result.manifest)
    assert not any("_background_noise_" in r["path"] for r in rows)
    assert {
        "path": str(root / "bed" / "00000002_nohash_0.wav"),
        "label": "bed",
        "split": "test",
    } in rows
    data = load_labelled(result.manifest)
    assert data.vocabulary == sorted(WORDS) and len(data.vocabulary) == 35
    assert list(data.splits) == ["train", "valid", "test"]
    assert all((data.counts(s) == 1).all() for s in data.splits)


def test_speechcommands_problems(tmp_path, caplog):
    root = speechcommands_tree(tmp_path / "few", words=["yes", "no"])
    with caplog.at_level(logging.WARNING):
        result = prepare_data("speechcommands_v2", root, tmp_path / "m")
    assert "2 word folders; Speech Commands v0.02 has 35" in caplog.text
    assert result.splits["train"].clips == 2
    (root / "testing_list.txt").write_text("yes/00000001_nohash_0.wav\n")
    with pytest.raises(InputError, match=r"listed in both validation_list\.txt and testing_list"):
        prepare_data("speechcommands_v2", root, tmp_path / "m")
    (root / "testing_list.txt").write_text("../outside.wav\n")
    with pytest.raises(InputError, match=r"testing_list\.txt:1: '\.\./outside\.wav' is not a path"):
        prepare_data("speechcommands_v2", root, tmp_path / "m")
    (root / "testing_list.txt").unlink()
    with pytest.raises(InputError, match=r"testing_list\.txt: not found; expected the Speech"):
        prepare_data("speechcommands_v2", root, tmp_path / "m")


# --------------------------------------------------------------------------------- AudioSet
CLASSES = [
    ("/m/09x0r", "Speech"),
    ("/m/05zppz", "Male speech, man speaking"),
    ("/m/04rlf", "Music"),
]
SEGMENTS_HEADER = (
    "# Segments csv created Sun Mar  5 10:54:31 2017\n"
    "# num_ytids=4, num_segs=4, num_unique_labels=3, num_positive_labels=5\n"
    "# YTID, start_seconds, end_seconds, positive_labels\n"
)


def audioset_tree(root: Path) -> Path:
    lines = ["index,mid,display_name\n"]
    lines += [f'{i},{mid},"{name}"\n' for i, (mid, name) in enumerate(CLASSES)]
    (root / "class_labels_indices.csv").parent.mkdir(parents=True, exist_ok=True)
    (root / "class_labels_indices.csv").write_text("".join(lines))
    train = [
        ("--PJHxphWEs", "/m/09x0r,/m/05zppz", "--PJHxphWEs.wav"),
        ("a_b-cdefghi", "/m/04rlf", "a_b-cdefghi_30.000.flac"),
        ("Yabcdefghij", "/m/09x0r", "Yabcdefghij.wav"),  # a YTID starting with Y
        ("0123456789A", "/m/04rlf,/m/09x0r", "Y0123456789A_10.000_20.000.wav"),
        ("absentclip0", "/m/04rlf", None),
        ("unknownmid0", "/m/zzzzz", "unknownmid0.wav"),
    ]
    evals = [("evalclip000", "/m/05zppz", "sub/evalclip000.ogg"), ("evalabsent0", "/m/04rlf", None)]
    for name, segments, folder in (
        ("balanced_train_segments.csv", train, "balanced_train"),
        ("eval_segments.csv", evals, "eval"),
    ):
        body = "".join(f'{y}, 30.000, 40.000, "{labels}"\n' for y, labels, _ in segments)
        (root / name).write_text(SEGMENTS_HEADER + body)
        for _, _, file in segments:
            if file:
                if file.endswith(".ogg"):
                    path = root / "audio" / folder / file
                    path.parent.mkdir(parents=True, exist_ok=True)
                    sf.write(path, np.zeros(1600, dtype=np.float32), 16000, format="OGG")
                else:
                    wav(root / "audio" / folder / file)
    wav(root / "audio" / "balanced_train" / "notaclip.wav")
    return root


def test_audioset_20k_round_trip(tmp_path):
    root = audioset_tree(tmp_path / "as")
    result = prepare_data("audioset_20k", root, tmp_path / "m")
    assert result.summary_lines() == [
        "audioset_20k train: 4 clips, 3 classes, 2 skipped (audio absent 1, unknown label 1)",
        "audioset_20k valid: 1 clips, 1 classes, 1 skipped (audio absent 1)",
    ]
    assert result.skipped["audio absent"] == ["absentclip0", "evalabsent0"]
    assert result.skipped["unknown label"] == ["unknownmid0 (/m/zzzzz)"]
    rows = read_rows(result.manifest)
    assert rows[0] == {
        "path": str(root / "audio" / "balanced_train" / "--PJHxphWEs.wav"),
        "label": "Speech;Male speech, man speaking",
        "split": "train",
    }
    assert [Path(r["path"]).name for r in rows] == [
        "--PJHxphWEs.wav",
        "a_b-cdefghi_30.000.flac",
        "Yabcdefghij.wav",
        "Y0123456789A_10.000_20.000.wav",
        "evalclip000.ogg",
    ]
    data = load_labelled(result.manifest)
    assert data.multilabel and list(data.splits) == ["train", "valid"]
    assert data.vocabulary == ["Male speech, man speaking", "Music", "Speech"]
    assert data.targets(data.splits["train"])[0].tolist() == [1, 0, 1]
    assert data.counts("valid").tolist() == [1, 0, 0]


def test_audioset_malformed_lists(tmp_path):
    root = audioset_tree(tmp_path / "as")
    with open(root / "eval_segments.csv", "a") as f:
        f.write("onlyanid000, 30.000\n")
    with pytest.raises(InputError, match=r"eval_segments\.csv:6: expected YTID, start_seconds"):
        prepare_data("audioset_20k", root, tmp_path / "m")
    (root / "class_labels_indices.csv").write_text("index,name\n0,Speech\n")
    with pytest.raises(
        InputError, match=r"class_labels_indices\.csv: no column \['display_name', 'mid'\]"
    ):
        prepare_data("audioset_20k", root, tmp_path / "m")


# ------------------------------------------------------------------------------ entry points
def test_arguments_checked(tmp_path):
    assert cli_prepare_data.DATASETS == DATASETS
    with pytest.raises(UsageError, match="unknown dataset"):
        prepare_data("esc40", tmp_path, tmp_path / "m")
    with pytest.raises(FileNotFoundError, match="dataset folder not found"):
        prepare_data("esc50", tmp_path / "nothing", tmp_path / "m")
    root = esc50_tree(tmp_path / "e")
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError):
        prepare_data("esc50", root, tmp_path / "file" / "m")


def test_cli(tmp_path, capsys):
    root = esc50_tree(tmp_path / "e")
    assert main(["prepare-data", "esc50", str(root), "--out", str(tmp_path / "m")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "esc50 fold1: 2 clips, 2 classes, 0 skipped"
    assert out[-1] == f"wrote {tmp_path / 'm' / 'esc50.csv'}"
    assert main(["prepare-data", "esc50", str(tmp_path / "m"), "--out", str(tmp_path / "m")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("axlstm prepare-data: error: ") and "esc50.csv: not found" in err
    assert len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit) as exit_info:
        main(["prepare-data", "fsd50k", str(root), "--out", str(tmp_path / "m")])
    assert exit_info.value.code == 2
