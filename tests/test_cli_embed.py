"""``axlstm embed`` end to end on generated audio files, bad ones included."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

import axlstm
from axlstm.audio import load_audio
from axlstm.cli.main import main
from axlstm.embedding import collect_inputs, read_manifest


def tone(seconds: float, sr: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    x = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(n)
    return np.stack([x] * channels, axis=1).astype(np.float32) if channels > 1 else x


@pytest.fixture()
def audio_dir(tmp_path):
    """Good files of several formats, rates and channel counts, plus bad ones."""
    root = tmp_path / "audio"
    (root / "sub" / "deeper").mkdir(parents=True)
    sf.write(root / "a.wav", tone(2.5, 16000), 16000, subtype="PCM_16")
    sf.write(root / "sub" / "b.flac", tone(1.2, 44100, channels=2, seed=1), 44100)
    sf.write(root / "sub" / "deeper" / "c.ogg", tone(3.0, 22050, seed=2), 22050)
    sf.write(root / "d.wav", tone(0.3, 8000, seed=3), 8000, subtype="PCM_U8")
    # bad ones
    sf.write(root / "short.wav", np.zeros(150, np.float32), 16000)
    (root / "garbage.wav").write_bytes(b"RIFF....this is not a wave file")
    (root / "empty.flac").write_bytes(b"")
    nan = tone(1.0, 16000).astype(np.float32)
    nan[100] = np.nan
    sf.write(root / "nan.wav", nan, 16000, subtype="FLOAT")
    (root / "notes.txt").write_text("not audio, not picked up by the folder scan")
    return root


GOOD = ["a.wav", "d.wav", "sub/b.flac", "sub/deeper/c.ogg"]
BAD = ["empty.flac", "garbage.wav", "nan.wav", "short.wav"]


def run_embed(*args: str) -> int:
    return main(["embed", *args, "--model", "test_axlstm", "--no-progress", "--device", "cpu"])


def test_folder_to_npz_with_frames(audio_dir, tmp_path, capsys, caplog):
    out = tmp_path / "emb.npz"
    assert run_embed(str(audio_dir), "--out", str(out), "--frames", "--batch-size", "2") == 0
    assert "embedded 4 of 8 files" in capsys.readouterr().out
    data = np.load(out)  # no pickles needed
    names = [str(p.relative_to(audio_dir)) for p in map(type(audio_dir), data["files"])]
    assert names == GOOD
    model = axlstm.create_model("test_axlstm")
    assert data["scene"].shape == (4, model.frame_dim) and data["scene"].dtype == np.float32
    assert np.isfinite(data["scene"]).all()
    assert data["layers"].tolist() == ["final"]
    failed = dict(zip(data["failed_files"].tolist(), data["failed_reasons"].tolist(), strict=True))
    assert sorted(str(type(audio_dir)(f).relative_to(audio_dir)) for f in failed) == BAD
    reasons = {type(audio_dir)(f).name: r for f, r in failed.items()}
    assert "too short" in reasons["short.wav"] and "short.wav" in reasons["short.wav"]
    assert "empty" in reasons["empty.flac"]
    assert "not a recognised audio format" in reasons["garbage.wav"]
    assert "non-finite" in reasons["nan.wav"]
    for name in BAD:  # the log names every skipped file
        assert name in caplog.text
    # frames: flat with offsets, timestamps regular and inside each file
    offsets, frames, ts = data["offsets"], data["frames"], data["timestamps"]
    assert offsets[0] == 0 and offsets[-1] == frames.shape[0] == ts.shape[0]
    for i, duration in enumerate(data["duration"]):
        f, t = frames[offsets[i] : offsets[i + 1]], ts[offsets[i] : offsets[i + 1]]
        assert len(f) >= 1 and t.max() <= 1000 * duration
        np.testing.assert_allclose(np.diff(t), 40.0)
        np.testing.assert_allclose(data["scene"][i], f.mean(0), atol=1e-5)
    np.testing.assert_allclose(data["duration"], [2.5, 0.3, 1.2, 3.0], atol=1e-4)
    settings = json.loads(str(data["settings"]))
    assert settings["model"] == "test_axlstm" and settings["window"] == "official"
    report = json.loads((tmp_path / "emb.json").read_text())
    assert len(report["failed"]) == 4 and report["files"] == data["files"].tolist()


def test_release_folder_results_equal_the_python_api(audio_dir, tmp_path):
    release = tmp_path / "release"
    model = axlstm.create_model("test_ssast").eval()
    model.save_pretrained(release)
    out = tmp_path / "emb.npz"
    inputs = [str(audio_dir / "sub"), str(audio_dir / "a.wav")]
    code = main(["embed", *inputs, "--model", str(release), "--out", str(out), "--no-progress"])
    assert code == 0
    data = np.load(out)
    assert data["scene"].shape == (3, model.frame_dim)
    for name, scene in zip(data["files"], data["scene"], strict=True):
        ref = axlstm.embed(model, load_audio(name, 16000)).scene[0].numpy()
        np.testing.assert_allclose(scene, ref, atol=1e-5, rtol=1e-5)


def test_manifests_csv_and_jsonl(audio_dir, tmp_path):
    csv = audio_dir / "list.csv"
    csv.write_text("path,label\na.wav,x\nsub/b.flac,y\nmissing.wav,z\n")
    jsonl = tmp_path / "list.jsonl"
    jsonl.write_text(json.dumps({"path": str(audio_dir / "d.wav")}) + "\n\n")
    assert read_manifest(csv).paths == [
        str(audio_dir / p) for p in ("a.wav", "sub/b.flac", "missing.wav")
    ]
    out = tmp_path / "m.npz"
    assert run_embed(str(csv), str(jsonl), str(audio_dir / "a.wav"), "--out", str(out)) == 0
    data = np.load(out)
    assert [type(audio_dir)(f).name for f in data["files"]] == ["a.wav", "b.flac", "d.wav"]
    assert [type(audio_dir)(f).name for f in data["failed_files"]] == ["missing.wav"]
    assert "not found" in data["failed_reasons"][0]
    bad = tmp_path / "bad.csv"
    bad.write_text("name\na.wav\n")  # path, file or filename are the accepted columns
    with pytest.raises(ValueError, match="'path' column"):
        read_manifest(bad)


def test_collect_inputs_recurses_and_dedupes(audio_dir):
    found = collect_inputs([audio_dir, audio_dir / "a.wav"])
    rel = [str(type(audio_dir)(p).relative_to(audio_dir)) for p in found]
    assert rel == sorted(GOOD + BAD)  # folders: audio extensions only, recursive, sorted


def test_npy_output_with_layers_and_sidecars(audio_dir, tmp_path):
    out = tmp_path / "emb.npy"
    args = [str(audio_dir / "a.wav"), str(audio_dir / "sub"), "--out", str(out), "--frames"]
    assert run_embed(*args, "--layer", "all", "--window", "none") == 0
    scene = np.load(out)
    assert scene.shape == (3, 3, 160)  # files, layers (block0, block1, final), dim
    report = json.loads((tmp_path / "emb.json").read_text())
    assert report["settings"]["layers"] == ["block0", "block1", "final"]
    assert len(report["files"]) == 3 and report["failed"] == []
    frames = np.load(tmp_path / "emb.frames.npy")
    offsets = np.load(tmp_path / "emb.offsets.npy")
    assert frames.shape == (offsets[-1], 3, 160)
    assert np.load(tmp_path / "emb.timestamps.npy").shape == (offsets[-1],)


def test_parquet_output(audio_dir, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "emb.parquet"
    args = [str(audio_dir), "--out", str(out), "--frames", "--frame-layout", "official"]
    assert run_embed(*args) == 0
    table = pq.read_table(out)
    assert table.num_rows == 4
    assert table.column_names == ["file", "duration", "scene", "frames", "timestamps"]
    scene = np.array(table.column("scene").to_pylist(), dtype=np.float32)
    assert scene.shape == (4, 160)
    meta = json.loads(table.schema.metadata[b"axlstm"])
    assert meta["settings"]["frame_layout"] == "official"
    assert len(meta["failed"]) == 4
    first = table.slice(0, 1).to_pylist()[0]
    assert len(first["frames"]) == len(first["timestamps"]) == 63  # 2.5 s: ceil(251 / 4)


def test_all_failed_exits_nonzero_and_still_reports(audio_dir, tmp_path, capsys):
    out = tmp_path / "none.npz"
    assert (
        run_embed(str(audio_dir / "short.wav"), str(audio_dir / "garbage.wav"), "--out", str(out))
        == 1
    )
    data = np.load(out)
    assert data["scene"].shape == (0, 160)
    assert len(data["failed_files"]) == 2
    assert "embedded 0 of 2 files" in capsys.readouterr().out


def test_user_errors_are_one_line(audio_dir, tmp_path, capsys):
    empty = tmp_path / "nothing"
    empty.mkdir()
    assert run_embed(str(empty), "--out", str(tmp_path / "x.npz")) == 2
    assert "no audio files" in capsys.readouterr().err
    assert run_embed(str(audio_dir), "--out", str(tmp_path / "x.csv")) == 2
    assert "--out must end in" in capsys.readouterr().err
    assert main(["embed", str(audio_dir), "--model", "nope", "--out", str(tmp_path / "x.npz")]) == 2
    assert "unknown model" in capsys.readouterr().err
    assert run_embed(str(audio_dir), "--out", str(tmp_path / "x.npz"), "--layer", "7") == 2
    assert "out of range" in capsys.readouterr().err
    assert not (tmp_path / "x.npz").exists()
