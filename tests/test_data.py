"""Pretraining data: procedural corpus, crops, sources, bad items, shards and exact positions."""

from __future__ import annotations

import io
import json
import pickle
import tarfile

import numpy as np
import pytest
import soundfile as sf
import torch

from axlstm.audio import LogMelFrontEnd, log_mel
from axlstm.core import InputError
from axlstm.data import (
    BadItem,
    ClipProcessor,
    DataConfig,
    IndexedDataset,
    ProceduralCorpus,
    build_stream,
    crop_or_tile,
    expand_shards,
    iter_tar_samples,
    procedural,
    read_manifest,
    resolve_data,
    scan_folder,
    write_shards,
)
from axlstm.data.sources import TRAINING_EXTENSIONS, FileSource
from axlstm.data.stream import ShardStream

SR = 16000


def _tone(seconds: float, freq: float = 440.0, sr: int = SR, seed: int = 0) -> np.ndarray:
    t = np.arange(round(seconds * sr)) / sr
    rng = np.random.default_rng(seed)
    return (0.3 * np.sin(2 * np.pi * freq * t) + 0.05 * rng.standard_normal(len(t))).astype(
        np.float32
    )


def make_good_files(folder, n: int = 6) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        seconds = [0.5, 1.2, 2.5, 3.0, 1.0, 4.0][i % 6]  # shorter and longer than 2 s
        p = folder / f"good_{i:02d}.wav"
        sf.write(p, _tone(seconds, 200.0 + 100 * i, seed=i), SR)
        paths.append(str(p))
    stereo = folder / "sub" / "stereo_22k.flac"  # other rate, two channels, nested folder
    stereo.parent.mkdir(exist_ok=True)
    sf.write(stereo, np.stack([_tone(2.2, 300.0, 22050)] * 2, axis=1), 22050)
    paths.append(str(stereo))
    return paths


def make_bad_files(folder) -> dict[str, str]:
    """One file per skip reason; returns {file name: expected reason}."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "empty.wav").write_bytes(b"")
    (folder / "garbage.wav").write_bytes(b"this is not audio at all" * 40)
    sf.write(folder / "silent.wav", np.zeros(SR, np.float32), SR)
    sf.write(folder / "dc.wav", np.full(SR, 0.25, np.float32), SR, subtype="FLOAT")
    nan = _tone(1.0)
    nan[100:200] = np.nan
    sf.write(folder / "nan.wav", nan, SR, subtype="FLOAT")
    sf.write(folder / "short.wav", _tone(0.005), SR)
    np.save(folder / "nan_feats.npy", np.full((300, 80), np.nan, np.float32))
    np.save(folder / "wrong_shape.npy", np.zeros((300, 40), np.float32))
    return {
        "empty.wav": "empty",
        "garbage.wav": "unreadable",
        "silent.wav": "silent",
        "dc.wav": "silent",
        "nan.wav": "nonfinite",
        "short.wav": "too_short",
        "nan_feats.npy": "nonfinite",
        "wrong_shape.npy": "bad_shape",
    }


# ------------------------------------------------------------------------------- procedural
def test_procedural_corpus_is_deterministic_and_varied():
    corpus = ProceduralCorpus(seed=7, size=64, min_seconds=1.0, max_seconds=3.0)
    a, kind_a = corpus.clip(5)
    b, kind_b = corpus.clip(5)
    assert kind_a == kind_b and np.array_equal(a, b)
    assert not np.array_equal(a, corpus.clip(6)[0])
    assert not np.array_equal(a, ProceduralCorpus(seed=8, size=64).clip(5)[0])
    kinds = set()
    for i in range(40):
        wave, kind = corpus.clip(i)
        kinds.add(kind)
        assert wave.dtype == np.float32 and np.isfinite(wave).all()
        assert 1.0 * SR <= len(wave) <= 3.0 * SR
        assert 0.01 < np.abs(wave).max() <= 1.0
    assert kinds == set(procedural.SOUND_KINDS)


def _peak_hz(wave: np.ndarray, sr: int = SR) -> float:
    spec = np.abs(np.fft.rfft(wave))
    return float(np.argmax(spec) * sr / len(wave))


def test_named_generators_have_their_musical_content():
    assert _peak_hz(procedural.sine_tone(440.0, 1.0)) == pytest.approx(440.0, abs=2)
    note = procedural.harmonic_note(220.0, "square", 1.0, sustain=1.0)
    spec = np.abs(np.fft.rfft(note))
    hz = np.fft.rfftfreq(len(note), 1 / SR)
    level = {h: spec[np.argmin(np.abs(hz - h * 220.0))] for h in (1, 2, 3)}
    assert level[3] > 10 * level[2] and level[1] > level[3]  # square: odd harmonics only
    c = procedural.chord(261.63, (0, 4, 7), "sine", 1.0, sustain=1.0)
    peaks = hz[np.argsort(np.abs(np.fft.rfft(c)))[-3:]]
    assert sorted(round(p) for p in peaks) == pytest.approx([262, 330, 392], abs=2)
    up = procedural.sweep(200.0, 4000.0, 1.0)
    assert _peak_hz(up[: SR // 10]) < _peak_hz(up[-SR // 10 :])
    rng = np.random.default_rng(0)
    beat = procedural.rhythm(120.0, ["kick", 0, 0, 0], 2.0, rng)
    assert len(beat) == 2 * SR and np.abs(beat[: SR // 4]).max() > 0.1
    assert len(procedural.mixture([np.ones(10), np.ones(20)], [1.0, 0.5])) == 20
    with pytest.raises(ValueError, match="timbre"):
        procedural.harmonic_note(100.0, "kazoo")


# ------------------------------------------------------------------------ crops and clips
def test_crop_tile_and_the_front_end_normalisation():
    rng = np.random.default_rng(0)
    feats = torch.arange(300 * 2, dtype=torch.float32).reshape(300, 2)
    crop = crop_or_tile(feats, 200, rng)
    start = int(crop[0, 0]) // 2
    assert crop.shape == (200, 2) and 0 <= start < 100
    assert torch.equal(crop, feats[start : start + 200])
    short = feats[:70]
    tiled = crop_or_tile(short, 200, rng)
    assert torch.equal(tiled[:70], short) and torch.equal(tiled[70:140], short)
    assert torch.equal(tiled[140:], short[:60])
    assert torch.equal(crop_or_tile(feats[:200], 200, rng), feats[:200])

    x = torch.randn(500, 80) * 3 + 5
    z = LogMelFrontEnd().normalize(x)
    ref = (x.numpy() - x.numpy().mean()) / (x.numpy().std(ddof=1) + 1e-8)  # SPEC §1.1: unbiased
    # |z| <= ~5 and the float32 mean/std of 40,000 values are good to ~1e-6 relative
    np.testing.assert_allclose(z.numpy(), ref, atol=1e-5)


def test_processor_normalises_the_whole_clip_before_cropping():
    proc = ClipProcessor()
    wave = _tone(5.0)
    full = proc.wave_features(wave, "x")
    assert full.shape == (1 + len(wave) // 160, 80)
    crop = proc.from_wave(wave, np.random.default_rng(3), "x")
    expected = crop_or_tile(proc.module.normalize(full), 200, np.random.default_rng(3))
    assert crop.shape == (1, 200, 80)
    assert torch.equal(crop[0], expected)
    # the same standardisation as the embedding front end (one front-end path)
    offline = log_mel(torch.from_numpy(wave))[0, 0]
    assert torch.equal(crop[0], crop_or_tile(offline, 200, np.random.default_rng(3)))
    with pytest.raises(BadItem) as err:
        proc.from_wave(np.zeros(SR, np.float32), np.random.default_rng(0), "zeros.wav")
    assert err.value.reason == "silent" and "zeros.wav" in str(err.value)


# ------------------------------------------------------------------------------- sources
def test_folder_scan_and_manifests(tmp_path):
    paths = make_good_files(tmp_path / "audio")
    (tmp_path / "audio" / "notes.txt").write_text("ignored")
    (tmp_path / "audio" / ".hidden.wav").write_bytes(b"")
    found = scan_folder(tmp_path / "audio")
    assert sorted(found) == sorted(paths) and found == scan_folder(tmp_path / "audio")

    rel = [p.replace(str(tmp_path) + "/", "") for p in paths]
    (tmp_path / "m.csv").write_text("path,duration\n" + "".join(f"{p},1.5\n" for p in rel))
    listed, durations = read_manifest(tmp_path / "m.csv")
    assert listed == paths and durations == [1.5] * len(paths)
    lines = [json.dumps({"path": p}) for p in rel]
    (tmp_path / "m.jsonl").write_text("\n".join(lines) + "\n")
    assert read_manifest(tmp_path / "m.jsonl")[0] == paths
    (tmp_path / "bad.csv").write_text("name\nx.wav\n")
    with pytest.raises(ValueError, match="path"):
        read_manifest(tmp_path / "bad.csv")

    kind, source = resolve_data(DataConfig(paths=[str(tmp_path / "m.csv")]))
    assert kind == "files" and len(source) == len(paths)
    assert resolve_data(DataConfig())[0] == "procedural"
    with pytest.raises(FileNotFoundError):
        resolve_data(DataConfig(paths=[str(tmp_path / "nope")]))


def test_bad_files_are_skipped_counted_and_replaced_deterministically(tmp_path):
    good = make_good_files(tmp_path / "data", n=4)
    expected = make_bad_files(tmp_path / "data")
    missing = str(tmp_path / "data" / "deleted.wav")
    source = FileSource([*scan_folder(tmp_path / "data", TRAINING_EXTENSIONS), missing])
    ds = IndexedDataset(source, ClipProcessor(), seed=1)
    ds2 = IndexedDataset(source, ClipProcessor(), seed=1)
    seen: dict[str, str] = {}
    for g in range(len(source)):  # one epoch: every file is drawn once first-hand
        item = ds[g]
        assert item["spec"].shape == (1, 200, 80) and torch.isfinite(item["spec"]).all()
        assert item["name"] in good
        other = ds2[g]
        assert other["name"] == item["name"] and torch.equal(other["spec"], item["spec"])
        for reason, name in item["skipped"]:
            seen[name.rsplit("/", 1)[-1]] = reason
    assert seen == {**expected, "deleted.wav": "missing"}


def test_all_bad_data_fails_with_a_clear_message(tmp_path):
    make_bad_files(tmp_path / "bad")
    ds = IndexedDataset(
        FileSource(scan_folder(tmp_path / "bad", TRAINING_EXTENSIONS)), ClipProcessor(), 0, 8
    )
    with pytest.raises(InputError, match=r"\(8 files\): 8 unusable items in a row"):
        ds[0]


def _take(stream, n):
    it = iter(stream)
    out = []
    for _ in range(n):
        batch = next(it)
        stream.advance(batch)
        out.append(batch)
    return out


def test_indexed_stream_splits_ranks_and_resumes_exactly():
    cfg = DataConfig(num_workers=0, procedural_size=10, procedural_seconds=(0.5, 1.0))
    per_rank = [_take(build_stream(cfg, seed=3, rank=r, world=2, micro_batch=3), 4) for r in (0, 1)]
    seen = [int(i) for batches in per_rank for b in batches for i in b["index"]]
    assert sorted(seen) == list(range(24))  # every global sample exactly once
    names = [n for b in per_rank[0] + per_rank[1] for n in b["names"]]
    assert len(set(names)) == 10  # 24 samples over a 10-item corpus: every item visited

    full = _take(build_stream(cfg, seed=3, micro_batch=4), 5)
    head_stream = build_stream(cfg, seed=3, micro_batch=4)
    _take(head_stream, 2)
    state = head_stream.state_dict()
    assert state == {"kind": "indexed", "samples": 8, "num_items": 10}
    tail = _take(build_stream(cfg, seed=3, micro_batch=4, states=[state]), 3)
    for a, b in zip(full[2:], tail, strict=True):
        assert a["names"] == b["names"] and torch.equal(a["spec"], b["spec"])


def test_indexed_stream_is_independent_of_worker_count():
    base = dict(procedural_size=12, procedural_seconds=(0.5, 1.0))
    a = _take(build_stream(DataConfig(num_workers=0, **base), seed=0, micro_batch=2), 3)
    b = _take(build_stream(DataConfig(num_workers=2, **base), seed=0, micro_batch=2), 3)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x["spec"], y["spec"])


# -------------------------------------------------------------------------------- shards
@pytest.fixture(scope="module")
def audio_shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    files = make_good_files(root / "audio", n=6) * 2  # 14 files
    bad = make_bad_files(root / "audio_bad")
    inputs = [*files, *(str(root / "audio_bad" / n) for n in bad if n.endswith(".wav"))]
    report = write_shards(inputs, root / "wds", shard_size=2, root=str(root))
    return root / "wds", report, len(files)


def test_write_shards_round_trip(audio_shards, tmp_path):
    shard_dir, report, n_good = audio_shards
    assert report.written == n_good and len(report.shards) == 7
    assert dict(report.skipped) == {
        "empty": 1,
        "unreadable": 1,
        "silent": 2,
        "nonfinite": 1,
        "too_short": 1,
    }
    index = json.loads((shard_dir / "index.json").read_text())
    assert sum(index["shards"].values()) == n_good and index["content"] == "audio"
    assert not list(shard_dir.glob(".*tmp"))
    urls = expand_shards(shard_dir)
    keys = []
    for url in urls:
        for key, files in iter_tar_samples(url):
            keys.append(key)
            assert set(files) == {"flac", "json"}
            meta = json.loads(files["json"])
            wave, rate = sf.read(io.BytesIO(files["flac"]), dtype="float32")
            assert rate == SR and wave.ndim == 1
            assert abs(len(wave) / SR - meta["duration_s"]) < 1e-3
    assert len(keys) == len(set(keys)) == n_good

    # WebDataset itself reads these shards.
    import webdataset as wds

    ds = wds.WebDataset([str(u) for u in urls], shardshuffle=False, empty_check=False)
    assert sorted(s["__key__"] for s in ds) == sorted(keys)

    # Features: unnormalised log-mel float16 (T, 80), never pickled.
    feat_dir = tmp_path / "feats"
    write_shards(
        [str(p) for p in sorted((shard_dir.parent / "audio").glob("*.wav"))],
        feat_dir,
        features=True,
        shard_size=4,
    )
    (url,) = [u for u in expand_shards(feat_dir) if u.endswith("000000.tar")]
    key, files = next(iter_tar_samples(url))
    arr = np.load(io.BytesIO(files["npy"]), allow_pickle=False)
    assert arr.dtype == np.float16 and arr.shape[1] == 80
    assert json.loads(files["json"])["frames"] == arr.shape[0]


def _epoch0_names(shard_dir, world, workers, batches):
    cfg = DataConfig(paths=[str(shard_dir)], num_workers=workers, shuffle_block=3)
    seen = []
    for rank in range(world):
        for b in _take(build_stream(cfg, seed=5, rank=rank, world=world, micro_batch=1), batches):
            if b["position"][1] == 0:
                seen.extend(b["names"])
    return seen


def test_shards_split_across_ranks_and_workers_without_duplicates(audio_shards):
    shard_dir, _, n_good = audio_shards
    seen = _epoch0_names(shard_dir, world=2, workers=2, batches=2 * n_good)
    assert len(seen) == len(set(seen)) == n_good
    with pytest.raises(ValueError, match="readers"):
        build_stream(
            DataConfig(paths=[str(shard_dir)], num_workers=4), seed=0, world=2, micro_batch=1
        )


def test_shard_stream_resumes_exactly_with_workers(audio_shards):
    shard_dir, _, _ = audio_shards
    cfg = DataConfig(paths=[str(shard_dir)], num_workers=2, shuffle_block=3)
    full = _take(build_stream(cfg, seed=2, micro_batch=2), 9)
    head = build_stream(cfg, seed=2, micro_batch=2)
    _take(head, 5)  # an odd count: the next batch comes from the second worker
    state = head.state_dict()
    assert state["kind"] == "shards" and state["next_local_slot"] == 1
    tail = _take(build_stream(cfg, seed=2, micro_batch=2, states=[state]), 4)
    for a, b in zip(full[5:], tail, strict=True):
        assert a["names"] == b["names"] and torch.equal(a["spec"], b["spec"])
    changed = DataConfig(paths=[str(shard_dir)], num_workers=1, shuffle_block=3)
    restarted = build_stream(changed, seed=2, micro_batch=2, states=[state])
    assert all(e >= 1 for _, e, _ in restarted.state_dict()["slots"])  # a fresh epoch


def _write_tar(path, samples):
    with tarfile.open(path, "w") as tar:
        for name, data in samples:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _npy(arr) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def test_bad_shard_samples_and_pickles(tmp_path):
    rng = np.random.default_rng(0)
    good = rng.standard_normal((260, 80)).astype(np.float32)
    _write_tar(
        tmp_path / "a.tar",
        [
            ("k1.npy", _npy(good)),
            ("k2.npy", _npy(np.full((260, 80), np.nan, np.float32))),
            ("k3.flac", b"not flac"),
            ("k4.npy", _npy(good[:50])),  # short: tiled
        ],
    )
    cfg = DataConfig(paths=[str(tmp_path / "a.tar")], num_workers=0, shuffle_block=0)
    batches = _take(build_stream(cfg, seed=0, micro_batch=1), 2)  # file order
    assert [b["names"][0] for b in batches] == ["a.tar:k1", "a.tar:k4"]
    reasons = sorted(r for b in batches for r, _ in b["skipped"])
    assert reasons == ["nonfinite", "unreadable"]

    _write_tar(tmp_path / "p.tar", [("k1.data.pyd", pickle.dumps(good))])
    cfg = DataConfig(paths=[str(tmp_path / "p.tar")], num_workers=0)
    with pytest.raises(ValueError, match="trust_pickle"):
        next(iter(build_stream(cfg, seed=0, micro_batch=1)))
    cfg.trust_pickle = True
    batch = next(iter(build_stream(cfg, seed=0, micro_batch=1)))
    assert batch["spec"].shape == (1, 1, 200, 80)

    # A truncated shard: its readable samples are used, the failure is reported.
    data = (tmp_path / "a.tar").read_bytes()
    (tmp_path / "t.tar").write_bytes(data[: len(data) // 3])
    _write_tar(tmp_path / "u.tar", [("z1.npy", _npy(good))])
    cfg = DataConfig(paths=[str(tmp_path / "t.tar"), str(tmp_path / "u.tar")], num_workers=0)
    batches = _take(build_stream(cfg, seed=0, micro_batch=1), 2)
    events = [e for b in batches for e in b["skipped"]]
    assert ("unreadable", str(tmp_path / "t.tar")) in events


def test_brace_patterns():
    from axlstm.data.shards import expand_braces

    assert expand_braces("s-{000..002}.tar") == ["s-000.tar", "s-001.tar", "s-002.tar"]
    assert expand_braces("{a,b}-{8..10}") == ["a-8", "a-9", "a-10", "b-8", "b-9", "b-10"]
    assert expand_braces("plain.tar") == ["plain.tar"]


def test_shard_and_file_paths_cannot_mix(audio_shards, tmp_path):
    shard_dir, _, _ = audio_shards
    with pytest.raises(ValueError, match="cannot mix"):
        resolve_data(DataConfig(paths=[str(shard_dir), str(shard_dir.parent / "audio")]))
    assert isinstance(
        build_stream(
            DataConfig(paths=[f"{shard_dir}/shard-00000{{0..3}}.tar"], num_workers=0),
            seed=0,
            micro_batch=1,
        ),
        ShardStream,
    )


def test_training_inputs_come_from_the_models_own_front_end():
    """One front-end path: a model with its own log-mel settings (fixed statistics, another
    hop) gets training inputs from exactly that front end, as embedding does."""
    import axlstm
    from axlstm.data import DataConfig, make_processor

    model = axlstm.create_model(
        "test_axlstm", front_end={"norm_mean": -5.0, "norm_std": 4.0, "hop_length": 320}
    )
    fe = model.front_end_config
    proc = make_processor(DataConfig(crop_frames=40), fe)
    assert proc.front_end == fe and (proc.crop, proc.pad, proc.frames) == (
        "random_official",
        "tile",
        40,
    )
    wave = _tone(3.0)
    crop = proc.from_wave(wave, np.random.default_rng(5), "x")[0]
    offline = fe.build()(torch.from_numpy(wave))[0, 0]  # (1 + N // 320, 80), fixed statistics
    assert offline.shape[0] == 1 + len(wave) // 320
    expected = crop_or_tile(offline, 40, np.random.default_rng(5))
    # fixed statistics act elementwise, so normalising before or after the crop is the same
    # operation on the same values: bit-identical
    assert torch.equal(crop, expected)
